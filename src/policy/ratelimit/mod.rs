//! Rate limits: GCRA on one atomic word, weighted sliding windows, fixed windows, and keyed limits
//! with user > tenant > default precedence and bounded memory.
//!
//! Every limiter withdraws by compare-and-swap on one `AtomicU64`: a decision reads the word,
//! computes the new state, and installs it only if nobody changed the word meanwhile. There is no
//! check-then-act window, so no interleaving admits more than the limit (the loom models in
//! `loom-tests/tests/loom_ratelimit.rs` check it, and `tests/ratelimit.rs` hammers a limiter from
//! 16 threads under a clock that does not move and counts exactly `burst` admissions).
//!
//! - [`Gcra`]: the generic cell rate algorithm. One word holds the *theoretical arrival time*
//!   (TAT). A [`Quota`] of `count` per `period` with a `burst` admits at most `burst` at once and
//!   refills one cell every `period / count`. Supports [`refund`](Gcra::refund) (lift's
//!   skip-successful).
//! - [`SlidingWindow`]: lift's sliding window (granularity `window / 10`) as a weighted
//!   sliding-window counter packed into one word.
//! - [`FixedWindow`]: `limit` per aligned window, one word.
//! - [`KeyedLimiter`]: a GCRA per user, tenant or anonymous caller, with lift's precedence
//!   (user > tenant > default, default 1000 per hour), a bounded key table with idle eviction,
//!   lift's fail-open option for a full table, and refunds.
//!
//! Every decision is a [`Decision`]: `Allowed` with the numbers for `X-RateLimit-*` headers,
//! `Limited` with `Retry-After`, or `FailedOpen`. In [`Mode::Shadow`] a limiter decides and
//! counts as usual but [`Decision::admits`] is always true, and a limited request takes nothing
//! from the limiter (its state is what enforcement would have left).
//!
//! Formulas and the reasoning behind them: `docs/policy-ratelimit.md`.
//!
//! # Orderings
//! - GCRA (`gcra.rs`): the TAT word is read and CASed with `Relaxed`. It is the only data a
//!   limiter owns; exactness needs only that read-modify-writes on one word are totally ordered
//!   (every CAS compares against the latest value in the word's modification order), which holds
//!   for every ordering. A stale clock reading can only make a decision more conservative, since
//!   the TAT is `max(tat, now)` and a smaller `now` leaves less slack.
//! - Windows (`window.rs`): the state word is loaded and CASed with `Acquire` / `Release`, and
//!   the clock is read *after* the load. The pair makes every clock reading that installed a
//!   state happen-before the clock reading of a thread that sees that state, so (for a monotonic
//!   clock) no thread ever sees a state from a later window than its own reading, and the packed
//!   window index can be compared by wrapping subtraction.
//! - Keyed table (`keyed.rs`): lookups load a shard's map through `arc-swap` (acquire); inserts
//!   and evictions hold the shard's mutex. The key count is reserved by a `Relaxed` CAS loop (it
//!   bounds memory; it publishes nothing). An evicted entry is first *retired* by a CAS of its TAT
//!   to a tombstone value, so an acquisition racing the eviction either lands before it (and the
//!   retire CAS fails: the entry is not idle any more) or sees the tombstone and retries on the
//!   table: nothing taken from an entry is ever lost with it.
#![forbid(unsafe_code)]

mod gcra;
mod keyed;
mod window;

use std::fmt;
use std::time::Duration;

pub use gcra::{Gcra, GcraBuilder};
pub use keyed::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_KEYS, Identity, KeyedDecision, KeyedLimiter,
    KeyedLimiterBuilder, RateKey, Rule, WhenFull,
};
pub use window::{
    FixedWindow, FixedWindowBuilder, MAX_FIXED_LIMIT, MAX_GRANULARITY, MAX_SLIDING_LIMIT,
    SlidingWindow, SlidingWindowBuilder,
};

use crate::counter::Counter;
use crate::error::RegistryError;
use crate::policy::Mode;
use crate::registry::Registry;

