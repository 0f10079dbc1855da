//! Fuzzes `weir::policy::shed`: arbitrary parameters (builders must refuse bad ones, never
//! panic) and arbitrary sequences of acquires, releases with outcomes and RTTs, clock
//! advances, limit changes, signal changes, shedder admissions and throttle checks, checking
//! the invariants after every step:
//! - an enforced permit's in-flight count is at most its limit; a permit has a grant time (the
//!   clock's, at the grant) exactly when the algorithm learns (a `FixedLimit` without a registry
//!   reads no clock); borrowed and owned permits (and borrowed ones made owned) release alike;
//!   the limiter's word counts
//!   exactly the enforced permits held, its shadow counter exactly the shadow ones; the limit is
//!   at least 1 and within the algorithm's bounds;
//! - with a counting algorithm, every success or drop released so far (including releases made
//!   inside an `inspect` closure, whose samples wait in the feed's slots until `inspect`
//!   returns) has been applied exactly once: updates == sampled releases after every step, with
//!   no flush; and the word's limit is the algorithm's;
//! - a rejection only happens in enforce mode, with in-flight >= limit;
//! - throttle probabilities are in [0, 1] and verdicts agree with draw < probability;
//! - shedder rates are in [0, 1], the base and adaptive rates in [min_rate, max_rate], the
//!   active count matches the tickets held, and verdicts agree with draw < rate.
#![no_main]

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir::policy::Mode;
use weir::policy::shed::{
    AdaptiveThrottle, Aimd, FixedLimit, Gradient2, LatencyStatistic, LimitAlgorithm, Limiter,
    LimiterBuilder, LoadShedder, ManualSignals, Outcome, OwnedPermit, Permit, Priority, Sample,
    ShedderView, Strategy, Ticket, TicketOutcome, Vegas, Verdict,
};
use weir::{ManualClock, SharedClock};

#[derive(Arbitrary, Debug)]
enum Algo {
    Fixed(u32),
    Aimd {
        initial: u16,
        min: u16,
        max: u16,
        backoff: f64,
        timeout_ms: u32,
    },
    Vegas {
        initial: u16,
        min: u16,
        max: u16,
        smoothing: f64,
        probe: u32,
        seed: u64,
    },
    Gradient2 {
        initial: u16,
        min: u16,
        max: u16,
        smoothing: f64,
        queue: u32,
        window: u32,
        tolerance: f64,
    },
    /// [`Counting`] with this base limit.
    Counting(u16),
}

/// Counts its updates (shared with the fuzzer); its limit is `base + updates % 3`.
#[derive(Debug)]
struct Counting {
    base: u32,
    updates: Arc<AtomicU64>,
}

impl LimitAlgorithm for Counting {
    fn limit(&self) -> u32 {
        self.base + (self.updates.load(Ordering::Relaxed) % 3) as u32
    }
    fn update(&mut self, _: &Sample) -> u32 {
        self.updates.fetch_add(1, Ordering::Relaxed);
        self.limit()
    }
    fn set_limit(&mut self, limit: u32) -> u32 {
        self.base = limit.clamp(1, 1000);
        self.limit()
    }
    fn bounds(&self) -> RangeInclusive<u32> {
        1..=1002
    }
}

#[derive(Arbitrary, Debug)]
struct Shed {
    strategy: u8,
    min_rate: f64,
    max_rate: f64,
    adaptation: f64,
    cpu_threshold: f64,
    quantile: Option<f64>,
    target_ms: u32,
}

#[derive(Arbitrary, Debug)]
struct Input {
    algo: Algo,
    shed: Shed,
    k: f64,
    shadow: bool,
    seed: u64,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Acquire,
    Release {
        index: u16,
        outcome: u8,
        rtt_ms: Option<u32>,
    },
    Advance {
        ms: u32,
    },
    SetLimit(u32),
    SetCpu(Option<f64>),
    SetMemory(Option<f64>),
    Admit {
        priority: u8,
    },
    Finish {
        index: u16,
        outcome: u8,
        latency_ms: Option<u32>,
    },
    Refresh,
    Throttle {
        priority: u8,
    },
    Accept,
    /// Releases up to 8 permits from inside an `inspect` closure (their samples wait for
    /// `inspect` to return and apply them).
    ReleaseInInspect {
        count: u8,
        outcome: u8,
        rtt_ms: Option<u32>,
    },
}

