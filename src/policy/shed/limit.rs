//! Limit algorithms: how a [`Limiter`](super::Limiter) learns its concurrency limit from the
//! round-trip times and drops of completed requests.
//!
//! The three adaptive algorithms follow the semantics of Netflix's concurrency-limits library
//! (AIMD, Vegas, Gradient2), learned from its public documentation and source; defaults are
//! its defaults. Each is a plain state machine updated through `&mut self`: the limiter
//! serializes updates without making releases wait for each other (one releasing thread at a
//! time applies its own sample and those other releases left for it; see
//! [`Limiter`](super::Limiter)), and an acquire never touches the algorithm. The
//! formulas are in `docs/policy-shed.md` and on each type.
//!
//! This module has no atomics.
#![forbid(unsafe_code)]

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::{in_range, nanos};
use crate::policy::Rng;

// === Sample ===

/// One completed request, as a limit algorithm sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sample {
    /// The request's round-trip time: from the grant of its permit to its release.
    pub rtt: Duration,
    /// How many requests were in flight when this one was admitted, itself included.
    pub in_flight: u32,
    /// Whether the request was dropped (timed out, rejected downstream, overloaded): a sign
    /// of congestion that loss-based algorithms react to.
    pub dropped: bool,
}

impl Sample {
    /// A sample of a request that took `rtt`, admitted with `in_flight` requests in flight
    /// (itself included), and dropped or not.
    pub fn new(rtt: Duration, in_flight: u32, dropped: bool) -> Sample {
        Sample {
            rtt,
            in_flight,
            dropped,
        }
    }
}

// === LimitAlgorithm ===

/// An algorithm that computes a concurrency limit from samples.
///
/// A [`Limiter`](super::Limiter) owns one, calls [`update`](LimitAlgorithm::update) for every
/// request released as a success or a drop (never for ignored ones, nor at all if
/// [`learns`](LimitAlgorithm::learns) is false), one call at a time, and applies the returned
/// limit at once. Implementations need no synchronization of their own.
///
/// A limit is at least 1 (the limiter raises a 0 to 1, so that one request can always run and
/// produce the samples that let the limit grow again).
pub trait LimitAlgorithm: Send + fmt::Debug + 'static {
    /// The current limit.
    fn limit(&self) -> u32;

    /// Takes one sample into account and returns the new limit.
    fn update(&mut self, sample: &Sample) -> u32;

    /// Sets the limit by hand (clamped into [`bounds`](LimitAlgorithm::bounds)) and returns
    /// the limit now in force. Later samples adapt from there.
    fn set_limit(&mut self, limit: u32) -> u32;

    /// The smallest and largest limits this algorithm can produce.
    fn bounds(&self) -> RangeInclusive<u32>;

    /// Whether this algorithm learns from samples (default: `true`). The limiter asks once,
    /// when it is built. If `false`, it never calls [`update`](LimitAlgorithm::update) (the
    /// limit changes only through [`set_limit`](LimitAlgorithm::set_limit)), so a release
    /// neither measures an RTT nor hands a sample over: without metrics, a decision is then two
    /// atomic operations. [`FixedLimit`] returns `false`.
    fn learns(&self) -> bool {
        true
    }
}

// === LimitConfigError ===

/// A limit algorithm could not be built with the requested parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum LimitConfigError {
    /// A minimum limit of zero would let the limiter admit nothing, forever. Use at least 1.
    ZeroMinimum,
    /// The minimum is above the maximum. Swap them or widen the range.
    MinAboveMax {
        /// The requested minimum.
        min: u32,
        /// The requested maximum.
        max: u32,
    },
    /// The initial limit is outside `[min, max]`. Choose one inside the range.
    InitialOutOfRange {
        /// The requested initial limit.
        initial: u32,
        /// The minimum.
        min: u32,
        /// The maximum.
        max: u32,
    },
    /// AIMD's backoff ratio must be in `[0.5, 1.0)` (Netflix's range; 0.9 by default).
    BackoffRatio {
        /// The rejected ratio.
        ratio: f64,
    },
    /// AIMD's timeout must be positive: an RTT above it counts as a drop.
    ZeroTimeout,
    /// The smoothing factor must be in `(0, 1]` (1 means no smoothing).
    Smoothing {
        /// The rejected factor.
        smoothing: f64,
    },
    /// Gradient2's RTT tolerance must be a finite number of at least 1.0 (1.5 by default).
    RttTolerance {
        /// The rejected tolerance.
        tolerance: f64,
    },
    /// A window or multiplier counted in samples must be at least 1.
    ZeroSamples {
        /// Which parameter (`long_window`, `probe_multiplier`).
        parameter: &'static str,
    },
}

