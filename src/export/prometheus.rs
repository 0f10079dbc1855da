//! Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text.
//!
//! [`render`] and [`render_openmetrics`] turn a [`RegistrySnapshot`] into the text a Prometheus
//! server scrapes; [`render_with`] and [`render_openmetrics_with`] take [`RenderOptions`] to
//! choose histogram bucket boundaries, a value scale (nanoseconds exported as seconds), or
//! summaries instead of buckets. Serve the text with [`TEXT_CONTENT_TYPE`] or
//! [`OPENMETRICS_CONTENT_TYPE`].
//!
//! ```
//! use weir::export::prometheus::{self, RenderOptions};
//!
//! let registry = weir::Registry::new();
//! registry.counter("jobs_total", "Jobs run", &[("queue", "default")])?.add(3);
//! // Record nanoseconds, export seconds: name the family in the unit it is exported in.
//! let latency = registry
//!     .describe("job_duration_seconds", "Job latency")
//!     .unit("seconds")
//!     .histogram_family(&[])?
//!     .with(&[])?;
//! latency.record(1_500_000); // 1.5 ms
//! let options = RenderOptions::new()
//!     .buckets("job_duration_seconds", vec![1_000_000, 10_000_000])?
//!     .scale("job_duration_seconds", 1e-9)?;
//! let text = prometheus::render_with(&registry.snapshot(), &options);
//! assert!(text.contains("jobs_total{queue=\"default\"} 3\n"));
//! assert!(text.contains("job_duration_seconds_bucket{le=\"0.001\"} 0\n"));
//! assert!(text.contains("job_duration_seconds_bucket{le=\"0.01\"} 1\n"));
//! assert!(text.contains("job_duration_seconds_sum 0.0015\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is rendered
//!
//! | weir | 0.0.4 `# TYPE` | OpenMetrics family | samples |
//! | --- | --- | --- | --- |
//! | counter `x_total` | `counter` | `x` (the `_total` suffix is dropped) | `x_total` in both formats |
//! | counter `x` (no `_total`) | `counter` | `x` | `x` in 0.0.4, `x_total` in OpenMetrics |
//! | gauge, float gauge `x` | `gauge` | `x` | `x` |
//! | histogram `x` | `histogram` | `x` | `x_bucket{le="..."}` (ending with `le="+Inf"`), `x_sum`, `x_count` |
//! | histogram `x` chosen as a summary | `summary` | `x` | `x{quantile="..."}`, `x_sum`, `x_count` |
//!
//! Families appear in snapshot order (registration order, weir's own
//! `weir_series_overflow_total` included once a family has overflowed), series in snapshot
//! order (sorted by label values), so the same snapshot always renders to the same text. A
//! family's overflow series (every label `__overflow__`) is rendered like any other series.
//!
//! `# HELP` is omitted when the help text is empty; OpenMetrics adds `# UNIT` when the family
//! has a unit, orders metadata `TYPE`, `UNIT`, `HELP` as the specification recommends, and ends
//! with `# EOF`. A family with no series is left out entirely, as Prometheus' Go client does
//! (OpenMetrics allows metadata without samples, but not every parser does). No timestamps or
//! `_created` samples are written.
//!
//! # Escaping
//!
//! Label values escape backslash (`\\`), double quote (`\"`) and line feed (`\n`) in both
//! formats. Help text escapes backslash and line feed in 0.0.4, and also double quote in
//! OpenMetrics. Everything else (other control characters, any Unicode) is written as is. Metric
//! and label names need no escaping: the registry only accepts `[a-zA-Z_:][a-zA-Z0-9_:]*` and
//! `[a-zA-Z_][a-zA-Z0-9_]*`.
//!
//! # Numbers
//!
//! - Integers (counter totals, integer gauges, bucket counts, `_count`, and `_sum` when not
//!   scaled) are written as exact decimal integers, never with an exponent.
//! - Other sample values are written as Go's `strconv.FormatFloat(v, 'g', -1, 64)` does
//!   (what Prometheus' own clients write), except that an integral value below 2^53 is written
//!   as an integer (`1000000`, not `1e+06`). Either way the text parses back to the same `f64`.
//!   Infinities and NaN are `+Inf`, `-Inf` and `NaN`.
//! - `le` and `quantile` label values are written as Go's `%g` writes them (`0.005`, `1`,
//!   `1e+06`, `+Inf`), so they match the label values of Prometheus' Go clients. OpenMetrics
//!   requires its canonical form, which appends `.0` when there is no `.` or exponent (`1.0`,
//!   `10.0`, `1e+06`).
//!
//! # Histogram buckets
//!
//! A weir histogram holds HDR buckets (each an inclusive value range `[low, high]`, see
//! [`HistogramSnapshot::buckets`]); Prometheus wants cumulative counts at boundaries `le` of the
//! exporter's choosing. The rule is **conservative**:
//!
//! > the cumulative count at boundary `le` is the sum of the counts of every HDR bucket whose
//! > highest value is `<= le`.
//!
//! So the count at `le` never includes a value that might be greater than `le`. An HDR bucket
//! that straddles `le` (`low <= le < high`) is counted at the next boundary whose value is at
//! least its `high`, or only at `+Inf`. In particular a value recorded *exactly equal* to `le`
//! is counted at `le` if and only if its HDR bucket ends at or below `le`: always where HDR
//! buckets are one value wide (with a lowest discernible value of 1: below 32, 256, 2048, 32768
//! or 262144 for 1 to 5 significant digits), and elsewhere only when `le` is the top of its HDR
//! bucket. For example, with 3 significant digits values from 4096 to 8191 share buckets
//! 4 wide: a recorded 5000 lies in `[5000, 5003]`, so it is counted at `le="5003"` (or any higher
//! boundary) but not at `le="5000"`. The values that can be counted late are those in
//! `[low, le]` of the HDR bucket holding `le`: less than one part in `10^digits` of `le`.
//!
//! `le="+Inf"` is always written and equals `_count`; counts never decrease from one boundary to
//! the next. Boundaries are plain `u64`s in the histogram's own unit (scaling applies only to
//! how `le` is written). When scaling makes two boundaries equal as `f64` (or a boundary
//! overflows to infinity), only the lower one is written.
//!
//! Without [`RenderOptions::buckets`] or [`RenderOptions::default_buckets`], each histogram gets
//! [`default_boundaries`]`(lowest, highest)` of its layout: a 1-2-5 series, or a coarser one to
//! stay within [`DEFAULT_MAX_BUCKETS`].
//!
//! # Summaries
//!
//! [`RenderOptions::summary`] exports a histogram family as a `summary`: one sample per chosen
//! quantile with the value [`HistogramSnapshot::value_at_quantile`] gives (the highest value of
//! the HDR bucket that reaches the quantile, so never below the true quantile), then `_sum` and
//! `_count`. A series with no values has `NaN` quantiles, as Prometheus' clients write.
//!
//! # Limitations
//!
//! Names are written as registered. The registry does not stop one family's derived sample
//! names from colliding with another family (a histogram `x` and a gauge `x_count`, or in
//! OpenMetrics a counter `x_total` and a gauge `x`); parsers reject such output, so avoid those
//! names.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use crate::error::QuantileError;
use crate::histogram::HistogramSnapshot;
use crate::registry::{FamilySnapshot, MetricKind, RegistrySnapshot, Value};