/// A limiter builder around the fuzzed algorithm, or `None` if its builder refused the
/// parameters (which must never panic). A `Counting` algorithm counts into `updates`.
fn build_algo(a: &Algo, updates: &Arc<AtomicU64>) -> Option<LimiterBuilder> {
    match *a {
        Algo::Counting(base) => Some(Limiter::builder(Counting {
            base: u32::from(base).clamp(1, 1000),
            updates: updates.clone(),
        })),
        Algo::Fixed(n) => Some(Limiter::builder(FixedLimit::new(n))),
        Algo::Aimd {
            initial,
            min,
            max,
            backoff,
            timeout_ms,
        } => Aimd::builder()
            .initial(initial.into())
            .min(min.into())
            .max(max.into())
            .backoff_ratio(backoff)
            .timeout(Duration::from_millis(timeout_ms.into()))
            .build()
            .ok()
            .map(Limiter::builder),
        Algo::Vegas {
            initial,
            min,
            max,
            smoothing,
            probe,
            seed,
        } => Vegas::builder()
            .initial(initial.into())
            .min(min.into())
            .max(max.into())
            .smoothing(smoothing)
            .probe_multiplier(probe)
            .seed(seed)
            .build()
            .ok()
            .map(Limiter::builder),
        Algo::Gradient2 {
            initial,
            min,
            max,
            smoothing,
            queue,
            window,
            tolerance,
        } => Gradient2::builder()
            .initial(initial.into())
            .min(min.into())
            .max(max.into())
            .smoothing(smoothing)
            .queue_size(queue)
            .long_window(window)
            .rtt_tolerance(tolerance)
            .build()
            .ok()
            .map(Limiter::builder),
    }
}

/// A permit held by the fuzzer: borrowed from the limiter or owned.
enum Held<'a> {
    Borrowed(Permit<'a>),
    Owned(OwnedPermit),
}

impl Held<'_> {
    fn shadow(&self) -> bool {
        match self {
            Held::Borrowed(p) => p.shadow_rejection().is_some(),
            Held::Owned(p) => p.shadow_rejection().is_some(),
        }
    }

    fn release(self, outcome: Outcome, rtt: Option<Duration>) {
        match (self, rtt) {
            (Held::Borrowed(p), Some(rtt)) => p.release_with_rtt(outcome, rtt),
            (Held::Borrowed(p), None) => p.release(outcome),
            (Held::Owned(p), Some(rtt)) => p.release_with_rtt(outcome, rtt),
            (Held::Owned(p), None) => p.release(outcome),
        }
    }
}

/// The algorithm's own limit.
fn algorithm_limit(limiter: &Limiter) -> u32 {
    limiter.inspect(|a| a.limit())
}

fn priority(p: u8) -> Priority {
    Priority::ALL[usize::from(p) % 5]
}

