//! Retry budgets: what a retry withdraws, and what requests and successes pay back.
//!
//! Three budgets implement [`RetryBudget`]:
//! - [`RatioBudget`](super::RatioBudget): Finagle's and tower's budget: each request deposits,
//!   each retry withdraws, over a rolling window, with a reserve for a minimum retry rate;
//! - [`RetryThrottle`](super::RetryThrottle): gRPC's retry throttling (token count, retries
//!   allowed while above half);
//! - [`RetryQuota`](super::RetryQuota): the AWS SDKs' retry quota (a capacity that retries
//!   draw from, priced by error class, refunded on success).
//!
//! In every one of them a withdrawal is a single compare-and-swap on the word that holds the
//! balance it checks: there is no window between the check and the withdrawal, so concurrent
//! retries never overdraw. The loom models in `loom-tests/tests/loom_retry.rs` check it.
#![forbid(unsafe_code)]

use std::fmt;

/// How expensive a retry is, for budgets that price retries by the failure that caused them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// Any failure other than a timeout.
    #[default]
    Normal,
    /// The attempt timed out.
    Timeout,
}

/// The answer to [`RetryBudget::try_withdraw`]. Amounts are in the budget's own units, which
/// each budget documents.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Withdrawal {
    /// The retry may go ahead: `cost` units were withdrawn, leaving `balance`.
    Withdrawn {
        /// Units withdrawn.
        cost: u64,
        /// The balance after the withdrawal.
        balance: i64,
    },
    /// The budget refused the retry. Nothing was withdrawn, except for budgets that charge
    /// every failure (the gRPC throttle), where `cost` is that charge.
    Refused {
        /// Units withdrawn anyway (0 unless the budget charges failures).
        cost: u64,
        /// The balance the decision saw (after any charge).
        balance: i64,
        /// The balance a retry needs.
        required: i64,
    },
}

impl Withdrawal {
    /// Whether the retry may go ahead.
    pub fn is_withdrawn(self) -> bool {
        matches!(self, Withdrawal::Withdrawn { .. })
    }

    /// Units withdrawn either way.
    pub fn cost(self) -> u64 {
        match self {
            Withdrawal::Withdrawn { cost, .. } | Withdrawal::Refused { cost, .. } => cost,
        }
    }
}

/// A budget that limits retries across many requests. Shared by reference across threads
/// (`Arc<dyn RetryBudget>` in a [`RetryPolicy`](super::RetryPolicy)).
///
/// The policy calls [`deposit`](RetryBudget::deposit) once per request,
/// [`try_withdraw`](RetryBudget::try_withdraw) when it would retry,
/// [`charge_failure`](RetryBudget::charge_failure) for a retryable failure it will not retry
/// (attempts or time ran out), and [`on_success`](RetryBudget::on_success) when a request
/// succeeds.
pub trait RetryBudget: Send + Sync + fmt::Debug {
    /// A request started.
    fn deposit(&self);

    /// A retry is wanted after a retryable failure of class `class`: withdraws its price if
    /// the budget allows it, atomically with the check.
    fn try_withdraw(&self, class: FailureClass) -> Withdrawal;

    /// A retryable failure that will not be retried. Only budgets that charge every failure
    /// (the gRPC throttle) do anything here; the default does nothing.
    fn charge_failure(&self, class: FailureClass) {
        let _ = class;
    }

    /// A request succeeded. `last_withdrawal` is the cost withdrawn for its latest retry, or
    /// 0 if it made none (the AWS quota refunds it, or adds a small increment when 0).
    fn on_success(&self, last_withdrawal: u64);
}

/// Converts a budget amount to the `i64` of [`Withdrawal`], saturating.
pub(super) fn sat_i64(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}
