//! Retry: backoff, classification, deadlines, budgets (exact, also under 16 threads), the
//! policy's decisions and metrics, and model-based checks of every budget.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use proptest::prelude::*;
use weir::policy::Mode;
use weir::policy::retry::{
    AttemptInfo, Backoff, BudgetCheck, Classifier, ErrorKind, FailureClass, GiveUpReason, Jitter,
    NotRetryable, Outcome, RatioBudget, RetryBudget, RetryDecision, RetryPolicy,
    RetryPolicyBuilder, RetryPolicyError, RetryQuota, RetryThrottle, Retryable,
    Strategy as BackoffStrategy, Withdrawal,
};
use weir::{ManualClock, Registry, SharedClock};

const MS: Duration = Duration::from_millis(1);
const THREADS: usize = 16;

fn shared(clock: &ManualClock) -> SharedClock {
    Arc::new(clock.clone())
}

fn ratio_budget(clock: &ManualClock, ratio: f64, min_per_sec: u32) -> RatioBudget {
    RatioBudget::builder()
        .ratio(ratio)
        .min_retries_per_sec(min_per_sec)
        .clock(shared(clock))
        .build()
        .unwrap()
}

fn drain(b: &RatioBudget) -> u64 {
    let mut n = 0;
    while b.try_withdraw().is_withdrawn() {
        n += 1;
    }
    n
}

// === ratio budget: exact ratios ===

/// Ratios, and the same in thousandths, so the tests compute the expectation in integers.
const RATIOS: [(f64, u64); 5] = [(0.1, 100), (0.2, 200), (0.6, 600), (1.0, 1000), (2.0, 2000)];

#[test]
fn ratio_budget_honours_ratios_exactly_in_bulk() {
    for (ratio, milli) in RATIOS {
        for requests in [1u64, 7, 999, 10_000, 123_457] {
            let clock = ManualClock::new();
            let b = ratio_budget(&clock, ratio, 0);
            for _ in 0..requests {
                b.deposit();
            }
            assert_eq!(
                drain(&b),
                requests * milli / 1000,
                "ratio {ratio}, {requests} requests"
            );
            assert!(!b.try_withdraw().is_withdrawn());
        }
    }
}

#[test]
fn ratio_budget_honours_ratios_exactly_request_by_request() {
    for (ratio, milli) in RATIOS {
        let clock = ManualClock::new();
        let b = ratio_budget(&clock, ratio, 0);
        let mut granted = 0;
        for n in 1..=20_000u64 {
            b.deposit();
            granted += drain(&b);
            assert_eq!(
                granted,
                n * milli / 1000,
                "ratio {ratio} after {n} requests"
            );
        }
    }
}

#[test]
fn ratio_budget_reserve_and_exact_fractions() {
    let clock = ManualClock::new();
    // 5 per second over the default 10 s window: 50 retries with no requests at all.
    let b = ratio_budget(&clock, 0.6, 5);
    assert_eq!(b.reserve_retries(), 50);
    for _ in 0..1000 {
        b.deposit();
    }
    assert_eq!(drain(&b), 650);
    // 1/3, which no decimal ratio states exactly.
    let b = RatioBudget::builder()
        .ratio_parts(1, 3)
        .min_retries_per_sec(0)
        .clock(shared(&clock))
        .build()
        .unwrap();
    for _ in 0..3_000 {
        b.deposit();
    }
    assert_eq!(drain(&b), 1000);
    // A ratio of 0 leaves only the reserve.
    let b = ratio_budget(&clock, 0.0, 1);
    for _ in 0..1000 {
        b.deposit();
    }
    assert_eq!(drain(&b), 10);
}

#[test]
fn ratio_budget_window_rolls_slot_by_slot() {
    let clock = ManualClock::new();
    let b = ratio_budget(&clock, 1.0, 0); // 10 s window, 1 s slots
    for s in 0..10 {
        clock.set(Duration::from_secs(s)).unwrap();
        b.deposit();
    }
    assert_eq!(b.available(), 10);
    clock.set(Duration::from_secs(12)).unwrap(); // the window is 3..=12 s: 3 deposits left it
    assert_eq!(b.available(), 7);
    assert_eq!(drain(&b), 7);
    clock.set(Duration::from_secs(25)).unwrap(); // everything expired, retries too
    assert_eq!(b.balance(), 0);
}

// === 16 threads hammering each budget ===

