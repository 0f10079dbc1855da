//! Named metrics with labels: registration, lock-free lookup, cardinality limits, snapshots.
//!
//! A [`Registry`] maps metric names to *families*; a family maps label values to *series*, each
//! series one [`Counter`], [`Gauge`], [`FloatGauge`] or [`Histogram`]. Registration returns the
//! metric's handle; recording through a handle never touches the registry.
//!
//! Lookups never take a lock. The name index and each family's series maps are immutable hash
//! maps published through `arc-swap`: a lookup is an `arc-swap` load (no shared read-modify-write,
//! so it stays flat as threads grow) plus a hash-map probe. Adding a name or a series takes the
//! registry's (or family's) registration mutex, copies the one small map it changes (series are
//! spread over 32 maps per family) and publishes the copy. Readers never wait for that mutex.
//!
//! # Orderings
//! `arc-swap` publishes each new map with release semantics and loads it with acquire semantics,
//! so a reader that sees a series sees it fully built. Registration counters (series sequence
//! numbers, snapshot sequence numbers) are `Relaxed` `fetch_add`s: they need only be unique and
//! increasing.

mod names;
mod publish;
mod snapshot;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use publish::{Published, PublishedReader, RefresherHandle, Window};
pub use snapshot::{FamilySnapshot, MetricKind, RegistrySnapshot, SeriesSnapshot, Value};

use crate::clock::{SharedClock, SystemClock};
use crate::counter::{Counter, FloatGauge, Gauge};
use crate::error::RegistryError;
use crate::histogram::{Histogram, HistogramBuilder, Layout};
use crate::sync::{AtomicU64, Mutex, Ordering, lock};

/// Default limit on the number of series in one family.
pub const DEFAULT_CARDINALITY_LIMIT: usize = 10_000;
/// The label value every label of a family's overflow series carries.
pub const OVERFLOW_LABEL_VALUE: &str = "__overflow__";
/// The counter family (label `metric`) that counts lookups redirected to overflow series.
pub const OVERFLOW_METRIC: &str = "weir_series_overflow_total";

const SERIES_SHARDS: usize = 32;

// === label keys ===

/// Label values, borrowed (`&[&str]`) or owned, hashed and compared the same way.
trait Parts {
    fn len(&self) -> usize;
    fn part(&self, i: usize) -> &str;
}

impl Parts for &[&str] {
    fn len(&self) -> usize {
        <[&str]>::len(self)
    }
    fn part(&self, i: usize) -> &str {
        self[i]
    }
}

impl Parts for Arc<[Arc<str>]> {
    fn len(&self) -> usize {
        <[Arc<str>]>::len(self)
    }
    fn part(&self, i: usize) -> &str {
        &self[i]
    }
}

/// A keyed hash of label values: a folded 64x64->128 multiply per 8 bytes, with two secret
/// per-family keys drawn from the standard library's random source. It costs a few dozen
/// instructions where SipHash costs hundreds (half of a labeled lookup), and an attacker who
/// does not know the keys cannot aim label values at one chain. Every value's length is mixed
/// in, so `["ab", ""]` and `["a", "b"]` differ.
#[derive(Clone, Copy)]
struct LabelHasher {
    k0: u64,
    k1: u64,
}

#[inline(always)]
fn folded_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl LabelHasher {
    fn new() -> LabelHasher {
        let seed = RandomState::new();
        let k0 = seed.hash_one(0x5745_4952_u64) | 1;
        let k1 = seed.hash_one(0x4c41_4245_u64) | 1;
        LabelHasher { k0, k1 }
    }

    #[inline]
    fn hash(&self, p: &impl Parts) -> u64 {
        let mut h = self.k0 ^ (p.len() as u64);
        for i in 0..p.len() {
            let bytes = p.part(i).as_bytes();
            let mut chunks = bytes.chunks_exact(8);
            for c in &mut chunks {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                h = folded_mul(h ^ u64::from_le_bytes(w), self.k1);
            }
            let rest = chunks.remainder();
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // The tail holds at most 7 bytes, so the length's low byte lands in the free top byte.
            let tail = u64::from_le_bytes(w) ^ (bytes.len() as u64).rotate_right(8);
            h = folded_mul(h ^ tail, self.k1);
        }
        folded_mul(h, self.k0)
    }
}

