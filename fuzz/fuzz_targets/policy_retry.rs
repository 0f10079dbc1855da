//! Fuzzes the three retry budgets with arbitrary sequences of requests (deposits), retries
//! (withdrawals), successes, failures and clock movement, against plain sequential models:
//! every decision and balance must match the model exactly, no balance may go below zero
//! (throttle, quota) or above its ceiling, and the ratio budget may never grant more retries
//! in a window than `reserve + ratio × requests` in that window.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir::ManualClock;
use weir::policy::retry::{
    FailureClass, RatioBudget, RetryBudget, RetryQuota, RetryThrottle, Withdrawal,
};

#[derive(Arbitrary, Debug)]
enum Op {
    /// A request: deposits into the ratio budget.
    Deposit,
    /// A retry wanted after a failure (a timeout or not).
    Withdraw { timeout: bool },
    /// A success; `last` is the cost the request's latest retry withdrew.
    Success { last: u8 },
    /// A retryable failure that will not be retried.
    Failure,
    /// The clock moves forward.
    Advance { micros: u32 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    slots: u8,
    width_ms: u8,
    num: u16,
    den: u16,
    min_per_sec: u16,
    /// Deposit stripes asked for (0 and values above the cap included): one thread deposits
    /// into one of them, and every reader sums them all.
    stripes: u8,
    max_tokens: u16,
    ratio_milli: u16,
    capacity: u16,
    retry_cost: u8,
    timeout_cost: u8,
    ops: Vec<Op>,
}

struct RatioModel {
    slots: u64,
    num: i128,
    den: i128,
    reserve: i128,
    deposits: BTreeMap<u64, i128>,
    retries: BTreeMap<u64, i128>,
}

impl RatioModel {
    fn window(&self, g: u64) -> (i128, i128) {
        let lo = (g + 1).saturating_sub(self.slots);
        let sum = |m: &BTreeMap<u64, i128>| m.range(lo..=g).map(|(_, v)| *v).sum::<i128>();
        (sum(&self.deposits), sum(&self.retries))
    }
    fn balance(&self, g: u64) -> i128 {
        let (d, w) = self.window(g);
        self.reserve * self.den + self.num * d - self.den * w
    }
}

fuzz_target!(|input: Input| {
    let clock = ManualClock::new();
    let slots = u32::from(input.slots % 8) + 1;
    let width_ns = (u64::from(input.width_ms % 20) + 1) * 1_000_000;
    let ratio = RatioBudget::builder()
        .window(Duration::from_nanos(width_ns * u64::from(slots)))
        .slots(slots)
        .ratio_parts(u32::from(input.num % 1000), u32::from(input.den % 1000) + 1)
        .min_retries_per_sec(u32::from(input.min_per_sec % 2000))
        .stripes(u32::from(input.stripes))
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid ratio budget");
    let mut rm = RatioModel {
        slots: u64::from(slots),
        num: i128::from(ratio.deposit_units()),
        den: i128::from(ratio.retry_cost()),
        reserve: i128::from(ratio.reserve_retries()),
        deposits: BTreeMap::new(),
        retries: BTreeMap::new(),
    };

    let max_tokens = u32::from(input.max_tokens % 1000) + 1;
    let ratio_milli = u64::from(input.ratio_milli) % (u64::from(max_tokens) * 1000) + 1;
    let throttle = RetryThrottle::builder()
        .max_tokens(max_tokens)
        .token_ratio(ratio_milli as f64 / 1000.0)
        .build()
        .expect("valid throttle");
    let t_max = u64::from(max_tokens) * 1000;
    let mut tokens = t_max;

    let (retry_cost, timeout_cost) = (
        u64::from(input.retry_cost.max(1)),
        u64::from(input.timeout_cost.max(1)),
    );
    let quota = RetryQuota::builder()
        .initial_capacity(u32::from(input.capacity))
        .retry_cost(retry_cost as u32)
        .timeout_cost(timeout_cost as u32)
        .build()
        .expect("valid quota");
    let q_max = u64::from(input.capacity);
    let mut cap = q_max;

    let generation = |c: &ManualClock| (c.now().as_nanos() / u128::from(width_ns)) as u64;

    for op in input.ops.iter().take(2000) {
        let g = generation(&clock);
        match *op {
            Op::Deposit => {
                RetryBudget::deposit(&ratio);
                *rm.deposits.entry(g).or_default() += 1;
                RetryBudget::deposit(&throttle);
                RetryBudget::deposit(&quota);
            }
            Op::Withdraw { timeout } => {
                let class = if timeout {
                    FailureClass::Timeout
                } else {
                    FailureClass::Normal
                };
                // Ratio budget: the formula, exactly.
                let before = rm.balance(g);
                let w = RetryBudget::try_withdraw(&ratio, class);
                if before >= rm.den {
                    assert_eq!(
                        w,
                        Withdrawal::Withdrawn {
                            cost: rm.den as u64,
                            balance: (before - rm.den) as i64
                        }
                    );
                    *rm.retries.entry(g).or_default() += 1;
                    let (d, w) = rm.window(g);
                    assert!(rm.den * w <= rm.reserve * rm.den + rm.num * d, "overdraw");
                } else {
                    assert!(!w.is_withdrawn(), "granted with balance {before}");
                }
                // Throttle: charge, then above half.
                tokens = tokens.saturating_sub(1000);
                let w = RetryBudget::try_withdraw(&throttle, class);
                assert_eq!(w.is_withdrawn(), tokens > t_max / 2);
                // Quota: priced by class.
                let cost = if timeout { timeout_cost } else { retry_cost };
                let w = RetryBudget::try_withdraw(&quota, class);
                if cap >= cost {
                    cap -= cost;
                    assert_eq!(
                        w,
                        Withdrawal::Withdrawn {
                            cost,
                            balance: cap as i64
                        }
                    );
                } else {
                    assert!(!w.is_withdrawn());
                }
            }
            Op::Success { last } => {
                RetryBudget::on_success(&ratio, u64::from(last));
                RetryBudget::on_success(&throttle, u64::from(last));
                tokens = (tokens + ratio_milli).min(t_max);
                RetryBudget::on_success(&quota, u64::from(last));
                let refund = if last == 0 { 1 } else { u64::from(last) };
                cap = (cap + refund).min(q_max);
            }
            Op::Failure => {
                RetryBudget::charge_failure(&ratio, FailureClass::Normal);
                RetryBudget::charge_failure(&throttle, FailureClass::Normal);
                tokens = tokens.saturating_sub(1000);
                RetryBudget::charge_failure(&quota, FailureClass::Normal);
            }
            Op::Advance { micros } => {
                clock.advance(Duration::from_micros(u64::from(micros % 50_000)));
            }
        }
        let g = generation(&clock);
        assert_eq!(i128::from(ratio.balance()), rm.balance(g));
        assert_eq!(throttle.milli_tokens(), tokens);
        assert!(tokens <= t_max);
        assert_eq!(quota.capacity(), cap);
        assert!(cap <= q_max);
    }
});
