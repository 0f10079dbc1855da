//! A [`metrics`] facade recorder backed by a weir [`Registry`] (feature `metrics-rs`).
//!
//! Libraries that record through the `metrics` macros (`counter!`, `gauge!`, `histogram!`) land
//! in a weir registry, next to the metrics registered on it directly, and are exported with it.
//!
//! ```
//! use weir::export::metrics_rs::MetricsRecorder;
//!
//! let registry = weir::Registry::new();
//! let recorder = MetricsRecorder::new(&registry);
//! // `recorder.install()` makes it the process-wide recorder; here it is local to a closure.
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::describe_counter!("http.requests", "Requests served");
//!     metrics::counter!("http.requests", "method" => "GET").increment(2);
//!     metrics::gauge!("queue.depth").set(7.5);
//!     metrics::histogram!("payload.size").record(1500.0);
//! });
//! let snap = registry.snapshot();
//! assert_eq!(snap.counter("http_requests", &["GET"]), Some(2));
//! assert_eq!(&*snap.family("http_requests").unwrap().help, "Requests served");
//! assert_eq!(snap.float_gauge("queue_depth", &[]), Some(7.5));
//! assert_eq!(snap.histogram("payload_size", &[]).map(|h| h.count()), Some(1));
//! ```
//!
//! # How facade metrics map to weir
//!
//! | facade | weir |
//! | --- | --- |
//! | `counter!` | [`Counter`] (`increment` adds; `absolute` raises the total to the value, never lowers it, under a process-wide lock: it is meant for mirroring an external counter) |
//! | `gauge!` | [`FloatGauge`] (`increment`, `decrement`, `set`) |
//! | `histogram!` | [`Histogram`], values scaled and rounded to `u64` (see *Histograms*) |
//!
//! - **Names.** The facade allows any string (`http.requests`, `db-latency`); weir families
//!   follow the Prometheus rules. [`sanitize_metric_name`] replaces every character outside
//!   `[a-zA-Z0-9_:]` with `_`, prefixes `_` to a name that starts with a digit, collapses a
//!   leading run of underscores (`__x`, reserved by weir) to one, and turns an empty name into
//!   `_`. Counters get no `_total` suffix added: the name is the facade's, sanitized.
//! - **Labels.** A key's label names become the family's label names, in the order the first
//!   key of that name gives them ([`sanitize_label_name`]: as for metric names but without
//!   `:`; the reserved `le` and `quantile` become `le_` and `quantile_`; a name repeated in one
//!   key gets `_2`, `_3`, ... appended). Later keys may list the same label names in any order.
//! - **Conflicts never panic.** If a key arrives with another set of label names than its
//!   family's, it goes to the fallback family `<name>_by_<label names, sorted, joined by _>`
//!   (`<name>_unlabeled` for a key without labels). If the name is registered as another kind
//!   of metric (a counter and a gauge both named `x`), it goes to `<name>_<kind>` (`x_gauge`).
//!   If the fallback cannot be registered either, every update through that key is dropped and
//!   counted in `weir_metrics_rs_rejected_total{reason="conflict"}`.
//! - **Descriptions.** `describe_counter!` (and the gauge and histogram forms) set the family's
//!   help text and unit *if the family is created afterwards*. A family's help and unit are
//!   fixed when it is registered, so a description that comes after the first use of a name is
//!   kept only for families created later (the fallbacks above) and otherwise ignored. Describe
//!   at startup, before recording.
//! - **Units.** A described [`metrics::Unit`] becomes the family's unit, spelled as
//!   [`Unit::as_str`](metrics::Unit::as_str) (`seconds`, `bytes`, `kibibytes`, ...), when the
//!   sanitized name already ends with `_<unit>` (or `_<unit>_total`), as OpenMetrics requires;
//!   otherwise it is ignored. `Unit::Count` is always ignored. Units never rename a metric.
//! - **Histograms.** weir histograms hold `u64`s; the facade records `f64`s. Each value is
//!   multiplied by the family's scale and rounded to the nearest integer (halves away from
//!   zero). The scale, fixed when the recorder first registers the family, is, in order: the
//!   one set for that name with [`MetricsRecorderBuilder::histogram_scale_for`]; for a
//!   histogram described with a time unit, the factor to nanoseconds (`Seconds` 1e9,
//!   `Milliseconds` 1e6, `Microseconds` 1e3, `Nanoseconds` 1; turn this off with
//!   [`time_units_as_nanoseconds(false)`](MetricsRecorderBuilder::time_units_as_nanoseconds));
//!   else [`MetricsRecorderBuilder::histogram_scale`] (default 1: integral values are recorded as
//!   given). Values beyond the layout's highest trackable value (default one hour in
//!   nanoseconds) are clamped into the top bucket and counted as saturated, as for any weir
//!   histogram. Negative values, NaN and +infinity are not recorded but counted in
//!   `weir_metrics_rs_rejected_total{reason="negative"|"nan"|"infinite"}`. To export values back in
//!   the facade's unit, pass your render options through [`MetricsRecorder::render_options`],
//!   which divides every scaled family by its scale.
//!
//! `weir_metrics_rs_rejected_total` (label `reason`: `negative`, `nan`, `infinite`, `conflict`)
//! is registered when the recorder is built, so its series read 0 until something is dropped.
//! The facade's metadata (target, level, module path) is ignored: every metric is recorded.
//!
//! # Cost
//!
//! The macros call the recorder on every use (`counter!("x").increment(1)` registers `x`
//! each time) unless the caller keeps the handle. The recorder keeps, per thread, a cache from
//! facade key to handle (hashed with the key's precomputed hash), so a repeated macro call is
//! one thread-local hash lookup and an uncontended reference-count increment on an `Arc` that
//! only this thread clones: no lock and no shared read-modify-write. A held handle's
//! `increment` is weir's [`Counter::add`]. The first use of a key on a thread resolves it in the
//! registry (lock-free lookups; a mutex only when a family or series is created). Each thread's
//! cache holds at most 4,096 keys per kind and recorder, and is emptied when it would grow past
//! that (keys with unbounded label values stay correct, only slower). Cached handles are freed
//! when the thread exits; those of a dropped recorder also when the thread next meets another
//! recorder. See `docs/benchmarks.md` for measurements against `metrics-util`'s
//! registry.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use metrics::{Key, KeyName, Metadata, SharedString, Unit};

