//! lift's timeout calculators: adaptive (method, parameters, body), priority, load-based.
#![forbid(unsafe_code)]

use std::fmt;
use std::time::Duration;

use super::{Calculated, Calculation, Method, Priority, RequestInfo, TimeoutBuildError};
use crate::counter::{FloatGauge, Gauge};

/// Multiplies a duration by a factor, saturating at [`Duration::MAX`] and rounding to the
/// nearest nanosecond. A factor that is NaN, zero or negative gives zero (builders reject such
/// factors, so weir's calculators never pass one).
pub(crate) fn scale(d: Duration, factor: f64) -> Duration {
    if factor == 1.0 {
        return d;
    }
    let nanos = (d.as_nanos() as f64 * factor).round();
    if nanos.is_nan() || nanos <= 0.0 {
        return Duration::ZERO;
    }
    // `as` saturates at u128::MAX (and maps +inf there).
    let nanos = nanos as u128;
    match u64::try_from(nanos / 1_000_000_000) {
        Ok(secs) => Duration::new(secs, (nanos % 1_000_000_000) as u32),
        Err(_) => Duration::MAX,
    }
}

/// A multiplier must be finite and positive.
pub(crate) fn check_factor(name: &'static str, value: f64) -> Result<f64, TimeoutBuildError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(TimeoutBuildError::InvalidFactor { name, value })
    }
}

/// A weight or threshold must be finite, and a weight not negative.
fn check_weight(name: &'static str, value: f64) -> Result<f64, TimeoutBuildError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(TimeoutBuildError::InvalidFactor { name, value })
    }
}

fn check_threshold(name: &'static str, value: f64) -> Result<f64, TimeoutBuildError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(TimeoutBuildError::InvalidFactor { name, value })
    }
}

/// Computes a timeout for a request: the *dynamic* level of a
/// [`TimeoutPolicy`](super::TimeoutPolicy)'s precedence.
///
/// Returning `None` (or a zero timeout) means "no opinion": the policy falls through to the
/// tenant, operation and default timeouts, as lift does when its calculator returns 0.
pub trait TimeoutCalculator: Send + Sync + fmt::Debug {
    /// The timeout for `request`, and how it was computed.
    fn calculate(&self, request: &RequestInfo<'_>) -> Option<Calculation>;

    /// Called by the policy for each completed request (for calculators that learn from
    /// latencies). The default does nothing.
    fn observe(&self, elapsed: Duration, timed_out: bool) {
        let _ = (elapsed, timed_out);
    }
}

// === AdaptiveCalculator ===

/// lift's adaptive calculator: the base timeout scaled by the method (GET / 2, POST and PUT × 2,
/// DELETE × 3, others × 1), by × 2 when the request has more than 5 parameters, and by × 3 when
/// its body is larger than 1 MiB. The factors multiply.
///
/// ```
/// use std::time::Duration;
/// use weir::policy::timeout::{AdaptiveCalculator, Method, RequestInfo, TimeoutCalculator};
///
/// let calc = AdaptiveCalculator::new(Duration::from_secs(10));
/// let get = RequestInfo::new(Method::Get);
/// assert_eq!(calc.calculate(&get).unwrap().timeout, Duration::from_secs(5));
/// let big_post = RequestInfo::new(Method::Post).params(6).body_bytes(2 << 20);
/// assert_eq!(calc.calculate(&big_post).unwrap().timeout, Duration::from_secs(120)); // × 2 × 2 × 3
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveCalculator {
    base: Duration,
    get: f64,
    post_put: f64,
    delete: f64,
    params_threshold: usize,
    params_factor: f64,
    body_threshold: u64,
    body_factor: f64,
}

impl AdaptiveCalculator {
    /// lift's factors around `base`.
    pub fn new(base: Duration) -> AdaptiveCalculator {
        AdaptiveCalculator {
            base,
            get: 0.5,
            post_put: 2.0,
            delete: 3.0,
            params_threshold: 5,
            params_factor: 2.0,
            body_threshold: 1 << 20,
            body_factor: 3.0,
        }
    }

