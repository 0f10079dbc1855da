//! Circuit breaker: state machine, windows, slow calls, probes, stale outcomes, shadow mode,
//! metrics, keyed breakers, and concurrency (exact counts, no timing assertions).

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use weir::policy::Mode;
use weir::policy::breaker::{
    BreakerConfigError, CircuitBreaker, Decision, Outcome, PercentileSlowCall, Recorded,
    RejectReason, SlidingWindow, SlowCall, State, Transition, TransitionReason, breaker_key,
};
use weir::{Histogram, ManualClock, Registry};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn permit(b: &CircuitBreaker) -> weir::policy::breaker::Permit<'_> {
    match b.try_acquire() {
        Decision::Permitted(p) => p,
        Decision::Rejected(r) => panic!("rejected: {r:?}"),
    }
}

fn rejection(b: &CircuitBreaker) -> weir::policy::breaker::Rejection {
    match b.try_acquire() {
        Decision::Rejected(r) => r,
        Decision::Permitted(p) => panic!("permitted: {p:?}"),
    }
}

/// Collects every transition the listener reports.
fn recorder() -> (
    Arc<Mutex<Vec<Transition>>>,
    impl Fn(&Transition) + Send + Sync + 'static,
) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    (log, move |t: &Transition| l.lock().unwrap().push(*t))
}

