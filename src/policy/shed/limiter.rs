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
//! the algorithm, without waiting for another release (next section). Acquires never touch
//! the algorithm.
//!
//! # Feeding samples
//!
//! Algorithms are plain state machines updated through `&mut self`, so one thread at a time
//! applies samples: the *holder* of the feed, a bit (`LOCKED`) in a control word `ctl`. A
//! release with a sample never waits for it:
//!
//! - If no thread holds the feed, the release takes it (a CAS), applies its own sample, then
//!   every sample that others left meanwhile, and gives the feed back.
//! - Otherwise it claims one of 31 slots (a CAS setting the slot's claim bit in `ctl`), writes
//!   its sample there, and publishes it with one `fetch_or` that sets the slot's full bit and
//!   `LOCKED`; if `LOCKED` was clear by then (the holder left after the claim), this release is
//!   the holder now and applies it itself. Either way it returns without waiting.
//! - The holder takes all published samples at once (a `fetch_and` clearing the full bits),
//!   applies them, and repeats until none is left. It gives the feed back with a CAS that
//!   succeeds only if no full bit is set, so it cannot leave while a sample waits.
//!
//! No sample is stranded and none is applied twice, with no fence: every step above is a
//! read-modify-write of `ctl`, and read-modify-writes of one word are totally ordered. A
//! sample's full bit is set before the release returns; after that, `LOCKED` is held until
//! some holder's `fetch_and` takes that bit (exactly one does) and applies the sample. So
//! **once every release has returned, every one of their samples has been applied**, with no
//! flush, as long as no `set_limit`/`inspect` call is still running (they can be handed the
//! feed and its waiting samples; see below) and no `update` panicked.
//!
//! Samples are applied in the order their holder takes them, not the order of the releases:
//! a holder applies its own sample first, then slots by index. Their effects on the limit
//! commute only approximately (as they did when releases raced for a mutex); a limit is
//! written to the word once per round of samples taken together, after the round's last
//! `update`.
//!
//! [`Limiter::set_limit`] and [`Limiter::inspect`] need the algorithm too. They queue on a
//! mutex among themselves (the feed's queue, never touched by releases), set `WANTED` in `ctl`, and wait (yielding) until the holder passes
//! them the feed at the end of its current round (it clears `WANTED` and keeps `LOCKED`, with
//! any samples still waiting) or until the feed is free. Then they apply every waiting sample,
//! run, apply the samples left while they ran, and give the feed back like any holder. So a
//! `set_limit` or `inspect` sees every sample of every release that returned before it was
//! called. While one runs, releases go on leaving samples and returning.
//!
//! Memory is bounded: if all 31 slots are taken (31 samples published or being written while
//! the holder is busy, typically because it was preempted), the release does what `set_limit`
//! does to apply its one sample, so it waits for the holder. This is the only case in which a
//! release waits.
//!
//! The algorithm sits with `ctl` in a `BitLock` (`crate::sync`), whose only way to the
//! algorithm is the owner token returned by taking `LOCKED`: no lock besides `ctl`, and no
//! `unsafe` in this module. So an uncontended release with a sample makes two RMWs of `ctl`
//! (take the feed, give it back). After a panic in `update` or an `inspect` closure the feed
//! is given back and the algorithm used as it is (the samples that holder had taken and not
//! applied are lost).
//!
//! # The fast path
//!
//! An algorithm that does not learn ([`LimitAlgorithm::learns`] is false, as for
//! [`FixedLimit`](super::FixedLimit)) on a limiter without metrics needs neither an RTT nor the
//! feed: the limiter then reads no clock, and a decision is the CAS plus the `fetch_sub`.
//! [`Limiter::try_acquire`] returns a [`Permit`] that borrows the limiter (no reference count
//! to raise and lower per permit); [`Limiter::try_acquire_owned`] returns an [`OwnedPermit`]
//! that holds a clone of it, for permits that must outlive the borrow (a future, another
//! thread). Both release through the same code.
//!
//! # Layout
//!
//! The state word, the shadow counter, the feed (`ctl` and the algorithm) and the
//! sample slots each sit on their own cache line(s); the fields that are only read after the
//! build (clock, mode, metrics handles, flags) sit on another, which nothing writes.
//!
//! # Orderings
//! - Acquire's CAS on the state word succeeds with `Acquire`, and release's `fetch_sub` is
//!   `Release`: a permit is a semaphore slot, and the work done under a released permit
//!   happens-before the acquire that takes the freed slot (through the word's release
//!   sequence). The limit check itself needs no ordering: limit and in-flight are read from one
//!   value, and all read-modify-writes of the word are totally ordered.
//! - The CAS failure load and the initial load are `Relaxed`: a guess that the CAS re-checks.
//! - A limit change is a `Relaxed` `fetch_update` of the high half, made by the holder of the
//!   feed (so limit writes land in the order the algorithm computed them). It publishes no
//!   other memory: the algorithm's state is behind the feed.
//! - The shadow in-flight counter (shadow mode only) is `Relaxed`: a count, publishing nothing.
//! - The feed's `ctl` is a lock (`LOCKED`) plus a message queue (claim and full bits), so its
//!   orderings are a lock's and a queue's. Taking the feed (a CAS, or the publishing
//!   `fetch_or` that finds it free) is `Acquire`; giving it back or passing it to a waiting
//!   `set_limit`/`inspect` is a `Release` CAS, so each holder's updates and limit writes
//!   happen before the next holder's (the `BitLock` relies on exactly this to hand out
//!   `&mut` to the algorithm; under loom its cell is loom's `UnsafeCell`, which reports a
//!   missing happens-before as a race). Publishing a
//!   sample is an `AcqRel` `fetch_or` (Release: the slot's `Relaxed` stores before it;
//!   Acquire: it may take the feed); the holder takes full bits with an `AcqRel` `fetch_and`
//!   (Acquire: reads the slots' stores; Release: frees the slots it read last round). A
//!   claim CAS is `Acquire` on success, so a slot's new writer writes after its last reader
//!   read. CAS failures and first-guess loads are `Relaxed`; `exclusive`'s waiting loads are
//!   `Acquire` (a handover it sees is the holder's Release CAS); setting `WANTED` is
//!   `Relaxed` (a request; nothing is published with it). No fence is needed: the protocol's
//!   decisions are all read-modify-writes of `ctl`, which are totally ordered.
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
use crate::sync::{AtomicU64, BitLock, Ordering};

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

/// What the hot paths read and nothing writes after the build: kept on its own cache line(s),
/// away from the state word and the feed.
struct Config {
    clock: SharedClock,
    mode: Mode,
    metrics: Option<Metrics>,
    /// [`LimitAlgorithm::learns`], asked once at build: releases feed samples to the
    /// algorithm (module docs, "Feeding samples").
    learns: bool,
    /// Grants read the clock: the algorithm learns, metrics record RTTs, or the builder asked
    /// for timestamps ([`LimiterBuilder::timestamp_grants`]).
    stamps: bool,
    /// Releases do more than free the slot: the algorithm learns or metrics are recorded.
    records: bool,
}