    /// Sets the factor for GET (default 0.5), for POST and PUT (2), and for DELETE (3).
    ///
    /// # Errors
    ///
    /// [`TimeoutBuildError::InvalidFactor`] unless every factor is finite and positive.
    pub fn with_method_factors(
        mut self,
        get: f64,
        post_put: f64,
        delete: f64,
    ) -> Result<Self, TimeoutBuildError> {
        self.get = check_factor("get", get)?;
        self.post_put = check_factor("post_put", post_put)?;
        self.delete = check_factor("delete", delete)?;
        Ok(self)
    }

    /// Sets the factor applied when a request has more than `threshold` parameters (default: × 2
    /// above 5).
    ///
    /// # Errors
    ///
    /// [`TimeoutBuildError::InvalidFactor`] unless `factor` is finite and positive.
    pub fn with_params(mut self, threshold: usize, factor: f64) -> Result<Self, TimeoutBuildError> {
        self.params_threshold = threshold;
        self.params_factor = check_factor("params", factor)?;
        Ok(self)
    }

    /// Sets the factor applied when a request's body is larger than `threshold` bytes (default:
    /// × 3 above 1 MiB).
    ///
    /// # Errors
    ///
    /// [`TimeoutBuildError::InvalidFactor`] unless `factor` is finite and positive.
    pub fn with_body(mut self, threshold: u64, factor: f64) -> Result<Self, TimeoutBuildError> {
        self.body_threshold = threshold;
        self.body_factor = check_factor("body", factor)?;
        Ok(self)
    }
}

impl TimeoutCalculator for AdaptiveCalculator {
    fn calculate(&self, r: &RequestInfo<'_>) -> Option<Calculation> {
        let method_factor = match r.method {
            Method::Get => self.get,
            Method::Post | Method::Put => self.post_put,
            Method::Delete => self.delete,
            _ => 1.0,
        };
        let params_factor = if r.params > self.params_threshold {
            self.params_factor
        } else {
            1.0
        };
        let body_factor = if r.body_bytes > self.body_threshold {
            self.body_factor
        } else {
            1.0
        };
        let factor = method_factor * params_factor * body_factor;
        Some(Calculation {
            timeout: scale(self.base, factor),
            how: Calculated::Adaptive {
                base: self.base,
                method_factor,
                params_factor,
                body_factor,
            },
        })
    }
}

// === PriorityCalculator ===

/// lift's priority calculator: the base timeout × 5 for critical requests, × 2 for high, × 1 for
/// normal, / 2 for low and / 4 for background.
///
/// ```
/// use std::time::Duration;
/// use weir::policy::timeout::{Method, Priority, PriorityCalculator, RequestInfo, TimeoutCalculator};
///
/// let calc = PriorityCalculator::new(Duration::from_secs(4));
/// let r = RequestInfo::new(Method::Get).priority(Priority::Background);
/// assert_eq!(calc.calculate(&r).unwrap().timeout, Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PriorityCalculator {
    base: Duration,
    factors: [f64; 5],
}

fn priority_index(p: Priority) -> usize {
    match p {
        Priority::Critical => 0,
        Priority::High => 1,
        Priority::Normal => 2,
        Priority::Low => 3,
        Priority::Background => 4,
    }
}

impl PriorityCalculator {
    /// lift's factors around `base`.
    pub fn new(base: Duration) -> PriorityCalculator {
        PriorityCalculator {
            base,
            factors: [5.0, 2.0, 1.0, 0.5, 0.25],
        }
    }

    /// Sets the factor for one priority.
    ///
    /// # Errors
    ///
    /// [`TimeoutBuildError::InvalidFactor`] unless `factor` is finite and positive.
    pub fn with_factor(
        mut self,
        priority: Priority,
        factor: f64,
    ) -> Result<Self, TimeoutBuildError> {
        self.factors[priority_index(priority)] = check_factor("priority", factor)?;
        Ok(self)
    }
}

impl TimeoutCalculator for PriorityCalculator {
    fn calculate(&self, r: &RequestInfo<'_>) -> Option<Calculation> {
        let factor = self.factors[priority_index(r.priority)];
        Some(Calculation {
            timeout: scale(self.base, factor),
            how: Calculated::Priority {
                base: self.base,
                priority: r.priority,
                factor,
            },
        })
    }
}

// === LoadCalculator ===

