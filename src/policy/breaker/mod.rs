//! Circuit breakers: stop calling what keeps failing, probe it carefully, resume when it heals.
//!
//! A [`CircuitBreaker`] is closed (calls flow), open (calls are rejected for the open
//! duration) or half-open (a bounded number of probe calls flow). Each call asks
//! [`try_acquire`](CircuitBreaker::try_acquire) first, and gets a `#[must_use]` [`Decision`]:
//! a [`Permit`], which the caller completes with the call's outcome, or a [`Rejection`] with
//! its reason and numbers. As with tokio's semaphore, that permit borrows the breaker;
//! [`try_acquire_owned`](CircuitBreaker::try_acquire_owned) gives an [`OwnedPermit`] that
//! holds a handle instead (for futures and tasks).
//!
//! - **Closed → open** when, among the calls of one closed period, `consecutive_failures` fail
//!   in a row (lift: 5), or, once the sliding window (the last N calls, or the last T) holds at
//!   least `minimum_calls` (lift: 10), the failure rate (lift: 0.5) or the slow-call rate
//!   reaches its threshold. A call is slow when it takes at least a fixed duration or a
//!   multiple of a recent percentile read from a weir histogram ([`SlowCall`]).
//! - **Open → half-open** when the open duration (lift: 60 s) is over, on the next
//!   `try_acquire`, which becomes the first probe.
//! - **Half-open → closed** after `success_threshold` (lift: 3) successful probes, with at
//!   most `half_open_max_probes` probes in flight at once (lift lets any number through).
//! - **Half-open → open** on any failed probe.
//!
//! The state, a generation number and the state's counters live in one packed atomic word
//! changed only by compare-and-swap, so each transition happens exactly once and its
//! listener, metrics and window reset run once, by the caller whose CAS made it. Every permit
//! remembers the generation it was issued in; an outcome reported after the breaker moved on
//! (lift's half-open double-transition race) changes nothing and is reported as
//! [`Recorded::Stale`]. See `docs/policy-breaker.md` for the state machine and bit layout.
//!
//! [`KeyedBreakers`] keeps one breaker per key (lift's `Name[:tenant:id][:op:METHOD:path]`),
//! with lock-free lookups and bounded memory (idle keys are evicted).
//!
//! ```
//! use std::time::Duration;
//! use weir::ManualClock;
//! use weir::policy::breaker::{CircuitBreaker, Decision, RejectReason, State};
//!
//! let clock = ManualClock::new();
//! let breaker = CircuitBreaker::builder("payments")
//!     .consecutive_failures(2)
//!     .open_duration(Duration::from_secs(30))
//!     .success_threshold(1)
//!     .clock(clock.clone())
//!     .build()?;
//!
//! for _ in 0..2 {
//!     match breaker.try_acquire() {
//!         Decision::Permitted(permit) => { let _ = permit.failure(); }
//!         Decision::Rejected(r) => panic!("{r:?}"),
//!     }
//! }
//! assert_eq!(breaker.state(), State::Open);
//! match breaker.try_acquire() {
//!     Decision::Rejected(r) => assert!(matches!(r.reason, RejectReason::Open { .. })),
//!     Decision::Permitted(_) => panic!("open"),
//! }
//! clock.advance(Duration::from_secs(30));
//! let probe = breaker.try_acquire().permit().expect("half-open probe");
//! assert_eq!(probe.state(), State::HalfOpen);
//! let _ = probe.success();
//! assert_eq!(breaker.state(), State::Closed);
//! # Ok::<(), weir::policy::breaker::BreakerConfigError>(())
//! ```
//!
//! # Orderings
//! - The state word is read with `Acquire` and changed by compare-and-swap with `AcqRel` on
//!   success (`Acquire` on failure). What makes each transition unique is the CAS's atomicity
//!   alone: of all callers that read the same snapshot, one CAS succeeds, and every decision
//!   (trip, probe slot, close, reopen, staleness) is made from the word itself. The loom models
//!   pass with every state-word operation `Relaxed` (tried by hand), which confirms it. The
//!   stronger orderings are kept for callers: a transition is then an event in happens-before,
//!   so a caller whose `try_acquire` sees `Open` happens-after the failure that tripped it and
//!   everything the tripping thread did before reporting it (its logs, its cleanup). They cost
//!   nothing on x86-64 (a CAS is a full barrier there and loads are plain moves).
//! - A count window belongs to one closed generation and is published through `arc-swap`
//!   (release on store, acquire on load) after the transition to closed; an outcome is counted
//!   in it only if its generation equals the permit's, so stale outcomes never enter a new
//!   window. A call that completes between the transition and the installation is not counted
//!   in any count window (it still counts toward consecutive failures). The time window is
//!   inline and tells closed periods apart by epoch (`window.rs`), with no such gap.
//! - An outcome that checks the rates issues a `SeqCst` fence between its window writes and
//!   its reads of the counts (`check_rates`), so two checking outcomes that race cannot both
//!   miss the other's write.
//! - Metric gauge updates on transitions are serialized by a mutex that only transition
//!   winners take (see `publish_state`), so the `circuit_breaker_state` gauge always ends at
//!   the state of the last transition.
//! - Windows and the percentile cache have their own notes (`window.rs`, `slow.rs`).
#![forbid(unsafe_code)]

mod keyed;
pub(crate) mod keymap;
mod metrics;
mod slow;
mod state;
mod window;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::RegistryError;
use crate::registry::Registry;
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
#[cfg(weir_loom)]
use loom::sync::atomic::fence;
#[cfg(not(weir_loom))]
use std::sync::atomic::fence;

use super::Mode;

pub use keyed::{KeyedBreakers, breaker_key};
pub use slow::{PercentileSlowCall, SlowCall};
pub use state::State;
pub use window::WindowCounts;

use metrics::{Metrics, RequestResult};
use slow::SlowThreshold;
use state::{MAX_OPEN, Snapshot, millis_ceil, millis_floor};
use window::{MAX_BUCKETS, MAX_COUNT_WINDOW, MIN_BUCKET, Sample, Window, Write};

