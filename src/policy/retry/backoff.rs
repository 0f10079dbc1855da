//! Backoff: how long to wait before each retry.
//!
//! The rules are documented on [`Backoff`].
#![forbid(unsafe_code)]

use std::fmt;
use std::time::Duration;

use crate::policy::Rng;

/// lift's default first delay: 100 ms.
pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(100);
/// lift's default largest (pre-jitter) delay: 30 s.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);
/// lift's default exponential multiplier: 2.0.
pub const DEFAULT_MULTIPLIER: f64 = 2.0;
/// lift's default `JitterRange`: ±10%.
pub const DEFAULT_JITTER_FRACTION: f64 = 0.1;
/// The multiplier of decorrelated jitter in AWS's description of it: 3.0.
pub const DEFAULT_DECORRELATED_MULTIPLIER: f64 = 3.0;

/// How the base delay grows with the retry number `n` (1 for the first retry).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Strategy {
    /// `initial` every time.
    Fixed,
    /// `n × initial`.
    Linear,
    /// `initial × multiplier^(n-1)` (lift's default, with multiplier 2.0).
    Exponential {
        /// Growth per retry; finite and greater than zero.
        multiplier: f64,
    },
    /// "Decorrelated jitter": `uniform[initial, previous × multiplier)`, where `previous` is the
    /// delay before the previous retry (`initial` before the first). The delay is random by
    /// itself; a [`Jitter`] other than `None` is still applied on top of it.
    DecorrelatedJitter {
        /// Upper bound of the next delay as a multiple of the previous one; finite and at
        /// least 1 (AWS uses 3).
        multiplier: f64,
    },
}

impl Default for Strategy {
    /// Exponential with lift's multiplier 2.0.
    fn default() -> Strategy {
        Strategy::Exponential {
            multiplier: DEFAULT_MULTIPLIER,
        }
    }
}

/// Randomization applied to the (clamped) base delay `d`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Jitter {
    /// `d` (lift's default: its `Jitter` flag is off unless set).
    #[default]
    None,
    /// `uniform[0, d)` ("full jitter").
    Full,
    /// `d/2 + uniform[0, d/2)` ("equal jitter").
    Equal,
    /// `d × (1 + fraction × uniform[-1, 1))`: lift's `JitterRange` (0.1 by default). A result
    /// below zero (possible only with a fraction above 1) becomes 1 ms, as in lift.
    Proportional(f64),
}

impl Jitter {
    /// lift's jitter when enabled: ±10%.
    pub const LIFT: Jitter = Jitter::Proportional(DEFAULT_JITTER_FRACTION);
}

/// Computes retry delays.
///
/// A delay is computed in three steps, in lift's order:
///
/// 1. the strategy's base delay for retry `n` (`n = 1` is the first retry, after the first
///    failed attempt): fixed `initial`; linear `n × initial`; exponential
///    `initial × multiplier^(n-1)`; decorrelated jitter `uniform[initial, previous × multiplier)`
///    (with `previous = initial` before the first retry);
/// 2. clamped to `max`;
/// 3. jittered: none; full, `uniform[0, d)`; equal, `d/2 + uniform[0, d/2)`; or proportional
///    (lift's), `d × (1 + f × uniform[-1, 1))`, where a negative result becomes 1 ms. Jitter is
///    applied after the clamp, as lift does, so proportional jitter can exceed `max` by up to
///    the fraction `f`.
///
/// Durations are computed in whole nanoseconds (saturating at `u64::MAX` ns, about 584 years);
/// random numbers come from the caller's [`Rng`], so a seeded generator gives repeatable delays.
///
/// ```
/// use std::time::Duration;
/// use weir::policy::Rng;
/// use weir::policy::retry::{Backoff, Jitter, Strategy};
///
/// let backoff = Backoff::builder()
///     .strategy(Strategy::Exponential { multiplier: 2.0 })
///     .initial(Duration::from_millis(100))
///     .max(Duration::from_secs(1))
///     .jitter(Jitter::None)
///     .build()?;
/// let rng = Rng::with_seed(1);
/// let prev = Duration::ZERO;
/// assert_eq!(backoff.delay(1, prev, &rng), Duration::from_millis(100));
/// assert_eq!(backoff.delay(3, prev, &rng), Duration::from_millis(400));
/// assert_eq!(backoff.delay(10, prev, &rng), Duration::from_secs(1)); // clamped
/// # Ok::<(), weir::policy::retry::BackoffError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    strategy: Strategy,
    initial: Duration,
    max: Duration,
    jitter: Jitter,
}

