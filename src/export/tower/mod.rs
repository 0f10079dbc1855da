//! [tower](https://docs.rs/tower) layers for weir's policies (cargo feature `tower`).
//!
//! | layer | policy | rejects with | when |
//! |---|---|---|---|
//! | [`RetryLayer::new(RetryPolicyAdapter)`](RetryPolicyAdapter) (tower's `RetryLayer`) | [`RetryPolicy`](crate::policy::retry::RetryPolicy): backoff, classifier, deadline, budget | the last result, or [`Error::BudgetExhausted`] if asked | after each failed attempt |
//! | [`LimiterLayer`] | [`Limiter`](crate::policy::shed::Limiter): adaptive concurrency limit | [`Error::Overloaded`] | in `call`, fail-fast |
//! | [`BreakerLayer`] | [`CircuitBreaker`](crate::policy::breaker::CircuitBreaker) | [`Error::OpenCircuit`] | in `call`, fail-fast |
//! | [`BulkheadLayer`] | [`Bulkhead`](crate::policy::bulkhead::Bulkhead) | [`Error::BulkheadFull`] | in `call` (fail-fast), or after waiting in `poll_ready` |
//! | [`RateLimitLayer`] | [`Gcra`](crate::policy::ratelimit::Gcra) | [`Error::RateLimited`] | in `call`, fail-fast |
//!
//! The admission layers fail fast: `poll_ready` is the inner service's (only a waiting
//! bulkhead waits there), and `call` either admits the request, holding the policy's permit in
//! the response future until the inner future completes, or returns a future that is ready at
//! once with a typed rejection, without calling the inner service. Rejections are values of
//! [`Error<E>`], which wraps the inner service's error `E` and knows the HTTP status a server
//! should answer with ([`Error::http_status`]: 503, or 429 for a rate limit) and, where the
//! policy knows it, when to retry ([`Error::retry_after`]).
//!
//! What a call's result teaches a policy is decided by a classifier ([`Classify`]): any
//! `Fn(Result<&Res, &E>) -> O`, where `O` is what the policy learns (a
//! [`shed::Outcome`] for the limiter, a
//! [`breaker::Outcome`](crate::policy::breaker::Outcome) for the breaker, an
//! `Option<`[`retry::Outcome`](crate::policy::retry::Outcome)`>` for retries). The default,
//! [`ErrorIsFailure`], treats `Ok` as a success and `Err` as a failure.
//!
//! Every layer shares its policy (policies are `Clone` handles, or an `Arc`), so a service and
//! its clones, on any thread, draw on one limit, one breaker, one budget. Metrics are the
//! policies' own: build a policy with a [`Registry`](crate::Registry) and the layer's decisions
//! are recorded there (`concurrency_limit_*`, `circuit_breaker_*`, `bulkhead_*`, `retry_*`,
//! the rate limiter's counters). Shadow mode ([`Mode::Shadow`](crate::policy::Mode::Shadow))
//! passes through as well: a shadow policy admits, and the layer calls the inner service.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower::retry::RetryLayer;
//! use weir::export::tower::{BreakerLayer, Error, LimiterLayer, RetryPolicyAdapter};
//! use weir::policy::breaker::CircuitBreaker;
//! use weir::policy::retry::{Outcome, RatioBudget, RetryPolicy};
//! use weir::policy::shed::{Aimd, Limiter};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = weir::Registry::new();
//! let limiter = Limiter::builder(Aimd::builder().initial(100).build()?)
//!     .registry(&registry)
//!     .build()?;
//! let breaker = CircuitBreaker::builder("backend").registry(&registry).build()?;
//! let retry = RetryPolicy::builder()
//!     .budget(Arc::new(RatioBudget::builder().build()?))
//!     .registry(&registry)
//!     .build()?;
//!
//! let backend = tower::service_fn(|n: u64| async move { Ok::<u64, std::io::Error>(n * 2) });
//! let mut service = ServiceBuilder::new()
//!     // Retries see the breaker's and the limiter's rejections as errors: retry only the
//!     // inner service's errors, and turn budget exhaustion into a typed error.
//!     .layer(RetryLayer::new(
//!         RetryPolicyAdapter::new(Arc::new(retry))
//!             .classify(|r: Result<&u64, &Error<Error<std::io::Error>>>| match r {
//!                 Ok(_) => None,
//!                 Err(Error::Inner(Error::Inner(_))) => Some(Outcome::error("io")),
//!                 Err(_) => Some(Outcome::Status(503)),
//!             })
//!             .on_budget_exhausted(Error::from),
//!     ))
//!     .layer(LimiterLayer::new(limiter))
//!     .layer(BreakerLayer::new(breaker))
//!     .service(backend);
//!
//! let answer = service.ready().await?.call(21).await.map_err(Error::flatten);
//! assert_eq!(answer.ok(), Some(42));
//! # Ok(())
//! # }
//! ```
//!
//! The [`RetryLayer`](::tower::retry::RetryLayer) is tower's own: [`RetryPolicyAdapter`]
//! implements [`tower::retry::Policy`], and its retry futures sleep the
//! weir backoff delay with `tokio::time::sleep` (tokio is a dependency of this feature for its
//! timer only). Measurements against tower's `ConcurrencyLimit` and its `TpsBudget` retry are
//! in `docs/benchmarks.md`; `docs/tower.md` says how the layers are meant to be stacked.
#![forbid(unsafe_code)]