// === configuration ===

/// The sliding window the failure and slow-call rates are computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlidingWindow {
    /// The last `calls` outcomes (1 to 1,000,000).
    Count {
        /// How many of the most recent outcomes are kept.
        calls: u32,
    },
    /// The outcomes of the last `length`, in `buckets` buckets (1 to 1024, each at least
    /// 1 ms; `length` at most one day). The window slides one bucket at a time.
    Time {
        /// How far back the window reaches.
        length: Duration,
        /// How many buckets it is divided into.
        buckets: u32,
    },
}

/// What an outcome is, for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call succeeded (it may still be slow).
    Success,
    /// The call failed.
    Failure,
    /// The call's outcome says nothing about the protected service (for example, a caller
    /// error or a cancellation): it is not counted, and a probe slot it held is freed.
    Ignored,
}

type Listener = Arc<dyn Fn(&Transition) + Send + Sync>;

/// The validated configuration shared by every breaker built from one builder.
struct Config {
    mode: Mode,
    consecutive_failures: u32,
    failure_rate: Option<f64>,
    slow_rate: Option<f64>,
    minimum_calls: u64,
    window: SlidingWindow,
    /// Stripes asked for a time window's success counts (`None`: one per hardware thread).
    window_stripes: Option<u32>,
    open_ms: u64,
    max_probes: u32,
    success_threshold: u32,
    slow: Option<SlowThreshold>,
}

impl Config {
    fn has_window(&self) -> bool {
        self.failure_rate.is_some() || self.slow_rate.is_some()
    }
}

/// Builds a [`CircuitBreaker`] (or [`KeyedBreakers`]). Defaults are lift's: trip on 5
/// consecutive failures or a failure rate of 0.5 over the last 5 minutes once 10 calls were
/// seen there, stay open 60 s, close after 3 successful probes; weir adds at most 3 probes
/// in flight, no slow-call threshold, [`Mode::Enforce`] and a [`SystemClock`].
#[must_use = "a builder does nothing until built"]
pub struct BreakerBuilder {
    name: String,
    mode: Mode,
    consecutive_failures: u32,
    failure_rate: Option<f64>,
    slow: Option<(SlowCall, f64)>,
    minimum_calls: u32,
    window: SlidingWindow,
    window_stripes: Option<u32>,
    open_duration: Duration,
    max_probes: u32,
    success_threshold: u32,
    clock: Option<SharedClock>,
    registry: Option<Registry>,
    listener: Option<Listener>,
}

impl fmt::Debug for BreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("failure_rate", &self.failure_rate)
            .field("slow", &self.slow)
            .field("minimum_calls", &self.minimum_calls)
            .field("window", &self.window)
            .field("window_stripes", &self.window_stripes)
            .field("open_duration", &self.open_duration)
            .field("max_probes", &self.max_probes)
            .field("success_threshold", &self.success_threshold)
            .finish_non_exhaustive()
    }
}

impl BreakerBuilder {
    fn new(name: &str) -> BreakerBuilder {
        BreakerBuilder {
            name: name.to_owned(),
            mode: Mode::Enforce,
            consecutive_failures: 5,
            failure_rate: Some(0.5),
            slow: None,
            minimum_calls: 10,
            window: SlidingWindow::Time {
                length: Duration::from_secs(300),
                buckets: 10,
            },
            window_stripes: None,
            open_duration: Duration::from_secs(60),
            max_probes: 3,
            success_threshold: 3,
            clock: None,
            registry: None,
            listener: None,
        }
    }

