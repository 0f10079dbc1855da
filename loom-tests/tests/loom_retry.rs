//! Retry budgets: concurrent withdrawals, deposits, refunds and clock movement never overdraw,
//! and give the totals some sequential order would.
#![cfg(weir_loom)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{model, spawn};
use weir::ManualClock;
use weir::policy::retry::{FailureClass, RatioBudget, RetryQuota, RetryThrottle, Withdrawal};

const MS: Duration = Duration::from_millis(1);

/// A ratio budget with a 2 ms window in two 1 ms slots, ratio 1, no reserve, its deposits on
/// one stripe.
fn ratio_budget(clock: &ManualClock) -> Arc<RatioBudget> {
    striped_budget(clock, 1)
}

/// `ratio_budget` with its deposits spread over `stripes` stripes: each modeled thread
/// deposits into its own slot's stripe.
fn striped_budget(clock: &ManualClock, stripes: u32) -> Arc<RatioBudget> {
    Arc::new(
        RatioBudget::builder()
            .window(2 * MS)
            .slots(2)
            .ratio(1.0)
            .min_retries_per_sec(0)
            .stripes(stripes)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap(),
    )
}

fn granted(w: Withdrawal) -> usize {
    usize::from(w.is_withdrawn())
}

/// Two retries race for a balance that covers one: exactly one is granted.
#[test]
fn ratio_concurrent_withdrawals_never_overdraw() {
    model("ratio_concurrent_withdrawals_never_overdraw", || {
        let clock = ManualClock::new();
        let b = ratio_budget(&clock);
        b.deposit();
        let b1 = b.clone();
        let t = spawn(move || granted(b1.try_withdraw()));
        let here = granted(b.try_withdraw());
        let there = t.join().unwrap();
        assert_eq!(here + there, 1);
        assert_eq!(b.balance(), 0);
    });
}

/// A deposit races a retry: the retry is granted iff it saw the deposit, and a retry after
/// both settles the total at exactly one.
#[test]
fn ratio_deposit_against_withdrawal() {
    model("ratio_deposit_against_withdrawal", || {
        let clock = ManualClock::new();
        let b = ratio_budget(&clock);
        let b1 = b.clone();
        let t = spawn(move || b1.deposit());
        let first = granted(b.try_withdraw());
        t.join().unwrap();
        let second = granted(b.try_withdraw());
        assert_eq!(first + second, 1);
    });
}

/// The window rotates while retries race: one thread may still work in generation 0 (a
/// straggler) while the other moves the clock into generation 1 and withdraws there. Both
/// windows hold the one deposit, so exactly one retry is granted in all: the newer generation
/// seals the older one's word before it counts it, so the straggler cannot add to it afterwards.
#[test]
fn ratio_rotation_seals_past_generation() {
    model("ratio_rotation_seals_past_generation", || {
        let clock = ManualClock::new();
        let b = ratio_budget(&clock);
        b.deposit();
        let (b1, c1) = (b.clone(), clock.clone());
        let t = spawn(move || {
            c1.advance(MS);
            granted(b1.try_withdraw())
        });
        let straggler = granted(b.try_withdraw());
        let newer = t.join().unwrap();
        assert!(straggler + newer <= 1, "overdraw: {straggler} + {newer}");
        // Generation 1 still holds the deposit: whatever is left is grantable, exactly once.
        let last = granted(b.try_withdraw());
        assert_eq!(straggler + newer + last, 1);
    });
}

/// A straggler whose own slot still holds an expired generation races a newer generation that
/// finds that slot expired: the newer one replaces it with a sealed, empty word of the
/// generation it stands for, so the straggler cannot reopen it behind its back.
#[test]
fn ratio_straggler_cannot_reopen_expired_slot() {
    model("ratio_straggler_cannot_reopen_expired_slot", || {
        let clock = ManualClock::new();
        let b = ratio_budget(&clock); // every word tagged with generation 0
        clock.set(5 * MS).unwrap();
        b.deposit(); // generation 5
        let (b1, c1) = (b.clone(), clock.clone());
        let t = spawn(move || {
            c1.advance(MS); // generation 6: its window is generations 5 and 6
            granted(b1.try_withdraw())
        });
        let straggler = granted(b.try_withdraw());
        let newer = t.join().unwrap();
        assert!(straggler + newer <= 1, "overdraw: {straggler} + {newer}");
        assert_eq!(straggler + newer + granted(b.try_withdraw()), 1);
    });
}

/// Three threads: two retries in generation 0 (or 1, if they read the clock late) and one that
/// moves the clock into generation 1 first. Two deposits fund exactly two retries in all.
#[test]
fn ratio_three_threads_across_a_slot_boundary() {
    model("ratio_three_threads_across_a_slot_boundary", || {
        let clock = ManualClock::new();
        let b = ratio_budget(&clock);
        b.deposit();
        b.deposit();
        let (b1, b2, c2) = (b.clone(), b.clone(), clock.clone());
        let t1 = spawn(move || granted(b1.try_withdraw()));
        let t2 = spawn(move || {
            c2.advance(MS);
            granted(b2.try_withdraw())
        });
        let here = granted(b.try_withdraw());
        let total = here + t1.join().unwrap() + t2.join().unwrap();
        assert!(total <= 2, "overdraw: {total}");
        assert_eq!(
            total + granted(b.try_withdraw()) + granted(b.try_withdraw()),
            2
        );
    });
}