impl fmt::Display for LimitConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LimitConfigError::ZeroMinimum => f.write_str("the minimum limit must be at least 1"),
            LimitConfigError::MinAboveMax { min, max } => {
                write!(f, "minimum limit {min} is above the maximum {max}")
            }
            LimitConfigError::InitialOutOfRange { initial, min, max } => {
                write!(f, "initial limit {initial} is outside [{min}, {max}]")
            }
            LimitConfigError::BackoffRatio { ratio } => {
                write!(f, "backoff ratio must be in [0.5, 1.0), got {ratio}")
            }
            LimitConfigError::ZeroTimeout => f.write_str("the timeout must be positive"),
            LimitConfigError::Smoothing { smoothing } => {
                write!(f, "smoothing must be in (0, 1], got {smoothing}")
            }
            LimitConfigError::RttTolerance { tolerance } => {
                write!(
                    f,
                    "rtt tolerance must be finite and at least 1.0, got {tolerance}"
                )
            }
            LimitConfigError::ZeroSamples { parameter } => {
                write!(f, "{parameter} must be at least 1")
            }
        }
    }
}

impl std::error::Error for LimitConfigError {}

fn check_range(initial: u32, min: u32, max: u32) -> Result<(), LimitConfigError> {
    if min == 0 {
        return Err(LimitConfigError::ZeroMinimum);
    }
    if min > max {
        return Err(LimitConfigError::MinAboveMax { min, max });
    }
    if !(min..=max).contains(&initial) {
        return Err(LimitConfigError::InitialOutOfRange { initial, min, max });
    }
    Ok(())
}

fn check_smoothing(smoothing: f64) -> Result<(), LimitConfigError> {
    if smoothing.is_finite() && smoothing > 0.0 && smoothing <= 1.0 {
        Ok(())
    } else {
        Err(LimitConfigError::Smoothing { smoothing })
    }
}

/// Floors a finite, non-negative estimate into `[min, max]`.
fn floor_limit(estimate: f64, min: u32, max: u32) -> u32 {
    // `as` saturates (and maps NaN to 0), then the clamp restores the range.
    (estimate.floor() as u32).clamp(min, max)
}

// === FixedLimit ===

/// A limit that only changes when set by hand ([`Limiter::set_limit`](super::Limiter::set_limit)).
///
/// ```
/// use weir::policy::shed::{FixedLimit, LimitAlgorithm, Sample};
/// let mut l = FixedLimit::new(8);
/// assert_eq!(l.update(&Sample::new(std::time::Duration::from_secs(9), 8, true)), 8);
/// assert_eq!(l.set_limit(0), 1); // at least 1
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedLimit {
    limit: u32,
}

impl FixedLimit {
    /// A fixed limit (a 0 is raised to 1).
    pub fn new(limit: u32) -> FixedLimit {
        FixedLimit {
            limit: limit.max(1),
        }
    }
}

impl LimitAlgorithm for FixedLimit {
    fn limit(&self) -> u32 {
        self.limit
    }
    fn update(&mut self, _sample: &Sample) -> u32 {
        self.limit
    }
    fn set_limit(&mut self, limit: u32) -> u32 {
        self.limit = limit.max(1);
        self.limit
    }
    fn bounds(&self) -> RangeInclusive<u32> {
        1..=u32::MAX
    }
    fn learns(&self) -> bool {
        false
    }
}

// === Aimd ===