    /// Enforce decisions, or only observe them ([`Mode::Shadow`]: every call is admitted, and
    /// would-be rejections are reported on the permit and counted as `shadow_rejected`).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Trip after this many consecutive failures in one closed period (0 disables; lift: 5).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = n;
        self
    }

    /// Trip when the window's failure rate reaches `rate` (in `(0, 1]`; lift: 0.5).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = Some(rate);
        self
    }

    /// Never trip on the failure rate.
    pub fn without_failure_rate(mut self) -> Self {
        self.failure_rate = None;
        self
    }

    /// Trip when the window's slow-call rate reaches `rate` (in `(0, 1]`), a call being slow
    /// as `slow` says. A slow probe in half-open then counts as a failed probe.
    pub fn slow_calls(mut self, slow: SlowCall, rate: f64) -> Self {
        self.slow = Some((slow, rate));
        self
    }

    /// The rates are only considered once the window holds at least this many calls (at
    /// least 1; lift: 10). With a count window smaller than this, the window's size is used.
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n;
        self
    }

    /// The window the rates are computed over (lift: 5 minutes).
    pub fn window(mut self, window: SlidingWindow) -> Self {
        self.window = window;
        self
    }

    /// How many stripes a time window's success counts are spread over, so that successes
    /// recorded by different threads write different cache lines (failures and slow calls
    /// share one word per bucket). Rounded up to a power of two and capped at 8, and halved
    /// while the striped counts would take more than 16 KiB.
    ///
    /// Default: one per hardware thread (up to the cap) for a [`CircuitBreaker`]; **1** for
    /// [`KeyedBreakers`], whose keys each get a window of their own (about 240 bytes for the
    /// default window, against about 1.2 KiB with 8 stripes) and are each usually called by
    /// fewer threads. `0` means the default. No effect on count windows.
    pub fn window_stripes(mut self, stripes: u32) -> Self {
        self.window_stripes = (stripes > 0).then_some(stripes);
        self
    }

    /// How long the breaker stays open before probing (at most 365 days; lift: 60 s).
    /// Kept with millisecond resolution, rounded up.
    pub fn open_duration(mut self, d: Duration) -> Self {
        self.open_duration = d;
        self
    }

    /// At most this many probes in flight while half-open (1 to 65,535; default 3).
    pub fn half_open_max_probes(mut self, n: u32) -> Self {
        self.max_probes = n;
        self
    }

    /// Close after this many successful probes (1 to 65,535; lift: 3).
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.success_threshold = n;
        self
    }

    /// The clock all times come from (default: a new [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Record `circuit_breaker_requests_total{name, result}`, `circuit_breaker_state{name}`
    /// and `circuit_breaker_transitions_total{name, from, to}` into this registry (handles are
    /// obtained once, when the breaker is built).
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Calls `f` once for every transition, on the thread whose compare-and-swap made it,
    /// after the transition and with no lock held (so `f` may use the breaker). Transitions
    /// that happen close together may be reported out of order; their
    /// [`generation`](Transition::generation) orders them.
    pub fn on_transition(mut self, f: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(f));
        self
    }

    fn config(&self, clock: &SharedClock) -> Result<Config, BreakerConfigError> {
        let rate_ok = |r: f64| r > 0.0 && r <= 1.0;
        if let Some(r) = self.failure_rate
            && !rate_ok(r)
        {
            return Err(BreakerConfigError::Rate {
                what: "failure rate",
                value: r,
            });
        }
        if let Some((_, r)) = &self.slow
            && !rate_ok(*r)
        {
            return Err(BreakerConfigError::Rate {
                what: "slow-call rate",
                value: *r,
            });
        }
        if self.minimum_calls == 0 {
            return Err(BreakerConfigError::MinimumCalls);
        }
        match self.window {
            SlidingWindow::Count { calls } => {
                if calls == 0 || calls > MAX_COUNT_WINDOW {
                    return Err(BreakerConfigError::Window {
                        window: self.window,
                    });
                }
            }
            SlidingWindow::Time { length, buckets } => {
                let ok = (1..=MAX_BUCKETS).contains(&buckets)
                    && length <= Duration::from_secs(86_400)
                    && length / buckets >= MIN_BUCKET;
                if !ok {
                    return Err(BreakerConfigError::Window {
                        window: self.window,
                    });
                }
            }
        }
        if self.open_duration > MAX_OPEN {
            return Err(BreakerConfigError::OpenDuration {
                requested: self.open_duration,
                max: MAX_OPEN,
            });
        }
        let half_open_ok = |n: u32| (1..=state::HALF_OPEN_FIELD_MAX as u32).contains(&n);
        if !half_open_ok(self.max_probes) {
            return Err(BreakerConfigError::MaxProbes {
                value: self.max_probes,
            });
        }
        if !half_open_ok(self.success_threshold) {
            return Err(BreakerConfigError::SuccessThreshold {
                value: self.success_threshold,
            });
        }
        if self.consecutive_failures == 0 && self.failure_rate.is_none() && self.slow.is_none() {
            return Err(BreakerConfigError::NoTripCondition);
        }
        let slow = match &self.slow {
            Some((s, _)) => Some(SlowThreshold::new(s, clock)?),
            None => None,
        };
        Ok(Config {
            mode: self.mode,
            consecutive_failures: self.consecutive_failures,
            failure_rate: self.failure_rate,
            slow_rate: self.slow.as_ref().map(|(_, r)| *r),
            // A count window never holds more than its size: a larger minimum would silently
            // disable the rate thresholds, so it is clamped to the size.
            minimum_calls: u64::from(match self.window {
                SlidingWindow::Count { calls } => self.minimum_calls.min(calls),
                SlidingWindow::Time { .. } => self.minimum_calls,
            }),
            window: self.window,
            window_stripes: self.window_stripes,
            open_ms: millis_ceil(self.open_duration),
            max_probes: self.max_probes,
            success_threshold: self.success_threshold,
            slow,
        })
    }

    /// Builds the breaker.
    ///
    /// # Errors
    ///
    /// A [`BreakerConfigError`] naming the first setting out of range, or the registry's
    /// error if its metrics could not be registered.
    pub fn build(self) -> Result<CircuitBreaker, BreakerConfigError> {
        let clock = self
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(SystemClock::new()));
        let config = Arc::new(self.config(&clock)?);
        let parts = Shared {
            config,
            clock,
            registry: self.registry.clone(),
            listener: self.listener.clone(),
        };
        parts.breaker(&self.name)
    }

    /// Builds one breaker per key, created on first use, all with this configuration (and
    /// sharing its clock, registry, listener and percentile histogram). Each key's metrics
    /// carry the key as the `name` label. At most `max_keys` keys are kept; a key unused for
    /// `idle_ttl` may be evicted (see [`KeyedBreakers`]).
    ///
    /// # Errors
    ///
    /// As for [`build`](BreakerBuilder::build), and [`BreakerConfigError::Keys`] if `max_keys`
    /// or `idle_ttl` is zero.
    pub fn build_keyed(
        self,
        max_keys: usize,
        idle_ttl: Duration,
    ) -> Result<KeyedBreakers, BreakerConfigError> {
        if max_keys == 0 || idle_ttl.is_zero() {
            return Err(BreakerConfigError::Keys);
        }
        let clock = self
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(SystemClock::new()));
        let mut config = self.config(&clock)?;
        // One stripe per key unless asked otherwise (see `window_stripes`).
        config.window_stripes = Some(config.window_stripes.unwrap_or(1));
        let config = Arc::new(config);
        Ok(KeyedBreakers::new(
            Shared {
                config,
                clock,
                registry: self.registry.clone(),
                listener: self.listener.clone(),
            },
            max_keys,
            idle_ttl,
        ))
    }
}

/// What every breaker built from one builder shares.
#[derive(Clone)]
struct Shared {
    config: Arc<Config>,
    clock: SharedClock,
    registry: Option<Registry>,
    listener: Option<Listener>,
}

impl Shared {
    fn breaker(&self, name: &str) -> Result<CircuitBreaker, BreakerConfigError> {
        let metrics = match &self.registry {
            Some(r) => Some(Metrics::register(r, name).map_err(BreakerConfigError::Registry)?),
            None => None,
        };
        let window = self
            .config
            .has_window()
            .then(|| Window::new(&self.config.window, self.config.window_stripes));
        Ok(CircuitBreaker {
            inner: Arc::new(Inner {
                name: name.into(),
                config: self.config.clone(),
                clock: self.clock.clone(),
                state: AtomicU64::new(Snapshot::INITIAL.bits()),
                window,
                metrics,
                listener: self.listener.clone(),
                publish: Mutex::new(()),
            }),
        })
    }
}