/// `Content-Type` of [`render`]'s output: the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `Content-Type` of [`render_openmetrics`]'s output: OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The most boundaries (besides `+Inf`) that [`default_boundaries`] returns.
pub const DEFAULT_MAX_BUCKETS: usize = 30;

// === render ===

/// Renders `snapshot` in the Prometheus text exposition format 0.0.4, with the default
/// [`RenderOptions`] (histograms get [`default_boundaries`], values are not scaled).
///
/// See the [module docs](self) for how each kind is rendered.
///
/// ```
/// let registry = weir::Registry::new();
/// registry
///     .counter("http_requests_total", "Requests served", &[("method", "GET"), ("code", "200")])?
///     .add(7);
/// registry.gauge("queue_depth", "Jobs waiting", &[])?.set(-2);
/// let text = weir::export::prometheus::render(&registry.snapshot());
/// let expected = concat!(
///     "# HELP http_requests_total Requests served\n",
///     "# TYPE http_requests_total counter\n",
///     "http_requests_total{method=\"GET\",code=\"200\"} 7\n",
///     "# HELP queue_depth Jobs waiting\n",
///     "# TYPE queue_depth gauge\n",
///     "queue_depth -2\n",
/// );
/// assert_eq!(text, expected);
/// # Ok::<(), weir::RegistryError>(())
/// ```
pub fn render(snapshot: &RegistrySnapshot) -> String {
    render_with(snapshot, &RenderOptions::default())
}

