//! Timeouts: lift's precedence and calculators, saturation, validation, the percentile
//! calculator, stats and metrics, shadow mode, and exact counts under contention.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use weir::policy::Mode;
use weir::policy::timeout::{
    AdaptiveCalculator, Calculated, Calculation, Clamp, LoadCalculator, LoadGauges, LoadSignals,
    Method, PercentileCalculator, Priority, PriorityCalculator, RequestInfo, TimeoutBuildError,
    TimeoutCalculator, TimeoutOutcome, TimeoutPolicy, TimeoutRule,
};
use weir::{ManualClock, Registry, SharedClock};

fn manual() -> (ManualClock, SharedClock) {
    let c = ManualClock::new();
    (c.clone(), Arc::new(c))
}

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

/// A calculator that answers only for one method, to exercise fall-through.
#[derive(Debug)]
struct OnlyFor(Method, Duration);

impl TimeoutCalculator for OnlyFor {
    fn calculate(&self, r: &RequestInfo<'_>) -> Option<Calculation> {
        (r.method == self.0).then(|| Calculation::new(self.1, Calculated::Custom { name: "only" }))
    }
}

// === precedence ===

#[test]
fn precedence_dynamic_then_tenant_then_operation_then_default() {
    let (_, clock) = manual();
    let policy = TimeoutPolicy::builder()
        .default_timeout(S(30))
        .tenant_timeout("acme", S(5))
        .operation_timeout("GET /slow", S(90))
        .calculator(OnlyFor(Method::Put, S(7)))
        .clock(clock)
        .build()
        .unwrap();
    let cases = [
        (
            RequestInfo::new(Method::Put)
                .tenant("acme")
                .operation("GET /slow"),
            S(7),
            "dynamic",
        ),
        (
            RequestInfo::new(Method::Get)
                .tenant("acme")
                .operation("GET /slow"),
            S(5),
            "tenant",
        ),
        (
            RequestInfo::new(Method::Get)
                .tenant("other")
                .operation("GET /slow"),
            S(90),
            "operation",
        ),
        (
            RequestInfo::new(Method::Get).operation("GET /fast"),
            S(30),
            "default",
        ),
        (RequestInfo::new(Method::Get), S(30), "default"),
    ];
    for (req, timeout, level) in cases {
        let d = policy.decide(&req);
        assert_eq!(d.timeout(), timeout, "{level}");
        let rule = match d.rule() {
            TimeoutRule::Dynamic(c) => {
                assert_eq!(c.how, Calculated::Custom { name: "only" });
                "dynamic"
            }
            TimeoutRule::Tenant => "tenant",
            TimeoutRule::Operation => "operation",
            TimeoutRule::Default => "default",
            _ => "?",
        };
        assert_eq!(rule, level);
        assert!(
            d.to_string()
                .contains(if level == "dynamic" { "only" } else { level })
        );
    }
}

#[test]
fn a_zero_dynamic_timeout_falls_through() {
    let (_, clock) = manual();
    let policy = TimeoutPolicy::builder()
        .tenant_timeout("t", S(3))
        .calculator(OnlyFor(Method::Get, Duration::ZERO))
        .clock(clock)
        .build()
        .unwrap();
    let d = policy.decide(&RequestInfo::new(Method::Get).tenant("t"));
    assert_eq!((d.timeout(), d.rule()), (S(3), TimeoutRule::Tenant));
    assert_eq!(policy.default_timeout(), S(30));
}

// === calculators ===