/// A breaker could not be built with the requested settings.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BreakerConfigError {
    /// A rate threshold must be in `(0, 1]` (NaN is rejected). Use e.g. 0.5 for 50%.
    Rate {
        /// Which rate.
        what: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// `minimum_calls` must be at least 1.
    MinimumCalls,
    /// A count window holds 1 to 1,000,000 calls; a time window has 1 to 1024 buckets of at
    /// least 1 ms and a length of at most one day.
    Window {
        /// The rejected window.
        window: SlidingWindow,
    },
    /// The open duration is too long; use at most `max`.
    OpenDuration {
        /// The rejected duration.
        requested: Duration,
        /// The longest allowed.
        max: Duration,
    },
    /// `half_open_max_probes` must be in `1..=65535`.
    MaxProbes {
        /// The rejected value.
        value: u32,
    },
    /// `success_threshold` must be in `1..=65535`.
    SuccessThreshold {
        /// The rejected value.
        value: u32,
    },
    /// Consecutive failures are disabled (0) and no rate threshold is set: the breaker could
    /// never open. Set one of them.
    NoTripCondition,
    /// A percentile slow-call setting is out of range (the message says which).
    Percentile {
        /// What is wrong.
        what: &'static str,
    },
    /// Keyed breakers need `max_keys` of at least 1 and a non-zero idle TTL.
    Keys,
    /// The breaker's metrics could not be registered (for example, the names are already
    /// registered with other labels).
    Registry(RegistryError),
}

impl fmt::Display for BreakerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerConfigError::Rate { what, value } => {
                write!(f, "{what} threshold must be in (0, 1], got {value}")
            }
            BreakerConfigError::MinimumCalls => f.write_str("minimum calls must be at least 1"),
            BreakerConfigError::Window { window } => write!(
                f,
                "invalid sliding window {window:?}: 1..=1000000 calls, or 1..=1024 buckets of at \
                 least 1 ms over at most one day"
            ),
            BreakerConfigError::OpenDuration { requested, max } => {
                write!(f, "open duration {requested:?} exceeds the maximum {max:?}")
            }
            BreakerConfigError::MaxProbes { value } => {
                write!(f, "half-open max probes must be in 1..=65535, got {value}")
            }
            BreakerConfigError::SuccessThreshold { value } => {
                write!(f, "success threshold must be in 1..=65535, got {value}")
            }
            BreakerConfigError::NoTripCondition => f.write_str(
                "the breaker could never open: set consecutive failures or a rate threshold",
            ),
            BreakerConfigError::Percentile { what } => {
                write!(f, "percentile slow-call threshold: {what}")
            }
            BreakerConfigError::Keys => {
                f.write_str("keyed breakers need max_keys >= 1 and a non-zero idle TTL")
            }
            BreakerConfigError::Registry(e) => write!(f, "registering breaker metrics: {e}"),
        }
    }
}

impl std::error::Error for BreakerConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BreakerConfigError::Registry(e) => Some(e),
            _ => None,
        }
    }
}

// === decisions ===

/// Why a call was (or, in shadow mode, would have been) rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The breaker is open.
    Open {
        /// When it may half-open, on the breaker's clock.
        until: Duration,
        /// How long that is from the decision.
        remaining: Duration,
    },
    /// The breaker is half-open and as many probes as allowed are in flight.
    HalfOpenFull {
        /// Probes in flight.
        in_flight: u32,
        /// The most allowed at once.
        max: u32,
    },
}

/// A rejected call: the reason, and the breaker generation it was decided in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// The breaker's generation at the decision.
    pub generation: u32,
}

/// The answer to [`CircuitBreaker::try_acquire`] (whose permit borrows the breaker) or
/// [`CircuitBreaker::try_acquire_owned`] (an [`OwnedDecision`], whose permit holds a handle).
#[must_use = "a permitted call must report its outcome through the permit"]
#[derive(Debug)]
pub enum Decision<'a> {
    /// Go ahead, and report the outcome through the permit.
    Permitted(Permit<'a>),
    /// Do not call.
    Rejected(Rejection),
}

/// A [`Decision`] whose permit owns a handle to the breaker: `'static`, for futures and
/// tasks. From [`CircuitBreaker::try_acquire_owned`] or [`Decision::into_owned`].
pub type OwnedDecision = Decision<'static>;

impl<'a> Decision<'a> {
    /// Whether the call may proceed.
    pub fn is_permitted(&self) -> bool {
        matches!(self, Decision::Permitted(_))
    }

    /// The permit, if the call may proceed.
    pub fn permit(self) -> Option<Permit<'a>> {
        match self {
            Decision::Permitted(p) => Some(p),
            Decision::Rejected(_) => None,
        }
    }

    /// The same decision with an owned permit (see [`Permit::into_owned`]).
    pub fn into_owned(self) -> OwnedDecision {
        match self {
            Decision::Permitted(p) => Decision::Permitted(p.into_owned()),
            Decision::Rejected(r) => Decision::Rejected(r),
        }
    }
}

/// Why a transition happened, with the numbers that decided it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TransitionReason {
    /// Closed → open: this many consecutive failures reached the threshold.
    ConsecutiveFailures {
        /// Consecutive failures counted.
        failures: u32,
        /// The threshold.
        threshold: u32,
    },
    /// Closed → open: the window's failure rate reached the threshold.
    FailureRate {
        /// The window's failure rate.
        rate: f64,
        /// The threshold.
        threshold: f64,
        /// Calls in the window.
        calls: u64,
    },
    /// Closed → open: the window's slow-call rate reached the threshold.
    SlowCallRate {
        /// The window's slow-call rate.
        rate: f64,
        /// The threshold.
        threshold: f64,
        /// Calls in the window.
        calls: u64,
    },
    /// Open → half-open: the open duration is over.
    OpenElapsed,
    /// Half-open → open: a probe failed (or was slow, with a slow-call threshold set).
    ProbeFailed {
        /// Whether it counted as failed because it was slow.
        slow: bool,
    },
    /// Half-open → closed: enough probes succeeded.
    ProbesSucceeded {
        /// Successful probes.
        successes: u32,
    },
    /// Any → closed: [`CircuitBreaker::reset`].
    Reset,
}