struct Inner {
    /// Written by every acquire and release.
    state: CachePadded<AtomicU64>,
    /// Written by shadow acquires and releases only.
    shadow: CachePadded<AtomicU64>,
    /// The algorithm and the word that decides who applies samples to it (see [`Feed`]).
    feed: CachePadded<Feed>,
    /// Samples waiting for the holder of [`LOCKED`].
    slots: CachePadded<[Slot; SLOTS]>,
    /// Read-only after the build.
    config: CachePadded<Config>,
}

/// A concurrency limiter driven by a [`LimitAlgorithm`].
///
/// [`try_acquire`](Limiter::try_acquire) is lock-free and never lets the in-flight count exceed
/// the limit (module docs). The returned [`Permit`] (borrowing the limiter; or an
/// [`OwnedPermit`] from [`try_acquire_owned`](Limiter::try_acquire_owned)) is released with an
/// [`Outcome`] (or as [`Outcome::Ignored`] when dropped); successes and drops feed the algorithm
/// with their RTT, measured on the limiter's clock. A release hands its sample over without
/// waiting for other releases: the one that finds the algorithm busy leaves the sample to the
/// thread applying samples and returns (module docs, "Feeding samples"); once every release has
/// returned, every sample has been applied. An algorithm that does not learn
/// ([`LimitAlgorithm::learns`], e.g. a [`FixedLimit`](super::FixedLimit)) gets no samples: on a
/// limiter without a registry, a decision is then one compare-and-swap to acquire and one
/// `fetch_sub` to release, with no clock read and no lock.
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
///
/// // A permit that outlives the borrow (a spawned thread, a future):
/// let owned = limiter.try_acquire_owned()?;
/// std::thread::spawn(move || owned.success()).join().unwrap();
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
    timestamps: bool,
}