use crate::export::prometheus::RenderOptions;
use crate::registry::{Describe, Family, Metric};
use crate::{Counter, FloatGauge, Histogram, HistogramBuilder, HistogramError, Registry};
use crate::{RegistryError, registry::MetricKind};

/// The counter family (label `reason`) that counts facade updates weir did not record.
pub const REJECTED_METRIC: &str = "weir_metrics_rs_rejected_total";

/// Keys one thread caches per kind and recorder before its cache is emptied.
const THREAD_CACHE_LIMIT: usize = 4096;

// === errors ===

/// [`MetricsRecorder::install`] could not make the recorder the global one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstallError {
    /// A global `metrics` recorder is already installed (by this or another crate); it can be
    /// set only once per process. Keep the first, or use `metrics::with_local_recorder` /
    /// `metrics::set_default_local_recorder` for a scoped one.
    AlreadyInstalled,
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::AlreadyInstalled => {
                f.write_str("a global metrics recorder is already installed")
            }
        }
    }
}

impl std::error::Error for InstallError {}

/// A histogram scale given to [`MetricsRecorderBuilder`] cannot be used.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ScaleError {
    /// The scale must be finite and greater than zero, and so must its inverse (used by
    /// [`MetricsRecorder::render_options`]). Use e.g. `1e9` to record seconds as nanoseconds.
    NotPositiveFinite {
        /// The rejected scale.
        scale: f64,
    },
}

impl fmt::Display for ScaleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScaleError::NotPositiveFinite { scale } => write!(
                f,
                "histogram scale must be finite and greater than zero (and so its inverse), got {scale}"
            ),
        }
    }
}

impl std::error::Error for ScaleError {}

fn check_scale(scale: f64) -> Result<f64, ScaleError> {
    let inverse = 1.0 / scale;
    if scale.is_finite() && scale > 0.0 && inverse.is_finite() && inverse > 0.0 {
        Ok(scale)
    } else {
        Err(ScaleError::NotPositiveFinite { scale })
    }
}

// === names ===

