//! Rate limits: [`RateLimitLayer`] around a [`Gcra`](crate::policy::ratelimit::Gcra).
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::tower::{Layer, Service};

use super::error::Error;
use super::future::{Admitted, ResponseFuture};
use crate::policy::ratelimit::Gcra;

/// A [`Layer`] that admits calls through a GCRA rate limit (see [`RateLimitService`]).
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    limiter: Arc<Gcra>,
}

impl RateLimitLayer {
    /// A layer that shares `limiter` among every service it wraps.
    pub fn new(limiter: Arc<Gcra>) -> RateLimitLayer {
        RateLimitLayer { limiter }
    }

    /// The limiter.
    pub fn limiter(&self) -> &Arc<Gcra> {
        &self.limiter
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService::new(inner, self.limiter.clone())
    }
}

/// Admits each call through a [`Gcra`], fail-fast.
///
/// - `poll_ready` is the inner service's: a limited service does not wait for cells (tower's
///   own `RateLimit` waits in `poll_ready`; this one rejects, so a server can answer 429).
/// - `call` takes one cell with [`Gcra::try_acquire`] (one compare-and-swap). Limited, it
///   returns a future that fails at once with [`Error::RateLimited`], whose decision carries
///   `Retry-After` and the `X-RateLimit-*` numbers, and does not call the inner service.
/// - In [`Mode::Shadow`](crate::policy::Mode::Shadow) a limited call is admitted (the decision
///   is counted as limited); the layer passes it through.
/// - Metrics are the limiter's own.
#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    limiter: Arc<Gcra>,
}

impl<S> RateLimitService<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, limiter: Arc<Gcra>) -> Self {
        RateLimitService { inner, limiter }
    }

    /// The limiter.
    pub fn limiter(&self) -> &Arc<Gcra> {
        &self.limiter
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimitService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish()
    }
}

impl<S, Req> Service<Req> for RateLimitService<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future, Admitted, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let decision = self.limiter.try_acquire();
        if decision.admits() {
            ResponseFuture::called(self.inner.call(req), Admitted)
        } else {
            ResponseFuture::rejected(Error::RateLimited(decision))
        }
    }
}