/// The largest clock reading a limiter uses, in nanoseconds (`u64::MAX / 2`, about 292 years).
/// Later readings are clamped to it (limits stop refilling), which keeps every sum of a time and
/// a tolerance below `u64::MAX`.
pub(crate) const MAX_NANOS: u64 = u64::MAX / 2;

/// The largest burst tolerance (`interval × burst`), in nanoseconds: `u64::MAX / 4`, about 146
/// years.
pub const MAX_TOLERANCE_NANOS: u64 = u64::MAX / 4;

/// A clock reading in nanoseconds, clamped to [`MAX_NANOS`].
#[inline]
pub(crate) fn clock_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos())
        .unwrap_or(MAX_NANOS)
        .min(MAX_NANOS)
}

/// Whole seconds, rounded up (for `Retry-After` and `X-RateLimit-Reset`).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

// === Quota ===

/// How much a [`Gcra`] (or a [`KeyedLimiter`] rule) admits: `count` cells per `period`, at most
/// `burst` at once.
///
/// The limiter refills one cell every *emission interval* `T = ceil(period / count)` (in whole
/// nanoseconds, rounded up so the sustained rate never exceeds `count / period`), and admits a
/// request of `n` cells when doing so leaves at most `burst × T` of debt. The burst defaults to
/// `count`: 1000 per hour admits 1000 at once, then one every 3.6 s.
///
/// ```
/// use std::time::Duration;
/// use weir::policy::ratelimit::Quota;
///
/// let q = Quota::per_second(100)?.with_burst(10)?;
/// assert_eq!(q.emission_interval(), Duration::from_millis(10));
/// assert_eq!(q.burst(), 10);
/// assert_eq!(Quota::lift_default(), Quota::per_hour(1000)?);
/// assert!(Quota::new(0, Duration::from_secs(1)).is_err());
/// # Ok::<(), weir::policy::ratelimit::QuotaError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    count: u64,
    period: Duration,
    burst: u64,
    interval: u64,
}

impl Quota {
    /// `count` cells per `period`, with a burst of `count`.
    ///
    /// # Errors
    ///
    /// [`QuotaError::ZeroCount`], [`QuotaError::ZeroPeriod`], or
    /// [`QuotaError::IntervalTooLong`] / [`QuotaError::BurstTooLarge`] when the numbers do not
    /// fit in nanoseconds.
    pub fn new(count: u64, period: Duration) -> Result<Quota, QuotaError> {
        if count == 0 {
            return Err(QuotaError::ZeroCount);
        }
        if period.is_zero() {
            return Err(QuotaError::ZeroPeriod);
        }
        let interval = period.as_nanos().div_ceil(u128::from(count));
        let interval = u64::try_from(interval)
            .ok()
            .filter(|&t| t <= MAX_TOLERANCE_NANOS)
            .ok_or(QuotaError::IntervalTooLong { period, count })?;
        Quota {
            count,
            period,
            burst: count,
            interval,
        }
        .checked()
    }

    /// `count` per second.
    ///
    /// # Errors
    ///
    /// As [`Quota::new`].
    pub fn per_second(count: u64) -> Result<Quota, QuotaError> {
        Quota::new(count, Duration::from_secs(1))
    }

    /// `count` per minute.
    ///
    /// # Errors
    ///
    /// As [`Quota::new`].
    pub fn per_minute(count: u64) -> Result<Quota, QuotaError> {
        Quota::new(count, Duration::from_secs(60))
    }

    /// `count` per hour.
    ///
    /// # Errors
    ///
    /// As [`Quota::new`].
    pub fn per_hour(count: u64) -> Result<Quota, QuotaError> {
        Quota::new(count, Duration::from_secs(3600))
    }

    /// lift's default limit: 1000 per hour, burst 1000.
    pub fn lift_default() -> Quota {
        Quota {
            count: 1000,
            period: Duration::from_secs(3600),
            burst: 1000,
            interval: 3_600_000_000,
        }
    }

