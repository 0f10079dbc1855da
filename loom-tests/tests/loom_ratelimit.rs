//! Rate limits: no over-admission under concurrent CAS (GCRA, sliding and fixed windows),
//! refunds racing acquisitions, and the keyed table's insert and eviction protocols.
//!
//! Every model runs with a `ManualClock` that does not move (its atomic is loom's), so the
//! exact number of admissions is known: a limiter may never admit more than its burst or limit,
//! and since nothing else consumes, it must admit exactly that many when asked often enough.
//! `arc-swap` (the keyed table's shard maps) is not loom-aware: its atomics run unmodeled, one
//! modeled thread at a time; what the keyed models explore is weir's protocol around it (the
//! shard mutex, the re-check under it, the key-count CAS, and the retire-by-CAS of evicted
//! entries).
#![cfg(weir_loom)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{model, spawn};
use weir::ManualClock;
use weir::policy::ratelimit::{
    Decision, FixedWindow, Gcra, KeyedLimiter, Quota, RateKey, SlidingWindow, WhenFull,
};

fn frozen() -> weir::SharedClock {
    Arc::new(ManualClock::new())
}

fn cells(d: Decision, n: u64) -> u64 {
    if let Decision::Allowed { .. } = d {
        n
    } else {
        0
    }
}

/// Three threads ask a burst-2 GCRA for one cell each: exactly two get one, whatever the
/// interleaving of their loads and CASes.
#[test]
fn gcra_three_acquirers_burst_two() {
    model("gcra_three_acquirers_burst_two", || {
        let q = Quota::per_second(1).unwrap().with_burst(2).unwrap();
        let limiter = Arc::new(Gcra::new(q, frozen()));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let l = limiter.clone();
                spawn(move || cells(l.try_acquire(), 1))
            })
            .collect();
        let mine = cells(limiter.try_acquire(), 1);
        let total: u64 = mine + hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>();
        assert_eq!(total, 2);
        assert_eq!(limiter.remaining(), 0);
    });
}

/// Mixed sizes: two threads ask for 2 of a burst of 3 while the main thread asks for 1. Never
/// more than 3 cells, and what is left is exactly 3 minus what was taken.
#[test]
fn gcra_mixed_sizes_never_overdraw() {
    model("gcra_mixed_sizes_never_overdraw", || {
        let q = Quota::per_second(1).unwrap().with_burst(3).unwrap();
        let limiter = Arc::new(Gcra::new(q, frozen()));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let l = limiter.clone();
                spawn(move || cells(l.try_acquire_n(2), 2))
            })
            .collect();
        let mine = cells(limiter.try_acquire(), 1);
        let total: u64 = mine + hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>();
        assert!(total <= 3, "overdrawn: {total}");
        assert_eq!(limiter.remaining(), 3 - total);
        // In any order, one 2-cell request and the 1-cell request fit, and the other 2-cell
        // request does not: exactly 3.
        assert_eq!(total, 3);
    });
}

/// A refund races an acquisition on a burst-1 GCRA: the ledger (taken minus given back) always
/// matches the bucket, and never exceeds the burst.
#[test]
fn gcra_refund_races_acquire() {
    model("gcra_refund_races_acquire", || {
        let q = Quota::per_second(1).unwrap().with_burst(1).unwrap();
        let limiter = Arc::new(Gcra::new(q, frozen()));
        let a = {
            let l = limiter.clone();
            spawn(move || {
                let took = cells(l.try_acquire(), 1);
                let gave = if took > 0 { l.refund(1) } else { 0 };
                (took, gave)
            })
        };
        let b_took = cells(limiter.try_acquire(), 1);
        let (a_took, a_gave) = a.join().unwrap();
        let used = a_took + b_took - a_gave;
        assert!(used <= 1);
        assert_eq!(limiter.remaining(), 1 - used);
    });
}