/// Renders `snapshot` in the Prometheus text exposition format 0.0.4 with `options`.
pub fn render_with(snapshot: &RegistrySnapshot, options: &RenderOptions) -> String {
    render_format(snapshot, options, Format::Text)
}

/// Renders `snapshot` as OpenMetrics 1.0 text (ending in `# EOF`), with the default
/// [`RenderOptions`].
///
/// ```
/// let registry = weir::Registry::new();
/// registry.counter("http_requests_total", "Requests served", &[("code", "200")])?.inc();
/// let text = weir::export::prometheus::render_openmetrics(&registry.snapshot());
/// let expected = concat!(
///     "# TYPE http_requests counter\n",
///     "# HELP http_requests Requests served\n",
///     "http_requests_total{code=\"200\"} 1\n",
///     "# EOF\n",
/// );
/// assert_eq!(text, expected);
/// # Ok::<(), weir::RegistryError>(())
/// ```
pub fn render_openmetrics(snapshot: &RegistrySnapshot) -> String {
    render_openmetrics_with(snapshot, &RenderOptions::default())
}

/// Renders `snapshot` as OpenMetrics 1.0 text (ending in `# EOF`) with `options`.
pub fn render_openmetrics_with(snapshot: &RegistrySnapshot, options: &RenderOptions) -> String {
    render_format(snapshot, options, Format::OpenMetrics)
}

/// The default bucket boundaries for a histogram whose layout spans `lowest..=highest` (see
/// [`HistogramSnapshot::lowest`] and [`HistogramSnapshot::highest`]).
///
/// The values in `lowest..=highest` of the first of these series that has at least one and at
/// most [`DEFAULT_MAX_BUCKETS`] values there:
///
/// 1. 1-2-5: `1, 2, 5, 10, 20, 50, ...` (three per decade);
/// 2. 1-3: `1, 3, 10, 30, ...` (two per decade);
/// 3. powers of ten: `1, 10, 100, ...` (at most 20 in a `u64`).
///
/// Values above `highest` are left out: they are clamped into the top bucket and counted by
/// `+Inf`. The result is empty only when no series has a value in the range (as for `6..=9`):
/// then only `+Inf` is written.
///
/// ```
/// use weir::export::prometheus::default_boundaries;
/// assert_eq!(default_boundaries(1, 1_000), [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000]);
/// // The default histogram (1 ns to one hour): 1-2-5 would need 39 boundaries, 1-3 needs 26.
/// let ns = default_boundaries(weir::DEFAULT_LOWEST, weir::DEFAULT_HIGHEST);
/// assert_eq!(ns.len(), 26);
/// assert_eq!(&ns[..4], [1, 3, 10, 30]);
/// assert_eq!(ns.last(), Some(&3_000_000_000_000));
/// ```
pub fn default_boundaries(lowest: u64, highest: u64) -> Vec<u64> {
    const SERIES: [&[u64]; 3] = [&[1, 2, 5], &[1, 3], &[1]];
    for mantissas in SERIES {
        let mut out = Vec::new();
        let mut decade: u64 = 1;
        loop {
            for &m in mantissas {
                if let Some(v) = decade.checked_mul(m)
                    && v >= lowest
                    && v <= highest
                {
                    out.push(v);
                }
            }
            match decade.checked_mul(10) {
                Some(d) if d <= highest => decade = d,
                _ => break,
            }
        }
        if (1..=DEFAULT_MAX_BUCKETS).contains(&out.len()) {
            return out;
        }
    }
    Vec::new()
}

// === RenderOptions ===

