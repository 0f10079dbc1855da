//! Fuzzes the rate limiters with arbitrary quotas, windows, table sizes and sequences of
//! acquisitions, refunds, evictions and clock steps. Nothing may panic, and:
//! - GCRA: cells taken minus cells given back never exceed `burst + floor(now / T)`, and
//!   `remaining()` agrees with every decision's `remaining`;
//! - fixed and sliding windows: admissions within one aligned window never exceed the limit;
//! - keyed: the table never holds more than `max_keys`, and each user bucket obeys the GCRA
//!   bound; shadow mode always admits.
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir::ManualClock;
use weir::policy::Mode;
use weir::policy::ratelimit::{
    Decision, FixedWindow, Gcra, KeyedLimiter, Quota, RateKey, SlidingWindow, WhenFull,
};

#[derive(Arbitrary, Debug)]
enum Op {
    /// Moves the clock by this many microseconds.
    Advance(u32),
    /// Moves the clock by this many whole seconds.
    Jump(u16),
    Acquire(u8),
    Refund(u8),
    Window(u8),
    Keyed {
        user: u8,
        tenant: u8,
        n: u8,
    },
    KeyedRefund {
        user: u8,
        n: u8,
    },
    Evict,
}

#[derive(Arbitrary, Debug)]
struct Input {
    count: u32,
    period_ms: u32,
    burst: u16,
    window_ms: u32,
    limit: u32,
    granularity: u16,
    max_keys: u8,
    idle_ms: u32,
    fail_closed: bool,
    shadow: bool,
    ops: Vec<Op>,
}

fn cells(d: &Decision, n: u64) -> u64 {
    if let Decision::Allowed { .. } = d {
        n
    } else {
        0
    }
}

fuzz_target!(|input: Input| {
    let clock = ManualClock::new();
    let shared: weir::SharedClock = Arc::new(clock.clone());
    let mode = if input.shadow {
        Mode::Shadow
    } else {
        Mode::Enforce
    };
    // Invalid parameters must be refused with an error, never a panic.
    let Ok(quota) = Quota::new(
        u64::from(input.count),
        Duration::from_millis(u64::from(input.period_ms)),
    )
    .and_then(|q| q.with_burst(u64::from(input.burst))) else {
        return;
    };
    let Ok(gcra) = Gcra::builder(quota)
        .clock(shared.clone())
        .mode(mode)
        .build()
    else {
        return;
    };
    let window = Duration::from_millis(u64::from(input.window_ms));
    let sliding = SlidingWindow::builder(u64::from(input.limit), window)
        .granularity(u32::from(input.granularity))
        .clock(shared.clone())
        .mode(mode)
        .build()
        .ok();
    let fixed = FixedWindow::builder(u64::from(input.limit), window)
        .clock(shared.clone())
        .mode(mode)
        .build()
        .ok();
    let keyed = KeyedLimiter::builder()
        .default_quota(quota)
        .max_keys(usize::from(input.max_keys))
        .idle_timeout(Duration::from_millis(u64::from(input.idle_ms)))
        .sweep_interval(Duration::from_millis(10))
        .when_full(if input.fail_closed {
            WhenFull::FailClosed
        } else {
            WhenFull::FailOpen
        })
        .clock(shared)
        .mode(mode)
        .build()
        .ok();

    let interval = quota.emission_interval().as_nanos();
    let bound = |now: Duration| u128::from(quota.burst()) + now.as_nanos() / interval;
    let mut net: u128 = 0; // GCRA cells taken minus given back
    let mut per_window: HashMap<u128, (u64, u64)> = HashMap::new(); // window index -> (sliding, fixed)
    let mut per_user: HashMap<u8, u128> = HashMap::new();

    for op in input.ops.iter().take(512) {
        match *op {
            Op::Advance(us) => {
                clock.advance(Duration::from_micros(u64::from(us)));
            }
            Op::Jump(s) => {
                clock.advance(Duration::from_secs(u64::from(s)));
            }
            Op::Acquire(n) => {
                let n = u64::from(n);
                let d = gcra.try_acquire_n(n);
                if mode == Mode::Shadow {
                    assert!(d.admits());
                }
                if let Decision::Allowed {
                    remaining, limit, ..
                } = d
                {
                    assert!(remaining <= limit);
                    assert_eq!(remaining, gcra.remaining());
                }
                if let Decision::Limited { retry_after, .. } = d {
                    assert!(!retry_after.is_zero());
                }
                net += u128::from(cells(&d, n));
                assert!(net <= bound(clock.now()), "gcra over-admitted");
            }
            Op::Refund(n) => {
                let back = gcra.refund(u64::from(n));
                assert!(back <= u64::from(n));
                net = net.saturating_sub(u128::from(back));
                assert!(gcra.remaining() <= quota.burst());
            }
            Op::Window(n) => {
                let n = u64::from(n);
                let w = window.as_nanos().max(1);
                let idx = clock.now().as_nanos() / w;
                let entry = per_window.entry(idx).or_default();
                if let Some(s) = &sliding {
                    entry.0 += cells(&s.try_acquire_n(n), n);
                    assert!(entry.0 <= s.limit(), "sliding window over-admitted");
                }
                if let Some(f) = &fixed {
                    entry.1 += cells(&f.try_acquire_n(n), n);
                    assert!(entry.1 <= f.limit(), "fixed window over-admitted");
                }
            }
            Op::Keyed { user, tenant, n } => {
                let Some(k) = &keyed else { continue };
                let (u, t) = (format!("u{}", user % 16), format!("t{}", tenant % 4));
                let n = u64::from(n % 8);
                let d = k.check_n(RateKey::user(&u).tenant(&t), n);
                assert!(k.len() <= k.max_keys());
                if mode == Mode::Shadow {
                    assert!(d.admits());
                }
                let used = per_user.entry(user % 16).or_default();
                *used += u128::from(cells(&d.decision, n));
                assert!(*used <= bound(clock.now()), "keyed bucket over-admitted");
            }
            Op::KeyedRefund { user, n } => {
                let Some(k) = &keyed else { continue };
                let u = format!("u{}", user % 16);
                let back = k.refund(RateKey::user(&u), u64::from(n));
                let used = per_user.entry(user % 16).or_default();
                *used = used.saturating_sub(u128::from(back));
            }
            Op::Evict => {
                if let Some(k) = &keyed {
                    let _ = k.evict_idle();
                    assert!(k.len() <= k.max_keys());
                }
            }
        }
    }
});
