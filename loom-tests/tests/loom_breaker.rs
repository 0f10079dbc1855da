//! Circuit breaker: every transition happens once (one CAS winner, one listener call) under
//! any interleaving; half-open probes stay bounded; outcomes from an older generation change
//! nothing.
//!
//! The breakers here have no rate thresholds, so no window (and no `arc-swap`) is involved:
//! what is modeled is the packed state word and its compare-and-swap transitions, plus the
//! `ManualClock` (loom atomics). Each model races two spawned threads and only joins them on
//! the main thread: loom explores the spawned threads' interleavings far more thoroughly than
//! a main thread racing its own children.
#![cfg(weir_loom)]

mod common;

use std::time::Duration;

use common::{Log, model, permit, race};
use weir::ManualClock;
use weir::policy::breaker::{
    BreakerBuilder, CircuitBreaker, Decision, Recorded, RejectReason, State,
};

fn builder(clock: &ManualClock, log: &Log) -> BreakerBuilder {
    let log = log.clone();
    CircuitBreaker::builder("loom")
        .without_failure_rate()
        .open_duration(Duration::from_secs(1))
        .clock(clock.clone())
        .on_transition(move |t| log.lock().unwrap().push(*t))
}

fn transitioned(r: &Recorded, from: State, to: State) -> bool {
    matches!(r, Recorded::Transitioned(t) if t.from == from && t.to == to)
}

/// One failure is already counted and the threshold is two; two closed-generation permits
/// fail at once. Exactly one of them trips the breaker and the listener hears it once; the
/// other is stale (its generation ended).
#[test]
fn concurrent_failures_trip_once() {
    model("concurrent_failures_trip_once", || {
        let clock = ManualClock::new();
        let log = Log::default();
        let b = builder(&clock, &log)
            .consecutive_failures(2)
            .build()
            .unwrap();
        let (p1, p2) = (permit(&b), permit(&b));
        assert_eq!(permit(&b).failure(), Recorded::Counted);
        let (r1, r2) = race(move || p1.failure(), move || p2.failure());
        let trips = [&r1, &r2]
            .iter()
            .filter(|r| transitioned(r, State::Closed, State::Open))
            .count();
        assert_eq!(trips, 1, "{r1:?} {r2:?}");
        assert!([&r1, &r2].iter().any(|r| matches!(
            r,
            Recorded::Stale {
                permit_generation: 0,
                current_generation: 1
            }
        )));
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].from, log[0].to, log[0].generation),
            (State::Closed, State::Open, 1)
        );
        assert_eq!((b.state(), b.status().generation), (State::Open, 1));
    });
}

/// Open with its time over: two callers race to half-open it with room for one probe.
/// One transition, one probe admitted, the other rejected as half-open-full.
#[test]
fn half_open_probes_bounded() {
    model("half_open_probes_bounded", || {
        let clock = ManualClock::new();
        let log = Log::default();
        let b = builder(&clock, &log)
            .consecutive_failures(1)
            .half_open_max_probes(1)
            .success_threshold(1)
            .build()
            .unwrap();
        let _ = permit(&b).failure();
        clock.advance(Duration::from_secs(1));
        log.lock().unwrap().clear();
        let try_probe = |b: CircuitBreaker| {
            move || match b.try_acquire_owned() {
                Decision::Permitted(p) => {
                    assert!(p.is_probe());
                    Ok(p)
                }
                Decision::Rejected(r) => Err(r),
            }
        };
        let (ra, rb) = race(try_probe(b.clone()), try_probe(b.clone()));
        assert_eq!(usize::from(ra.is_ok()) + usize::from(rb.is_ok()), 1);
        let rejected = match (&ra, &rb) {
            (Err(r), _) | (_, Err(r)) => r.reason,
            _ => unreachable!(),
        };
        assert_eq!(
            rejected,
            RejectReason::HalfOpenFull {
                in_flight: 1,
                max: 1
            }
        );
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!((log[0].from, log[0].to), (State::Open, State::HalfOpen));
        assert_eq!(b.status().probes_in_flight, 1);
        drop((ra, rb));
        assert_eq!(b.status().probes_in_flight, 0);
    });
}

/// Half-open with one of two probe slots taken: two callers race for the last slot. One
/// gets it, the other is rejected as half-open-full, and the count never passes the limit.
#[test]
fn last_probe_slot_race() {
    model("last_probe_slot_race", || {
        let clock = ManualClock::new();
        let log = Log::default();
        let b = builder(&clock, &log)
            .consecutive_failures(1)
            .half_open_max_probes(2)
            .success_threshold(5)
            .build()
            .unwrap();
        let _ = permit(&b).failure();
        clock.advance(Duration::from_secs(1));
        let first = permit(&b); // half-opens, one probe out
        let try_probe = |b: CircuitBreaker| move || b.try_acquire_owned().permit();
        let (ra, rb) = race(try_probe(b.clone()), try_probe(b.clone()));
        assert_eq!(usize::from(ra.is_some()) + usize::from(rb.is_some()), 1);
        assert_eq!(b.status().probes_in_flight, 2);
        drop((ra, rb, first));
        assert_eq!(b.status().probes_in_flight, 0);
        assert_eq!(log.lock().unwrap().len(), 2); // closed → open → half-open, nothing else
    });
}

