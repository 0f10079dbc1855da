//! The concurrency limiter: a lock-free admission check against a limit learned by a
//! [`LimitAlgorithm`].
//!
//! The limit and the in-flight count live together in one `AtomicU64` (the *state word*: the
//! limit in the high 32 bits, the in-flight count in the low 32). Acquiring is a
//! compare-and-swap loop on that word that adds one to the in-flight count only if it is below
//! the limit *in the same word*: when the CAS succeeds, the new in-flight count was at most the
//! limit at that instant, under every interleaving. There is no separate check and act, so the
//! overshoot of a limiter that reads the limit and then increments a counter (as Netflix's
//! partitioned limiter does) cannot happen. A limit change rewrites the high half of the word
//! by CAS too; if it shrinks the limit below the in-flight count, acquires fail until enough
//! permits are released.
//!
//! Releasing is a `fetch_sub` on the word. Then, for a success or a drop, the sample goes to
//! the algorithm, under a mutex that only releases with a sample and [`Limiter::set_limit`]
//! take: acquires never touch it.
//!
//! # Orderings
//! - Acquire's CAS on the state word succeeds with `Acquire`, and release's `fetch_sub` is
//!   `Release`: a permit is a semaphore slot, and the work done under a released permit
//!   happens-before the acquire that takes the freed slot (through the word's release
//!   sequence). The limit check itself needs no ordering: limit and in-flight are read from one
//!   value, and all read-modify-writes of the word are totally ordered.
//! - The CAS failure load and the initial load are `Relaxed`: a guess that the CAS re-checks.
//! - A limit change is a `Relaxed` `fetch_update` of the high half, made under the algorithm
//!   mutex (so limit writes land in the order the algorithm computed them). It publishes no
//!   other memory: the algorithm's state is behind the mutex.
//! - The shadow in-flight counter (shadow mode only) is `Relaxed`: a count, publishing nothing.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::limit::{LimitAlgorithm, Sample};
use super::{Verdict, nanos};
use crate::clock::{SharedClock, SystemClock};
use crate::counter::{Counter, Gauge};
use crate::error::RegistryError;
use crate::histogram::Histogram;
use crate::policy::Mode;
use crate::registry::Registry;
use crate::sync::{AtomicU64, Mutex, Ordering, lock};

// === State word ===

const IN_FLIGHT_MASK: u64 = 0xFFFF_FFFF;
const LIMIT_SHIFT: u32 = 32;

/// A reading of the state word: limit in the high half, in-flight count in the low half.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Word(u64);

impl Word {
    fn new(limit: u32, in_flight: u32) -> Word {
        Word((u64::from(limit) << LIMIT_SHIFT) | u64::from(in_flight))
    }
    fn limit(self) -> u32 {
        (self.0 >> LIMIT_SHIFT) as u32
    }
    fn in_flight(self) -> u32 {
        (self.0 & IN_FLIGHT_MASK) as u32
    }
    fn with_limit(self, limit: u32) -> Word {
        Word::new(limit, self.in_flight())
    }
}

// === Outcome, Rejection ===

/// How a request that held a permit ended. It decides what the limit algorithm learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Completed normally: its RTT is a sample.
    Success,
    /// Dropped (timed out, overloaded, rejected downstream): a congestion signal.
    Dropped,
    /// Says nothing about capacity (a client error, a cancelled call): no sample. A permit
    /// dropped without an explicit outcome is released as `Ignored`.
    Ignored,
}

impl Outcome {
    /// The label value used in metrics: `success`, `dropped`, `ignored`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Dropped => "dropped",
            Outcome::Ignored => "ignored",
        }
    }
}

/// Why a [`Limiter`] refused a permit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// As many requests are in flight as the limit allows.
    AtLimit,
    /// More requests are in flight than the limit allows: the limit shrank below the in-flight
    /// count, and acquires fail until it drops below the new limit.
    LimitShrank,
}

/// A refused acquire: the reason and the numbers that decided it, read from one value of the
/// limiter's state word.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// The limit at the moment of the decision.
    pub limit: u32,
    /// The enforced in-flight count at the moment of the decision.
    pub in_flight: u32,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "concurrency limit reached: {} in flight, limit {}",
            self.in_flight, self.limit
        )
    }
}

impl std::error::Error for Rejection {}

// === Limiter ===

/// A point-in-time reading of a [`Limiter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimiterState {
    /// The current limit.
    pub limit: u32,
    /// Permits held against the limit (read from the same word as `limit`).
    pub in_flight: u32,
    /// Requests admitted over the limit in shadow mode, still in flight.
    pub shadow_in_flight: u64,
}