/// A deposit races the clock moving to the next generation and a retry there: the deposit
/// lands in generation 0 or 1, both in the new window, so exactly one retry is fundable.
#[test]
fn ratio_deposit_across_a_slot_boundary() {
    model("ratio_deposit_across_a_slot_boundary", || {
        let clock = ManualClock::new();
        let b = ratio_budget(&clock);
        let (b1, c1) = (b.clone(), clock.clone());
        let t = spawn(move || {
            c1.advance(MS);
            granted(b1.try_withdraw())
        });
        b.deposit();
        let first = t.join().unwrap();
        assert_eq!(first + granted(b.try_withdraw()), 1);
    });
}

/// The clock jumps a whole window while a retry is in flight: the deposit expires, so a retry
/// in the new generation is refused whatever the older one did.
#[test]
fn ratio_rotation_expires_deposits() {
    model("ratio_rotation_expires_deposits", || {
        let clock = ManualClock::new();
        let b = ratio_budget(&clock);
        b.deposit();
        let (b1, c1) = (b.clone(), clock.clone());
        let t = spawn(move || {
            c1.advance(2 * MS);
            granted(b1.try_withdraw())
        });
        let old = granted(b.try_withdraw());
        let new = t.join().unwrap();
        assert!(old <= 1);
        assert_eq!(new, 0);
        assert!(!b.try_withdraw().is_withdrawn());
    });
}

/// Two requests, each a deposit then a retry, race with the clock frozen: each retry is
/// covered by its own deposit, so a sequence grants both, and so must every interleaving (a
/// retry that loses its compare-and-swap to the other rescans instead of refusing, and the
/// fast path never refuses); a third retry is refused. With `stripes` 2, each thread deposits
/// on its own stripe, and a refusal comes only from the full scan, which reads every stripe.
fn covered_retries_are_granted(stripes: u32) {
    let clock = ManualClock::new();
    let b = striped_budget(&clock, stripes);
    let b1 = b.clone();
    let t = spawn(move || {
        b1.deposit();
        granted(b1.try_withdraw())
    });
    b.deposit();
    let here = granted(b.try_withdraw());
    assert_eq!(here + t.join().unwrap(), 2);
    assert_eq!(granted(b.try_withdraw()), 0);
    assert_eq!(b.balance(), 0);
}

#[test]
fn ratio_covered_retries_are_never_refused() {
    model("ratio_covered_retries_are_never_refused", || {
        covered_retries_are_granted(1)
    });
}

/// The summary's deposits are a lower bound: a straggler's deposit into generation 0 may land
/// after a retry in generation 1 wrote the summary. Both deposits stay in the window of
/// generation 1, so exactly two retries are granted in all: the fast path falls short on the
/// stale summary and the full scan grants the second.
#[test]
fn ratio_straggler_deposit_after_the_summary() {
    model("ratio_straggler_deposit_after_the_summary", || {
        let clock = ManualClock::new();
        let b = ratio_budget(&clock);
        b.deposit();
        let b1 = b.clone();
        let t = spawn(move || b1.deposit()); // generation 0 or 1
        clock.advance(MS);
        let first = granted(b.try_withdraw());
        t.join().unwrap();
        let rest = granted(b.try_withdraw()) + granted(b.try_withdraw());
        assert_eq!(first, 1);
        assert_eq!(first + rest, 2);
    });
}

/// A deposit whose word is recycled by a later generation between its load and its
/// `fetch_add`: it counts in that generation (or, first, in its expired one), never twice.
/// Generation 2 shares generation 0's slot; its window holds its own deposit and maybe the
/// straggler's.
#[test]
fn ratio_deposit_races_recycling() {
    model("ratio_deposit_races_recycling", || {
        let clock = ManualClock::new();
        let b = ratio_budget(&clock);
        b.deposit(); // generation 0: the straggler's word holds a count of 1
        let (b1, c1) = (b.clone(), clock.clone());
        let t = spawn(move || {
            c1.advance(2 * MS);
            b1.deposit();
        });
        b.deposit(); // generation 0 or 2
        t.join().unwrap();
        let total =
            granted(b.try_withdraw()) + granted(b.try_withdraw()) + granted(b.try_withdraw());
        assert!(
            (1..=2).contains(&total),
            "{total} retries from at most 2 deposits"
        );
        assert_eq!(b.balance(), 0);
    });
}