/// lift's half-open double transition: two probes of one half-open generation report at
/// once, a success (which closes) and a failure (which reopens). Exactly one transitions;
/// the other is stale.
#[test]
fn half_open_double_transition() {
    model("half_open_double_transition", || {
        let clock = ManualClock::new();
        let log = Log::default();
        let b = builder(&clock, &log)
            .consecutive_failures(1)
            .half_open_max_probes(2)
            .success_threshold(1)
            .build()
            .unwrap();
        let _ = permit(&b).failure(); // open, generation 1
        clock.advance(Duration::from_secs(1));
        let (p1, p2) = (permit(&b), permit(&b)); // half-open, generation 2
        log.lock().unwrap().clear();
        let (ra, rf) = race(move || p1.success(), move || p2.failure());
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), 1, "{log:?} {ra:?} {rf:?}");
        let t = log[0];
        assert_eq!((t.from, t.generation), (State::HalfOpen, 3));
        let stale = Recorded::Stale {
            permit_generation: 2,
            current_generation: 3,
        };
        match t.to {
            State::Closed => {
                assert!(transitioned(&ra, State::HalfOpen, State::Closed) && rf == stale)
            }
            State::Open => assert!(transitioned(&rf, State::HalfOpen, State::Open) && ra == stale),
            State::HalfOpen => unreachable!(),
        }
        assert_eq!((b.state(), b.status().generation), (t.to, 3));
    });
}

/// A permit from the first closed generation reports a failure while a probe closes the
/// breaker into a new closed generation. Whatever the order, the old failure is stale: it
/// neither trips the new generation (threshold 1) nor counts toward it.
#[test]
fn stale_generation_ignored() {
    model("stale_generation_ignored", || {
        let clock = ManualClock::new();
        let log = Log::default();
        let b = builder(&clock, &log)
            .consecutive_failures(1)
            .success_threshold(1)
            .build()
            .unwrap();
        let old = permit(&b); // closed, generation 0
        let _ = permit(&b).failure(); // open, generation 1
        clock.advance(Duration::from_secs(1));
        let probe = permit(&b); // half-open, generation 2
        log.lock().unwrap().clear();
        let (stale, closed) = race(move || old.failure(), move || probe.success());
        assert!(
            matches!(
                stale,
                Recorded::Stale {
                    permit_generation: 0,
                    ..
                }
            ),
            "{stale:?}"
        );
        assert!(
            transitioned(&closed, State::HalfOpen, State::Closed),
            "{closed:?}"
        );
        assert_eq!(log.lock().unwrap().len(), 1);
        let st = b.status();
        assert_eq!(
            (st.state, st.generation, st.consecutive_failures),
            (State::Closed, 3, 0)
        );
    });
}

/// A probe from an earlier half-open period reports success while a probe of the current
/// half-open period fails. The old probe is stale (its generation is over even though the
/// state is half-open again), so it can neither close the breaker nor count toward the new
/// period; the failure reopens it.
#[test]
fn stale_probe_from_an_earlier_half_open() {
    model("stale_probe_from_an_earlier_half_open", || {
        let clock = ManualClock::new();
        let log = Log::default();
        let b = builder(&clock, &log)
            .consecutive_failures(1)
            .half_open_max_probes(2)
            .success_threshold(1)
            .build()
            .unwrap();
        let _ = permit(&b).failure(); // open, generation 1
        clock.advance(Duration::from_secs(1));
        let old = permit(&b); // half-open, generation 2
        let _ = permit(&b).failure(); // open, generation 3
        clock.advance(Duration::from_secs(1));
        let new = permit(&b); // half-open, generation 4
        log.lock().unwrap().clear();
        let (ra, rf) = race(move || old.success(), move || new.failure());
        assert!(
            matches!(
                ra,
                Recorded::Stale {
                    permit_generation: 2,
                    ..
                }
            ),
            "{ra:?}"
        );
        assert!(
            matches!(rf, Recorded::Transitioned(t) if t.to == State::Open && t.generation == 5),
            "{rf:?}"
        );
        assert_eq!(log.lock().unwrap().len(), 1);
        assert_eq!((b.state(), b.status().generation), (State::Open, 5));
    });
}