impl Default for Backoff {
    /// lift's defaults: exponential ×2 from 100 ms, at most 30 s, no jitter.
    fn default() -> Backoff {
        Backoff {
            strategy: Strategy::default(),
            initial: DEFAULT_INITIAL_DELAY,
            max: DEFAULT_MAX_DELAY,
            jitter: Jitter::None,
        }
    }
}

/// Builds a [`Backoff`]; starts from lift's defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackoffBuilder {
    inner: Backoff,
}

impl BackoffBuilder {
    /// The growth strategy (default exponential ×2).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.inner.strategy = strategy;
        self
    }
    /// The first delay (default 100 ms). Zero is allowed (immediate retries).
    pub fn initial(mut self, initial: Duration) -> Self {
        self.inner.initial = initial;
        self
    }
    /// The largest base delay (default 30 s); must be at least `initial`.
    pub fn max(mut self, max: Duration) -> Self {
        self.inner.max = max;
        self
    }
    /// The jitter (default none).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.inner.jitter = jitter;
        self
    }
    /// Checks the settings.
    ///
    /// # Errors
    /// [`BackoffError`] names the first invalid setting.
    pub fn build(self) -> Result<Backoff, BackoffError> {
        let b = self.inner;
        match b.strategy {
            Strategy::Exponential { multiplier }
                if !(multiplier.is_finite() && multiplier > 0.0) =>
            {
                return Err(BackoffError::InvalidMultiplier { multiplier });
            }
            Strategy::DecorrelatedJitter { multiplier }
                if !(multiplier.is_finite() && multiplier >= 1.0) =>
            {
                return Err(BackoffError::InvalidMultiplier { multiplier });
            }
            _ => {}
        }
        if let Jitter::Proportional(fraction) = b.jitter
            && !(fraction.is_finite() && fraction >= 0.0)
        {
            return Err(BackoffError::InvalidJitterFraction { fraction });
        }
        if b.max < b.initial {
            return Err(BackoffError::MaxBelowInitial {
                initial: b.initial,
                max: b.max,
            });
        }
        Ok(b)
    }
}

/// Converts a non-negative float number of nanoseconds to whole nanoseconds: NaN and negative
/// values give 0, values beyond `u64::MAX` saturate.
fn f64_to_nanos(x: f64) -> u64 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= u64::MAX as f64 {
        u64::MAX
    } else {
        x as u64
    }
}

fn to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Backoff {
    /// A builder starting from lift's defaults.
    pub fn builder() -> BackoffBuilder {
        BackoffBuilder::default()
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }
    /// The first delay.
    pub fn initial(&self) -> Duration {
        self.initial
    }
    /// The largest base delay.
    pub fn max(&self) -> Duration {
        self.max
    }
    /// The jitter.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The delay before retry `retry` (1 for the first retry; 0 is treated as 1), given the
    /// delay used before the previous retry (only decorrelated jitter reads it; pass
    /// `Duration::ZERO` before the first retry). Never panics; see the module docs.
    pub fn delay(&self, retry: u32, previous: Duration, rng: &Rng) -> Duration {
        let n = retry.max(1);
        let initial = to_nanos(self.initial);
        let max = to_nanos(self.max);
        let base = match self.strategy {
            Strategy::Fixed => initial,
            Strategy::Linear => initial.saturating_mul(u64::from(n)),
            Strategy::Exponential { multiplier } => {
                if initial == 0 {
                    0
                } else {
                    // exponent n-1 fits i32 for every n below 2^31; beyond, the result has
                    // long saturated (or vanished, for multipliers below 1).
                    let e = i32::try_from(n - 1).unwrap_or(i32::MAX);
                    f64_to_nanos(initial as f64 * multiplier.powi(e))
                }
            }
            Strategy::DecorrelatedJitter { multiplier } => {
                let prev = match to_nanos(previous) {
                    0 => initial,
                    p => p,
                };
                // Capped at `max` (the result is clamped there anyway), so never infinite.
                let hi = (prev as f64 * multiplier)
                    .min(max as f64)
                    .max(initial as f64);
                let lo = initial as f64;
                f64_to_nanos(lo + (hi - lo) * rng.next_f64())
            }
        };
        let d = base.min(max);
        let jittered = match self.jitter {
            Jitter::None => d,
            Jitter::Full => f64_to_nanos(d as f64 * rng.next_f64()),
            Jitter::Equal => {
                let half = d / 2;
                half + f64_to_nanos((d - half) as f64 * rng.next_f64())
            }
            Jitter::Proportional(fraction) => {
                let u = rng.next_f64() * 2.0 - 1.0; // [-1, 1)
                let x = d as f64 * (1.0 + fraction * u);
                if x < 0.0 {
                    return Duration::from_millis(1);
                }
                f64_to_nanos(x)
            }
        };
        Duration::from_nanos(jittered)
    }
}