struct Metrics {
    limit: Gauge,
    in_flight: Gauge,
    rejections: Counter,
    rtt: Histogram,
    outcomes: [Counter; 3],
}

struct Inner {
    state: CachePadded<AtomicU64>,
    shadow: CachePadded<AtomicU64>,
    algorithm: Mutex<Box<dyn LimitAlgorithm>>,
    clock: SharedClock,
    mode: Mode,
    metrics: Option<Metrics>,
}

/// A concurrency limiter driven by a [`LimitAlgorithm`].
///
/// [`try_acquire`](Limiter::try_acquire) is lock-free and never lets the in-flight count exceed
/// the limit (module docs). The returned [`Permit`] is released with an [`Outcome`] (or as
/// [`Outcome::Ignored`] when dropped); successes and drops feed the algorithm with their RTT,
/// measured on the limiter's clock.
///
/// In [`Mode::Shadow`], a request over the limit is admitted anyway with a permit that does not
/// count against the limit (so the limit still bounds the enforced in-flight count); the permit
/// carries the [`Rejection`] it would have got, the rejection is counted, and its sample still
/// feeds the algorithm.
///
/// `Clone` shares the limiter.
///
/// Metrics, when built with a registry (all labelled `limiter="<name>"`, default `default`):
///
/// | name | kind | meaning |
/// |---|---|---|
/// | `concurrency_limit` | gauge | the current limit |
/// | `concurrency_limit_in_flight` | gauge | admitted requests in flight (shadow ones included) |
/// | `concurrency_limit_rejections_total` | counter | acquires refused (in shadow mode: that would have been) |
/// | `concurrency_limit_rtt_nanoseconds` | histogram | RTT of every released permit |
/// | `concurrency_limit_requests_total{outcome}` | counter | released permits by outcome (`success`, `dropped`, `ignored`) |
///
/// ```
/// use weir::policy::shed::{FixedLimit, Limiter, RejectReason};
///
/// let limiter = Limiter::new(FixedLimit::new(1));
/// let permit = limiter.try_acquire()?;
/// let refused = limiter.try_acquire().unwrap_err();
/// assert_eq!(refused.reason, RejectReason::AtLimit);
/// permit.success();
/// assert_eq!(limiter.in_flight(), 0);
/// # Ok::<(), weir::policy::shed::Rejection>(())
/// ```
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

/// Builds a [`Limiter`]: clock, mode, registry.
pub struct LimiterBuilder {
    algorithm: Box<dyn LimitAlgorithm>,
    clock: Option<SharedClock>,
    mode: Mode,
    registry: Option<Registry>,
    name: String,
}

impl fmt::Debug for LimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterBuilder")
            .field("algorithm", &self.algorithm)
            .field("mode", &self.mode)
            .field("name", &self.name)
            .field("registry", &self.registry.is_some())
            .finish_non_exhaustive()
    }
}

/// A [`Limiter`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimiterBuildError {
    /// Registering the limiter's metrics failed (for example, a metric of the same name but
    /// another kind or other labels is already registered). Use another registry, or remove
    /// the conflicting metric.
    Registry(RegistryError),
}

impl fmt::Display for LimiterBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimiterBuildError::Registry(e) => write!(f, "registering limiter metrics: {e}"),
        }
    }
}

impl std::error::Error for LimiterBuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LimiterBuildError::Registry(e) => Some(e),
        }
    }
}

impl From<RegistryError> for LimiterBuildError {
    fn from(e: RegistryError) -> Self {
        LimiterBuildError::Registry(e)
    }
}

impl LimiterBuilder {
    /// The clock RTTs are measured on (default: a new [`SystemClock`]).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }
    /// Enforce (default) or shadow.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// Records the limiter's metrics into `registry`.
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }
    /// The value of the `limiter` label on the metrics (default `default`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// [`LimiterBuildError::Registry`] if the metrics could not be registered.
    pub fn build(self) -> Result<Limiter, LimiterBuildError> {
        let metrics = match &self.registry {
            Some(r) => Some(register(r, &self.name)?),
            None => None,
        };
        Ok(self.assemble(metrics))
    }

    fn assemble(self, metrics: Option<Metrics>) -> Limiter {
        let limit = self.algorithm.limit().max(1);
        if let Some(m) = &metrics {
            m.limit.set(i64::from(limit));
        }
        Limiter {
            inner: Arc::new(Inner {
                state: CachePadded::new(AtomicU64::new(Word::new(limit, 0).0)),
                shadow: CachePadded::new(AtomicU64::new(0)),
                algorithm: Mutex::new(self.algorithm),
                clock: self
                    .clock
                    .unwrap_or_else(|| Arc::new(SystemClock::new()) as SharedClock),
                mode: self.mode,
                metrics,
            }),
        }
    }
}