#[test]
fn adaptive_factors_match_lift() {
    let c = AdaptiveCalculator::new(S(10));
    let t = |r: RequestInfo<'_>| c.calculate(&r).unwrap().timeout;
    assert_eq!(t(RequestInfo::new(Method::Get)), S(5));
    assert_eq!(t(RequestInfo::new(Method::Post)), S(20));
    assert_eq!(t(RequestInfo::new(Method::Put)), S(20));
    assert_eq!(t(RequestInfo::new(Method::Delete)), S(30));
    assert_eq!(t(RequestInfo::new(Method::Patch)), S(10));
    assert_eq!(t(RequestInfo::new(Method::Other)), S(10));
    // Thresholds are strict: more than 5 parameters, more than 1 MiB.
    assert_eq!(t(RequestInfo::new(Method::Patch).params(5)), S(10));
    assert_eq!(t(RequestInfo::new(Method::Patch).params(6)), S(20));
    assert_eq!(
        t(RequestInfo::new(Method::Patch).body_bytes(1 << 20)),
        S(10)
    );
    assert_eq!(
        t(RequestInfo::new(Method::Patch).body_bytes((1 << 20) + 1)),
        S(30)
    );
    assert_eq!(
        t(RequestInfo::new(Method::Get).params(9).body_bytes(1 << 30)),
        S(30)
    );
    let how = c
        .calculate(&RequestInfo::new(Method::Delete).params(6))
        .unwrap()
        .how;
    assert_eq!(
        how,
        Calculated::Adaptive {
            base: S(10),
            method_factor: 3.0,
            params_factor: 2.0,
            body_factor: 1.0
        }
    );
    let custom = AdaptiveCalculator::new(S(10))
        .with_method_factors(1.0, 1.5, 4.0)
        .unwrap()
        .with_params(0, 3.0)
        .unwrap()
        .with_body(0, 1.0)
        .unwrap();
    assert_eq!(
        custom
            .calculate(&RequestInfo::new(Method::Post).params(1))
            .unwrap()
            .timeout,
        S(45)
    );
}

#[test]
fn priority_factors_match_lift() {
    let c = PriorityCalculator::new(S(8));
    let t = |p| {
        c.calculate(&RequestInfo::new(Method::Get).priority(p))
            .unwrap()
            .timeout
    };
    assert_eq!(t(Priority::Critical), S(40));
    assert_eq!(t(Priority::High), S(16));
    assert_eq!(t(Priority::Normal), S(8));
    assert_eq!(t(Priority::Low), S(4));
    assert_eq!(t(Priority::Background), S(2));
    assert_eq!(Priority::from_name("CRITICAL"), Priority::Critical);
    assert_eq!(Priority::from_name("urgent"), Priority::Normal);
    let c = c.with_factor(Priority::Low, 0.125).unwrap();
    assert_eq!(
        c.calculate(&RequestInfo::new(Method::Get).priority(Priority::Low))
            .unwrap()
            .timeout,
        S(1)
    );
}

#[test]
fn load_factor_matches_lift_and_caps() {
    let t = |s: LoadSignals| {
        LoadCalculator::new(S(10), s)
            .calculate(&RequestInfo::default())
            .unwrap()
    };
    assert_eq!(t(LoadSignals::new(0.5, 0.5, 10, 0.0)).timeout, S(10));
    assert_eq!(t(LoadSignals::new(0.81, 0.5, 10, 0.0)).timeout, S(15));
    assert_eq!(t(LoadSignals::new(0.5, 0.81, 10, 0.0)).timeout, S(13));
    assert_eq!(t(LoadSignals::new(0.5, 0.5, 101, 0.0)).timeout, S(12));
    assert_eq!(t(LoadSignals::new(0.5, 0.5, 10, 0.11)).timeout, S(14));
    let all = t(LoadSignals::new(1.0, 1.0, 1000, 1.0));
    assert_eq!(all.timeout, S(24));
    assert!(matches!(
        all.how,
        Calculated::Load {
            capped: false,
            factor,
            ..
        } if (factor - 2.4).abs() < 1e-12
    ));
    // With heavier weights the cap (5x) applies.
    let heavy = LoadCalculator::new(S(10), || LoadSignals::new(1.0, 1.0, 1000, 1.0))
        .with_weights(2.0, 2.0, 2.0, 2.0)
        .unwrap();
    let c = heavy.calculate(&RequestInfo::default()).unwrap();
    assert_eq!(c.timeout, S(50));
    assert!(matches!(c.how, Calculated::Load { capped: true, .. }));
    let capped3 = LoadCalculator::new(S(10), LoadSignals::new(1.0, 0.0, 0, 0.0))
        .with_weights(9.0, 0.0, 0.0, 0.0)
        .unwrap()
        .with_cap(3.0)
        .unwrap();
    assert_eq!(
        capped3.calculate(&RequestInfo::default()).unwrap().timeout,
        S(30)
    );
    // Thresholds can move; gauges feed the calculator lock-free.
    let gauges = LoadGauges::default();
    let c = LoadCalculator::new(S(10), gauges.clone())
        .with_thresholds(0.5, 0.5, 5, 0.05)
        .unwrap();
    gauges.active_requests.set(6);
    assert_eq!(c.calculate(&RequestInfo::default()).unwrap().timeout, S(12));
    gauges.active_requests.set(-3); // negative reads as 0
    assert_eq!(c.calculate(&RequestInfo::default()).unwrap().timeout, S(10));
}