#[test]
fn ratio_budget_sixteen_threads_withdraw_exactly_what_is_allowed() {
    let clock = ManualClock::new();
    let b = Arc::new(ratio_budget(&clock, 0.6, 3)); // reserve 30
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..1_000 {
                    b.deposit();
                }
            });
        }
    });
    let granted = AtomicU64::new(0);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| granted.fetch_add(drain(&b), Ordering::Relaxed));
        }
    });
    assert_eq!(granted.into_inner(), 30 + 16_000 * 6 / 10);
}

#[test]
fn ratio_budget_sixteen_threads_mixed_never_overdraw() {
    // The default stripes (one per hardware thread), one stripe, and 16 (one per thread here,
    // whatever the machine).
    let stripes = [None, Some(1), Some(16)];
    for ((ratio, milli), stripes) in RATIOS.into_iter().zip(stripes.into_iter().cycle()) {
        let clock = ManualClock::new();
        let mut builder = RatioBudget::builder()
            .ratio(ratio)
            .min_retries_per_sec(0)
            .clock(shared(&clock));
        if let Some(n) = stripes {
            builder = builder.stripes(n);
        }
        let b = Arc::new(builder.build().unwrap());
        let granted = AtomicU64::new(0);
        thread::scope(|s| {
            for t in 0..THREADS {
                let (b, granted) = (&b, &granted);
                s.spawn(move || {
                    let mut mine = 0;
                    for i in 0..2_000 {
                        b.deposit();
                        if (i + t) % 3 != 0 && b.try_withdraw().is_withdrawn() {
                            mine += 1;
                        }
                    }
                    granted.fetch_add(mine, Ordering::Relaxed);
                });
            }
        });
        let deposits = (THREADS * 2_000) as u64;
        let allowed = deposits * milli / 1000;
        let concurrent = granted.into_inner();
        assert!(
            concurrent <= allowed,
            "ratio {ratio}: {concurrent} > {allowed}"
        );
        // Nothing was lost either: what is left is exactly the rest.
        assert_eq!(concurrent + drain(&b), allowed, "ratio {ratio}");
    }
}

#[test]
fn ratio_budget_threads_with_a_moving_clock_stay_consistent() {
    // A clock thread moves time across slots and whole windows while 16 threads deposit and
    // withdraw. With no reserve and ratio 1, retries are never granted beyond the requests.
    for stripes in [1, 16] {
        moving_clock_stays_consistent(stripes);
    }
}

fn moving_clock_stays_consistent(stripes: u32) {
    let clock = ManualClock::new();
    let b = Arc::new(
        RatioBudget::builder()
            .window(4 * MS)
            .slots(4)
            .ratio(1.0)
            .min_retries_per_sec(0)
            .stripes(stripes)
            .clock(shared(&clock))
            .build()
            .unwrap(),
    );
    let granted = AtomicU64::new(0);
    thread::scope(|s| {
        let c = clock.clone();
        s.spawn(move || {
            for i in 0..2_000u64 {
                c.advance(Duration::from_micros(100 + (i % 7) * 300));
                thread::yield_now();
            }
        });
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..2_000 {
                    b.deposit();
                    if b.try_withdraw().is_withdrawn() {
                        granted.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = b.try_withdraw();
                }
            });
        }
    });
    assert!(granted.into_inner() <= (THREADS * 2_000) as u64);
    assert!(b.balance() >= -((THREADS * 2_000) as i64));
}

#[test]
fn throttle_sixteen_threads_exact() {
    // Only failures: exactly 49 of them may be retried (tokens 99..=51 are above 50).
    let t = Arc::new(RetryThrottle::builder().max_tokens(100).build().unwrap());
    let allowed = AtomicU64::new(0);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..100 {
                    if t.try_withdraw().is_withdrawn() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(allowed.into_inner(), 49);
    assert_eq!(t.milli_tokens(), 0);

    // Failures and successes that never reach either bound: the count is exact, and every
    // failure is allowed (the count stays above half).
    let t = Arc::new(
        RetryThrottle::builder()
            .max_tokens(1000)
            .token_ratio(0.5)
            .build()
            .unwrap(),
    );
    for _ in 0..100 {
        t.record_failure(); // 900 tokens
    }
    let allowed = AtomicU64::new(0);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..10 {
                    if t.try_withdraw().is_withdrawn() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                    t.on_success();
                }
            });
        }
    });
    assert_eq!(allowed.into_inner(), 160);
    assert_eq!(t.milli_tokens(), 900_000 - 160_000 + 80_000);
}

