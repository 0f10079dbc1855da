//! The AWS SDKs' retry quota: a capacity that retries draw from, priced by the failure's
//! class, and paid back by successes.
//!
//! The rules are documented on [`RetryQuota`].
#![forbid(unsafe_code)]

use std::fmt;

use crossbeam_utils::CachePadded;

use super::budget::{FailureClass, RetryBudget, Withdrawal};
use crate::sync::{AtomicU64, Ordering};

/// Builds a [`RetryQuota`] (defaults: capacity 500, costs 5 and 10, increment 1).
#[derive(Clone, Copy, Debug)]
pub struct RetryQuotaBuilder {
    capacity: u32,
    retry_cost: u32,
    timeout_cost: u32,
    no_retry_increment: u32,
}

impl RetryQuotaBuilder {
    /// The starting and largest capacity (default 500).
    pub fn initial_capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }
    /// What a retry after a non-timeout failure costs (default 5; at least 1).
    pub fn retry_cost(mut self, cost: u32) -> Self {
        self.retry_cost = cost;
        self
    }
    /// What a retry after a timeout costs (default 10; at least 1).
    pub fn timeout_cost(mut self, cost: u32) -> Self {
        self.timeout_cost = cost;
        self
    }
    /// What a success on the first attempt adds back (default 1; 0 for nothing).
    pub fn no_retry_increment(mut self, increment: u32) -> Self {
        self.no_retry_increment = increment;
        self
    }
    /// Checks the settings and builds the quota.
    ///
    /// # Errors
    /// [`RetryQuotaError::ZeroCost`] if a cost is 0 (retries would be free and unlimited).
    pub fn build(self) -> Result<RetryQuota, RetryQuotaError> {
        if self.retry_cost == 0 || self.timeout_cost == 0 {
            return Err(RetryQuotaError::ZeroCost);
        }
        Ok(RetryQuota {
            capacity: CachePadded::new(AtomicU64::new(u64::from(self.capacity))),
            max: u64::from(self.capacity),
            retry_cost: u64::from(self.retry_cost),
            timeout_cost: u64::from(self.timeout_cost),
            no_retry_increment: u64::from(self.no_retry_increment),
        })
    }
}

/// An AWS-style retry quota.
///
/// # Semantics (the SDKs' "standard" retry mode)
/// - The capacity starts at, and never exceeds, `initial_capacity` (500).
/// - A retry after a timeout costs `timeout_cost` (10), after any other failure `retry_cost`
///   (5); it is allowed iff the capacity covers the cost, which is then withdrawn:
///   `capacity >= cost => capacity -= cost`.
/// - A request that succeeds after a retry refunds that retry's cost; one that succeeds on its
///   first attempt adds `no_retry_increment` (1). Both are capped at the initial capacity.
///
/// The check and the withdrawal are one compare-and-swap: concurrent retries never take more
/// than the capacity holds, so with the defaults exactly 100 normal retries are allowed, on any
/// number of threads.
///
/// # Orderings
/// The capacity is one `AtomicU64` changed only by compare-and-swap loops, all `Relaxed`: it
/// publishes no other memory, and read-modify-writes always act on the latest value.
///
/// ```
/// use weir::policy::retry::{FailureClass, RetryQuota};
///
/// let q = RetryQuota::builder().initial_capacity(20).build()?;
/// assert!(q.try_withdraw(FailureClass::Timeout).is_withdrawn()); // 10 left
/// assert!(q.try_withdraw(FailureClass::Normal).is_withdrawn()); // 5 left
/// assert!(q.try_withdraw(FailureClass::Normal).is_withdrawn()); // 0 left
/// assert!(!q.try_withdraw(FailureClass::Normal).is_withdrawn());
/// q.refund(5);
/// assert_eq!(q.capacity(), 5);
/// # Ok::<(), weir::policy::retry::RetryQuotaError>(())
/// ```
pub struct RetryQuota {
    /// On its own cache line(s): every withdrawal and refund writes it, and the costs below,
    /// read with it, would otherwise be evicted from other threads' caches by each write.
    capacity: CachePadded<AtomicU64>,
    max: u64,
    retry_cost: u64,
    timeout_cost: u64,
    no_retry_increment: u64,
}