/// A breaker that trips only on the failure rate over a time window, on `clock`.
fn rate_breaker(
    clock: &ManualClock,
    rate: f64,
    minimum_calls: u32,
    length: Duration,
    buckets: u32,
) -> CircuitBreaker {
    CircuitBreaker::builder("rate")
        .consecutive_failures(0)
        .failure_rate(rate)
        .minimum_calls(minimum_calls)
        .window(SlidingWindow::Time { length, buckets })
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// Asserts that `recorded` is the transition the failure-rate rule makes at `rate` against
/// `threshold` over `calls` calls.
#[track_caller]
fn assert_rate_trip(recorded: Recorded, rate: f64, threshold: f64, calls: u64) {
    match recorded {
        Recorded::Transitioned(t) => assert_eq!(
            t.reason,
            TransitionReason::FailureRate {
                rate,
                threshold,
                calls
            }
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn consecutive_failures_trip_and_success_resets_the_count() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("c")
        .consecutive_failures(3)
        .without_failure_rate()
        .clock(clock.clone())
        .build()
        .unwrap();
    for _ in 0..2 {
        assert_eq!(permit(&b).failure(), Recorded::Counted);
    }
    assert_eq!(b.status().consecutive_failures, 2);
    assert_eq!(permit(&b).success(), Recorded::Counted);
    assert_eq!(b.status().consecutive_failures, 0);
    assert_eq!(permit(&b).failure(), Recorded::Counted);
    assert_eq!(permit(&b).failure(), Recorded::Counted);
    match permit(&b).failure() {
        Recorded::Transitioned(t) => {
            assert_eq!(
                (t.from, t.to, t.generation),
                (State::Closed, State::Open, 1)
            );
            assert_eq!(
                t.reason,
                TransitionReason::ConsecutiveFailures {
                    failures: 3,
                    threshold: 3
                }
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.state(), State::Open);
}

#[test]
fn lift_defaults() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("d")
        .clock(clock.clone())
        .build()
        .unwrap();
    // 4 consecutive failures do not trip (lift: 5), and 4 calls are under the 10-call minimum.
    for _ in 0..4 {
        let _ = permit(&b).failure();
    }
    assert_eq!(b.state(), State::Closed);
    let _ = permit(&b).failure();
    assert_eq!(b.state(), State::Open);
    // Open for 60 s.
    clock.advance(secs(59));
    let r = rejection(&b);
    assert_eq!(
        r.reason,
        RejectReason::Open {
            until: secs(60),
            remaining: secs(1)
        }
    );
    clock.advance(secs(1));
    // Half-open: 3 probes at most in flight, 3 successes close it.
    let probes: Vec<_> = (0..3).map(|_| permit(&b)).collect();
    assert!(probes.iter().all(|p| p.is_probe()));
    assert_eq!(
        rejection(&b).reason,
        RejectReason::HalfOpenFull {
            in_flight: 3,
            max: 3
        }
    );
    let mut it = probes.into_iter();
    assert_eq!(it.next().unwrap().success(), Recorded::Counted);
    assert_eq!(it.next().unwrap().success(), Recorded::Counted);
    assert!(
        matches!(it.next().unwrap().success(), Recorded::Transitioned(t) if t.to == State::Closed)
    );
}

#[test]
fn failure_rate_over_a_count_window_with_minimum_calls() {
    let b = CircuitBreaker::builder("r")
        .consecutive_failures(0)
        .failure_rate(0.5)
        .minimum_calls(4)
        .window(SlidingWindow::Count { calls: 4 })
        .clock(ManualClock::new())
        .build()
        .unwrap();
    // 3 calls: under the minimum, whatever the rate.
    let _ = permit(&b).failure();
    let _ = permit(&b).success();
    assert_eq!(permit(&b).success(), Recorded::Counted);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(permit(&b).success(), Recorded::Counted); // 1 of 4
    assert_eq!(permit(&b).failure(), Recorded::Counted); // S S S F: 1 of 4, the first F left
    assert_eq!(b.status().window.unwrap().failures, 1);
    // S S F F
    assert_rate_trip(permit(&b).failure(), 0.5, 0.5, 4);
}

#[test]
fn time_window_forgets_old_failures() {
    let clock = ManualClock::new();
    let b = rate_breaker(&clock, 0.6, 3, secs(10), 10);
    let _ = permit(&b).failure();
    let _ = permit(&b).failure();
    clock.advance(secs(10)); // both leave the window
    let _ = permit(&b).failure();
    let _ = permit(&b).success();
    let _ = permit(&b).success();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.status().window.unwrap().calls, 3);
    let _ = permit(&b).failure();
    let _ = permit(&b).failure(); // 3 of 5 = 0.6
    assert_eq!(b.state(), State::Open);
}

#[test]
fn slow_calls_fixed_threshold() {
    let b = CircuitBreaker::builder("s")
        .consecutive_failures(0)
        .without_failure_rate()
        .slow_calls(SlowCall::Fixed(Duration::from_millis(100)), 0.5)
        .minimum_calls(2)
        .window(SlidingWindow::Count { calls: 10 })
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let _ = permit(&b).record_with_duration(Outcome::Success, Duration::from_millis(99));
    let _ = permit(&b).record_with_duration(Outcome::Success, Duration::from_millis(99));
    assert_eq!(b.state(), State::Closed);
    let _ = permit(&b).record_with_duration(Outcome::Success, Duration::from_millis(100));
    assert_eq!(b.status().window.unwrap().slow, 1);
    match permit(&b).record_with_duration(Outcome::Success, Duration::from_secs(1)) {
        Recorded::Transitioned(t) => assert!(matches!(
            t.reason,
            TransitionReason::SlowCallRate { calls: 4, .. }
        )),
        other => panic!("{other:?}"),
    }
}

#[test]
fn slow_probe_reopens_when_slow_calls_count() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("sp")
        .consecutive_failures(1)
        .slow_calls(SlowCall::Fixed(Duration::from_millis(10)), 1.0)
        .open_duration(secs(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    let _ = permit(&b).failure();
    clock.advance(secs(1));
    let p = permit(&b);
    clock.advance(Duration::from_millis(10)); // measured on the clock
    match p.success() {
        Recorded::Transitioned(t) => {
            assert_eq!(t.to, State::Open);
            assert_eq!(t.reason, TransitionReason::ProbeFailed { slow: true });
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn slow_calls_percentile_from_a_weir_histogram() {
    let clock = ManualClock::new();
    let latency = Histogram::new();
    let b = CircuitBreaker::builder("p")
        .consecutive_failures(0)
        .without_failure_rate()
        .slow_calls(
            SlowCall::Percentile(
                PercentileSlowCall::new(0.99)
                    .factor(2.0)
                    .window(secs(60))
                    .histogram(latency.clone()),
            ),
            0.5,
        )
        .minimum_calls(1)
        .window(SlidingWindow::Count { calls: 100 })
        .clock(clock.clone())
        .build()
        .unwrap();
    // No data yet: nothing is slow.
    let _ = permit(&b).record_with_duration(Outcome::Success, secs(100));
    assert_eq!(b.status().window.unwrap().slow, 0);
    for _ in 0..1000 {
        latency.record_duration(Duration::from_millis(10));
    }
    clock.advance(secs(7)); // past the refresh interval (window / 10)
    // p99 = 10 ms, x2 = 20 ms.
    let _ = permit(&b).record_with_duration(Outcome::Success, Duration::from_millis(19));
    assert_eq!(b.status().window.unwrap().slow, 0);
    let _ = permit(&b).record_with_duration(Outcome::Success, Duration::from_millis(21));
    assert_eq!(b.status().window.unwrap().slow, 1);
}

#[test]
fn percentile_from_the_breakers_own_histogram() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("own")
        .consecutive_failures(0)
        .without_failure_rate()
        .slow_calls(
            SlowCall::Percentile(PercentileSlowCall::new(0.5).floor(Duration::from_millis(5))),
            1.0,
        )
        .minimum_calls(1000)
        .window(SlidingWindow::Count { calls: 1000 })
        .clock(clock.clone())
        .build()
        .unwrap();
    for _ in 0..100 {
        let _ = permit(&b).record_with_duration(Outcome::Success, Duration::from_millis(1));
    }
    clock.advance(secs(7));
    // p50 = 1 ms, but the floor is 5 ms.
    let _ = permit(&b).record_with_duration(Outcome::Success, Duration::from_millis(4));
    let before = b.status().window.unwrap().slow;
    let _ = permit(&b).record_with_duration(Outcome::Success, Duration::from_millis(6));
    assert_eq!(b.status().window.unwrap().slow, before + 1);
}

#[test]
fn any_probe_failure_reopens_and_ignored_probes_free_their_slot() {
    let clock = ManualClock::new();
    let (log, listener) = recorder();
    let b = CircuitBreaker::builder("h")
        .consecutive_failures(1)
        .open_duration(secs(5))
        .half_open_max_probes(1)
        .success_threshold(2)
        .on_transition(listener)
        .clock(clock.clone())
        .build()
        .unwrap();
    let _ = permit(&b).failure();
    clock.advance(secs(5));
    let p = permit(&b);
    assert_eq!(b.status().probes_in_flight, 1);
    assert!(matches!(
        rejection(&b).reason,
        RejectReason::HalfOpenFull {
            in_flight: 1,
            max: 1
        }
    ));
    drop(p); // unrecorded: ignored, slot freed
    assert_eq!(b.status().probes_in_flight, 0);
    assert_eq!(permit(&b).ignore(), Recorded::Ignored);
    assert_eq!(permit(&b).success(), Recorded::Counted);
    assert_eq!(b.status().probe_successes, 1);
    match permit(&b).failure() {
        Recorded::Transitioned(t) => {
            assert_eq!((t.from, t.to), (State::HalfOpen, State::Open));
            assert_eq!(t.at, secs(5));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.status().open_remaining, Some(secs(5)));
    let kinds: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.from, t.to, t.generation))
        .collect();
    assert_eq!(
        kinds,
        [
            (State::Closed, State::Open, 1),
            (State::Open, State::HalfOpen, 2),
            (State::HalfOpen, State::Open, 3)
        ]
    );
}

#[test]
fn stale_outcomes_do_not_touch_a_newer_generation() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("g")
        .consecutive_failures(1)
        .failure_rate(0.5)
        .minimum_calls(1)
        .window(SlidingWindow::Count { calls: 10 })
        .open_duration(secs(1))
        .half_open_max_probes(2)
        .success_threshold(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let old_closed = permit(&b); // generation 0
    let _ = permit(&b).failure(); // trips: generation 1
    clock.advance(secs(1));
    let old_probe = permit(&b); // half-open, generation 2
    let closer = permit(&b);
    assert!(
        matches!(closer.success(), Recorded::Transitioned(t) if t.to == State::Closed && t.generation == 3)
    );
    // The old probe's failure would reopen a half-open breaker; it is stale now.
    assert_eq!(
        old_probe.failure(),
        Recorded::Stale {
            permit_generation: 2,
            current_generation: 3
        }
    );
    // The old closed-generation failure does not count in the new window either.
    assert_eq!(
        old_closed.failure(),
        Recorded::Stale {
            permit_generation: 0,
            current_generation: 3
        }
    );
    assert_eq!(b.state(), State::Closed);
    let st = b.status();
    assert_eq!(st.window.unwrap().calls, 0);
    assert_eq!(st.consecutive_failures, 0);
}

#[test]
fn shadow_mode_admits_and_counts() {
    let clock = ManualClock::new();
    let registry = Registry::builder().clock(Arc::new(clock.clone())).build();
    let b = CircuitBreaker::builder("shadow")
        .mode(Mode::Shadow)
        .consecutive_failures(1)
        .half_open_max_probes(1)
        .registry(&registry)
        .clock(clock.clone())
        .build()
        .unwrap();
    let _ = permit(&b).failure();
    assert_eq!(b.state(), State::Open);
    let p = permit(&b); // would be rejected
    assert!(matches!(
        p.shadow_rejection(),
        Some(RejectReason::Open { .. })
    ));
    assert!(!p.is_probe());
    assert_eq!(p.failure(), Recorded::Shadow);
    assert_eq!(b.state(), State::Open);
    let snap = registry.snapshot();
    let req = |r: &str| snap.counter("circuit_breaker_requests_total", &["shadow", r]);
    assert_eq!(req("shadow_rejected"), Some(1));
    assert_eq!(req("rejected"), Some(0));
    assert_eq!(req("failure"), Some(2));
}

#[test]
fn metrics_follow_lift_names() {
    let clock = ManualClock::new();
    let registry = Registry::builder().clock(Arc::new(clock.clone())).build();
    let b = CircuitBreaker::builder("payments")
        .consecutive_failures(1)
        .open_duration(secs(1))
        .success_threshold(1)
        .registry(&registry)
        .clock(clock.clone())
        .build()
        .unwrap();
    let state = || {
        registry
            .snapshot()
            .float_gauge("circuit_breaker_state", &["payments"])
    };
    assert_eq!(state(), Some(0.0));
    let _ = permit(&b).success();
    let _ = permit(&b).failure();
    assert_eq!(state(), Some(1.0));
    let _ = rejection(&b);
    clock.advance(secs(1));
    let p = permit(&b);
    assert_eq!(state(), Some(0.5));
    let _ = p.success();
    assert_eq!(state(), Some(0.0));
    let snap = registry.snapshot();
    let req = |r: &str| snap.counter("circuit_breaker_requests_total", &["payments", r]);
    assert_eq!(
        (req("success"), req("failure"), req("rejected")),
        (Some(2), Some(1), Some(1))
    );
    let tr =
        |f: &str, t: &str| snap.counter("circuit_breaker_transitions_total", &["payments", f, t]);
    assert_eq!(tr("closed", "open"), Some(1));
    assert_eq!(tr("open", "half_open"), Some(1));
    assert_eq!(tr("half_open", "closed"), Some(1));
    assert_eq!(tr("half_open", "open"), Some(0));
}

#[test]
fn reset_closes_from_any_state() {
    let b = CircuitBreaker::builder("x")
        .consecutive_failures(1)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    assert_eq!(b.reset(), None);
    let _ = permit(&b).failure();
    let t = b.reset().unwrap();
    assert_eq!(
        (t.from, t.to, t.reason),
        (State::Open, State::Closed, TransitionReason::Reset)
    );
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn listener_may_use_the_breaker() {
    let holder: Arc<Mutex<Option<CircuitBreaker>>> = Arc::new(Mutex::new(None));
    let seen = Arc::new(AtomicU32::new(0));
    let (h, s) = (holder.clone(), seen.clone());
    let b = CircuitBreaker::builder("re")
        .consecutive_failures(1)
        .on_transition(move |_| {
            let b = h.lock().unwrap().clone().unwrap();
            let _ = b.status();
            if let Decision::Permitted(p) = b.try_acquire() {
                p.ignore();
            }
            s.fetch_add(1, Ordering::Relaxed);
        })
        .clock(ManualClock::new())
        .build()
        .unwrap();
    *holder.lock().unwrap() = Some(b.clone());
    let _ = permit(&b).failure();
    assert_eq!(seen.load(Ordering::Relaxed), 1);
    *holder.lock().unwrap() = None;
}

#[test]
fn configuration_is_validated() {
    let e = |b: weir::policy::breaker::BreakerBuilder| b.build().unwrap_err();
    let base = || CircuitBreaker::builder("v");
    assert!(matches!(
        e(base().failure_rate(f64::NAN)),
        BreakerConfigError::Rate { .. }
    ));
    assert!(matches!(
        e(base().failure_rate(0.0)),
        BreakerConfigError::Rate { .. }
    ));
    assert!(matches!(
        e(base().failure_rate(1.5)),
        BreakerConfigError::Rate { .. }
    ));
    assert!(matches!(
        e(base().slow_calls(SlowCall::Fixed(secs(1)), -1.0)),
        BreakerConfigError::Rate { .. }
    ));
    assert_eq!(e(base().minimum_calls(0)), BreakerConfigError::MinimumCalls);
    assert!(matches!(
        e(base().window(SlidingWindow::Count { calls: 0 })),
        BreakerConfigError::Window { .. }
    ));
    assert!(matches!(
        e(base().window(SlidingWindow::Time {
            length: secs(1),
            buckets: 2000
        })),
        BreakerConfigError::Window { .. }
    ));
    assert!(matches!(
        e(base().window(SlidingWindow::Time {
            length: Duration::MAX,
            buckets: 10
        })),
        BreakerConfigError::Window { .. }
    ));
    assert!(matches!(
        e(base().open_duration(Duration::MAX)),
        BreakerConfigError::OpenDuration { .. }
    ));
    assert!(matches!(
        e(base().half_open_max_probes(0)),
        BreakerConfigError::MaxProbes { .. }
    ));
    assert!(matches!(
        e(base().success_threshold(70_000)),
        BreakerConfigError::SuccessThreshold { .. }
    ));
    assert_eq!(
        e(base().consecutive_failures(0).without_failure_rate()),
        BreakerConfigError::NoTripCondition
    );
    assert!(matches!(
        e(base().slow_calls(SlowCall::Percentile(PercentileSlowCall::new(1.5)), 0.5)),
        BreakerConfigError::Percentile { .. }
    ));
    assert!(matches!(
        e(base().slow_calls(
            SlowCall::Percentile(PercentileSlowCall::new(0.5).factor(f64::INFINITY)),
            0.5
        )),
        BreakerConfigError::Percentile { .. }
    ));
    assert_eq!(
        base().build_keyed(0, secs(1)).unwrap_err(),
        BreakerConfigError::Keys
    );
    // A registry conflict surfaces as an error.
    let r = Registry::new();
    r.counter("circuit_breaker_requests_total", "other", &[])
        .unwrap();
    let err = base().registry(&r).build().unwrap_err();
    assert!(matches!(err, BreakerConfigError::Registry(_)));
    assert!(std::error::Error::source(&err).is_some());
    for err in [
        err,
        BreakerConfigError::NoTripCondition,
        BreakerConfigError::Keys,
    ] {
        assert!(!err.to_string().is_empty());
    }
    // Zero open duration is allowed: the next call probes at once.
    let b = base()
        .consecutive_failures(1)
        .open_duration(Duration::ZERO)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let _ = permit(&b).failure();
    assert!(permit(&b).is_probe());
}

// === keyed ===

#[test]
fn keyed_breakers_are_independent_bounded_and_evicted_when_idle() {
    let clock = ManualClock::new();
    let registry = Registry::builder().clock(Arc::new(clock.clone())).build();
    let keyed = CircuitBreaker::builder("api")
        .consecutive_failures(1)
        .open_duration(secs(30))
        .registry(&registry)
        .clock(clock.clone())
        .build_keyed(2, secs(60))
        .unwrap();
    let a = breaker_key("api", Some("t1"), Some(("GET", "/a")));
    let c = breaker_key("api", Some("t2"), None);
    let _ = keyed.try_acquire(&a).permit().unwrap().failure();
    assert_eq!(keyed.get(&a).state(), State::Open);
    assert_eq!(keyed.get(&c).state(), State::Closed);
    assert_eq!(keyed.len(), 2);
    // Full: a third key shares the overflow breaker.
    let o = keyed.get("api:tenant:t3");
    assert_eq!(o.name(), "__overflow__");
    assert!(!keyed.contains("api:tenant:t3"));
    // After the TTL, the closed key can go, the open one cannot (until its open time is over).
    clock.advance(secs(29));
    clock.advance(secs(31));
    // `a`'s open duration ended at 30 s, so both are evictable now.
    assert_eq!(keyed.evict_idle(), 2);
    assert!(keyed.is_empty());
    let _ = keyed.try_acquire(&a).permit().unwrap().failure();
    assert_eq!(keyed.get(&a).state(), State::Open);
    clock.advance(secs(60));
    // Idle for the TTL, but a fresh open period: it stays (its open time is over? 60 s > 30 s).
    assert_eq!(keyed.evict_idle(), 1);
    // Keys carry their own metrics.
    let snap = registry.snapshot();
    assert_eq!(
        snap.counter("circuit_breaker_requests_total", &[a.as_str(), "failure"]),
        Some(2)
    );
    assert_eq!(keyed.keys().len(), 0);
}

#[test]
fn keyed_open_and_half_open_breakers_are_not_evicted() {
    let clock = ManualClock::new();
    let keyed = CircuitBreaker::builder("k")
        .consecutive_failures(1)
        .open_duration(secs(100))
        .clock(clock.clone())
        .build_keyed(10, secs(10))
        .unwrap();
    let _ = keyed.try_acquire("open").permit().unwrap().failure();
    let _ = keyed.try_acquire("closed").permit().unwrap().success();
    clock.advance(secs(50));
    assert_eq!(keyed.evict_idle(), 1);
    assert!(keyed.contains("open"));
    clock.advance(secs(50));
    let probe = keyed.try_acquire("open").permit().unwrap(); // half-open now
    clock.advance(secs(50));
    assert_eq!(keyed.evict_idle(), 0);
    let _ = probe.success();
}

#[test]
fn keyed_lookups_from_many_threads_share_one_breaker_per_key() {
    let keyed = Arc::new(
        CircuitBreaker::builder("m")
            .consecutive_failures(1_000_000)
            .without_failure_rate()
            .clock(ManualClock::new())
            .build_keyed(1000, secs(60))
            .unwrap(),
    );
    std::thread::scope(|s| {
        for t in 0..8 {
            let keyed = keyed.clone();
            s.spawn(move || {
                for i in 0..2000 {
                    let k = format!("key{}", (i + t) % 64);
                    let _ = keyed.try_acquire(&k).permit().unwrap().failure();
                }
            });
        }
    });
    assert_eq!(keyed.len(), 64);
    let total: u32 = (0..64)
        .map(|i| keyed.get(&format!("key{i}")).status().consecutive_failures)
        .sum();
    assert_eq!(total, 16_000);
}

// === concurrency ===

/// Many threads holding closed-generation permits all report failures at once: exactly one
/// closed → open transition, and one listener call.
#[test]
fn concurrent_failures_trip_exactly_once() {
    for round in 0..20 {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let b = CircuitBreaker::builder("once")
            .consecutive_failures(5)
            .failure_rate(0.5)
            .minimum_calls(5)
            .window(SlidingWindow::Count { calls: 100 })
            .on_transition(move |t| {
                assert_eq!((t.from, t.to), (State::Closed, State::Open));
                c.fetch_add(1, Ordering::SeqCst);
            })
            .clock(ManualClock::new())
            .build()
            .unwrap();
        let barrier = Arc::new(Barrier::new(16));
        let outcomes: Vec<Recorded> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..16)
                .map(|_| {
                    let (b, barrier) = (b.clone(), barrier.clone());
                    s.spawn(move || {
                        let p = permit(&b);
                        barrier.wait();
                        p.failure()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let transitions = outcomes
            .iter()
            .filter(|r| matches!(r, Recorded::Transitioned(_)))
            .count();
        assert_eq!(transitions, 1, "round {round}: {outcomes:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "round {round}");
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.status().generation, 1);
    }
}

/// Half-open under contention: never more than `max` probes in flight.
#[test]
fn half_open_probes_are_bounded_under_contention() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("probes")
        .consecutive_failures(1)
        .half_open_max_probes(3)
        .success_threshold(u16::MAX as u32)
        .open_duration(secs(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    let _ = permit(&b).failure();
    clock.advance(secs(1));
    let in_flight = AtomicU32::new(0);
    let peak = AtomicU32::new(0);
    let granted = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                for _ in 0..2000 {
                    if let Decision::Permitted(p) = b.try_acquire() {
                        assert!(p.is_probe());
                        let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        granted.fetch_add(1, Ordering::Relaxed);
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        let _ = p.ignore();
                    }
                }
            });
        }
    });
    assert!(peak.load(Ordering::SeqCst) <= 3);
    assert!(granted.load(Ordering::Relaxed) > 0);
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.status().probes_in_flight, 0);
    assert_eq!(b.status().generation, 2);
}

/// Threads drive random outcomes while one moves the clock: every transition is reported
/// once, and the reported transitions form one chain (each generation once, each `from` the
/// previous `to`), matching the metrics.
#[test]
fn transitions_form_one_chain_under_contention() {
    let clock = ManualClock::new();
    let registry = Registry::builder().clock(Arc::new(clock.clone())).build();
    let (log, listener) = recorder();
    let b = CircuitBreaker::builder("chain")
        .consecutive_failures(3)
        .failure_rate(0.5)
        .minimum_calls(10)
        .window(SlidingWindow::Count { calls: 20 })
        .open_duration(Duration::from_millis(2))
        .half_open_max_probes(2)
        .success_threshold(2)
        .on_transition(listener)
        .registry(&registry)
        .clock(clock.clone())
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (b, clock) = (&b, &clock);
            s.spawn(move || {
                let rng = weir::policy::Rng::with_seed(t);
                for i in 0..20_000 {
                    if t == 0 && i % 4 == 0 {
                        clock.advance(Duration::from_millis(1));
                    }
                    if let Decision::Permitted(p) = b.try_acquire() {
                        let _ = match rng.below(10) {
                            0..=3 => p.failure(),
                            4 => p.ignore(),
                            _ => p.success(),
                        };
                    }
                }
            });
        }
    });
    let mut log = log.lock().unwrap().clone();
    log.sort_by_key(|t| t.generation);
    assert!(log.len() >= 4, "only {} transitions", log.len());
    let mut state = State::Closed;
    for (i, t) in log.iter().enumerate() {
        assert_eq!(t.generation as usize, i + 1, "{log:?}");
        assert_eq!(t.from, state);
        state = t.to;
    }
    assert_eq!(b.state(), state);
    assert_eq!(b.status().generation as usize, log.len());
    let snap = registry.snapshot();
    let mut counted = 0;
    for (f, to) in [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("half_open", "open"),
    ] {
        let n = snap
            .counter("circuit_breaker_transitions_total", &["chain", f, to])
            .unwrap();
        let logged = log
            .iter()
            .filter(|t| t.from.as_str() == f && t.to.as_str() == to)
            .count();
        assert_eq!(n as usize, logged);
        counted += logged;
    }
    assert_eq!(counted, log.len());
    assert_eq!(
        snap.float_gauge("circuit_breaker_state", &["chain"]),
        Some(state.gauge_value())
    );
}

/// Found by fuzzing: a success that brings the window to its minimum calls can trip the
/// breaker on the failure rate; the open period must start at that call's time.
#[test]
fn a_success_that_trips_on_the_rate_opens_for_the_full_duration() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("late")
        .consecutive_failures(0)
        .failure_rate(0.5)
        .minimum_calls(2)
        .window(SlidingWindow::Count { calls: 10 })
        .open_duration(secs(5))
        .clock(clock.clone())
        .build()
        .unwrap();
    clock.advance(secs(100));
    let _ = permit(&b).failure();
    assert!(matches!(permit(&b).success(), Recorded::Transitioned(t) if t.at == secs(100)));
    assert_eq!(b.status().open_remaining, Some(secs(5)));
    assert!(matches!(rejection(&b).reason, RejectReason::Open { until, .. } if until == secs(105)));
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CircuitBreaker>();
    send_sync::<weir::policy::breaker::Permit>();
    send_sync::<weir::policy::breaker::OwnedPermit>();
    send_sync::<weir::policy::breaker::KeyedBreakers>();
    send_sync::<Decision>();
    send_sync::<weir::policy::breaker::OwnedDecision>();
}