/// Loss-based additive increase, multiplicative decrease.
///
/// For each sample, with `L` the current limit:
/// - dropped, or `rtt > timeout`: `L = floor(L × backoff_ratio)`;
/// - otherwise, if the limit is in use (`in_flight × 2 >= L`): `L = L + 1`;
/// - otherwise unchanged (an idle limit does not grow);
///
/// then `L` is clamped into `[min, max]`. Defaults (Netflix's): initial 20, min 20, max 200,
/// backoff ratio 0.9, timeout 5 s.
///
/// ```
/// use std::time::Duration;
/// use weir::policy::shed::{Aimd, LimitAlgorithm, Sample};
/// let mut aimd = Aimd::builder().initial(10).min(1).max(100).build()?;
/// let ms = Duration::from_millis(1);
/// assert_eq!(aimd.update(&Sample::new(ms, 5, false)), 11); // in use: +1
/// assert_eq!(aimd.update(&Sample::new(ms, 1, false)), 11); // idle: unchanged
/// assert_eq!(aimd.update(&Sample::new(ms, 9, true)), 9); // drop: floor(11 × 0.9)
/// assert_eq!(aimd.update(&Sample::new(Duration::from_secs(6), 9, false)), 8); // timeout
/// # Ok::<(), weir::policy::shed::LimitConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Aimd {
    limit: u32,
    min: u32,
    max: u32,
    backoff_ratio: f64,
    timeout: Duration,
}

/// Builds an [`Aimd`] limit; see its docs for the defaults.
#[derive(Clone, Debug)]
pub struct AimdBuilder {
    initial: u32,
    min: u32,
    max: u32,
    backoff_ratio: f64,
    timeout: Duration,
}