/// The weir metric name for a facade metric name: characters outside `[a-zA-Z0-9_:]` become
/// `_`, a leading digit gets a `_` prefix, a leading run of underscores becomes one `_` (names
/// starting with `__` are reserved), and an empty name becomes `_`.
///
/// ```
/// use weir::export::metrics_rs::sanitize_metric_name;
/// assert_eq!(sanitize_metric_name("http.requests"), "http_requests");
/// assert_eq!(sanitize_metric_name("2xx-responses"), "_2xx_responses");
/// assert_eq!(sanitize_metric_name("__internal"), "_internal");
/// ```
pub fn sanitize_metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// The weir label name for a facade label name: as [`sanitize_metric_name`] but `:` is replaced
/// too, and the reserved names `le` and `quantile` become `le_` and `quantile_`.
///
/// ```
/// use weir::export::metrics_rs::sanitize_label_name;
/// assert_eq!(sanitize_label_name("http.method"), "http_method");
/// assert_eq!(sanitize_label_name("le"), "le_");
/// ```
pub fn sanitize_label_name(name: &str) -> String {
    let mut s = sanitize(name, false);
    if s == "le" || s == "quantile" {
        s.push('_');
    }
    s
}

fn sanitize(name: &str, allow_colon: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':');
        out.push(if ok { c } else { '_' });
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    if out.starts_with("__") {
        let trimmed = out.trim_start_matches('_').len();
        out.replace_range(..out.len() - trimmed - 1, "");
    }
    out
}

/// Sanitized, de-duplicated label names of a key, in the key's order.
fn label_names(key: &Key) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(key.labels().len());
    for label in key.labels() {
        let base = sanitize_label_name(label.key());
        let mut name = base.clone();
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        names.push(name);
    }
    names
}

/// The weir unit for a facade unit, if the family name carries it as OpenMetrics requires.
fn unit_for(name: &str, unit: Option<Unit>) -> Option<&'static str> {
    let unit = unit.filter(|u| *u != Unit::Count)?.as_str();
    let base = name.strip_suffix("_total").unwrap_or(name);
    base.strip_suffix(unit)
        .is_some_and(|rest| rest.ends_with('_'))
        .then_some(unit)
}

fn nanos_per(unit: Unit) -> Option<f64> {
    match unit {
        Unit::Seconds => Some(1e9),
        Unit::Milliseconds => Some(1e6),
        Unit::Microseconds => Some(1e3),
        Unit::Nanoseconds => Some(1.0),
        _ => None,
    }
}

// === handles ===

/// Counters for facade updates that were not recorded, one per reason.
#[derive(Debug)]
struct Rejected {
    negative: Counter,
    nan: Counter,
    infinite: Counter,
    conflict: Counter,
}

impl Rejected {
    fn new(registry: &Registry) -> Rejected {
        let family = registry
            .counter_family(
                REJECTED_METRIC,
                "Updates through the metrics facade that weir did not record, by reason",
                &["reason"],
            )
            .ok();
        // If the name is taken by something else, count into detached counters instead.
        let make = |reason: &str| {
            family
                .as_ref()
                .and_then(|f| f.with(&[reason]).ok())
                .unwrap_or_default()
        };
        Rejected {
            negative: make("negative"),
            nan: make("nan"),
            infinite: make("infinite"),
            conflict: make("conflict"),
        }
    }
}

/// A facade counter: a weir counter, or (for a key that could not be registered) the counter
/// of dropped updates.
#[derive(Debug)]
enum CounterHandle {
    Series(Counter),
    Dropped(Counter),
}

/// Serializes `absolute` updates (rare: mirroring an external counter), so that two of them
/// racing cannot both add the same difference.
static ABSOLUTE: Mutex<()> = Mutex::new(());

impl metrics::CounterFn for CounterHandle {
    #[inline]
    fn increment(&self, value: u64) {
        match self {
            CounterHandle::Series(c) => c.add(value),
            CounterHandle::Dropped(rejected) => rejected.inc(),
        }
    }

    fn absolute(&self, value: u64) {
        match self {
            CounterHandle::Series(c) => {
                let _serial = ABSOLUTE.lock().unwrap_or_else(PoisonError::into_inner);
                // The mutex orders this read after every earlier `absolute` add.
                let current = c.get();
                if value > current {
                    c.add(value - current);
                }
            }
            CounterHandle::Dropped(rejected) => rejected.inc(),
        }
    }
}

/// A facade gauge: a weir float gauge, or the counter of dropped updates.
#[derive(Debug)]
enum GaugeHandle {
    Series(FloatGauge),
    Dropped(Counter),
}

