//! The response future shared by the admission layers, and what each layer does when the inner
//! call completes.
#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::Classify;
use super::error::Error;
use crate::policy::{breaker, bulkhead, shed};

pin_project! {
    /// The response future of [`LimiterService`](super::LimiterService),
    /// [`BreakerService`](super::BreakerService), [`BulkheadService`](super::BulkheadService)
    /// and [`RateLimitService`](super::RateLimitService).
    ///
    /// Either the inner service's future, with the layer's guard (`G`: a permit and what to
    /// report through it), or a rejection that is ready at once. When the inner future
    /// completes, the guard is completed with the result (the permit is released with the
    /// classified outcome) before the result is returned. Dropping the future before that
    /// drops the guard, which releases its permit as *ignored*.
    ///
    /// Polling it again after it returned `Ready` returns `Pending`.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F, G, E> {
        #[pin]
        state: State<F, E>,
        guard: Option<G>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        Called {
            #[pin]
            future: F,
        },
        Rejected {
            error: Option<Error<E>>,
        },
    }
}

impl<F, G, E> ResponseFuture<F, G, E> {
    pub(super) fn called(future: F, guard: G) -> Self {
        ResponseFuture {
            state: State::Called { future },
            guard: Some(guard),
        }
    }

    pub(super) fn rejected(error: Error<E>) -> Self {
        ResponseFuture {
            state: State::Rejected { error: Some(error) },
            guard: None,
        }
    }

    /// Whether the layer rejected the call (the inner service was not called).
    pub fn is_rejected(&self) -> bool {
        matches!(self.state, State::Rejected { .. })
    }
}

impl<F, G, E> fmt::Debug for ResponseFuture<F, G, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("rejected", &self.is_rejected())
            .field("guard_held", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, G, Res, E> Future for ResponseFuture<F, G, E>
where
    F: Future<Output = Result<Res, E>>,
    G: Completion<Res, E>,
{
    type Output = Result<Res, Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.state.project() {
            StateProj::Called { future } => {
                let result = ready!(future.poll(cx));
                if let Some(guard) = this.guard.take() {
                    guard.complete(result.as_ref());
                }
                Poll::Ready(result.map_err(Error::Inner))
            }
            StateProj::Rejected { error } => match error.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }
}

mod sealed {
    /// Keeps [`Completion`](super::Completion) implemented by weir's guards only.
    pub trait Sealed {}
}

/// What a layer does with the inner call's result: implemented by the guards weir's layers hold
/// while the inner call runs (sealed).
pub trait Completion<Res, E>: sealed::Sealed {
    /// Called once, when the inner future completes, with its result.
    fn complete(self, result: Result<&Res, &E>);
}

/// The guard of [`LimiterService`](super::LimiterService): a [`shed::OwnedPermit`] and the
/// classifier that picks the outcome it is released with (its RTT is measured on the limiter's
/// clock, when the limiter measures one).
pub struct LimiterGuard<C> {
    pub(super) permit: shed::OwnedPermit,
    pub(super) classify: C,
}

impl<C> fmt::Debug for LimiterGuard<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterGuard")
            .field("permit", &self.permit)
            .finish_non_exhaustive()
    }
}

impl<C> sealed::Sealed for LimiterGuard<C> {}

impl<C, Res, E> Completion<Res, E> for LimiterGuard<C>
where
    C: Classify<Res, E, shed::Outcome>,
{
    fn complete(self, result: Result<&Res, &E>) {
        let outcome = self.classify.classify(result);
        self.permit.release(outcome);
    }
}

/// The guard of [`BreakerService`](super::BreakerService): a [`breaker::OwnedPermit`] and the
/// classifier that picks the outcome it records.
pub struct BreakerGuard<C> {
    pub(super) permit: breaker::OwnedPermit,
    pub(super) classify: C,
}

impl<C> fmt::Debug for BreakerGuard<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerGuard")
            .field("permit", &self.permit)
            .finish_non_exhaustive()
    }
}

impl<C> sealed::Sealed for BreakerGuard<C> {}

impl<C, Res, E> Completion<Res, E> for BreakerGuard<C>
where
    C: Classify<Res, E, breaker::Outcome>,
{
    fn complete(self, result: Result<&Res, &E>) {
        let outcome = self.classify.classify(result);
        // What the outcome did to the breaker (a transition, a stale permit) is the breaker's
        // business: its listener and metrics report it.
        let _ = self.permit.record(outcome);
    }
}

impl sealed::Sealed for bulkhead::Permit {}

/// A bulkhead permit is released when the call completes, whatever its result.
impl<Res, E> Completion<Res, E> for bulkhead::Permit {
    fn complete(self, _result: Result<&Res, &E>) {
        drop(self);
    }
}

/// The guard of [`RateLimitService`](super::RateLimitService): nothing to release (the cell
/// was taken when the call was admitted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Admitted;

impl sealed::Sealed for Admitted {}

impl<Res, E> Completion<Res, E> for Admitted {
    fn complete(self, _result: Result<&Res, &E>) {}
}
