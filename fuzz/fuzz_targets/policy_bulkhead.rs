//! Fuzz the bulkhead with arbitrary operation sequences (try-acquire, blocking acquire with
//! an expired deadline, async acquire polled / re-polled / dropped, release, clock advance)
//! against a sequential reference model: every decision, the permit count, the queue, which
//! waiter each release hands its permit to (priority, then arrival), and which waker fires.
#![no_main]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir::ManualClock;
use weir::policy::bulkhead::{Acquire, Bulkhead, Decision, Permit, Priority, RejectReason};

#[derive(Arbitrary, Debug)]
struct Input {
    max: u8,
    max_waiters: Option<u8>,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    TryAcquire,
    BlockingExpired { priority: u8 },
    AsyncStart { priority: u8, deadline_ms: u16 },
    AsyncPoll { which: u8 },
    AsyncDrop { which: u8 },
    Release { which: u8 },
    Advance { millis: u16 },
}

#[derive(Default)]
struct CountingWaker(AtomicU32);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct Pending {
    id: u64,
    fut: Acquire,
    wakes: Arc<CountingWaker>,
    waker: Waker,
    deadline_ms: u64,
}

/// The reference: permits in use, and the queue as (priority, arrival, future id).
struct Model {
    max: u32,
    max_waiters: u32,
    in_use: u32,
    queue: Vec<(u8, u64, u64)>,
    seq: u64,
    /// Futures handed a permit and not yet polled or dropped.
    granted: Vec<u64>,
}

impl Model {
    fn free(&self) -> bool {
        self.queue.is_empty() && self.in_use < self.max
    }

    fn enqueue(&mut self, priority: u8, id: u64) -> bool {
        if self.queue.len() as u32 >= self.max_waiters {
            return false;
        }
        self.seq += 1;
        self.queue.push((priority, self.seq, id));
        true
    }

    /// A permit is released: the first waiter (highest priority, then earliest) gets it.
    fn release(&mut self) -> Option<u64> {
        let first = self
            .queue
            .iter()
            .enumerate()
            .min_by_key(|(_, (p, seq, _))| (std::cmp::Reverse(*p), *seq))
            .map(|(i, _)| i);
        match first {
            Some(i) => {
                let (_, _, id) = self.queue.remove(i);
                self.granted.push(id);
                Some(id)
            }
            None => {
                self.in_use -= 1;
                None
            }
        }
    }

    fn dequeue(&mut self, id: u64) {
        self.queue.retain(|(_, _, q)| *q != id);
    }
}

fn poll(f: &mut Pending) -> Poll<Decision> {
    Pin::new(&mut f.fut).poll(&mut Context::from_waker(&f.waker))
}