fn register(r: &Registry, name: &str) -> Result<Metrics, RegistryError> {
    let l = [("limiter", name)];
    let outcome = |o: Outcome| {
        r.counter(
            "concurrency_limit_requests_total",
            "Requests released by the concurrency limiter, by outcome",
            &[("limiter", name), ("outcome", o.as_str())],
        )
    };
    Ok(Metrics {
        limit: r.gauge("concurrency_limit", "Current concurrency limit", &l)?,
        in_flight: r.gauge(
            "concurrency_limit_in_flight",
            "Requests admitted by the concurrency limiter and still in flight",
            &l,
        )?,
        rejections: r.counter(
            "concurrency_limit_rejections_total",
            "Acquires refused by the concurrency limiter (or that would have been, in shadow mode)",
            &l,
        )?,
        rtt: r.histogram(
            "concurrency_limit_rtt_nanoseconds",
            "Round-trip time of requests that held a concurrency permit",
            &l,
        )?,
        outcomes: [
            outcome(Outcome::Success)?,
            outcome(Outcome::Dropped)?,
            outcome(Outcome::Ignored)?,
        ],
    })
}

impl Limiter {
    /// A builder around `algorithm`.
    pub fn builder(algorithm: impl LimitAlgorithm) -> LimiterBuilder {
        LimiterBuilder {
            algorithm: Box::new(algorithm),
            clock: None,
            mode: Mode::Enforce,
            registry: None,
            name: "default".to_owned(),
        }
    }

    /// An enforcing limiter around `algorithm`, on the system clock, without metrics.
    pub fn new(algorithm: impl LimitAlgorithm) -> Limiter {
        Limiter::builder(algorithm).assemble(None)
    }

    /// Takes a permit if fewer requests are in flight than the limit allows. Lock-free: one
    /// compare-and-swap loop on the state word (module docs).
    ///
    /// # Errors
    ///
    /// A [`Rejection`] with the limit and in-flight count that decided it (enforce mode only:
    /// shadow mode always returns a permit).
    pub fn try_acquire(&self) -> Result<Permit, Rejection> {
        let inner = &*self.inner;
        // Relaxed: a first guess; the CAS re-checks (module docs).
        let mut cur = Word(inner.state.load(Ordering::Relaxed));
        loop {
            if cur.in_flight() >= cur.limit() {
                return self.over_limit(cur);
            }
            // in_flight < limit <= u32::MAX, so +1 stays in the low half.
            let next = Word(cur.0 + 1);
            // Acquire on success: pairs with the Release of the permit whose slot we take.
            // Relaxed on failure: the retry re-checks the fresh value.
            match inner.state.compare_exchange_weak(
                cur.0,
                next.0,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => cur = Word(actual),
            }
        }
        if let Some(m) = &inner.metrics {
            m.in_flight.inc();
        }
        Ok(Permit {
            limiter: self.inner.clone(),
            start: inner.clock.now(),
            in_flight: cur.in_flight() + 1,
            limit: cur.limit(),
            shadow: None,
            done: false,
        })
    }

    #[cold]
    fn over_limit(&self, cur: Word) -> Result<Permit, Rejection> {
        let inner = &*self.inner;
        let rejection = Rejection {
            reason: if cur.in_flight() > cur.limit() {
                RejectReason::LimitShrank
            } else {
                RejectReason::AtLimit
            },
            limit: cur.limit(),
            in_flight: cur.in_flight(),
        };
        if let Some(m) = &inner.metrics {
            m.rejections.inc();
        }
        if inner.mode.enforces() {
            return Err(rejection);
        }
        // Relaxed: a count (module docs).
        let shadow = inner.shadow.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(m) = &inner.metrics {
            m.in_flight.inc();
        }
        let total = u64::from(cur.in_flight()).saturating_add(shadow);
        Ok(Permit {
            limiter: self.inner.clone(),
            start: inner.clock.now(),
            in_flight: u32::try_from(total).unwrap_or(u32::MAX),
            limit: cur.limit(),
            shadow: Some(rejection),
            done: false,
        })
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.state().limit
    }

