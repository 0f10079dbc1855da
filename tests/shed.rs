//! Integration tests for `weir::policy::shed`: exact concurrency checks (16 threads), limit
//! algorithms driven through the limiter, lost-update freedom of the adaptive shed rate, and a
//! property test over operation sequences.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use weir::policy::Mode;
use weir::policy::shed::{
    AdaptiveThrottle, Aimd, FixedLimit, Gradient2, LimitAlgorithm, Limiter, LoadShedder,
    ManualSignals, Outcome, Permit, Priority, RejectReason, Strategy as ShedStrategy,
    TicketOutcome, Vegas, Verdict,
};
use weir::{ManualClock, Registry, SharedClock};

const MS: Duration = Duration::from_millis(1);

fn shared(clock: &ManualClock) -> SharedClock {
    Arc::new(clock.clone())
}

// === Limiter: in-flight never exceeds the limit ===

/// 16 threads acquire and release as fast as they can while the limit moves (AIMD samples,
/// drops, and a thread setting the limit by hand). Every grant is checked against the limit
/// read from the same state-word value as its in-flight count, and against an external
/// tracker of permits held.
#[test]
fn sixteen_threads_never_exceed_the_limit() {
    const THREADS: usize = 16;
    const ROUNDS: u64 = 20_000;
    let registry = Registry::new();
    let aimd = Aimd::builder()
        .initial(8)
        .min(1)
        .max(12)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let limiter = Limiter::builder(aimd)
        .registry(&registry)
        .name("hammer")
        .build()
        .unwrap();
    let max_bound = limiter.inspect(|a| *a.bounds().end());
    let held = AtomicU64::new(0);
    let max_held = AtomicU64::new(0);
    let grants = AtomicU64::new(0);
    let rejections = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // A thread that moves the limit by hand, up and down, racing the acquires.
        s.spawn(|| {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let applied = limiter.set_limit(1 + i % 12);
                assert!((1..=12).contains(&applied));
                i = i.wrapping_add(7);
                std::thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (limiter, held, max_held, grants, rejections) =
                    (&limiter, &held, &max_held, &grants, &rejections);
                s.spawn(move || {
                    for i in 0..ROUNDS {
                        match limiter.try_acquire() {
                            Ok(p) => {
                                // The limiter's own numbers, from one value of its word.
                                assert!(
                                    p.in_flight() <= p.limit(),
                                    "granted at {} in flight with limit {}",
                                    p.in_flight(),
                                    p.limit()
                                );
                                assert!(p.limit() >= 1 && p.limit() <= max_bound);
                                // An external tracker: never more permits held than the
                                // largest limit the algorithm can produce.
                                let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                                max_held.fetch_max(now, Ordering::Relaxed);
                                assert!(now <= u64::from(max_bound), "{now} permits held");
                                grants.fetch_add(1, Ordering::Relaxed);
                                held.fetch_sub(1, Ordering::SeqCst);
                                match (i + t as u64) % 5 {
                                    0 => p.dropped(),
                                    1 => drop(p),
                                    _ => p.release_with_rtt(Outcome::Success, MS),
                                }
                            }
                            Err(r) => {
                                assert!(r.in_flight >= r.limit);
                                assert_eq!(
                                    r.reason == RejectReason::LimitShrank,
                                    r.in_flight > r.limit
                                );
                                rejections.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let state = limiter.state();
    assert_eq!((state.in_flight, state.shadow_in_flight), (0, 0));
    let total = THREADS as u64 * ROUNDS;
    assert_eq!(
        grants.load(Ordering::Relaxed) + rejections.load(Ordering::Relaxed),
        total
    );
    assert!(grants.load(Ordering::Relaxed) > 0);
    // Every grant was released exactly once, and counted by outcome.
    let snap = registry.snapshot();
    let outcome = |o| {
        snap.counter("concurrency_limit_requests_total", &["hammer", o])
            .unwrap()
    };
    assert_eq!(
        outcome("success") + outcome("dropped") + outcome("ignored"),
        grants.load(Ordering::Relaxed)
    );
    assert_eq!(
        snap.counter("concurrency_limit_rejections_total", &["hammer"]),
        Some(rejections.load(Ordering::Relaxed))
    );
    assert_eq!(
        snap.gauge("concurrency_limit_in_flight", &["hammer"]),
        Some(0)
    );
    assert_eq!(
        snap.gauge("concurrency_limit", &["hammer"]),
        Some(i64::from(limiter.limit()))
    );
}

/// With a fixed limit, the number of permits held at any instant (tracked outside the limiter,
/// incremented after each grant and decremented before each release) never exceeds it, and the
/// limiter's own reading never shows more in flight than the limit.
#[test]
fn sixteen_threads_fixed_limit_exact() {
    const LIMIT: u32 = 5;
    let limiter = Limiter::new(FixedLimit::new(LIMIT));
    let held = AtomicU64::new(0);
    let peak = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                for _ in 0..20_000 {
                    if let Ok(p) = limiter.try_acquire() {
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= u64::from(LIMIT), "{now} held, limit {LIMIT}");
                        peak.fetch_max(now, Ordering::Relaxed);
                        let st = limiter.state();
                        assert!(st.in_flight <= st.limit, "{st:?}");
                        held.fetch_sub(1, Ordering::SeqCst);
                        p.success();
                    }
                }
            });
        }
    });
    assert_eq!(limiter.in_flight(), 0);
    assert!(peak.load(Ordering::Relaxed) >= 1);
}

/// Permits moved to other threads and released there are never lost.
#[test]
fn permits_released_on_other_threads() {
    let limiter = Limiter::new(FixedLimit::new(64));
    let permits: Vec<Permit> = (0..64).map(|_| limiter.try_acquire().unwrap()).collect();
    assert!(limiter.try_acquire().is_err());
    let chunks: Vec<Vec<Permit>> = {
        let mut it = permits.into_iter();
        (0..8).map(|_| it.by_ref().take(8).collect()).collect()
    };
    std::thread::scope(|s| {
        for chunk in chunks {
            s.spawn(move || {
                for (i, p) in chunk.into_iter().enumerate() {
                    if i % 2 == 0 { p.success() } else { drop(p) }
                }
            });
        }
    });
    assert_eq!(limiter.in_flight(), 0);
    assert!(limiter.try_acquire().is_ok());
}

/// Shadow mode: 16 threads, limit 2. Every request is admitted; enforced permits never exceed
/// the limit; shadow permits are counted apart and all come back.
#[test]
fn shadow_mode_under_contention() {
    let registry = Registry::new();
    let limiter = Limiter::builder(FixedLimit::new(2))
        .mode(Mode::Shadow)
        .registry(&registry)
        .build()
        .unwrap();
    let shadowed = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                for _ in 0..5_000 {
                    let p = limiter.try_acquire().expect("shadow mode admits");
                    match p.shadow_rejection() {
                        None => assert!(p.in_flight() <= p.limit()),
                        Some(r) => {
                            assert_eq!(p.verdict(), Verdict::ShadowReject);
                            assert!(r.in_flight >= r.limit);
                            shadowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    p.success();
                }
            });
        }
    });
    let st = limiter.state();
    assert_eq!((st.in_flight, st.shadow_in_flight), (0, 0));
    let snap = registry.snapshot();
    assert_eq!(
        snap.counter("concurrency_limit_rejections_total", &["default"]),
        Some(shadowed.load(Ordering::Relaxed))
    );
}