/// A reading of system load, for [`LoadCalculator`]. A NaN signal counts as "not over its
/// threshold".
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct LoadSignals {
    /// CPU utilisation, 0.0 to 1.0.
    pub cpu: f64,
    /// Memory utilisation, 0.0 to 1.0.
    pub memory: f64,
    /// Requests in flight.
    pub active_requests: u64,
    /// Recent error rate, 0.0 to 1.0.
    pub error_rate: f64,
}

impl LoadSignals {
    /// A reading.
    pub fn new(cpu: f64, memory: f64, active_requests: u64, error_rate: f64) -> LoadSignals {
        LoadSignals {
            cpu,
            memory,
            active_requests,
            error_rate,
        }
    }
}

/// Where a [`LoadCalculator`] reads load from. Implemented for closures, for a constant
/// [`LoadSignals`], and for [`LoadGauges`] (weir gauges another part of the program updates).
pub trait LoadSource: Send + Sync {
    /// The current load.
    fn load(&self) -> LoadSignals;
}

impl<F: Fn() -> LoadSignals + Send + Sync> LoadSource for F {
    fn load(&self) -> LoadSignals {
        self()
    }
}

impl LoadSource for LoadSignals {
    fn load(&self) -> LoadSignals {
        *self
    }
}

/// Load signals held in weir gauges: set them from wherever load is measured (a sampler, the
/// in-flight gauge of a bulkhead, a windowed error rate), and a [`LoadCalculator`] reads them
/// lock-free.
///
/// ```
/// use std::time::Duration;
/// use weir::policy::timeout::{LoadCalculator, LoadGauges, Method, RequestInfo, TimeoutCalculator};
///
/// let gauges = LoadGauges::default();
/// let calc = LoadCalculator::new(Duration::from_secs(10), gauges.clone());
/// gauges.cpu.set(0.95);
/// gauges.error_rate.set(0.2);
/// let c = calc.calculate(&RequestInfo::new(Method::Get)).unwrap();
/// assert_eq!(c.timeout, Duration::from_secs(19)); // × (1 + 0.5 + 0.4)
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct LoadGauges {
    /// CPU utilisation, 0.0 to 1.0.
    pub cpu: FloatGauge,
    /// Memory utilisation, 0.0 to 1.0.
    pub memory: FloatGauge,
    /// Requests in flight (negative reads as 0).
    pub active_requests: Gauge,
    /// Recent error rate, 0.0 to 1.0.
    pub error_rate: FloatGauge,
}

impl LoadSource for LoadGauges {
    fn load(&self) -> LoadSignals {
        LoadSignals {
            cpu: self.cpu.get(),
            memory: self.memory.get(),
            active_requests: u64::try_from(self.active_requests.get()).unwrap_or(0),
            error_rate: self.error_rate.get(),
        }
    }
}

/// lift's load-based calculator: the base timeout times a factor, capped at 5:
///
/// ```text
/// factor = 1 + 0.5 [cpu > 0.8] + 0.3 [memory > 0.8] + 0.2 [active > 100] + 0.4 [error rate > 0.1]
/// ```
pub struct LoadCalculator {
    base: Duration,
    source: Box<dyn LoadSource>,
    cpu: (f64, f64),
    memory: (f64, f64),
    active: (u64, f64),
    errors: (f64, f64),
    cap: f64,
}

impl LoadCalculator {
    /// lift's thresholds, weights and cap around `base`, reading load from `source`.
    pub fn new(base: Duration, source: impl LoadSource + 'static) -> LoadCalculator {
        LoadCalculator {
            base,
            source: Box::new(source),
            cpu: (0.8, 0.5),
            memory: (0.8, 0.3),
            active: (100, 0.2),
            errors: (0.1, 0.4),
            cap: 5.0,
        }
    }

    /// Sets the thresholds above which each signal adds its weight (defaults: cpu 0.8, memory
    /// 0.8, active 100, error rate 0.1).
    ///
    /// # Errors
    ///
    /// [`TimeoutBuildError::InvalidFactor`] for a threshold that is NaN or infinite.
    pub fn with_thresholds(
        mut self,
        cpu: f64,
        memory: f64,
        active: u64,
        error_rate: f64,
    ) -> Result<Self, TimeoutBuildError> {
        self.cpu.0 = check_threshold("cpu_threshold", cpu)?;
        self.memory.0 = check_threshold("memory_threshold", memory)?;
        self.active.0 = active;
        self.errors.0 = check_threshold("error_rate_threshold", error_rate)?;
        Ok(self)
    }