fn parts_eq(a: &impl Parts, b: &impl Parts) -> bool {
    a.len() == b.len() && (0..a.len()).all(|i| a.part(i) == b.part(i))
}

// === metric handles ===

/// A metric kind that can live in a [`Registry`] family. Sealed: implemented by [`Counter`],
/// [`Gauge`], [`FloatGauge`] and [`Histogram`].
pub trait Metric: Clone + Send + Sync + sealed::Sealed + 'static {
    /// The kind of this metric.
    const KIND: MetricKind;
    #[doc(hidden)]
    fn from_any(any: &AnyMetric) -> Option<&Self>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Counter {}
    impl Sealed for crate::Gauge {}
    impl Sealed for crate::FloatGauge {}
    impl Sealed for crate::Histogram {}
}

/// A registered metric of any kind (used internally by families).
#[doc(hidden)]
#[derive(Clone, Debug)]
pub enum AnyMetric {
    Counter(Counter),
    Gauge(Gauge),
    FloatGauge(FloatGauge),
    Histogram(Histogram),
}

impl AnyMetric {
    fn read(&self) -> Value {
        match self {
            AnyMetric::Counter(c) => Value::Counter(c.get()),
            AnyMetric::Gauge(g) => Value::Gauge(g.get()),
            AnyMetric::FloatGauge(g) => Value::FloatGauge(g.get()),
            AnyMetric::Histogram(h) => Value::Histogram(h.snapshot()),
        }
    }
}

macro_rules! impl_metric {
    ($t:ident, $kind:ident) => {
        impl Metric for $t {
            const KIND: MetricKind = MetricKind::$kind;
            fn from_any(any: &AnyMetric) -> Option<&Self> {
                match any {
                    AnyMetric::$kind(m) => Some(m),
                    _ => None,
                }
            }
        }
    };
}
impl_metric!(Counter, Counter);
impl_metric!(Gauge, Gauge);
impl_metric!(FloatGauge, FloatGauge);
impl_metric!(Histogram, Histogram);

// === families ===

/// One series: its label values, its metric, and its registration order.
struct Series {
    values: Arc<[Arc<str>]>,
    metric: AnyMetric,
    seq: u64,
    /// Next series with the same hash (collisions chain; chains are immutable once published).
    next: Option<Arc<Series>>,
}

/// Keys are hashes already computed with the family's `LabelHasher`.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in for safety.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A series gathered for a snapshot: (registration sequence, label values, metric).
type Collected = (u64, Arc<[Arc<str>]>, AnyMetric);

type SeriesMap = HashMap<u64, Arc<Series>, BuildHasherDefault<IdentityHasher>>;

struct FamilyCore {
    name: Arc<str>,
    help: Arc<str>,
    unit: Option<Arc<str>>,
    kind: MetricKind,
    label_names: Arc<[Arc<str>]>,
    layout: Option<Layout>,
    limit: usize,
    hasher: LabelHasher,
    shards: [ArcSwap<SeriesMap>; SERIES_SHARDS],
    /// Serializes series creation; held only while adding a series, never by lookups.
    insert: Mutex<FamilyState>,
    /// The overflow series, made once (under `insert`) and read by snapshots without a lock.
    /// Once set it stays set (series are never removed, so a full family stays full), and a
    /// lookup that misses goes to it without taking `insert`.
    overflow: std::sync::OnceLock<AnyMetric>,
    /// `weir_series_overflow_total{metric="<name>"}`, made (under `insert`) before `overflow`
    /// is set; `None` when the registry is gone or refused the name.
    overflow_count: std::sync::OnceLock<Option<Counter>>,
    /// The sequence numbers of the family's series sorted by label values, as the last
    /// snapshot found them; taken only by snapshots.
    label_order: Mutex<Vec<u64>>,
    registry: std::sync::Weak<RegistryInner>,
}

struct FamilyState {
    len: usize,
}

impl FamilyCore {
    fn hash_of(&self, p: &impl Parts) -> u64 {
        self.hasher.hash(p)
    }

    #[inline]
    fn find(&self, hash: u64, p: &impl Parts) -> Option<AnyMetric> {
        let shard = self.shards[(hash >> 59) as usize % SERIES_SHARDS].load();
        let mut cur = shard.get(&hash);
        while let Some(s) = cur {
            if parts_eq(&s.values, p) {
                return Some(s.metric.clone());
            }
            cur = s.next.as_ref();
        }
        None
    }