impl metrics::GaugeFn for GaugeHandle {
    #[inline]
    fn increment(&self, value: f64) {
        match self {
            GaugeHandle::Series(g) => g.add(value),
            GaugeHandle::Dropped(rejected) => rejected.inc(),
        }
    }

    #[inline]
    fn decrement(&self, value: f64) {
        match self {
            GaugeHandle::Series(g) => g.add(-value),
            GaugeHandle::Dropped(rejected) => rejected.inc(),
        }
    }

    #[inline]
    fn set(&self, value: f64) {
        match self {
            GaugeHandle::Series(g) => g.set(value),
            GaugeHandle::Dropped(rejected) => rejected.inc(),
        }
    }
}

/// A facade histogram: a weir histogram and the scale its values are recorded with, or the
/// counter of dropped updates.
#[derive(Debug)]
enum HistogramHandle {
    Series {
        histogram: Histogram,
        scale: f64,
        rejected: Arc<Rejected>,
    },
    Dropped(Counter),
}

impl HistogramHandle {
    #[inline]
    fn record_n(&self, value: f64, n: u64) {
        match self {
            HistogramHandle::Series {
                histogram,
                scale,
                rejected,
            } => {
                let scaled = value * scale;
                if scaled.is_nan() {
                    rejected.nan.add(n);
                } else if scaled < 0.0 {
                    rejected.negative.add(n);
                } else if scaled == f64::INFINITY {
                    rejected.infinite.add(n);
                } else {
                    // `as` saturates: values beyond u64::MAX become u64::MAX, which the
                    // histogram clamps into its top bucket and counts as saturated.
                    histogram.record_n(scaled.round() as u64, n);
                }
            }
            HistogramHandle::Dropped(rejected) => rejected.add(n),
        }
    }
}

impl metrics::HistogramFn for HistogramHandle {
    #[inline]
    fn record(&self, value: f64) {
        self.record_n(value, 1);
    }

    fn record_many(&self, value: f64, count: usize) {
        self.record_n(value, count as u64);
    }
}

// === thread caches ===

/// Keys are `Key::get_hash()` already (a hash computed once per key, at compile time for
/// static keys).
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in so the hasher stays correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The handles cached under one key hash: almost always one, more only on a hash collision.
struct Bucket<H> {
    first: (Key, Arc<H>),
    rest: Vec<(Key, Arc<H>)>,
}

type KeyMap<H> = HashMap<u64, Bucket<H>, BuildHasherDefault<IdentityHasher>>;

/// `a == b`, without comparing strings when both keys share their name and label storage (a
/// static key and its cached clone do).
#[inline]
fn same_key(a: &Key, b: &Key) -> bool {
    if a.get_hash() != b.get_hash() {
        return false;
    }
    // Fat-pointer equality: same address and same length.
    if std::ptr::eq(a.name(), b.name())
        && std::ptr::eq(a.labels().as_slice(), b.labels().as_slice())
    {
        return true;
    }
    a == b
}

fn lookup<H>(map: &KeyMap<H>, key: &Key) -> Option<Arc<H>> {
    let bucket = map.get(&key.get_hash())?;
    if same_key(&bucket.first.0, key) {
        return Some(bucket.first.1.clone());
    }
    bucket
        .rest
        .iter()
        .find(|(k, _)| same_key(k, key))
        .map(|(_, h)| h.clone())
}

fn insert<H>(map: &mut KeyMap<H>, key: &Key, handle: Arc<H>) {
    if map.len() >= THREAD_CACHE_LIMIT {
        map.clear();
    }
    let entry = (key.clone(), handle);
    match map.get_mut(&key.get_hash()) {
        Some(bucket) => bucket.rest.push(entry),
        None => {
            map.insert(
                key.get_hash(),
                Bucket {
                    first: entry,
                    rest: Vec::new(),
                },
            );
        }
    }
}

/// One thread's cached handles for one recorder.
struct ThreadCache {
    recorder: u64,
    alive: Weak<Inner>,
    counters: KeyMap<CounterHandle>,
    gauges: KeyMap<GaugeHandle>,
    histograms: KeyMap<HistogramHandle>,
}

thread_local! {
    static CACHES: RefCell<Vec<ThreadCache>> = const { RefCell::new(Vec::new()) };
}