#[test]
fn quota_sixteen_threads_exact() {
    let q = Arc::new(RetryQuota::builder().build().unwrap());
    let granted = AtomicU64::new(0);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..100 {
                    if q.try_withdraw(FailureClass::Normal).is_withdrawn() {
                        granted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(granted.into_inner(), 100);
    assert_eq!(q.capacity(), 0);

    // Mixed prices and refunds: what was withdrawn and what was refunded add up exactly.
    let q = Arc::new(RetryQuota::builder().build().unwrap());
    let withdrawn = AtomicU64::new(0);
    let refunded = AtomicU64::new(0);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (q, withdrawn, refunded) = (&q, &withdrawn, &refunded);
            s.spawn(move || {
                for i in 0..200 {
                    let class = if (i + t) % 2 == 0 {
                        FailureClass::Normal
                    } else {
                        FailureClass::Timeout
                    };
                    let w = q.try_withdraw(class);
                    withdrawn.fetch_add(w.cost(), Ordering::Relaxed);
                    if w.is_withdrawn() && i % 5 == 0 {
                        // Never past the cap: it returns at most what this thread just took.
                        q.refund(w.cost());
                        refunded.fetch_add(w.cost(), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let (w, r) = (withdrawn.into_inner(), refunded.into_inner());
    assert_eq!(q.capacity() + w, 500 + r);
}

// === the policy ===

fn policy(clock: &ManualClock) -> RetryPolicyBuilder {
    RetryPolicy::builder().clock(shared(clock)).rng_seed(42)
}

#[test]
fn policy_follows_lifts_defaults() {
    let clock = ManualClock::new();
    let p = policy(&clock).build().unwrap();
    let mut r = p.begin();
    assert_eq!(p.attempt_timeout(&r), Duration::from_secs(30));
    let d = p.on_failure(&mut r, &Outcome::Status(503));
    assert_eq!(
        d,
        RetryDecision::Retry {
            delay: 100 * MS,
            attempt: 2,
            attempt_timeout: Duration::from_secs(30),
            reason: Retryable::AllowedCode { code: 503 },
            budget: BudgetCheck::Unlimited,
        }
    );
    clock.advance(100 * MS);
    assert_eq!(
        p.on_failure(&mut r, &Outcome::timeout("read")).delay(),
        Some(200 * MS)
    );
    clock.advance(200 * MS);
    assert_eq!(
        p.on_failure(&mut r, &Outcome::Status(500)),
        RetryDecision::GiveUp {
            reason: GiveUpReason::MaxAttempts {
                attempts: 3,
                max_attempts: 3
            }
        }
    );
    assert!(r.is_finished());
    assert_eq!(r.attempts(), 3);
    assert_eq!(r.total_delay(), 300 * MS);
    assert_eq!(r.started_at(), Duration::ZERO);
    assert_eq!(
        p.on_failure(&mut r, &Outcome::Status(500)),
        RetryDecision::GiveUp {
            reason: GiveUpReason::AlreadyFinished
        }
    );
    p.on_success(&mut r); // ignored
    assert_eq!(r.attempts(), 3);
}

#[test]
fn policy_gives_up_on_non_retryable_outcomes() {
    let clock = ManualClock::new();
    let p = policy(&clock).build().unwrap();
    let cases: [(Outcome<'_>, NotRetryable); 3] = [
        (Outcome::Status(404), NotRetryable::DeniedCode { code: 404 }),
        (
            Outcome::Status(302),
            NotRetryable::CodeNotAllowed { code: 302 },
        ),
        (
            Outcome::Error {
                kind: ErrorKind::Validation,
                class: "bad",
            },
            NotRetryable::Condition,
        ),
    ];
    for (outcome, rule) in cases {
        let mut r = p.begin();
        assert_eq!(
            p.on_failure(&mut r, &outcome),
            RetryDecision::GiveUp {
                reason: GiveUpReason::NotRetryable { rule }
            }
        );
    }
}

#[test]
fn policy_deadlines() {
    let clock = ManualClock::new();
    let p = policy(&clock)
        .max_attempts(10)
        .backoff(
            Backoff::builder()
                .strategy(BackoffStrategy::Fixed)
                .initial(100 * MS)
                .build()
                .unwrap(),
        )
        .per_attempt_timeout(300 * MS)
        .total_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let timeout_of = |d: RetryDecision| match d {
        RetryDecision::Retry {
            attempt_timeout, ..
        } => attempt_timeout,
        d => panic!("{d:?}"),
    };
    let mut r = p.begin();
    clock.advance(500 * MS);
    assert_eq!(p.attempt_timeout(&r), 300 * MS);
    assert_eq!(
        timeout_of(p.on_failure(&mut r, &Outcome::Status(503))),
        300 * MS
    );
    clock.advance(300 * MS); // 800 ms: 800 + 100 leaves 100 ms for the attempt
    assert_eq!(
        timeout_of(p.on_failure(&mut r, &Outcome::Status(503))),
        100 * MS
    );
    clock.advance(100 * MS); // 900 ms: 900 + 100 = 1 s is not past the total (lift's `>`)
    assert_eq!(
        timeout_of(p.on_failure(&mut r, &Outcome::Status(503))),
        Duration::ZERO
    );
    clock.advance(MS);
    assert_eq!(p.attempt_timeout(&r), 99 * MS);
    assert_eq!(
        p.on_failure(&mut r, &Outcome::Status(503)),
        RetryDecision::GiveUp {
            reason: GiveUpReason::DeadlineExceeded {
                elapsed: 901 * MS,
                next_delay: 100 * MS,
                total: Duration::from_secs(1)
            }
        }
    );
    clock.advance(Duration::from_secs(5));
    assert_eq!(p.attempt_timeout(&r), Duration::ZERO);
}

#[test]
fn policy_decide_is_usable_without_request_state() {
    let clock = ManualClock::new();
    let p = policy(&clock)
        .backoff(
            Backoff::builder()
                .strategy(BackoffStrategy::DecorrelatedJitter { multiplier: 3.0 })
                .build()
                .unwrap(),
        )
        .max_attempts(50)
        .build()
        .unwrap();
    let mut previous = Duration::ZERO;
    for attempt in 1..20 {
        let info = AttemptInfo {
            attempt,
            elapsed: Duration::ZERO,
            previous_delay: previous,
        };
        let d = p
            .decide(info, &Outcome::error("io"))
            .delay()
            .expect("retry");
        let bound = if previous.is_zero() {
            100 * MS
        } else {
            previous
        };
        assert!(d >= 100 * MS && d <= (bound * 3).min(Duration::from_secs(30)));
        previous = d;
    }
}

#[test]
fn seeded_policies_repeat_their_delays() {
    let clock = ManualClock::new();
    let make = || {
        policy(&clock)
            .max_attempts(20)
            .backoff(Backoff::builder().jitter(Jitter::Full).build().unwrap())
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    let (mut ra, mut rb) = (a.begin(), b.begin());
    for _ in 0..19 {
        let da = a.on_failure(&mut ra, &Outcome::Status(503)).delay();
        let db = b.on_failure(&mut rb, &Outcome::Status(503)).delay();
        assert!(da.is_some());
        assert_eq!(da, db);
    }
}

#[test]
fn policy_budget_enforce_and_shadow() {
    let clock = ManualClock::new();
    let quota = Arc::new(RetryQuota::builder().initial_capacity(5).build().unwrap());
    let p = policy(&clock).budget(quota.clone()).build().unwrap();
    let mut r1 = p.begin();
    match p.on_failure(&mut r1, &Outcome::Status(503)) {
        RetryDecision::Retry { budget, .. } => assert_eq!(
            budget,
            BudgetCheck::Withdrawn {
                cost: 5,
                balance: 0
            }
        ),
        d => panic!("{d:?}"),
    }
    let mut r2 = p.begin();
    assert_eq!(
        p.on_failure(&mut r2, &Outcome::Status(503)),
        RetryDecision::GiveUp {
            reason: GiveUpReason::BudgetExhausted {
                balance: 0,
                required: 5
            }
        }
    );
    // The retried request succeeds: its retry's cost comes back.
    p.on_success(&mut r1);
    assert_eq!(quota.capacity(), 5);

    let empty = Arc::new(RetryQuota::builder().initial_capacity(0).build().unwrap());
    let shadow = policy(&clock)
        .budget(empty.clone())
        .mode(Mode::Shadow)
        .build()
        .unwrap();
    let mut r = shadow.begin();
    match shadow.on_failure(&mut r, &Outcome::timeout("t")) {
        RetryDecision::Retry { budget, .. } => assert_eq!(
            budget,
            BudgetCheck::ShadowExhausted {
                balance: 0,
                required: 10
            }
        ),
        d => panic!("{d:?}"),
    }
    assert_eq!(shadow.mode(), Mode::Shadow);
    assert_eq!(empty.capacity(), 0);
}

#[test]
fn policy_charges_grpc_throttle_for_every_retryable_failure() {
    let clock = ManualClock::new();
    let t = Arc::new(RetryThrottle::builder().max_tokens(10).build().unwrap());
    let p = policy(&clock).budget(t.clone()).build().unwrap();
    let mut r = p.begin();
    for _ in 0..3 {
        let _ = p.on_failure(&mut r, &Outcome::Status(503));
    }
    // Two retries withdrew a token each; the third failure hit the limit and was charged too.
    assert_eq!(t.milli_tokens(), 7_000);
    let mut r = p.begin();
    let _ = p.on_failure(&mut r, &Outcome::Status(404)); // not retryable: not charged
    assert_eq!(t.milli_tokens(), 7_000);
    p.on_success(&mut r); // finished already: nothing
    let mut r = p.begin();
    p.on_success(&mut r);
    assert_eq!(t.milli_tokens(), 7_100);
}

#[test]
fn policy_records_lifts_stats() {
    let clock = ManualClock::new();
    let registry = Registry::new();
    let budget = Arc::new(RetryQuota::builder().initial_capacity(10).build().unwrap());
    let p = policy(&clock)
        .registry(&registry)
        .name("users")
        .budget(budget)
        .build()
        .unwrap();
    // 1: succeeds at once. 2: one retry, then succeeds. 3: retried until the limit.
    // 4: not retryable. 5: budget exhausted.
    let mut r = p.begin();
    p.on_success(&mut r);
    let mut r = p.begin();
    let _ = p.on_failure(&mut r, &Outcome::Status(503));
    p.on_success(&mut r);
    let mut r = p.begin();
    for _ in 0..3 {
        let _ = p.on_failure(&mut r, &Outcome::Status(503));
    }
    let mut r = p.begin();
    let _ = p.on_failure(&mut r, &Outcome::Status(400));
    let mut r = p.begin();
    assert!(matches!(
        p.on_failure(&mut r, &Outcome::timeout("t")),
        RetryDecision::GiveUp {
            reason: GiveUpReason::BudgetExhausted { .. }
        }
    ));
    let s = registry.snapshot();
    let c = |name: &str| s.counter(name, &["users"]);
    assert_eq!(c("retry_requests_total"), Some(5));
    assert_eq!(c("retry_attempts_total"), Some(1 + 2 + 3 + 1 + 1));
    assert_eq!(c("retry_retried_requests_total"), Some(2));
    assert_eq!(c("retry_successful_retries_total"), Some(1));
    assert_eq!(c("retry_failed_retries_total"), Some(1));
    assert_eq!(c("retry_budget_exhausted_total"), Some(1));
    let g = |reason: &str| s.counter("retry_give_ups_total", &["users", reason]);
    assert_eq!(g("max_attempts"), Some(1));
    assert_eq!(g("not_retryable"), Some(1));
    assert_eq!(g("budget_exhausted"), Some(1));
    assert_eq!(g("deadline_exceeded"), Some(0));
    let h = s.histogram("retry_delay_nanoseconds", &["users"]).unwrap();
    assert_eq!(h.count(), 3); // 100 ms, 100 ms, 200 ms
    assert_eq!(h.sum(), 400_000_000);
}

#[test]
fn policy_builder_rejects_bad_settings() {
    let clock = ManualClock::new();
    assert_eq!(
        policy(&clock).max_attempts(0).build().unwrap_err(),
        RetryPolicyError::ZeroMaxAttempts
    );
    for e in [
        policy(&clock).per_attempt_timeout(Duration::ZERO).build(),
        policy(&clock).total_timeout(Duration::ZERO).build(),
    ] {
        assert!(matches!(e, Err(RetryPolicyError::ZeroTimeout { .. })));
    }
    let registry = Registry::new();
    registry
        .gauge("retry_requests_total", "not a counter", &[])
        .unwrap();
    let e = policy(&clock).registry(&registry).build().unwrap_err();
    assert!(matches!(e, RetryPolicyError::Registry(_)));
    assert!(std::error::Error::source(&e).is_some());
    assert!(!e.to_string().is_empty());
    // Huge durations do not panic.
    let p = policy(&clock)
        .total_timeout(Duration::MAX)
        .per_attempt_timeout(Duration::MAX)
        .max_attempts(u32::MAX)
        .backoff(
            Backoff::builder()
                .initial(Duration::MAX)
                .max(Duration::MAX)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut r = p.begin();
    assert!(p.on_failure(&mut r, &Outcome::Status(503)).is_retry());
    assert!(!format!("{p:?}").is_empty());
}

#[test]
fn policy_sixteen_threads_share_a_ratio_budget() {
    let clock = ManualClock::new();
    let registry = Registry::new();
    let budget = Arc::new(ratio_budget(&clock, 0.2, 0));
    let p = policy(&clock)
        .registry(&registry)
        .budget(budget.clone())
        .max_attempts(4)
        .build()
        .unwrap();
    let retries = AtomicU64::new(0);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (p, retries) = (&p, &retries);
            s.spawn(move || {
                for i in 0..500 {
                    let mut r = p.begin();
                    // Every third request fails until the policy gives up.
                    if (i + t) % 3 == 0 {
                        while let RetryDecision::Retry { .. } =
                            p.on_failure(&mut r, &Outcome::Status(503))
                        {
                            retries.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        p.on_success(&mut r);
                    }
                }
            });
        }
    });
    let requests = (THREADS * 500) as u64;
    let granted = retries.into_inner();
    assert!(
        granted <= requests / 5,
        "{granted} retries for {requests} requests"
    );
    let s = registry.snapshot();
    assert_eq!(
        s.counter("retry_requests_total", &["default"]),
        Some(requests)
    );
    let h = s
        .histogram("retry_delay_nanoseconds", &["default"])
        .unwrap();
    assert_eq!(h.count(), granted);
    // The budget's own view agrees: it granted exactly what the policy reports.
    assert_eq!(granted + drain(&budget), requests / 5);
}

#[test]
fn classifier_can_be_customised_in_the_policy() {
    let clock = ManualClock::new();
    let p = policy(&clock)
        .classifier(
            Classifier::builder()
                .allow_class("Transient")
                .condition(|o| Classifier::default_condition(o) && *o != Outcome::Status(500))
                .build(),
        )
        .build()
        .unwrap();
    let mut r = p.begin();
    assert!(
        p.on_failure(&mut r, &Outcome::error("Transient"))
            .is_retry()
    );
    let mut r = p.begin();
    assert!(!p.on_failure(&mut r, &Outcome::error("Other")).is_retry());
    let mut r = p.begin();
    assert!(!p.on_failure(&mut r, &Outcome::Status(500)).is_retry());
    assert_eq!(p.max_attempts(), 3);
    assert!(p.budget().is_none());
    assert_eq!(p.backoff().initial(), 100 * MS);
    assert!(
        p.classifier()
            .classify(&Outcome::Status(502))
            .is_retryable()
    );
}

// === model-based: each budget against a plain sequential model ===

#[derive(Clone, Debug)]
enum Op {
    Deposit,
    Withdraw(bool),
    Success(u8),
    Failure,
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Deposit),
        3 => any::<bool>().prop_map(Op::Withdraw),
        1 => any::<u8>().prop_map(Op::Success),
        1 => Just(Op::Failure),
        1 => (0u16..3000).prop_map(Op::Advance),
    ]
}

/// The ratio budget's formula, per generation.
struct RatioModel {
    slots: u64,
    width_ms: u64,
    num: i128,
    den: i128,
    reserve: i128,
    deposits: BTreeMap<u64, i128>,
    retries: BTreeMap<u64, i128>,
}

impl RatioModel {
    fn window(&self, g: u64) -> (i128, i128) {
        let lo = (g + 1).saturating_sub(self.slots);
        let sum = |m: &BTreeMap<u64, i128>| m.range(lo..=g).map(|(_, v)| v).sum::<i128>();
        (sum(&self.deposits), sum(&self.retries))
    }
    fn balance(&self, g: u64) -> i128 {
        let (d, w) = self.window(g);
        self.reserve * self.den + self.num * d - self.den * w
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn ratio_budget_matches_its_formula(
        slots in 1u32..6,
        width_ms in 1u64..50,
        num in 0u32..20,
        den in 1u32..20,
        min_per_sec in 0u32..50,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let clock = ManualClock::new();
        let b = RatioBudget::builder()
            .window(Duration::from_millis(width_ms * u64::from(slots)))
            .slots(slots)
            .ratio_parts(num, den)
            .min_retries_per_sec(min_per_sec)
            .clock(shared(&clock))
            .build()
            .unwrap();
        let mut m = RatioModel {
            slots: u64::from(slots),
            width_ms,
            num: i128::from(b.deposit_units()),
            den: i128::from(b.retry_cost()),
            reserve: i128::from(b.reserve_retries()),
            deposits: BTreeMap::new(),
            retries: BTreeMap::new(),
        };
        prop_assert_eq!(
            m.reserve,
            i128::from(min_per_sec) * i128::from(width_ms * u64::from(slots)) / 1000
        );
        for op in ops {
            let g = clock.now().as_millis() as u64 / m.width_ms;
            match op {
                Op::Deposit => {
                    b.deposit();
                    *m.deposits.entry(g).or_default() += 1;
                }
                Op::Withdraw(_) | Op::Failure => {
                    let before = m.balance(g);
                    let allowed = before >= m.den;
                    let w = b.try_withdraw();
                    prop_assert_eq!(w.is_withdrawn(), allowed, "balance {}", before);
                    if allowed {
                        *m.retries.entry(g).or_default() += 1;
                        prop_assert_eq!(
                            w,
                            Withdrawal::Withdrawn {
                                cost: m.den as u64,
                                balance: (before - m.den) as i64
                            }
                        );
                        let (d, w) = m.window(g);
                        prop_assert!(w <= m.reserve + m.num * d / m.den);
                    }
                }
                Op::Success(_) => RetryBudget::on_success(&b, 0),
                Op::Advance(ms) => {
                    clock.advance(Duration::from_millis(u64::from(ms)));
                }
            }
            let g = clock.now().as_millis() as u64 / m.width_ms;
            prop_assert_eq!(i128::from(b.balance()), m.balance(g));
        }
    }

    #[test]
    fn throttle_matches_its_model(
        max_tokens in 1u32..50,
        ratio_milli in 1u32..5000,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let ratio = f64::from(ratio_milli) / 1000.0;
        prop_assume!(ratio <= f64::from(max_tokens));
        let t = RetryThrottle::builder()
            .max_tokens(max_tokens)
            .token_ratio(ratio)
            .build()
            .unwrap();
        let max = u64::from(max_tokens) * 1000;
        let mut tokens = max;
        for op in ops {
            match op {
                Op::Withdraw(_) | Op::Deposit => {
                    tokens = tokens.saturating_sub(1000);
                    prop_assert_eq!(t.try_withdraw().is_withdrawn(), tokens > max / 2);
                }
                Op::Failure => {
                    tokens = tokens.saturating_sub(1000);
                    t.record_failure();
                }
                Op::Success(_) => {
                    tokens = (tokens + u64::from(ratio_milli)).min(max);
                    t.on_success();
                }
                Op::Advance(_) => {}
            }
            prop_assert_eq!(t.milli_tokens(), tokens);
        }
    }

    #[test]
    fn quota_matches_its_model(
        capacity in 0u32..200,
        retry_cost in 1u32..20,
        timeout_cost in 1u32..40,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let q = RetryQuota::builder()
            .initial_capacity(capacity)
            .retry_cost(retry_cost)
            .timeout_cost(timeout_cost)
            .build()
            .unwrap();
        let max = u64::from(capacity);
        let mut cap = max;
        for op in ops {
            match op {
                Op::Withdraw(timeout) => {
                    let (class, cost) = if timeout {
                        (FailureClass::Timeout, u64::from(timeout_cost))
                    } else {
                        (FailureClass::Normal, u64::from(retry_cost))
                    };
                    let ok = cap >= cost;
                    if ok {
                        cap -= cost;
                    }
                    prop_assert_eq!(q.try_withdraw(class).is_withdrawn(), ok);
                }
                Op::Success(last) => {
                    cap = (cap + if last == 0 { 1 } else { u64::from(last) }).min(max);
                    q.on_success(u64::from(last));
                }
                Op::Deposit | Op::Failure | Op::Advance(_) => {
                    RetryBudget::deposit(&q);
                    RetryBudget::charge_failure(&q, FailureClass::Normal);
                }
            }
            prop_assert_eq!(q.capacity(), cap);
        }
    }
}

/// Regression: a withdrawal that lost its compare-and-swap to another retry used to re-check
/// the new retry count against deposits it had read before, and could refuse a retry that
/// deposits made meanwhile covered. With the clock frozen, ratio 1/1 and no reserve, every
/// request deposits and then withdraws once: each withdrawal is covered by its own deposit, so
/// a sequence grants every one, and so must any interleaving.
#[test]
fn ratio_budget_never_refuses_a_covered_retry_under_contention() {
    use std::sync::Arc;
    use weir::ManualClock;
    use weir::policy::retry::RatioBudget;
    // Deposits on one shared stripe, on one stripe per thread, and on fewer stripes than
    // threads (threads sharing a stripe).
    for stripes in [1, 4, 2] {
        let clock = ManualClock::new();
        let budget = Arc::new(
            RatioBudget::builder()
                .ratio_parts(1, 1)
                .min_retries_per_sec(0)
                .stripes(stripes)
                .clock(Arc::new(clock))
                .build()
                .unwrap(),
        );
        let refused = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200_000 {
                        budget.deposit();
                        if !matches!(
                            budget.try_withdraw(),
                            weir::policy::retry::Withdrawal::Withdrawn { .. }
                        ) {
                            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(refused.into_inner(), 0, "{stripes} stripes");
        assert_eq!(budget.balance(), 0, "{stripes} stripes");
        assert!(!budget.try_withdraw().is_withdrawn(), "{stripes} stripes");
    }
}

/// Deposits from many threads (on their own stripes) fund exactly as many retries as they
/// deposited, no more and no fewer, when the retries come from other threads at the same time
/// and after: with the clock frozen, ratio 1/1 and no reserve, the grants total the deposits.
#[test]
fn ratio_budget_striped_deposits_fund_exactly_their_count() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use weir::ManualClock;
    use weir::policy::retry::RatioBudget;
    const DEPOSITORS: u64 = 4;
    const EACH: u64 = 100_000;
    let budget = Arc::new(
        RatioBudget::builder()
            .ratio_parts(1, 1)
            .min_retries_per_sec(0)
            .stripes(8)
            .clock(Arc::new(ManualClock::new()))
            .build()
            .unwrap(),
    );
    let granted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..DEPOSITORS {
            s.spawn(|| {
                for _ in 0..EACH {
                    budget.deposit();
                }
            });
        }
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..EACH {
                    if budget.try_withdraw().is_withdrawn() {
                        granted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let during = granted.load(Ordering::Relaxed);
    assert!(during <= DEPOSITORS * EACH);
    let mut after = 0;
    while budget.try_withdraw().is_withdrawn() {
        after += 1;
    }
    assert_eq!(during + after, DEPOSITORS * EACH);
    assert_eq!(budget.balance(), 0);
}

/// Successes at the ceiling change nothing (they only read the count), and successes below it
/// add exactly their share, up to the ceiling: for the gRPC throttle and the AWS quota alike.
#[test]
fn successes_at_the_ceiling_change_nothing() {
    use weir::policy::retry::{FailureClass, RetryQuota, RetryThrottle};
    let t = RetryThrottle::builder()
        .max_tokens(10)
        .token_ratio(0.4)
        .build()
        .unwrap();
    t.on_success();
    assert_eq!(t.milli_tokens(), 10_000);
    t.record_failure();
    assert_eq!(t.milli_tokens(), 9_000);
    t.on_success();
    t.on_success();
    assert_eq!(t.milli_tokens(), 9_800);
    t.on_success();
    assert_eq!(t.milli_tokens(), 10_000);
    t.on_success();
    assert_eq!(t.milli_tokens(), 10_000);

    let q = RetryQuota::builder().build().unwrap();
    let full = q.capacity();
    q.on_success(0);
    assert_eq!(q.capacity(), full);
    assert!(q.try_withdraw(FailureClass::Normal).is_withdrawn());
    let after = q.capacity();
    assert!(after < full);
    q.on_success(0);
    assert_eq!(q.capacity(), (after + 1).min(full));
    q.refund(full);
    assert_eq!(q.capacity(), full);
    q.refund(0);
    assert_eq!(q.capacity(), full);
}
