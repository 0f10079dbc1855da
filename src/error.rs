//! Errors, one enum per operation; each variant says how to fix the call.
#![forbid(unsafe_code)]

use std::fmt;

/// A histogram could not be built with the requested bucket layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistogramError {
    /// Significant digits must be in `1..=5`. Three (0.1% relative error) suits latencies.
    SignificantDigits {
        /// The rejected value.
        digits: u8,
    },
    /// The lowest discernible value must be at least 1. Use 1 to resolve every integer.
    LowestIsZero,
    /// The highest trackable value must be at least twice the lowest discernible value (and the
    /// lowest at most `u64::MAX / 2`). Raise `highest` or lower `lowest`.
    HighestTooLow {
        /// The requested lowest discernible value.
        lowest: u64,
        /// The requested highest trackable value.
        highest: u64,
    },
    /// `lowest` is so large that `digits` of precision above it do not fit in 64 bits. Lower
    /// `lowest` or the digits.
    LowestTooHighForDigits {
        /// The requested lowest discernible value.
        lowest: u64,
        /// The requested significant digits.
        digits: u8,
    },
}

impl fmt::Display for HistogramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HistogramError::SignificantDigits { digits } => {
                write!(f, "significant digits must be in 1..=5, got {digits}")
            }
            HistogramError::LowestIsZero => {
                f.write_str("lowest discernible value must be at least 1")
            }
            HistogramError::HighestTooLow { lowest, highest } => write!(
                f,
                "highest trackable value ({highest}) must be at least twice the lowest ({lowest}), \
                 and lowest at most u64::MAX / 2"
            ),
            HistogramError::LowestTooHighForDigits { lowest, digits } => write!(
                f,
                "{digits} significant digits above a lowest value of {lowest} do not fit in 64 bits"
            ),
        }
    }
}

impl std::error::Error for HistogramError {}

/// [`HistogramSnapshot::delta_since`](crate::HistogramSnapshot::delta_since) was given a snapshot
/// that is not an earlier reading of the same histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeltaError {
    /// The baseline was taken from another histogram (or is a merge of several). Keep one
    /// baseline per histogram.
    Unrelated,
    /// The baseline was taken after this snapshot. Swap the operands: `newer.delta_since(&older)`.
    BaselineIsNewer {
        /// The baseline's sequence number.
        baseline: u64,
        /// This snapshot's sequence number.
        this: u64,
    },
    /// A bucket, the sum or the saturated count is smaller than in the baseline. This happens when
    /// two snapshots taken concurrently on different threads are compared; take snapshots of
    /// one histogram from one reader (or order them) to get intervals.
    Decreased,
}

impl fmt::Display for DeltaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DeltaError::Unrelated => {
                f.write_str("baseline snapshot comes from a different histogram")
            }
            DeltaError::BaselineIsNewer { baseline, this } => write!(
                f,
                "baseline snapshot (#{baseline}) is newer than this snapshot (#{this})"
            ),
            DeltaError::Decreased => f.write_str(
                "baseline snapshot holds more than this one (snapshots were taken concurrently)",
            ),
        }
    }
}

impl std::error::Error for DeltaError {}

/// [`HistogramSnapshot::merge`](crate::HistogramSnapshot::merge) was given a snapshot with a
/// different bucket layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MergeError {
    /// The two snapshots have different lowest, highest or significant digits. Build the
    /// histograms with the same builder settings to merge them.
    LayoutMismatch,
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeError::LayoutMismatch => {
                f.write_str("histogram snapshots have different bucket layouts")
            }
        }
    }
}

impl std::error::Error for MergeError {}

/// A quantile passed to
/// [`HistogramSnapshot::try_value_at_quantile`](crate::HistogramSnapshot::try_value_at_quantile)
/// was not a number in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum QuantileError {
    /// The quantile is NaN or outside `[0, 1]` (0.99 is the 99th percentile).
    OutOfRange(f64),
}

impl fmt::Display for QuantileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantileError::OutOfRange(q) => write!(f, "quantile must be in [0, 1], got {q}"),
        }
    }
}

impl std::error::Error for QuantileError {}

/// A metric could not be registered or looked up in a [`Registry`](crate::Registry).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// Metric names must match `[a-zA-Z_:][a-zA-Z0-9_:]*` and not start with `__`.
    InvalidMetricName {
        /// The rejected name.
        name: String,
    },
    /// Label names must match `[a-zA-Z_][a-zA-Z0-9_]*` and not start with `__`.
    InvalidLabelName {
        /// The rejected name.
        name: String,
    },
    /// `le` and `quantile` are reserved for histogram buckets and summary quantiles; rename the
    /// label.
    ReservedLabelName {
        /// The rejected name.
        name: String,
    },
    /// A label name appears twice in one family; give each label its own name.
    DuplicateLabelName {
        /// The repeated name.
        name: String,
    },
    /// A unit must match `[a-zA-Z0-9_]+` and the metric name must end with `_<unit>` (or
    /// `_<unit>_total` for a counter), e.g. `request_duration_seconds` with unit `seconds`.
    InvalidUnit {
        /// The metric name.
        name: String,
        /// The rejected unit.
        unit: String,
    },
    /// The number of label values differs from the family's label names; pass one value per
    /// label name, in the same order.
    LabelCount {
        /// The metric name.
        name: String,
        /// How many label names the family has.
        expected: usize,
        /// How many values were given.
        got: usize,
    },
    /// The name is already registered as another kind of metric; use another name.
    KindMismatch {
        /// The metric name.
        name: String,
        /// The kind it was registered as.
        registered: crate::MetricKind,
        /// The kind requested now.
        requested: crate::MetricKind,
    },
    /// The name is already registered with other label names (or unit, or histogram layout);
    /// register it the same way everywhere, or use another name.
    SchemaMismatch {
        /// The metric name.
        name: String,
        /// What differs.
        what: &'static str,
    },
    /// A refresher interval or window must be longer than zero.
    ZeroInterval,
    /// The operating system refused to start the refresher thread; retry, or refresh by hand
    /// with `refresh_now`.
    SpawnFailed,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::InvalidMetricName { name } => write!(
                f,
                "invalid metric name {name:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]* and not start with __"
            ),
            RegistryError::InvalidLabelName { name } => write!(
                f,
                "invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __"
            ),
            RegistryError::ReservedLabelName { name } => {
                write!(f, "label name {name:?} is reserved")
            }
            RegistryError::DuplicateLabelName { name } => {
                write!(f, "label name {name:?} appears twice")
            }
            RegistryError::InvalidUnit { name, unit } => write!(
                f,
                "invalid unit {unit:?} for {name:?}: units are [a-zA-Z0-9_]+ and the name must end with _<unit>"
            ),
            RegistryError::LabelCount {
                name,
                expected,
                got,
            } => write!(
                f,
                "{name} has {expected} label names but {got} values were given"
            ),
            RegistryError::KindMismatch {
                name,
                registered,
                requested,
            } => write!(
                f,
                "{name} is registered as a {} and cannot be used as a {}",
                registered.as_str(),
                requested.as_str()
            ),
            RegistryError::SchemaMismatch { name, what } => {
                write!(f, "{name} is already registered with different {what}")
            }
            RegistryError::ZeroInterval => f.write_str("interval must be longer than zero"),
            RegistryError::SpawnFailed => f.write_str("could not start the refresher thread"),
        }
    }
}

impl std::error::Error for RegistryError {}