/// A handle kind the recorder hands out, and where a thread caches it.
trait Cached: Sized + Send + Sync + 'static {
    fn map(cache: &mut ThreadCache) -> &mut KeyMap<Self>;
}

impl Cached for CounterHandle {
    fn map(cache: &mut ThreadCache) -> &mut KeyMap<Self> {
        &mut cache.counters
    }
}
impl Cached for GaugeHandle {
    fn map(cache: &mut ThreadCache) -> &mut KeyMap<Self> {
        &mut cache.gauges
    }
}
impl Cached for HistogramHandle {
    fn map(cache: &mut ThreadCache) -> &mut KeyMap<Self> {
        &mut cache.histograms
    }
}

/// Runs `f` on this thread's cache for `inner`, creating it if absent. `None` when the thread's
/// storage is gone (thread exit) or already borrowed.
fn with_thread_cache<R>(inner: &Arc<Inner>, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
    CACHES
        .try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            let i = match caches.iter().position(|c| c.recorder == inner.id) {
                Some(i) => i,
                None => {
                    // Drop the caches of recorders that are gone before adding one.
                    caches.retain(|c| c.alive.strong_count() > 0);
                    caches.push(ThreadCache {
                        recorder: inner.id,
                        alive: Arc::downgrade(inner),
                        counters: KeyMap::default(),
                        gauges: KeyMap::default(),
                        histograms: KeyMap::default(),
                    });
                    caches.len() - 1
                }
            };
            Some(f(&mut caches[i]))
        })
        .ok()
        .flatten()
}

/// The handle for `key` from this thread's cache, or made by `make` and cached.
#[inline]
fn cached<H: Cached>(inner: &Arc<Inner>, key: &Key, make: impl FnOnce() -> H) -> Arc<H> {
    if let Some(Some(hit)) = with_thread_cache(inner, |c| lookup(H::map(c), key)) {
        return hit;
    }
    // Resolve outside the cache borrow: registration takes the registry's locks. A key that
    // raced in meanwhile (only through re-entrancy) is simply cached twice in the bucket.
    let handle = Arc::new(make());
    with_thread_cache(inner, |c| insert(H::map(c), key, handle.clone()));
    handle
}

// === recorder ===

/// What `describe_*` said about a name.
#[derive(Debug)]
struct Description {
    help: SharedString,
    unit: Option<Unit>,
}

#[derive(Debug, Default)]
struct State {
    /// Descriptions by sanitized name.
    descriptions: HashMap<String, Description>,
    /// The scale of every histogram family this recorder registered, by family name.
    histogram_scales: BTreeMap<String, f64>,
}

#[derive(Debug, Clone)]
struct Options {
    default_scale: f64,
    time_to_nanos: bool,
    scales: HashMap<String, f64>,
    layout: Option<HistogramBuilder>,
}

struct Inner {
    /// Unique per recorder (never reused), so thread caches never mix recorders.
    id: u64,
    registry: Registry,
    options: Options,
    state: Mutex<State>,
    rejected: Arc<Rejected>,
}

static NEXT_RECORDER_ID: AtomicU64 = AtomicU64::new(0);

/// A [`metrics::Recorder`] that records into a weir [`Registry`].
///
/// `Clone` shares the recorder (and its per-thread caches). Use it as a local recorder with
/// `metrics::with_local_recorder(&recorder, ...)`, or make it the global one with
/// [`install`](MetricsRecorder::install). See the [module docs](self) for how facade names,
/// labels, units and values map to weir.
#[derive(Clone)]
pub struct MetricsRecorder {
    inner: Arc<Inner>,
}

impl fmt::Debug for MetricsRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsRecorder")
            .field("registry", &self.inner.registry)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// Makes a recorder for `registry` with the default options and installs it as the global
/// `metrics` recorder (see [`MetricsRecorder::install`]).
pub fn install(registry: &Registry) -> Result<(), InstallError> {
    MetricsRecorder::new(registry).install()
}

/// Options for a [`MetricsRecorder`]: histogram scales and layout. Made by
/// [`MetricsRecorder::builder`].
///
/// ```
/// use weir::export::metrics_rs::MetricsRecorder;
///
/// let registry = weir::Registry::new();
/// let recorder = MetricsRecorder::builder(&registry)
///     // `request.time` is recorded in seconds: keep nanoseconds.
///     .histogram_scale_for("request.time", 1e9)?
///     .build();
/// metrics::with_local_recorder(&recorder, || {
///     metrics::histogram!("request.time").record(0.25);
/// });
/// let h = registry.snapshot().histogram("request_time", &[]).cloned().unwrap();
/// assert_eq!(h.count(), 1);
/// assert!(h.value_at_quantile(1.0) >= 249_000_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct MetricsRecorderBuilder {
    registry: Registry,
    options: Options,
}

