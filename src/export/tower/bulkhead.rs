//! Bulkheads: [`BulkheadLayer`] around a [`Bulkhead`](crate::policy::bulkhead::Bulkhead).
#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ::tower::{Layer, Service};
use tokio::time::Sleep;

use super::error::Error;
use super::future::ResponseFuture;
use crate::policy::bulkhead::{self, Acquire, Bulkhead, CLOCK_POLL, Decision, Priority};

/// How the layer waits for a permit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wait {
    priority: Priority,
    max_wait: Duration,
}

/// A [`Layer`] that runs calls under a [`Bulkhead`] (see [`BulkheadService`]).
///
/// By default it is fail-fast ([`Bulkhead::try_acquire`] in `call`); [`wait`](Self::wait)
/// makes it queue for a permit in `poll_ready`, for at most a given time, instead.
#[derive(Clone, Debug)]
pub struct BulkheadLayer {
    bulkhead: Bulkhead,
    priority: Priority,
    wait: Option<Wait>,
}

impl BulkheadLayer {
    /// A fail-fast layer that shares `bulkhead` (a [`Bulkhead`] clone shares its permits)
    /// among every service it wraps.
    pub fn new(bulkhead: Bulkhead) -> BulkheadLayer {
        BulkheadLayer {
            bulkhead,
            priority: Priority::NORMAL,
            wait: None,
        }
    }

    /// Waits for a permit in `poll_ready` for at most `max_wait` (on the bulkhead's clock),
    /// queued at the [`priority`](Self::priority) set ([`Priority::NORMAL`] by default).
    pub fn wait(mut self, max_wait: Duration) -> Self {
        self.wait = Some(Wait {
            priority: self.priority,
            max_wait,
        });
        self
    }

    /// The priority a waiting call queues at (higher first, then arrival). Only a waiting
    /// layer ([`wait`](Self::wait)) queues; a fail-fast one ignores it.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        if let Some(w) = &mut self.wait {
            w.priority = priority;
        }
        self
    }

    /// The bulkhead.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            wait: self.wait,
            ..BulkheadService::new(inner, self.bulkhead.clone())
        }
    }
}

/// Runs each call under a [`Bulkhead`] permit, held until the inner future completes.
///
/// **Fail-fast** (the default, [`BulkheadLayer::new`]): `poll_ready` is the inner service's;
/// `call` takes a permit with [`Bulkhead::try_acquire`] (one compare-and-swap) or returns a
/// future that fails at once with [`Error::BulkheadFull`] without calling the inner service.
///
/// **Waiting** ([`BulkheadLayer::wait`]): `poll_ready` first
/// waits for a permit through [`Bulkhead::acquire_async_until`] (priority, then FIFO), with a
/// deadline of the maximum wait from the first `poll_ready` on the bulkhead's clock, then polls
/// the inner service's readiness while holding the permit; `call` uses that permit. If the
/// wait times out (or the queue is full), `poll_ready` still returns `Ready(Ok)`, and the next
/// `call` fails at once with [`Error::BulkheadFull`] (reason `timeout` or `queue_full`)
/// without calling the inner service, so the service itself never fails. A tokio timer
/// (`tokio::time::sleep`) wakes the task at the deadline, so waiting needs a tokio runtime with
/// its time driver (it panics without one, as tokio timers do); when the bulkhead's clock is not
/// tokio's (a [`ManualClock`](crate::ManualClock)), the deadline is checked again at least every
/// [`CLOCK_POLL`] of tokio time.
///
/// A permit or a rejection obtained by `poll_ready` belongs to this service value until its
/// next `call`; dropping the service releases it. A clone starts with neither. If `call` comes
/// without a `poll_ready` first, it falls back to `try_acquire`.
///
/// In [`Mode::Shadow`](crate::policy::Mode::Shadow) the bulkhead admits every call (counting
/// what it would have refused); the layer passes them through. Metrics are the bulkhead's own.
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Bulkhead,
    wait: Option<Wait>,
    /// The acquisition in progress (waiting mode).
    acquire: Option<Acquire>,
    /// Its deadline on the bulkhead's clock.
    deadline: Duration,
    /// Wakes the task at the deadline.
    timer: Option<Pin<Box<Sleep>>>,
    /// The permit (or rejection) `poll_ready` obtained for the next call.
    reserved: Option<Decision>,
}

impl<S> BulkheadService<S> {
    /// Wraps `inner`, fail-fast (see [`BulkheadLayer`] for the waiting mode).
    pub fn new(inner: S, bulkhead: Bulkhead) -> Self {
        BulkheadService {
            inner,
            bulkhead,
            wait: None,
            acquire: None,
            deadline: Duration::ZERO,
            timer: None,
            reserved: None,
        }
    }

    /// The bulkhead.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped (a reserved permit is released).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Waiting mode: polls the acquisition in progress (starting one if needed). `Ready` once
    /// a decision is reserved for the next call.
    fn poll_acquire(&mut self, cx: &mut Context<'_>, wait: Wait) -> Poll<()> {
        let acquire = match &mut self.acquire {
            Some(a) => a,
            None => {
                self.deadline = self.bulkhead.clock().now().saturating_add(wait.max_wait);
                let acquire = self
                    .bulkhead
                    .acquire_async_until(wait.priority, self.deadline);
                self.acquire.insert(acquire)
            }
        };
        if let Poll::Ready(decision) = Pin::new(acquire).poll(cx) {
            self.acquire = None;
            self.timer = None;
            self.reserved = Some(decision);
            return Poll::Ready(());
        }
        // Queued: make sure something wakes the task at the deadline.
        let remaining = self
            .deadline
            .saturating_sub(self.bulkhead.clock().now())
            .max(Duration::from_millis(1));
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(remaining)));
        // At most twice: a timer that fired before the bulkhead's clock reached the deadline
        // is set again, at least CLOCK_POLL ahead, and polled once to register the waker.
        for _ in 0..2 {
            if timer.as_mut().poll(cx).is_pending() {
                break;
            }
            let next = tokio::time::Instant::now() + remaining.max(CLOCK_POLL);
            timer.as_mut().reset(next);
        }
        Poll::Pending
    }
}

impl<S: Clone> Clone for BulkheadService<S> {
    /// A service over the same inner service and bulkhead, with no permit reserved.
    fn clone(&self) -> Self {
        BulkheadService {
            wait: self.wait,
            ..BulkheadService::new(self.inner.clone(), self.bulkhead.clone())
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for BulkheadService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadService")
            .field("inner", &self.inner)
            .field("bulkhead", &self.bulkhead)
            .field("waits", &self.wait.is_some())
            .field("acquiring", &self.acquire.is_some())
            .field("reserved", &self.reserved)
            .finish_non_exhaustive()
    }
}

impl<S, Req> Service<Req> for BulkheadService<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future, bulkhead::Permit, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(wait) = self.wait {
            if self.reserved.is_none() && self.poll_acquire(cx, wait).is_pending() {
                return Poll::Pending;
            }
            if matches!(self.reserved, Some(Decision::Rejected(_))) {
                // The next call fails at once; the inner service is not needed for that.
                return Poll::Ready(Ok(()));
            }
        }
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let decision = match self.reserved.take() {
            Some(d) => d,
            None => self.bulkhead.try_acquire(),
        };
        match decision {
            Decision::Acquired(permit) => ResponseFuture::called(self.inner.call(req), permit),
            Decision::Rejected(rejection) => {
                ResponseFuture::rejected(Error::BulkheadFull(rejection))
            }
        }
    }
}
