//! Retries: a [`tower::retry::Policy`](::tower::retry::Policy) backed by a weir
//! [`RetryPolicy`] (backoff, classification, deadline, budget).
#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ::tower::retry::Policy;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::error::BudgetExhausted;
use super::{Classify, ErrorIsFailure};
use crate::policy::retry::{GiveUpReason, Outcome, RetryDecision, RetryPolicy, RetryRequest};

/// A [`tower::retry::Policy`](Policy) that asks a weir [`RetryPolicy`] whether and when to
/// retry, so `tower::retry::RetryLayer::new(adapter)` retries with weir's backoff, classifier,
/// attempt limit, total deadline and budget, and records weir's retry metrics.
///
/// ```
/// use std::sync::Arc;
/// use tower::retry::RetryLayer;
/// use weir::export::tower::RetryPolicyAdapter;
/// use weir::policy::retry::{Outcome, RatioBudget, RetryPolicy};
///
/// let policy = RetryPolicy::builder()
///     .budget(Arc::new(RatioBudget::builder().build()?))
///     .build()?;
/// // Ok is a success; every error is a retryable failure of class "io".
/// let adapter = RetryPolicyAdapter::new(Arc::new(policy))
///     .classify(|r: Result<&u32, &std::io::Error>| r.err().map(|_| Outcome::error("io")));
/// let _layer = RetryLayer::new(adapter);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// - **Classification.** `C` maps each attempt's result, `Result<&Res, &E>`, to
///   `Option<Outcome<'static>>`: `None` is a success (the request is done), `Some(outcome)` a
///   failure that the policy's [`Classifier`](crate::policy::retry::Classifier) judges (a status
///   code, or an error kind and class). The default, [`ErrorIsFailure`], treats every `Ok` as a
///   success and every `Err` as [`Outcome::error`] with the error's type name as its class.
/// - **Decision.** On a failure, [`RetryPolicy::on_failure`] decides: retry after the backoff
///   delay (the future [`retry`](Policy::retry) returns sleeps for it with
///   [`tokio::time::sleep`]), or give up (tower then returns the last result). On a success,
///   [`RetryPolicy::on_success`] (budgets that refund do it there).
/// - **Budget.** The request deposits into the policy's budget when it starts and each retry
///   withdraws, exactly (one compare-and-swap). When the budget refuses, the last result is
///   returned as it is, or replaced by [`on_budget_exhausted`](Self::on_budget_exhausted)'s
///   error.
/// - **Request state.** tower clones the policy for each request. The adapter starts a
///   [`RetryRequest`] ([`RetryPolicy::begin`]: the deposit, `retry_requests_total`, the start
///   time for the total deadline) in [`clone_request`](Policy::clone_request) on the first
///   attempt, which tower calls on the service's policy just before cloning it for the
///   request; the clone carries the request's state through its retries. A policy used
///   elsewhere starts the request on its first [`retry`](Policy::retry) call instead.
/// - **Per-attempt timeout.** Not enforced here: put tower's `TimeoutLayer` inside the retry
///   layer. The total deadline is enforced (a retry that would start past it is not made).
/// - Requests need `Req: Clone` (every attempt sends a clone).
///
/// # Panics
///
/// A retry with a non-zero delay sleeps on a tokio timer, created when the retry is decided
/// (while tower's response future is polled): outside a tokio runtime with the time driver
/// enabled, tokio panics there, as it does for every timer.
pub struct RetryPolicyAdapter<C = ErrorIsFailure, X = KeepLastResult, P = Arc<RetryPolicy>> {
    policy: P,
    classify: C,
    exhausted: X,
    request: Option<RetryRequest>,
}

impl<P> RetryPolicyAdapter<ErrorIsFailure, KeepLastResult, P>
where
    P: Deref<Target = RetryPolicy> + Clone,
{
    /// An adapter around `policy`, with the default classifier: an `Arc<RetryPolicy>`, or a
    /// `&'static RetryPolicy` (which spares every request the reference count's increment and
    /// decrement on a cache line that all threads share).
    pub fn new(policy: P) -> Self {
        RetryPolicyAdapter {
            policy,
            classify: ErrorIsFailure,
            exhausted: KeepLastResult,
            request: None,
        }
    }
}

impl<C, X, P> RetryPolicyAdapter<C, X, P> {
    /// Replaces the classifier: a `Fn(Result<&Res, &E>) -> Option<Outcome<'static>>` (or any
    /// [`Classify`]); `None` means success.
    pub fn classify<C2>(self, classify: C2) -> RetryPolicyAdapter<C2, X, P> {
        RetryPolicyAdapter {
            policy: self.policy,
            classify,
            exhausted: self.exhausted,
            request: self.request,
        }
    }