impl fmt::Debug for RetryQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryQuota")
            .field("capacity", &self.capacity())
            .field("max", &self.max)
            .field("retry_cost", &self.retry_cost)
            .field("timeout_cost", &self.timeout_cost)
            .field("no_retry_increment", &self.no_retry_increment)
            .finish()
    }
}

impl RetryQuota {
    /// A builder with the AWS SDKs' defaults.
    pub fn builder() -> RetryQuotaBuilder {
        RetryQuotaBuilder {
            capacity: 500,
            retry_cost: 5,
            timeout_cost: 10,
            no_retry_increment: 1,
        }
    }

    /// The capacity now.
    pub fn capacity(&self) -> u64 {
        // Relaxed: see the module's Orderings.
        self.capacity.load(Ordering::Relaxed)
    }
    /// The largest capacity (the initial one).
    pub fn max_capacity(&self) -> u64 {
        self.max
    }
    /// What a retry after a failure of `class` costs.
    pub fn cost_of(&self, class: FailureClass) -> u64 {
        match class {
            FailureClass::Normal => self.retry_cost,
            FailureClass::Timeout => self.timeout_cost,
        }
    }

    /// Withdraws the price of a retry after a failure of `class` if the capacity covers it,
    /// in one compare-and-swap.
    pub fn try_withdraw(&self, class: FailureClass) -> Withdrawal {
        let cost = self.cost_of(class);
        // Relaxed: see the module's Orderings.
        match self
            .capacity
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                c.checked_sub(cost)
            }) {
            Ok(before) => Withdrawal::Withdrawn {
                cost,
                balance: (before - cost) as i64,
            },
            Err(now) => Withdrawal::Refused {
                cost: 0,
                balance: now as i64,
                required: cost as i64,
            },
        }
    }

    /// Gives `amount` back, up to the largest capacity.
    pub fn refund(&self, amount: u64) {
        // Relaxed: see the module's Orderings. `None` (already full, or nothing to refund)
        // ends it without a write, so successes at full capacity (a healthy service) only
        // read the line and do not take turns writing it.
        let _ = self
            .capacity
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                let next = c.saturating_add(amount).min(self.max);
                (next != c).then_some(next)
            });
    }

    /// A request succeeded: refunds its latest retry's cost, or adds the no-retry increment
    /// if it made no retry (`last_withdrawal == 0`).
    pub fn on_success(&self, last_withdrawal: u64) {
        self.refund(if last_withdrawal == 0 {
            self.no_retry_increment
        } else {
            last_withdrawal
        });
    }
}

impl RetryBudget for RetryQuota {
    /// Requests deposit nothing: successes pay back.
    fn deposit(&self) {}
    fn try_withdraw(&self, class: FailureClass) -> Withdrawal {
        RetryQuota::try_withdraw(self, class)
    }
    fn on_success(&self, last_withdrawal: u64) {
        RetryQuota::on_success(self, last_withdrawal);
    }
}

/// A [`RetryQuota`] setting was invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryQuotaError {
    /// Retry costs must be at least 1; the AWS defaults are 5 and 10 (timeouts).
    ZeroCost,
}

impl fmt::Display for RetryQuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryQuotaError::ZeroCost => f.write_str("retry quota costs must be at least 1"),
        }
    }
}

impl std::error::Error for RetryQuotaError {}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn aws_semantics() {
        let q = RetryQuota::builder().build().unwrap();
        let n = (0..1000)
            .filter(|_| q.try_withdraw(FailureClass::Normal).is_withdrawn())
            .count();
        assert_eq!(n, 100);
        assert_eq!(
            q.try_withdraw(FailureClass::Timeout),
            Withdrawal::Refused {
                cost: 0,
                balance: 0,
                required: 10
            }
        );
        q.on_success(0);
        assert_eq!(q.capacity(), 1);
        q.on_success(10);
        assert_eq!(q.capacity(), 11);
        q.refund(u64::MAX);
        assert_eq!(q.capacity(), 500);
        assert!(format!("{q:?}").contains("500"));
        assert_eq!(
            RetryQuota::builder().retry_cost(0).build().unwrap_err(),
            RetryQuotaError::ZeroCost
        );
        assert!(!RetryQuotaError::ZeroCost.to_string().is_empty());
    }
}