/// How histograms are exported, and how values are scaled, family by family.
///
/// Families are named as registered (`http_requests_total`, not the OpenMetrics family name).
/// Options for a family that is not in a snapshot are ignored; bucket and summary options are
/// ignored for families that are not histograms.
///
/// ```
/// use weir::export::prometheus::RenderOptions;
///
/// let options = RenderOptions::new()
///     .default_buckets(vec![1_000, 10_000, 100_000])?
///     .buckets("db_query_duration_seconds", vec![100_000, 1_000_000, 10_000_000])?
///     .scale("db_query_duration_seconds", 1e-9)?
///     .summary("rpc_duration_seconds", vec![0.5, 0.9, 0.99])?
///     .scale("rpc_duration_seconds", 1e-9)?;
/// # let _ = options;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderOptions {
    default_buckets: Option<Vec<u64>>,
    families: BTreeMap<String, FamilyOptions>,
}

#[derive(Clone, Debug, PartialEq)]
struct FamilyOptions {
    scale: f64,
    histogram: HistogramAs,
}

impl Default for FamilyOptions {
    fn default() -> Self {
        FamilyOptions {
            scale: 1.0,
            histogram: HistogramAs::Default,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum HistogramAs {
    Default,
    Buckets(Vec<u64>),
    Summary(Vec<f64>),
}

impl RenderOptions {
    /// The default options: histograms get [`default_boundaries`], values are not scaled.
    pub fn new() -> RenderOptions {
        RenderOptions::default()
    }

    /// Bucket boundaries for the histogram family `family`, in the histogram's unit (before
    /// [`scale`](Self::scale)). They must be strictly increasing; `+Inf` is always added and
    /// must not be given. An empty list exports only `+Inf`, `_sum` and `_count`. Replaces an
    /// earlier [`summary`](Self::summary) for the family.
    pub fn buckets(mut self, family: &str, boundaries: Vec<u64>) -> Result<Self, BoundaryError> {
        check_boundaries(&boundaries)?;
        self.family_mut(family).histogram = HistogramAs::Buckets(boundaries);
        Ok(self)
    }

    /// Bucket boundaries for every histogram family that has neither its own
    /// [`buckets`](Self::buckets) nor a [`summary`](Self::summary), instead of
    /// [`default_boundaries`]. Same rules as [`buckets`](Self::buckets).
    pub fn default_buckets(mut self, boundaries: Vec<u64>) -> Result<Self, BoundaryError> {
        check_boundaries(&boundaries)?;
        self.default_buckets = Some(boundaries);
        Ok(self)
    }

    /// Exports the histogram family `family` as a `summary` with these quantiles (each in
    /// `[0, 1]`; 0.99 is the 99th percentile), plus `_sum` and `_count`. The quantiles are
    /// written in increasing order, each once. An empty list exports only `_sum` and `_count`.
    /// Replaces earlier [`buckets`](Self::buckets) for the family.
    pub fn summary(mut self, family: &str, quantiles: Vec<f64>) -> Result<Self, QuantileError> {
        let mut quantiles = quantiles;
        if let Some(&q) = quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            return Err(QuantileError::OutOfRange(q));
        }
        quantiles.sort_by(f64::total_cmp);
        quantiles.dedup();
        self.family_mut(family).histogram = HistogramAs::Summary(quantiles);
        Ok(self)
    }

    /// Multiplies the values of family `family` by `scale` when writing them (default 1.0):
    /// counter and gauge values, histogram `le` boundaries and `_sum`, summary quantile values
    /// and `_sum`. Counts (`_bucket`, `_count`) are never scaled. Use `1e-9` to export a
    /// histogram recorded in nanoseconds in seconds (and name the family `..._seconds`).
    ///
    /// When `scale < 1` and `1 / scale` is an integer to within one part in 10^12 (as for
    /// `1e-9`, `1e-6`, `1e-3`), values are divided by that integer instead of multiplied, so
    /// `1_000_000` nanoseconds is written as `0.001`, not `0.0010000000000000002`.
    pub fn scale(mut self, family: &str, scale: f64) -> Result<Self, ScaleError> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(ScaleError::NotPositiveFinite(scale));
        }
        self.family_mut(family).scale = scale;
        Ok(self)
    }

    fn family_mut(&mut self, family: &str) -> &mut FamilyOptions {
        self.families.entry(family.to_owned()).or_default()
    }

    fn family(&self, family: &str) -> Option<&FamilyOptions> {
        self.families.get(family)
    }
}

fn check_boundaries(boundaries: &[u64]) -> Result<(), BoundaryError> {
    match boundaries.windows(2).position(|w| w[0] >= w[1]) {
        None => Ok(()),
        Some(i) => Err(BoundaryError::NotIncreasing {
            index: i + 1,
            boundaries: boundaries.to_vec(),
        }),
    }
}

