//! Rate limits: exact admission under contention, GCRA arithmetic, windows, keyed precedence,
//! bounded memory, eviction, fail-open/closed, refunds, shadow mode, metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use weir::policy::Mode;
use weir::policy::ratelimit::{
    BuildError, Decision, FixedWindow, Gcra, Identity, KeyedLimiter, LimitReason, Quota,
    QuotaError, RateKey, Rule, SlidingWindow, WhenFull,
};
use weir::{ManualClock, Registry, SharedClock};

const THREADS: usize = 16;

fn manual() -> (ManualClock, SharedClock) {
    let c = ManualClock::new();
    (c.clone(), Arc::new(c))
}

/// Runs `f(thread index)` on THREADS threads started together; sums what they return.
fn hammer(f: impl Fn(usize) -> u64 + Sync) -> u64 {
    let barrier = Barrier::new(THREADS);
    thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

// === exactness under contention ===

#[test]
fn gcra_frozen_clock_admits_exactly_burst_across_16_threads() {
    for burst in [1, 7, 100, 1000] {
        let (_, clock) = manual();
        let limiter = Gcra::new(
            Quota::per_second(10).unwrap().with_burst(burst).unwrap(),
            clock,
        );
        let admitted = hammer(|_| {
            (0..2 * burst)
                .filter(|_| limiter.try_acquire().admits())
                .count() as u64
        });
        assert_eq!(admitted, burst, "burst {burst}");
        assert_eq!(limiter.remaining(), 0);
    }
}

#[test]
fn gcra_mixed_sizes_never_overdraw() {
    let (_, clock) = manual();
    let limiter = Gcra::new(
        Quota::per_second(1).unwrap().with_burst(500).unwrap(),
        clock,
    );
    let cells = hammer(|i| {
        let n = (i % 4 + 1) as u64;
        let mut got = 0;
        for _ in 0..200 {
            if let Decision::Allowed { .. } = limiter.try_acquire_n(n) {
                got += n;
            }
        }
        got
    });
    assert!(cells <= 500, "overdrawn: {cells}");
    // Whatever is left is less than the largest request that could still fail... and exact.
    assert_eq!(limiter.remaining(), 500 - cells);
}

#[test]
fn gcra_refunds_and_acquires_conserve_cells() {
    let (_, clock) = manual();
    let limiter = Gcra::new(Quota::per_second(1).unwrap().with_burst(64).unwrap(), clock);
    let taken = AtomicU64::new(0);
    let given = AtomicU64::new(0);
    hammer(|i| {
        for j in 0..500 {
            if limiter.try_acquire().admits() {
                taken.fetch_add(1, Ordering::Relaxed);
                if (i + j) % 3 == 0 {
                    given.fetch_add(limiter.refund(1), Ordering::Relaxed);
                }
            }
        }
        0
    });
    let used = taken.load(Ordering::Relaxed) - given.load(Ordering::Relaxed);
    assert!(used <= 64);
    assert_eq!(limiter.remaining(), 64 - used);
}

#[test]
fn sliding_and_fixed_windows_admit_exactly_limit_across_16_threads() {
    let (_, clock) = manual();
    let sliding = SlidingWindow::new(333, Duration::from_secs(1), clock.clone()).unwrap();
    let fixed = FixedWindow::new(333, Duration::from_secs(1), clock).unwrap();
    let (s, f) = (
        hammer(|_| (0..100).filter(|_| sliding.try_acquire().admits()).count() as u64),
        hammer(|_| (0..100).filter(|_| fixed.try_acquire().admits()).count() as u64),
    );
    assert_eq!((s, f), (333, 333));
}

#[test]
fn keyed_one_hot_key_admits_exactly_burst_across_16_threads() {
    let (_, clock) = manual();
    let limiter = KeyedLimiter::builder()
        .default_quota(Quota::per_hour(250).unwrap())
        .clock(clock)
        .build()
        .unwrap();
    let admitted = hammer(|_| {
        (0..100)
            .filter(|_| limiter.check(RateKey::user("hot")).admits())
            .count() as u64
    });
    assert_eq!(admitted, 250);
    assert_eq!(limiter.len(), 1);
}

#[test]
fn keyed_many_new_keys_never_exceed_max_keys() {
    let (_, clock) = manual();
    let limiter = KeyedLimiter::builder()
        .default_quota(Quota::per_hour(2).unwrap())
        .max_keys(100)
        .when_full(WhenFull::FailClosed)
        .clock(clock)
        .build()
        .unwrap();
    // 16 threads × 40 keys each (640 distinct keys, 3 requests each) into a 100-key table.
    let admitted = hammer(|t| {
        let mut n = 0;
        for k in 0..40 {
            let name = format!("user-{t}-{k}");
            for _ in 0..3 {
                if limiter.check(RateKey::user(&name)).admits() {
                    n += 1;
                }
            }
            assert!(limiter.len() <= 100);
        }
        n
    });
    assert_eq!(limiter.len(), 100);
    // Exactly the 100 keys that got in admit their burst of 2; every other request was refused.
    assert_eq!(admitted, 200);
}

#[test]
fn keyed_eviction_racing_acquisitions_loses_nothing() {
    // Frozen clock, idle timeout 0: a key is evictable whenever its bucket is full, which
    // refunds make happen all the time. If eviction could lose a bucket's state, `remaining`
    // would disagree with the ledger of cells taken and given back.
    let (_, clock) = manual();
    let limiter = KeyedLimiter::builder()
        .default_quota(Quota::per_second(1).unwrap().with_burst(8).unwrap())
        .idle_timeout(Duration::ZERO)
        .clock(clock)
        .build()
        .unwrap();
    let keys: Vec<String> = (0..64).map(|k| format!("k{k}")).collect();
    let ledger: Vec<AtomicU64> = (0..keys.len()).map(|_| AtomicU64::new(0)).collect();
    let evictions = AtomicU64::new(0);
    hammer(|t| {
        if t == 0 {
            for _ in 0..20_000 {
                evictions.fetch_add(limiter.evict_idle() as u64, Ordering::Relaxed);
            }
            return 0;
        }
        for j in 0..20_000 {
            let k = (t + j) % keys.len();
            let key = RateKey::user(&keys[k]);
            if limiter.check(key).admits() {
                ledger[k].fetch_add(1, Ordering::Relaxed);
                let back = limiter.refund(key, 1);
                ledger[k].fetch_sub(back, Ordering::Relaxed);
            }
        }
        0
    });
    for (k, name) in keys.iter().enumerate() {
        let used = ledger[k].load(Ordering::Relaxed);
        assert!(used <= 8);
        assert_eq!(
            limiter.remaining(RateKey::user(name)),
            8 - used,
            "key {name}"
        );
    }
    assert!(limiter.len() <= keys.len());
}

// === GCRA arithmetic ===

#[test]
fn gcra_numbers_for_headers() {
    let (clock, shared) = manual();
    // 10 per second, burst 3: T = 100 ms, tau = 300 ms.
    let limiter = Gcra::new(
        Quota::per_second(10).unwrap().with_burst(3).unwrap(),
        shared,
    );
    assert_eq!(
        limiter.try_acquire(),
        Decision::Allowed {
            remaining: 2,
            reset_after: Duration::from_millis(100),
            limit: 3
        }
    );
    assert_eq!(
        limiter.try_acquire_n(2),
        Decision::Allowed {
            remaining: 0,
            reset_after: Duration::from_millis(300),
            limit: 3
        }
    );
    let limited = limiter.try_acquire();
    assert_eq!(
        limited,
        Decision::Limited {
            retry_after: Duration::from_millis(100),
            reset_after: Duration::from_millis(300),
            limit: 3,
            reason: LimitReason::Exhausted,
            mode: Mode::Enforce,
        }
    );
    let h = limited.headers().unwrap();
    assert_eq!(
        (h.limit, h.remaining, h.reset_secs, h.retry_after_secs),
        (3, 0, 1, Some(1))
    );
    clock.advance(Duration::from_millis(99));
    assert!(!limiter.try_acquire().admits());
    clock.advance(Duration::from_millis(1));
    assert!(limiter.try_acquire().admits());
    // After a long idle period the bucket is full again, never fuller.
    clock.advance(Duration::from_secs(3600));
    assert_eq!(limiter.remaining(), 3);
    assert_eq!(
        (0..10).filter(|_| limiter.try_acquire().admits()).count(),
        3
    );
}

#[test]
fn gcra_zero_and_oversized_requests() {
    let (_, clock) = manual();
    let limiter = Gcra::new(Quota::per_second(5).unwrap(), clock);
    assert_eq!(
        limiter.try_acquire_n(0),
        Decision::Allowed {
            remaining: 5,
            reset_after: Duration::ZERO,
            limit: 5
        }
    );
    let d = limiter.try_acquire_n(6);
    assert!(matches!(
        d,
        Decision::Limited {
            reason: LimitReason::ExceedsCapacity,
            retry_after: Duration::MAX,
            ..
        }
    ));
    assert_eq!(d.headers().unwrap().retry_after_secs, None);
    assert_eq!(
        limiter.try_acquire_n(u64::MAX).retry_after(),
        Some(Duration::MAX)
    );
    assert_eq!(limiter.remaining(), 5);
}

#[test]
fn gcra_refund_is_clamped_at_now() {
    let (clock, shared) = manual();
    let limiter = Gcra::new(
        Quota::per_second(10).unwrap().with_burst(4).unwrap(),
        shared,
    );
    assert_eq!(limiter.refund(3), 0); // full: nothing to give back
    assert!(limiter.try_acquire_n(4).admits());
    assert_eq!(limiter.refund(1), 1);
    assert_eq!(limiter.remaining(), 1);
    clock.advance(Duration::from_millis(250)); // 2.5 cells refilled: 3 used -> 0.5 used
    // Half a cell was still used: it comes back, and counts as one cell given back.
    assert_eq!(limiter.refund(u64::MAX), 1);
    assert_eq!(limiter.refund(1), 0); // full now
    assert_eq!(limiter.remaining(), 4);
    assert_eq!(limiter.theoretical_arrival_time(), clock.now());
}

/// Random walks (seeded, deterministic) of clock steps, acquisitions and refunds: cells taken
/// minus cells given back never exceed `burst + floor(now / T)` (the GCRA bound), including
/// when a refund is clamped at now after a cell partly refilled.
#[test]
fn gcra_refund_ledger_respects_the_bound() {
    for seed in 0..200 {
        let rng = weir::policy::Rng::with_seed(seed);
        let (clock, shared) = manual();
        let t_ms = 1 + rng.below(50);
        let burst = 1 + rng.below(4);
        let quota = Quota::new(1, Duration::from_millis(t_ms))
            .unwrap()
            .with_burst(burst)
            .unwrap();
        let limiter = Gcra::new(quota, shared);
        let t = u128::from(t_ms) * 1_000_000;
        let mut net: u128 = 0;
        for _ in 0..300 {
            match rng.below(3) {
                0 => {
                    clock.advance(Duration::from_micros(rng.below(t_ms * 1500)));
                }
                1 => {
                    let n = rng.below(burst + 1);
                    if let Decision::Allowed { .. } = limiter.try_acquire_n(n) {
                        net += u128::from(n);
                    }
                }
                _ => {
                    let back = limiter.refund(rng.below(burst + 1));
                    net = net.saturating_sub(u128::from(back));
                }
            }
            let bound = u128::from(burst) + clock.now().as_nanos() / t;
            assert!(net <= bound, "seed {seed}: net {net} > bound {bound}");
        }
    }
}

#[test]
fn gcra_shadow_mode_admits_and_keeps_enforcement_state() {
    let (_, clock) = manual();
    let registry = Registry::new();
    let limiter = Gcra::builder(Quota::per_minute(2).unwrap())
        .mode(Mode::Shadow)
        .clock(clock)
        .metrics(&registry)
        .build()
        .unwrap();
    let decisions: Vec<Decision> = (0..5).map(|_| limiter.try_acquire()).collect();
    assert!(decisions.iter().all(Decision::admits));
    assert_eq!(decisions.iter().filter(|d| d.is_limited()).count(), 3);
    assert!(matches!(
        decisions[4],
        Decision::Limited {
            mode: Mode::Shadow,
            ..
        }
    ));
    assert!(decisions[4].to_string().contains("shadow"));
    let snap = registry.snapshot();
    assert_eq!(
        snap.counter("rate_limit_requests_total", &["allowed"]),
        Some(2)
    );
    assert_eq!(
        snap.counter("rate_limit_requests_total", &["limited"]),
        Some(3)
    );
}

#[test]
fn quota_validation() {
    assert_eq!(
        Quota::new(0, Duration::from_secs(1)),
        Err(QuotaError::ZeroCount)
    );
    assert_eq!(Quota::new(1, Duration::ZERO), Err(QuotaError::ZeroPeriod));
    assert_eq!(
        Quota::per_second(1).unwrap().with_burst(0),
        Err(QuotaError::ZeroBurst)
    );
    assert!(matches!(
        Quota::new(1, Duration::MAX),
        Err(QuotaError::IntervalTooLong { .. })
    ));
    assert!(matches!(
        Quota::per_hour(1).unwrap().with_burst(u64::MAX),
        Err(QuotaError::BurstTooLarge { .. })
    ));
    // Emission interval is rounded up: 3 per second is 333,333,334 ns.
    let q = Quota::per_second(3).unwrap();
    assert_eq!(q.emission_interval(), Duration::from_nanos(333_333_334));
    // More than one per nanosecond still works (T = 1 ns), but a burst of u64::MAX does not.
    let q = Quota::new(1 << 40, Duration::from_secs(1)).unwrap();
    assert_eq!(q.emission_interval(), Duration::from_nanos(1));
    assert!(Quota::new(u64::MAX, Duration::from_secs(1)).is_err());
    assert!(!QuotaError::ZeroCount.to_string().is_empty());
}

#[test]
fn clock_far_in_the_future_does_not_panic() {
    let (clock, shared) = manual();
    let limiter = Gcra::new(Quota::per_second(2).unwrap(), shared.clone());
    let sliding = SlidingWindow::new(2, Duration::from_secs(1), shared.clone()).unwrap();
    let fixed = FixedWindow::new(2, Duration::from_secs(1), shared).unwrap();
    clock.advance(Duration::MAX);
    for _ in 0..3 {
        let _ = limiter.try_acquire();
        let _ = sliding.try_acquire();
        let _ = fixed.try_acquire();
    }
    assert!(!limiter.try_acquire().admits());
    let _ = limiter.refund(5);
}

// === windows ===

#[test]
fn sliding_window_weights_previous_window_by_sub_window() {
    let (clock, shared) = manual();
    let limiter = SlidingWindow::builder(10, Duration::from_secs(10))
        .granularity(5) // sub-windows of 2 s
        .clock(shared)
        .build()
        .unwrap();
    assert_eq!(limiter.granularity(), 5);
    assert!(limiter.try_acquire_n(10).admits());
    let d = limiter.try_acquire();
    // Fits again when the previous window's weight drops: 10 × (5 - k)/5 + 1 <= 10 at k = 1,
    // that is at t = 12 s, 12 s from now.
    assert_eq!(d.retry_after(), Some(Duration::from_secs(12)));
    clock.advance(Duration::from_secs(10)); // k = 0: weight 5/5
    assert!(!limiter.try_acquire().admits());
    clock.advance(Duration::from_secs(2)); // k = 1: 10 × 4/5 = 8
    assert_eq!(
        limiter.try_acquire_n(2),
        Decision::Allowed {
            remaining: 0,
            reset_after: Duration::from_secs(18), // end of the next window (t = 30 s)
            limit: 10
        }
    );
    assert!(!limiter.try_acquire().admits());
    clock.advance(Duration::from_secs(8)); // t = 20 s, k = 0 of window 2: prev = 2, weight 1
    assert_eq!(
        (0..20).filter(|_| limiter.try_acquire().admits()).count(),
        8
    );
    clock.advance(Duration::from_secs(30)); // long gap: everything reset
    assert_eq!(
        (0..20).filter(|_| limiter.try_acquire().admits()).count(),
        10
    );
}

#[test]
fn sliding_window_estimate_bounds_any_window() {
    // The weighted estimate never lets more than 2 × limit through in any window-long span, and
    // with the clock stepping through sub-windows the admitted count per full window is at most
    // the limit plus one sub-window's rounding.
    let (clock, shared) = manual();
    let limiter = SlidingWindow::new(100, Duration::from_secs(10), shared).unwrap();
    let mut per_second = Vec::new();
    for _ in 0..100 {
        per_second.push((0..50).filter(|_| limiter.try_acquire().admits()).count());
        clock.advance(Duration::from_secs(1));
    }
    for w in per_second.windows(10) {
        assert!(w.iter().sum::<usize>() <= 200, "{w:?}");
    }
    // Steady state: about limit per window.
    let late: usize = per_second[50..60].iter().sum();
    assert!((90..=110).contains(&late), "{late}");
}

#[test]
fn fixed_window_numbers() {
    let (clock, shared) = manual();
    let limiter = FixedWindow::builder(2, Duration::from_secs(60))
        .clock(shared)
        .build()
        .unwrap();
    clock.advance(Duration::from_secs(15));
    assert_eq!(
        limiter.try_acquire(),
        Decision::Allowed {
            remaining: 1,
            reset_after: Duration::from_secs(45),
            limit: 2
        }
    );
    assert!(limiter.try_acquire().admits());
    assert_eq!(
        limiter.try_acquire(),
        Decision::Limited {
            retry_after: Duration::from_secs(45),
            reset_after: Duration::from_secs(45),
            limit: 2,
            reason: LimitReason::Exhausted,
            mode: Mode::Enforce
        }
    );
    clock.advance(Duration::from_secs(45));
    assert!(limiter.try_acquire_n(2).admits());
    assert!(matches!(
        limiter.try_acquire_n(3),
        Decision::Limited {
            reason: LimitReason::ExceedsCapacity,
            ..
        }
    ));
}

#[test]
fn window_builders_validate() {
    let w = Duration::from_secs(1);
    assert_eq!(
        SlidingWindow::builder(0, w).build().unwrap_err(),
        BuildError::ZeroLimit
    );
    assert!(matches!(
        SlidingWindow::builder(1 << 20, w).build(),
        Err(BuildError::LimitTooLarge { .. })
    ));
    assert_eq!(
        SlidingWindow::builder(1, Duration::ZERO)
            .build()
            .unwrap_err(),
        BuildError::ZeroWindow
    );
    assert!(matches!(
        FixedWindow::builder(1, Duration::MAX).build(),
        Err(BuildError::WindowTooLong { .. })
    ));
    for g in [0, 1001] {
        assert_eq!(
            SlidingWindow::builder(1, w)
                .granularity(g)
                .build()
                .unwrap_err(),
            BuildError::Granularity { granularity: g }
        );
    }
    assert!(
        SlidingWindow::builder(1, Duration::from_nanos(5))
            .granularity(6)
            .build()
            .is_err()
    );
    assert!(
        FixedWindow::builder(u64::from(u32::MAX), w)
            .mode(Mode::Shadow)
            .build()
            .is_ok()
    );
}

#[test]
fn window_shadow_mode() {
    let (_, clock) = manual();
    let sliding = SlidingWindow::builder(1, Duration::from_secs(1))
        .mode(Mode::Shadow)
        .clock(clock.clone())
        .build()
        .unwrap();
    let fixed = FixedWindow::builder(1, Duration::from_secs(1))
        .mode(Mode::Shadow)
        .clock(clock)
        .build()
        .unwrap();
    assert!(sliding.try_acquire().admits());
    let d = sliding.try_acquire();
    assert!(d.admits() && d.is_limited());
    assert!(fixed.try_acquire().admits());
    let d = fixed.try_acquire();
    assert!(d.admits() && d.is_limited());
}

// === keyed ===

fn keyed(clock: SharedClock) -> KeyedLimiter {
    KeyedLimiter::builder()
        .default_quota(Quota::per_hour(3).unwrap())
        .tenant_quota("acme", Quota::per_hour(5).unwrap())
        .user_quota("vip", Quota::per_hour(10).unwrap())
        .clock(clock)
        .build()
        .unwrap()
}

#[test]
fn keyed_precedence_user_over_tenant_over_default() {
    let (_, clock) = manual();
    let l = keyed(clock);
    let cases = [
        (
            RateKey::user("vip").tenant("acme"),
            Rule::User,
            Identity::User,
            10,
        ),
        (RateKey::user("vip"), Rule::User, Identity::User, 10),
        (
            RateKey::user("bob").tenant("acme"),
            Rule::Tenant,
            Identity::Tenant,
            5,
        ),
        (
            RateKey::for_tenant("acme"),
            Rule::Tenant,
            Identity::Tenant,
            5,
        ),
        (
            RateKey::user("bob").tenant("other"),
            Rule::Default,
            Identity::User,
            3,
        ),
        (
            RateKey::for_tenant("other"),
            Rule::Default,
            Identity::Tenant,
            3,
        ),
        (RateKey::anonymous(), Rule::Default, Identity::Anonymous, 3),
    ];
    for (key, rule, identity, count) in cases {
        let d = l.check_n(key, 0);
        assert_eq!(
            (d.rule, d.identity, d.quota.count()),
            (rule, identity, count)
        );
        assert_eq!(l.quota_for(key), (rule, d.quota));
    }
    // acme's users share acme's bucket: bob and carol together get 5.
    let l = keyed(manual().1);
    let got = (0..10)
        .filter(|i| {
            let user = if i % 2 == 0 { "bob" } else { "carol" };
            l.check(RateKey::user(user).tenant("acme")).admits()
        })
        .count();
    assert_eq!(got, 5);
    // Default-rule users have a bucket each, whatever their tenant says.
    assert_eq!(
        (0..5)
            .filter(|_| l.check(RateKey::user("dan").tenant("other")).admits())
            .count(),
        3
    );
    assert_eq!(
        (0..5)
            .filter(|_| l.check(RateKey::user("dan")).admits())
            .count(),
        0
    );
    assert!(l.check(RateKey::user("erin")).admits());
    let d = l.check(RateKey::anonymous());
    assert!(d.to_string().contains("Default"));
}

#[test]
fn keyed_full_table_fails_open_or_closed_and_counts() {
    for when_full in [WhenFull::FailOpen, WhenFull::FailClosed] {
        let (clock, shared) = manual();
        let registry = Registry::new();
        let l = KeyedLimiter::builder()
            .default_quota(Quota::per_second(1).unwrap())
            .max_keys(2)
            .idle_timeout(Duration::from_secs(10))
            .sweep_interval(Duration::from_secs(1))
            .when_full(when_full)
            .clock(shared)
            .metrics(&registry)
            .build()
            .unwrap();
        assert!(l.check(RateKey::user("a")).admits());
        assert!(l.check(RateKey::user("b")).admits());
        let d = l.check(RateKey::user("c"));
        match when_full {
            WhenFull::FailOpen => assert_eq!(d.decision, Decision::FailedOpen { max_keys: 2 }),
            WhenFull::FailClosed => assert!(matches!(
                d.decision,
                Decision::Limited {
                    reason: LimitReason::KeyTableFull,
                    retry_after,
                    ..
                } if retry_after == Duration::from_secs(10)
            )),
        }
        assert_eq!(d.admits(), when_full == WhenFull::FailOpen);
        // Existing keys are unaffected.
        assert!(!l.check(RateKey::user("a")).admits());
        // Once "a" and "b" have been idle (full) for the idle timeout, a new key's sweep evicts
        // them.
        clock.advance(Duration::from_secs(11));
        assert!(l.check(RateKey::user("c")).admits());
        assert_eq!(l.len(), 1);
        let snap = registry.snapshot();
        let action = match when_full {
            WhenFull::FailOpen => "fail_open",
            WhenFull::FailClosed => "fail_closed",
        };
        assert_eq!(
            snap.counter("rate_limit_key_table_full_total", &[action]),
            Some(1)
        );
        assert_eq!(snap.counter("rate_limit_evictions_total", &[]), Some(2));
        assert_eq!(snap.gauge("rate_limit_keys", &[]), Some(1));
        let allowed = snap.counter("rate_limit_requests_total", &["allowed"]);
        let limited = snap.counter("rate_limit_requests_total", &["limited"]);
        match when_full {
            WhenFull::FailOpen => assert_eq!((allowed, limited), (Some(4), Some(1))),
            WhenFull::FailClosed => assert_eq!((allowed, limited), (Some(3), Some(2))),
        }
    }
}

#[test]
fn keyed_sweeps_at_most_once_per_interval() {
    let (clock, shared) = manual();
    let l = KeyedLimiter::builder()
        .default_quota(Quota::per_second(1000).unwrap())
        .max_keys(1)
        .idle_timeout(Duration::ZERO)
        .sweep_interval(Duration::from_secs(5))
        .clock(shared)
        .build()
        .unwrap();
    assert!(l.check(RateKey::user("a")).admits());
    // Full, and "a" is not idle yet: this sweep finds nothing, and elects no other before 5 s.
    assert!(matches!(
        l.check(RateKey::user("b")).decision,
        Decision::FailedOpen { .. }
    ));
    clock.advance(Duration::from_secs(1)); // "a" is idle now, but no sweep is due
    assert!(matches!(
        l.check(RateKey::user("b")).decision,
        Decision::FailedOpen { .. }
    ));
    assert_eq!(l.evict_idle(), 1); // an explicit sweep always runs
    assert!(l.check(RateKey::user("b")).admits());
    assert_eq!(l.len(), 1);
}

#[test]
fn keyed_eviction_keeps_busy_keys_and_refund_works() {
    let (clock, shared) = manual();
    let l = KeyedLimiter::builder()
        .default_quota(Quota::per_second(1).unwrap().with_burst(2).unwrap())
        .idle_timeout(Duration::from_secs(5))
        .clock(shared)
        .build()
        .unwrap();
    assert!(l.check_n(RateKey::user("busy"), 2).admits());
    assert!(l.check(RateKey::user("idle")).admits());
    assert_eq!(l.refund(RateKey::user("idle"), 1), 1);
    assert_eq!(l.refund(RateKey::user("nobody"), 1), 0);
    assert_eq!(l.remaining(RateKey::user("busy")), 0);
    assert_eq!(l.remaining(RateKey::user("nobody")), 2);
    clock.advance(Duration::from_secs(5));
    // "idle" has been full since t = 0; "busy" only since t = 2 s.
    assert_eq!(l.evict_idle(), 1);
    assert_eq!(l.len(), 1);
    assert_eq!(l.remaining(RateKey::user("idle")), 2);
    clock.advance(Duration::from_secs(2));
    assert_eq!(l.evict_idle(), 1);
    assert!(l.is_empty());
    assert_eq!(l.max_keys(), 10_000);
}

#[test]
fn keyed_shadow_mode_and_build_errors() {
    let (_, clock) = manual();
    let l = KeyedLimiter::builder()
        .default_quota(Quota::per_hour(1).unwrap())
        .mode(Mode::Shadow)
        .clock(clock)
        .build()
        .unwrap();
    assert!(l.check(RateKey::user("u")).admits());
    let d = l.check(RateKey::user("u"));
    assert!(d.admits() && d.is_limited());
    assert_eq!(l.mode(), Mode::Shadow);
    assert_eq!(
        KeyedLimiter::builder().max_keys(0).build().unwrap_err(),
        BuildError::ZeroMaxKeys
    );
    // A registry with a conflicting metric refuses the limiter.
    let registry = Registry::new();
    registry
        .gauge("rate_limit_evictions_total", "x", &[])
        .unwrap();
    let err = KeyedLimiter::builder()
        .metrics(&registry)
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Registry(_)));
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn lift_default_is_1000_per_hour() {
    let (_, clock) = manual();
    let l = KeyedLimiter::builder().clock(clock).build().unwrap();
    let got = (0..1500)
        .filter(|_| l.check(RateKey::user("x")).admits())
        .count();
    assert_eq!(got, 1000);
    let d = l.check(RateKey::user("x"));
    assert_eq!(d.decision.retry_after(), Some(Duration::from_millis(3600)));
}
