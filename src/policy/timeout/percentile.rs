//! A timeout learned from a windowed latency percentile.
//!
//! # Orderings
//! - `next_refresh` (`AtomicU64`, nanoseconds) is read and CASed with `Relaxed`: the CAS only
//!   elects one thread per refresh interval to read the window; it publishes nothing.
//! - The estimate is published through `arc-swap` (release on store, acquire on load), so a
//!   reader sees a whole estimate (timeout, observed percentile, sample count) from one refresh,
//!   never a mix of two.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use super::calc::{TimeoutCalculator, check_factor, scale};
use super::{Calculated, Calculation, Clamp, RequestInfo, TimeoutBuildError};
use crate::clock::{Clock, SharedClock};
use crate::sync::{AtomicU64, Ordering};
use crate::window::RollingHistogram;

#[derive(Clone, Copy, Debug)]
struct Estimate {
    timeout: Duration,
    observed: Duration,
    samples: u64,
    clamp: Clamp,
}

/// An adaptive timeout from recent latencies: `clamp(quantile(window) × multiplier, min, max)`,
/// by default `clamp(p99 of the last 30 s × 1.5, 1 ms, 30 s)`.
///
/// The policy feeds it each completed request's latency ([`TimeoutCalculator::observe`]) into a
/// [`RollingHistogram`]; requests that timed out are left out by default (their latency is only
/// known to be at least the timeout, and feeding them back would ratchet the timeout up to `max`
/// under a burst of timeouts; see [`PercentileCalculatorBuilder::include_timeouts`]).
///
/// **Freshness.** Reading the window takes its mutex and a histogram snapshot, so it is not done
/// per request: at most once per `refresh` interval, one thread (elected by a CAS) reads the
/// window and publishes a new estimate; everyone else reads the published estimate lock-free. A
/// timeout is therefore up to one refresh old (1 s by default). With fewer than `min_samples`
/// latencies in the window (100 by default) there is no estimate, and the policy falls through to
/// its tenant, operation and default timeouts.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use weir::ManualClock;
/// use weir::policy::timeout::{Method, PercentileCalculator, RequestInfo, TimeoutCalculator};
///
/// let clock = ManualClock::new();
/// let calc = PercentileCalculator::builder(Arc::new(clock.clone()))
///     .min_samples(10)
///     .build()?;
/// let get = RequestInfo::new(Method::Get);
/// assert!(calc.calculate(&get).is_none()); // no data yet
/// for _ in 0..100 {
///     calc.observe(Duration::from_millis(200), false);
/// }
/// clock.advance(Duration::from_secs(1)); // the next refresh
/// let c = calc.calculate(&get).unwrap();
/// assert!(c.timeout >= Duration::from_millis(299) && c.timeout <= Duration::from_millis(301));
/// # Ok::<(), weir::policy::timeout::TimeoutBuildError>(())
/// ```
pub struct PercentileCalculator {
    window: RollingHistogram<SharedClock>,
    quantile: f64,
    multiplier: f64,
    min: Duration,
    max: Duration,
    min_samples: u64,
    include_timeouts: bool,
    refresh_every: u64,
    next_refresh: AtomicU64,
    estimate: ArcSwapOption<Estimate>,
}