impl MetricsRecorderBuilder {
    /// The scale for histograms that have no scale of their own (no
    /// [`histogram_scale_for`](Self::histogram_scale_for), no described time unit). Default 1.
    pub fn histogram_scale(mut self, scale: f64) -> Result<Self, ScaleError> {
        self.options.default_scale = check_scale(scale)?;
        Ok(self)
    }

    /// The scale for the histogram named `name` (facade or sanitized spelling; the fallback
    /// families of a conflicting name keep this scale).
    pub fn histogram_scale_for(mut self, name: &str, scale: f64) -> Result<Self, ScaleError> {
        self.options
            .scales
            .insert(sanitize_metric_name(name), check_scale(scale)?);
        Ok(self)
    }

    /// Whether histograms described with a time unit are recorded in nanoseconds (default
    /// `true`): `Seconds` values × 1e9, `Milliseconds` × 1e6, `Microseconds` × 1e3.
    pub fn time_units_as_nanoseconds(mut self, on: bool) -> Self {
        self.options.time_to_nanos = on;
        self
    }

    /// The bucket layout of the histogram families this recorder registers (default:
    /// [`Histogram::new`]'s, 1 to 3.6e12 with 3 significant digits).
    pub fn histogram_layout(mut self, layout: HistogramBuilder) -> Result<Self, HistogramError> {
        layout.build()?;
        self.options.layout = Some(layout);
        Ok(self)
    }

