//! Adaptive concurrency limits / load shedding: [`LimiterLayer`] around a
//! [`Limiter`](crate::policy::shed::Limiter).
#![forbid(unsafe_code)]

use std::fmt;
use std::task::{Context, Poll};

use ::tower::{Layer, Service};

use super::error::Error;
use super::future::{LimiterGuard, ResponseFuture};
use super::{Classify, ErrorIsFailure};
use crate::policy::shed::{self, Limiter};

/// A [`Layer`] that admits calls through a [`Limiter`] (see [`LimiterService`]).
///
/// `C` classifies each result into the [`shed::Outcome`] its permit is released with; the
/// default, [`ErrorIsFailure`], releases `Ok` as a success and `Err` as dropped.
#[derive(Clone)]
pub struct LimiterLayer<C = ErrorIsFailure> {
    limiter: Limiter,
    classify: C,
}

impl LimiterLayer {
    /// A layer that shares `limiter` (a [`Limiter`] clone shares its state) among every service
    /// it wraps.
    pub fn new(limiter: Limiter) -> LimiterLayer {
        LimiterLayer {
            limiter,
            classify: ErrorIsFailure,
        }
    }
}

impl<C> LimiterLayer<C> {
    /// Replaces the classifier: a `Fn(Result<&Res, &E>) -> shed::Outcome` (or any
    /// [`Classify`]), cloned into every call.
    pub fn classify<C2>(self, classify: C2) -> LimiterLayer<C2> {
        LimiterLayer {
            limiter: self.limiter,
            classify,
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }
}

impl<C> fmt::Debug for LimiterLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone> Layer<S> for LimiterLayer<C> {
    type Service = LimiterService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        LimiterService::new(inner, self.limiter.clone(), self.classify.clone())
    }
}

/// Admits each call through a [`Limiter`], fail-fast.
///
/// - `poll_ready` is the inner service's: the limiter is not consulted there, so a service
///   under the limit is never held back, and nothing is reserved between `poll_ready` and
///   `call`.
/// - `call` takes a permit with [`Limiter::try_acquire_owned`] (one compare-and-swap, and a
///   reference-count increment so that the response future can hold it). Refused, it returns a
///   future that fails at once with [`Error::Overloaded`] and does not call the inner service
///   (a readiness the inner service reserved in `poll_ready` stays reserved for the next call).
/// - The permit is held by the response future until the inner future completes, then released
///   with the classified [`shed::Outcome`] (success, dropped or ignored); a limiter whose
///   algorithm learns measures the RTT on its clock from the grant to the release, and the
///   algorithm learns from it (a `FixedLimit` without metrics reads no clock).
///   A response future dropped before completion releases its permit as ignored.
/// - In [`Mode::Shadow`](crate::policy::Mode::Shadow) the limiter admits every call and counts
///   those over the limit; the layer passes them through.
/// - Metrics are the limiter's own (give it a registry when it is built).
#[derive(Clone)]
pub struct LimiterService<S, C = ErrorIsFailure> {
    inner: S,
    limiter: Limiter,
    classify: C,
}

impl<S, C> LimiterService<S, C> {
    /// Wraps `inner`.
    pub fn new(inner: S, limiter: Limiter, classify: C) -> Self {
        LimiterService {
            inner,
            limiter,
            classify,
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &Limiter {
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

impl<S: fmt::Debug, C> fmt::Debug for LimiterService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for LimiterService<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error, shed::Outcome> + Clone,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future, LimiterGuard<C>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.limiter.try_acquire_owned() {
            Ok(permit) => ResponseFuture::called(
                self.inner.call(req),
                LimiterGuard {
                    permit,
                    classify: self.classify.clone(),
                },
            ),
            Err(rejection) => ResponseFuture::rejected(Error::Overloaded(rejection)),
        }
    }
}