// === nothing panics ===

#[test]
fn builders_reject_nan_infinite_negative_and_zero() {
    let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 0.0];
    for v in bad {
        assert!(matches!(
            AdaptiveCalculator::new(S(1)).with_method_factors(v, 1.0, 1.0),
            Err(TimeoutBuildError::InvalidFactor { .. })
        ));
        assert!(AdaptiveCalculator::new(S(1)).with_params(1, v).is_err());
        assert!(AdaptiveCalculator::new(S(1)).with_body(1, v).is_err());
        assert!(
            PriorityCalculator::new(S(1))
                .with_factor(Priority::High, v)
                .is_err()
        );
        assert!(
            PercentileCalculator::builder(manual().1)
                .multiplier(v)
                .build()
                .is_err()
        );
    }
    let load = || LoadCalculator::new(S(1), LoadSignals::default());
    for v in [f64::NAN, f64::INFINITY, -0.5] {
        assert!(load().with_weights(v, 0.0, 0.0, 0.0).is_err());
        assert!(load().with_cap(v).is_err());
    }
    assert!(load().with_weights(0.0, 0.0, 0.0, 0.0).is_ok()); // zero weights are fine
    assert!(load().with_cap(0.5).is_err());
    assert!(load().with_thresholds(f64::NAN, 0.0, 0, 0.0).is_err());
    assert!(load().with_thresholds(-1.0, 2.0, 0, 0.0).is_ok());
    for q in [f64::NAN, -0.1, 1.1] {
        assert!(matches!(
            PercentileCalculator::builder(manual().1)
                .quantile(q)
                .build(),
            Err(TimeoutBuildError::InvalidQuantile { .. })
        ));
    }
    assert!(matches!(
        PercentileCalculator::builder(manual().1)
            .bounds(S(2), S(1))
            .build(),
        Err(TimeoutBuildError::InvalidBounds { .. })
    ));
    assert!(
        PercentileCalculator::builder(manual().1)
            .bounds(Duration::ZERO, S(1))
            .build()
            .is_err()
    );
    let e = PercentileCalculator::builder(manual().1)
        .window(S(10), S(3))
        .build()
        .unwrap_err();
    assert!(matches!(e, TimeoutBuildError::Window(_)));
    assert!(std::error::Error::source(&e).is_some());
    assert_eq!(
        TimeoutPolicy::builder()
            .default_timeout(Duration::ZERO)
            .build()
            .unwrap_err(),
        TimeoutBuildError::ZeroTimeout { what: "default" }
    );
    assert!(
        TimeoutPolicy::builder()
            .tenant_timeout("t", Duration::ZERO)
            .build()
            .is_err()
    );
    assert!(
        TimeoutPolicy::builder()
            .operation_timeout("o", Duration::ZERO)
            .build()
            .is_err()
    );
    assert!(
        !TimeoutBuildError::ZeroTimeout { what: "x" }
            .to_string()
            .is_empty()
    );
}

#[test]
fn huge_durations_saturate() {
    let (_, clock) = manual();
    let policy = TimeoutPolicy::builder()
        .calculator(
            AdaptiveCalculator::new(Duration::MAX)
                .with_params(0, 1e300)
                .unwrap(),
        )
        .default_timeout(Duration::MAX)
        .clock(clock)
        .build()
        .unwrap();
    let d = policy.decide(
        &RequestInfo::new(Method::Delete)
            .params(1)
            .body_bytes(u64::MAX),
    );
    assert_eq!(d.timeout(), Duration::MAX);
    assert_eq!(d.deadline(), Duration::MAX);
    assert!(!policy.complete_after(&d, Duration::MAX - S(1)).is_timeout());
    assert!(policy.complete_after(&d, Duration::MAX).is_timeout());
    let tiny = PriorityCalculator::new(Duration::from_nanos(1))
        .with_factor(Priority::Background, 1e-300)
        .unwrap();
    // Rounds to zero: "no opinion", so a policy would fall through.
    assert_eq!(
        tiny.calculate(&RequestInfo::new(Method::Get).priority(Priority::Background))
            .unwrap()
            .timeout,
        Duration::ZERO
    );
    let _ = policy.stats();
}

