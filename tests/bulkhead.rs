//! Bulkhead: lock-free permits, blocking and async waiting by priority, timeouts that never
//! leak a permit, no recursive-release deadlock, shadow mode, metrics, hierarchy, and a
//! 16-thread stress test with exact accounting (no timing assertions).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use weir::policy::Mode;
use weir::policy::bulkhead::{
    Bulkhead, BulkheadConfigError, Decision, HierarchicalBulkhead, HierarchicalDecision, Level,
    Permit, Priority, RejectReason,
};
use weir::{ManualClock, Registry, SystemClock};

// === a tiny executor ===

struct ThreadWaker {
    thread: thread::Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Polls `fut` to completion on this thread, parking between wake-ups.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let w = Arc::new(ThreadWaker {
        thread: thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(w.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        while !w.woken.swap(false, Ordering::SeqCst) {
            thread::park();
        }
    }
}

/// Counts wake-ups.
#[derive(Default)]
struct CountingWaker(AtomicU32);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn poll_once<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

fn acquired(d: Decision) -> Permit {
    match d {
        Decision::Acquired(p) => p,
        Decision::Rejected(r) => panic!("rejected: {r:?}"),
    }
}

/// Waits (bounded) until `cond` holds.
fn eventually(mut cond: impl FnMut() -> bool) {
    for _ in 0..20_000 {
        if cond() {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
    panic!("condition not reached");
}

// === basics ===

#[test]
fn try_acquire_never_exceeds_the_limit() {
    let b = Bulkhead::builder("t", 3).build().unwrap();
    let ps: Vec<_> = (0..3).map(|_| acquired(b.try_acquire())).collect();
    match b.try_acquire() {
        Decision::Rejected(r) => {
            assert_eq!(
                (r.reason, r.in_use, r.max, r.waiting),
                (RejectReason::Full, 3, 3, 0)
            );
            assert_eq!(r.waited, Duration::ZERO);
        }
        Decision::Acquired(_) => panic!("over the limit"),
    }
    assert_eq!(b.status().in_use, 3);
    assert_eq!(b.available(), 0);
    drop(ps);
    assert_eq!(b.in_use(), 0);
    assert_eq!(b.max(), 3);
}

#[test]
fn blocking_waiter_is_handed_the_released_permit() {
    let b = Bulkhead::builder("h", 1).build().unwrap();
    let p = acquired(b.try_acquire());
    let waiter = {
        let b = b.clone();
        thread::spawn(move || {
            let p = acquired(b.acquire(Priority::NORMAL));
            assert_eq!(b.in_use(), 1);
            drop(p);
        })
    };
    eventually(|| b.status().waiting == 1);
    // A newcomer does not jump the queue.
    assert!(
        matches!(b.try_acquire(), Decision::Rejected(r) if r.reason == RejectReason::Full && r.waiting == 1)
    );
    drop(p);
    waiter.join().unwrap();
    assert_eq!((b.in_use(), b.status().waiting), (0, 0));
}

#[test]
fn waiters_are_served_by_priority_then_arrival() {
    let b = Bulkhead::builder("prio", 1).build().unwrap();
    let first = acquired(b.try_acquire());
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    let plan = [
        ("low-1", Priority::LOW),
        ("normal-1", Priority::NORMAL),
        ("critical", Priority::CRITICAL),
        ("normal-2", Priority::NORMAL),
        ("low-2", Priority::LOW),
        ("background", Priority::BACKGROUND),
        ("high", Priority::HIGH),
    ];
    for (i, (name, prio)) in plan.into_iter().enumerate() {
        let (b2, order) = (b.clone(), order.clone());
        handles.push(thread::spawn(move || {
            let p = acquired(b2.acquire(prio));
            order.lock().unwrap().push(name);
            drop(p);
        }));
        // Queue them one at a time, so arrival order is known.
        eventually(|| b.status().waiting == i as u32 + 1);
    }
    drop(first);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        *order.lock().unwrap(),
        [
            "critical",
            "high",
            "normal-1",
            "normal-2",
            "low-1",
            "low-2",
            "background"
        ]
    );
    assert_eq!(b.in_use(), 0);
}

#[test]
fn blocking_timeout_on_a_manual_clock_leaves_nothing_behind() {
    let clock = ManualClock::new();
    let b = Bulkhead::builder("to", 1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let p = acquired(b.try_acquire());
    let waiter = {
        let b = b.clone();
        thread::spawn(move || b.acquire_until(Priority::NORMAL, Duration::from_secs(5)))
    };
    eventually(|| b.status().waiting == 1);
    clock.advance(Duration::from_secs(5));
    match waiter.join().unwrap() {
        Decision::Rejected(r) => {
            assert_eq!(r.reason, RejectReason::Timeout);
            assert_eq!(r.waited, Duration::from_secs(5));
            assert_eq!((r.in_use, r.waiting), (1, 0));
        }
        Decision::Acquired(_) => panic!("no permit was free"),
    }
    assert_eq!(b.status().waiting, 0);
    drop(p);
    assert_eq!(b.in_use(), 0);
    // A deadline already past still takes a free permit.
    let p = acquired(b.acquire_until(Priority::NORMAL, Duration::ZERO));
    drop(p);
}

#[test]
fn queue_limit() {
    let b = Bulkhead::builder("q", 1).max_waiters(0).build().unwrap();
    let _p = acquired(b.try_acquire());
    match b.acquire(Priority::HIGH) {
        Decision::Rejected(r) => assert_eq!(r.reason, RejectReason::QueueFull),
        Decision::Acquired(_) => panic!(),
    }
}

#[test]
fn max_wait_default_is_used_by_acquire() {
    let clock = ManualClock::new();
    let b = Bulkhead::builder("mw", 1)
        .max_wait(Duration::from_millis(30))
        .clock(clock.clone())
        .build()
        .unwrap();
    let _p = acquired(b.try_acquire());
    let h = {
        let b = b.clone();
        thread::spawn(move || b.acquire(Priority::NORMAL))
    };
    eventually(|| b.status().waiting == 1);
    clock.advance(Duration::from_millis(30));
    assert!(
        matches!(h.join().unwrap(), Decision::Rejected(r) if r.reason == RejectReason::Timeout)
    );
}

// === async ===

#[test]
fn async_acquire_waits_and_is_woken() {
    let b = Bulkhead::builder("a", 1).build().unwrap();
    let p = block_on(b.acquire_async(Priority::NORMAL));
    let p = acquired(p);
    let h = {
        let b = b.clone();
        thread::spawn(move || {
            let p = acquired(block_on(b.acquire_async(Priority::NORMAL)));
            drop(p);
        })
    };
    eventually(|| b.status().waiting == 1);
    drop(p);
    h.join().unwrap();
    assert_eq!((b.in_use(), b.status().waiting), (0, 0));
}

#[test]
fn dropping_a_queued_future_leaves_the_queue() {
    let b = Bulkhead::builder("d", 1).build().unwrap();
    let p = acquired(b.try_acquire());
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    let mut fut = b.acquire_async(Priority::NORMAL);
    assert!(poll_once(&mut fut, &waker).is_pending());
    assert_eq!(b.status().waiting, 1);
    assert!(format!("{fut:?}").contains("queued: true"));
    drop(fut);
    assert_eq!(b.status().waiting, 0);
    drop(p);
    assert_eq!(b.in_use(), 0);
    assert_eq!(counter.0.load(Ordering::SeqCst), 0);
}

#[test]
fn a_future_dropped_after_being_handed_a_permit_passes_it_on() {
    let b = Bulkhead::builder("pass", 1).build().unwrap();
    let p = acquired(b.try_acquire());
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    let mut first = b.acquire_async(Priority::HIGH);
    let mut second = b.acquire_async(Priority::LOW);
    assert!(poll_once(&mut first, &waker).is_pending());
    assert!(poll_once(&mut second, &waker).is_pending());
    assert_eq!(b.status().waiting, 2);
    drop(p); // handed to `first`, which is woken
    assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    assert_eq!((b.in_use(), b.status().waiting), (1, 1));
    drop(first); // never polled again: the permit goes on to `second`
    assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    assert_eq!((b.in_use(), b.status().waiting), (1, 0));
    let p = match poll_once(&mut second, &waker) {
        Poll::Ready(d) => acquired(d),
        Poll::Pending => panic!("second was handed the permit"),
    };
    drop(p);
    assert_eq!(b.in_use(), 0);
}

#[test]
fn async_deadline_is_checked_when_polled() {
    let clock = ManualClock::new();
    let b = Bulkhead::builder("ad", 1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let p = acquired(b.try_acquire());
    let waker = Waker::from(Arc::new(CountingWaker::default()));
    let mut fut = b.acquire_async_until(Priority::NORMAL, Duration::from_secs(1));
    assert!(poll_once(&mut fut, &waker).is_pending());
    clock.advance(Duration::from_secs(1));
    match poll_once(&mut fut, &waker) {
        Poll::Ready(Decision::Rejected(r)) => {
            assert_eq!(r.reason, RejectReason::Timeout);
            assert_eq!(r.waited, Duration::from_secs(1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.status().waiting, 0);
    drop(p);
    // Past its deadline on the first poll, with no permit free: it gives up at once.
    let p = acquired(b.try_acquire());
    let mut late = b.acquire_async_until(Priority::NORMAL, Duration::ZERO);
    assert!(matches!(
        poll_once(&mut late, &waker),
        Poll::Ready(Decision::Rejected(_))
    ));
    assert_eq!(b.status().waiting, 0);
    drop(p);
}

/// lift deadlocked when a release re-entered the bulkhead. Here a waker that drops another
/// permit of the same bulkhead, from inside `wake`, just releases it.
#[test]
fn no_recursive_release_deadlock() {
    struct DropOnWake(Mutex<Option<Permit>>);
    impl Wake for DropOnWake {
        fn wake(self: Arc<Self>) {
            drop(self.0.lock().unwrap().take());
        }
    }
    let b = Bulkhead::builder("rec", 2).build().unwrap();
    let p1 = acquired(b.try_acquire());
    let p2 = acquired(b.try_acquire());
    let dropper = Arc::new(DropOnWake(Mutex::new(Some(p2))));
    let waker = Waker::from(dropper.clone());
    let mut fut = b.acquire_async(Priority::NORMAL);
    assert!(poll_once(&mut fut, &waker).is_pending());
    drop(p1); // hands p1 to the future, whose waker drops p2 (re-entering release)
    assert_eq!((b.in_use(), b.status().waiting), (1, 0));
    let p = match poll_once(&mut fut, &waker) {
        Poll::Ready(d) => acquired(d),
        Poll::Pending => panic!(),
    };
    drop(p);
    assert_eq!(b.in_use(), 0);
}

// === shadow, metrics, config ===

#[test]
fn shadow_mode_admits_without_a_permit() {
    let registry = Registry::new();
    let b = Bulkhead::builder("sh", 1)
        .mode(Mode::Shadow)
        .registry(&registry)
        .build()
        .unwrap();
    let real = acquired(b.try_acquire());
    assert_eq!(real.shadow_rejection(), None);
    let shadow = acquired(b.try_acquire());
    assert_eq!(shadow.shadow_rejection(), Some(RejectReason::Full));
    let shadow2 = acquired(b.acquire(Priority::NORMAL));
    assert_eq!(shadow2.shadow_rejection(), Some(RejectReason::Full));
    let shadow3 = acquired(block_on(b.acquire_async(Priority::NORMAL)));
    assert!(shadow3.shadow_rejection().is_some());
    assert_eq!(b.in_use(), 1);
    drop((shadow, shadow2, shadow3));
    assert_eq!(b.in_use(), 1);
    drop(real);
    assert_eq!(b.in_use(), 0);
    let snap = registry.snapshot();
    assert_eq!(
        snap.counter("bulkhead_rejections_total", &["sh", "shadow_full"]),
        Some(3)
    );
    assert_eq!(
        snap.counter("bulkhead_rejections_total", &["sh", "full"]),
        Some(0)
    );
}

#[test]
fn metrics_follow_lift_names() {
    let clock = ManualClock::new();
    let registry = Registry::builder().clock(Arc::new(clock.clone())).build();
    let b = Bulkhead::builder("db", 1)
        .registry(&registry)
        .clock(clock.clone())
        .build()
        .unwrap();
    let p = acquired(b.try_acquire());
    let _ = b.try_acquire();
    let waiter = {
        let b = b.clone();
        thread::spawn(move || acquired(b.acquire(Priority::NORMAL)))
    };
    eventually(|| b.status().waiting == 1);
    clock.advance(Duration::from_millis(7));
    drop(p);
    let p = waiter.join().unwrap();
    assert_eq!(p.waited(), Duration::from_millis(7));
    let snap = registry.snapshot();
    assert_eq!(
        snap.counter("bulkhead_acquisitions_total", &["db"]),
        Some(2)
    );
    assert_eq!(
        snap.counter("bulkhead_rejections_total", &["db", "full"]),
        Some(1)
    );
    assert_eq!(snap.gauge("bulkhead_in_flight", &["db"]), Some(1));
    assert_eq!(snap.gauge("bulkhead_max_permits", &["db"]), Some(1));
    let wait = snap
        .histogram("bulkhead_wait_nanoseconds", &["db"])
        .unwrap();
    assert_eq!(wait.count(), 2);
    assert!(wait.max() >= 6_990_000);
    drop(p);
    assert_eq!(
        registry.snapshot().gauge("bulkhead_in_flight", &["db"]),
        Some(0)
    );
}

#[test]
fn configuration_is_validated() {
    assert_eq!(
        Bulkhead::builder("z", 0).build().unwrap_err(),
        BulkheadConfigError::MaxPermits { value: 0 }
    );
    assert!(Bulkhead::builder("big", u32::MAX).build().is_err());
    assert!(
        Bulkhead::builder("w", 1)
            .max_waiters(u32::MAX)
            .build()
            .is_err()
    );
    assert!(Bulkhead::builder("max", 1 << 31).build().is_ok());
    assert_eq!(
        HierarchicalBulkhead::builder("h")
            .max_keys(0)
            .build()
            .unwrap_err(),
        BulkheadConfigError::Keys
    );
    assert!(
        HierarchicalBulkhead::builder("h")
            .per_tenant(0)
            .build()
            .is_err()
    );
    let r = Registry::new();
    r.gauge("bulkhead_in_flight", "other", &[]).unwrap();
    let e = Bulkhead::builder("r", 1).registry(&r).build().unwrap_err();
    assert!(matches!(e, BulkheadConfigError::Registry(_)));
    assert!(std::error::Error::source(&e).is_some());
    assert!(!e.to_string().is_empty());
    // Huge waits saturate instead of overflowing.
    let b = Bulkhead::builder("huge", 1)
        .max_wait(Duration::MAX)
        .build()
        .unwrap();
    drop(acquired(b.acquire(Priority::NORMAL)));
}

// === hierarchy ===

#[test]
fn hierarchy_has_lift_limits_and_rolls_back() {
    let h = HierarchicalBulkhead::builder("api").build().unwrap();
    assert_eq!(h.global().max(), 100);
    assert_eq!(h.tenant("t").max(), 10);
    assert_eq!(h.operation("GET /x").max(), 20);
    // Tenant limit 10: the 11th call of one tenant is refused at the tenant level, and its
    // global permit is given back.
    let mut ps: Vec<_> = (0..10)
        .map(|i| {
            h.try_acquire(Some("t"), Some(if i % 2 == 0 { "a" } else { "b" }))
                .permit()
                .unwrap()
        })
        .collect();
    match h.try_acquire(Some("t"), Some("a")) {
        HierarchicalDecision::Rejected { level, rejection } => {
            assert_eq!(level, Level::Tenant);
            assert_eq!((rejection.in_use, rejection.max), (10, 10));
        }
        HierarchicalDecision::Acquired(_) => panic!(),
    }
    assert_eq!(h.global().in_use(), 10);
    // Operation limit 20 across tenants: "a" holds 5; 15 more from other tenants fill it.
    let more: Vec<_> = (0..15)
        .map(|i| {
            h.try_acquire(Some(&format!("u{}", i / 5)), Some("a"))
                .permit()
                .unwrap()
        })
        .collect();
    assert_eq!(h.operation("a").in_use(), 20);
    match h.try_acquire(Some("v"), Some("a")) {
        HierarchicalDecision::Rejected { level, .. } => assert_eq!(level, Level::Operation),
        HierarchicalDecision::Acquired(_) => panic!(),
    }
    // Rolled back at both levels above.
    assert_eq!(h.global().in_use(), 25);
    assert_eq!(h.tenant("v").in_use(), 0);
    let p = ps.pop().unwrap();
    assert!(p.tenant().is_some() && p.operation().is_some());
    assert_eq!(p.global().waited() + Duration::ZERO, p.waited());
    drop(p);
    drop(more);
    assert_eq!(h.global().in_use(), 9);
    drop(ps);
    assert_eq!(h.global().in_use(), 0);
}

#[test]
fn hierarchy_global_level_and_blocking_acquire() {
    let clock = ManualClock::new();
    let h = HierarchicalBulkhead::builder("g")
        .global(1)
        .per_tenant(1)
        .per_operation(1)
        .max_wait(Duration::from_secs(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    let p = h.try_acquire(None, None).permit().unwrap();
    assert!(p.tenant().is_none());
    match h.try_acquire(Some("t"), None) {
        HierarchicalDecision::Rejected { level, .. } => assert_eq!(level, Level::Global),
        HierarchicalDecision::Acquired(_) => panic!(),
    }
    let h = Arc::new(h);
    let waiter = {
        let h = h.clone();
        thread::spawn(move || {
            h.acquire(Some("t"), Some("op"), Priority::HIGH)
                .permit()
                .is_some()
        })
    };
    eventually(|| h.global().status().waiting == 1);
    drop(p);
    assert!(waiter.join().unwrap());
    assert_eq!(h.global().in_use(), 0);
    assert_eq!(h.tenant("t").in_use(), 0);
}

#[test]
fn hierarchy_evicts_idle_keys_without_breaking_limits() {
    let clock = ManualClock::new();
    let h = HierarchicalBulkhead::builder("e")
        .per_tenant(1)
        .max_keys(2)
        .idle_ttl(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    let busy = h.try_acquire(Some("busy"), None).permit().unwrap();
    drop(h.try_acquire(Some("idle"), None).permit().unwrap());
    assert_eq!(h.key_counts().0, 2);
    clock.advance(Duration::from_secs(10));
    // Only the idle one goes; the busy one holds a permit.
    assert_eq!(h.evict_idle(), 1);
    assert_eq!(h.key_counts().0, 1);
    // "busy" still has exactly one bulkhead: its limit holds.
    assert!(matches!(
        h.try_acquire(Some("busy"), None),
        HierarchicalDecision::Rejected {
            level: Level::Tenant,
            ..
        }
    ));
    // Full map: a new tenant evicts nothing busy and shares the overflow bulkhead.
    drop(h.try_acquire(Some("new1"), None).permit().unwrap());
    let over = h.try_acquire(Some("new2"), None).permit().unwrap();
    assert!(
        over.tenant()
            .unwrap()
            .bulkhead()
            .name()
            .contains("__overflow__")
    );
    drop(over);
    drop(busy);
}

/// Tenants are evicted and recreated while threads acquire: no key ever has more than its
/// limit in use at once, and everything is released at the end.
#[test]
fn hierarchy_eviction_races_acquisition() {
    let clock = ManualClock::new();
    let h = HierarchicalBulkhead::builder("race")
        .global(64)
        .per_tenant(2)
        .max_keys(4)
        .idle_ttl(Duration::from_millis(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    let in_tenant: Vec<AtomicU32> = (0..8).map(|_| AtomicU32::new(0)).collect();
    thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..2000 {
                clock.advance(Duration::from_millis(1));
                h.evict_idle();
            }
        });
        for t in 0..8u64 {
            let (h, in_tenant) = (&h, &in_tenant);
            s.spawn(move || {
                let rng = weir::policy::Rng::with_seed(t);
                for _ in 0..3000 {
                    let k = rng.below(3) as usize; // three tenants: 3 of 4 keys, rest overflow-free
                    if let Some(p) = h.try_acquire(Some(&format!("t{k}")), None).permit() {
                        let n = in_tenant[k].fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(n <= 2, "tenant {k} has {n} permits out");
                        in_tenant[k].fetch_sub(1, Ordering::SeqCst);
                        drop(p);
                    }
                }
            });
        }
    });
    assert_eq!(h.global().in_use(), 0);
    for k in 0..3 {
        assert_eq!(h.tenant(&format!("t{k}")).in_use(), 0);
    }
}

// === stress ===

/// 16 threads acquire (lock-free, blocking with timeouts, async polled then dropped or
/// finished) and release at random: the permit count never exceeds the limit, and at the
/// end every permit is back and nobody is queued.
#[test]
fn sixteen_threads_end_with_every_permit() {
    const MAX: u32 = 4;
    let b = Bulkhead::builder("stress", MAX)
        .clock(SystemClock::new())
        .build()
        .unwrap();
    let inside = AtomicU32::new(0);
    let peak = AtomicU32::new(0);
    let (got, timed_out) = (AtomicU32::new(0), AtomicU32::new(0));
    thread::scope(|s| {
        for t in 0..16u64 {
            let (b, inside, peak, got, timed_out) = (&b, &inside, &peak, &got, &timed_out);
            s.spawn(move || {
                let rng = weir::policy::Rng::with_seed(0x5eed + t);
                let waker = Waker::from(Arc::new(CountingWaker::default()));
                for _ in 0..2000 {
                    let prio = Priority(rng.below(11) as u8);
                    let decision = match rng.below(4) {
                        0 => b.try_acquire(),
                        1 => {
                            let deadline = b.clock().now() + Duration::from_micros(rng.below(500));
                            b.acquire_until(prio, deadline)
                        }
                        2 => {
                            // Poll once, then either drop it (cancel) or wait it out.
                            let mut fut = b.acquire_async_until(
                                prio,
                                b.clock().now() + Duration::from_millis(1),
                            );
                            match poll_once(&mut fut, &waker) {
                                Poll::Ready(d) => d,
                                Poll::Pending if rng.below(2) == 0 => {
                                    thread::yield_now();
                                    drop(fut);
                                    continue;
                                }
                                Poll::Pending => block_on(fut),
                            }
                        }
                        _ => b.acquire_until(prio, b.clock().now() + Duration::from_millis(2)),
                    };
                    match decision {
                        Decision::Acquired(p) => {
                            let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(n, Ordering::SeqCst);
                            assert!(n <= MAX);
                            got.fetch_add(1, Ordering::Relaxed);
                            if rng.below(3) == 0 {
                                thread::yield_now();
                            }
                            inside.fetch_sub(1, Ordering::SeqCst);
                            drop(p);
                        }
                        Decision::Rejected(r) => {
                            if r.reason == RejectReason::Timeout {
                                timed_out.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            });
        }
    });
    assert!(peak.load(Ordering::SeqCst) <= MAX);
    assert!(got.load(Ordering::Relaxed) > 0);
    let st = b.status();
    assert_eq!((st.in_use, st.waiting), (0, 0), "{st:?}");
    // Every permit is back: all MAX can be taken again.
    let all: Vec<_> = (0..MAX).map(|_| acquired(b.try_acquire())).collect();
    assert!(!b.try_acquire().is_acquired());
    drop(all);
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Bulkhead>();
    send_sync::<Permit>();
    send_sync::<HierarchicalBulkhead>();
    send_sync::<weir::policy::bulkhead::HierarchicalPermit>();
    send::<weir::policy::bulkhead::Acquire>();
}