    /// Runs `f` on the series while the shard map is pinned (no handle clone, no refcount
    /// traffic); gives `f` back when the series does not exist.
    #[inline]
    fn with_found<R, F: FnOnce(&AnyMetric) -> R>(
        &self,
        hash: u64,
        p: &impl Parts,
        f: F,
    ) -> Result<R, F> {
        let shard = self.shards[(hash >> 59) as usize % SERIES_SHARDS].load();
        let mut cur = shard.get(&hash);
        while let Some(s) = cur {
            if parts_eq(&s.values, p) {
                return Ok(f(&s.metric));
            }
            cur = s.next.as_ref();
        }
        Err(f)
    }

    fn new_metric(&self) -> AnyMetric {
        match self.kind {
            MetricKind::Counter => AnyMetric::Counter(Counter::new()),
            MetricKind::Gauge => AnyMetric::Gauge(Gauge::new()),
            MetricKind::FloatGauge => AnyMetric::FloatGauge(FloatGauge::new()),
            MetricKind::Histogram => AnyMetric::Histogram(match self.layout {
                Some(l) => Histogram::with_layout(l),
                None => Histogram::new(),
            }),
        }
    }

    fn check_count(&self, got: usize) -> Result<(), RegistryError> {
        if got == self.label_names.len() {
            Ok(())
        } else {
            Err(RegistryError::LabelCount {
                name: self.name.to_string(),
                expected: self.label_names.len(),
                got,
            })
        }
    }

    /// The series for `values`, creating it (or redirecting to the overflow series) if absent.
    fn get_or_create(&self, values: &[&str]) -> Result<AnyMetric, RegistryError> {
        self.check_count(values.len())?;
        let hash = self.hash_of(&values);
        if let Some(m) = self.find(hash, &values) {
            return Ok(m);
        }
        self.create(hash, values)
    }

    #[cold]
    fn create(&self, hash: u64, values: &[&str]) -> Result<AnyMetric, RegistryError> {
        // A family that has overflowed stays full, so a new label set goes to the overflow
        // series without the creation lock: a flood of new label values never contends on it.
        if let Some(m) = self.overflow.get() {
            self.count_overflow();
            return Ok(m.clone());
        }
        let mut state = lock(&self.insert);
        // Re-check under the lock: another thread may have created it meanwhile.
        if let Some(m) = self.find(hash, &values) {
            return Ok(m);
        }
        if state.len >= self.limit {
            return Ok(self.overflow());
        }
        let registry = self.registry.upgrade();
        let seq = registry.as_ref().map_or(0, |r| r.next_series());
        let metric = self.new_metric();
        let shard = &self.shards[(hash >> 59) as usize % SERIES_SHARDS];
        let mut map: SeriesMap = (**shard.load()).clone();
        let next = map.get(&hash).cloned();
        map.insert(
            hash,
            Arc::new(Series {
                values: values.iter().map(|v| Arc::<str>::from(*v)).collect(),
                metric: metric.clone(),
                seq,
                next,
            }),
        );
        shard.store(Arc::new(map));
        state.len += 1;
        Ok(metric)
    }

    /// The overflow series, made on first use; called with `insert` held.
    fn overflow(&self) -> AnyMetric {
        // The counter first: a thread that sees `overflow` set (OnceLock reads are Acquire,
        // its initialization a Release) then sees `overflow_count` set too.
        self.overflow_count.get_or_init(|| {
            let registry = self.registry.upgrade()?;
            Registry { inner: registry }
                .counter(
                    OVERFLOW_METRIC,
                    "Lookups of new series redirected to the overflow series because their family reached its cardinality limit",
                    &[("metric", &self.name)],
                )
                .ok()
        });
        self.count_overflow();
        self.overflow.get_or_init(|| self.new_metric()).clone()
    }

    fn count_overflow(&self) {
        if let Some(Some(c)) = self.overflow_count.get() {
            c.inc();
        }
    }