/// A [`Backoff`] setting was invalid.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum BackoffError {
    /// An exponential multiplier must be finite and above 0; a decorrelated-jitter multiplier
    /// finite and at least 1. Use 2.0 (exponential) or 3.0 (decorrelated).
    InvalidMultiplier {
        /// The rejected multiplier.
        multiplier: f64,
    },
    /// A proportional jitter fraction must be finite and at least 0 (0.1 is lift's ±10%).
    InvalidJitterFraction {
        /// The rejected fraction.
        fraction: f64,
    },
    /// The largest delay is below the first delay; raise `max` or lower `initial`.
    MaxBelowInitial {
        /// The requested first delay.
        initial: Duration,
        /// The requested largest delay.
        max: Duration,
    },
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BackoffError::InvalidMultiplier { multiplier } => write!(
                f,
                "invalid backoff multiplier {multiplier}: exponential needs a finite value above 0, decorrelated jitter at least 1"
            ),
            BackoffError::InvalidJitterFraction { fraction } => write!(
                f,
                "invalid jitter fraction {fraction}: must be finite and at least 0"
            ),
            BackoffError::MaxBelowInitial { initial, max } => write!(
                f,
                "maximum delay {max:?} is below the initial delay {initial:?}"
            ),
        }
    }
}

impl std::error::Error for BackoffError {}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn b(strategy: Strategy, jitter: Jitter) -> Backoff {
        Backoff::builder()
            .strategy(strategy)
            .jitter(jitter)
            .build()
            .unwrap()
    }

    #[test]
    fn lift_defaults() {
        let d = Backoff::default();
        let r = Rng::with_seed(0);
        assert_eq!(d.delay(1, Duration::ZERO, &r), 100 * MS);
        assert_eq!(d.delay(2, Duration::ZERO, &r), 200 * MS);
        assert_eq!(d.delay(0, Duration::ZERO, &r), 100 * MS);
        assert_eq!(
            d.delay(u32::MAX, Duration::ZERO, &r),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn strategies() {
        let r = Rng::with_seed(0);
        let fixed = b(Strategy::Fixed, Jitter::None);
        let linear = b(Strategy::Linear, Jitter::None);
        for n in 1..10 {
            assert_eq!(fixed.delay(n, Duration::ZERO, &r), 100 * MS);
            assert_eq!(linear.delay(n, Duration::ZERO, &r), 100 * MS * n);
        }
        assert_eq!(
            linear.delay(u32::MAX, Duration::ZERO, &r),
            Duration::from_secs(30)
        );
        let shrink = b(Strategy::Exponential { multiplier: 0.5 }, Jitter::None);
        assert_eq!(shrink.delay(2, Duration::ZERO, &r), 50 * MS);
        assert_eq!(shrink.delay(u32::MAX, Duration::ZERO, &r), Duration::ZERO);
    }

    #[test]
    fn decorrelated_bounds() {
        let r = Rng::with_seed(3);
        let d = b(
            Strategy::DecorrelatedJitter { multiplier: 3.0 },
            Jitter::None,
        );
        let mut prev = Duration::ZERO;
        for n in 1..200 {
            let next = d.delay(n, prev, &r);
            let p = if prev.is_zero() { 100 * MS } else { prev };
            assert!(next >= 100 * MS, "{next:?}");
            assert!(
                next <= (p * 3).min(Duration::from_secs(30)),
                "{next:?} after {p:?}"
            );
            prev = next;
        }
    }

    #[test]
    fn jitters_stay_in_bounds() {
        let r = Rng::with_seed(9);
        let full = b(Strategy::Fixed, Jitter::Full);
        let equal = b(Strategy::Fixed, Jitter::Equal);
        let lift = b(Strategy::Fixed, Jitter::LIFT);
        for _ in 0..1000 {
            assert!(full.delay(1, Duration::ZERO, &r) < 100 * MS);
            let e = equal.delay(1, Duration::ZERO, &r);
            assert!(e >= 50 * MS && e < 100 * MS);
            let l = lift.delay(1, Duration::ZERO, &r);
            assert!(l >= 90 * MS && l < 110 * MS, "{l:?}");
        }
        // Clamp, then jitter: lift's delays can exceed max by the fraction.
        let big = Backoff::builder()
            .strategy(Strategy::Fixed)
            .initial(Duration::from_secs(30))
            .jitter(Jitter::LIFT)
            .build()
            .unwrap();
        let over = (0..1000)
            .map(|_| big.delay(1, Duration::ZERO, &r))
            .max()
            .unwrap();
        assert!(over > Duration::from_secs(30) && over < Duration::from_secs(33));
        // A fraction above 1 can go negative: 1 ms then.
        let wild = b(Strategy::Fixed, Jitter::Proportional(50.0));
        let mut saw_floor = false;
        for _ in 0..1000 {
            let d = wild.delay(1, Duration::ZERO, &r);
            saw_floor |= d == MS;
        }
        assert!(saw_floor);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        for m in [f64::NAN, f64::INFINITY, 0.0, -1.0] {
            assert!(matches!(
                Backoff::builder()
                    .strategy(Strategy::Exponential { multiplier: m })
                    .build(),
                Err(BackoffError::InvalidMultiplier { .. })
            ));
        }
        assert!(
            Backoff::builder()
                .strategy(Strategy::DecorrelatedJitter { multiplier: 0.5 })
                .build()
                .is_err()
        );
        for f in [f64::NAN, -0.1, f64::INFINITY] {
            let e = Backoff::builder()
                .jitter(Jitter::Proportional(f))
                .build()
                .unwrap_err();
            assert!(!e.to_string().is_empty());
        }
        let e = Backoff::builder()
            .initial(Duration::from_secs(2))
            .max(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert_eq!(
            e,
            BackoffError::MaxBelowInitial {
                initial: Duration::from_secs(2),
                max: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn huge_durations_saturate() {
        let r = Rng::with_seed(1);
        let b = Backoff::builder()
            .initial(Duration::MAX)
            .max(Duration::MAX)
            .strategy(Strategy::Linear)
            .build()
            .unwrap();
        assert_eq!(
            b.delay(5, Duration::MAX, &r),
            Duration::from_nanos(u64::MAX)
        );
        let d = Backoff::builder()
            .initial(Duration::from_secs(1))
            .max(Duration::MAX)
            .strategy(Strategy::DecorrelatedJitter { multiplier: 3.0 })
            .jitter(Jitter::Full)
            .build()
            .unwrap();
        let _ = d.delay(7, Duration::MAX, &r);
        // A huge multiplier on a huge previous delay stays within [initial, max].
        let wide = Backoff::builder()
            .initial(Duration::from_secs(1))
            .max(Duration::from_secs(10))
            .strategy(Strategy::DecorrelatedJitter { multiplier: 1e300 })
            .build()
            .unwrap();
        for _ in 0..100 {
            let x = wide.delay(3, Duration::MAX, &r);
            assert!(x >= Duration::from_secs(1) && x <= Duration::from_secs(10));
        }
    }
}