/// gRPC throttle, 4 tokens (retries while above 2), ratio 0.5: two failures race a success.
/// Every interleaving ends as one of the sequential orders does.
#[test]
fn throttle_failures_against_success() {
    model("throttle_failures_against_success", || {
        let t = Arc::new(
            RetryThrottle::builder()
                .max_tokens(4)
                .token_ratio(0.5)
                .build()
                .unwrap(),
        );
        let (t1, t2) = (t.clone(), t.clone());
        let a = spawn(move || granted(t1.try_withdraw()));
        let s = spawn(move || t2.on_success());
        let here = granted(t.try_withdraw());
        let allowed = here + a.join().unwrap();
        s.join().unwrap();
        let end = t.milli_tokens();
        // success first (capped): 4000 -> 3000 ok -> 2000 no: (1, 2000)
        // success between: 3000 ok -> 3500 -> 2500 ok: (2, 2500)
        // success last: 3000 ok, 2000 no -> 2500: (1, 2500)
        assert!(
            [(1, 2000), (2, 2500), (1, 2500)].contains(&(allowed, end)),
            "allowed {allowed}, tokens {end}"
        );
    });
}

/// AWS quota of 10: a normal retry (5) and a timeout retry (10) race. Exactly one fits, and
/// the capacity left is 10 minus its cost.
#[test]
fn quota_withdrawals_never_overdraw() {
    model("quota_withdrawals_never_overdraw", || {
        let q = Arc::new(RetryQuota::builder().initial_capacity(10).build().unwrap());
        let q1 = q.clone();
        let a = spawn(move || q1.try_withdraw(FailureClass::Timeout).cost());
        let normal = q.try_withdraw(FailureClass::Normal).cost();
        let timeout = a.join().unwrap();
        assert!(
            (normal, timeout) == (5, 0) || (normal, timeout) == (0, 10),
            "{normal} + {timeout}"
        );
        assert_eq!(q.capacity(), 10 - normal - timeout);
    });
}

/// AWS quota: a refund races a withdrawal; the cap holds and nothing is lost.
#[test]
fn quota_refund_against_withdrawal() {
    model("quota_refund_against_withdrawal", || {
        let q = Arc::new(RetryQuota::builder().initial_capacity(10).build().unwrap());
        assert!(q.try_withdraw(FailureClass::Normal).is_withdrawn()); // 5 left
        let q1 = q.clone();
        let a = spawn(move || q1.refund(5));
        let got = q.try_withdraw(FailureClass::Timeout).cost();
        a.join().unwrap();
        // refund first: 10 -> 0 (granted); withdrawal first: refused, then 10.
        assert!(
            (got, q.capacity()) == (10, 0) || (got, q.capacity()) == (0, 10),
            "{got}, {}",
            q.capacity()
        );
    });
}

#[test]
fn ratio_striped_covered_retries_are_granted() {
    model("ratio_striped_covered_retries_are_granted", || {
        covered_retries_are_granted(2)
    });
}

/// One thread deposits twice on its stripe while the other retries three times from another
/// stripe, whose fast path reads the first stripe's word and remembers the sum it saw: no
/// interleaving grants more than the two deposits, and once both deposits are in, retries
/// are granted up to exactly two in all.
#[test]
fn ratio_striped_remembered_deposits_never_overdraw() {
    model("ratio_striped_remembered_deposits_never_overdraw", || {
        let clock = ManualClock::new();
        let b = striped_budget(&clock, 2);
        let b1 = b.clone();
        let t = spawn(move || {
            b1.deposit();
            b1.deposit();
        });
        let mut grants = 0;
        for _ in 0..3 {
            grants += granted(b.try_withdraw());
        }
        assert!(grants <= 2, "{grants} retries granted against 2 deposits");
        t.join().unwrap();
        while b.try_withdraw().is_withdrawn() {
            grants += 1;
        }
        assert_eq!(grants, 2);
        assert_eq!(b.balance(), 0);
    });
}

/// Striped, across a slot boundary: the other thread's two deposits (on its own stripe) land
/// in generation 0 or 1 while this thread moves to generation 1 and retries, reading the other
/// stripe through the summary, afresh, or from what its stripe remembered (tagged with its
/// generation). Every deposit is in generation 1's window, so exactly three retries are
/// granted in all, and the first is always covered by this thread's own deposit.
#[test]
fn ratio_striped_deposits_across_a_slot_boundary() {
    model("ratio_striped_deposits_across_a_slot_boundary", || {
        let clock = ManualClock::new();
        let b = striped_budget(&clock, 2);
        b.deposit();
        let b1 = b.clone();
        let t = spawn(move || {
            b1.deposit();
            b1.deposit();
        });
        clock.advance(MS);
        let first = granted(b.try_withdraw());
        let second = granted(b.try_withdraw());
        t.join().unwrap();
        let rest =
            granted(b.try_withdraw()) + granted(b.try_withdraw()) + granted(b.try_withdraw());
        assert_eq!(first, 1);
        assert_eq!(first + second + rest, 3);
        assert_eq!(b.balance(), 0);
    });
}