impl Aimd {
    /// A builder with Netflix's defaults.
    pub fn builder() -> AimdBuilder {
        AimdBuilder {
            initial: 20,
            min: 20,
            max: 200,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

impl AimdBuilder {
    /// The limit before any sample (default 20).
    pub fn initial(mut self, limit: u32) -> Self {
        self.initial = limit;
        self
    }
    /// The smallest limit (default 20; at least 1).
    pub fn min(mut self, limit: u32) -> Self {
        self.min = limit;
        self
    }
    /// The largest limit (default 200).
    pub fn max(mut self, limit: u32) -> Self {
        self.max = limit;
        self
    }
    /// The factor applied on a drop, in `[0.5, 1.0)` (default 0.9).
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }
    /// An RTT above this counts as a drop (default 5 s; must be positive).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Validates the parameters.
    ///
    /// # Errors
    ///
    /// A [`LimitConfigError`] naming the parameter to fix.
    pub fn build(self) -> Result<Aimd, LimitConfigError> {
        check_range(self.initial, self.min, self.max)?;
        if !(self.backoff_ratio >= 0.5 && self.backoff_ratio < 1.0) {
            return Err(LimitConfigError::BackoffRatio {
                ratio: self.backoff_ratio,
            });
        }
        if self.timeout.is_zero() {
            return Err(LimitConfigError::ZeroTimeout);
        }
        Ok(Aimd {
            limit: self.initial,
            min: self.min,
            max: self.max,
            backoff_ratio: self.backoff_ratio,
            timeout: self.timeout,
        })
    }
}

impl LimitAlgorithm for Aimd {
    fn limit(&self) -> u32 {
        self.limit
    }

    fn update(&mut self, s: &Sample) -> u32 {
        let l = self.limit;
        let next = if s.dropped || s.rtt > self.timeout {
            // floor(l × r) < l for any l >= 1 and r < 1: a drop always backs off.
            (f64::from(l) * self.backoff_ratio) as u32
        } else if u64::from(s.in_flight) * 2 >= u64::from(l) {
            l.saturating_add(1)
        } else {
            l
        };
        self.limit = next.clamp(self.min, self.max);
        self.limit
    }

    fn set_limit(&mut self, limit: u32) -> u32 {
        self.limit = limit.clamp(self.min, self.max);
        self.limit
    }

    fn bounds(&self) -> RangeInclusive<u32> {
        self.min..=self.max
    }
}

// === Vegas ===

/// `max(1, floor(log10(limit)))`: the step and thresholds of [`Vegas`].
fn log10_step(limit: f64) -> f64 {
    limit.max(1.0).log10().floor().max(1.0)
}

/// Delay-based, after TCP Vegas: estimates the queue from the ratio of the no-load RTT to the
/// current RTT, and grows while the queue is short.
///
/// `rtt_noload` is the smallest RTT seen since the last probe. Every
/// `jitter × probe_multiplier × limit` samples (`jitter` uniform in `[0.5, 1)`, from a
/// seedable [`Rng`]) the next sample's RTT becomes the new `rtt_noload` (a probe, so that the
/// baseline can rise when the service gets slower). A sample that probes or sets a new
/// minimum changes nothing else. Otherwise, with `L` the (real-valued) estimate and
/// `s = max(1, floor(log10 L))`:
///
/// - `queue = ceil(L × (1 - rtt_noload / rtt))`;
/// - dropped: `new = L - s`;
/// - else if `in_flight × 2 < L` (app-limited): unchanged;
/// - else if `queue <= s`: `new = L + 6s` (no queueing: grow fast);
/// - else if `queue < 3s`: `new = L + s`;
/// - else if `queue > 6s`: `new = L - s`;
/// - else unchanged;
///
/// then `new` is clamped into `[min, max]` and smoothed: `L = (1 - smoothing) L + smoothing ×
/// new`. The limit is `floor(L)`. Defaults (Netflix's): initial 20, max 1000, smoothing 1.0,
/// probe multiplier 30; weir adds a minimum (default 1). Netflix's step table switches from
/// `log10` to `sqrt` at limits of 1000 and above; weir keeps `log10` throughout. An RTT of zero
/// is taken as 1 ns.
#[derive(Debug)]
pub struct Vegas {
    estimate: f64,
    min: u32,
    max: u32,
    smoothing: f64,
    probe_multiplier: u32,
    rtt_noload: u64,
    probe_count: u64,
    probe_jitter: f64,
    rng: Rng,
}

/// Builds a [`Vegas`] limit; see its docs for the defaults.
#[derive(Clone, Debug)]
pub struct VegasBuilder {
    initial: u32,
    min: u32,
    max: u32,
    smoothing: f64,
    probe_multiplier: u32,
    seed: Option<u64>,
}

impl Vegas {
    /// A builder with Netflix's defaults.
    pub fn builder() -> VegasBuilder {
        VegasBuilder {
            initial: 20,
            min: 1,
            max: 1000,
            smoothing: 1.0,
            probe_multiplier: 30,
            seed: None,
        }
    }

    /// The current no-load RTT estimate (zero before the first sample).
    pub fn rtt_noload(&self) -> Duration {
        Duration::from_nanos(self.rtt_noload)
    }

    fn reset_probe(&mut self) {
        self.probe_jitter = 0.5 + 0.5 * self.rng.next_f64();
        self.probe_count = 0;
    }
}

impl VegasBuilder {
    /// The limit before any sample (default 20).
    pub fn initial(mut self, limit: u32) -> Self {
        self.initial = limit;
        self
    }
    /// The smallest limit (default 1).
    pub fn min(mut self, limit: u32) -> Self {
        self.min = limit;
        self
    }
    /// The largest limit (Netflix's `maxConcurrency`, default 1000).
    pub fn max(mut self, limit: u32) -> Self {
        self.max = limit;
        self
    }
    /// How much of each new estimate is taken, in `(0, 1]` (default 1.0: all of it).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }
    /// Probe for a new no-load RTT about every `multiplier × limit` samples (default 30).
    pub fn probe_multiplier(mut self, multiplier: u32) -> Self {
        self.probe_multiplier = multiplier;
        self
    }
    /// Seeds the probe jitter (default: from entropy). Fix it for deterministic tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// Validates the parameters.
    ///
    /// # Errors
    ///
    /// A [`LimitConfigError`] naming the parameter to fix.
    pub fn build(self) -> Result<Vegas, LimitConfigError> {
        check_range(self.initial, self.min, self.max)?;
        check_smoothing(self.smoothing)?;
        if self.probe_multiplier == 0 {
            return Err(LimitConfigError::ZeroSamples {
                parameter: "probe_multiplier",
            });
        }
        let rng = match self.seed {
            Some(s) => Rng::with_seed(s),
            None => Rng::from_entropy(),
        };
        let mut v = Vegas {
            estimate: f64::from(self.initial),
            min: self.min,
            max: self.max,
            smoothing: self.smoothing,
            probe_multiplier: self.probe_multiplier,
            rtt_noload: 0,
            probe_count: 0,
            probe_jitter: 1.0,
            rng,
        };
        v.reset_probe();
        Ok(v)
    }
}

impl LimitAlgorithm for Vegas {
    fn limit(&self) -> u32 {
        floor_limit(self.estimate, self.min, self.max)
    }

    fn update(&mut self, s: &Sample) -> u32 {
        let rtt = nanos(s.rtt).max(1);
        self.probe_count += 1;
        let probe_at = self.probe_jitter * f64::from(self.probe_multiplier) * self.estimate;
        if probe_at <= self.probe_count as f64 {
            self.reset_probe();
            self.rtt_noload = rtt;
            return self.limit();
        }
        if self.rtt_noload == 0 || rtt < self.rtt_noload {
            self.rtt_noload = rtt;
            return self.limit();
        }
        let l = self.estimate;
        let step = log10_step(l);
        let queue = (l * (1.0 - self.rtt_noload as f64 / rtt as f64)).ceil();
        let new = if s.dropped {
            l - step
        } else if f64::from(s.in_flight) * 2.0 < l {
            return self.limit();
        } else if queue <= step {
            l + 6.0 * step
        } else if queue < 3.0 * step {
            l + step
        } else if queue > 6.0 * step {
            l - step
        } else {
            return self.limit();
        };
        let new = new.clamp(f64::from(self.min), f64::from(self.max));
        self.estimate = (1.0 - self.smoothing) * l + self.smoothing * new;
        self.limit()
    }

    fn set_limit(&mut self, limit: u32) -> u32 {
        self.estimate = f64::from(limit.clamp(self.min, self.max));
        self.limit()
    }

    fn bounds(&self) -> RangeInclusive<u32> {
        self.min..=self.max
    }
}

// === Gradient2 ===

/// A long-term exponential average of the RTT (Netflix's `ExpAvgMeasurement`): the plain mean
/// of the first `warmup` samples, then `value = value × (1 - f) + sample × f` with
/// `f = 2 / (window + 1)`.
#[derive(Clone, Copy, Debug)]
struct ExpAvg {
    value: f64,
    sum: f64,
    count: u32,
    warmup: u32,
    factor: f64,
}

impl ExpAvg {
    fn new(window: u32, warmup: u32) -> ExpAvg {
        ExpAvg {
            value: 0.0,
            sum: 0.0,
            count: 0,
            warmup,
            factor: 2.0 / (f64::from(window) + 1.0),
        }
    }

    fn add(&mut self, sample: f64) -> f64 {
        if self.count < self.warmup {
            self.count += 1;
            self.sum += sample;
            self.value = self.sum / f64::from(self.count);
        } else {
            self.value = self.value * (1.0 - self.factor) + sample * self.factor;
        }
        self.value
    }
}

/// Delay-based: compares each sample's RTT with a long-term average RTT.
///
/// With `L` the (real-valued) estimate, `short = rtt` (at least 1 ns) and `long` the
/// exponential average of RTTs over `long_window` samples (the plain mean of the first 10):
///
/// - if `long / short > 2`, the stored average decays: `long_avg × 0.95` (latency fell back
///   after a long overload: let the baseline follow faster);
/// - if `in_flight < L / 2` (app-limited): unchanged;
/// - `gradient = clamp(rtt_tolerance × long / short, 0.5, 1.0)`;
/// - `new = L × gradient + queue_size`;
/// - `L = clamp(L × (1 - smoothing) + new × smoothing, min, max)`.
///
/// The limit is `floor(L)`. Drops are not used (as in Netflix's). Defaults (Netflix's):
/// initial 20, min 20, max 200, smoothing 0.2, queue size 4, long window 600 samples, RTT
/// tolerance 1.5.
///
/// ```
/// use std::time::Duration;
/// use weir::policy::shed::{Gradient2, LimitAlgorithm, Sample};
/// let mut g = Gradient2::builder().initial(50).min(10).max(100).build()?;
/// let ms = Duration::from_millis(10);
/// for _ in 0..20 {
///     g.update(&Sample::new(ms, 50, false)); // steady latency: grows by queue_size × smoothing
/// }
/// assert!(g.limit() > 50);
/// for _ in 0..50 {
///     g.update(&Sample::new(ms * 4, 100, false)); // latency quadrupled: shrinks
/// }
/// assert!(g.limit() < 50);
/// # Ok::<(), weir::policy::shed::LimitConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Gradient2 {
    estimate: f64,
    min: u32,
    max: u32,
    smoothing: f64,
    queue_size: u32,
    rtt_tolerance: f64,
    long_rtt: ExpAvg,
}

/// Builds a [`Gradient2`] limit; see its docs for the defaults.
#[derive(Clone, Debug)]
pub struct Gradient2Builder {
    initial: u32,
    min: u32,
    max: u32,
    smoothing: f64,
    queue_size: u32,
    long_window: u32,
    rtt_tolerance: f64,
}

impl Gradient2 {
    /// A builder with Netflix's defaults.
    pub fn builder() -> Gradient2Builder {
        Gradient2Builder {
            initial: 20,
            min: 20,
            max: 200,
            smoothing: 0.2,
            queue_size: 4,
            long_window: 600,
            rtt_tolerance: 1.5,
        }
    }

