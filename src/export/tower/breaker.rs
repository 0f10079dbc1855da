//! Circuit breaking: [`BreakerLayer`] around a
//! [`CircuitBreaker`](crate::policy::breaker::CircuitBreaker).
#![forbid(unsafe_code)]

use std::fmt;
use std::task::{Context, Poll};

use ::tower::{Layer, Service};

use super::error::Error;
use super::future::{BreakerGuard, ResponseFuture};
use super::{Classify, ErrorIsFailure};
use crate::policy::breaker::{self, CircuitBreaker, Decision};

/// A [`Layer`] that guards calls with a [`CircuitBreaker`] (see [`BreakerService`]).
///
/// `C` classifies each result into the [`breaker::Outcome`] the breaker records; the default,
/// [`ErrorIsFailure`], records `Ok` as a success and `Err` as a failure.
#[derive(Clone)]
pub struct BreakerLayer<C = ErrorIsFailure> {
    breaker: CircuitBreaker,
    classify: C,
}

impl BreakerLayer {
    /// A layer that shares `breaker` (a [`CircuitBreaker`] clone shares its state) among every
    /// service it wraps.
    pub fn new(breaker: CircuitBreaker) -> BreakerLayer {
        BreakerLayer {
            breaker,
            classify: ErrorIsFailure,
        }
    }
}

impl<C> BreakerLayer<C> {
    /// Replaces the classifier: a `Fn(Result<&Res, &E>) -> breaker::Outcome` (or any
    /// [`Classify`]), cloned into every call.
    pub fn classify<C2>(self, classify: C2) -> BreakerLayer<C2> {
        BreakerLayer {
            breaker: self.breaker,
            classify,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<C> fmt::Debug for BreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone> Layer<S> for BreakerLayer<C> {
    type Service = BreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService::new(inner, self.breaker.clone(), self.classify.clone())
    }
}

/// Guards each call with a [`CircuitBreaker`], fail-fast.
///
/// - `poll_ready` is the inner service's.
/// - `call` asks [`CircuitBreaker::try_acquire_owned`]. While the breaker is open (or half-open with
///   every probe slot taken) it returns a future that fails at once with
///   [`Error::OpenCircuit`], carrying the breaker's [`Rejection`](breaker::Rejection) (for an
///   open breaker, [`Error::retry_after`] is the time left until it may half-open), and does
///   not call the inner service.
/// - Admitted, the call's result is classified and recorded through the permit when the inner
///   future completes (slow-call thresholds measure the duration on the breaker's clock); a
///   response future dropped before completion records the call as ignored, which frees a
///   half-open probe slot.
/// - In [`Mode::Shadow`](crate::policy::Mode::Shadow) the breaker admits every call and counts
///   what it would have rejected; the layer passes them through.
/// - Metrics and transition listeners are the breaker's own.
#[derive(Clone)]
pub struct BreakerService<S, C = ErrorIsFailure> {
    inner: S,
    breaker: CircuitBreaker,
    classify: C,
}

impl<S, C> BreakerService<S, C> {
    /// Wraps `inner`.
    pub fn new(inner: S, breaker: CircuitBreaker, classify: C) -> Self {
        BreakerService {
            inner,
            breaker,
            classify,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
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

impl<S: fmt::Debug, C> fmt::Debug for BreakerService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for BreakerService<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error, breaker::Outcome> + Clone,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future, BreakerGuard<C>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.breaker.try_acquire_owned() {
            Decision::Permitted(permit) => ResponseFuture::called(
                self.inner.call(req),
                BreakerGuard {
                    permit,
                    classify: self.classify.clone(),
                },
            ),
            Decision::Rejected(rejection) => {
                ResponseFuture::rejected(Error::OpenCircuit(rejection))
            }
        }
    }
}