    /// Orders `positions` (indexes into `all`, this family's series) by label values, reusing
    /// the order the last snapshot computed when the family holds the same series. `by_seq`
    /// maps sequence numbers to indexes into `all` (see [`read_newest_first`]).
    fn sort_by_labels(
        &self,
        fi: usize,
        all: &[(usize, Collected)],
        by_seq: Option<&[usize]>,
        positions: &mut [usize],
    ) {
        let mut cached = lock(&self.label_order);
        if let Some(by_seq) = by_seq
            && cached.len() == positions.len()
        {
            let overflow = positions.iter().copied().find(|&i| all[i].1.0 == u64::MAX);
            let mut reordered = Vec::with_capacity(positions.len());
            for &seq in cached.iter() {
                let i = if seq == u64::MAX {
                    overflow
                } else {
                    usize::try_from(seq)
                        .ok()
                        .and_then(|s| by_seq.get(s).copied())
                        .filter(|&i| i != usize::MAX && all[i].0 == fi)
                };
                match i {
                    Some(i) => reordered.push(i),
                    None => break,
                }
            }
            // Same count, unique sequence numbers, all of this family's: the same series.
            if reordered.len() == positions.len() {
                positions.copy_from_slice(&reordered);
                return;
            }
        }
        positions.sort_unstable_by(|&a, &b| all[a].1.1.cmp(&all[b].1.1));
        cached.clear();
        cached.extend(positions.iter().map(|&i| all[i].1.0));
    }

    fn collect(&self, out: &mut Vec<Collected>) {
        for shard in &self.shards {
            let map = shard.load();
            for head in map.values() {
                let mut cur = Some(head);
                while let Some(s) = cur {
                    out.push((s.seq, s.values.clone(), s.metric.clone()));
                    cur = s.next.as_ref();
                }
            }
        }
        // No lock: a snapshot never waits for (or delays) series creation.
        if let Some(m) = self.overflow.get() {
            let values: Arc<[Arc<str>]> = self
                .label_names
                .iter()
                .map(|_| Arc::<str>::from(OVERFLOW_LABEL_VALUE))
                .collect();
            out.push((u64::MAX, values, m.clone()));
        }
    }
}

/// A metric family: one name, fixed label names, and one series of `M` per set of label values.
///
/// ```
/// let registry = weir::Registry::new();
/// let requests = registry.counter_family("http_requests_total", "Requests served", &["method", "code"])?;
/// requests.with(&["GET", "200"])?.inc();
/// requests.with_series(&["GET", "200"], |c| c.inc())?; // no refcount traffic at all
/// assert_eq!(registry.snapshot().counter("http_requests_total", &["GET", "200"]), Some(2));
/// # Ok::<(), weir::RegistryError>(())
/// ```
pub struct Family<M: Metric> {
    core: Arc<FamilyCore>,
    _kind: std::marker::PhantomData<fn() -> M>,
}

impl<M: Metric> Clone for Family<M> {
    fn clone(&self) -> Self {
        Family {
            core: self.core.clone(),
            _kind: std::marker::PhantomData,
        }
    }
}

impl<M: Metric> fmt::Debug for Family<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Family")
            .field("name", &self.core.name)
            .field("kind", &self.core.kind)
            .field("label_names", &self.core.label_names)
            .finish_non_exhaustive()
    }
}

impl<M: Metric> Family<M> {
    /// The handle of the series with these label values (one per label name, in order), created
    /// on first use. Once the family holds its cardinality limit of series, new label values get
    /// the family's overflow series (every label `__overflow__`) and the redirect is counted in
    /// `weir_series_overflow_total{metric="<name>"}`.
    pub fn with(&self, label_values: &[&str]) -> Result<M, RegistryError> {
        let any = self.core.get_or_create(label_values)?;
        Ok(downcast::<M>(&any).clone())
    }

    /// Runs `f` on the series with these label values without cloning its handle: a lock-free
    /// lookup with no shared read-modify-write, for recording straight through the family.
    pub fn with_series<R>(
        &self,
        label_values: &[&str],
        f: impl FnOnce(&M) -> R,
    ) -> Result<R, RegistryError> {
        let core = &*self.core;
        core.check_count(label_values.len())?;
        let hash = core.hash_of(&label_values);
        match core.with_found(hash, &label_values, |any| f(downcast::<M>(any))) {
            Ok(r) => Ok(r),
            Err(f) => {
                let any = core.create(hash, label_values)?;
                Ok(f(&any))
            }
        }
    }

    /// The family's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The family's label names.
    pub fn label_names(&self) -> Vec<&str> {
        self.core.label_names.iter().map(|n| &**n).collect()
    }
}