    /// The same rate with another burst (the most cells admitted at once).
    ///
    /// # Errors
    ///
    /// [`QuotaError::ZeroBurst`], or [`QuotaError::BurstTooLarge`] if `burst × interval` is more
    /// than [`MAX_TOLERANCE_NANOS`].
    pub fn with_burst(self, burst: u64) -> Result<Quota, QuotaError> {
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        Quota { burst, ..self }.checked()
    }

    fn checked(self) -> Result<Quota, QuotaError> {
        match self.interval.checked_mul(self.burst) {
            Some(tau) if tau <= MAX_TOLERANCE_NANOS => Ok(self),
            _ => Err(QuotaError::BurstTooLarge {
                burst: self.burst,
                interval: Duration::from_nanos(self.interval),
            }),
        }
    }

    /// Cells per period.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The period `count` is measured over.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The most cells admitted at once (from a full limiter).
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// `T`: the time one cell takes to refill (`period / count`, rounded up to a nanosecond).
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    pub(crate) fn interval_nanos(&self) -> u64 {
        self.interval
    }

    /// `τ = T × burst`: how far ahead of now the TAT may run.
    pub(crate) fn tolerance_nanos(&self) -> u64 {
        // Checked at construction to be at most MAX_TOLERANCE_NANOS.
        self.interval * self.burst
    }
}

/// A [`Quota`] could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaError {
    /// The count is zero. A limit that admits nothing is not a rate; use at least 1 (or reject
    /// the traffic before the limiter).
    ZeroCount,
    /// The period is zero. Use a positive period such as one second or one hour.
    ZeroPeriod,
    /// The burst is zero: nothing could ever be admitted. Use at least 1.
    ZeroBurst,
    /// `period / count` does not fit in [`MAX_TOLERANCE_NANOS`]. Use a shorter period or a larger
    /// count.
    IntervalTooLong {
        /// The requested period.
        period: Duration,
        /// The requested count.
        count: u64,
    },
    /// `burst × emission interval` is more than [`MAX_TOLERANCE_NANOS`]. Use a smaller burst.
    BurstTooLarge {
        /// The requested burst.
        burst: u64,
        /// The emission interval.
        interval: Duration,
    },
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            QuotaError::ZeroCount => f.write_str("rate limit count must be at least 1"),
            QuotaError::ZeroPeriod => f.write_str("rate limit period must not be zero"),
            QuotaError::ZeroBurst => f.write_str("rate limit burst must be at least 1"),
            QuotaError::IntervalTooLong { period, count } => write!(
                f,
                "{count} per {period:?} is an emission interval longer than the supported maximum"
            ),
            QuotaError::BurstTooLarge { burst, interval } => write!(
                f,
                "burst {burst} at one cell per {interval:?} is a tolerance longer than the \
                 supported maximum"
            ),
        }
    }
}

impl std::error::Error for QuotaError {}

// === Decision ===

/// Why a request was limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitReason {
    /// The limit is used up for now; `retry_after` says when the request would fit (if nothing
    /// else is admitted meanwhile).
    Exhausted,
    /// The request asks for more cells than the limiter ever holds at once (more than the burst
    /// or the window's limit): it can never be admitted. `retry_after` is `Duration::MAX`;
    /// split the request or raise the limit.
    ExceedsCapacity,
    /// A [`KeyedLimiter`]'s key table is full, no idle key could be evicted, and the limiter
    /// fails closed ([`WhenFull::FailClosed`]). `retry_after` is a hint: the limiter's idle
    /// timeout.
    KeyTableFull,
}