impl fmt::Debug for LimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterBuilder")
            .field("algorithm", &self.algorithm)
            .field("mode", &self.mode)
            .field("name", &self.name)
            .field("registry", &self.registry.is_some())
            .field("timestamps", &self.timestamps)
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
    /// Reads the clock at every grant, so that [`Permit::started_at`] is always `Some`
    /// (default: off). Without it, a limiter whose algorithm does not learn
    /// ([`LimitAlgorithm::learns`]) and that has no registry reads no clock at all, and its
    /// permits' `started_at` is `None`; any other limiter reads the clock at every grant anyway.
    pub fn timestamp_grants(mut self, on: bool) -> Self {
        self.timestamps = on;
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
        let learns = self.algorithm.learns();
        let records = learns || metrics.is_some();
        Limiter {
            inner: Arc::new(Inner {
                state: CachePadded::new(AtomicU64::new(Word::new(limit, 0).0)),
                shadow: CachePadded::new(AtomicU64::new(0)),
                feed: CachePadded::new(Feed::new(self.algorithm)),
                slots: CachePadded::new(std::array::from_fn(|_| Slot::new())),
                config: CachePadded::new(Config {
                    clock: self
                        .clock
                        .unwrap_or_else(|| Arc::new(SystemClock::new()) as SharedClock),
                    mode: self.mode,
                    metrics,
                    learns,
                    stamps: records || self.timestamps,
                    records,
                }),
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
            timestamps: false,
        }
    }

    /// An enforcing limiter around `algorithm`, on the system clock, without metrics.
    pub fn new(algorithm: impl LimitAlgorithm) -> Limiter {
        Limiter::builder(algorithm).assemble(None)
    }

    /// Takes a permit if fewer requests are in flight than the limit allows. Lock-free: one
    /// compare-and-swap loop on the state word (module docs).
    ///
    /// The permit borrows the limiter; [`try_acquire_owned`](Limiter::try_acquire_owned) gives
    /// one that does not (for a future or a thread that may outlive the borrow), or convert with
    /// [`Permit::into_owned`].
    ///
    /// # Errors
    ///
    /// A [`Rejection`] with the limit and in-flight count that decided it (enforce mode only:
    /// shadow mode always returns a permit).
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejection> {
        let grant = self.inner.acquire()?;
        Ok(Permit {
            limiter: self,
            grant,
        })
    }

    /// As [`try_acquire`](Limiter::try_acquire), but the permit holds its own handle to the
    /// limiter (a clone: one reference-count increment, and a decrement when it is released),
    /// so it is `'static`.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Limiter::try_acquire).
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, Rejection> {
        let grant = self.inner.acquire()?;
        Ok(OwnedPermit {
            limiter: self.clone(),
            grant,
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
        self.inner.config.mode
    }

    /// Sets the limit by hand through the algorithm ([`LimitAlgorithm::set_limit`], which
    /// clamps it into the algorithm's bounds) and returns the limit now in force (at least 1).
    /// Permits already held stay valid; if the new limit is below the in-flight count,
    /// acquires fail until enough are released.
    ///
    /// Samples of releases that returned before this call are applied before the new limit
    /// (module docs, "Feeding samples"). This call may wait for another `set_limit` or
    /// [`inspect`](Limiter::inspect), or for a release that is applying samples; releases
    /// never wait for it.
    pub fn set_limit(&self, limit: u32) -> u32 {
        let inner = &*self.inner;
        inner.exclusive(|algorithm| {
            let applied = algorithm.set_limit(limit).max(1);
            inner.store_limit(applied);
            applied
        })
    }

    /// Runs `f` on the limit algorithm, for inspection. `f` sees it between two updates, with
    /// every sample of a release that returned before this call already applied (module docs,
    /// "Feeding samples"). Like [`set_limit`](Limiter::set_limit), this may wait for another
    /// such call or for a release that is applying samples; releases that finish while `f`
    /// runs leave their samples for this call to apply when `f` returns.
    ///
    /// `f` may release permits of this limiter (their samples wait until `f` returns), but at
    /// most 31 with a sample: the next one would wait for `f` to finish, from inside `f`. As
    /// before, `f` must not call `inspect` or `set_limit` on the same limiter.
    pub fn inspect<R>(&self, f: impl FnOnce(&dyn LimitAlgorithm) -> R) -> R {
        self.inner.exclusive(|algorithm| f(algorithm))
    }
}

impl Inner {
    /// Takes a slot in the state word (or, over the limit in shadow mode, a shadow slot).
    #[inline]
    fn acquire(&self) -> Result<Grant, Rejection> {
        // Relaxed: a first guess; the CAS re-checks (module docs).
        let mut cur = Word(self.state.load(Ordering::Relaxed));
        loop {
            if cur.in_flight() >= cur.limit() {
                return self.over_limit(cur);
            }
            // in_flight < limit <= u32::MAX, so +1 stays in the low half.
            let next = Word(cur.0 + 1);
            // Acquire on success: pairs with the Release of the permit whose slot we take.
            // Relaxed on failure: the retry re-checks the fresh value.
            match self.state.compare_exchange_weak(
                cur.0,
                next.0,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => cur = Word(actual),
            }
        }
        if let Some(m) = &self.config.metrics {
            m.in_flight.inc();
        }
        Ok(Grant {
            start: self.stamp(),
            in_flight: cur.in_flight() + 1,
            limit: cur.limit(),
            shadow: None,
            done: false,
        })
    }

    #[cold]
    fn over_limit(&self, cur: Word) -> Result<Grant, Rejection> {
        let config = &*self.config;
        let rejection = Rejection {
            reason: if cur.in_flight() > cur.limit() {
                RejectReason::LimitShrank
            } else {
                RejectReason::AtLimit
            },
            limit: cur.limit(),
            in_flight: cur.in_flight(),
        };
        if let Some(m) = &config.metrics {
            m.rejections.inc();
        }
        if config.mode.enforces() {
            return Err(rejection);
        }
        // Relaxed: a count (module docs).
        let shadow = self.shadow.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(m) = &config.metrics {
            m.in_flight.inc();
        }
        let total = u64::from(cur.in_flight()).saturating_add(shadow);
        Ok(Grant {
            start: self.stamp(),
            in_flight: u32::try_from(total).unwrap_or(u32::MAX),
            limit: cur.limit(),
            shadow: Some(rejection),
            done: false,
        })
    }

    /// The grant time, if anything needs it (see [`Config::stamps`]).
    #[inline]
    fn stamp(&self) -> Option<Duration> {
        let config = &*self.config;
        config.stamps.then(|| config.clock.now())
    }

    /// Releases `grant` once (later calls do nothing). Without metrics and with an algorithm
    /// that does not learn, this is the `fetch_sub` alone.
    #[inline]
    fn release(&self, grant: &mut Grant, outcome: Outcome, rtt: Option<Duration>) {
        if grant.done {
            return;
        }
        grant.done = true;
        if self.config.records {
            self.release_recorded(grant, outcome, rtt);
        } else {
            self.free(grant);
        }
    }

    /// Gives the grant's slot back.
    #[inline]
    fn free(&self, grant: &Grant) {
        if grant.shadow.is_some() {
            // Relaxed: a count (module docs).
            self.shadow.fetch_sub(1, Ordering::Relaxed);
        } else {
            // Release: publishes the work done under this permit to the next acquirer of the
            // slot. The word's in-flight half is at least 1 (this permit), so no borrow reaches
            // the limit half.
            self.state.fetch_sub(1, Ordering::Release);
        }
    }

    /// A release that feeds the algorithm or the metrics: the RTT (the caller's, or one clock
    /// read, taken before the slot is freed), then the slot, then metrics and the sample.
    fn release_recorded(&self, grant: &Grant, outcome: Outcome, rtt: Option<Duration>) {
        let config = &*self.config;
        let sampled = config.learns && outcome != Outcome::Ignored;
        // An ignored release on a learning limiter without metrics needs no RTT: no clock.
        // A caller's RTT needs no clock either. `start` is always `Some` here (`stamps`
        // includes `records`); were it not, the sample would be skipped, never faked.
        let rtt = if sampled || config.metrics.is_some() {
            rtt.or_else(|| grant.start.map(|s| config.clock.now().saturating_sub(s)))
        } else {
            None
        };
        self.free(grant);
        if let Some(m) = &config.metrics {
            m.in_flight.dec();
            m.outcomes[outcome as usize].inc();
            if let Some(rtt) = rtt {
                m.rtt.record(nanos(rtt));
            }
        }
        if let (true, Some(rtt)) = (sampled, rtt) {
            self.feed(Sample::new(
                rtt,
                grant.in_flight,
                outcome == Outcome::Dropped,
            ));
        }
    }

    /// Applies a limit computed by the algorithm. The caller holds [`LOCKED`], so limits are
    /// written one at a time, in the order computed.
    fn store_limit(&self, limit: u32) {
        // Relaxed: a reading to skip a no-op write; only the holder changes the limit.
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
        if let Some(m) = &self.config.metrics {
            m.limit.set(i64::from(limit));
        }
    }
}

// === Feeding samples ===

/// How many samples can wait for the holder at once (one claim bit and one full bit each in
/// [`Feed`]'s word `ctl`). Under loom, 2, so that small models reach the full-slots fallback.
#[cfg(not(weir_loom))]
const SLOTS: usize = 31;
#[cfg(weir_loom)]
const SLOTS: usize = 2;

/// `ctl` bits 0..SLOTS: slot `i` is claimed (a release is writing a sample into it, or its
/// sample waits for the holder).
const CLAIM_MASK: u64 = (1 << SLOTS) - 1;
/// `ctl` bit 31: a thread holds the feed (the "holder"): it alone applies samples, and it alone
/// reaches the algorithm (the [`BitLock`]'s owner bit).
const LOCKED: u64 = 1 << 31;
/// `ctl` bits 32..32+SLOTS: slot `i` holds a published sample.
const FULL_SHIFT: u32 = 32;
const FULL_MASK: u64 = CLAIM_MASK << FULL_SHIFT;
/// `ctl` bit 63: a thread in [`Inner::exclusive`] waits for the feed. The holder passes the
/// feed to it by clearing this bit while keeping [`LOCKED`] set.
const WANTED: u64 = 1 << 63;

const _: () = assert!(SLOTS <= 31);

/// The algorithm and the word `ctl` that says who may apply samples to it (module docs,
/// "Feeding samples"): claim bits, [`LOCKED`], full bits, [`WANTED`]. A [`BitLock`] (the
/// crate's one place for `unsafe` here): the algorithm is reached only through the [`Owner`]
/// that taking [`LOCKED`] returns, and `BitLock`'s methods never change `LOCKED` or `WANTED`
/// except to take, give back or hand over the feed. `ctl` is changed only by
/// read-modify-writes (`Relaxed` loads serve as first guesses), so every decision acts on the
/// latest value. Its queue orders the callers of [`Inner::exclusive`] (`set_limit`,
/// `inspect`, the full-slots fallback): one at a time may set [`WANTED`].
type Feed = BitLock<Box<dyn LimitAlgorithm>, LOCKED, WANTED>;

/// The right to apply samples: this thread holds [`LOCKED`].
type Owner<'a> = crate::sync::Owner<'a, Box<dyn LimitAlgorithm>, LOCKED, WANTED>;

/// One waiting sample, packed losslessly in two words.
struct Slot {
    /// `rtt.as_secs()`.
    secs: AtomicU64,
    /// `rtt.subsec_nanos()` in bits 0..30, `dropped` in bit 30, `in_flight` in bits 32..64.
    rest: AtomicU64,
}

const DROPPED_BIT: u64 = 1 << 30;
const NANOS_MASK: u64 = DROPPED_BIT - 1;

impl Slot {
    fn new() -> Slot {
        Slot {
            secs: AtomicU64::new(0),
            rest: AtomicU64::new(0),
        }
    }

    /// Written by the release that claimed the slot, before it publishes the full bit.
    fn write(&self, s: &Sample) {
        let rest = u64::from(s.rtt.subsec_nanos())
            | if s.dropped { DROPPED_BIT } else { 0 }
            | (u64::from(s.in_flight) << 32);
        // Relaxed (both): published by the AcqRel `fetch_or` of the full bit that follows.
        self.secs.store(s.rtt.as_secs(), Ordering::Relaxed);
        self.rest.store(rest, Ordering::Relaxed);
    }

    /// Read by the holder after it took the full bit.
    fn read(&self) -> Sample {
        // Relaxed (both): the holder's AcqRel `fetch_and` that took the full bit made the
        // writer's stores visible.
        let secs = self.secs.load(Ordering::Relaxed);
        let rest = self.rest.load(Ordering::Relaxed);
        // The nanoseconds came from `subsec_nanos` (< 10^9): no carry into the seconds.
        let rtt = Duration::new(secs, (rest & NANOS_MASK) as u32);
        Sample::new(rtt, (rest >> 32) as u32, rest & DROPPED_BIT != 0)
    }
}

/// The bit of the lowest free slot in `ctl`, if any.
fn free_slot(ctl: u64) -> Option<u64> {
    let free = !ctl & CLAIM_MASK;
    (free != 0).then(|| free & free.wrapping_neg())
}

impl Inner {
    /// Gets `sample` applied without waiting for another thread: if no thread holds the feed,
    /// takes it and applies the sample (and any others waiting); otherwise leaves the sample in
    /// a slot for the holder and returns. Only if every slot is taken does it wait
    /// ([`Inner::exclusive`]).
    fn feed(&self, sample: Sample) {
        let ctl = &*self.feed;
        // Relaxed: a first guess; each CAS below re-checks it.
        let mut cur = ctl.load(Ordering::Relaxed);
        let bit = loop {
            if cur & LOCKED == 0 {
                // `try_take`: a CAS setting LOCKED, Acquire on success (taking the feed,
                // paired with the Release of the holder that gave it back), Relaxed on
                // failure (the retry re-checks).
                match ctl.try_take(cur, 0) {
                    Ok(owner) => return self.apply_own(owner, cur | LOCKED, sample),
                    Err(actual) => cur = actual,
                }
                continue;
            }
            let Some(bit) = free_slot(cur) else {
                // Every slot waits for the holder: the documented fallback waits for it.
                return self.exclusive(|algorithm| {
                    let limit = algorithm.update(&sample).max(1);
                    self.store_limit(limit);
                });
            };
            // Acquire on success: the holder that freed this slot read its last sample and
            // then freed it with a Release RMW; our writes must come after those reads.
            // Relaxed on failure: the retry re-checks.
            match ctl.compare_exchange_weak(cur, cur | bit, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break bit,
                Err(actual) => cur = actual,
            }
        };
        self.slots[bit.trailing_zeros() as usize].write(&sample);
        // `fetch_or_take`, AcqRel: Release publishes the slot to the holder that takes the
        // full bit (with an Acquire RMW); Acquire because, if the holder left meanwhile, this
        // sets LOCKED and takes the feed.
        if let (_, Some(owner)) = ctl.fetch_or_take(bit << FULL_SHIFT) {
            Holder::new(self, owner).run(None);
        }
    }

    /// The holder's work when it took the feed with its own sample (`held`: the word its take
    /// wrote). The uncontended case, what a single thread always meets, is `Holder::run`
    /// without its rounds: apply the sample, store the limit, and give the feed back with one
    /// compare-and-swap against `held`, which succeeds only if no sample was published and
    /// nobody asked for the feed meanwhile. Otherwise `Holder::run` takes over (it applies
    /// what was published, or passes the feed on). A panic in `update` drops `owner`, which
    /// gives the feed back (the sample is lost, as in `Holder`).
    #[inline]
    fn apply_own(&self, mut owner: Owner<'_>, held: u64, sample: Sample) {
        let limit = owner.with(|algorithm| algorithm.update(&sample));
        self.store_limit(limit.max(1));
        if held & (FULL_MASK | WANTED) == 0 {
            // `give`: a CAS clearing LOCKED, Release on success (our update and limit write
            // happen before the next holder's), Relaxed on failure (nothing given).
            match owner.give(held, 0) {
                Ok(()) => return,
                Err((o, _)) => owner = o,
            }
        }
        Holder::new(self, owner).run(None);
    }

    /// Takes the feed and runs `op` on the algorithm, after applying every sample waiting;
    /// applies those left while `op` ran before returning. For `set_limit`, `inspect`, and a
    /// release that found every slot taken. Waits: behind another caller of this function
    /// (on the feed's queue), then for the holder, which passes the feed over at the end of
    /// its current drain round (each round applies at most [`SLOTS`] samples).
    fn exclusive<R>(&self, op: impl FnOnce(&mut dyn LimitAlgorithm) -> R) -> R {
        // `want` sets WANTED (Relaxed: a request, publishing nothing); `take` waits, yielding,
        // until the holder hands the feed over (its Release CAS clears WANTED keeping LOCKED,
        // seen with an Acquire load) or finds it free and takes it with an Acquire CAS.
        let (owner, _queue) = self.feed.want().take();
        let mut holder = Holder::new(self, owner);
        let out = holder.with(|to_free, algorithm| {
            drain(self, to_free, algorithm, None);
            let out = op(algorithm);
            drain(self, to_free, algorithm, None);
            out
        });
        if !holder.unlock() {
            holder.run(None);
        }
        out
    }
}

/// A thread that holds the feed ([`LOCKED`]): the only one that applies samples. Dropped while
/// still holding it (a panic in `update` or in an `inspect` closure), it gives the feed and
/// its slots back, so the limiter keeps working; the samples it had taken and not yet applied
/// are then lost.
struct Holder<'a> {
    inner: &'a Inner,
    /// Claim bits of slots whose samples this holder has taken, freed by its next RMW of `ctl`.
    to_free: u64,
    /// The feed: `Some` while this thread holds it.
    owner: Option<Owner<'a>>,
}

impl<'a> Holder<'a> {
    /// For a thread that has just taken the feed of `inner`.
    fn new(inner: &'a Inner, owner: Owner<'a>) -> Holder<'a> {
        Holder {
            inner,
            to_free: 0,
            owner: Some(owner),
        }
    }

    /// Runs `f` on `to_free` and the algorithm. If `f` panics, `self` is dropped still
    /// holding the feed, and gives it back.
    fn with<R>(&mut self, f: impl FnOnce(&mut u64, &mut dyn LimitAlgorithm) -> R) -> R {
        let Holder { to_free, owner, .. } = self;
        // Always `Some` while the holder is used (only `unlock` takes it, and then the
        // holder is done).
        let owner = owner.as_mut().expect("the holder holds the feed");
        owner.with(|algorithm| f(to_free, &mut **algorithm))
    }

    /// Applies `own` (a sample not in a slot) and every published sample, then gives the feed
    /// back once no sample is waiting (or passes it to a waiting [`Inner::exclusive`]).
    fn run(mut self, mut own: Option<Sample>) {
        let inner = self.inner;
        loop {
            self.with(|to_free, algorithm| drain(inner, to_free, algorithm, own.take()));
            if self.unlock() {
                return;
            }
        }
    }

    /// Gives the feed back (and frees the slots taken) if no sample is published; or, if
    /// [`WANTED`] is set, passes it to the waiting [`Inner::exclusive`] whatever is published.
    /// `false`, still holding the feed, if samples wait and nobody wants the feed.
    fn unlock(&mut self) -> bool {
        let Some(mut owner) = self.owner.take() else {
            // Not reached: only this takes the owner, and the holder is then done.
            return true;
        };
        // Relaxed: a first guess; the CAS re-checks.
        let mut cur = self.inner.feed.load(Ordering::Relaxed);
        loop {
            if cur & WANTED == 0 && cur & FULL_MASK != 0 {
                self.owner = Some(owner);
                return false;
            }
            // `give`: a CAS that clears LOCKED (or, WANTED set, clears WANTED keeping LOCKED:
            // the feed and the samples waiting go to the waiter) and our slots' claim bits.
            // Release on success: gives the feed (our updates and limit writes happen before
            // the next holder's) and the slots (our reads of them happen before their next
            // writers' writes). Relaxed on failure: the loop re-checks.
            match owner.give(cur, self.to_free) {
                Ok(()) => return true,
                Err((o, actual)) => (owner, cur) = (o, actual),
            }
        }
    }
}

impl Drop for Holder<'_> {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            // Only on a panic: every normal path gives the feed back or passes it. Release:
            // as in `unlock`. Published samples stay for the next release (or the waiting
            // `exclusive`, which then finds LOCKED clear and takes the feed).
            owner.give_back(self.to_free);
        }
    }
}