/// A state change, reported to the listener and returned by the call that made it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transition {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// The generation the breaker entered (generations count transitions, modulo 2^24).
    pub generation: u32,
    /// When, on the breaker's clock.
    pub at: Duration,
    /// Why.
    pub reason: TransitionReason,
}

/// What recording an outcome did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Recorded {
    /// Counted; no transition.
    Counted,
    /// Counted, and this outcome made the transition.
    Transitioned(Transition),
    /// Not counted toward the state: the breaker moved to another generation since the permit
    /// was issued.
    Stale {
        /// The permit's generation.
        permit_generation: u32,
        /// The breaker's generation now.
        current_generation: u32,
    },
    /// Not counted toward the state: the permit was a shadow-mode admission of a call the
    /// breaker would have rejected.
    Shadow,
    /// Not counted: the outcome was [`Outcome::Ignored`].
    Ignored,
}

#[derive(Clone, Copy, Debug)]
struct PermitCore {
    state: State,
    generation: u32,
    shadow: Option<RejectReason>,
    start: Option<Duration>,
}

/// The breaker a permit reports to: borrowed, or a handle of its own.
enum Handle<'a> {
    Borrowed(&'a CircuitBreaker),
    Owned(CircuitBreaker),
}

impl Handle<'_> {
    #[inline]
    fn get(&self) -> &CircuitBreaker {
        match self {
            Handle::Borrowed(b) => b,
            Handle::Owned(b) => b,
        }
    }
}

/// Permission for one call. Report its outcome with [`success`](Permit::success),
/// [`failure`](Permit::failure), [`record`](Permit::record) or
/// [`ignore`](Permit::ignore); a permit dropped without an outcome counts as ignored (and
/// frees its half-open probe slot, so probes never leak).
///
/// As with tokio's semaphore permits, [`try_acquire`](CircuitBreaker::try_acquire) gives a
/// permit that borrows the breaker (no reference count is touched), and
/// [`try_acquire_owned`](CircuitBreaker::try_acquire_owned) an [`OwnedPermit`]
/// (`Permit<'static>`) that holds a handle, for futures and tasks. Both have the same methods;
/// [`into_owned`](Permit::into_owned) turns the first into the second.
#[must_use = "report the call's outcome through the permit"]
pub struct Permit<'a> {
    breaker: Handle<'a>,
    core: Option<PermitCore>,
}

/// A [`Permit`] that owns a handle to its breaker (`'static`).
pub type OwnedPermit = Permit<'static>;

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.get().inner.name)
            .field("owned", &matches!(self.breaker, Handle::Owned(_)))
            .field("core", &self.core)
            .finish()
    }
}

impl<'a> Permit<'a> {
    #[inline]
    fn new(breaker: Handle<'a>, core: PermitCore) -> Permit<'a> {
        Permit {
            breaker,
            core: Some(core),
        }
    }

    /// The same permit, holding a handle to the breaker instead of borrowing it.
    pub fn into_owned(mut self) -> OwnedPermit {
        let core = self.core.take();
        Permit {
            breaker: Handle::Owned(self.breaker.get().clone()),
            core,
        }
    }

    /// The breaker this permit reports to.
    pub fn breaker(&self) -> &CircuitBreaker {
        self.breaker.get()
    }

    #[inline]
    fn core(&self) -> PermitCore {
        match self.core {
            Some(c) => c,
            // `core` is only taken by the methods that consume the permit.
            None => unreachable!("permit already completed"),
        }
    }

    /// The state the call was admitted in: closed, or half-open for a probe (or open /
    /// half-open for a shadow-mode admission).
    pub fn state(&self) -> State {
        self.core().state
    }

    /// The generation the permit was issued in.
    pub fn generation(&self) -> u32 {
        self.core().generation
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        let c = self.core();
        c.state == State::HalfOpen && c.shadow.is_none()
    }

    /// In shadow mode, why the call would have been rejected.
    pub fn shadow_rejection(&self) -> Option<RejectReason> {
        self.core().shadow
    }

    /// The call succeeded; its duration is measured on the breaker's clock if a slow-call
    /// threshold is set.
    #[inline]
    pub fn success(self) -> Recorded {
        self.record(Outcome::Success)
    }

    /// The call failed.
    pub fn failure(self) -> Recorded {
        self.record(Outcome::Failure)
    }

    /// The call's outcome should not count (see [`Outcome::Ignored`]).
    pub fn ignore(self) -> Recorded {
        self.record(Outcome::Ignored)
    }

    /// Reports the outcome; the duration is measured on the breaker's clock since
    /// `try_acquire` if a slow-call threshold is set.
    #[inline]
    pub fn record(mut self, outcome: Outcome) -> Recorded {
        let core = self.core();
        self.core = None;
        self.breaker.get().finish(core, outcome, None)
    }

    /// Reports the outcome with a duration measured by the caller.
    pub fn record_with_duration(mut self, outcome: Outcome, duration: Duration) -> Recorded {
        let core = self.core();
        self.core = None;
        self.breaker.get().finish(core, outcome, Some(duration))
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(core) = self.core.take() {
            let _ = self.breaker.get().finish(core, Outcome::Ignored, None);
        }
    }
}

/// A point-in-time view of a breaker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerStatus {
    /// The state (an open breaker whose open duration is over reports `Open` until the next
    /// `try_acquire` half-opens it).
    pub state: State,
    /// The generation.
    pub generation: u32,
    /// Consecutive failures (closed).
    pub consecutive_failures: u32,
    /// Probes in flight (half-open).
    pub probes_in_flight: u32,
    /// Successful probes so far (half-open).
    pub probe_successes: u32,
    /// Time left until the breaker may half-open (open).
    pub open_remaining: Option<Duration>,
    /// The current closed period's window counts, when rate thresholds are set.
    pub window: Option<WindowCounts>,
}