fn downcast<M: Metric>(any: &AnyMetric) -> &M {
    match M::from_any(any) {
        Some(m) => m,
        // A family only ever holds metrics of its own kind (checked at registration).
        None => unreachable!("family holds a metric of another kind"),
    }
}

// === registry ===

struct Index {
    by_name: HashMap<Arc<str>, Arc<FamilyCore>>,
    order: Vec<Arc<FamilyCore>>,
}

pub(crate) struct RegistryInner {
    clock: SharedClock,
    cardinality_limit: usize,
    index: ArcSwap<Index>,
    /// Serializes family creation; never taken by lookups.
    register: Mutex<()>,
    series_seq: AtomicU64,
    snapshot_seq: AtomicU64,
    publish: publish::State,
}

impl RegistryInner {
    fn next_series(&self) -> u64 {
        // Relaxed: only uniqueness and order of registration matter.
        self.series_seq.fetch_add(1, Ordering::Relaxed)
    }
}

/// A set of named metrics with labels, and the consistent snapshots readers share.
///
/// `Clone` shares the registry. See the module docs of [`Family`] for lookups, and
/// [`Registry::published`] for the lock-free published snapshot.
///
/// ```
/// let registry = weir::Registry::new();
/// let get = registry.counter("http_requests_total", "Requests served", &[("method", "GET")])?;
/// get.inc();
/// let latency = registry.histogram("http_request_duration_nanoseconds", "Latency", &[])?;
/// latency.record(1_200);
/// let snap = registry.snapshot();
/// assert_eq!(snap.counter("http_requests_total", &["GET"]), Some(1));
/// assert_eq!(snap.histogram("http_request_duration_nanoseconds", &[]).map(|h| h.count()), Some(1));
/// # Ok::<(), weir::RegistryError>(())
/// ```
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("families", &self.inner.index.load().order.len())
            .field("cardinality_limit", &self.inner.cardinality_limit)
            .finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::new()
    }
}

/// Builds a [`Registry`] with a custom clock, cardinality limit or window history.
#[derive(Debug, Clone)]
pub struct RegistryBuilder {
    clock: Option<SharedClock>,
    cardinality_limit: usize,
    history: std::time::Duration,
}

impl RegistryBuilder {
    /// The clock snapshots are timed by (default: a [`SystemClock`]).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }
    /// Default series limit per family (default 10,000; at least 1).
    pub fn cardinality_limit(mut self, limit: usize) -> Self {
        self.cardinality_limit = limit.max(1);
        self
    }
    /// How much snapshot history the refresher keeps for rolling windows (default 5 minutes):
    /// the longest window that can be asked for.
    pub fn history(mut self, history: std::time::Duration) -> Self {
        self.history = history;
        self
    }
    /// Builds the registry.
    pub fn build(self) -> Registry {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock::new()));
        let inner = Arc::new(RegistryInner {
            publish: publish::State::new(self.history, clock.now()),
            clock,
            cardinality_limit: self.cardinality_limit,
            index: ArcSwap::from_pointee(Index {
                by_name: HashMap::new(),
                order: Vec::new(),
            }),
            register: Mutex::new(()),
            series_seq: AtomicU64::new(0),
            snapshot_seq: AtomicU64::new(0),
        });
        Registry { inner }
    }
}

/// Options for one family: unit, histogram layout, cardinality limit. Made by
/// [`Registry::describe`].
///
/// ```
/// let registry = weir::Registry::new();
/// let latency = registry
///     .describe("request_duration_nanoseconds", "Request latency")
///     .unit("nanoseconds")
///     .histogram_layout(weir::Histogram::builder().significant_digits(2))
///     .cardinality_limit(100)
///     .histogram_family(&["route"])?;
/// latency.with(&["/users"])?.record(35_000);
/// # Ok::<(), weir::RegistryError>(())
/// ```
#[derive(Debug)]
pub struct Describe<'r> {
    registry: &'r Registry,
    name: String,
    help: String,
    unit: Option<String>,
    layout: Option<HistogramBuilder>,
    limit: Option<usize>,
}