#[test]
fn minimum_calls_is_clamped_to_a_smaller_count_window() {
    // lift's minimum of 10 calls with a 4-call window: the rate still trips once the window
    // is full.
    let b = CircuitBreaker::builder("clamp")
        .consecutive_failures(0)
        .window(SlidingWindow::Count { calls: 4 })
        .clock(ManualClock::new())
        .build()
        .unwrap();
    for _ in 0..3 {
        let _ = permit(&b).failure();
    }
    assert_eq!(b.state(), State::Closed);
    assert!(
        matches!(permit(&b).success(), Recorded::Transitioned(t) if matches!(t.reason, TransitionReason::FailureRate { calls: 4, .. }))
    );
}

#[test]
fn owned_permits_outlive_the_borrow_and_report_to_their_breaker() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("owned")
        .consecutive_failures(2)
        .without_failure_rate()
        .clock(clock.clone())
        .build()
        .unwrap();
    // An owned permit moves into another thread (it is 'static).
    let p = b.try_acquire_owned().permit().expect("closed");
    assert_eq!(p.breaker().name(), "owned");
    assert_eq!(
        std::thread::spawn(move || p.failure()).join().unwrap(),
        Recorded::Counted
    );
    assert_eq!(b.status().consecutive_failures, 1);
    // A borrowed permit turned owned, and a whole decision turned owned.
    let p = permit(&b).into_owned();
    let d = b.try_acquire().into_owned();
    drop(b.clone()); // other handles come and go
    assert!(d.is_permitted());
    assert!(matches!(d.permit().unwrap().ignore(), Recorded::Ignored));
    assert!(matches!(p.failure(), Recorded::Transitioned(t) if t.to == State::Open));
    // A rejection is the same either way.
    assert!(matches!(
        b.try_acquire_owned(),
        Decision::Rejected(r) if matches!(r.reason, RejectReason::Open { .. })
    ));
    // The last handle can go while an owned permit is out: the permit keeps the breaker.
    clock.advance(secs(60));
    let probe = b.try_acquire_owned().permit().expect("half-open probe");
    drop(b);
    assert!(matches!(probe.success(), Recorded::Counted));
}

