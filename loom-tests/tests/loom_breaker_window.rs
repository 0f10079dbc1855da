//! Circuit breaker time windows: the inline, epoch-tagged, striped window (no `arc-swap`), so
//! loom checks its synchronization with the state word. An outcome of an ended closed
//! generation never enters a newer period's window; an outcome of the current one always
//! does; calls racing across a bucket boundary are all counted; and two outcomes that together
//! make the failure rate hold trip the breaker exactly once.
#![cfg(weir_loom)]

mod common;

use std::time::Duration;

use common::{Log, model, permit, race};
use weir::ManualClock;
use weir::policy::breaker::{
    BreakerBuilder, CircuitBreaker, Decision, Recorded, SlidingWindow, State,
};

/// A breaker with a time window of `buckets` buckets of one second each.
fn builder(clock: &ManualClock, log: &Log, buckets: u32) -> BreakerBuilder {
    let log = log.clone();
    CircuitBreaker::builder("loom-window")
        .window(SlidingWindow::Time {
            length: Duration::from_secs(u64::from(buckets)),
            buckets,
        })
        .open_duration(Duration::from_secs(1))
        .clock(clock.clone())
        .on_transition(move |t| log.lock().unwrap().push(*t))
}

/// `builder`, tripping on any failure and never on the rate (it needs 100 calls): the models
/// that check what the window counts.
fn trips_on_any_failure(clock: &ManualClock, log: &Log, buckets: u32) -> BreakerBuilder {
    builder(clock, log, buckets)
        .consecutive_failures(1)
        .failure_rate(1.0)
        .minimum_calls(100)
}

fn calls(b: &CircuitBreaker) -> u64 {
    b.status().window.expect("a window").calls
}

/// A closed-generation-0 success races a failure that trips the breaker, a reset that starts
/// closed generation 2 (emptying the window by epoch) and a success of generation 2. Whatever
/// the interleaving, generation 2's window holds exactly its own success: the old one is
/// counted in generation 0 or reported stale, never counted in the new period.
#[test]
fn stale_success_never_enters_a_new_period() {
    model("stale_success_never_enters_a_new_period", || {
        let clock = ManualClock::new();
        let log = Log::default();
        let b = trips_on_any_failure(&clock, &log, 1).build().unwrap();
        let old = permit(&b);
        let b2 = b.clone();
        let (ra, ()) = race(
            move || old.success(),
            move || {
                let p = permit(&b2);
                assert!(matches!(p.failure(), Recorded::Transitioned(t) if t.generation == 1));
                assert!(b2.reset().is_some());
                assert_eq!(permit(&b2).success(), Recorded::Counted);
            },
        );
        assert!(
            matches!(
                ra,
                Recorded::Counted
                    | Recorded::Stale {
                        permit_generation: 0,
                        ..
                    }
            ),
            "{ra:?}"
        );
        assert_eq!((b.state(), b.status().generation), (State::Closed, 2));
        assert_eq!(calls(&b), 1);
    });
}

/// A probe closes the breaker (its winner then empties the window by epoch) while another
/// caller asks: rejected while the probe slot is taken, or admitted in the new closed
/// generation, whose success is then always counted, however it interleaves with the
/// winner's emptying.
#[test]
fn new_period_success_always_counts() {
    model("new_period_success_always_counts", || {
        let clock = ManualClock::new();
        let log = Log::default();
        let b = trips_on_any_failure(&clock, &log, 1)
            .half_open_max_probes(1)
            .success_threshold(1)
            .build()
            .unwrap();
        assert_eq!(permit(&b).success(), Recorded::Counted); // generation 0's window: 1 call
        let _ = permit(&b).failure(); // open, generation 1
        clock.advance(Duration::from_secs(1));
        let probe = permit(&b); // half-open, generation 2
        let b2 = b.clone();
        let (rp, rb) = race(
            move || probe.success(),
            move || match b2.try_acquire() {
                Decision::Permitted(p) => {
                    assert_eq!(p.generation(), 3);
                    Some(p.success())
                }
                Decision::Rejected(_) => None,
            },
        );
        assert!(
            matches!(rp, Recorded::Transitioned(t) if t.to == State::Closed),
            "{rp:?}"
        );
        match rb {
            Some(r) => {
                assert_eq!(r, Recorded::Counted);
                assert_eq!(calls(&b), 1);
            }
            None => assert_eq!(calls(&b), 0),
        }
    });
}

/// One success moves the clock into the next bucket and records there (moving the head and
/// emptying the bucket it lands on); another records at the same time, having read the clock
/// before or after the move. Both are counted, and so is the call recorded before.
#[test]
fn calls_across_a_bucket_boundary_all_count() {
    model("calls_across_a_bucket_boundary_all_count", || {
        let clock = ManualClock::new();
        let log = Log::default();
        let b = trips_on_any_failure(&clock, &log, 2).build().unwrap();
        assert_eq!(permit(&b).success(), Recorded::Counted); // slot 0
        let (pa, pb) = (permit(&b), permit(&b));
        let c2 = clock.clone();
        let (ra, rb) = race(
            move || {
                c2.advance(Duration::from_secs(1));
                pa.success()
            },
            move || pb.success(),
        );
        assert_eq!((ra, rb), (Recorded::Counted, Recorded::Counted));
        assert_eq!(calls(&b), 3);
        assert!(log.lock().unwrap().is_empty());
    });
}

/// A failure and a success are in the window (minimum 4 calls, failure rate 0.5), and no
/// failure is pending on the state word. A success and a failure race: together they make
/// the rate 2 of 4, so the breaker trips, exactly once. Each writes its own stripe word and
/// then reads the other's, and the success writes nothing else: without the fence before
/// the check, both could read the other's word before its write and neither would trip.
#[test]
fn success_and_failure_reaching_the_rate_trip_once() {
    model("success_and_failure_reaching_the_rate_trip_once", || {
        let clock = ManualClock::new();
        let log = Log::default();
        let b = builder(&clock, &log, 1)
            .consecutive_failures(0)
            .failure_rate(0.5)
            .minimum_calls(4)
            .build()
            .unwrap();
        assert_eq!(permit(&b).failure(), Recorded::Counted);
        assert_eq!(permit(&b).success(), Recorded::Counted);
        let (pa, pb) = (permit(&b), permit(&b));
        let (ra, rb) = race(move || pa.success(), move || pb.failure());
        let trips = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Recorded::Transitioned(t) if t.to == State::Open))
            .count();
        assert_eq!(trips, 1, "{ra:?} {rb:?}");
        assert_eq!(log.lock().unwrap().len(), 1);
        assert_eq!((b.state(), b.status().generation), (State::Open, 1));
    });
}