impl Describe<'_> {
    /// The unit (`seconds`, `bytes`, ...): the name must end with `_<unit>` (or
    /// `_<unit>_total`).
    pub fn unit(mut self, unit: &str) -> Self {
        self.unit = Some(unit.to_owned());
        self
    }
    /// The bucket layout of a histogram family (default: [`Histogram::new`]'s).
    pub fn histogram_layout(mut self, builder: HistogramBuilder) -> Self {
        self.layout = Some(builder);
        self
    }
    /// This family's series limit (default: the registry's).
    pub fn cardinality_limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit.max(1));
        self
    }
    /// Registers (or finds) a counter family.
    pub fn counter_family(self, label_names: &[&str]) -> Result<Family<Counter>, RegistryError> {
        self.family(label_names)
    }
    /// Registers (or finds) a gauge family.
    pub fn gauge_family(self, label_names: &[&str]) -> Result<Family<Gauge>, RegistryError> {
        self.family(label_names)
    }
    /// Registers (or finds) a float gauge family.
    pub fn float_gauge_family(
        self,
        label_names: &[&str],
    ) -> Result<Family<FloatGauge>, RegistryError> {
        self.family(label_names)
    }
    /// Registers (or finds) a histogram family.
    pub fn histogram_family(
        self,
        label_names: &[&str],
    ) -> Result<Family<Histogram>, RegistryError> {
        self.family(label_names)
    }

    fn family<M: Metric>(self, label_names: &[&str]) -> Result<Family<M>, RegistryError> {
        let layout = match self.layout {
            Some(b) if M::KIND == MetricKind::Histogram => Some(
                b.build()
                    .map_err(|_| RegistryError::SchemaMismatch {
                        name: self.name.clone(),
                        what: "a valid histogram layout",
                    })?
                    .layout(),
            ),
            _ => None,
        };
        let core = self.registry.family_core(
            &self.name,
            &self.help,
            self.unit.as_deref(),
            M::KIND,
            label_names,
            layout,
            self.limit,
        )?;
        Ok(Family {
            core,
            _kind: std::marker::PhantomData,
        })
    }
}

impl Registry {
    /// A registry with a [`SystemClock`], a cardinality limit of 10,000 series per family and
    /// 5 minutes of window history.
    pub fn new() -> Registry {
        Registry::builder().build()
    }

