//! Arbitrary names, label values and numbers through registration and rendering.
//!
//! Registration must either succeed or return a clean `RegistryError`; rendering must never
//! panic; and the 0.0.4 text must parse back (with an independent parser) to the snapshot's
//! counter and gauge values.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use openmetrics_parser::{PrometheusValue, prometheus as prom};
use weir::export::prometheus::{render, render_openmetrics};
use weir::{Registry, Value};

#[derive(Arbitrary, Debug)]
enum Op {
    Counter {
        name: u8,
        labels: Vec<(u8, String)>,
        add: u64,
    },
    Gauge {
        name: u8,
        labels: Vec<(u8, String)>,
        set: i64,
    },
    FloatGauge {
        name: u8,
        labels: Vec<(u8, String)>,
        set: f64,
    },
    Histogram {
        name: u8,
        labels: Vec<(u8, String)>,
        value: u64,
    },
    RawName {
        name: String,
    },
}

/// Names come from a small pool (so families repeat and collide), plus arbitrary raw strings.
fn name(i: u8) -> &'static str {
    const NAMES: [&str; 8] = [
        "a_total",
        "b",
        "c_seconds",
        "d:e",
        "__bad",
        "9bad",
        "f g",
        "h",
    ];
    NAMES[usize::from(i) % NAMES.len()]
}

fn label_name(i: u8) -> &'static str {
    const LABELS: [&str; 6] = ["method", "code", "le", "__x", "path", "bad-label"];
    LABELS[usize::from(i) % LABELS.len()]
}

fuzz_target!(|ops: Vec<Op>| {
    let registry = Registry::builder().cardinality_limit(8).build();
    for op in ops.iter().take(64) {
        let labels = |ls: &[(u8, String)]| -> Vec<(&'static str, String)> {
            ls.iter()
                .take(3)
                .map(|(n, v)| (label_name(*n), v.clone()))
                .collect()
        };
        let result = match op {
            Op::Counter {
                name: n,
                labels: ls,
                add,
            } => {
                let ls = labels(ls);
                let pairs: Vec<(&str, &str)> = ls.iter().map(|(n, v)| (*n, v.as_str())).collect();
                registry
                    .counter(name(*n), "help \\ \"text\"\n", &pairs)
                    .map(|c| c.add(*add))
            }
            Op::Gauge {
                name: n,
                labels: ls,
                set,
            } => {
                let ls = labels(ls);
                let pairs: Vec<(&str, &str)> = ls.iter().map(|(n, v)| (*n, v.as_str())).collect();
                registry.gauge(name(*n), "g", &pairs).map(|g| g.set(*set))
            }
            Op::FloatGauge {
                name: n,
                labels: ls,
                set,
            } => {
                let ls = labels(ls);
                let pairs: Vec<(&str, &str)> = ls.iter().map(|(n, v)| (*n, v.as_str())).collect();
                registry
                    .float_gauge(name(*n), "f", &pairs)
                    .map(|g| g.set(*set))
            }
            Op::Histogram {
                name: n,
                labels: ls,
                value,
            } => {
                let ls = labels(ls);
                let pairs: Vec<(&str, &str)> = ls.iter().map(|(n, v)| (*n, v.as_str())).collect();
                registry
                    .histogram(name(*n), "h", &pairs)
                    .map(|h| h.record(*value))
            }
            Op::RawName { name } => registry.counter(name, "raw", &[]).map(|c| c.inc()),
        };
        if let Err(e) = result {
            // Clean errors: they display without panicking.
            let _ = e.to_string();
        }
    }
    let snapshot = registry.snapshot();
    let text = render(&snapshot);
    let open = render_openmetrics(&snapshot);
    assert!(open.ends_with("# EOF\n"));
    if text.is_empty() {
        return;
    }
    // `openmetrics-parser` rejects some valid label values: empty ones (`name{l=""}`, where an
    // empty value means "no label") and ones with control characters. The parse-back check
    // skips snapshots that have them; promtool and Python's parser cover them in tests/.
    let parser_limit = snapshot.families().iter().flat_map(|f| &f.series).any(|s| {
        s.label_values
            .iter()
            .any(|v| v.is_empty() || v.chars().any(char::is_control))
    });
    if parser_limit {
        return;
    }
    let parsed =
        prom::parse_prometheus(&text).unwrap_or_else(|e| panic!("did not parse: {e:?}\n{text}"));
    // Every counter and integer gauge series parses back to its value.
    for family in snapshot.families() {
        let Some(pf) = parsed.families.get(&*family.name) else {
            continue;
        };
        let mut by_labels: HashMap<Vec<String>, f64> = HashMap::new();
        // Key by the snapshot's label order (the parser may order names differently). A label
        // with an empty value is the same as no label in Prometheus: both key as "".
        let names: Vec<String> = family.label_names.iter().map(|n| n.to_string()).collect();
        for s in pf.iter_samples() {
            let set = s.get_labelset().expect("labelset");
            let key: Vec<String> = names
                .iter()
                .map(|n| {
                    set.iter()
                        .find(|(k, _)| *k == n)
                        .map(|(_, v)| v.to_string())
                        .unwrap_or_default()
                })
                .collect();
            match &s.value {
                PrometheusValue::Counter(c) => {
                    by_labels.insert(key, c.value.as_f64());
                }
                PrometheusValue::Gauge(g) => {
                    by_labels.insert(key, g.as_f64());
                }
                _ => {}
            }
        }
        for series in &family.series {
            let key: Vec<String> = series.label_values.iter().map(|v| v.to_string()).collect();
            let expected = match series.value {
                Value::Counter(c) => c as f64,
                Value::Gauge(g) => g as f64,
                _ => continue,
            };
            let got = by_labels.get(&key).copied();
            assert_eq!(got, Some(expected), "{} {:?}\n{text}", family.name, key);
        }
    }
});
