//! The immutable view of a registry that every reader shares.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use crate::histogram::HistogramSnapshot;

/// What kind of metric a family holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricKind {
    /// A [`Counter`](crate::Counter).
    Counter,
    /// An integer [`Gauge`](crate::Gauge).
    Gauge,
    /// A [`FloatGauge`](crate::FloatGauge).
    FloatGauge,
    /// A [`Histogram`](crate::Histogram).
    Histogram,
}

impl MetricKind {
    /// The kind's name as the crate's API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::FloatGauge => "float gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One series' value in a snapshot.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A counter's total.
    Counter(u64),
    /// A gauge's value.
    Gauge(i64),
    /// A float gauge's value.
    FloatGauge(f64),
    /// A histogram's cumulative snapshot.
    Histogram(HistogramSnapshot),
}

/// One series (one set of label values) of a family, in a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSnapshot {
    /// Label values, in the order of the family's label names.
    pub label_values: Arc<[Arc<str>]>,
    /// The value.
    pub value: Value,
}

/// One metric family (a name, its help and labels, and its series) in a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct FamilySnapshot {
    /// The metric name, as registered (counters conventionally end in `_total`).
    pub name: Arc<str>,
    /// The help text, as registered (renderers escape it).
    pub help: Arc<str>,
    /// The unit, if one was given (the name then ends in `_<unit>` or `_<unit>_total`).
    pub unit: Option<Arc<str>>,
    /// The kind of every series in the family.
    pub kind: MetricKind,
    /// The label names.
    pub label_names: Arc<[Arc<str>]>,
    /// The series, sorted by label values.
    pub series: Vec<SeriesSnapshot>,
}

impl FamilySnapshot {
    /// The series with exactly these label values.
    pub fn get(&self, label_values: &[&str]) -> Option<&SeriesSnapshot> {
        // Series are sorted by label values: binary search.
        self.series
            .binary_search_by(|s| {
                s.label_values
                    .iter()
                    .map(|v| &**v)
                    .cmp(label_values.iter().copied())
            })
            .ok()
            .map(|i| &self.series[i])
    }
}

/// An immutable, consistent view of every metric in a [`Registry`](crate::Registry).
///
/// Built in one pass over all series, in reverse registration order: if a program always updates
/// series A before series B, and A was registered before B, no snapshot shows B's update without
/// A's. Families appear in registration order, series sorted by label values.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistrySnapshot {
    pub(crate) seq: u64,
    pub(crate) time: Duration,
    pub(crate) families: Vec<FamilySnapshot>,
}

impl RegistrySnapshot {
    /// Sequence number: 1 for the registry's first snapshot, then increasing by one.
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// When the snapshot was taken, on the registry's clock (time since the clock's epoch).
    pub fn time(&self) -> Duration {
        self.time
    }

    /// Every family, in registration order (including weir's own
    /// `weir_series_overflow_total` once some family has overflowed its cardinality limit).
    pub fn families(&self) -> &[FamilySnapshot] {
        &self.families
    }

    /// The family with this name.
    pub fn family(&self, name: &str) -> Option<&FamilySnapshot> {
        self.families.iter().find(|f| &*f.name == name)
    }

    /// The value of one series.
    pub fn value(&self, name: &str, label_values: &[&str]) -> Option<&Value> {
        self.family(name)?.get(label_values).map(|s| &s.value)
    }

    /// A counter's total, if `name` is a counter with that series.
    pub fn counter(&self, name: &str, label_values: &[&str]) -> Option<u64> {
        match self.value(name, label_values)? {
            Value::Counter(v) => Some(*v),
            _ => None,
        }
    }

    /// A gauge's value, if `name` is an integer gauge with that series.
    pub fn gauge(&self, name: &str, label_values: &[&str]) -> Option<i64> {
        match self.value(name, label_values)? {
            Value::Gauge(v) => Some(*v),
            _ => None,
        }
    }

    /// A float gauge's value, if `name` is a float gauge with that series.
    pub fn float_gauge(&self, name: &str, label_values: &[&str]) -> Option<f64> {
        match self.value(name, label_values)? {
            Value::FloatGauge(v) => Some(*v),
            _ => None,
        }
    }

    /// A histogram's snapshot, if `name` is a histogram with that series.
    pub fn histogram(&self, name: &str, label_values: &[&str]) -> Option<&HistogramSnapshot> {
        match self.value(name, label_values)? {
            Value::Histogram(h) => Some(h),
            _ => None,
        }
    }
}