// === the breaker ===

struct Inner {
    name: Box<str>,
    config: Arc<Config>,
    clock: SharedClock,
    /// The packed state word (see `state.rs`).
    state: AtomicU64,
    /// The window (see `window.rs`); `None` without rate thresholds.
    window: Option<Window>,
    metrics: Option<Metrics>,
    listener: Option<Listener>,
    /// Serializes the state gauge's updates; only transition winners take it.
    publish: Mutex<()>,
}

/// A circuit breaker (see the module docs). `Clone` shares it.
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state", &self.load())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A builder with lift's defaults; `name` labels the breaker's metrics.
    pub fn builder(name: &str) -> BreakerBuilder {
        BreakerBuilder::new(name)
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    #[inline]
    fn load(&self) -> Snapshot {
        // Acquire: pairs with the AcqRel transitions, for callers' happens-before only; the
        // state machine itself needs just atomicity (module docs).
        Snapshot::from_bits(self.inner.state.load(Ordering::Acquire))
    }

    #[inline]
    fn cas(&self, cur: Snapshot, next: Snapshot) -> Result<Snapshot, Snapshot> {
        // AcqRel on success: the transition is one event in happens-before (module docs);
        // Acquire on failure, as for loads. Uniqueness comes from the CAS's atomicity.
        self.inner
            .state
            .compare_exchange(cur.bits(), next.bits(), Ordering::AcqRel, Ordering::Acquire)
            .map(Snapshot::from_bits)
            .map_err(Snapshot::from_bits)
    }

    /// Whether the breaker is closed in generation `generation` (its outcomes still count).
    #[inline]
    fn is_closed_in(&self, generation: u32) -> bool {
        let s = self.load();
        s.state() == State::Closed && s.generation() == generation
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.load().state()
    }

    /// A point-in-time view of the state word and window.
    pub fn status(&self) -> BreakerStatus {
        let s = self.load();
        let now = self.inner.clock.now();
        let window = self.inner.window.as_ref().map(|w| {
            if s.state() == State::Closed {
                w.counts(s.generation(), now)
            } else {
                w.latest_counts(now)
            }
        });
        BreakerStatus {
            state: s.state(),
            generation: s.generation(),
            consecutive_failures: if s.state() == State::Closed {
                s.consecutive_failures()
            } else {
                0
            },
            probes_in_flight: if s.state() == State::HalfOpen {
                s.probes()
            } else {
                0
            },
            probe_successes: if s.state() == State::HalfOpen {
                s.successes()
            } else {
                0
            },
            open_remaining: (s.state() == State::Open)
                .then(|| Duration::from_millis(s.open_remaining_ms(millis_floor(now)))),
            window,
        }
    }

    /// Asks whether a call may proceed. Lock-free: a load while closed, one CAS to take a
    /// probe slot while half-open, one CAS for the open → half-open transition. The permit
    /// borrows the breaker; see [`try_acquire_owned`](CircuitBreaker::try_acquire_owned) for
    /// one that can outlive the borrow.
    #[inline]
    pub fn try_acquire(&self) -> Decision<'_> {
        match self.admit() {
            Ok(core) => Decision::Permitted(Permit::new(Handle::Borrowed(self), core)),
            Err(r) => Decision::Rejected(r),
        }
    }

    /// As [`try_acquire`](CircuitBreaker::try_acquire), with a permit that holds a handle to
    /// the breaker (cloned only when permitted), so that it can move into a future or task.
    pub fn try_acquire_owned(&self) -> OwnedDecision {
        match self.admit() {
            Ok(core) => Decision::Permitted(Permit::new(Handle::Owned(self.clone()), core)),
            Err(r) => Decision::Rejected(r),
        }
    }

    /// As [`try_acquire_owned`](CircuitBreaker::try_acquire_owned), giving this handle to the
    /// permit.
    pub(crate) fn into_decision(self) -> OwnedDecision {
        match self.admit() {
            Ok(core) => Decision::Permitted(Permit::new(Handle::Owned(self), core)),
            Err(r) => Decision::Rejected(r),
        }
    }

    /// The decision: a permit's core, or the rejection.
    #[inline]
    fn admit(&self) -> Result<PermitCore, Rejection> {
        let cur = self.load();
        if cur.state() == State::Closed {
            return Ok(self.permitted(State::Closed, cur.generation(), None));
        }
        self.admit_slow(cur)
    }

    fn admit_slow(&self, mut cur: Snapshot) -> Result<PermitCore, Rejection> {
        let inner = &*self.inner;
        let cfg = &*inner.config;
        loop {
            match cur.state() {
                State::Closed => return Ok(self.permitted(State::Closed, cur.generation(), None)),
                State::Open => {
                    let now = inner.clock.now();
                    let now_ms = millis_floor(now);
                    if !cur.open_expired(now_ms) {
                        let remaining = Duration::from_millis(cur.open_remaining_ms(now_ms));
                        return self.reject(
                            cur,
                            RejectReason::Open {
                                until: now + remaining,
                                remaining,
                            },
                        );
                    }
                    let next = cur.to_half_open(1);
                    match self.cas(cur, next) {
                        Ok(_) => {
                            self.transitioned(&Transition {
                                from: State::Open,
                                to: State::HalfOpen,
                                generation: next.generation(),
                                at: now,
                                reason: TransitionReason::OpenElapsed,
                            });
                            return Ok(self.permitted(State::HalfOpen, next.generation(), None));
                        }
                        Err(actual) => cur = actual,
                    }
                }
                State::HalfOpen => {
                    if cur.probes() >= cfg.max_probes {
                        return self.reject(
                            cur,
                            RejectReason::HalfOpenFull {
                                in_flight: cur.probes(),
                                max: cfg.max_probes,
                            },
                        );
                    }
                    let next = cur.with_probes(cur.probes() + 1, cur.successes());
                    match self.cas(cur, next) {
                        Ok(_) => {
                            return Ok(self.permitted(State::HalfOpen, cur.generation(), None));
                        }
                        Err(actual) => cur = actual,
                    }
                }
            }
        }
    }

    #[inline]
    fn permitted(&self, state: State, generation: u32, shadow: Option<RejectReason>) -> PermitCore {
        let start = self
            .inner
            .config
            .slow
            .is_some()
            .then(|| self.inner.clock.now());
        PermitCore {
            state,
            generation,
            shadow,
            start,
        }
    }

    fn reject(&self, cur: Snapshot, reason: RejectReason) -> Result<PermitCore, Rejection> {
        let shadow = !self.inner.config.mode.enforces();
        if let Some(m) = &self.inner.metrics {
            m.request(if shadow {
                RequestResult::ShadowRejected
            } else {
                RequestResult::Rejected
            });
        }
        if shadow {
            Ok(self.permitted(cur.state(), cur.generation(), Some(reason)))
        } else {
            Err(Rejection {
                reason,
                generation: cur.generation(),
            })
        }
    }

    /// Forces the breaker closed (a new generation with an empty window), from any state.
    /// Returns the transition, or `None` if it was already closed.
    pub fn reset(&self) -> Option<Transition> {
        let mut cur = self.load();
        loop {
            if cur.state() == State::Closed {
                return None;
            }
            let next = cur.to_closed();
            match self.cas(cur, next) {
                Ok(_) => {
                    let t = Transition {
                        from: cur.state(),
                        to: State::Closed,
                        generation: next.generation(),
                        at: self.inner.clock.now(),
                        reason: TransitionReason::Reset,
                    };
                    self.transitioned(&t);
                    return Some(t);
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Everything a transition's winner does, once: a fresh window on closing, metrics, then
    /// the listener (no lock held).
    fn transitioned(&self, t: &Transition) {
        let inner = &*self.inner;
        if t.to == State::Closed
            && let Some(w) = &inner.window
        {
            w.start_period(t.generation, &|| self.is_closed_in(t.generation));
        }
        if let Some(m) = &inner.metrics {
            m.transition(t.from, t.to);
            self.publish_state(m);
        }
        if let Some(l) = &inner.listener {
            l(t);
        }
    }

    /// Sets the state gauge from the state word, under the publish mutex: every transition's
    /// winner does this after its CAS, so the last one to take the mutex reads the final state
    /// and the gauge never ends stale.
    fn publish_state(&self, m: &Metrics) {
        let _g = lock(&self.inner.publish);
        m.state.set(self.load().state().gauge_value());
    }

    fn open_until(&self, now: Duration) -> u64 {
        millis_ceil(now).wrapping_add(self.inner.config.open_ms)
    }

    fn finish(&self, p: PermitCore, outcome: Outcome, duration: Option<Duration>) -> Recorded {
        let inner = &*self.inner;
        let cfg = &*inner.config;
        if let Some(m) = &inner.metrics {
            m.request(match outcome {
                Outcome::Success => RequestResult::Success,
                Outcome::Failure => RequestResult::Failure,
                Outcome::Ignored => RequestResult::Ignored,
            });
        }
        if p.shadow.is_some() {
            return Recorded::Shadow;
        }
        // Time is read only when something may need it: slow calls, windows (a time window
        // needs it to record, and any window can trip the breaker on a success that brings it
        // to the minimum number of calls), and failures (which may trip or reopen). A success
        // without a window can only close a half-open breaker, which reads the clock itself.
        let needs_time = cfg.slow.is_some() || cfg.has_window() || outcome == Outcome::Failure;
        let now = if needs_time {
            inner.clock.now()
        } else {
            Duration::ZERO
        };
        let slow = match (&cfg.slow, outcome) {
            (Some(t), Outcome::Success | Outcome::Failure) => is_slow(t, p.start, duration, now),
            _ => false,
        };
        match p.state {
            State::Closed => self.finish_closed(p.generation, outcome, slow, now),
            _ => self.finish_probe(p.generation, outcome, slow, now),
        }
    }

    /// The outcome of a closed-generation permit. The common case (a success that changes no
    /// counter on the state word and need not check the rates) is a state load and one window
    /// write; everything else is in the helpers below.
    fn finish_closed(
        &self,
        generation: u32,
        outcome: Outcome,
        slow: bool,
        now: Duration,
    ) -> Recorded {
        let inner = &*self.inner;
        let cfg = &*inner.config;
        if outcome == Outcome::Ignored {
            return Recorded::Ignored;
        }
        let failed = outcome == Outcome::Failure;
        let cur = self.load();
        if cur.state() != State::Closed || cur.generation() != generation {
            return stale(generation, cur);
        }
        // The window of this generation only: a stale outcome never enters a newer period's.
        let mut check_rates = false;
        if let Some(w) = &inner.window {
            let current = || self.is_closed_in(generation);
            match w.record(generation, now, Sample { failed, slow }, current) {
                // A failure or a slow call may raise a rate. Any other success lowers or keeps
                // both rates of the window it lands in, so it can only find a rule holding when
                // it may be the call that brings the window to `minimum_calls`, or when it is
                // among the first calls of a new bucket (older buckets just left the window):
                // in both cases its cell held fewer than `minimum_calls` calls before it.
                // Checking exactly then trips on the same call as checking every success
                // would, in any sequential history (docs/policy-breaker.md, "Windows").
                Write::Counted { before } => {
                    check_rates = failed || slow || before < cfg.minimum_calls;
                }
                Write::Skipped => {}
                Write::Stale => return stale(generation, self.load()),
            }
        }
        if (failed || cur.consecutive_failures() > 0)
            && let Some(r) = self.count_consecutive(generation, failed, cur, now)
        {
            return r;
        }
        if check_rates {
            return self.check_rates(generation, now);
        }
        Recorded::Counted
    }

    /// Consecutive failures, on the state word: a failure adds one (and trips at the
    /// threshold), a success resets them. `Some` when the outcome is stale or tripped it.
    #[cold]
    fn count_consecutive(
        &self,
        generation: u32,
        failed: bool,
        mut cur: Snapshot,
        now: Duration,
    ) -> Option<Recorded> {
        let cfg = &*self.inner.config;
        loop {
            if cur.state() != State::Closed || cur.generation() != generation {
                return Some(stale(generation, cur));
            }
            let n = cur.consecutive_failures();
            let (next, trip) = if failed {
                let n = n.saturating_add(1);
                if cfg.consecutive_failures > 0 && n >= cfg.consecutive_failures {
                    (
                        cur.to_open(self.open_until(now)),
                        Some(TransitionReason::ConsecutiveFailures {
                            failures: n,
                            threshold: cfg.consecutive_failures,
                        }),
                    )
                } else {
                    (cur.with_consecutive(u64::from(n)), None)
                }
            } else if n > 0 {
                (cur.with_consecutive(0), None)
            } else {
                return None;
            };
            match self.cas(cur, next) {
                Ok(_) => {
                    return trip.map(|reason| {
                        self.transition(Transition {
                            from: State::Closed,
                            to: State::Open,
                            generation: next.generation(),
                            at: now,
                            reason,
                        })
                    });
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Compares this generation's window with the rate thresholds, and trips the breaker if
    /// one holds (once `minimum_calls` is reached) and it is still in that generation.
    #[cold]
    fn check_rates(&self, generation: u32, now: Duration) -> Recorded {
        let cfg = &*self.inner.config;
        let Some(w) = &self.inner.window else {
            return Recorded::Counted;
        };
        // SeqCst fence between this outcome's window writes and its reads of the counts: of two
        // outcomes that check at once (each writes its own word, then reads the other's), the
        // one whose fence comes second in the single total order sees the other's write, so
        // outcomes that together make a rule hold cannot both miss each other. Only checking
        // outcomes pay for it (failures, slow calls, successes that may reach the minimum).
        fence(Ordering::SeqCst);
        let counts = w.counts(generation, now);
        if counts.calls < cfg.minimum_calls {
            return Recorded::Counted;
        }
        let reason = if let Some(th) = cfg.failure_rate.filter(|&th| counts.failure_rate() >= th) {
            TransitionReason::FailureRate {
                rate: counts.failure_rate(),
                threshold: th,
                calls: counts.calls,
            }
        } else if let Some(th) = cfg.slow_rate.filter(|&th| counts.slow_rate() >= th) {
            TransitionReason::SlowCallRate {
                rate: counts.slow_rate(),
                threshold: th,
                calls: counts.calls,
            }
        } else {
            return Recorded::Counted;
        };
        let mut cur = self.load();
        loop {
            if cur.state() != State::Closed || cur.generation() != generation {
                // Someone else tripped (or reset) it: not our transition.
                return Recorded::Counted;
            }
            let next = cur.to_open(self.open_until(now));
            match self.cas(cur, next) {
                Ok(_) => {
                    return self.transition(Transition {
                        from: State::Closed,
                        to: State::Open,
                        generation: next.generation(),
                        at: now,
                        reason,
                    });
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// This caller's CAS made `t`: runs what its winner does, and reports it.
    #[cold]
    fn transition(&self, t: Transition) -> Recorded {
        self.transitioned(&t);
        Recorded::Transitioned(t)
    }

    fn finish_probe(
        &self,
        generation: u32,
        outcome: Outcome,
        slow: bool,
        now: Duration,
    ) -> Recorded {
        let cfg = &*self.inner.config;
        let slow_fails = slow && cfg.slow_rate.is_some() && outcome == Outcome::Success;
        let mut cur = self.load();
        loop {
            if cur.state() != State::HalfOpen || cur.generation() != generation {
                return stale(generation, cur);
            }
            let probes = cur.probes().saturating_sub(1);
            let (next, t) = match outcome {
                Outcome::Ignored => (cur.with_probes(probes, cur.successes()), None),
                Outcome::Failure => (
                    cur.to_open(self.open_until(now)),
                    Some((State::Open, TransitionReason::ProbeFailed { slow: false })),
                ),
                Outcome::Success if slow_fails => (
                    cur.to_open(self.open_until(now)),
                    Some((State::Open, TransitionReason::ProbeFailed { slow: true })),
                ),
                Outcome::Success => {
                    let s = cur.successes() + 1;
                    if s >= cfg.success_threshold {
                        (
                            cur.to_closed(),
                            Some((
                                State::Closed,
                                TransitionReason::ProbesSucceeded { successes: s },
                            )),
                        )
                    } else {
                        (cur.with_probes(probes, s), None)
                    }
                }
            };
            match self.cas(cur, next) {
                Ok(_) => {
                    return match t {
                        Some((to, reason)) => self.transition(Transition {
                            from: State::HalfOpen,
                            to,
                            generation: next.generation(),
                            at: if now.is_zero() {
                                self.inner.clock.now()
                            } else {
                                now
                            },
                            reason,
                        }),
                        None if outcome == Outcome::Ignored => Recorded::Ignored,
                        None => Recorded::Counted,
                    };
                }
                Err(actual) => cur = actual,
            }
        }
    }
}

/// What a stale outcome reports.
fn stale(permit_generation: u32, cur: Snapshot) -> Recorded {
    Recorded::Stale {
        permit_generation,
        current_generation: cur.generation(),
    }
}

/// Whether a call was slow, with `t` the slow-call threshold: its duration (given, or measured
/// since `start` on the breaker's clock) is recorded where the breaker owns the histogram.
fn is_slow(
    t: &SlowThreshold,
    start: Option<Duration>,
    given: Option<Duration>,
    now: Duration,
) -> bool {
    let d = given.unwrap_or_else(|| now.saturating_sub(start.unwrap_or(now)));
    t.observe(d);
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX) >= t.threshold(now)
}
