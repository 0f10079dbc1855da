//! Bulkhead: permits are never over-drawn, and a waiter that gives up (times out, or whose
//! future is dropped) while a releaser hands it a permit leaves every permit accounted for.
//!
//! Loom's condition variable never times out, so the timeout is modeled directly: a blocking
//! waiter whose deadline has already passed (it queues, then gives up at once), and an async
//! waiter polled once and then dropped. Both race a release that may hand them the permit.
//! Each model races two spawned threads; the main thread only sets up, joins and checks.
#![cfg(weir_loom)]

mod common;

use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{model, spawn};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, Ordering};
use weir::ManualClock;
use weir::policy::bulkhead::{Bulkhead, Decision, Priority, RejectReason};

fn bulkhead(max: u32) -> Bulkhead {
    Bulkhead::builder("loom", max)
        .clock(ManualClock::new())
        .build()
        .unwrap()
}

/// Every permit is back, nobody is queued, and all `max` can be taken again.
fn assert_all_back(b: &Bulkhead) {
    let st = b.status();
    assert_eq!((st.in_use, st.waiting), (0, 0), "{st:?}");
    let all: Vec<_> = (0..st.max)
        .map(|_| b.try_acquire().permit().unwrap())
        .collect();
    assert!(!b.try_acquire().is_acquired());
    drop(all);
}

/// Two threads race for one permit while each counts itself inside: never two at once.
#[test]
fn try_acquire_never_exceeds() {
    model("try_acquire_never_exceeds", || {
        let b = bulkhead(1);
        let inside = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (b, inside) = (b.clone(), inside.clone());
                spawn(move || {
                    if let Decision::Acquired(p) = b.try_acquire() {
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        assert_eq!(n, 1, "two permits out of one");
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(p);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_all_back(&b);
    });
}

/// A one-permit bulkhead used as a lock around plain (non-atomic) data: whoever takes the
/// permit after a release sees everything the previous holder wrote (the permit word's
/// Release on return, Acquire on take). Loom's `UnsafeCell` reports any access not ordered
/// by happens-before.
#[test]
fn permit_hand_over_orders_the_holders() {
    struct Guarded(UnsafeCell<u32>);
    // SAFETY: access to the cell is serialized by the bulkhead's single permit, which is
    // exactly what this model checks (loom's cell panics on any unordered access).
    unsafe impl Sync for Guarded {}
    model("permit_hand_over_orders_the_holders", || {
        let b = bulkhead(1);
        let data = Arc::new(Guarded(UnsafeCell::new(0)));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (b, data) = (b.clone(), data.clone());
                spawn(move || {
                    if let Decision::Acquired(p) = b.try_acquire() {
                        // SAFETY: we hold the only permit.
                        data.0.with_mut(|v| unsafe { *v += 1 });
                        drop(p);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let _p = b.try_acquire().permit().unwrap();
        // SAFETY: we hold the only permit, and every other holder is joined.
        let v = data.0.with(|v| unsafe { *v });
        assert!((1..=2).contains(&v));
    });
}

/// A blocking waiter whose deadline has passed gives up while the holder releases: either
/// it got the permit (free on its first try, or handed over as it gave up) and returns it,
/// or it timed out and the permit went back to the pool. Nothing leaks, nobody stays queued.
#[test]
fn blocking_timeout_races_release() {
    model("blocking_timeout_races_release", || {
        let b = bulkhead(1);
        let held = b.try_acquire().permit().unwrap();
        let waiter = {
            let b = b.clone();
            spawn(
                move || match b.acquire_until(Priority::NORMAL, Duration::ZERO) {
                    Decision::Acquired(p) => drop(p),
                    Decision::Rejected(r) => assert_eq!(r.reason, RejectReason::Timeout),
                },
            )
        };
        let releaser = spawn(move || drop(held));
        waiter.join().unwrap();
        releaser.join().unwrap();
        assert_all_back(&b);
    });
}

/// An async waiter is polled once (queued) and then dropped, racing the holder's release,
/// which may hand it the permit: dropping the future passes the permit on.
#[test]
fn dropped_future_races_release() {
    model("dropped_future_races_release", || {
        let b = bulkhead(1);
        let held = b.try_acquire().permit().unwrap();
        let waiter = {
            let b = b.clone();
            spawn(move || {
                let mut fut = b.acquire_async(Priority::HIGH);
                let mut cx = Context::from_waker(Waker::noop());
                match std::pin::Pin::new(&mut fut).poll(&mut cx) {
                    Poll::Ready(d) => drop(d),
                    Poll::Pending => drop(fut),
                }
            })
        };
        let releaser = spawn(move || drop(held));
        waiter.join().unwrap();
        releaser.join().unwrap();
        assert_all_back(&b);
    });
}

/// A blocked waiter (no deadline in reach) is handed the permit by the releaser and wakes.
#[test]
fn blocked_waiter_is_handed_the_permit() {
    model("blocked_waiter_is_handed_the_permit", || {
        let b = bulkhead(1);
        let held = b.try_acquire().permit().unwrap();
        let waiter = {
            let b = b.clone();
            spawn(move || {
                let p = b
                    .acquire_until(Priority::NORMAL, Duration::from_secs(1))
                    .permit();
                assert!(p.is_some());
                assert_eq!(b.status().in_use, 1);
            })
        };
        let releaser = spawn(move || drop(held));
        waiter.join().unwrap();
        releaser.join().unwrap();
        assert_all_back(&b);
    });
}