    /// The long-term average RTT (zero before the first sample).
    pub fn long_rtt(&self) -> Duration {
        Duration::from_nanos(self.long_rtt.value as u64)
    }
}

impl Gradient2Builder {
    /// The limit before any sample (default 20).
    pub fn initial(mut self, limit: u32) -> Self {
        self.initial = limit;
        self
    }
    /// The smallest limit (default 20).
    pub fn min(mut self, limit: u32) -> Self {
        self.min = limit;
        self
    }
    /// The largest limit (Netflix's `maxConcurrency`, default 200).
    pub fn max(mut self, limit: u32) -> Self {
        self.max = limit;
        self
    }
    /// How much of each new estimate is taken, in `(0, 1]` (default 0.2).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }
    /// How far the limit may grow beyond the gradient while latency is low (default 4).
    pub fn queue_size(mut self, queue_size: u32) -> Self {
        self.queue_size = queue_size;
        self
    }
    /// Samples in the long-term RTT average (default 600; at least 1).
    pub fn long_window(mut self, samples: u32) -> Self {
        self.long_window = samples;
        self
    }
    /// How much slower than the long-term average a sample may be before the limit shrinks
    /// (default 1.5; at least 1.0).
    pub fn rtt_tolerance(mut self, tolerance: f64) -> Self {
        self.rtt_tolerance = tolerance;
        self
    }
    /// Validates the parameters.
    ///
    /// # Errors
    ///
    /// A [`LimitConfigError`] naming the parameter to fix.
    pub fn build(self) -> Result<Gradient2, LimitConfigError> {
        check_range(self.initial, self.min, self.max)?;
        check_smoothing(self.smoothing)?;
        if self.long_window == 0 {
            return Err(LimitConfigError::ZeroSamples {
                parameter: "long_window",
            });
        }
        if !in_range(self.rtt_tolerance, 1.0, f64::MAX) {
            return Err(LimitConfigError::RttTolerance {
                tolerance: self.rtt_tolerance,
            });
        }
        Ok(Gradient2 {
            estimate: f64::from(self.initial),
            min: self.min,
            max: self.max,
            smoothing: self.smoothing,
            queue_size: self.queue_size,
            rtt_tolerance: self.rtt_tolerance,
            long_rtt: ExpAvg::new(self.long_window, 10),
        })
    }
}

impl LimitAlgorithm for Gradient2 {
    fn limit(&self) -> u32 {
        floor_limit(self.estimate, self.min, self.max)
    }