/// Applies `own`, then takes and applies published samples, round after round, until none is
/// left or [`WANTED`] is set; stores the limit after each round (the last `update`'s). The
/// caller holds the feed; `to_free` is its [`Holder::to_free`].
fn drain(
    inner: &Inner,
    to_free: &mut u64,
    algorithm: &mut dyn LimitAlgorithm,
    own: Option<Sample>,
) {
    let ctl = &*inner.feed;
    let mut limit = own.map(|s| algorithm.update(&s));
    loop {
        if let Some(limit) = limit.take() {
            inner.store_limit(limit.max(1));
        }
        // Relaxed: a check; samples are taken by the RMW below, and WANTED is acted on by
        // `unlock`'s CAS.
        let cur = ctl.load(Ordering::Relaxed);
        if cur & FULL_MASK == 0 || cur & WANTED != 0 {
            return;
        }
        // AcqRel: Acquire pairs with each publisher's AcqRel `fetch_or`, making its slot
        // visible; Release frees the slots read in the last round to their next writers
        // (whose claim CAS is Acquire).
        let prev = ctl.fetch_and(!(FULL_MASK | *to_free), Ordering::AcqRel);
        let mut full = (prev & FULL_MASK) >> FULL_SHIFT;
        // Freed with the next RMW, even if an `update` below panics.
        *to_free = full;
        while full != 0 {
            let i = full.trailing_zeros() as usize;
            full &= full - 1;
            limit = Some(algorithm.update(&inner.slots[i].read()));
        }
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("state", &self.state())
            .field("mode", &self.inner.config.mode)
            .finish_non_exhaustive()
    }
}

