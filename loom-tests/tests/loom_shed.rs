//! The concurrency limiter (`weir::policy::shed::Limiter`): acquire against acquire (in-flight
//! never exceeds the limit, no permit lost), a limit change racing an acquire, a release
//! whose sample moves the limit racing an acquire, and, on the fast path (an algorithm that
//! does not learn, no metrics: the release is the `fetch_sub` alone), a release publishing the
//! work done under its permit to the acquire that takes the freed slot.
#![cfg(weir_loom)]

mod common;

use std::sync::Arc;

use common::{model, spawn};
use loom::sync::atomic::{AtomicUsize, Ordering};
use weir::policy::shed::{Aimd, FixedLimit, LimitAlgorithm, Limiter, RejectReason};
use weir::{ManualClock, SharedClock};

fn limiter(algorithm: impl LimitAlgorithm) -> Limiter {
    let clock: SharedClock = Arc::new(ManualClock::new());
    Limiter::builder(algorithm).clock(clock).build().unwrap()
}

/// Two threads acquire and release against a limit of 1. A tracker of permits held (raised
/// after each grant, lowered before each release) never exceeds 1, every grant's own numbers
/// say in-flight <= limit, at least one thread gets in, and every permit comes back.
#[test]
fn acquirers_never_exceed_the_limit() {
    model("acquirers_never_exceed_the_limit", || {
        let limiter = limiter(FixedLimit::new(1));
        let held = Arc::new(AtomicUsize::new(0));
        let grants = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (limiter, held, grants) = (limiter.clone(), held.clone(), grants.clone());
                spawn(move || {
                    if let Ok(p) = limiter.try_acquire() {
                        assert!(p.in_flight() <= p.limit(), "{p:?}");
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 1, "{now} permits held under a limit of 1");
                        held.fetch_sub(1, Ordering::SeqCst);
                        grants.fetch_add(1, Ordering::SeqCst);
                        p.success();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(grants.load(Ordering::SeqCst) >= 1);
        assert_eq!(limiter.in_flight(), 0, "a permit was lost");
        assert!(limiter.try_acquire().is_ok());
    });
}

/// The limit shrinks from 2 to 1 while another thread acquires, with one permit already held.
/// The acquire succeeds only if it came before the shrink (it then saw limit 2 and became the
/// second permit); after the shrink it is refused. Either way the word counts exactly the
/// permits held, and a shrink below in-flight refuses acquires until they come back.
#[test]
fn limit_change_races_acquire() {
    model("limit_change_races_acquire", || {
        let limiter = limiter(FixedLimit::new(2));
        let first = limiter.try_acquire().unwrap();
        let setter = {
            let limiter = limiter.clone();
            spawn(move || assert_eq!(limiter.set_limit(1), 1))
        };
        let acquirer = {
            let limiter = limiter.clone();
            spawn(move || match limiter.try_acquire_owned() {
                Ok(p) => {
                    assert_eq!((p.in_flight(), p.limit()), (2, 2));
                    Some(p)
                }
                Err(r) => {
                    assert_eq!(
                        (r.reason, r.limit, r.in_flight),
                        (RejectReason::AtLimit, 1, 1)
                    );
                    None
                }
            })
        };
        setter.join().unwrap();
        let second = acquirer.join().unwrap();
        let st = limiter.state();
        assert_eq!(st.limit, 1);
        assert_eq!(st.in_flight, 1 + u32::from(second.is_some()));
        let refused = limiter.try_acquire().unwrap_err();
        assert_eq!(refused.limit, 1);
        drop(first);
        drop(second);
        assert_eq!(limiter.in_flight(), 0);
    });
}

/// A release whose sample raises the limit (AIMD: 1 -> 2) races an acquire. Whatever the
/// interleaving, a grant's in-flight is at most the limit it was granted under, the limit ends
/// at 2, and no permit is lost.
#[test]
fn release_sample_races_acquire() {
    model("release_sample_races_acquire", || {
        let aimd = Aimd::builder().initial(1).min(1).max(2).build().unwrap();
        let limiter = limiter(aimd);
        let held = limiter.try_acquire_owned().unwrap();
        let releaser = spawn(move || held.success());
        let acquirer = {
            let limiter = limiter.clone();
            spawn(move || match limiter.try_acquire() {
                Ok(p) => {
                    assert!(p.in_flight() <= p.limit(), "{p:?}");
                    assert!(p.limit() <= 2);
                    p.ignore();
                    true
                }
                Err(r) => {
                    assert_eq!((r.limit, r.in_flight), (1, 1));
                    false
                }
            })
        };
        releaser.join().unwrap();
        acquirer.join().unwrap();
        assert_eq!(limiter.limit(), 2);
        assert_eq!(limiter.in_flight(), 0, "a permit was lost");
    });
}

/// The fast path (a `FixedLimit`, no metrics: no clock, no mutex). The main thread holds the
/// only slot of a limit of 1 and hands it, as an owned permit, to a thread that writes a value
/// with a `Relaxed` store and releases the permit; another thread tries to acquire with a
/// borrowed permit. If it gets the slot, the holder has released it, and the release's
/// `fetch_sub` (Release) and the acquire's CAS (Acquire) make the write visible even though it
/// was `Relaxed`. Weakening either ordering to `Relaxed` fails this model.
#[test]
fn fast_path_release_publishes_to_next_acquirer() {
    model("fast_path_release_publishes_to_next_acquirer", || {
        let limiter = limiter(FixedLimit::new(1));
        let data = Arc::new(AtomicUsize::new(0));
        let held = limiter.try_acquire_owned().unwrap();
        assert_eq!(held.started_at(), None, "the fast path reads no clock");
        let holder = {
            let data = data.clone();
            spawn(move || {
                data.store(7, Ordering::Relaxed);
                held.success();
            })
        };
        let acquirer = {
            let (limiter, data) = (limiter.clone(), data.clone());
            spawn(move || match limiter.try_acquire() {
                Ok(p) => {
                    assert_eq!((p.in_flight(), p.limit()), (1, 1));
                    assert_eq!(
                        data.load(Ordering::Relaxed),
                        7,
                        "the release did not publish"
                    );
                    drop(p);
                    true
                }
                Err(r) => {
                    assert_eq!(
                        (r.reason, r.limit, r.in_flight),
                        (RejectReason::AtLimit, 1, 1)
                    );
                    false
                }
            })
        };
        holder.join().unwrap();
        acquirer.join().unwrap();
        assert_eq!(limiter.in_flight(), 0, "a permit was lost");
    });
}