#[test]
fn keyed_try_acquire_gives_owned_permits() {
    let breakers = CircuitBreaker::builder("k")
        .consecutive_failures(1)
        .clock(ManualClock::new())
        .build_keyed(10, secs(60))
        .unwrap();
    let p: weir::policy::breaker::OwnedPermit = breakers.try_acquire("a").permit().unwrap();
    let t = std::thread::spawn(move || p.failure()).join().unwrap();
    assert!(matches!(t, Recorded::Transitioned(_)));
    assert_eq!(breakers.get("a").state(), State::Open);
}

/// Successes skip the rate check when it cannot trip (see docs/policy-breaker.md, "Windows"),
/// but the first calls of a new bucket check: here old successes leave the window, and the
/// next success finds the rate at the threshold and trips, as a check on every success would.
#[test]
fn a_success_trips_when_old_buckets_leave_the_window() {
    let clock = ManualClock::new();
    let b = rate_breaker(&clock, 0.5, 4, secs(2), 2);
    for _ in 0..10 {
        assert_eq!(permit(&b).success(), Recorded::Counted); // bucket [0, 1 s)
    }
    clock.advance(secs(1));
    assert_eq!(permit(&b).failure(), Recorded::Counted);
    assert_eq!(permit(&b).failure(), Recorded::Counted);
    assert_eq!(permit(&b).success(), Recorded::Counted); // 2 of 13
    // The first bucket leaves the window: F F S, then this success makes 2 of 4.
    clock.advance(secs(1));
    assert_rate_trip(permit(&b).success(), 0.5, 0.5, 4);
}