fuzz_target!(|input: Input| {
    let max = u32::from(input.max % 4) + 1;
    let max_waiters = input
        .max_waiters
        .map_or(u32::MAX >> 1, |w| u32::from(w % 5));
    let clock = ManualClock::new();
    let b = Bulkhead::builder("fuzz", max)
        .max_waiters(max_waiters)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut m = Model {
        max,
        max_waiters,
        in_use: 0,
        queue: Vec::new(),
        seq: 0,
        granted: Vec::new(),
    };
    let mut held: Vec<Permit> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut next_id = 0u64;
    // Every future the model says was handed a permit has been woken exactly once.
    let mut expected_wakes: std::collections::HashMap<u64, u32> = Default::default();

    for op in input.ops.iter().take(256) {
        let now_ms = clock.now().as_millis() as u64;
        match *op {
            Op::TryAcquire => match b.try_acquire() {
                Decision::Acquired(p) => {
                    assert!(m.free());
                    m.in_use += 1;
                    held.push(p);
                }
                Decision::Rejected(r) => {
                    assert!(!m.free());
                    assert_eq!(r.reason, RejectReason::Full);
                    assert_eq!(
                        (r.in_use, r.max, r.waiting),
                        (m.in_use, max, m.queue.len() as u32)
                    );
                }
            },
            Op::BlockingExpired { priority } => {
                // Deadline now: takes a free permit, or queues and gives up at once.
                match b.acquire_until(Priority(priority), clock.now()) {
                    Decision::Acquired(p) => {
                        assert!(m.free());
                        m.in_use += 1;
                        held.push(p);
                    }
                    Decision::Rejected(r) => {
                        assert!(!m.free());
                        let room = (m.queue.len() as u32) < m.max_waiters;
                        let want = if room {
                            RejectReason::Timeout
                        } else {
                            RejectReason::QueueFull
                        };
                        assert_eq!(r.reason, want);
                        assert_eq!(r.in_use, m.in_use);
                    }
                }
            }
            Op::AsyncStart {
                priority,
                deadline_ms,
            } if pending.len() < 16 => {
                next_id += 1;
                let deadline = now_ms + u64::from(deadline_ms % 1000);
                let wakes = Arc::new(CountingWaker::default());
                let mut f = Pending {
                    id: next_id,
                    fut: b.acquire_async_until(Priority(priority), Duration::from_millis(deadline)),
                    waker: Waker::from(wakes.clone()),
                    wakes,
                    deadline_ms: deadline,
                };
                let free = m.free();
                let queued = !free && m.enqueue(priority, f.id);
                match poll(&mut f) {
                    Poll::Ready(Decision::Acquired(p)) => {
                        assert!(free);
                        m.in_use += 1;
                        held.push(p);
                    }
                    Poll::Ready(Decision::Rejected(r)) => {
                        assert!(!free);
                        if queued {
                            // Queued with its deadline already reached: gave up at once.
                            assert_eq!(deadline, now_ms);
                            assert_eq!(r.reason, RejectReason::Timeout);
                            m.dequeue(f.id);
                        } else {
                            assert_eq!(r.reason, RejectReason::QueueFull);
                        }
                    }
                    Poll::Pending => {
                        assert!(queued && deadline > now_ms);
                        pending.push(f);
                    }
                }
            }
            Op::AsyncPoll { which } if !pending.is_empty() => {
                let i = usize::from(which) % pending.len();
                let id = pending[i].id;
                let granted = m.granted.contains(&id);
                match poll(&mut pending[i]) {
                    Poll::Ready(Decision::Acquired(p)) => {
                        assert!(granted);
                        m.granted.retain(|g| *g != id);
                        held.push(p);
                        pending.swap_remove(i);
                    }
                    Poll::Ready(Decision::Rejected(r)) => {
                        assert!(!granted);
                        assert!(now_ms >= pending[i].deadline_ms);
                        assert_eq!(r.reason, RejectReason::Timeout);
                        m.dequeue(id);
                        pending.swap_remove(i);
                    }
                    Poll::Pending => {
                        assert!(!granted && now_ms < pending[i].deadline_ms);
                    }
                }
            }
            Op::AsyncDrop { which } if !pending.is_empty() => {
                let f = pending.swap_remove(usize::from(which) % pending.len());
                if m.granted.contains(&f.id) {
                    // Its permit is passed on.
                    m.granted.retain(|g| *g != f.id);
                    if let Some(next) = m.release() {
                        *expected_wakes.entry(next).or_default() += 1;
                    }
                } else {
                    m.dequeue(f.id);
                }
                drop(f);
            }
            Op::Release { which } if !held.is_empty() => {
                drop(held.swap_remove(usize::from(which) % held.len()));
                if let Some(next) = m.release() {
                    *expected_wakes.entry(next).or_default() += 1;
                }
            }
            Op::Advance { millis } => {
                clock.advance(Duration::from_millis(u64::from(millis % 500)));
            }
            _ => {}
        }
        let st = b.status();
        assert_eq!(st.in_use, m.in_use);
        assert_eq!(st.waiting as usize, m.queue.len());
        assert!(st.in_use <= max);
        if st.waiting > 0 {
            // Work-conserving: nobody waits while a permit is free.
            assert_eq!(st.in_use, max);
        }
        assert_eq!(m.in_use as usize, held.len() + m.granted.len());
        for f in &pending {
            let want = expected_wakes.get(&f.id).copied().unwrap_or(0);
            assert_eq!(f.wakes.0.load(Ordering::SeqCst), want, "future {}", f.id);
        }
    }
    // Drop everything: all permits come back, nobody stays queued.
    drop(pending);
    drop(held);
    let st = b.status();
    assert_eq!((st.in_use, st.waiting), (0, 0));
    let all: Vec<_> = (0..max)
        .map(|_| b.try_acquire().permit().unwrap())
        .collect();
    assert!(!b.try_acquire().is_acquired());
    drop(all);
});