    /// When the budget refuses a retry, replaces the last attempt's result (a response or an
    /// error) with `Err(f(exhausted))`. With a weir stack below the retry layer (`E` is
    /// [`Error<_>`](super::Error)), pass `Error::from`; with boxed errors,
    /// `|e| Box::new(e) as BoxError`.
    pub fn on_budget_exhausted<X2>(self, f: X2) -> RetryPolicyAdapter<C, X2, P> {
        RetryPolicyAdapter {
            policy: self.policy,
            classify: self.classify,
            exhausted: f,
            request: self.request,
        }
    }

    /// The weir policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The state of the request this clone serves, once started.
    pub fn request(&self) -> Option<&RetryRequest> {
        self.request.as_ref()
    }
}

impl<C: Clone, X: Clone, P: Clone> Clone for RetryPolicyAdapter<C, X, P> {
    fn clone(&self) -> Self {
        RetryPolicyAdapter {
            policy: self.policy.clone(),
            classify: self.classify.clone(),
            exhausted: self.exhausted.clone(),
            request: self.request,
        }
    }
}

impl<C, X, P: Deref<Target = RetryPolicy>> fmt::Debug for RetryPolicyAdapter<C, X, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyAdapter")
            .field("policy", &*self.policy)
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl<Req, Res, E, C, X, P> Policy<Req, Res, E> for RetryPolicyAdapter<C, X, P>
where
    Req: Clone,
    P: Deref<Target = RetryPolicy>,
    C: Classify<Res, E, Option<Outcome<'static>>>,
    X: OnBudgetExhausted<Res, E>,
{
    type Future = RetryDelay;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<RetryDelay> {
        let policy = &*self.policy;
        let request = self.request.get_or_insert_with(|| policy.begin());
        let Some(outcome) = self.classify.classify(result.as_ref()) else {
            policy.on_success(request);
            return None;
        };
        match policy.on_failure(request, &outcome) {
            RetryDecision::Retry { delay, .. } => Some(RetryDelay::new(delay)),
            RetryDecision::GiveUp { reason } => {
                if let GiveUpReason::BudgetExhausted { balance, required } = reason {
                    let exhausted = BudgetExhausted {
                        balance,
                        required,
                        attempts: request.attempts(),
                    };
                    self.exhausted.on_budget_exhausted(result, exhausted);
                }
                None
            }
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        // tower calls this on the service's policy for each new request, then clones the
        // policy for the request; on that clone it is called again only after `retry` decided
        // to retry, when the request has made at least one attempt.
        if self.request.is_none_or(|r| r.attempts() == 0) {
            self.request = Some(self.policy.begin());
        }
        Some(req.clone())
    }
}

/// What a [`RetryPolicyAdapter`] does with the last result when the budget refuses a retry.
pub trait OnBudgetExhausted<Res, E> {
    /// Called once, with the last attempt's result, when the budget refused its retry.
    fn on_budget_exhausted(&self, result: &mut Result<Res, E>, exhausted: BudgetExhausted);
}

/// The default: the last attempt's result is returned as it is (tower's behaviour when a
/// policy stops retrying).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeepLastResult;

impl<Res, E> OnBudgetExhausted<Res, E> for KeepLastResult {
    fn on_budget_exhausted(&self, _result: &mut Result<Res, E>, _exhausted: BudgetExhausted) {}
}

/// A function from the refusal to the error returned instead of the last result.
impl<F, Res, E> OnBudgetExhausted<Res, E> for F
where
    F: Fn(BudgetExhausted) -> E,
{
    fn on_budget_exhausted(&self, result: &mut Result<Res, E>, exhausted: BudgetExhausted) {
        *result = Err(self(exhausted));
    }
}

pin_project! {
    /// The wait before a retry: the weir backoff delay, slept with [`tokio::time::sleep`]
    /// (ready at once for a zero delay, without a timer).
    #[must_use = "futures do nothing unless polled"]
    pub struct RetryDelay {
        #[pin]
        sleep: Option<Sleep>,
        delay: Duration,
    }
}

impl RetryDelay {
    fn new(delay: Duration) -> RetryDelay {
        RetryDelay {
            sleep: (!delay.is_zero()).then(|| tokio::time::sleep(delay)),
            delay,
        }
    }

    /// The delay the policy decided.
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

impl fmt::Debug for RetryDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryDelay")
            .field("delay", &self.delay)
            .finish_non_exhaustive()
    }
}

impl Future for RetryDelay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Ready(()),
        }
    }
}