mod breaker;
mod bulkhead;
mod error;
mod future;
mod limiter;
mod ratelimit;
mod retry;

pub use breaker::{BreakerLayer, BreakerService};
pub use bulkhead::{BulkheadLayer, BulkheadService};
pub use error::{BudgetExhausted, Error};
pub use future::{Admitted, BreakerGuard, Completion, LimiterGuard, ResponseFuture};
pub use limiter::{LimiterLayer, LimiterService};
pub use ratelimit::{RateLimitLayer, RateLimitService};
pub use retry::{KeepLastResult, OnBudgetExhausted, RetryDelay, RetryPolicyAdapter};

use crate::policy::{breaker as breaker_policy, retry as retry_policy, shed};

/// Maps an inner service's result to what a policy learns from it (`O`).
///
/// Implemented by every `Fn(Result<&Res, &E>) -> O` (annotate the closure's argument, e.g.
/// `|r: Result<&Response, &MyError>| ...`) and by [`ErrorIsFailure`].
pub trait Classify<Res, E, O> {
    /// The outcome of one result.
    fn classify(&self, result: Result<&Res, &E>) -> O;
}

impl<F, Res, E, O> Classify<Res, E, O> for F
where
    F: Fn(Result<&Res, &E>) -> O,
{
    #[inline]
    fn classify(&self, result: Result<&Res, &E>) -> O {
        self(result)
    }
}

/// The default classifier: `Ok` is a success, `Err` a failure.
///
/// | policy | `Ok(_)` | `Err(_)` |
/// |---|---|---|
/// | limiter ([`shed::Outcome`]) | `Success` (an RTT sample) | `Dropped` (a congestion signal) |
/// | breaker ([`breaker::Outcome`](breaker_policy::Outcome)) | `Success` | `Failure` |
/// | retry (`Option<`[`retry::Outcome`](retry_policy::Outcome)`>`) | `None` (done) | [`Outcome::error`](retry_policy::Outcome::error) with the error's type name as its class (retryable by the default classifier) |
///
/// Responses that carry a failure (an HTTP 503 in an `Ok`) need a classifier of your own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ErrorIsFailure;

impl<Res, E> Classify<Res, E, shed::Outcome> for ErrorIsFailure {
    #[inline]
    fn classify(&self, result: Result<&Res, &E>) -> shed::Outcome {
        match result {
            Ok(_) => shed::Outcome::Success,
            Err(_) => shed::Outcome::Dropped,
        }
    }
}

impl<Res, E> Classify<Res, E, breaker_policy::Outcome> for ErrorIsFailure {
    #[inline]
    fn classify(&self, result: Result<&Res, &E>) -> breaker_policy::Outcome {
        match result {
            Ok(_) => breaker_policy::Outcome::Success,
            Err(_) => breaker_policy::Outcome::Failure,
        }
    }
}

impl<Res, E> Classify<Res, E, Option<retry_policy::Outcome<'static>>> for ErrorIsFailure {
    #[inline]
    fn classify(&self, result: Result<&Res, &E>) -> Option<retry_policy::Outcome<'static>> {
        match result {
            Ok(_) => None,
            Err(_) => Some(retry_policy::Outcome::error(std::any::type_name::<E>())),
        }
    }
}