    /// Builds the recorder, registering `weir_metrics_rs_rejected_total` in the registry.
    pub fn build(self) -> MetricsRecorder {
        MetricsRecorder {
            inner: Arc::new(Inner {
                // Relaxed: only uniqueness matters.
                id: NEXT_RECORDER_ID.fetch_add(1, Ordering::Relaxed),
                rejected: Arc::new(Rejected::new(&self.registry)),
                registry: self.registry,
                options: self.options,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Builds the recorder and installs it as the global `metrics` recorder; returns a handle
    /// that shares it (for [`render_options`](MetricsRecorder::render_options)).
    pub fn install(self) -> Result<MetricsRecorder, InstallError> {
        let recorder = self.build();
        recorder.clone().install()?;
        Ok(recorder)
    }
}

impl MetricsRecorder {
    /// A recorder for `registry` with the default options.
    pub fn new(registry: &Registry) -> MetricsRecorder {
        MetricsRecorder::builder(registry).build()
    }

    /// A builder for a recorder with custom histogram scales or layout.
    pub fn builder(registry: &Registry) -> MetricsRecorderBuilder {
        MetricsRecorderBuilder {
            registry: registry.clone(),
            options: Options {
                default_scale: 1.0,
                time_to_nanos: true,
                scales: HashMap::new(),
                layout: None,
            },
        }
    }

    /// The registry this recorder records into.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Makes this recorder the global `metrics` recorder, for every thread that has no local
    /// one. It stays installed for the life of the process.
    pub fn install(self) -> Result<(), InstallError> {
        metrics::set_global_recorder(self).map_err(|_| InstallError::AlreadyInstalled)
    }

    /// The scale this recorder records the histogram family `family` (weir name) with, if it
    /// registered it.
    pub fn histogram_scale(&self, family: &str) -> Option<f64> {
        self.inner.lock().histogram_scales.get(family).copied()
    }

    /// `options` plus, for every histogram family registered so far with a scale other than 1,
    /// [`RenderOptions::scale`] by the inverse, so that exported values are in the facade's
    /// unit again (replacing a scale `options` had for that family). Call it again after new
    /// families appear (e.g. on every scrape).
    ///
    /// ```
    /// use weir::export::metrics_rs::MetricsRecorder;
    /// use weir::export::prometheus::{self, RenderOptions};
    ///
    /// let registry = weir::Registry::new();
    /// let recorder = MetricsRecorder::new(&registry);
    /// metrics::with_local_recorder(&recorder, || {
    ///     metrics::describe_histogram!("rpc_seconds", metrics::Unit::Seconds, "RPC latency");
    ///     metrics::histogram!("rpc_seconds").record(0.0015); // kept as 1,500,000 ns
    /// });
    /// let options = recorder.render_options(RenderOptions::new());
    /// let text = prometheus::render_with(&registry.snapshot(), &options);
    /// assert!(text.contains("rpc_seconds_sum 0.0015\n"));
    /// ```
    pub fn render_options(&self, mut options: RenderOptions) -> RenderOptions {
        let scales = self.inner.lock().histogram_scales.clone();
        for (family, scale) in scales {
            if scale != 1.0 {
                // Scales are checked finite and positive with a finite inverse, so this
                // succeeds; on the impossible error the options are kept as they were.
                options = options
                    .clone()
                    .scale(&family, 1.0 / scale)
                    .unwrap_or(options);
            }
        }
        options
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        let name = sanitize_metric_name(key.as_str());
        self.lock()
            .descriptions
            .insert(name, Description { help, unit });
    }

    /// Registers (or finds) the series for `key` as an `M`, trying the fallback family names
    /// on a conflict. Returns the series and its family's name.
    fn resolve<M: Metric>(
        &self,
        key: &Key,
        register: fn(Describe<'_>, &[&str]) -> Result<Family<M>, RegistryError>,
    ) -> Option<(M, String)> {
        let name = sanitize_metric_name(key.name());
        let names = label_names(key);
        let values: Vec<&str> = key.labels().map(|l| l.value()).collect();
        match self.register_in(&name, &name, &names, &values, register) {
            Ok(found) => Some(found),
            Err(RegistryError::KindMismatch { .. }) => {
                let kind = match M::KIND {
                    MetricKind::Counter => "counter",
                    MetricKind::Histogram => "histogram",
                    _ => "gauge",
                };
                let alt = format!("{name}_{kind}");
                self.register_in(&name, &alt, &names, &values, register)
                    .ok()
            }
            Err(RegistryError::SchemaMismatch { .. }) => {
                let alt = if names.is_empty() {
                    format!("{name}_unlabeled")
                } else {
                    let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
                    sorted.sort_unstable();
                    format!("{name}_by_{}", sorted.join("_"))
                };
                self.register_in(&name, &alt, &names, &values, register)
                    .ok()
            }
            Err(_) => None,
        }
    }

    /// Registers family `family` (described as `described`) with these label names and
    /// returns the series for these values (given in the key's label order).
    fn register_in<M: Metric>(
        &self,
        described: &str,
        family: &str,
        names: &[String],
        values: &[&str],
        register: fn(Describe<'_>, &[&str]) -> Result<Family<M>, RegistryError>,
    ) -> Result<(M, String), RegistryError> {
        let (help, unit) = {
            let state = self.lock();
            match state.descriptions.get(described) {
                Some(d) => (d.help.to_string(), d.unit),
                None => (String::new(), None),
            }
        };
        let unit = unit_for(family, unit);
        let layout = self
            .options
            .layout
            .filter(|_| M::KIND == MetricKind::Histogram);
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let describe = |with_schema: bool| {
            let mut d = self.registry.describe(family, &help);
            if with_schema {
                if let Some(u) = unit {
                    d = d.unit(u);
                }
                if let Some(l) = layout {
                    d = d.histogram_layout(l);
                }
            }
            d
        };
        let fam = match register(describe(true), &name_refs) {
            Ok(f) => f,
            // A family registered elsewhere with another unit or layout: use it as it is.
            Err(RegistryError::SchemaMismatch { what, .. })
                if (unit.is_some() || layout.is_some()) && what != "label names" =>
            {
                register(describe(false), &name_refs)?
            }
            Err(e) => return Err(e),
        };
        // The family may list the same label names in another order.
        let mut ordered = Vec::with_capacity(values.len());
        for n in fam.label_names() {
            match names.iter().position(|k| k == n) {
                Some(i) => ordered.push(values[i]),
                None => {
                    return Err(RegistryError::SchemaMismatch {
                        name: family.to_owned(),
                        what: "label names",
                    });
                }
            }
        }
        Ok((fam.with(&ordered)?, family.to_owned()))
    }

    /// The scale of histogram family `family` (registered for facade name `described`), fixed
    /// the first time this recorder sees the family.
    fn histogram_scale(&self, described: &str, family: &str) -> f64 {
        let mut state = self.lock();
        if let Some(s) = state.histogram_scales.get(family) {
            return *s;
        }
        let unit_scale = state
            .descriptions
            .get(described)
            .and_then(|d| d.unit)
            .filter(|_| self.options.time_to_nanos)
            .and_then(nanos_per);
        let scale = self
            .options
            .scales
            .get(described)
            .copied()
            .or(unit_scale)
            .unwrap_or(self.options.default_scale);
        state.histogram_scales.insert(family.to_owned(), scale);
        scale
    }

    fn counter(&self, key: &Key) -> CounterHandle {
        match self.resolve::<Counter>(key, |d, l| d.counter_family(l)) {
            Some((c, _)) => CounterHandle::Series(c),
            None => CounterHandle::Dropped(self.rejected.conflict.clone()),
        }
    }

    fn gauge(&self, key: &Key) -> GaugeHandle {
        match self.resolve::<FloatGauge>(key, |d, l| d.float_gauge_family(l)) {
            Some((g, _)) => GaugeHandle::Series(g),
            None => GaugeHandle::Dropped(self.rejected.conflict.clone()),
        }
    }

    fn histogram(&self, key: &Key) -> HistogramHandle {
        match self.resolve::<Histogram>(key, |d, l| d.histogram_family(l)) {
            Some((histogram, family)) => HistogramHandle::Series {
                histogram,
                scale: self.histogram_scale(&sanitize_metric_name(key.name()), &family),
                rejected: self.rejected.clone(),
            },
            None => HistogramHandle::Dropped(self.rejected.conflict.clone()),
        }
    }
}

impl metrics::Recorder for MetricsRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(cached(&self.inner, key, || self.inner.counter(key)))
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(cached(&self.inner, key, || self.inner.gauge(key)))
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::from_arc(cached(&self.inner, key, || self.inner.histogram(key)))
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_names() {
        assert_eq!(sanitize_metric_name("a.b-c d"), "a_b_c_d");
        assert_eq!(sanitize_metric_name("ns:sub"), "ns:sub");
        assert_eq!(sanitize_metric_name(""), "_");
        assert_eq!(sanitize_metric_name("9lives"), "_9lives");
        assert_eq!(sanitize_metric_name("___x"), "_x");
        assert_eq!(sanitize_metric_name("__"), "_");
        assert_eq!(sanitize_metric_name("é"), "_");
        assert_eq!(sanitize_label_name("a:b"), "a_b");
        assert_eq!(sanitize_label_name("quantile"), "quantile_");
        assert_eq!(sanitize_label_name("__name__"), "_name__");
        let registry = Registry::new();
        for n in ["a.b", "", "9", "__", "é", "x-y", "_:_", "le"] {
            let name = sanitize_metric_name(n);
            let label = sanitize_label_name(n);
            let labels = [(label.as_str(), "v")];
            assert!(registry.counter(&name, "", &labels).is_ok(), "{n:?}");
        }
    }

    #[test]
    fn duplicate_label_names_get_suffixes() {
        let key = Key::from_parts(
            "x",
            vec![
                metrics::Label::new("a", "1"),
                metrics::Label::new("a", "2"),
                metrics::Label::new("a.", "3"),
                metrics::Label::new("a_", "4"),
            ],
        );
        assert_eq!(label_names(&key), ["a", "a_2", "a_", "a__2"]);
    }

    #[test]
    fn units_need_the_suffix() {
        assert_eq!(
            unit_for("latency_seconds", Some(Unit::Seconds)),
            Some("seconds")
        );
        assert_eq!(
            unit_for("sent_bytes_total", Some(Unit::Bytes)),
            Some("bytes")
        );
        assert_eq!(unit_for("latency", Some(Unit::Seconds)), None);
        assert_eq!(unit_for("xseconds", Some(Unit::Seconds)), None);
        assert_eq!(unit_for("items_count", Some(Unit::Count)), None);
        assert_eq!(unit_for("items", None), None);
    }

    #[test]
    fn scales_are_checked() {
        assert!(check_scale(1e9).is_ok());
        for bad in [
            0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            1e-320,
            f64::MIN_POSITIVE / 4.0,
        ] {
            assert!(check_scale(bad).is_err(), "{bad}");
        }
    }
}