/// Once a bucket holds the minimum number of calls, further successes there cannot trip and
/// skip the check; failures still check every time.
#[test]
fn failures_check_the_rate_after_many_successes() {
    let clock = ManualClock::new();
    let b = rate_breaker(&clock, 0.5, 2, secs(10), 10);
    for _ in 0..100 {
        assert_eq!(permit(&b).success(), Recorded::Counted);
    }
    for i in 0..99 {
        assert_eq!(permit(&b).failure(), Recorded::Counted, "failure {i}");
    }
    assert!(matches!(permit(&b).failure(), Recorded::Transitioned(t) if t.to == State::Open));
}

#[test]
fn time_window_stale_outcomes_do_not_touch_a_newer_period() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("epochs")
        .consecutive_failures(1)
        .failure_rate(0.9)
        .minimum_calls(100)
        .open_duration(secs(1))
        .success_threshold(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let old = permit(&b).into_owned(); // closed, generation 0
    assert_eq!(permit(&b).success(), Recorded::Counted);
    let _ = permit(&b).failure(); // generation 1
    clock.advance(secs(1));
    let _ = permit(&b).success(); // half-open (2), then closed (3)
    assert_eq!((b.state(), b.status().generation), (State::Closed, 3));
    assert_eq!(b.status().window.unwrap().calls, 0);
    assert_eq!(
        old.success(),
        Recorded::Stale {
            permit_generation: 0,
            current_generation: 3
        }
    );
    assert_eq!(permit(&b).success(), Recorded::Counted);
    assert_eq!(b.status().window.unwrap().calls, 1);
    // 256 generations later the epoch repeats; the period still starts empty.
    for _ in 0..86 {
        let _ = permit(&b).failure();
        assert!(b.reset().is_some());
    }
    assert_eq!(b.status().generation, 3 + 2 * 86);
    for _ in 0..45 {
        let _ = permit(&b).failure();
        let _ = b.reset();
    }
    assert_eq!(b.status().generation, 3 + 2 * 131);
    assert_eq!(b.status().window.unwrap().calls, 0);
    assert_eq!(permit(&b).success(), Recorded::Counted);
    assert_eq!(b.status().window.unwrap().calls, 1);
}

#[test]
fn concurrent_successes_are_all_counted_in_a_time_window() {
    let b = CircuitBreaker::builder("stripes")
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let threads = 8;
    let per = 10_000;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per {
                    assert_eq!(permit(&b).success(), Recorded::Counted);
                }
            });
        }
    });
    let w = b.status().window.unwrap();
    assert_eq!((w.calls, w.failures), (threads * per, 0));
}

#[test]
fn window_stripes_do_not_change_what_trips() {
    for stripes in [0, 1, 2, 3, 8, 64] {
        let b = CircuitBreaker::builder("stripes")
            .consecutive_failures(0)
            .failure_rate(0.5)
            .minimum_calls(4)
            .window_stripes(stripes)
            .clock(ManualClock::new())
            .build()
            .unwrap();
        for _ in 0..2 {
            assert_eq!(permit(&b).success(), Recorded::Counted);
        }
        assert_eq!(permit(&b).failure(), Recorded::Counted);
        assert_rate_trip(permit(&b).failure(), 0.5, 0.5, 4);
    }
}