/// A rate limiter's decision, with the numbers for `X-RateLimit-*` and `Retry-After` headers.
///
/// Times are relative to the decision (durations from now, by the limiter's clock).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use weir::ManualClock;
/// use weir::policy::ratelimit::{Decision, Gcra, Quota};
///
/// let clock = ManualClock::new();
/// let limiter = Gcra::new(Quota::per_second(2)?, Arc::new(clock.clone()));
/// assert!(matches!(limiter.try_acquire(), Decision::Allowed { remaining: 1, .. }));
/// assert!(limiter.try_acquire().admits());
/// let d = limiter.try_acquire();
/// assert!(!d.admits());
/// assert_eq!(d.retry_after(), Some(Duration::from_millis(500)));
/// let h = d.headers().unwrap();
/// assert_eq!((h.limit, h.remaining, h.retry_after_secs), (2, 0, Some(1)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a rate-limit decision must be acted on: check `admits()`"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Admitted; the cells are taken.
    Allowed {
        /// Cells still available now (`X-RateLimit-Remaining`).
        remaining: u64,
        /// Time until the limiter is full again if nothing else is taken (`X-RateLimit-Reset`).
        reset_after: Duration,
        /// The most cells admitted at once: the burst, or a window's limit
        /// (`X-RateLimit-Limit`).
        limit: u64,
    },
    /// Over the limit. Nothing was taken. In [`Mode::Shadow`] the request is admitted anyway
    /// ([`admits`](Decision::admits) is true).
    Limited {
        /// Time until the same request would be admitted, if nothing else is taken meanwhile
        /// (`Retry-After`). `Duration::MAX` when it never can ([`LimitReason::ExceedsCapacity`]).
        retry_after: Duration,
        /// Time until the limiter is full again if nothing else is taken.
        reset_after: Duration,
        /// The most cells admitted at once.
        limit: u64,
        /// Why.
        reason: LimitReason,
        /// The limiter's mode when it decided: `Shadow` means the request is admitted anyway.
        mode: Mode,
    },
    /// Admitted without a limit: a [`KeyedLimiter`]'s key table was full, no idle key could be
    /// evicted, and the limiter fails open ([`WhenFull::FailOpen`], lift's `FailOpen`).
    FailedOpen {
        /// The key table's capacity.
        max_keys: usize,
    },
}

impl Decision {
    /// Whether the request may proceed: `Allowed`, `FailedOpen`, or `Limited` in shadow mode.
    #[inline]
    pub fn admits(&self) -> bool {
        match *self {
            Decision::Allowed { .. } | Decision::FailedOpen { .. } => true,
            Decision::Limited { mode, .. } => !mode.enforces(),
        }
    }

    /// Whether the limiter decided the request is over the limit (in either mode).
    #[inline]
    pub fn is_limited(&self) -> bool {
        matches!(self, Decision::Limited { .. })
    }

    /// `Retry-After` for a limited request; `None` otherwise.
    pub fn retry_after(&self) -> Option<Duration> {
        match *self {
            Decision::Limited { retry_after, .. } => Some(retry_after),
            _ => None,
        }
    }

    /// The numbers for `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (whole
    /// seconds from now, rounded up) and, when limited, `Retry-After` (whole seconds, rounded
    /// up; absent when the request can never fit). `None` for `FailedOpen`: no limit applied.
    pub fn headers(&self) -> Option<RateLimitHeaders> {
        match *self {
            Decision::Allowed {
                remaining,
                reset_after,
                limit,
            } => Some(RateLimitHeaders {
                limit,
                remaining,
                reset_secs: ceil_secs(reset_after),
                retry_after_secs: None,
            }),
            Decision::Limited {
                retry_after,
                reset_after,
                limit,
                reason,
                ..
            } => Some(RateLimitHeaders {
                limit,
                remaining: 0,
                reset_secs: ceil_secs(reset_after),
                retry_after_secs: (reason != LimitReason::ExceedsCapacity)
                    .then(|| ceil_secs(retry_after)),
            }),
            Decision::FailedOpen { .. } => None,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Decision::Allowed {
                remaining,
                reset_after,
                limit,
            } => write!(
                f,
                "allowed: {remaining} of {limit} left, full again in {reset_after:?}"
            ),
            Decision::Limited {
                retry_after,
                limit,
                reason,
                mode,
                ..
            } => {
                match reason {
                    LimitReason::Exhausted => {
                        write!(f, "limited: {limit} used up, retry in {retry_after:?}")?
                    }
                    LimitReason::ExceedsCapacity => {
                        write!(f, "limited: request exceeds the limit of {limit}")?
                    }
                    LimitReason::KeyTableFull => write!(f, "limited: key table full")?,
                }
                if !mode.enforces() {
                    f.write_str(" (shadow: admitted)")?;
                }
                Ok(())
            }
            Decision::FailedOpen { max_keys } => {
                write!(f, "admitted unchecked: key table full ({max_keys} keys)")
            }
        }
    }
}