// === percentile calculator ===

#[test]
fn percentile_timeout_learns_clamps_and_expires() {
    let (clock, shared) = manual();
    let calc = PercentileCalculator::builder(shared.clone())
        .quantile(0.5)
        .multiplier(2.0)
        .bounds(MS(10), S(1))
        .min_samples(10)
        .window(S(10), S(1))
        .refresh_every(S(1))
        .build()
        .unwrap();
    let r = RequestInfo::default();
    assert!(calc.calculate(&r).is_none());
    for _ in 0..9 {
        calc.observe(MS(100), false);
    }
    clock.advance(S(1));
    assert!(calc.calculate(&r).is_none(), "9 samples are too few");
    calc.observe(MS(100), false);
    calc.observe(S(60), true); // timed out: left out by default
    assert!(calc.calculate(&r).is_none(), "not refreshed yet");
    clock.advance(S(1));
    let c = calc.calculate(&r).unwrap();
    let Calculated::Percentile {
        observed,
        samples,
        clamp,
        quantile,
        multiplier,
    } = c.how
    else {
        panic!("{c:?}")
    };
    assert_eq!(
        (samples, clamp, quantile, multiplier),
        (10, Clamp::None, 0.5, 2.0)
    );
    assert!(observed >= MS(100) && observed <= MS(101), "{observed:?}");
    assert!(c.timeout >= MS(200) && c.timeout <= MS(202));
    // Slow latencies push it to the maximum.
    for _ in 0..100 {
        calc.observe(S(5), false);
    }
    clock.advance(S(1));
    let c = calc.calculate(&r).unwrap();
    assert_eq!(c.timeout, S(1));
    assert!(matches!(
        c.how,
        Calculated::Percentile {
            clamp: Clamp::ToMax,
            ..
        }
    ));
    // Fast ones (after the slow ones leave the window) pull it to the minimum. The window is
    // read when the calculator is asked (at most once per refresh), as traffic would.
    clock.advance(S(10));
    assert_eq!(calc.calculate(&r), None); // t = 13 s: the slow ones are gone, nothing new yet
    for _ in 0..100 {
        calc.observe(Duration::from_micros(10), false);
    }
    clock.advance(S(1));
    let c = calc.calculate(&r).unwrap();
    assert_eq!(c.timeout, MS(10));
    assert!(matches!(
        c.how,
        Calculated::Percentile {
            clamp: Clamp::ToMin,
            ..
        }
    ));
    // Nothing recent: no estimate.
    clock.advance(S(20));
    calc.refresh();
    assert!(calc.calculate(&r).is_none());
}

#[test]
fn percentile_calculator_drives_a_policy() {
    let (clock, shared) = manual();
    let calc = PercentileCalculator::builder(shared.clone())
        .min_samples(5)
        .include_timeouts(true)
        .refresh_every(Duration::ZERO)
        .build()
        .unwrap();
    let policy = TimeoutPolicy::builder()
        .calculator(calc)
        .default_timeout(S(2))
        .clock(shared)
        .build()
        .unwrap();
    let r = RequestInfo::default();
    for _ in 0..5 {
        let d = policy.decide(&r);
        assert_eq!(d.rule(), TimeoutRule::Default);
        clock.advance(MS(40));
        assert!(!policy.complete(&d).is_timeout());
    }
    let d = policy.decide(&r);
    assert!(matches!(d.rule(), TimeoutRule::Dynamic(_)), "{d}");
    assert!(d.timeout() >= MS(59) && d.timeout() <= MS(61), "{d}");
    assert!(d.to_string().contains("p99"));
}

// === stats, metrics, shadow ===

