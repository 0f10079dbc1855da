//! The error of every weir tower layer: the inner service's error, or a typed rejection.
#![forbid(unsafe_code)]

use std::fmt;
use std::time::Duration;

use crate::policy::ratelimit::{self, LimitReason};
use crate::policy::{breaker, bulkhead, shed};

/// The error type of weir's tower services: the inner service's error `E`, or one of weir's
/// rejections, each carrying the numbers that decided it.
///
/// A server maps rejections to status codes with [`http_status`](Error::http_status) (503 for
/// overload, an open circuit, a full bulkhead or an exhausted retry budget; 429 for a rate limit)
/// and to a `Retry-After` header with [`retry_after`](Error::retry_after). Stacked weir layers
/// nest (`Error<Error<E>>`); [`flatten`](Error::flatten) removes one level.
///
/// `Display` shows the inner error as it is (the wrapper adds nothing to it) and describes a
/// rejection with its numbers; `source` is the inner error's own source.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E> {
    /// The inner service failed. Nothing of weir's rejected the call.
    Inner(E),
    /// A [`Limiter`](crate::policy::shed::Limiter) refused a permit: as many calls are in
    /// flight as its (adaptive) limit allows. The inner service was not called. Remedy: shed
    /// the request (HTTP 503) or retry elsewhere.
    Overloaded(shed::Rejection),
    /// A [`CircuitBreaker`](crate::policy::breaker::CircuitBreaker) is open, or half-open with
    /// all its probe slots taken. The inner service was not called. For an open breaker,
    /// [`retry_after`](Error::retry_after) says when it may half-open.
    OpenCircuit(breaker::Rejection),
    /// A [`Bulkhead`](crate::policy::bulkhead::Bulkhead) had no free permit (fail-fast), its
    /// queue was full, or the wait for a permit timed out. The inner service was not called.
    BulkheadFull(bulkhead::Rejection),
    /// A [`Gcra`](crate::policy::ratelimit::Gcra) rate limit is used up. Always a
    /// [`Decision::Limited`](ratelimit::Decision::Limited); its
    /// [`headers`](ratelimit::Decision::headers) give `Retry-After` and `X-RateLimit-*`. The
    /// inner service was not called.
    RateLimited(ratelimit::Decision),
    /// A retry budget refused a retry; produced by a
    /// [`RetryPolicyAdapter`](super::RetryPolicyAdapter) only when asked to
    /// ([`on_budget_exhausted`](super::RetryPolicyAdapter::on_budget_exhausted)), in place of
    /// the last attempt's result.
    BudgetExhausted(BudgetExhausted),
}

impl<E> Error<E> {
    /// The HTTP status a server should answer a rejection with: 503 for
    /// [`Overloaded`](Error::Overloaded), [`OpenCircuit`](Error::OpenCircuit),
    /// [`BulkheadFull`](Error::BulkheadFull) and [`BudgetExhausted`](Error::BudgetExhausted);
    /// 429 for [`RateLimited`](Error::RateLimited); `None` for the inner service's errors.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Inner(_) => None,
            Error::RateLimited(_) => Some(429),
            Error::Overloaded(_)
            | Error::OpenCircuit(_)
            | Error::BulkheadFull(_)
            | Error::BudgetExhausted(_) => Some(503),
        }
    }

    /// How long until the same call could be admitted, where the rejection knows: the time left
    /// until an open breaker half-opens, or a rate limit's `Retry-After` (`None` when the call
    /// can never fit). `None` for every other variant.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::OpenCircuit(r) => match r.reason {
                breaker::RejectReason::Open { remaining, .. } => Some(remaining),
                breaker::RejectReason::HalfOpenFull { .. } => None,
            },
            Error::RateLimited(d) => match *d {
                ratelimit::Decision::Limited {
                    reason: LimitReason::ExceedsCapacity,
                    ..
                } => None,
                _ => d.retry_after(),
            },
            _ => None,
        }
    }

    /// Whether weir rejected the call (every variant but [`Inner`](Error::Inner)).
    pub fn is_rejection(&self) -> bool {
        !matches!(self, Error::Inner(_))
    }

    /// The inner service's error, if that is what this is.
    pub fn inner(&self) -> Option<&E> {
        match self {
            Error::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// The inner service's error, if that is what this is.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Error::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// Maps the inner service's error, keeping rejections as they are.
    pub fn map_inner<F>(self, f: impl FnOnce(E) -> F) -> Error<F> {
        match self {
            Error::Inner(e) => Error::Inner(f(e)),
            Error::Overloaded(r) => Error::Overloaded(r),
            Error::OpenCircuit(r) => Error::OpenCircuit(r),
            Error::BulkheadFull(r) => Error::BulkheadFull(r),
            Error::RateLimited(d) => Error::RateLimited(d),
            Error::BudgetExhausted(b) => Error::BudgetExhausted(b),
        }
    }
}

impl<E> Error<Error<E>> {
    /// Removes one level of nesting: an outer layer's error around an inner weir layer's error
    /// (`LimiterService<BreakerService<S>>` fails with `Error<Error<S::Error>>`).
    pub fn flatten(self) -> Error<E> {
        match self {
            Error::Inner(inner) => inner,
            Error::Overloaded(r) => Error::Overloaded(r),
            Error::OpenCircuit(r) => Error::OpenCircuit(r),
            Error::BulkheadFull(r) => Error::BulkheadFull(r),
            Error::RateLimited(d) => Error::RateLimited(d),
            Error::BudgetExhausted(b) => Error::BudgetExhausted(b),
        }
    }
}

impl<E> From<BudgetExhausted> for Error<E> {
    fn from(b: BudgetExhausted) -> Error<E> {
        Error::BudgetExhausted(b)
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Inner(e) => e.fmt(f),
            Error::Overloaded(r) => write!(f, "overloaded: {r}"),
            Error::OpenCircuit(r) => match r.reason {
                breaker::RejectReason::Open { remaining, .. } => {
                    write!(f, "circuit open: may half-open in {remaining:?}")
                }
                breaker::RejectReason::HalfOpenFull { in_flight, max } => write!(
                    f,
                    "circuit half-open: {in_flight} of {max} probe calls already in flight"
                ),
            },
            Error::BulkheadFull(r) => write!(
                f,
                "bulkhead full ({}): {} of {} permits in use, {} waiting, waited {:?}",
                r.reason.as_str(),
                r.in_use,
                r.max,
                r.waiting,
                r.waited
            ),
            Error::RateLimited(d) => write!(f, "rate {d}"),
            Error::BudgetExhausted(b) => b.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Inner(e) => e.source(),
            _ => None,
        }
    }
}

/// A retry budget refused a retry (see
/// [`GiveUpReason::BudgetExhausted`](crate::policy::retry::GiveUpReason::BudgetExhausted)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BudgetExhausted {
    /// The balance the budget saw, in its own units.
    pub balance: i64,
    /// The balance a retry needs.
    pub required: i64,
    /// Attempts made for the request, the first included.
    pub attempts: u32,
}

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retry budget exhausted after {} attempt(s): balance {}, a retry needs {}",
            self.attempts, self.balance, self.required
        )
    }
}

impl std::error::Error for BudgetExhausted {}