// === Permit, OwnedPermit ===

/// What a grant decided, shared by both permit types.
#[derive(Clone, Copy)]
struct Grant {
    start: Option<Duration>,
    in_flight: u32,
    limit: u32,
    shadow: Option<Rejection>,
    done: bool,
}

/// The methods common to [`Permit`] and [`OwnedPermit`] (identical on both; the release logic
/// is `Inner::release`, shared).
macro_rules! permit_methods {
    () => {
        /// The request completed normally: its RTT is a sample.
        #[inline]
        pub fn success(self) {
            self.release(Outcome::Success);
        }

        /// The request was dropped (timeout, overload): a congestion sample.
        #[inline]
        pub fn dropped(self) {
            self.release(Outcome::Dropped);
        }

        /// The request says nothing about capacity: free the slot, no sample.
        #[inline]
        pub fn ignore(self) {
            self.release(Outcome::Ignored);
        }

        /// Releases with `outcome`, the RTT measured on the limiter's clock (only if the
        /// algorithm learns from it or metrics record it).
        #[inline]
        pub fn release(mut self, outcome: Outcome) {
            self.limiter.inner.release(&mut self.grant, outcome, None);
        }

        /// Releases with `outcome` and an RTT measured by the caller (the limiter then reads no
        /// clock at the release).
        #[inline]
        pub fn release_with_rtt(mut self, outcome: Outcome, rtt: Duration) {
            self.limiter
                .inner
                .release(&mut self.grant, outcome, Some(rtt));
        }

        /// The in-flight count right after this permit was granted, itself included (in
        /// shadow mode, for a permit over the limit: enforced plus shadow permits). For an
        /// enforced permit it is at most [`limit`](Self::limit): both come from one value of
        /// the state word.
        pub fn in_flight(&self) -> u32 {
            self.grant.in_flight
        }

        /// The limit in force when this permit was granted.
        pub fn limit(&self) -> u32 {
            self.grant.limit
        }

        /// When the permit was granted, on the limiter's clock; `None` if the limiter reads no
        /// clock at grants. It reads one whenever something uses the time: an algorithm that
        /// learns ([`LimitAlgorithm::learns`]), a registry (the RTT histogram), or
        /// [`LimiterBuilder::timestamp_grants`]. So `None` only on a limiter with a
        /// non-learning algorithm (such as a `FixedLimit`), no registry, and no timestamps.
        pub fn started_at(&self) -> Option<Duration> {
            self.grant.start
        }

        /// In shadow mode, the rejection this request would have got; `None` for a permit
        /// granted within the limit.
        pub fn shadow_rejection(&self) -> Option<&Rejection> {
            self.grant.shadow.as_ref()
        }

        /// [`Verdict::Admit`], or [`Verdict::ShadowReject`] for a permit over the limit in
        /// shadow mode.
        pub fn verdict(&self) -> Verdict {
            if self.grant.shadow.is_some() {
                Verdict::ShadowReject
            } else {
                Verdict::Admit
            }
        }
    };
}

/// Admission to run one request under a [`Limiter`], borrowing it (from
/// [`Limiter::try_acquire`]). [`OwnedPermit`] is the same without the borrow.
///
/// Release it with [`success`](Permit::success), [`dropped`](Permit::dropped) or
/// [`ignore`](Permit::ignore) (or [`release`](Permit::release)); dropping it releases it as
/// [`Outcome::Ignored`], which frees the slot without teaching the algorithm anything. The RTT
/// is the limiter clock's time from the grant to the release, unless given with
/// [`release_with_rtt`](Permit::release_with_rtt).
#[must_use = "a permit admits one request; dropping it at once releases it as ignored"]
pub struct Permit<'a> {
    limiter: &'a Limiter,
    grant: Grant,
}

impl<'a> Permit<'a> {
    permit_methods!();

    /// The same permit, holding its own handle to the limiter (one reference-count increment)
    /// instead of the borrow.
    pub fn into_owned(mut self) -> OwnedPermit {
        let owned = OwnedPermit {
            limiter: self.limiter.clone(),
            grant: self.grant,
        };
        // The slot now belongs to `owned`: this one's drop must not free it.
        self.grant.done = true;
        owned
    }

    /// The limiter this permit was granted by.
    pub fn limiter(&self) -> &'a Limiter {
        self.limiter
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.limiter
            .inner
            .release(&mut self.grant, Outcome::Ignored, None);
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_grant(f.debug_struct("Permit"), &self.grant)
    }
}