// === errors ===

/// [`RenderOptions::buckets`] or [`RenderOptions::default_buckets`] was given boundaries it
/// cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BoundaryError {
    /// Boundaries must be strictly increasing, but `boundaries[index]` is not greater than
    /// `boundaries[index - 1]`. Sort and deduplicate them (`v.sort(); v.dedup();`).
    NotIncreasing {
        /// The position of the first boundary out of order.
        index: usize,
        /// The rejected boundaries.
        boundaries: Vec<u64>,
    },
}

impl fmt::Display for BoundaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundaryError::NotIncreasing { index, boundaries } => {
                let at = |i: usize| boundaries.get(i).copied().unwrap_or_default();
                write!(
                    f,
                    "bucket boundaries must be strictly increasing, but boundary {index} ({}) is \
                     not greater than the one before it ({})",
                    at(*index),
                    at(index.wrapping_sub(1))
                )
            }
        }
    }
}

impl std::error::Error for BoundaryError {}

/// [`RenderOptions::scale`] was given a scale it cannot use.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ScaleError {
    /// The scale must be finite and greater than zero (a negative scale would reverse bucket
    /// order). Use `1e-9` for nanoseconds to seconds.
    NotPositiveFinite(f64),
}

impl fmt::Display for ScaleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScaleError::NotPositiveFinite(s) => {
                write!(f, "scale must be finite and greater than zero, got {s}")
            }
        }
    }
}

impl std::error::Error for ScaleError {}

// === rendering ===

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    OpenMetrics,
}

