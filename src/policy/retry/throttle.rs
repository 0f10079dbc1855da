//! gRPC's retry throttling: a token count that failures drain and successes refill; retries
//! are allowed while it stays above half.
//!
//! The rules are documented on [`RetryThrottle`].
#![forbid(unsafe_code)]

use std::fmt;

use crossbeam_utils::CachePadded;

use super::budget::{FailureClass, RetryBudget, Withdrawal};
use crate::sync::{AtomicU64, Ordering};

/// gRPC's largest `max_tokens`.
pub const GRPC_MAX_TOKENS: u32 = 1000;
/// The largest `max_tokens` a [`RetryThrottle`] accepts.
pub const MAX_THROTTLE_TOKENS: u32 = 1_000_000;
const MILLI: u64 = 1000;

/// Builds a [`RetryThrottle`] (defaults: 100 tokens, ratio 0.1).
#[derive(Clone, Copy, Debug)]
pub struct RetryThrottleBuilder {
    max_tokens: u32,
    token_ratio: f64,
}

impl RetryThrottleBuilder {
    /// The token count's ceiling and starting value (`1..=1_000_000`; gRPC allows up to 1000).
    pub fn max_tokens(mut self, max: u32) -> Self {
        self.max_tokens = max;
        self
    }
    /// Tokens a success adds (finite, above 0, at most `max_tokens`), rounded to the nearest
    /// thousandth (at least 0.001).
    pub fn token_ratio(mut self, ratio: f64) -> Self {
        self.token_ratio = ratio;
        self
    }
    /// Checks the settings and builds the throttle.
    ///
    /// # Errors
    /// [`RetryThrottleError`] names the first invalid setting.
    pub fn build(self) -> Result<RetryThrottle, RetryThrottleError> {
        if self.max_tokens == 0 || self.max_tokens > MAX_THROTTLE_TOKENS {
            return Err(RetryThrottleError::MaxTokens {
                max_tokens: self.max_tokens,
            });
        }
        let r = self.token_ratio;
        if !(r.is_finite() && r > 0.0 && r <= f64::from(self.max_tokens)) {
            return Err(RetryThrottleError::TokenRatio { ratio: r });
        }
        // At most 1e9: exact.
        let ratio = ((r * MILLI as f64).round() as u64).max(1);
        let max = u64::from(self.max_tokens) * MILLI;
        Ok(RetryThrottle {
            tokens: CachePadded::new(AtomicU64::new(max)),
            max,
            threshold: max / 2,
            ratio,
        })
    }
}

/// gRPC-style retry throttling.
///
/// # Semantics (gRPC's A6 design, in milli-tokens)
/// Tokens are kept in thousandths (gRPC's `token_ratio` has three decimals), starting at
/// `max_tokens`:
/// - a retryable failure costs one token, `tokens = max(tokens - 1000, 0)` (milli-tokens);
/// - it may be retried iff, after that charge, `tokens > max_tokens × 1000 / 2`;
/// - a success adds the token ratio, `tokens = min(tokens + ratio × 1000, max_tokens × 1000)`.
///
/// The charge and the decision come from one compare-and-swap, so the decision is the one a
/// sequence of the same calls would give: with `max_tokens = 100` and only failures, exactly
/// 49 retries are allowed, on any number of threads.
///
/// # Orderings
/// The token count is one `AtomicU64` changed only by compare-and-swap loops (`fetch_update`),
/// all `Relaxed`: the count publishes no other memory, and a read-modify-write always acts on
/// the latest value, which is all exactness needs.
///
/// ```
/// use weir::policy::retry::RetryThrottle;
///
/// let t = RetryThrottle::builder().max_tokens(10).token_ratio(0.5).build()?;
/// let allowed = (0..10).filter(|_| t.try_withdraw().is_withdrawn()).count();
/// assert_eq!(allowed, 4); // 9, 8, 7, 6 tokens left are above 5; 5 is not
/// t.on_success();
/// t.on_success();
/// assert_eq!(t.milli_tokens(), 1000);
/// # Ok::<(), weir::policy::retry::RetryThrottleError>(())
/// ```
pub struct RetryThrottle {
    /// Milli-tokens, `0..=max`. On its own cache line(s): every outcome writes it, and the
    /// settings below, read with it, would otherwise be evicted from other threads' caches
    /// by each write.
    tokens: CachePadded<AtomicU64>,
    max: u64,
    threshold: u64,
    ratio: u64,
}

impl fmt::Debug for RetryThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryThrottle")
            .field("milli_tokens", &self.milli_tokens())
            .field("max_milli_tokens", &self.max)
            .field("ratio_milli_tokens", &self.ratio)
            .finish()
    }
}

impl RetryThrottle {
    /// A builder (defaults: 100 tokens, ratio 0.1).
    pub fn builder() -> RetryThrottleBuilder {
        RetryThrottleBuilder {
            max_tokens: 100,
            token_ratio: 0.1,
        }
    }