/// Admission to run one request under a [`Limiter`], holding its own handle to it (from
/// [`Limiter::try_acquire_owned`] or [`Permit::into_owned`]): `'static`, for futures and
/// threads. Same methods and release semantics as [`Permit`].
#[must_use = "a permit admits one request; dropping it at once releases it as ignored"]
pub struct OwnedPermit {
    limiter: Limiter,
    grant: Grant,
}

impl OwnedPermit {
    permit_methods!();

    /// The limiter this permit was granted by.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }
}

impl Drop for OwnedPermit {
    #[inline]
    fn drop(&mut self) {
        self.limiter
            .inner
            .release(&mut self.grant, Outcome::Ignored, None);
    }
}

impl fmt::Debug for OwnedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_grant(f.debug_struct("OwnedPermit"), &self.grant)
    }
}

fn debug_grant(mut d: fmt::DebugStruct<'_, '_>, g: &Grant) -> fmt::Result {
    d.field("in_flight", &g.in_flight)
        .field("limit", &g.limit)
        .field("started_at", &g.start)
        .field("shadow", &g.shadow)
        .finish_non_exhaustive()
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
        assert_eq!(p.started_at(), Some(Duration::ZERO));
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

    /// A clock that counts its reads (on top of a manual clock).
    #[derive(Debug, Clone, Default)]
    struct CountingClock {
        time: ManualClock,
        reads: Arc<std::sync::atomic::AtomicU64>,
    }

    impl crate::clock::Clock for CountingClock {
        fn now(&self) -> Duration {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.time.now()
        }
    }

    impl CountingClock {
        fn reads(&self) -> u64 {
            self.reads.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    fn counting(builder: LimiterBuilder) -> (CountingClock, Limiter) {
        let clock = CountingClock::default();
        let l = builder.clock(Arc::new(clock.clone())).build().unwrap();
        (clock, l)
    }

    /// An algorithm that does not learn: `update` must never be called.
    #[derive(Debug)]
    struct NoLearning(u32);

    impl LimitAlgorithm for NoLearning {
        fn limit(&self) -> u32 {
            self.0
        }
        fn update(&mut self, _: &Sample) -> u32 {
            unreachable!("update called on an algorithm that does not learn")
        }
        fn set_limit(&mut self, limit: u32) -> u32 {
            self.0 = limit.max(1);
            self.0
        }
        fn bounds(&self) -> std::ops::RangeInclusive<u32> {
            1..=u32::MAX
        }
        fn learns(&self) -> bool {
            false
        }
    }

    #[test]
    fn learns_flags() {
        assert!(!FixedLimit::new(1).learns());
        assert!(Aimd::builder().build().unwrap().learns());
    }

    /// A non-learning algorithm without metrics: no clock read, no `update`, `started_at` is
    /// `None`, and the word still counts exactly.
    #[test]
    fn non_learning_fast_path_reads_no_clock() {
        let (clock, l) = counting(Limiter::builder(NoLearning(2)));
        let a = l.try_acquire().unwrap();
        let b = l.try_acquire_owned().unwrap();
        assert_eq!((a.started_at(), b.started_at()), (None, None));
        assert_eq!(l.try_acquire().unwrap_err().reason, RejectReason::AtLimit);
        clock.time.advance(MS);
        a.success();
        b.release_with_rtt(Outcome::Dropped, MS);
        let c = l.try_acquire().unwrap();
        drop(c);
        l.try_acquire().unwrap().ignore();
        assert_eq!(l.in_flight(), 0);
        assert_eq!(l.set_limit(1), 1);
        assert_eq!(clock.reads(), 0);
        assert!(format!("{:?}", l.try_acquire().unwrap()).contains("started_at: None"));
    }

    /// `timestamp_grants` restores a grant time on the fast path (one read per grant, none at
    /// the release).
    #[test]
    fn timestamp_grants_reads_once_per_grant() {
        let (clock, l) = counting(Limiter::builder(FixedLimit::new(4)).timestamp_grants(true));
        clock.time.advance(3 * MS);
        let p = l.try_acquire().unwrap();
        assert_eq!(p.started_at(), Some(3 * MS));
        p.success();
        let p = l.try_acquire_owned().unwrap();
        assert_eq!(p.started_at(), Some(3 * MS));
        p.dropped();
        assert_eq!(clock.reads(), 2);
    }

    /// A learning algorithm: one read at the grant, one at a sampled release; none at an
    /// ignored release, nor at a release with the caller's RTT (which is the sample).
    #[test]
    fn learning_reads_the_clock_only_when_it_needs_an_rtt() {
        let aimd = Aimd::builder().initial(2).min(1).max(4).build().unwrap();
        let (clock, l) = counting(Limiter::builder(aimd));
        let p = l.try_acquire().unwrap();
        assert_eq!(p.started_at(), Some(Duration::ZERO));
        p.success();
        assert_eq!(clock.reads(), 2);
        assert_eq!(l.limit(), 3);
        l.try_acquire().unwrap().ignore();
        assert_eq!(clock.reads(), 3);
        let p = l.try_acquire_owned().unwrap();
        p.release_with_rtt(Outcome::Dropped, MS);
        assert_eq!(clock.reads(), 4);
        assert_eq!(l.limit(), 2); // floor(3 × 0.9): the sample reached the algorithm
    }

    /// A non-learning algorithm with a registry: RTTs still go to the histogram (the clock's,
    /// or the caller's), without `update`.
    #[test]
    fn non_learning_with_metrics_records_rtts() {
        let registry = Registry::new();
        let (clock, l) = counting(Limiter::builder(NoLearning(2)).registry(&registry));
        let p = l.try_acquire().unwrap();
        assert_eq!(p.started_at(), Some(Duration::ZERO));
        clock.time.advance(5 * MS);
        p.success();
        l.try_acquire_owned()
            .unwrap()
            .release_with_rtt(Outcome::Ignored, 2 * MS);
        let s = registry.snapshot();
        let rtt = s
            .histogram("concurrency_limit_rtt_nanoseconds", &["default"])
            .unwrap();
        assert_eq!(rtt.count(), 2);
        assert_eq!(rtt.sum(), 7_000_000); // 5 ms on the clock, 2 ms given
        assert_eq!(
            s.counter("concurrency_limit_requests_total", &["default", "ignored"]),
            Some(1)
        );
        assert_eq!(
            s.gauge("concurrency_limit_in_flight", &["default"]),
            Some(0)
        );
        assert_eq!(clock.reads(), 3); // two grants, one release without an RTT
    }

    /// Owned permits: `'static`, released on other threads; `into_owned` moves the slot.
    #[test]
    fn owned_permits_cross_threads() {
        let l = Limiter::new(FixedLimit::new(8));
        let owned: Vec<OwnedPermit> = (0..4).map(|_| l.try_acquire_owned().unwrap()).collect();
        let borrowed = l.try_acquire().unwrap();
        assert_eq!((borrowed.in_flight(), borrowed.limit()), (5, 8));
        assert!(std::ptr::eq(borrowed.limiter(), &l));
        let moved = borrowed.into_owned(); // the borrowed permit's drop frees nothing
        assert_eq!(l.in_flight(), 5);
        assert_eq!(moved.verdict(), Verdict::Admit);
        assert!(moved.shadow_rejection().is_none());
        assert_eq!(moved.limiter().limit(), 8);
        assert!(format!("{moved:?}").contains("OwnedPermit"));
        let handles: Vec<_> = owned
            .into_iter()
            .chain([moved])
            .enumerate()
            .map(|(i, p)| {
                std::thread::spawn(move || match i % 3 {
                    0 => p.success(),
                    1 => drop(p),
                    _ => p.release(Outcome::Dropped),
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(l.in_flight(), 0);
    }

    /// Shadow permits on the fast path: counted apart, both kinds of permit.
    #[test]
    fn shadow_fast_path() {
        let (clock, l) = counting(Limiter::builder(FixedLimit::new(1)).mode(Mode::Shadow));
        let a = l.try_acquire().unwrap();
        let b = l.try_acquire_owned().unwrap();
        let c = l.try_acquire().unwrap().into_owned();
        assert_eq!(
            (b.verdict(), c.verdict()),
            (Verdict::ShadowReject, Verdict::ShadowReject)
        );
        assert_eq!(c.in_flight(), 3);
        assert_eq!(l.state().shadow_in_flight, 2);
        b.success();
        drop(c);
        a.success();
        let s = l.state();
        assert_eq!((s.in_flight, s.shadow_in_flight), (0, 0));
        assert_eq!(clock.reads(), 0);
    }

    /// 16 threads × many acquire/release on the fast path (borrowed and owned permits): the
    /// word never shows more in flight than the limit, a tracker of permits held never exceeds
    /// it, and every permit comes back.
    #[test]
    fn fast_path_sixteen_threads_exact() {
        const LIMIT: u32 = 3;
        const ROUNDS: u32 = 20_000;
        let l = Limiter::new(FixedLimit::new(LIMIT));
        let held = std::sync::atomic::AtomicU32::new(0);
        let grants = std::sync::atomic::AtomicU64::new(0);
        let refusals = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..16u32 {
                let (l, held, grants, refusals) = (&l, &held, &grants, &refusals);
                s.spawn(move || {
                    use std::sync::atomic::Ordering::{Relaxed, SeqCst};
                    for i in 0..ROUNDS {
                        let permit = if (i + t) % 2 == 0 {
                            l.try_acquire().map(Permit::into_owned)
                        } else {
                            l.try_acquire_owned()
                        };
                        match permit {
                            Ok(p) => {
                                assert!(p.in_flight() <= p.limit(), "{p:?}");
                                let now = held.fetch_add(1, SeqCst) + 1;
                                assert!(now <= LIMIT, "{now} held under a limit of {LIMIT}");
                                assert!(l.in_flight() <= LIMIT);
                                held.fetch_sub(1, SeqCst);
                                grants.fetch_add(1, Relaxed);
                                match i % 3 {
                                    0 => p.success(),
                                    1 => drop(p),
                                    _ => p.release_with_rtt(Outcome::Dropped, MS),
                                }
                            }
                            Err(r) => {
                                assert!(r.in_flight >= r.limit);
                                refusals.fetch_add(1, Relaxed);
                            }
                        }
                        // The borrowed kind too, held across nothing.
                        if let Ok(p) = l.try_acquire() {
                            assert!(p.in_flight() <= LIMIT);
                            p.success();
                        }
                    }
                });
            }
        });
        assert_eq!(l.in_flight(), 0);
        let total = grants.into_inner() + refusals.into_inner();
        assert_eq!(total, 16 * u64::from(ROUNDS));
    }

    #[test]
    fn permits_are_send_and_limiter_is_sync() {
        fn check<T: Send + Sync>() {}
        check::<Limiter>();
        check::<Permit<'_>>();
        check::<OwnedPermit>();
        for o in [Outcome::Success, Outcome::Dropped, Outcome::Ignored] {
            assert!(!o.as_str().is_empty());
        }
    }

    /// What a [`Counting`] algorithm saw, shared with the test.
    #[derive(Debug, Default)]
    struct Seen {
        /// `update` calls.
        updates: std::sync::atomic::AtomicU64,
        /// Per sample id (the RTT in nanoseconds), how often it was applied.
        applied: Vec<std::sync::atomic::AtomicU32>,
        /// Set while an `update` runs: two at once would be a bug.
        inside: std::sync::atomic::AtomicBool,
    }

    impl Seen {
        fn new(ids: usize) -> Arc<Seen> {
            Arc::new(Seen {
                applied: (0..ids).map(|_| Default::default()).collect(),
                ..Seen::default()
            })
        }
        fn updates(&self) -> u64 {
            self.updates.load(std::sync::atomic::Ordering::SeqCst)
        }
        /// Every id applied exactly once.
        fn check_each_once(&self) {
            for (id, n) in self.applied.iter().enumerate() {
                let n = n.load(std::sync::atomic::Ordering::SeqCst);
                assert_eq!(n, 1, "sample {id} applied {n} times");
            }
        }
    }

    /// Counts `update` calls per sample: a sample's RTT in nanoseconds is its id, and it is
    /// dropped iff `id % 3 == 0` (checked). Its limit is `base + updates % 5`. `block_first`,
    /// if set, makes the first `update` signal the first channel and wait on the second;
    /// `panic_on: Some(n)` makes the `n`th update panic (after counting it).
    #[derive(Debug)]
    struct Counting {
        seen: Arc<Seen>,
        base: u32,
        block_first: Option<(
            std::sync::mpsc::SyncSender<()>,
            std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
        )>,
        panic_on: Option<u64>,
    }

    impl Counting {
        fn new(seen: &Arc<Seen>, base: u32) -> Counting {
            Counting {
                seen: seen.clone(),
                base,
                block_first: None,
                panic_on: None,
            }
        }
    }

    impl LimitAlgorithm for Counting {
        fn limit(&self) -> u32 {
            self.base + (self.seen.updates() % 5) as u32
        }
        fn update(&mut self, s: &Sample) -> u32 {
            use std::sync::atomic::Ordering::SeqCst;
            assert!(!self.seen.inside.swap(true, SeqCst), "two updates at once");
            let id = s.rtt.as_nanos() as usize;
            assert_eq!(s.dropped, id.is_multiple_of(3), "{s:?}");
            self.seen.applied[id].fetch_add(1, SeqCst);
            let n = self.seen.updates.fetch_add(1, SeqCst) + 1;
            if n == 1
                && let Some((entered, go)) = self.block_first.take()
            {
                entered.send(()).unwrap();
                go.lock().unwrap().recv().unwrap();
            }
            self.seen.inside.store(false, SeqCst);
            if self.panic_on == Some(n) {
                panic!("update {n} panics");
            }
            self.limit()
        }
        fn set_limit(&mut self, limit: u32) -> u32 {
            self.base = limit.clamp(1, 1 << 20);
            self.limit()
        }
        fn bounds(&self) -> std::ops::RangeInclusive<u32> {
            1..=(1 << 20) + 4
        }
    }

    /// The outcome of sample `id`: dropped iff `id % 3 == 0`.
    fn outcome_for(id: usize) -> Outcome {
        if id.is_multiple_of(3) {
            Outcome::Dropped
        } else {
            Outcome::Success
        }
    }

    /// Releases a permit with the sample `id` (RTT `id` ns, outcome [`outcome_for`]).
    fn release_id(p: Permit<'_>, id: usize) {
        p.release_with_rtt(outcome_for(id), Duration::from_nanos(id as u64));
    }

    /// The sample slots hold every field of a sample exactly, extremes included.
    #[test]
    fn slots_pack_samples_losslessly() {
        let slot = Slot::new();
        for s in [
            Sample::new(Duration::ZERO, 0, false),
            Sample::new(Duration::MAX, u32::MAX, true),
            Sample::new(Duration::new(3, 999_999_999), 1, true),
            Sample::new(Duration::from_nanos(7), 1 << 31, false),
        ] {
            slot.write(&s);
            assert_eq!(slot.read(), s);
        }
    }

    /// 8 threads × 20,000 learning releases (plus a thread calling `set_limit` and `inspect`):
    /// once the threads have joined, with no flush, every sample has been applied exactly once
    /// (so N × M updates), never two updates at once, and the limit in the word is the
    /// algorithm's.
    #[test]
    fn learning_releases_apply_every_sample_once_without_waiting() {
        const THREADS: usize = 8;
        const ROUNDS: usize = 20_000;
        let seen = Seen::new(THREADS * ROUNDS);
        let l = Limiter::new(Counting::new(&seen, 1000));
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let l = &l;
                    s.spawn(move || {
                        for i in 0..ROUNDS {
                            let id = t * ROUNDS + i;
                            if i % 2 == 0 {
                                release_id(l.try_acquire().unwrap(), id);
                            } else {
                                let p = l.try_acquire_owned().unwrap();
                                p.release_with_rtt(
                                    outcome_for(id),
                                    Duration::from_nanos(id as u64),
                                );
                            }
                            if i % 64 == 0 {
                                // No sample: must not count.
                                l.try_acquire().unwrap().ignore();
                            }
                        }
                    })
                })
                .collect();
            let (l, stop) = (&l, &stop);
            let admin = s.spawn(move || {
                let mut calls = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let applied = l.set_limit(1000 + calls % 3);
                    assert!((1000..1007).contains(&applied), "{applied}");
                    let limit = l.inspect(|a| a.limit());
                    assert!((1000..1007).contains(&limit), "{limit}");
                    calls += 1;
                }
                calls
            });
            for w in workers {
                w.join().unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(admin.join().unwrap() > 0);
        });
        assert_eq!(seen.updates(), (THREADS * ROUNDS) as u64);
        seen.check_each_once();
        assert_eq!(l.limit(), l.inspect(|a| a.limit()));
        assert_eq!(l.in_flight(), 0);
        assert_eq!(l.inner.feed.load(Ordering::SeqCst), 0, "ctl left dirty");
    }

    /// A holder stuck in `update`: releases meanwhile fill every slot and return at once; the
    /// next one, finding no slot, waits (the documented fallback); an `inspect` called after
    /// the slot-filling releases returned sees all their samples. Then all are applied once.
    #[test]
    fn full_slots_fall_back_to_waiting_and_lose_nothing() {
        let seen = Seen::new(SLOTS + 2);
        let (entered_tx, entered_rx) = std::sync::mpsc::sync_channel(1);
        let (go_tx, go_rx) = std::sync::mpsc::sync_channel(1);
        let mut algo = Counting::new(&seen, 100);
        algo.block_first = Some((entered_tx, std::sync::Mutex::new(go_rx)));
        let l = Limiter::new(algo);
        let mut permits: Vec<_> = (0..SLOTS + 2)
            .map(|_| l.try_acquire_owned().unwrap())
            .collect();
        std::thread::scope(|s| {
            let first = permits.remove(0);
            let holder =
                s.spawn(move || first.release_with_rtt(Outcome::Success, Duration::from_nanos(1)));
            entered_rx.recv().unwrap();
            // The holder is inside `update`: these return without applying anything.
            for id in 2..SLOTS + 2 {
                let p = permits.remove(0);
                p.release_with_rtt(outcome_for(id), Duration::from_nanos(id as u64));
            }
            assert_eq!(seen.updates(), 1);
            assert_eq!(l.inner.feed.load(Ordering::SeqCst) & CLAIM_MASK, CLAIM_MASK);
            let last = permits.remove(0);
            let waiting = s.spawn(move || last.release_with_rtt(Outcome::Dropped, Duration::ZERO));
            let inspecting = s.spawn(|| l.inspect(|_| seen.updates()));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!waiting.is_finished(), "the fallback did not wait");
            assert_eq!(seen.updates(), 1);
            go_tx.send(()).unwrap();
            holder.join().unwrap();
            waiting.join().unwrap();
            assert!(inspecting.join().unwrap() > SLOTS as u64);
        });
        assert_eq!(seen.updates(), SLOTS as u64 + 2);
        seen.check_each_once();
        assert_eq!(l.inner.feed.load(Ordering::SeqCst), 0);
        assert_eq!(l.limit(), l.inspect(|a| a.limit()));
    }

    /// Releases made while `inspect` runs (here from inside its closure) leave their samples,
    /// and `inspect` applies them before it returns; `set_limit` applies earlier samples first.
    #[test]
    fn inspect_applies_samples_released_while_it_runs() {
        let seen = Seen::new(4);
        let l = Limiter::new(Counting::new(&seen, 10));
        let a = l.try_acquire().unwrap();
        let b = l.try_acquire().unwrap();
        let during = l.inspect(|_| {
            release_id(a, 1);
            release_id(b, 3);
            seen.updates()
        });
        assert_eq!(during, 0);
        assert_eq!(seen.updates(), 2);
        assert_eq!(l.set_limit(20), 20 + 2);
        assert_eq!(l.limit(), 22);
        release_id(l.try_acquire().unwrap(), 2);
        assert_eq!(l.limit(), 23);
        assert_eq!(seen.updates(), 3);
    }

    /// A panic in `update` or in an `inspect` closure reaches its caller and leaves the
    /// limiter working: later samples are applied, `inspect` and `set_limit` run.
    #[test]
    fn a_panicking_update_or_inspect_does_not_wedge_the_feed() {
        use std::panic::{AssertUnwindSafe, catch_unwind};
        let seen = Seen::new(4);
        let mut algo = Counting::new(&seen, 10);
        algo.panic_on = Some(1);
        let l = Limiter::new(algo);
        let p = l.try_acquire().unwrap();
        assert!(catch_unwind(AssertUnwindSafe(|| release_id(p, 1))).is_err());
        assert_eq!(l.inner.feed.load(Ordering::SeqCst), 0);
        assert!(catch_unwind(AssertUnwindSafe(|| l.inspect(|_| panic!("inspect")))).is_err());
        assert_eq!(l.inner.feed.load(Ordering::SeqCst), 0);
        release_id(l.try_acquire().unwrap(), 2);
        assert_eq!(seen.updates(), 2);
        assert_eq!(l.set_limit(30), 32);
        assert_eq!(l.in_flight(), 0);
    }
}