    fn update(&mut self, s: &Sample) -> u32 {
        let short = nanos(s.rtt).max(1) as f64;
        let long = self.long_rtt.add(short);
        if long / short > 2.0 {
            self.long_rtt.value *= 0.95;
        }
        let l = self.estimate;
        if f64::from(s.in_flight) < l / 2.0 {
            return self.limit();
        }
        let gradient = (self.rtt_tolerance * long / short).clamp(0.5, 1.0);
        let new = l * gradient + f64::from(self.queue_size);
        let new = l * (1.0 - self.smoothing) + new * self.smoothing;
        self.estimate = new.clamp(f64::from(self.min), f64::from(self.max));
        self.limit()
    }

    fn set_limit(&mut self, limit: u32) -> u32 {
        self.estimate = f64::from(limit.clamp(self.min, self.max));
        self.limit()
    }

    fn bounds(&self) -> RangeInclusive<u32> {
        self.min..=self.max
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn config_errors() {
        assert_eq!(
            Aimd::builder().min(0).initial(0).build().err(),
            Some(LimitConfigError::ZeroMinimum)
        );
        assert_eq!(
            Aimd::builder().min(5).max(4).build().err(),
            Some(LimitConfigError::MinAboveMax { min: 5, max: 4 })
        );
        assert_eq!(
            Aimd::builder().initial(1).build().err(),
            Some(LimitConfigError::InitialOutOfRange {
                initial: 1,
                min: 20,
                max: 200
            })
        );
        for r in [0.49, 1.0, f64::NAN] {
            assert!(matches!(
                Aimd::builder().backoff_ratio(r).build(),
                Err(LimitConfigError::BackoffRatio { .. })
            ));
        }
        assert_eq!(
            Aimd::builder().timeout(Duration::ZERO).build().err(),
            Some(LimitConfigError::ZeroTimeout)
        );
        for s in [0.0, 1.1, f64::NAN, -1.0] {
            assert!(matches!(
                Vegas::builder().smoothing(s).build(),
                Err(LimitConfigError::Smoothing { .. })
            ));
            assert!(Gradient2::builder().smoothing(s).build().is_err());
        }
        assert_eq!(
            Vegas::builder().probe_multiplier(0).build().err(),
            Some(LimitConfigError::ZeroSamples {
                parameter: "probe_multiplier"
            })
        );
        assert!(Gradient2::builder().long_window(0).build().is_err());
        for t in [0.99, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                Gradient2::builder().rtt_tolerance(t).build(),
                Err(LimitConfigError::RttTolerance { .. })
            ));
        }
        let all = [
            LimitConfigError::ZeroMinimum,
            LimitConfigError::MinAboveMax { min: 2, max: 1 },
            LimitConfigError::InitialOutOfRange {
                initial: 0,
                min: 1,
                max: 2,
            },
            LimitConfigError::BackoffRatio { ratio: 2.0 },
            LimitConfigError::ZeroTimeout,
            LimitConfigError::Smoothing { smoothing: 0.0 },
            LimitConfigError::RttTolerance { tolerance: 0.5 },
            LimitConfigError::ZeroSamples { parameter: "x" },
        ];
        for e in all {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn aimd_increase_backoff_clamp() {
        let mut a = Aimd::builder().initial(3).min(2).max(5).build().unwrap();
        assert_eq!(a.bounds(), 2..=5);
        assert_eq!(a.update(&Sample::new(MS, 2, false)), 4);
        assert_eq!(a.update(&Sample::new(MS, 2, false)), 5);
        assert_eq!(a.update(&Sample::new(MS, 5, false)), 5); // max
        assert_eq!(a.update(&Sample::new(MS, 2, false)), 5); // 2*2 < 5: idle
        assert_eq!(a.update(&Sample::new(MS, 1, true)), 4); // floor(4.5)
        assert_eq!(a.update(&Sample::new(MS, 1, true)), 3);
        assert_eq!(a.update(&Sample::new(MS, 1, true)), 2);
        assert_eq!(a.update(&Sample::new(MS, 1, true)), 2); // min
        // rtt exactly at the timeout is not a drop; above it is.
        let mut a = Aimd::builder().initial(10).min(1).build().unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(a.update(&Sample::new(t, 10, false)), 11);
        assert_eq!(a.update(&Sample::new(t + MS, 10, false)), 9);
        assert_eq!(a.set_limit(1000), 200);
        assert_eq!(a.set_limit(0), 1);
        // The smallest limit always backs off by at least one.
        let mut a = Aimd::builder()
            .initial(2)
            .min(1)
            .backoff_ratio(0.99)
            .build()
            .unwrap();
        assert_eq!(a.update(&Sample::new(MS, 1, true)), 1);
    }

    #[test]
    fn vegas_follows_queue_estimate() {
        let mut v = Vegas::builder()
            .initial(100)
            .max(1000)
            .probe_multiplier(1_000_000)
            .seed(1)
            .build()
            .unwrap();
        // First sample sets the no-load RTT and nothing else.
        assert_eq!(v.update(&Sample::new(10 * MS, 100, false)), 100);
        assert_eq!(v.rtt_noload(), 10 * MS);
        // log10(100) = 2. Same RTT: queue 0 <= 2: grow by 6 × 2.
        assert_eq!(v.update(&Sample::new(10 * MS, 100, false)), 112);
        // App-limited: in_flight × 2 < 112.
        assert_eq!(v.update(&Sample::new(10 * MS, 55, false)), 112);
        // queue = ceil(112 × (1 - 10/10.4)) = ceil(4.31) = 5: in [2 × 3 = 6)? 5 < 6: + 2.
        assert_eq!(
            v.update(&Sample::new(Duration::from_micros(10_400), 112, false)),
            114
        );
        // queue = ceil(114 × 0.5) = 57 > 12: - 2.
        assert_eq!(v.update(&Sample::new(20 * MS, 114, false)), 112);
        // queue = ceil(112 × (1 - 10/11)) = ceil(10.18) = 11: in [6, 12]: unchanged.
        assert_eq!(v.update(&Sample::new(11 * MS, 112, false)), 112);
        // A drop: - 2, app-limited or not.
        assert_eq!(v.update(&Sample::new(11 * MS, 1, true)), 110);
        // A faster sample resets the no-load RTT and changes nothing else.
        assert_eq!(v.update(&Sample::new(5 * MS, 110, true)), 110);
        assert_eq!(v.rtt_noload(), 5 * MS);
        assert_eq!(v.set_limit(5000), 1000);
        assert_eq!(v.bounds(), 1..=1000);
    }

    #[test]
    fn vegas_probes_and_smooths() {
        let mut v = Vegas::builder()
            .initial(2)
            .probe_multiplier(1)
            .smoothing(0.5)
            .seed(3)
            .build()
            .unwrap();
        // A probe within at most 2 samples (jitter < 1, multiplier 1, limit 2) resets the
        // no-load RTT to the sample, even if it is slower.
        v.update(&Sample::new(MS, 2, false));
        let mut probed = false;
        for _ in 0..3 {
            v.update(&Sample::new(50 * MS, 2, false));
            probed |= v.rtt_noload() == 50 * MS;
        }
        assert!(probed);
        // Smoothing 0.5 from 2 towards 2 + 6: 5.
        let mut v = Vegas::builder()
            .initial(2)
            .probe_multiplier(1_000)
            .smoothing(0.5)
            .seed(3)
            .build()
            .unwrap();
        v.update(&Sample::new(MS, 2, false));
        assert_eq!(v.update(&Sample::new(MS, 2, false)), 5);
        // A zero RTT counts as 1 ns and never divides by zero.
        assert_eq!(v.update(&Sample::new(Duration::ZERO, 5, false)), 5);
        assert_eq!(v.rtt_noload(), Duration::from_nanos(1));
        v.update(&Sample::new(Duration::ZERO, 5, false));
        assert!(v.limit() >= 1);
    }

    #[test]
    fn gradient2_formula() {
        let mut g = Gradient2::builder()
            .initial(100)
            .min(10)
            .max(1000)
            .build()
            .unwrap();
        // Steady RTT: gradient clamps to 1.0; new = 100 + 4; L = 100 × 0.8 + 104 × 0.2.
        g.update(&Sample::new(10 * MS, 100, false));
        assert!((g.estimate - 100.8).abs() < 1e-9);
        assert_eq!(g.long_rtt(), 10 * MS);
        // App-limited: unchanged (but the long average still learns).
        assert_eq!(g.update(&Sample::new(30 * MS, 10, false)), 100);
        assert_eq!(g.long_rtt(), 20 * MS);
        // long = (10 + 30 + 80) / 3 = 40 ms, short 80: gradient 1.5 × 0.5 = 0.75.
        g.update(&Sample::new(80 * MS, 100, false));
        let l = 100.8;
        let expect = l * 0.8 + (l * 0.75 + 4.0) * 0.2;
        assert!(
            (g.estimate - expect).abs() < 1e-9,
            "{} vs {expect}",
            g.estimate
        );
        // long / short > 2 decays the stored average by 5%.
        let before = g.long_rtt.value;
        g.update(&Sample::new(Duration::from_nanos(1), 1, false));
        let after_add = (before * 3.0 + 1.0) / 4.0; // still warming up: the mean of 4
        assert!((g.long_rtt.value - after_add * 0.95).abs() < 1e-6);
        assert_eq!(g.set_limit(1), 10);
        assert_eq!(g.bounds(), 10..=1000);
    }

    #[test]
    fn exp_avg_warms_up_then_decays() {
        let mut e = ExpAvg::new(3, 2);
        assert_eq!(e.add(10.0), 10.0);
        assert_eq!(e.add(20.0), 15.0);
        // factor 2 / 4 = 0.5
        assert_eq!(e.add(25.0), 20.0);
    }

    #[test]
    fn fixed_limit() {
        let mut f = FixedLimit::new(0);
        assert_eq!(f.limit(), 1);
        assert_eq!(f.set_limit(7), 7);
        assert_eq!(f.update(&Sample::new(MS, 1, true)), 7);
        assert_eq!(f.bounds(), 1..=u32::MAX);
        assert_eq!(log10_step(0.0), 1.0);
        assert_eq!(log10_step(999.0), 2.0);
        assert_eq!(log10_step(1000.0), 3.0);
    }
}