fuzz_target!(|input: Input| {
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let mode = if input.shadow {
        Mode::Shadow
    } else {
        Mode::Enforce
    };

    let updates = Arc::new(AtomicU64::new(0));
    let counting = matches!(input.algo, Algo::Counting(_));
    // Successes and drops released so far (what a counting algorithm must have been fed).
    let mut sampled = 0u64;
    let Some(builder) = build_algo(&input.algo, &updates) else {
        return;
    };
    let limiter = builder
        .clock(shared.clone())
        .mode(mode)
        .build()
        .expect("without a registry, building cannot fail");
    let bounds = limiter.inspect(|a| a.bounds());
    let learns = limiter.inspect(|a| a.learns());
    assert_eq!(learns, !matches!(input.algo, Algo::Fixed(_)));

    let strategy = match input.shed.strategy % 5 {
        0 => Strategy::Random,
        1 => Strategy::Priority,
        2 => Strategy::Adaptive,
        3 => Strategy::Circuit,
        _ => Strategy::custom(|p: Priority, v: &ShedderView| {
            v.base_rate * f64::from(p.value()) - 0.5
        }),
    };
    let signals = ManualSignals::new();
    let mut shed_builder = LoadShedder::builder()
        .strategy(strategy)
        .min_rate(input.shed.min_rate)
        .max_rate(input.shed.max_rate)
        .adaptation_rate(input.shed.adaptation)
        .cpu_threshold(input.shed.cpu_threshold)
        .target_latency(Duration::from_millis(input.shed.target_ms.into()))
        .refresh_interval(Duration::from_millis(100))
        .signals(signals.clone())
        .clock(shared.clone())
        .mode(mode)
        .seed(input.seed);
    if let Some(q) = input.shed.quantile {
        shed_builder = shed_builder.latency_statistic(LatencyStatistic::Quantile(q));
    }
    let Ok(shedder) = shed_builder.build() else {
        return;
    };
    let (min_rate, max_rate) = (input.shed.min_rate, input.shed.max_rate);
    let Ok(throttle) = AdaptiveThrottle::builder()
        .k(input.k)
        .window(Duration::from_secs(10))
        .refresh(Duration::ZERO)
        .clock(shared.clone())
        .mode(mode)
        .seed(input.seed)
        .build()
    else {
        return;
    };

    let mut permits: Vec<Held<'_>> = vec![];
    let mut tickets: Vec<Ticket> = vec![];
    let mut acquires = 0usize;
    for op in input.ops.into_iter().take(500) {
        match op {
            Op::Acquire => {
                acquires += 1;
                // Borrowed, owned, and borrowed made owned, in turn.
                let held = match acquires % 3 {
                    0 => limiter.try_acquire().map(Held::Borrowed),
                    1 => limiter.try_acquire_owned().map(Held::Owned),
                    _ => limiter.try_acquire().map(|p| Held::Owned(p.into_owned())),
                };
                match held {
                    Ok(h) => {
                        let (in_flight, limit, shadow, started) = match &h {
                            Held::Borrowed(p) => (
                                p.in_flight(),
                                p.limit(),
                                p.shadow_rejection(),
                                p.started_at(),
                            ),
                            Held::Owned(p) => (
                                p.in_flight(),
                                p.limit(),
                                p.shadow_rejection(),
                                p.started_at(),
                            ),
                        };
                        if shadow.is_none() {
                            assert!(in_flight <= limit, "{in_flight} > {limit}");
                        } else {
                            assert_eq!(mode, Mode::Shadow);
                        }
                        assert_eq!(started, learns.then(|| clock.now()));
                        permits.push(h);
                    }
                    Err(r) => {
                        assert!(mode.enforces());
                        assert!(r.in_flight >= r.limit, "{r:?}");
                    }
                }
            }
            Op::Release {
                index,
                outcome,
                rtt_ms,
            } => {
                if !permits.is_empty() {
                    let p = permits.swap_remove(usize::from(index) % permits.len());
                    let outcome = [Outcome::Success, Outcome::Dropped, Outcome::Ignored]
                        [usize::from(outcome) % 3];
                    sampled += u64::from(outcome != Outcome::Ignored);
                    p.release(outcome, rtt_ms.map(|ms| Duration::from_millis(ms.into())));
                }
            }
            Op::Advance { ms } => {
                clock.advance(Duration::from_millis(ms.into()));
            }
            Op::SetLimit(n) => {
                let applied = limiter.set_limit(n);
                assert!(applied >= 1 && bounds.contains(&applied), "{applied}");
            }
            Op::SetCpu(v) => signals.set_cpu(v),
            Op::SetMemory(v) => signals.set_memory(v),
            Op::Admit { priority: p } => {
                let d = match shedder.try_admit(priority(p)) {
                    Ok(t) => {
                        let d = *t.decision();
                        tickets.push(t);
                        d
                    }
                    Err(d) => {
                        assert_eq!(d.verdict, Verdict::Reject);
                        d
                    }
                };
                assert!((0.0..=1.0).contains(&d.rate), "{d:?}");
                assert_eq!(d.verdict.would_reject(), d.draw.is_some_and(|x| x < d.rate));
                assert!(mode.enforces() || d.verdict != Verdict::Reject);
                assert!(d.view.base_rate >= min_rate && d.view.base_rate <= max_rate);
            }
            Op::Finish {
                index,
                outcome,
                latency_ms,
            } => {
                if !tickets.is_empty() {
                    let t = tickets.swap_remove(usize::from(index) % tickets.len());
                    let outcome = [
                        TicketOutcome::Success,
                        TicketOutcome::Error,
                        TicketOutcome::Abandoned,
                    ][usize::from(outcome) % 3];
                    match latency_ms {
                        Some(ms) => {
                            t.finish_with_latency(outcome, Duration::from_millis(ms.into()))
                        }
                        None => t.finish(outcome),
                    }
                }
            }
            Op::Refresh => {
                let v = shedder.refresh();
                assert!(v.base_rate >= min_rate && v.base_rate <= max_rate);
                assert!((0.0..=1.0).contains(&v.error_rate));
                assert!(v.overloaded_signals <= 4);
                assert!(v.errors <= v.completed);
            }
            Op::Throttle { priority: p } => {
                let d = throttle.check(priority(p));
                assert!((0.0..=1.0).contains(&d.probability), "{d:?}");
                assert!((0.0..=1.0).contains(&d.class_probability), "{d:?}");
                assert_eq!(
                    d.verdict.would_reject(),
                    d.draw.is_some_and(|x| x < d.class_probability)
                );
                assert!(mode.enforces() || d.verdict != Verdict::Reject);
            }
            Op::Accept => throttle.record_accepted(),
            Op::ReleaseInInspect {
                count,
                outcome,
                rtt_ms,
            } => {
                let outcome = [Outcome::Success, Outcome::Dropped, Outcome::Ignored]
                    [usize::from(outcome) % 3];
                let rtt = rtt_ms.map(|ms| Duration::from_millis(ms.into()));
                let n = usize::from(count % 9).min(permits.len());
                let before = updates.load(Ordering::Relaxed);
                let seen = limiter.inspect(|_| {
                    for p in permits.drain(..n) {
                        p.release(outcome, rtt);
                    }
                    // The releases left their samples for this `inspect` to apply.
                    updates.load(Ordering::Relaxed)
                });
                assert_eq!(seen, before);
                sampled += n as u64 * u64::from(outcome != Outcome::Ignored);
            }
        }
        if counting {
            // Every sample of a returned release has been applied, exactly once.
            assert_eq!(updates.load(Ordering::Relaxed), sampled);
            assert_eq!(algorithm_limit(&limiter), limiter.limit());
        }
        // The limiter's word counts exactly the permits held.
        let st = limiter.state();
        let enforced = permits.iter().filter(|p| !p.shadow()).count();
        assert_eq!(st.in_flight as usize, enforced);
        assert_eq!(st.shadow_in_flight as usize, permits.len() - enforced);
        assert!(
            st.limit >= 1 && bounds.contains(&st.limit),
            "{st:?} outside {bounds:?}"
        );
        let a = shedder.adaptive_rate();
        assert!(a >= min_rate && a <= max_rate, "adaptive rate {a}");
        assert_eq!(shedder.active(), tickets.len() as i64);
    }
    drop(permits);
    drop(tickets);
    assert_eq!(limiter.in_flight(), 0);
    assert_eq!(shedder.active(), 0);
});