fn render_format(snapshot: &RegistrySnapshot, options: &RenderOptions, format: Format) -> String {
    let mut out = String::with_capacity(estimate(snapshot));
    for family in snapshot.families().iter().filter(|f| !f.series.is_empty()) {
        let family_options = options.family(&family.name);
        let scale = Scale::new(family_options.map_or(1.0, |o| o.scale));
        let histogram = family_options.map_or(&HistogramAs::Default, |o| &o.histogram);
        let as_summary = match histogram {
            HistogramAs::Summary(q) if family.kind == MetricKind::Histogram => Some(&q[..]),
            _ => None,
        };
        let boundaries: Option<&[u64]> = match histogram {
            HistogramAs::Buckets(b) => Some(b),
            _ => options.default_buckets.as_deref(),
        };
        // Every series of a family has the same layout: compute default boundaries once.
        let mut defaults: Option<((u64, u64), Vec<u64>)> = None;
        let mut w = FamilyWriter {
            out: &mut out,
            family,
            format,
            scale,
        };
        w.metadata(as_summary.is_some());
        for series in &family.series {
            let values = &series.label_values[..];
            match &series.value {
                Value::Counter(v) => {
                    let suffix = match format {
                        Format::Text => "",
                        Format::OpenMetrics => "_total",
                    };
                    w.sample_start(metadata_name(family, format), suffix, values, None);
                    w.push_scaled_u64(*v);
                    w.out.push('\n');
                }
                Value::Gauge(v) => {
                    w.sample_start(&family.name, "", values, None);
                    if scale.is_identity() {
                        push_display(w.out, v);
                    } else {
                        push_value(w.out, scale.apply(*v as f64));
                    }
                    w.out.push('\n');
                }
                Value::FloatGauge(v) => {
                    w.sample_start(&family.name, "", values, None);
                    push_value(w.out, scale.apply(*v));
                    w.out.push('\n');
                }
                Value::Histogram(h) => match as_summary {
                    Some(quantiles) => w.summary(values, h, quantiles),
                    None => match boundaries {
                        Some(b) => w.histogram(values, h, b),
                        None => {
                            let range = (h.lowest(), h.highest());
                            let b = match &mut defaults {
                                Some((r, b)) if *r == range => b,
                                slot => {
                                    &slot.insert((range, default_boundaries(range.0, range.1))).1
                                }
                            };
                            w.histogram(values, h, b);
                        }
                    },
                },
            }
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// A rough size of the output, to allocate once in the common case.
fn estimate(snapshot: &RegistrySnapshot) -> usize {
    snapshot
        .families()
        .iter()
        .map(|f| {
            let per_series = match f.kind {
                MetricKind::Histogram => 30,
                _ => 1,
            };
            128 + f.help.len() + f.series.len() * per_series * (f.name.len() + 48)
        })
        .sum()
}

struct FamilyWriter<'a> {
    out: &'a mut String,
    family: &'a FamilySnapshot,
    format: Format,
    scale: Scale,
}

impl FamilyWriter<'_> {
    fn metadata(&mut self, as_summary: bool) {
        let family = self.family;
        let kind = match family.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge | MetricKind::FloatGauge => "gauge",
            MetricKind::Histogram if as_summary => "summary",
            MetricKind::Histogram => "histogram",
        };
        let name = metadata_name(family, self.format);
        let out = &mut *self.out;
        match self.format {
            Format::Text => {
                if !family.help.is_empty() {
                    out.push_str("# HELP ");
                    out.push_str(name);
                    out.push(' ');
                    push_escaped(out, &family.help, false);
                    out.push('\n');
                }
                push_line(out, &["# TYPE ", name, " ", kind]);
            }
            Format::OpenMetrics => {
                push_line(out, &["# TYPE ", name, " ", kind]);
                if let Some(unit) = family.unit.as_deref().filter(|u| !u.is_empty()) {
                    push_line(out, &["# UNIT ", name, " ", unit]);
                }
                if !family.help.is_empty() {
                    out.push_str("# HELP ");
                    out.push_str(name);
                    out.push(' ');
                    push_escaped(out, &family.help, true);
                    out.push('\n');
                }
            }
        }
    }

    /// Writes `name suffix {labels, extra} ` up to the value; `extra` is `le` or `quantile`.
    fn sample_start(
        &mut self,
        name: &str,
        suffix: &str,
        values: &[Arc<str>],
        extra: Option<(&str, f64)>,
    ) {
        let out = &mut *self.out;
        out.push_str(name);
        out.push_str(suffix);
        let names = &self.family.label_names;
        if !names.is_empty() || extra.is_some() {
            out.push('{');
            let mut first = true;
            for (n, v) in names.iter().zip(values) {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(n);
                out.push_str("=\"");
                push_escaped(out, v, true);
                out.push('"');
            }
            if let Some((n, v)) = extra {
                if !first {
                    out.push(',');
                }
                out.push_str(n);
                out.push_str("=\"");
                push_label_number(out, v, self.format);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
    }

    /// A value in the family's unit that is a `u64` (counter totals, histogram sums).
    fn push_scaled_u64(&mut self, v: u64) {
        if self.scale.is_identity() {
            push_display(self.out, v);
        } else {
            push_value(self.out, self.scale.apply(v as f64));
        }
    }

    fn histogram(&mut self, values: &[Arc<str>], h: &HistogramSnapshot, bounds: &[u64]) {
        let family = self.family;
        let name = &family.name;
        let mut hdr = h.buckets().peekable();
        let mut cumulative: u64 = 0;
        let mut previous_le = f64::NEG_INFINITY;
        for &le in bounds {
            // The conservative rule: an HDR bucket counts at `le` iff its highest value <= le.
            while let Some(b) = hdr.next_if(|b| b.high <= le) {
                cumulative = cumulative.wrapping_add(b.count);
            }
            let le_f = self.scale.apply(le as f64);
            if !(le_f > previous_le && le_f.is_finite()) {
                // Indistinguishable from the previous boundary once scaled (or infinite):
                // keep the lower one only.
                continue;
            }
            previous_le = le_f;
            self.sample_start(name, "_bucket", values, Some(("le", le_f)));
            push_display(self.out, cumulative);
            self.out.push('\n');
        }
        self.sample_start(name, "_bucket", values, Some(("le", f64::INFINITY)));
        push_display(self.out, h.count());
        self.out.push('\n');
        self.sum_and_count(values, h);
    }

    fn summary(&mut self, values: &[Arc<str>], h: &HistogramSnapshot, quantiles: &[f64]) {
        let family = self.family;
        let name = &family.name;
        for &q in quantiles {
            self.sample_start(name, "", values, Some(("quantile", q)));
            if h.count() == 0 {
                self.out.push_str("NaN");
            } else {
                push_value(self.out, self.scale.apply(h.value_at_quantile(q) as f64));
            }
            self.out.push('\n');
        }
        self.sum_and_count(values, h);
    }

    fn sum_and_count(&mut self, values: &[Arc<str>], h: &HistogramSnapshot) {
        let family = self.family;
        let name = &family.name;
        self.sample_start(name, "_sum", values, None);
        self.push_scaled_u64(h.sum());
        self.out.push('\n');
        self.sample_start(name, "_count", values, None);
        push_display(self.out, h.count());
        self.out.push('\n');
    }
}

/// The name in `# TYPE`/`# HELP`/`# UNIT` lines, which a counter's samples also start with
/// (before the `_total` suffix OpenMetrics adds).
fn metadata_name(family: &FamilySnapshot, format: Format) -> &str {
    match (format, family.kind) {
        (Format::OpenMetrics, MetricKind::Counter) => openmetrics_counter_family(&family.name),
        _ => &family.name,
    }
}

/// The OpenMetrics family name of a counter registered as `name`: without `_total`.
fn openmetrics_counter_family(name: &str) -> &str {
    match name.strip_suffix("_total") {
        Some(base) if !base.is_empty() => base,
        _ => name,
    }
}

fn push_line(out: &mut String, parts: &[&str]) {
    for p in parts {
        out.push_str(p);
    }
    out.push('\n');
}

fn push_display(out: &mut String, v: impl fmt::Display) {
    // Writing into a String cannot fail.
    let _ = write!(out, "{v}");
}

/// Escapes `\` and line feed, and `"` when `quotes` (label values; OpenMetrics help).
fn push_escaped(out: &mut String, s: &str, quotes: bool) {
    let mut rest = s;
    while let Some(i) = rest.find(|c| c == '\\' || c == '\n' || (quotes && c == '"')) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            _ => "\\\"",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

// === numbers ===

/// Multiplication by a positive scale; by division when `1 / scale` is an integer, so that
/// nanoseconds become exactly the nearest `f64` to the decimal number of seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scale {
    Identity,
    Mul(f64),
    Div(f64),
}

impl Scale {
    fn new(scale: f64) -> Scale {
        if scale == 1.0 {
            return Scale::Identity;
        }
        let inverse = 1.0 / scale;
        let rounded = inverse.round();
        if scale < 1.0 && rounded >= 2.0 && (inverse - rounded).abs() <= rounded * 1e-12 {
            Scale::Div(rounded)
        } else {
            Scale::Mul(scale)
        }
    }

    fn is_identity(self) -> bool {
        self == Scale::Identity
    }

    fn apply(self, v: f64) -> f64 {
        match self {
            Scale::Identity => v,
            Scale::Mul(m) => v * m,
            Scale::Div(d) => v / d,
        }
    }
}

/// 2^53: integral `f64`s below this are exact integers and are written without an exponent.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// A sample value: `NaN`, `+Inf`, `-Inf`, an integer when integral and below 2^53 in
/// magnitude, otherwise Go's shortest `%g`.
fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == 0.0 {
        out.push('0');
    } else if v.fract() == 0.0 && v.abs() < EXACT_INTEGER_LIMIT {
        push_display(out, v as i64);
    } else {
        push_go_g(out, v);
    }
}

/// An `le` or `quantile` label value: Go's `%g`, plus `.0` in OpenMetrics when the text has
/// neither a `.` nor an exponent (the specification's canonical numbers).
fn push_label_number(out: &mut String, v: f64, format: Format) {
    let start = out.len();
    if v.is_nan() {
        out.push_str("NaN");
        return;
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    } else if v == 0.0 {
        out.push('0');
    } else {
        push_go_g(out, v);
    }
    if format == Format::OpenMetrics && !out[start..].contains(['.', 'e']) {
        out.push_str(".0");
    }
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)` for a finite, non-zero `v`: the shortest digits
/// that round-trip, in exponent form (`1e+06`, `1.5e-07`, two exponent digits at least) when
/// the decimal exponent is below -4 or at least 6, otherwise in positional form.
fn push_go_g(out: &mut String, v: f64) {
    // Rust's `{:e}` writes the shortest round-trip digits: "1.2345e-7", "-1e6".
    let sci = format!("{v:e}");
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    if negative {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(mantissa);
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        push_display(out, e);
        return;
    }
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests;