    /// A builder for a registry with a custom clock, limit or history.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder {
            clock: None,
            cardinality_limit: DEFAULT_CARDINALITY_LIMIT,
            history: std::time::Duration::from_secs(300),
        }
    }

    /// The registry's clock.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// Options for a family (unit, histogram layout, cardinality limit), then its registration.
    pub fn describe(&self, name: &str, help: &str) -> Describe<'_> {
        Describe {
            registry: self,
            name: name.to_owned(),
            help: help.to_owned(),
            unit: None,
            layout: None,
            limit: None,
        }
    }

    /// Registers (or finds) the counter `name` with these labels and returns its handle.
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, RegistryError> {
        self.labeled::<Counter>(name, help, labels)
    }
    /// Registers (or finds) the gauge `name` with these labels and returns its handle.
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, RegistryError> {
        self.labeled::<Gauge>(name, help, labels)
    }
    /// Registers (or finds) the float gauge `name` with these labels and returns its handle.
    pub fn float_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<FloatGauge, RegistryError> {
        self.labeled::<FloatGauge>(name, help, labels)
    }
    /// Registers (or finds) the histogram `name` (default layout) with these labels and returns
    /// its handle. Use [`describe`](Registry::describe) for another layout.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Histogram, RegistryError> {
        self.labeled::<Histogram>(name, help, labels)
    }

    /// Registers (or finds) a counter family with these label names.
    pub fn counter_family(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<Family<Counter>, RegistryError> {
        self.describe(name, help).counter_family(label_names)
    }
    /// Registers (or finds) a gauge family with these label names.
    pub fn gauge_family(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<Family<Gauge>, RegistryError> {
        self.describe(name, help).gauge_family(label_names)
    }
    /// Registers (or finds) a float gauge family with these label names.
    pub fn float_gauge_family(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<Family<FloatGauge>, RegistryError> {
        self.describe(name, help).float_gauge_family(label_names)
    }
    /// Registers (or finds) a histogram family (default layout) with these label names.
    pub fn histogram_family(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<Family<Histogram>, RegistryError> {
        self.describe(name, help).histogram_family(label_names)
    }

    fn labeled<M: Metric>(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<M, RegistryError> {
        // Fast path: an existing family, label names in the family's order.
        if let Some(core) = self.inner.index.load().by_name.get(name)
            && core.kind == M::KIND
            && labels.len() <= 8
            && core.label_names.len() == labels.len()
            && core
                .label_names
                .iter()
                .zip(labels)
                .all(|(n, (l, _))| &**n == *l)
        {
            let mut values = [""; 8];
            for (slot, (_, v)) in values.iter_mut().zip(labels) {
                *slot = v;
            }
            let any = core.get_or_create(&values[..labels.len()])?;
            return Ok(downcast::<M>(&any).clone());
        }
        let names: Vec<&str> = labels.iter().map(|(n, _)| *n).collect();
        let core = self.family_core(name, help, None, M::KIND, &names, None, None)?;
        // Map the given pairs onto the family's label order (it may have been registered with
        // the same names in another order).
        let mut values = Vec::with_capacity(labels.len());
        for n in core.label_names.iter() {
            match labels.iter().find(|(l, _)| *l == &**n) {
                Some((_, v)) => values.push(*v),
                None => {
                    return Err(RegistryError::SchemaMismatch {
                        name: name.to_owned(),
                        what: "label names",
                    });
                }
            }
        }
        let any = core.get_or_create(&values)?;
        Ok(downcast::<M>(&any).clone())
    }

    #[allow(clippy::too_many_arguments)]
    fn family_core(
        &self,
        name: &str,
        help: &str,
        unit: Option<&str>,
        kind: MetricKind,
        label_names: &[&str],
        layout: Option<Layout>,
        limit: Option<usize>,
    ) -> Result<Arc<FamilyCore>, RegistryError> {
        if let Some(existing) = self.inner.index.load().by_name.get(name) {
            return Self::matches(existing, name, unit, kind, label_names, layout)
                .map(|()| existing.clone());
        }
        names::check_metric_name(name)?;
        for (i, l) in label_names.iter().enumerate() {
            names::check_label_name(l)?;
            if label_names[..i].contains(l) {
                return Err(RegistryError::DuplicateLabelName {
                    name: (*l).to_owned(),
                });
            }
        }
        if let Some(u) = unit {
            names::check_unit(name, u)?;
        }
        let _guard = lock(&self.inner.register);
        let index = self.inner.index.load();
        if let Some(existing) = index.by_name.get(name) {
            return Self::matches(existing, name, unit, kind, label_names, layout)
                .map(|()| existing.clone());
        }
        let core = Arc::new(FamilyCore {
            name: name.into(),
            help: help.into(),
            unit: unit.map(Into::into),
            kind,
            label_names: label_names.iter().map(|l| Arc::<str>::from(*l)).collect(),
            layout: if kind == MetricKind::Histogram {
                layout
            } else {
                None
            },
            limit: limit.unwrap_or(if name == OVERFLOW_METRIC {
                usize::MAX
            } else {
                self.inner.cardinality_limit
            }),
            hasher: LabelHasher::new(),
            shards: std::array::from_fn(|_| ArcSwap::from_pointee(SeriesMap::default())),
            insert: Mutex::new(FamilyState { len: 0 }),
            overflow: std::sync::OnceLock::new(),
            overflow_count: std::sync::OnceLock::new(),
            label_order: Mutex::new(Vec::new()),
            registry: Arc::downgrade(&self.inner),
        });
        let mut by_name = index.by_name.clone();
        by_name.insert(core.name.clone(), core.clone());
        let mut order = index.order.clone();
        order.push(core.clone());
        self.inner.index.store(Arc::new(Index { by_name, order }));
        Ok(core)
    }

    fn matches(
        existing: &FamilyCore,
        name: &str,
        unit: Option<&str>,
        kind: MetricKind,
        label_names: &[&str],
        layout: Option<Layout>,
    ) -> Result<(), RegistryError> {
        if existing.kind != kind {
            return Err(RegistryError::KindMismatch {
                name: name.to_owned(),
                registered: existing.kind,
                requested: kind,
            });
        }
        let same_names = existing.label_names.len() == label_names.len()
            && existing
                .label_names
                .iter()
                .all(|n| label_names.contains(&&**n));
        if !same_names {
            return Err(RegistryError::SchemaMismatch {
                name: name.to_owned(),
                what: "label names",
            });
        }
        if unit.is_some() && existing.unit.as_deref() != unit {
            return Err(RegistryError::SchemaMismatch {
                name: name.to_owned(),
                what: "unit",
            });
        }
        if layout.is_some() && existing.layout != layout {
            return Err(RegistryError::SchemaMismatch {
                name: name.to_owned(),
                what: "histogram layout",
            });
        }
        Ok(())
    }

    /// Builds a consistent snapshot of every metric now (see [`RegistrySnapshot`]). Does not
    /// publish it; see [`refresh_now`](Registry::refresh_now).
    pub fn snapshot(&self) -> RegistrySnapshot {
        let index = self.inner.index.load();
        let mut all: Vec<(usize, Collected)> = Vec::new();
        let mut scratch = Vec::new();
        for (fi, fam) in index.order.iter().enumerate() {
            scratch.clear();
            fam.collect(&mut scratch);
            all.extend(scratch.drain(..).map(|c| (fi, c)));
        }
        let time = self.inner.clock.now();
        // Read in reverse registration order (see RegistrySnapshot's docs).
        let (mut values, by_seq) = read_newest_first(&all);
        let mut families: Vec<FamilySnapshot> = index
            .order
            .iter()
            .map(|f| FamilySnapshot {
                name: f.name.clone(),
                help: f.help.clone(),
                unit: f.unit.clone(),
                kind: f.kind,
                label_names: f.label_names.clone(),
                series: Vec::new(),
            })
            .collect();
        // Each family's series by label values: the order is cached per family and reused
        // while the family holds the same series (they are never removed, so the same count
        // means the same set).
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); families.len()];
        for (i, (fi, _)) in all.iter().enumerate() {
            members[*fi].push(i);
        }
        for (fi, positions) in members.iter_mut().enumerate() {
            index.order[fi].sort_by_labels(fi, &all, by_seq.as_deref(), positions);
            families[fi].series = positions
                .iter()
                .map(|&i| SeriesSnapshot {
                    label_values: all[i].1.1.clone(),
                    // Each series is in exactly one family: its value is moved, not cloned.
                    value: values[i]
                        .take()
                        .expect("every collected series is read once and placed once"),
                })
                .collect();
        }
        // Relaxed: only uniqueness and order matter.
        let seq = self.inner.snapshot_seq.fetch_add(1, Ordering::Relaxed) + 1;
        RegistrySnapshot {
            seq,
            time,
            families,
        }
    }
}

/// Reads every collected series' value, newest registration first (the overflow series, whose
/// sequence number is `u64::MAX`, before all), and returns the values by index into `all`.
///
/// Sequence numbers are dense and unique within a registry, so they index a table directly
/// instead of being sorted; the table (sequence number to index into `all`, `usize::MAX` where
/// none) is returned too. A repeated number (a series made while its registry was being
/// dropped gets 0) or a sparse range falls back to a sort, and no table.
fn read_newest_first(all: &[(usize, Collected)]) -> (Vec<Option<Value>>, Option<Vec<usize>>) {
    let mut order: Vec<usize> = Vec::with_capacity(all.len());
    order.extend((0..all.len()).filter(|&i| all[i].1.0 == u64::MAX));
    let max = all
        .iter()
        .map(|(_, c)| c.0)
        .filter(|&s| s != u64::MAX)
        .max();
    let mut table = None;
    if let Some(max) = max
        && max < (all.len() as u64).saturating_mul(4).saturating_add(64)
    {
        let mut by_seq = vec![usize::MAX; max as usize + 1];
        let mut unique = true;
        for (i, (_, c)) in all.iter().enumerate() {
            if c.0 != u64::MAX {
                let slot = &mut by_seq[c.0 as usize];
                unique &= *slot == usize::MAX;
                *slot = i;
            }
        }
        if unique {
            order.extend(by_seq.iter().rev().copied().filter(|&i| i != usize::MAX));
            table = Some(by_seq);
        }
    }
    if table.is_none() {
        order.clear();
        order.extend(0..all.len());
        order.sort_by_key(|&i| std::cmp::Reverse(all[i].1.0));
    }
    let mut values: Vec<Option<Value>> = vec![None; all.len()];
    for i in order {
        values[i] = Some(all[i].1.2.read());
    }
    (values, table)
}

#[cfg(all(test, not(weir_loom)))]
mod tests;