/// Header values for a [`Decision`] (see [`Decision::headers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RateLimitHeaders {
    /// `X-RateLimit-Limit`.
    pub limit: u64,
    /// `X-RateLimit-Remaining`.
    pub remaining: u64,
    /// `X-RateLimit-Reset`, seconds from now.
    pub reset_secs: u64,
    /// `Retry-After`, seconds, when limited.
    pub retry_after_secs: Option<u64>,
}

// === errors ===

/// A limiter could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A window limiter's limit is zero. Use at least 1.
    ZeroLimit,
    /// A window limiter's limit is more than it can count in its state word
    /// ([`MAX_SLIDING_LIMIT`] or [`MAX_FIXED_LIMIT`]). Use a shorter window with a smaller limit,
    /// or a [`Gcra`].
    LimitTooLarge {
        /// The requested limit.
        limit: u64,
        /// The most this limiter supports.
        max: u64,
    },
    /// A window is zero. Use a positive window.
    ZeroWindow,
    /// A window is longer than [`MAX_TOLERANCE_NANOS`] nanoseconds. Use a shorter window.
    WindowTooLong {
        /// The requested window.
        window: Duration,
    },
    /// A sliding window's granularity (sub-windows per window) is outside `1..=`
    /// [`MAX_GRANULARITY`], or more than the window's nanoseconds. lift uses 10.
    Granularity {
        /// The requested granularity.
        granularity: u32,
    },
    /// A keyed limiter's `max_keys` is zero. Use at least 1.
    ZeroMaxKeys,
    /// Registering the limiter's metrics failed (a metric of the same name but another kind or
    /// labels is already registered). Use another registry or rename the other metric.
    Registry(RegistryError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroLimit => f.write_str("window limit must be at least 1"),
            BuildError::LimitTooLarge { limit, max } => {
                write!(f, "window limit {limit} is more than the supported {max}")
            }
            BuildError::ZeroWindow => f.write_str("window must not be zero"),
            BuildError::WindowTooLong { window } => {
                write!(f, "window {window:?} is longer than the supported maximum")
            }
            BuildError::Granularity { granularity } => write!(
                f,
                "granularity {granularity} must be in 1..={MAX_GRANULARITY} and at most the \
                 window's nanoseconds"
            ),
            BuildError::ZeroMaxKeys => f.write_str("max_keys must be at least 1"),
            BuildError::Registry(e) => write!(f, "registering rate limit metrics: {e}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Registry(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RegistryError> for BuildError {
    fn from(e: RegistryError) -> BuildError {
        BuildError::Registry(e)
    }
}

// === metrics ===

/// The handles a limiter counts its decisions with (registered once, at build).
#[derive(Clone, Debug)]
pub(crate) struct RateMetrics {
    allowed: Counter,
    limited: Counter,
}

/// `rate_limit_requests_total{result="allowed|limited"}`.
pub(crate) const REQUESTS_METRIC: &str = "rate_limit_requests_total";

impl RateMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<RateMetrics, RegistryError> {
        let family = registry.counter_family(
            REQUESTS_METRIC,
            "Rate limit decisions by result (limited includes shadow-mode requests admitted \
             anyway, and fail-closed requests when the key table is full; fail-open counts as \
             allowed)",
            &["result"],
        )?;
        Ok(RateMetrics {
            allowed: family.with(&["allowed"])?,
            limited: family.with(&["limited"])?,
        })
    }

    #[inline]
    pub(crate) fn count(&self, d: &Decision) {
        match d {
            Decision::Limited { .. } => self.limited.inc(),
            Decision::Allowed { .. } | Decision::FailedOpen { .. } => self.allowed.inc(),
        }
    }
}

#[inline]
pub(crate) fn count(metrics: &Option<RateMetrics>, d: &Decision) {
    if let Some(m) = metrics {
        m.count(d);
    }
}