    /// Sets the weight each signal adds to the factor (defaults 0.5, 0.3, 0.2, 0.4).
    ///
    /// # Errors
    ///
    /// [`TimeoutBuildError::InvalidFactor`] for a weight that is NaN, infinite or negative.
    pub fn with_weights(
        mut self,
        cpu: f64,
        memory: f64,
        active: f64,
        error_rate: f64,
    ) -> Result<Self, TimeoutBuildError> {
        self.cpu.1 = check_weight("cpu_weight", cpu)?;
        self.memory.1 = check_weight("memory_weight", memory)?;
        self.active.1 = check_weight("active_weight", active)?;
        self.errors.1 = check_weight("error_rate_weight", error_rate)?;
        Ok(self)
    }

    /// Sets the cap on the factor (default 5).
    ///
    /// # Errors
    ///
    /// [`TimeoutBuildError::InvalidFactor`] unless `cap` is finite and at least 1.
    pub fn with_cap(mut self, cap: f64) -> Result<Self, TimeoutBuildError> {
        if !(cap.is_finite() && cap >= 1.0) {
            return Err(TimeoutBuildError::InvalidFactor {
                name: "cap",
                value: cap,
            });
        }
        self.cap = cap;
        Ok(self)
    }

    /// The factor for a reading, and whether the cap bit.
    pub fn factor(&self, s: &LoadSignals) -> (f64, bool) {
        let mut f = 1.0;
        // `>` is false for NaN: a NaN signal adds nothing.
        if s.cpu > self.cpu.0 {
            f += self.cpu.1;
        }
        if s.memory > self.memory.0 {
            f += self.memory.1;
        }
        if s.active_requests > self.active.0 {
            f += self.active.1;
        }
        if s.error_rate > self.errors.0 {
            f += self.errors.1;
        }
        if f > self.cap {
            (self.cap, true)
        } else {
            (f, false)
        }
    }
}

impl TimeoutCalculator for LoadCalculator {
    fn calculate(&self, _r: &RequestInfo<'_>) -> Option<Calculation> {
        let signals = self.source.load();
        let (factor, capped) = self.factor(&signals);
        Some(Calculation {
            timeout: scale(self.base, factor),
            how: Calculated::Load {
                base: self.base,
                signals,
                factor,
                capped,
            },
        })
    }
}

impl fmt::Debug for LoadCalculator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadCalculator")
            .field("base", &self.base)
            .field("cpu", &self.cpu)
            .field("memory", &self.memory)
            .field("active", &self.active)
            .field("errors", &self.errors)
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn scale_saturates_and_rounds() {
        assert_eq!(scale(Duration::from_secs(30), 0.5), Duration::from_secs(15));
        assert_eq!(
            scale(Duration::from_millis(100), 3.0),
            Duration::from_millis(300)
        );
        assert_eq!(scale(Duration::MAX, 2.0), Duration::MAX);
        assert_eq!(scale(Duration::from_secs(1), f64::NAN), Duration::ZERO);
        assert_eq!(scale(Duration::from_secs(1), -1.0), Duration::ZERO);
        assert_eq!(scale(Duration::from_secs(1), f64::INFINITY), Duration::MAX);
        assert_eq!(scale(Duration::from_nanos(3), 0.5), Duration::from_nanos(2));
    }

    #[test]
    fn load_factor_matches_lift() {
        let c = LoadCalculator::new(Duration::from_secs(1), LoadSignals::default());
        assert_eq!(
            c.factor(&LoadSignals::new(0.9, 0.9, 101, 0.2)),
            (2.4, false)
        );
        assert_eq!(
            c.factor(&LoadSignals::new(0.8, 0.8, 100, 0.1)),
            (1.0, false)
        );
        assert_eq!(
            c.factor(&LoadSignals::new(f64::NAN, f64::NAN, 0, f64::NAN)),
            (1.0, false)
        );
        let c = c.with_weights(3.0, 3.0, 0.0, 0.0).unwrap();
        assert_eq!(c.factor(&LoadSignals::new(0.9, 0.9, 0, 0.0)), (5.0, true));
    }
}