    /// Permits held against the limit.
    pub fn in_flight(&self) -> u32 {
        self.state().in_flight
    }

    /// Limit and in-flight count, read together from the state word.
    pub fn state(&self) -> LimiterState {
        // Relaxed: a reading; both halves come from one value.
        let w = Word(self.inner.state.load(Ordering::Relaxed));
        LimiterState {
            limit: w.limit(),
            in_flight: w.in_flight(),
            // Relaxed: a count.
            shadow_in_flight: self.inner.shadow.load(Ordering::Relaxed),
        }
    }

    /// Whether the limiter enforces or only observes.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// Sets the limit by hand through the algorithm ([`LimitAlgorithm::set_limit`], which
    /// clamps it into the algorithm's bounds) and returns the limit now in force (at least 1).
    /// Permits already held stay valid; if the new limit is below the in-flight count,
    /// acquires fail until enough are released.
    pub fn set_limit(&self, limit: u32) -> u32 {
        let mut algorithm = lock(&self.inner.algorithm);
        let applied = algorithm.set_limit(limit).max(1);
        self.inner.store_limit(applied);
        applied
    }

    /// Runs `f` on the limit algorithm (under the mutex that sample updates take), for
    /// inspection.
    pub fn inspect<R>(&self, f: impl FnOnce(&dyn LimitAlgorithm) -> R) -> R {
        let algorithm = lock(&self.inner.algorithm);
        f(&**algorithm)
    }
}

impl Inner {
    /// Applies a limit computed under the algorithm mutex (which the caller holds).
    fn store_limit(&self, limit: u32) {
        // Relaxed: a reading to skip a no-op write; only mutex holders change the limit.
        let cur = Word(self.state.load(Ordering::Relaxed));
        if cur.limit() != limit {
            // Relaxed: see the module docs; the closure keeps the in-flight half as it is at
            // the moment of the write.
            let _ = self
                .state
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                    Some(Word(w).with_limit(limit).0)
                });
        }
        if let Some(m) = &self.metrics {
            m.limit.set(i64::from(limit));
        }
    }

    fn sample(&self, sample: &Sample) {
        let mut algorithm = lock(&self.algorithm);
        let limit = algorithm.update(sample).max(1);
        self.store_limit(limit);
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("state", &self.state())
            .field("mode", &self.inner.mode)
            .finish_non_exhaustive()
    }
}

// === Permit ===

/// Admission to run one request under a [`Limiter`].
///
/// Release it with [`success`](Permit::success), [`dropped`](Permit::dropped) or
/// [`ignore`](Permit::ignore) (or [`release`](Permit::release)); dropping it releases it as
/// [`Outcome::Ignored`], which frees the slot without teaching the algorithm anything. The RTT
/// is the limiter clock's time from the grant to the release, unless given with
/// [`release_with_rtt`](Permit::release_with_rtt).
#[must_use = "a permit admits one request; dropping it at once releases it as ignored"]
pub struct Permit {
    limiter: Arc<Inner>,
    start: Duration,
    in_flight: u32,
    limit: u32,
    shadow: Option<Rejection>,
    done: bool,
}

impl Permit {
    /// The request completed normally: its RTT is a sample.
    pub fn success(self) {
        self.release(Outcome::Success);
    }

    /// The request was dropped (timeout, overload): a congestion sample.
    pub fn dropped(self) {
        self.release(Outcome::Dropped);
    }

    /// The request says nothing about capacity: free the slot, no sample.
    pub fn ignore(self) {
        self.release(Outcome::Ignored);
    }

    /// Releases with `outcome`, the RTT measured on the limiter's clock.
    pub fn release(mut self, outcome: Outcome) {
        self.finish(outcome, None);
    }

    /// Releases with `outcome` and an RTT measured by the caller.
    pub fn release_with_rtt(mut self, outcome: Outcome, rtt: Duration) {
        self.finish(outcome, Some(rtt));
    }

    /// The in-flight count right after this permit was granted, itself included (in shadow
    /// mode, for a permit over the limit: enforced plus shadow permits). For an enforced permit
    /// it is at most [`limit`](Permit::limit): both come from one value of the state word.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// The limit in force when this permit was granted.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// When the permit was granted, on the limiter's clock.
    pub fn started_at(&self) -> Duration {
        self.start
    }

    /// In shadow mode, the rejection this request would have got; `None` for a permit granted
    /// within the limit.
    pub fn shadow_rejection(&self) -> Option<&Rejection> {
        self.shadow.as_ref()
    }

