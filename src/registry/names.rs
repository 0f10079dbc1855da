//! Prometheus naming rules.
#![forbid(unsafe_code)]

use crate::error::RegistryError;

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, not starting with `__` (reserved for internal use).
pub(crate) fn check_metric_name(name: &str) -> Result<(), RegistryError> {
    let ok = valid_ident(name, true) && !name.starts_with("__");
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidMetricName {
            name: name.to_owned(),
        })
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`; `le` and `quantile` are reserved for
/// histogram buckets and summary quantiles.
pub(crate) fn check_label_name(name: &str) -> Result<(), RegistryError> {
    if !valid_ident(name, false) || name.starts_with("__") {
        return Err(RegistryError::InvalidLabelName {
            name: name.to_owned(),
        });
    }
    if name == "le" || name == "quantile" {
        return Err(RegistryError::ReservedLabelName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// A unit: `[a-zA-Z0-9_]+`; the metric name must end with `_<unit>` (or `_<unit>_total` for a
/// counter), as OpenMetrics requires.
pub(crate) fn check_unit(name: &str, unit: &str) -> Result<(), RegistryError> {
    let chars_ok = !unit.is_empty() && unit.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let base = name.strip_suffix("_total").unwrap_or(name);
    let suffix_ok = base
        .strip_suffix(unit)
        .is_some_and(|rest| rest.ends_with('_'));
    if chars_ok && suffix_ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidUnit {
            name: name.to_owned(),
            unit: unit.to_owned(),
        })
    }
}

fn valid_ident(s: &str, allow_colon: bool) -> bool {
    let mut bytes = s.bytes();
    let first_ok = match bytes.next() {
        Some(b) => b.is_ascii_alphabetic() || b == b'_' || (allow_colon && b == b':'),
        None => false,
    };
    first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || (allow_colon && b == b':'))
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        for ok in ["a", "http_requests_total", "_x", "ns:sub:metric", "A9"] {
            assert!(check_metric_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "9a", "a-b", "__reserved", "é", "a b", "a{"] {
            assert!(check_metric_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_names() {
        for ok in ["method", "_x", "code2"] {
            assert!(check_label_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a:b", "__name__", "9", "le", "quantile"] {
            assert!(check_label_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn units() {
        assert!(check_unit("latency_seconds", "seconds").is_ok());
        assert!(check_unit("sent_bytes_total", "bytes").is_ok());
        assert!(check_unit("latency", "seconds").is_err());
        assert!(check_unit("xseconds", "seconds").is_err());
        assert!(check_unit("a_b", "").is_err());
    }
}