impl PercentileCalculator {
    /// A builder with the defaults: p99 × 1.5 over the last 30 s (1 s resolution), clamped to
    /// [1 ms, 30 s], at least 100 samples, refreshed every second.
    pub fn builder(clock: SharedClock) -> PercentileCalculatorBuilder {
        PercentileCalculatorBuilder {
            clock,
            quantile: 0.99,
            multiplier: 1.5,
            min: Duration::from_millis(1),
            max: Duration::from_secs(30),
            min_samples: 100,
            include_timeouts: false,
            window: Duration::from_secs(30),
            resolution: Duration::from_secs(1),
            refresh: Duration::from_secs(1),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.window.clock().now().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The current estimate, refreshing it first if it is due.
    fn current(&self) -> Option<Estimate> {
        let now = self.now();
        // Relaxed: elects a refresher, publishes nothing (module docs).
        let due = self.next_refresh.load(Ordering::Relaxed);
        // Relaxed CAS, as the load: whoever wins refreshes; the estimate itself is published
        // through arc-swap.
        if now >= due
            && self
                .next_refresh
                .compare_exchange(
                    due,
                    now.saturating_add(self.refresh_every),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.refresh();
        }
        self.estimate.load().as_deref().copied()
    }

    /// Reads the window now and publishes the new estimate (or none, if too few samples).
    pub fn refresh(&self) {
        let snap = self.window.snapshot();
        let samples = snap.count();
        let estimate = (samples >= self.min_samples && samples > 0).then(|| {
            let observed = Duration::from_nanos(snap.value_at_quantile(self.quantile));
            let raw = scale(observed, self.multiplier);
            let (timeout, clamp) = if raw < self.min {
                (self.min, Clamp::ToMin)
            } else if raw > self.max {
                (self.max, Clamp::ToMax)
            } else {
                (raw, Clamp::None)
            };
            Arc::new(Estimate {
                timeout,
                observed,
                samples,
                clamp,
            })
        });
        self.estimate.store(estimate);
    }

    /// The window of latencies (for inspection, or to record into it directly).
    pub fn window(&self) -> &RollingHistogram<SharedClock> {
        &self.window
    }
}

impl TimeoutCalculator for PercentileCalculator {
    fn calculate(&self, _r: &RequestInfo<'_>) -> Option<Calculation> {
        let e = self.current()?;
        Some(Calculation {
            timeout: e.timeout,
            how: Calculated::Percentile {
                quantile: self.quantile,
                observed: e.observed,
                multiplier: self.multiplier,
                samples: e.samples,
                clamp: e.clamp,
            },
        })
    }

    fn observe(&self, elapsed: Duration, timed_out: bool) {
        if !timed_out || self.include_timeouts {
            self.window.record_duration(elapsed);
        }
    }
}

impl fmt::Debug for PercentileCalculator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PercentileCalculator")
            .field("quantile", &self.quantile)
            .field("multiplier", &self.multiplier)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("min_samples", &self.min_samples)
            .field("window", &self.window.window())
            .field(
                "estimate",
                &self.estimate.load().as_deref().map(|e| e.timeout),
            )
            .finish_non_exhaustive()
    }
}

/// Builds a [`PercentileCalculator`].
#[derive(Debug)]
pub struct PercentileCalculatorBuilder {
    clock: SharedClock,
    quantile: f64,
    multiplier: f64,
    min: Duration,
    max: Duration,
    min_samples: u64,
    include_timeouts: bool,
    window: Duration,
    resolution: Duration,
    refresh: Duration,
}

impl PercentileCalculatorBuilder {
    /// The quantile of recent latencies to start from (default 0.99).
    pub fn quantile(mut self, q: f64) -> Self {
        self.quantile = q;
        self
    }

    /// The factor on that quantile (default 1.5).
    pub fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = m;
        self
    }

    /// The bounds the timeout is clamped to (default 1 ms to 30 s).
    pub fn bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min = min;
        self.max = max;
        self
    }

    /// Fewest latencies in the window for an estimate (default 100; 0 is treated as 1).
    pub fn min_samples(mut self, n: u64) -> Self {
        self.min_samples = n;
        self
    }

    /// Whether latencies of requests that timed out go into the window (default false).
    pub fn include_timeouts(mut self, include: bool) -> Self {
        self.include_timeouts = include;
        self
    }

    /// The window and its resolution (default 30 s in steps of 1 s; see
    /// [`RollingHistogram::new`]).
    pub fn window(mut self, window: Duration, resolution: Duration) -> Self {
        self.window = window;
        self.resolution = resolution;
        self
    }

    /// Least time between two reads of the window (default 1 s). Zero reads it on every call.
    pub fn refresh_every(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// Builds the calculator.
    ///
    /// # Errors
    ///
    /// [`TimeoutBuildError::InvalidQuantile`] unless the quantile is in `[0, 1]`;
    /// [`TimeoutBuildError::InvalidFactor`] unless the multiplier is finite and positive;
    /// [`TimeoutBuildError::InvalidBounds`] unless `0 < min <= max`;
    /// [`TimeoutBuildError::Window`] for a window the [`RollingHistogram`] refuses.
    pub fn build(self) -> Result<PercentileCalculator, TimeoutBuildError> {
        if !(0.0..=1.0).contains(&self.quantile) {
            return Err(TimeoutBuildError::InvalidQuantile {
                quantile: self.quantile,
            });
        }
        let multiplier = check_factor("multiplier", self.multiplier)?;
        if self.min.is_zero() || self.min > self.max {
            return Err(TimeoutBuildError::InvalidBounds {
                min: self.min,
                max: self.max,
            });
        }
        let window = RollingHistogram::new(self.window, self.resolution, self.clock)
            .map_err(TimeoutBuildError::Window)?;
        Ok(PercentileCalculator {
            window,
            quantile: self.quantile,
            multiplier,
            min: self.min,
            max: self.max,
            min_samples: self.min_samples.max(1),
            include_timeouts: self.include_timeouts,
            refresh_every: u64::try_from(self.refresh.as_nanos()).unwrap_or(u64::MAX),
            next_refresh: AtomicU64::new(0),
            estimate: ArcSwapOption::empty(),
        })
    }
}