// === Limit algorithms through the limiter ===

/// A simulated client: each round, up to 100 requests want to run; all that get a permit run
/// together and take `rtt(round, n)` for `n` admitted (drops when above `drop_above`). Returns
/// the limit after each round.
fn simulate(
    algorithm: impl LimitAlgorithm,
    rounds: usize,
    drop_above: Duration,
    rtt: impl Fn(usize, u32) -> Duration,
) -> Vec<u32> {
    let clock = ManualClock::new();
    let limiter = Limiter::builder(algorithm)
        .clock(shared(&clock))
        .build()
        .unwrap();
    let mut limits = vec![];
    for round in 0..rounds {
        let mut permits = vec![];
        while permits.len() < 100 {
            match limiter.try_acquire() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let rtt = rtt(round, permits.len() as u32);
        for p in permits {
            let outcome = if rtt > drop_above {
                Outcome::Dropped
            } else {
                Outcome::Success
            };
            p.release_with_rtt(outcome, rtt);
        }
        clock.advance(rtt);
        limits.push(limiter.limit());
    }
    limits
}

/// The server holds 30 requests at 10 ms; beyond that the RTT grows in proportion.
fn loaded(_round: usize, n: u32) -> Duration {
    MS * 10 * n.max(30) / 30
}

#[test]
fn aimd_grows_while_used_and_backs_off_on_drops() {
    let aimd = Aimd::builder()
        .initial(10)
        .min(1)
        .max(200)
        .timeout(25 * MS)
        .build()
        .unwrap();
    let limits = simulate(aimd, 100, Duration::MAX, loaded);
    // Grows by one per sample taken with the limit in use, while RTTs are within the timeout;
    // once a round's RTT passes it (more than 75 in flight), every sample of the round backs
    // off. A sawtooth that never settles above the timeout's load.
    assert!(limits[..4].windows(2).all(|w| w[1] > w[0]), "{limits:?}");
    for w in limits.windows(2) {
        if w[0] > 75 {
            assert!(w[1] < w[0], "{limits:?}");
        }
    }
    assert!(limits.iter().all(|&l| (1..=200).contains(&l)));
}

#[test]
fn gradient2_shrinks_when_latency_rises_and_recovers() {
    let g = Gradient2::builder()
        .initial(20)
        .min(5)
        .max(100)
        .build()
        .unwrap();
    // 10 ms, then 40 ms from round 40, then 10 ms again from round 80.
    let phase = |round: usize, _n: u32| match round {
        40..80 => 40 * MS,
        _ => 10 * MS,
    };
    let limits = simulate(g, 140, Duration::MAX, phase);
    // Steady latency: grows (queue_size × smoothing per sample, while in use) to the max.
    assert_eq!(limits[39], 100, "{limits:?}");
    // Latency quadruples: the gradient (clamped at 0.5) shrinks the limit at once.
    assert!(limits[41] < 60, "{limits:?}");
    // The long-term average catches up with 40 ms; then it is the new normal and the limit
    // grows again. Back at 10 ms, no queueing either: back to the max.
    assert_eq!(limits[139], 100, "{limits:?}");
}

#[test]
fn vegas_settles_near_capacity() {
    let v = Vegas::builder()
        .initial(10)
        .max(200)
        .seed(9)
        .build()
        .unwrap();
    let limits = simulate(v, 400, Duration::MAX, loaded);
    let tail = &limits[300..];
    // The queue estimate `limit × (1 - 10 ms / rtt)` stays small only near 30 in flight.
    assert!(tail.iter().all(|&l| (15..=100).contains(&l)), "{tail:?}");
}

// === Throttle ===

/// 8 threads check and record accepts; every decision is counted exactly once.
#[test]
fn throttle_counts_exactly_under_contention() {
    let registry = Registry::new();
    let throttle = AdaptiveThrottle::builder()
        .registry(&registry)
        .seed(3)
        .build()
        .unwrap();
    let rejected = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (throttle, rejected) = (&throttle, &rejected);
            s.spawn(move || {
                for i in 0..10_000u64 {
                    let p = Priority::ALL[(i as usize + t) % 5];
                    let d = throttle.check(p);
                    assert!((0.0..=1.0).contains(&d.probability));
                    assert!((0.0..=1.0).contains(&d.class_probability));
                    if d.admits() {
                        if i % 4 != 0 {
                            throttle.record_accepted();
                        }
                    } else {
                        rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let snap = registry.snapshot();
    let mut admitted = 0;
    let mut throttled = 0;
    for p in Priority::ALL {
        admitted += snap
            .counter(
                "adaptive_throttle_requests_total",
                &[p.as_str(), "admitted"],
            )
            .unwrap();
        throttled += snap
            .counter(
                "adaptive_throttle_requests_total",
                &[p.as_str(), "throttled"],
            )
            .unwrap();
    }
    assert_eq!(admitted + throttled, 80_000);
    assert_eq!(throttled, rejected.load(Ordering::Relaxed));
    assert_eq!(
        snap.counter("adaptive_throttle_attempts_total", &[]),
        Some(80_000)
    );
    // Accepting 3 of 4 admitted requests with K = 2: P stays at 0.
    assert_eq!(throttled, 0);
}

// === Load shedder ===

/// The adaptive rate is one atomic updated by CAS: 16 threads × 10,000 decisions, each adding
/// 1e-6 to the rate, add up exactly (lift lost such updates).
#[test]
fn adaptive_rate_loses_no_updates() {
    let clock = ManualClock::new();
    let shedder = LoadShedder::builder()
        .strategy(ShedStrategy::Adaptive)
        .adaptation_rate(1e-6)
        .max_rate(1.0)
        .signals(ManualSignals::new())
        .clock(shared(&clock))
        .auto_refresh(false)
        .seed(1)
        .build()
        .unwrap();
    // One slow request (1 s against a 100 ms target): the cap (10 - 1) × 0.5 is far away.
    shedder
        .try_admit(Priority::Normal)
        .unwrap()
        .finish_with_latency(TicketOutcome::Success, Duration::from_secs(1));
    assert_eq!(shedder.refresh().latency, Duration::from_secs(1));
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    match shedder.try_admit(Priority::Normal) {
                        Ok(t) => drop(t),
                        Err(d) => assert_eq!(d.verdict, Verdict::Reject),
                    }
                }
            });
        }
    });
    let expect = 160_000.0 * 1e-6;
    let got = shedder.adaptive_rate();
    assert!((got - expect).abs() < 1e-9, "{got} vs {expect}");
    assert_eq!(shedder.active(), 0);
}