    /// [`Verdict::Admit`], or [`Verdict::ShadowReject`] for a permit over the limit in shadow
    /// mode.
    pub fn verdict(&self) -> Verdict {
        if self.shadow.is_some() {
            Verdict::ShadowReject
        } else {
            Verdict::Admit
        }
    }

    fn finish(&mut self, outcome: Outcome, rtt: Option<Duration>) {
        if self.done {
            return;
        }
        self.done = true;
        let inner = &*self.limiter;
        let rtt = rtt.unwrap_or_else(|| inner.clock.now().saturating_sub(self.start));
        if self.shadow.is_some() {
            // Relaxed: a count (module docs).
            inner.shadow.fetch_sub(1, Ordering::Relaxed);
        } else {
            // Release: publishes the work done under this permit to the next acquirer of the
            // slot. The word's in-flight half is at least 1 (this permit), so no borrow reaches
            // the limit half.
            inner.state.fetch_sub(1, Ordering::Release);
        }
        if let Some(m) = &inner.metrics {
            m.in_flight.dec();
            m.outcomes[outcome as usize].inc();
            m.rtt.record(nanos(rtt));
        }
        if outcome != Outcome::Ignored {
            inner.sample(&Sample::new(
                rtt,
                self.in_flight,
                outcome == Outcome::Dropped,
            ));
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.finish(Outcome::Ignored, None);
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("in_flight", &self.in_flight)
            .field("limit", &self.limit)
            .field("started_at", &self.start)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::policy::shed::{Aimd, FixedLimit};

    const MS: Duration = Duration::from_millis(1);

    fn manual(algorithm: impl LimitAlgorithm, mode: Mode) -> (ManualClock, Limiter) {
        let clock = ManualClock::new();
        let l = Limiter::builder(algorithm)
            .clock(Arc::new(clock.clone()))
            .mode(mode)
            .build()
            .unwrap();
        (clock, l)
    }

    #[test]
    fn word_packing() {
        let w = Word::new(u32::MAX, 7);
        assert_eq!((w.limit(), w.in_flight()), (u32::MAX, 7));
        let w = w.with_limit(3);
        assert_eq!((w.limit(), w.in_flight()), (3, 7));
    }

    #[test]
    fn acquire_up_to_the_limit_then_reject() {
        let (_, l) = manual(FixedLimit::new(2), Mode::Enforce);
        let a = l.try_acquire().unwrap();
        let b = l.try_acquire().unwrap();
        assert_eq!((a.in_flight(), a.limit()), (1, 2));
        assert_eq!((b.in_flight(), b.limit()), (2, 2));
        assert_eq!(a.verdict(), Verdict::Admit);
        let r = l.try_acquire().unwrap_err();
        assert_eq!(
            r,
            Rejection {
                reason: RejectReason::AtLimit,
                limit: 2,
                in_flight: 2
            }
        );
        assert!(r.to_string().contains("limit 2"));
        drop(a); // ignored
        assert_eq!(l.in_flight(), 1);
        let c = l.try_acquire().unwrap();
        c.ignore();
        b.success();
        assert_eq!(l.state().in_flight, 0);
    }

    #[test]
    fn shrinking_the_limit_blocks_until_in_flight_drops_below_it() {
        let (_, l) = manual(FixedLimit::new(3), Mode::Enforce);
        let permits: Vec<_> = (0..3).map(|_| l.try_acquire().unwrap()).collect();
        assert_eq!(l.set_limit(1), 1);
        assert_eq!(
            l.try_acquire().unwrap_err().reason,
            RejectReason::LimitShrank
        );
        let mut it = permits.into_iter();
        it.next().unwrap().success();
        assert_eq!(
            l.try_acquire().unwrap_err(),
            Rejection {
                reason: RejectReason::LimitShrank,
                limit: 1,
                in_flight: 2
            }
        );
        it.next().unwrap().success();
        assert_eq!(l.try_acquire().unwrap_err().reason, RejectReason::AtLimit);
        it.next().unwrap().success();
        let p = l.try_acquire().unwrap();
        assert_eq!((p.in_flight(), p.limit()), (1, 1));
        assert_eq!(l.set_limit(0), 1);
    }

    #[test]
    fn samples_drive_the_algorithm_with_clock_rtts() {
        let aimd = Aimd::builder()
            .initial(2)
            .min(1)
            .max(4)
            .timeout(10 * MS)
            .build()
            .unwrap();
        let (clock, l) = manual(aimd, Mode::Enforce);
        let p = l.try_acquire().unwrap();
        assert_eq!(p.started_at(), Duration::ZERO);
        clock.advance(5 * MS);
        p.success(); // in_flight 1 × 2 >= 2: +1
        assert_eq!(l.limit(), 3);
        let p = l.try_acquire().unwrap();
        clock.advance(11 * MS);
        p.success(); // above the timeout: backs off to floor(2.7)
        assert_eq!(l.limit(), 2);
        let p = l.try_acquire().unwrap();
        p.release_with_rtt(Outcome::Success, MS);
        assert_eq!(l.limit(), 3);
        let p = l.try_acquire().unwrap();
        p.dropped();
        assert_eq!(l.limit(), 2);
        let p = l.try_acquire().unwrap();
        clock.advance(Duration::from_secs(100));
        p.ignore(); // no sample
        assert_eq!(l.limit(), 2);
        assert_eq!(l.inspect(|a| a.bounds()), 1..=4);
    }

    #[test]
    fn shadow_mode_admits_over_the_limit_without_counting_against_it() {
        let (_, l) = manual(FixedLimit::new(1), Mode::Shadow);
        assert_eq!(l.mode(), Mode::Shadow);
        let a = l.try_acquire().unwrap();
        assert!(a.shadow_rejection().is_none());
        let b = l.try_acquire().unwrap();
        let c = l.try_acquire().unwrap();
        assert_eq!(b.verdict(), Verdict::ShadowReject);
        assert_eq!(
            b.shadow_rejection().copied(),
            Some(Rejection {
                reason: RejectReason::AtLimit,
                limit: 1,
                in_flight: 1
            })
        );
        assert_eq!((b.in_flight(), c.in_flight()), (2, 3));
        let s = l.state();
        assert_eq!((s.limit, s.in_flight, s.shadow_in_flight), (1, 1, 2));
        drop(b);
        c.success();
        a.success();
        let s = l.state();
        assert_eq!((s.in_flight, s.shadow_in_flight), (0, 0));
        assert!(format!("{l:?}").contains("Limiter"));
    }

    #[test]
    fn registry_metrics() {
        let registry = Registry::new();
        let clock = ManualClock::new();
        let l = Limiter::builder(FixedLimit::new(1))
            .clock(Arc::new(clock.clone()))
            .registry(&registry)
            .name("db")
            .mode(Mode::Shadow)
            .build()
            .unwrap();
        let a = l.try_acquire().unwrap();
        let b = l.try_acquire().unwrap();
        let s = registry.snapshot();
        assert_eq!(s.gauge("concurrency_limit", &["db"]), Some(1));
        assert_eq!(s.gauge("concurrency_limit_in_flight", &["db"]), Some(2));
        assert_eq!(
            s.counter("concurrency_limit_rejections_total", &["db"]),
            Some(1)
        );
        clock.advance(7 * MS);
        a.success();
        b.dropped();
        let s = registry.snapshot();
        assert_eq!(s.gauge("concurrency_limit_in_flight", &["db"]), Some(0));
        let rtt = s
            .histogram("concurrency_limit_rtt_nanoseconds", &["db"])
            .unwrap();
        assert_eq!(rtt.count(), 2);
        assert_eq!(
            s.counter("concurrency_limit_requests_total", &["db", "success"]),
            Some(1)
        );
        assert_eq!(
            s.counter("concurrency_limit_requests_total", &["db", "dropped"]),
            Some(1)
        );
        l.set_limit(5);
        let s = registry.snapshot();
        assert_eq!(s.gauge("concurrency_limit", &["db"]), Some(5));
        // A conflicting registration is an error, not a panic.
        let bad = Registry::new();
        bad.counter("concurrency_limit", "x", &[]).unwrap();
        let err = Limiter::builder(FixedLimit::new(1))
            .registry(&bad)
            .build()
            .unwrap_err();
        assert!(!err.to_string().is_empty());
        assert!(std::error::Error::source(&err).is_some());
        assert!(format!("{:?}", Limiter::builder(FixedLimit::new(1))).contains("FixedLimit"));
    }

    #[test]
    fn permits_are_send_and_limiter_is_sync() {
        fn check<T: Send + Sync>() {}
        check::<Limiter>();
        check::<Permit>();
        for o in [Outcome::Success, Outcome::Dropped, Outcome::Ignored] {
            assert!(!o.as_str().is_empty());
        }
    }
}
