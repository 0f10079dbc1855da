//! The concurrency limiter (`weir::policy::shed::Limiter`): acquire against acquire (in-flight
//! never exceeds the limit, no permit lost), a limit change racing an acquire, a release
//! whose sample moves the limit racing an acquire, and, on the fast path (an algorithm that
//! does not learn, no metrics: the release is the `fetch_sub` alone), a release publishing the
//! work done under its permit to the acquire that takes the freed slot.
//!
//! Sample feeding (a release never waits for another to apply its sample): releases racing
//! each other, with `set_limit` and `inspect`, and with every sample slot taken (loom builds
//! the limiter with 2 slots), apply every sample exactly once by the time all threads have
//! joined, never two updates at once, and leave the word's limit equal to the algorithm's.
//! The algorithm sits in a loom `UnsafeCell` (`weir`'s `sync::BitLock`), so these models also
//! check that each holder's access to it happens-before the next holder's: weakening the
//! give-back CAS to `Relaxed`, the taking CAS or `exclusive`'s waiting load to `Relaxed` makes
//! them fail with "Concurrent write accesses to `UnsafeCell`" (tried by hand).
#![cfg(weir_loom)]

mod common;

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use common::{model, spawn};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use weir::policy::shed::{
    Aimd, FixedLimit, LimitAlgorithm, Limiter, Outcome, OwnedPermit, RejectReason, Sample,
};
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

/// What a [`Counting`] algorithm has seen.
#[derive(Debug, Default)]
struct Seen {
    /// Bit `id` set once sample `id` (an RTT of `id` ns) was applied.
    applied: AtomicUsize,
    updates: AtomicUsize,
    /// Set while an `update` runs.
    inside: AtomicBool,
}

/// Records every sample it is fed (each exactly once, never two updates at once); its limit is
/// `base + updates`.
#[derive(Debug)]
struct Counting {
    seen: Arc<Seen>,
    base: u32,
}

impl LimitAlgorithm for Counting {
    fn limit(&self) -> u32 {
        self.base + self.seen.updates.load(Ordering::SeqCst) as u32
    }
    fn update(&mut self, s: &Sample) -> u32 {
        assert!(
            !self.seen.inside.swap(true, Ordering::SeqCst),
            "two updates at once"
        );
        let bit = 1 << s.rtt.as_nanos();
        let before = self.seen.applied.fetch_or(bit, Ordering::SeqCst);
        assert_eq!(before & bit, 0, "sample {:?} applied twice", s.rtt);
        assert_eq!(s.dropped, s.rtt.as_nanos() % 2 == 1, "{s:?}");
        self.seen.updates.fetch_add(1, Ordering::SeqCst);
        self.seen.inside.store(false, Ordering::SeqCst);
        self.limit()
    }
    fn set_limit(&mut self, limit: u32) -> u32 {
        self.base = limit.clamp(1, 100);
        self.limit()
    }
    fn bounds(&self) -> RangeInclusive<u32> {
        1..=200
    }
}

/// A limiter on [`Counting`] (limit `base` at first) and what it sees.
fn counting(base: u32) -> (Limiter, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let algorithm = Counting {
        seen: seen.clone(),
        base,
    };
    (limiter(algorithm), seen)
}

/// Releases `p` with sample `id`: an RTT of `id` ns, dropped iff `id` is odd.
fn release(p: OwnedPermit, id: u32) {
    let outcome = if id % 2 == 1 {
        Outcome::Dropped
    } else {
        Outcome::Success
    };
    p.release_with_rtt(outcome, Duration::from_nanos(id.into()));
}

/// Once everything has joined: samples `0..n` applied exactly once each, `n` updates, nothing
/// left waiting, and the word's limit is the algorithm's.
fn check_all_applied(limiter: &Limiter, seen: &Seen, n: u32) {
    assert_eq!(
        seen.applied.load(Ordering::SeqCst),
        (1 << n) - 1,
        "a sample was stranded"
    );
    assert_eq!(seen.updates.load(Ordering::SeqCst), n as usize);
    assert_eq!(limiter.limit(), limiter.inspect(|a| a.limit()));
    assert_eq!(limiter.in_flight(), 0, "a permit was lost");
}

/// Two threads release with samples at once (one of them twice): whoever finds the feed held
/// leaves its sample and returns; the holder must apply it before giving the feed back. After
/// the join, with no flush, every sample has been applied exactly once.
#[test]
fn racing_releases_apply_every_sample_once() {
    model("racing_releases_apply_every_sample_once", || {
        let (limiter, seen) = counting(10);
        let permits: Vec<_> = (0..3)
            .map(|_| limiter.try_acquire_owned().unwrap())
            .collect();
        let mut it = permits.into_iter();
        let (a, b, c) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        let one = spawn(move || release(a, 0));
        let two = spawn(move || {
            release(b, 1);
            release(c, 2);
        });
        one.join().unwrap();
        two.join().unwrap();
        check_all_applied(&limiter, &seen, 3);
        assert_eq!(limiter.limit(), 13);
    });
}

/// Releases race a `set_limit` and an `inspect` (which wait for the feed: the holder passes
/// it over, or they take it when free, and releases meanwhile leave their samples for them).
/// Every sample is applied once; `set_limit` returns the limit it left in force; an `inspect`
/// made after a release returned sees that release's sample; the word's limit ends equal to
/// the algorithm's.
#[test]
fn releases_race_set_limit_and_inspect() {
    model("releases_race_set_limit_and_inspect", || {
        let (limiter, seen) = counting(10);
        let done = Arc::new(AtomicBool::new(false));
        let a = limiter.try_acquire_owned().unwrap();
        let b = limiter.try_acquire_owned().unwrap();
        let releaser = {
            let done = done.clone();
            spawn(move || {
                release(a, 0);
                done.store(true, Ordering::SeqCst);
                release(b, 1);
            })
        };
        let admin = {
            let (limiter, seen) = (limiter.clone(), seen.clone());
            spawn(move || {
                let applied = limiter.set_limit(50);
                assert!((50..=52).contains(&applied), "{applied}");
                let released = done.load(Ordering::SeqCst);
                let bits = limiter.inspect(|_| seen.applied.load(Ordering::SeqCst));
                if released {
                    assert_eq!(bits & 1, 1, "inspect missed a returned release's sample");
                }
            })
        };
        releaser.join().unwrap();
        admin.join().unwrap();
        check_all_applied(&limiter, &seen, 2);
        assert!((50..=52).contains(&limiter.limit()));
    });
}

/// Every slot taken (loom builds the limiter with 2): one thread's release may hold the feed
/// while the other's three releases leave two samples and find no slot for the third, which
/// then waits for the feed (the documented fallback). Still every sample is applied once.
#[test]
fn full_slots_fall_back_without_losing_samples() {
    model("full_slots_fall_back_without_losing_samples", || {
        let (limiter, seen) = counting(10);
        let mut permits: Vec<_> = (0..4)
            .map(|_| limiter.try_acquire_owned().unwrap())
            .collect();
        let a = permits.remove(0);
        let one = spawn(move || release(a, 0));
        let two = spawn(move || {
            for (id, p) in (1..).zip(permits) {
                release(p, id);
            }
        });
        one.join().unwrap();
        two.join().unwrap();
        check_all_applied(&limiter, &seen, 4);
    });
}