/// Sliding and fixed windows: three threads ask a limit-2 window for one each: exactly two
/// admitted (each window is one CAS word).
#[test]
fn windows_three_acquirers_limit_two() {
    model("windows_three_acquirers_limit_two", || {
        let clock = frozen();
        let sliding =
            Arc::new(SlidingWindow::new(2, Duration::from_secs(1), clock.clone()).unwrap());
        let fixed = Arc::new(FixedWindow::new(2, Duration::from_secs(1), clock).unwrap());
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let (s, f) = (sliding.clone(), fixed.clone());
                spawn(move || {
                    if i == 0 {
                        (cells(s.try_acquire(), 1), cells(f.try_acquire(), 1))
                    } else {
                        (cells(f.try_acquire(), 1), cells(s.try_acquire(), 1))
                    }
                })
            })
            .collect();
        let (mut s_total, mut f_total) = (
            cells(sliding.try_acquire(), 1),
            cells(fixed.try_acquire(), 1),
        );
        for (i, h) in hs.into_iter().enumerate() {
            let (x, y) = h.join().unwrap();
            if i == 0 {
                s_total += x;
                f_total += y;
            } else {
                f_total += x;
                s_total += y;
            }
        }
        assert_eq!((s_total, f_total), (2, 2));
    });
}

/// Two threads ask for the same new key at once (burst 1): one bucket is created and exactly
/// one request admitted.
#[test]
fn keyed_concurrent_first_use_of_a_key() {
    model("keyed_concurrent_first_use_of_a_key", || {
        let limiter = Arc::new(
            KeyedLimiter::builder()
                .default_quota(Quota::per_hour(1).unwrap())
                .clock(frozen())
                .build()
                .unwrap(),
        );
        let h = {
            let l = limiter.clone();
            spawn(move || l.check(RateKey::user("k")).admits())
        };
        let mine = limiter.check(RateKey::user("k")).admits();
        let theirs = h.join().unwrap();
        assert!(mine ^ theirs, "admitted {mine} {theirs}");
        assert_eq!(limiter.len(), 1);
    });
}

/// Two new keys race for the last place in a one-key table that fails closed: exactly one gets
/// in, and the table never holds two.
#[test]
fn keyed_max_keys_is_never_exceeded() {
    model("keyed_max_keys_is_never_exceeded", || {
        let limiter = Arc::new(
            KeyedLimiter::builder()
                .default_quota(Quota::per_hour(5).unwrap())
                .max_keys(1)
                .when_full(WhenFull::FailClosed)
                .clock(frozen())
                .build()
                .unwrap(),
        );
        let h = {
            let l = limiter.clone();
            spawn(move || l.check(RateKey::user("a")).admits())
        };
        let mine = limiter.check(RateKey::user("b")).admits();
        let theirs = h.join().unwrap();
        assert!(mine ^ theirs, "admitted {mine} {theirs}");
        assert_eq!(limiter.len(), 1);
    });
}

/// An eviction races an acquisition on an idle key (burst 1, idle timeout 0). Whichever wins,
/// the cell taken is not lost with the evicted entry: a later request is limited, and the
/// table holds the key exactly once.
#[test]
fn keyed_eviction_races_acquire() {
    model("keyed_eviction_races_acquire", || {
        let clock = ManualClock::new();
        let limiter = Arc::new(
            KeyedLimiter::builder()
                .default_quota(Quota::per_second(1).unwrap().with_burst(1).unwrap())
                .idle_timeout(Duration::ZERO)
                .clock(Arc::new(clock.clone()))
                .build()
                .unwrap(),
        );
        // The key exists, and is idle (full) again a second later.
        assert!(limiter.check(RateKey::user("k")).admits());
        clock.advance(Duration::from_secs(1));
        let evictor = {
            let l = limiter.clone();
            spawn(move || l.evict_idle())
        };
        let admitted = limiter.check(RateKey::user("k")).admits();
        let evicted = evictor.join().unwrap();
        assert!(admitted, "the bucket was full");
        assert!(evicted <= 1);
        assert!(
            !limiter.check(RateKey::user("k")).admits(),
            "the cell taken was lost with the evicted entry"
        );
        assert_eq!(limiter.len(), 1);
        assert_eq!(limiter.remaining(RateKey::user("k")), 0);
    });
}
