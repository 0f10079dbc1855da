//! What counts as a slow call: a fixed duration, or a percentile of recent call durations read
//! from a weir histogram.
//!
//! # Orderings
//! The percentile threshold is cached in one `AtomicU64` (nanoseconds) and recomputed at most
//! once per refresh interval, by the caller that wins a compare-and-swap on the next refresh
//! time. Both are `Relaxed`: the cached threshold is a self-contained number (an estimate that
//! may be one refresh old), and the refresh CAS only elects one recomputing caller; no other
//! memory is published through them.
#![forbid(unsafe_code)]

use std::fmt;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::histogram::Histogram;
use crate::sync::{AtomicU64, Ordering};
use crate::window::RollingHistogram;

use super::BreakerConfigError;

/// When a call counts as slow (for the slow-call-rate threshold).
#[derive(Clone, Debug)]
pub enum SlowCall {
    /// A call is slow when it takes at least this long.
    Fixed(Duration),
    /// A call is slow when it takes at least a multiple of a recent percentile of call
    /// durations (see [`PercentileSlowCall`]).
    Percentile(PercentileSlowCall),
}

/// A slow-call threshold that follows recent latency: `max(floor, factor × p(quantile))` of
/// the call durations of the last `window`, read from a weir [`Histogram`] of nanoseconds.
///
/// The threshold is recomputed at most once per `window / 10` (at least every millisecond),
/// so it may be that old. While the window holds no durations, no call is slow.
///
/// ```
/// use std::time::Duration;
/// use weir::policy::breaker::PercentileSlowCall;
///
/// // Slow: at least twice the p99 of the last minute, and at least 50 ms.
/// let p = PercentileSlowCall::new(0.99)
///     .factor(2.0)
///     .floor(Duration::from_millis(50))
///     .window(Duration::from_secs(60));
/// # let _ = p;
/// ```
#[derive(Clone)]
pub struct PercentileSlowCall {
    quantile: f64,
    factor: f64,
    floor: Duration,
    window: Duration,
    histogram: Option<Histogram>,
}

impl fmt::Debug for PercentileSlowCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PercentileSlowCall")
            .field("quantile", &self.quantile)
            .field("factor", &self.factor)
            .field("floor", &self.floor)
            .field("window", &self.window)
            .field("shared_histogram", &self.histogram.is_some())
            .finish()
    }
}

impl PercentileSlowCall {
    /// Slow at the `quantile` (in `[0, 1]`) of the last minute's durations, factor 1, no floor.
    pub fn new(quantile: f64) -> PercentileSlowCall {
        PercentileSlowCall {
            quantile,
            factor: 1.0,
            floor: Duration::ZERO,
            window: Duration::from_secs(60),
            histogram: None,
        }
    }

    /// Multiplies the percentile (finite, greater than 0; default 1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// The threshold is never below this (default zero).
    pub fn floor(mut self, floor: Duration) -> Self {
        self.floor = floor;
        self
    }

    /// How much recent history the percentile covers (at least 10 ms; default 60 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Reads the percentile from this histogram of nanoseconds, which *you* record into (for
    /// example your request-latency histogram). Without it, the breaker records every call's
    /// duration into a histogram of its own. Keyed breakers built from one builder share that
    /// histogram.
    pub fn histogram(mut self, histogram: Histogram) -> Self {
        self.histogram = Some(histogram);
        self
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The resolved threshold, shared by every breaker built from one configuration.
pub(crate) enum SlowThreshold {
    Fixed(u64),
    Percentile(Percentile),
}

pub(crate) struct Percentile {
    quantile: f64,
    factor: f64,
    floor: u64,
    /// Whether the breaker records durations into `rolling` itself.
    owned: bool,
    rolling: RollingHistogram<SharedClock>,
    refresh_every: u64,
    next_refresh: AtomicU64,
    cached: AtomicU64,
}

impl fmt::Debug for SlowThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlowThreshold::Fixed(n) => f
                .debug_tuple("Fixed")
                .field(&Duration::from_nanos(*n))
                .finish(),
            SlowThreshold::Percentile(p) => f
                .debug_struct("Percentile")
                .field("quantile", &p.quantile)
                .field("factor", &p.factor)
                // Relaxed: a diagnostic read of a self-contained number.
                .field("cached_nanos", &p.cached.load(Ordering::Relaxed))
                .finish_non_exhaustive(),
        }
    }
}

impl SlowThreshold {
    pub(crate) fn new(
        spec: &SlowCall,
        clock: &SharedClock,
    ) -> Result<SlowThreshold, BreakerConfigError> {
        match spec {
            SlowCall::Fixed(d) => Ok(SlowThreshold::Fixed(nanos(*d))),
            SlowCall::Percentile(p) => {
                let bad = |what: &'static str| BreakerConfigError::Percentile { what };
                if !(0.0..=1.0).contains(&p.quantile) {
                    return Err(bad("quantile must be in [0, 1]"));
                }
                if !(p.factor.is_finite() && p.factor > 0.0) {
                    return Err(bad("factor must be finite and greater than 0"));
                }
                if p.window < Duration::from_millis(10) || p.window > Duration::from_secs(86_400) {
                    return Err(bad("window must be between 10 ms and 1 day"));
                }
                let resolution = p.window / 10;
                let histogram = p.histogram.clone().unwrap_or_default();
                let rolling = RollingHistogram::with_histogram(
                    histogram,
                    p.window,
                    resolution,
                    clock.clone(),
                )
                .map_err(|_| bad("window must be between 10 ms and 1 day"))?;
                Ok(SlowThreshold::Percentile(Percentile {
                    quantile: p.quantile,
                    factor: p.factor,
                    floor: nanos(p.floor),
                    owned: p.histogram.is_none(),
                    rolling,
                    refresh_every: nanos(resolution).max(1_000_000),
                    next_refresh: AtomicU64::new(0),
                    cached: AtomicU64::new(u64::MAX),
                }))
            }
        }
    }

    /// Records a call's duration where the breaker owns the histogram.
    pub(crate) fn observe(&self, d: Duration) {
        if let SlowThreshold::Percentile(p) = self
            && p.owned
        {
            p.rolling.record_duration(d);
        }
    }

    /// The threshold in nanoseconds at `now` (a call at least this long is slow).
    pub(crate) fn threshold(&self, now: Duration) -> u64 {
        match self {
            SlowThreshold::Fixed(n) => *n,
            SlowThreshold::Percentile(p) => {
                let now = nanos(now);
                // Relaxed: elects one refresher (module docs).
                let due = p.next_refresh.load(Ordering::Relaxed);
                // Relaxed CAS: only elects the refresher; the threshold it computes is stored
                // and read as a self-contained number.
                if now >= due
                    && p.next_refresh
                        .compare_exchange(
                            due,
                            now.saturating_add(p.refresh_every),
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    let snap = p.rolling.snapshot();
                    let t = if snap.count() == 0 {
                        u64::MAX
                    } else {
                        let v = snap.value_at_quantile(p.quantile) as f64 * p.factor;
                        // `as` saturates a float into u64.
                        (v.ceil() as u64).max(p.floor)
                    };
                    // Relaxed: a self-contained number (module docs).
                    p.cached.store(t, Ordering::Relaxed);
                    return t;
                }
                // Relaxed: as above.
                p.cached.load(Ordering::Relaxed)
            }
        }
    }
}