/// 16 threads through the shedder with a registry: decisions and active requests add up.
#[test]
fn shedder_counts_exactly_under_contention() {
    let registry = Registry::new();
    let clock = ManualClock::new();
    let signals = ManualSignals::new();
    signals.set_cpu(Some(0.9));
    let shedder = LoadShedder::builder()
        .strategy(ShedStrategy::Priority)
        .signals(signals)
        .clock(shared(&clock))
        .registry(&registry)
        .seed(2)
        .build()
        .unwrap();
    let shed = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..16 {
            let (shedder, shed) = (&shedder, &shed);
            s.spawn(move || {
                for i in 0..5_000usize {
                    match shedder.try_admit(Priority::ALL[(i + t) % 5]) {
                        Ok(ticket) => {
                            if i % 3 == 0 {
                                ticket.error();
                            } else {
                                ticket.success();
                            }
                        }
                        Err(d) => {
                            assert!(d.draw.unwrap() < d.rate);
                            shed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let snap = registry.snapshot();
    let admitted = snap
        .counter("load_shedding_requests_total", &["admitted"])
        .unwrap();
    let sheds = snap
        .counter("load_shedding_requests_total", &["shed"])
        .unwrap();
    assert_eq!(admitted + sheds, 80_000);
    assert_eq!(sheds, shed.load(Ordering::Relaxed));
    assert!(sheds > 0);
    assert_eq!(snap.gauge("load_shedding_active_requests", &[]), Some(0));
    assert_eq!(
        snap.counter("load_shedding_completed_total", &[]),
        Some(admitted)
    );
    assert_eq!(
        snap.histogram("load_shedding_latency_nanoseconds", &[])
            .map(|h| h.count()),
        Some(admitted)
    );
}

// === Property test: arbitrary operation sequences against a model ===

#[derive(Clone, Debug)]
enum Op {
    Acquire,
    Release {
        index: usize,
        outcome: u8,
        rtt_ms: u16,
    },
    Advance {
        ms: u16,
    },
    SetLimit {
        limit: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Acquire),
        3 => (any::<usize>(), 0u8..3, any::<u16>())
            .prop_map(|(index, outcome, rtt_ms)| Op::Release { index, outcome, rtt_ms }),
        1 => any::<u16>().prop_map(|ms| Op::Advance { ms }),
        1 => (0u32..40).prop_map(|limit| Op::SetLimit { limit }),
    ]
}

fn limiter_for(which: u8, clock: &ManualClock, mode: Mode) -> Limiter {
    let b = match which {
        0 => Limiter::builder(
            Aimd::builder()
                .initial(4)
                .min(1)
                .max(16)
                .timeout(100 * MS)
                .build()
                .unwrap(),
        ),
        1 => Limiter::builder(Vegas::builder().initial(4).max(16).seed(1).build().unwrap()),
        _ => Limiter::builder(
            Gradient2::builder()
                .initial(4)
                .min(2)
                .max(16)
                .build()
                .unwrap(),
        ),
    };
    b.clock(shared(clock)).mode(mode).build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn limiter_invariants_hold_for_any_sequence(
        which in 0u8..3,
        shadow in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let clock = ManualClock::new();
        let mode = if shadow { Mode::Shadow } else { Mode::Enforce };
        let limiter = limiter_for(which, &clock, mode);
        let bounds = limiter.inspect(|a| a.bounds());
        let mut held: Vec<Permit> = vec![];
        for op in ops {
            match op {
                Op::Acquire => match limiter.try_acquire() {
                    Ok(p) => {
                        if p.shadow_rejection().is_none() {
                            prop_assert!(p.in_flight() <= p.limit());
                        } else {
                            prop_assert!(shadow);
                        }
                        held.push(p);
                    }
                    Err(r) => {
                        prop_assert!(!shadow);
                        prop_assert!(r.in_flight >= r.limit);
                    }
                },
                Op::Release { index, outcome, rtt_ms } => {
                    if !held.is_empty() {
                        let p = held.swap_remove(index % held.len());
                        let outcome = [Outcome::Success, Outcome::Dropped, Outcome::Ignored]
                            [outcome as usize];
                        p.release_with_rtt(outcome, MS * u32::from(rtt_ms));
                    }
                }
                Op::Advance { ms } => {
                    clock.advance(MS * u32::from(ms));
                }
                Op::SetLimit { limit } => {
                    let applied = limiter.set_limit(limit);
                    prop_assert!(applied >= 1);
                    prop_assert!(bounds.contains(&applied) || applied == 1);
                }
            }
            // The model: the word counts exactly the enforced permits held.
            let st = limiter.state();
            let enforced = held.iter().filter(|p| p.shadow_rejection().is_none()).count();
            prop_assert_eq!(st.in_flight as usize, enforced);
            prop_assert_eq!(st.shadow_in_flight as usize, held.len() - enforced);
            prop_assert!(st.limit >= 1 && bounds.contains(&st.limit));
        }
        drop(held);
        prop_assert_eq!(limiter.in_flight(), 0);
    }
}