#[test]
fn stats_and_metrics() {
    let (clock, shared) = manual();
    let registry = Registry::new();
    let policy = TimeoutPolicy::builder()
        .default_timeout(MS(100))
        .clock(shared)
        .metrics(&registry)
        .build()
        .unwrap();
    assert_eq!(policy.stats().ratio(), 0.0);
    for elapsed in [10, 20, 30, 100, 150] {
        let d = policy.decide(&RequestInfo::default());
        assert_eq!(d.enforced_timeout(), Some(MS(100)));
        clock.advance(MS(elapsed));
        let o = policy.complete(&d);
        assert_eq!(o.is_timeout(), elapsed >= 100);
        if let TimeoutOutcome::TimedOut { enforced, .. } = o {
            assert!(enforced);
        }
    }
    let s = policy.stats();
    assert_eq!((s.requests, s.timeouts), (5, 2));
    assert!((s.ratio() - 0.4).abs() < 1e-12);
    // Latency stats come from histograms: exact to 3 significant digits.
    let near = |d: Duration, want: Duration| d.abs_diff(want) <= want / 500;
    assert!(near(s.min_duration, MS(10)), "{s:?}");
    assert!(near(s.max_duration, MS(150)), "{s:?}");
    assert!(near(s.mean_duration, MS(62)), "{s:?}");
    assert!(near(s.mean_timeout, MS(100)), "{s:?}");
    let snap = registry.snapshot();
    assert_eq!(snap.counter("timeout_requests_total", &["ok"]), Some(3));
    assert_eq!(
        snap.counter("timeout_requests_total", &["timeout"]),
        Some(2)
    );
    assert_eq!(
        snap.histogram("timeout_configured_nanoseconds", &[])
            .map(|h| h.count()),
        Some(5)
    );
    assert_eq!(
        snap.histogram("timeout_duration_nanoseconds", &[])
            .map(|h| h.count()),
        Some(5)
    );
    assert_eq!(policy.durations().count(), 5);
    assert_eq!(policy.configured().count(), 5);
    // A conflicting registration is an error, not a panic.
    let other = Registry::new();
    other.gauge("timeout_requests_total", "x", &[]).unwrap();
    assert!(matches!(
        TimeoutPolicy::builder().metrics(&other).build(),
        Err(TimeoutBuildError::Registry(_))
    ));
}

#[test]
fn shadow_mode_counts_would_be_timeouts() {
    let (clock, shared) = manual();
    let policy = TimeoutPolicy::builder()
        .default_timeout(S(1))
        .mode(Mode::Shadow)
        .clock(shared)
        .build()
        .unwrap();
    let d = policy.decide(&RequestInfo::default());
    assert_eq!(d.enforced_timeout(), None);
    assert_eq!(d.timeout(), S(1));
    assert_eq!(d.mode(), Mode::Shadow);
    assert!(d.to_string().contains("shadow"));
    clock.advance(S(3));
    assert_eq!(
        policy.complete(&d),
        TimeoutOutcome::TimedOut {
            elapsed: S(3),
            timeout: S(1),
            enforced: false
        }
    );
    assert_eq!(policy.stats().timeouts, 1);
    assert_eq!(policy.mode(), Mode::Shadow);
}

#[test]
fn concurrent_completions_count_exactly() {
    const THREADS: usize = 16;
    const PER: u64 = 500;
    let (_, clock) = manual();
    let policy = TimeoutPolicy::builder()
        .calculator(PriorityCalculator::new(MS(100)))
        .clock(clock)
        .build()
        .unwrap();
    let barrier = Barrier::new(THREADS);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (policy, barrier) = (&policy, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..PER {
                    let p = if t % 2 == 0 {
                        Priority::Critical
                    } else {
                        Priority::Low
                    };
                    let d = policy.decide(&RequestInfo::default().priority(p));
                    // Every 5th request runs 200 ms: a timeout for Low (50 ms), not Critical
                    // (500 ms).
                    let elapsed = if i % 5 == 0 { MS(200) } else { MS(1) };
                    let _ = policy.complete_after(&d, elapsed);
                }
            });
        }
    });
    let s = policy.stats();
    assert_eq!(s.requests, THREADS as u64 * PER);
    assert_eq!(s.timeouts, (THREADS as u64 / 2) * (PER / 5));
    assert_eq!(policy.configured().count(), THREADS as u64 * PER);
}

#[test]
fn method_names() {
    for (n, m) in [
        ("get", Method::Get),
        ("HEAD", Method::Head),
        ("Post", Method::Post),
        ("PUT", Method::Put),
        ("patch", Method::Patch),
        ("DELETE", Method::Delete),
        ("options", Method::Options),
        ("CONNECT", Method::Other),
    ] {
        assert_eq!(Method::from_name(n), m);
    }
}