    /// The token count now, in thousandths.
    pub fn milli_tokens(&self) -> u64 {
        // Relaxed: see the module's Orderings.
        self.tokens.load(Ordering::Relaxed)
    }
    /// The ceiling, in thousandths.
    pub fn max_milli_tokens(&self) -> u64 {
        self.max
    }
    /// Retries are allowed while the count is above this many thousandths (half the ceiling).
    pub fn threshold_milli_tokens(&self) -> u64 {
        self.threshold
    }
    /// Thousandths of a token a success adds.
    pub fn ratio_milli_tokens(&self) -> u64 {
        self.ratio
    }

    /// Charges one token, saturating at 0; returns (before, after).
    fn charge(&self) -> (u64, u64) {
        // Relaxed: see the module's Orderings.
        let r = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(MILLI))
            });
        let before = match r {
            Ok(t) | Err(t) => t,
        };
        (before, before.saturating_sub(MILLI))
    }

    /// A retryable failure: charges one token and, in the same compare-and-swap, decides
    /// whether it may be retried (the count after the charge is above half the ceiling).
    pub fn try_withdraw(&self) -> Withdrawal {
        let (before, after) = self.charge();
        let cost = before - after;
        if after > self.threshold {
            Withdrawal::Withdrawn {
                cost,
                balance: after as i64,
            }
        } else {
            Withdrawal::Refused {
                cost,
                balance: after as i64,
                required: self.threshold as i64 + 1,
            }
        }
    }

    /// A retryable failure that will not be retried: charges one token.
    pub fn record_failure(&self) {
        let _ = self.charge();
    }

    /// A success: adds the token ratio, up to the ceiling. At the ceiling (a healthy service,
    /// where nearly every request succeeds) it only reads the count: successes on different
    /// threads then share the line instead of taking turns writing it.
    pub fn on_success(&self) {
        // Relaxed: see the module's Orderings. `None` (nothing to add) ends it without a
        // write; the value read is a count like any other.
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                let next = (t + self.ratio).min(self.max);
                (next != t).then_some(next)
            });
    }
}

impl RetryBudget for RetryThrottle {
    /// Requests deposit nothing: only outcomes move the count.
    fn deposit(&self) {}
    fn try_withdraw(&self, _class: FailureClass) -> Withdrawal {
        RetryThrottle::try_withdraw(self)
    }
    fn charge_failure(&self, _class: FailureClass) {
        self.record_failure();
    }
    fn on_success(&self, _last_withdrawal: u64) {
        RetryThrottle::on_success(self);
    }
}

/// A [`RetryThrottle`] setting was invalid.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum RetryThrottleError {
    /// `max_tokens` must be in `1..=1_000_000` (gRPC allows up to 1000).
    MaxTokens {
        /// The rejected value.
        max_tokens: u32,
    },
    /// The token ratio must be finite, above 0 and at most `max_tokens`.
    TokenRatio {
        /// The rejected value.
        ratio: f64,
    },
}

impl fmt::Display for RetryThrottleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RetryThrottleError::MaxTokens { max_tokens } => write!(
                f,
                "retry throttle max_tokens must be in 1..=1000000, got {max_tokens}"
            ),
            RetryThrottleError::TokenRatio { ratio } => write!(
                f,
                "retry throttle token ratio must be finite, above 0 and at most max_tokens, got {ratio}"
            ),
        }
    }
}

impl std::error::Error for RetryThrottleError {}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn grpc_semantics() {
        let t = RetryThrottle::builder().build().unwrap();
        assert_eq!(t.max_milli_tokens(), 100_000);
        assert_eq!(t.threshold_milli_tokens(), 50_000);
        assert_eq!(t.ratio_milli_tokens(), 100);
        let allowed = (0..200).filter(|_| t.try_withdraw().is_withdrawn()).count();
        assert_eq!(allowed, 49);
        assert_eq!(t.milli_tokens(), 0);
        assert_eq!(
            t.try_withdraw(),
            Withdrawal::Refused {
                cost: 0,
                balance: 0,
                required: 50_001
            }
        );
        for _ in 0..2000 {
            t.on_success();
        }
        assert_eq!(t.milli_tokens(), 100_000);
        t.record_failure();
        assert_eq!(t.milli_tokens(), 99_000);
        assert!(format!("{t:?}").contains("99000"));
    }

    #[test]
    fn invalid_settings() {
        assert_eq!(
            RetryThrottle::builder().max_tokens(0).build().unwrap_err(),
            RetryThrottleError::MaxTokens { max_tokens: 0 }
        );
        for r in [0.0, -1.0, f64::NAN, 101.0] {
            let e = RetryThrottle::builder().token_ratio(r).build().unwrap_err();
            assert!(!e.to_string().is_empty());
        }
        let t = RetryThrottle::builder().token_ratio(1e-9).build().unwrap();
        assert_eq!(t.ratio_milli_tokens(), 1);
    }
}
