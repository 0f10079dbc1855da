//! Bulkheads: a fixed number of concurrent permits, so one slow dependency cannot take every
//! thread (or task) with it.
//!
//! A [`Bulkhead`] hands out at most `max` permits at once. [`try_acquire`](Bulkhead::try_acquire)
//! is one compare-and-swap on an atomic count and never exceeds `max`; the blocking
//! [`acquire`](Bulkhead::acquire) / [`acquire_until`](Bulkhead::acquire_until) and the async
//! [`acquire_async`](Bulkhead::acquire_async) wait in a queue ordered by priority (higher
//! first), then arrival (FIFO), until a deadline. A [`Permit`] is an RAII guard: dropping it
//! releases it, and a release with waiters queued hands the permit straight to the first
//! waiter. [`HierarchicalBulkhead`] stacks global, per-tenant and per-operation bulkheads
//! (lift's 100 / 10 / 20) with rollback.
//!
//! What lift got wrong, and what weir does instead:
//! - **Permit leak when a timeout races a release.** A waiter is either still queued or has
//!   been handed a permit, and both the hand-off and the waiter's give-up decide that under
//!   the queue mutex: a waiter that times out after being handed a permit keeps it (blocking)
//!   or releases it (a dropped future), so every permit is accounted for (loom-checked).
//! - **Recursive release deadlock.** No user code runs under the queue mutex: wakers are woken
//!   and condition variables notified after it is released, so a waker that drops a permit of
//!   the same bulkhead just releases it.
//!
//! ```
//! use weir::policy::bulkhead::{Bulkhead, Decision, Priority, RejectReason};
//!
//! let bulkhead = Bulkhead::builder("db", 2).build()?;
//! let a = bulkhead.try_acquire().permit().unwrap();
//! let b = bulkhead.try_acquire().permit().unwrap();
//! match bulkhead.try_acquire() {
//!     Decision::Rejected(r) => assert_eq!((r.reason, r.in_use, r.max), (RejectReason::Full, 2, 2)),
//!     Decision::Acquired(_) => unreachable!(),
//! }
//! drop(a);
//! assert_eq!(bulkhead.available(), 1);
//! drop(b);
//! assert_eq!(bulkhead.in_use(), 0);
//! # let _ = Priority::NORMAL;
//! # Ok::<(), weir::policy::bulkhead::BulkheadConfigError>(())
//! ```
//!
//! # Orderings
//! - The permit word (`state.rs`) is changed only by compare-and-swap. Taking a permit uses
//!   `AcqRel` on success and returning one `AcqRel` as well: like a mutex, a permit holder sees
//!   everything the previous holder did before releasing (Release → Acquire), and the count is
//!   exact by atomicity. Failed CASes and plain loads are `Acquire` (the retry works from the
//!   newest value; no weaker ordering would save anything on the platforms that matter).
//! - Waiter hand-off happens under the queue mutex, which orders the releaser's work before
//!   the waiter's: the waiter reads `granted` under the same mutex, so that flag is `Relaxed`.
//! - Nothing else is shared: metrics use their own handles.
#![forbid(unsafe_code)]

mod hierarchy;
mod metrics;
mod state;

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::RegistryError;
use crate::registry::Registry;
use crate::sync::{AtomicBool, AtomicU64, Mutex, MutexGuard, Ordering, lock};

use super::Mode;
use super::breaker::keymap::Evict;

pub use hierarchy::{
    HierarchicalBuilder, HierarchicalBulkhead, HierarchicalDecision, HierarchicalPermit, Level,
};

use metrics::Metrics;
use state::{Enqueue, MAX_PERMITS, Release, Snapshot, Take, WAITERS_MAX};

// The condition variable waiters block on: std's, or loom's under `cfg(weir_loom)`.
use crate::sync::Condvar;

/// A blocked waiter re-reads the clock at least this often, so a deadline on a clock that is
/// moved by hand (a [`ManualClock`](crate::ManualClock)) is noticed within this much real time.
pub const CLOCK_POLL: Duration = Duration::from_millis(20);

/// A waiter's priority: higher goes first; equal priorities go in arrival order. The
/// constants are lift's levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u8);

impl Priority {
    /// lift's `critical` (10).
    pub const CRITICAL: Priority = Priority(10);
    /// lift's `high` (8).
    pub const HIGH: Priority = Priority(8);
    /// lift's `normal` (5), the default.
    pub const NORMAL: Priority = Priority(5);
    /// lift's `low` (2).
    pub const LOW: Priority = Priority(2);
    /// lift's `background` (1).
    pub const BACKGROUND: Priority = Priority(1);
}

impl Default for Priority {
    fn default() -> Priority {
        Priority::NORMAL
    }
}

// === configuration ===

/// Builds a [`Bulkhead`]. Defaults: unbounded queue (up to 2^31 - 1 waiters), lift's 30 s
/// maximum wait, [`Mode::Enforce`], a [`SystemClock`], no metrics.
#[must_use = "a builder does nothing until built"]
pub struct BulkheadBuilder {
    name: String,
    max: u32,
    max_waiters: u32,
    max_wait: Duration,
    mode: Mode,
    clock: Option<SharedClock>,
    registry: Option<Registry>,
}

impl fmt::Debug for BulkheadBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadBuilder")
            .field("name", &self.name)
            .field("max", &self.max)
            .field("max_waiters", &self.max_waiters)
            .field("max_wait", &self.max_wait)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Clone for BulkheadBuilder {
    fn clone(&self) -> Self {
        BulkheadBuilder {
            name: self.name.clone(),
            max: self.max,
            max_waiters: self.max_waiters,
            max_wait: self.max_wait,
            mode: self.mode,
            clock: self.clock.clone(),
            registry: self.registry.clone(),
        }
    }
}

impl BulkheadBuilder {
    /// At most this many waiters queue (0: never wait; at most 2^31 - 1).
    pub fn max_waiters(mut self, n: u32) -> Self {
        self.max_waiters = n;
        self
    }

    /// How long [`acquire`](Bulkhead::acquire) and [`acquire_async`](Bulkhead::acquire_async)
    /// wait (lift's `MaxWaitTime`, 30 s). Saturates at the end of the clock's range.
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }

    /// Enforce, or only observe ([`Mode::Shadow`]: a call that finds no free permit is
    /// admitted at once, without a permit, and counted as `shadow_full`).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The clock deadlines and wait times are read from.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Record `bulkhead_acquisitions_total{name}`, `bulkhead_rejections_total{name, reason}`,
    /// `bulkhead_wait_nanoseconds{name}` (histogram), `bulkhead_in_flight{name}` and
    /// `bulkhead_max_permits{name}` into this registry.
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    fn shared_clock(&self) -> SharedClock {
        self.clock
            .clone()
            .unwrap_or_else(|| Arc::new(SystemClock::new()))
    }

    fn validate(&self) -> Result<(), BulkheadConfigError> {
        if self.max == 0 || self.max > MAX_PERMITS {
            return Err(BulkheadConfigError::MaxPermits { value: self.max });
        }
        if u64::from(self.max_waiters) > WAITERS_MAX {
            return Err(BulkheadConfigError::MaxWaiters {
                value: self.max_waiters,
            });
        }
        Ok(())
    }

    fn build_with(
        &self,
        name: &str,
        max: u32,
        clock: SharedClock,
    ) -> Result<Bulkhead, BulkheadConfigError> {
        let metrics = match &self.registry {
            Some(r) => {
                Some(Metrics::register(r, name, max).map_err(BulkheadConfigError::Registry)?)
            }
            None => None,
        };
        Ok(Bulkhead {
            inner: Arc::new(Inner {
                name: name.into(),
                max,
                max_waiters: self.max_waiters,
                max_wait: self.max_wait,
                mode: self.mode,
                clock,
                state: CachePadded::new(AtomicU64::new(Snapshot::INITIAL.bits())),
                queue: Mutex::new(Queue {
                    seq: 0,
                    waiting: BTreeMap::new(),
                }),
                metrics,
            }),
        })
    }

    /// Builds the bulkhead.
    ///
    /// # Errors
    ///
    /// [`BulkheadConfigError`] if `max` is 0 or above 2^31, `max_waiters` above 2^31 - 1, or
    /// the metrics could not be registered.
    pub fn build(self) -> Result<Bulkhead, BulkheadConfigError> {
        self.validate()?;
        let clock = self.shared_clock();
        self.build_with(&self.name, self.max, clock)
    }
}

/// A bulkhead could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadConfigError {
    /// The permit limit must be in `1..=2^31`.
    MaxPermits {
        /// The rejected value.
        value: u32,
    },
    /// At most 2^31 - 1 waiters can be counted; use a smaller queue limit.
    MaxWaiters {
        /// The rejected value.
        value: u32,
    },
    /// Keyed (tenant / operation) bulkheads need `max_keys` of at least 1 and a non-zero
    /// idle TTL.
    Keys,
    /// The metrics could not be registered (for example, the names are already registered
    /// with other labels).
    Registry(RegistryError),
}

impl fmt::Display for BulkheadConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BulkheadConfigError::MaxPermits { value } => {
                write!(f, "bulkhead permits must be in 1..=2^31, got {value}")
            }
            BulkheadConfigError::MaxWaiters { value } => {
                write!(
                    f,
                    "bulkhead queue limit must be at most 2^31 - 1, got {value}"
                )
            }
            BulkheadConfigError::Keys => {
                f.write_str("keyed bulkheads need max_keys >= 1 and a non-zero idle TTL")
            }
            BulkheadConfigError::Registry(e) => write!(f, "registering bulkhead metrics: {e}"),
        }
    }
}

impl std::error::Error for BulkheadConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BulkheadConfigError::Registry(e) => Some(e),
            _ => None,
        }
    }
}

// === decisions ===

/// Why a call got no permit (or, in shadow mode, would have had to wait).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// No permit was free (or waiters were queued ahead) and the call did not wait.
    Full,
    /// The waiter queue is at its limit.
    QueueFull,
    /// The deadline passed while waiting.
    Timeout,
}

impl RejectReason {
    /// The `reason` label value (`full`, `queue_full`, `timeout`).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Full => "full",
            RejectReason::QueueFull => "queue_full",
            RejectReason::Timeout => "timeout",
        }
    }
}

/// A call that got no permit, with the numbers seen at the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// Permits in use.
    pub in_use: u32,
    /// The limit.
    pub max: u32,
    /// Waiters queued.
    pub waiting: u32,
    /// How long the call waited.
    pub waited: Duration,
}

/// The answer to an acquire.
#[must_use = "dropping an acquired permit releases it at once"]
#[derive(Debug)]
pub enum Decision {
    /// A permit (released on drop).
    Acquired(Permit),
    /// No permit.
    Rejected(Rejection),
}

impl Decision {
    /// Whether a permit was acquired.
    pub fn is_acquired(&self) -> bool {
        matches!(self, Decision::Acquired(_))
    }

    /// The permit, if one was acquired.
    pub fn permit(self) -> Option<Permit> {
        match self {
            Decision::Acquired(p) => Some(p),
            Decision::Rejected(_) => None,
        }
    }
}

/// A bulkhead permit: released when dropped (handed to the first waiter if any).
#[must_use = "dropping a permit releases it at once"]
pub struct Permit {
    bulkhead: Bulkhead,
    /// False for a shadow-mode admission, which holds no permit.
    real: bool,
    waited: Duration,
    shadow: Option<RejectReason>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("bulkhead", &self.bulkhead.inner.name)
            .field("waited", &self.waited)
            .field("shadow", &self.shadow)
            .finish()
    }
}

impl Permit {
    /// How long the call waited for it.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// In shadow mode, why the call would not have got a permit at once (it holds none).
    pub fn shadow_rejection(&self) -> Option<RejectReason> {
        self.shadow
    }

    /// The bulkhead it came from.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.real {
            if let Some(m) = &self.bulkhead.inner.metrics {
                m.in_flight.dec();
            }
            self.bulkhead.release();
        }
    }
}

/// Permits in use, the limit and the queue, read at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkheadStatus {
    /// Permits handed out and not yet released.
    pub in_use: u32,
    /// The limit.
    pub max: u32,
    /// Waiters queued.
    pub waiting: u32,
}

// === the bulkhead ===

/// Queue order: higher priority first, then arrival.
type Key = (Reverse<u8>, u64);

struct Node {
    /// Set (under the queue mutex) when a releaser hands this waiter a permit.
    granted: AtomicBool,
    /// What a blocking waiter sleeps on (with the queue mutex).
    cv: Condvar,
}

struct Waiter {
    node: Arc<Node>,
    waker: Option<Waker>,
}

struct Queue {
    seq: u64,
    waiting: BTreeMap<Key, Waiter>,
}

struct Inner {
    name: Box<str>,
    max: u32,
    max_waiters: u32,
    max_wait: Duration,
    mode: Mode,
    clock: SharedClock,
    /// The packed permit word (see `state.rs`). On its own cache line(s): every acquire and
    /// release writes it, and the settings above, read by each of them, would otherwise be
    /// evicted from other threads' caches by each write.
    state: CachePadded<AtomicU64>,
    queue: Mutex<Queue>,
    metrics: Option<Metrics>,
}

/// A limit on concurrent calls (see the module docs). `Clone` shares it.
#[derive(Clone)]
pub struct Bulkhead {
    inner: Arc<Inner>,
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.inner.name)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// The bulkhead was retired by a keyed map; look it up again.
#[derive(Debug)]
pub(crate) struct Retired;

/// A give-up that found the permit already handed over.
#[must_use]
enum Cancel {
    /// Removed from the queue; no permit.
    Removed(Snapshot),
    /// A permit had been handed to this waiter: the caller holds it now.
    Granted,
}

fn saturating_deadline(now: Duration, wait: Duration) -> Duration {
    now.checked_add(wait).unwrap_or(Duration::MAX)
}

impl Bulkhead {
    /// A builder for a bulkhead of `max` permits named `name` (the metrics' `name` label).
    pub fn builder(name: &str, max: u32) -> BulkheadBuilder {
        BulkheadBuilder {
            name: name.to_owned(),
            max,
            max_waiters: WAITERS_MAX as u32,
            max_wait: Duration::from_secs(30),
            mode: Mode::Enforce,
            clock: None,
            registry: None,
        }
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn load(&self) -> Snapshot {
        // Acquire: module docs.
        Snapshot::from_bits(self.inner.state.load(Ordering::Acquire))
    }

    fn cas(&self, cur: Snapshot, next: Snapshot) -> Result<Snapshot, Snapshot> {
        // AcqRel / Acquire: module docs (a permit changes hands like a lock).
        self.inner
            .state
            .compare_exchange(cur.bits(), next.bits(), Ordering::AcqRel, Ordering::Acquire)
            .map(Snapshot::from_bits)
            .map_err(Snapshot::from_bits)
    }

    /// Permits in use, the limit and the queue length.
    pub fn status(&self) -> BulkheadStatus {
        let s = self.load();
        BulkheadStatus {
            in_use: s.in_use(),
            max: self.inner.max,
            waiting: s.waiters(),
        }
    }

    /// Permits in use.
    pub fn in_use(&self) -> u32 {
        self.load().in_use()
    }

    /// Permits free now.
    pub fn available(&self) -> u32 {
        self.inner.max.saturating_sub(self.in_use())
    }

    /// The limit.
    pub fn max(&self) -> u32 {
        self.inner.max
    }

    /// The clock deadlines are read from.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// The lock-free attempt: one CAS taking a permit if one is free and nobody is queued.
    fn try_take(&self) -> Take {
        let mut cur = self.load();
        loop {
            if cur.retired() {
                return Take::Retired;
            }
            if cur.waiters() > 0 || cur.in_use() >= self.inner.max {
                return Take::Busy(cur);
            }
            let next = cur.take();
            match self.cas(cur, next) {
                Ok(_) => return Take::Taken(next),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Counts the caller as a waiter, or takes a permit that came free. Under the queue
    /// mutex, so the waiter count and the queue change together.
    fn enqueue_locked(&self, _q: &mut Queue) -> Enqueue {
        let mut cur = self.load();
        loop {
            if cur.retired() {
                return Enqueue::Retired;
            }
            let next = if cur.waiters() == 0 && cur.in_use() < self.inner.max {
                cur.take()
            } else if cur.waiters() < self.inner.max_waiters {
                cur.enqueue()
            } else {
                return Enqueue::QueueFull(cur);
            };
            match self.cas(cur, next) {
                Ok(_) if next.waiters() > cur.waiters() => return Enqueue::Queued(next),
                Ok(_) => return Enqueue::Taken(next),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Releases one permit: back to the pool, or handed to the first waiter.
    fn release(&self) {
        let mut cur = self.load();
        let release = loop {
            if cur.waiters() > 0 {
                break Release::HandOff;
            }
            if cur.in_use() == 0 {
                // Unreachable: every release pairs with an acquisition. Never underflow.
                debug_assert!(false, "bulkhead released more permits than it handed out");
                return;
            }
            match self.cas(cur, cur.put()) {
                Ok(_) => break Release::Returned,
                Err(actual) => cur = actual,
            }
        };
        if release == Release::HandOff {
            self.hand_off();
        }
    }

    #[cold]
    fn hand_off(&self) {
        let woken = {
            let mut q = lock(&self.inner.queue);
            let mut cur = self.load();
            loop {
                if cur.waiters() > 0 {
                    // Waiters only change under this mutex, so the CAS races only with nothing
                    // (lock-free paths do not touch the word while waiters > 0); loop anyway.
                    match self.cas(cur, cur.dequeue()) {
                        Ok(_) => {
                            let first = q.waiting.pop_first();
                            match first {
                                Some((_, w)) => {
                                    // Relaxed: read under this mutex (module docs).
                                    w.node.granted.store(true, Ordering::Relaxed);
                                    break Some(w);
                                }
                                None => {
                                    // Unreachable: the count matched the queue under the mutex.
                                    // Keep the word consistent: the permit returns to the pool.
                                    debug_assert!(false, "waiter count without a queued waiter");
                                    cur = self.load();
                                    continue;
                                }
                            }
                        }
                        Err(actual) => cur = actual,
                    }
                } else {
                    // The waiters gave up meanwhile: return the permit to the pool.
                    if cur.in_use() == 0 {
                        debug_assert!(false, "bulkhead released more permits than it handed out");
                        break None;
                    }
                    match self.cas(cur, cur.put()) {
                        Ok(_) => break None,
                        Err(actual) => cur = actual,
                    }
                }
            }
        };
        // Wake with the mutex released: a waker may run anything, even drop another permit of
        // this bulkhead (which then takes the mutex itself).
        if let Some(w) = woken {
            w.node.cv.notify_one();
            if let Some(waker) = w.waker {
                waker.wake();
            }
        }
    }

    /// Queues the caller: returns its key and node, or the decision if it did not queue.
    fn queue_up(
        &self,
        q: &mut MutexGuard<'_, Queue>,
        priority: Priority,
        waker: Option<Waker>,
        start: Duration,
    ) -> Result<Result<(Key, Arc<Node>), Decision>, Retired> {
        match self.enqueue_locked(q) {
            Enqueue::Retired => Err(Retired),
            Enqueue::Taken(_) => Ok(Err(self.acquired(start))),
            Enqueue::QueueFull(s) => Ok(Err(self.rejected(RejectReason::QueueFull, s, start))),
            Enqueue::Queued(_) => {
                q.seq += 1;
                let key = (Reverse(priority.0), q.seq);
                let node = Arc::new(Node {
                    granted: AtomicBool::new(false),
                    cv: Condvar::new(),
                });
                q.waiting.insert(
                    key,
                    Waiter {
                        node: node.clone(),
                        waker,
                    },
                );
                Ok(Ok((key, node)))
            }
        }
    }

    /// Gives up waiting, under the queue mutex.
    fn cancel_locked(&self, q: &mut Queue, key: &Key, node: &Node) -> Cancel {
        // Relaxed: under the mutex (module docs).
        if node.granted.load(Ordering::Relaxed) {
            return Cancel::Granted;
        }
        q.waiting.remove(key);
        let mut cur = self.load();
        loop {
            if cur.waiters() == 0 {
                // Unreachable: this waiter was counted. Never underflow.
                debug_assert!(false, "queued waiter not counted");
                return Cancel::Removed(cur);
            }
            match self.cas(cur, cur.dequeue()) {
                Ok(_) => return Cancel::Removed(cur.dequeue()),
                Err(actual) => cur = actual,
            }
        }
    }

    fn now(&self) -> Duration {
        self.inner.clock.now()
    }

    fn acquired(&self, start: Duration) -> Decision {
        let waited = self.now().saturating_sub(start);
        if let Some(m) = &self.inner.metrics {
            m.acquired(waited);
        }
        Decision::Acquired(Permit {
            bulkhead: self.clone(),
            real: true,
            waited,
            shadow: None,
        })
    }

    fn rejected(&self, reason: RejectReason, seen: Snapshot, start: Duration) -> Decision {
        let waited = if reason == RejectReason::Timeout {
            self.now().saturating_sub(start)
        } else {
            Duration::ZERO
        };
        if !self.inner.mode.enforces() && reason != RejectReason::Timeout {
            if let Some(m) = &self.inner.metrics {
                m.shadow();
            }
            return Decision::Acquired(Permit {
                bulkhead: self.clone(),
                real: false,
                waited,
                shadow: Some(reason),
            });
        }
        if let Some(m) = &self.inner.metrics {
            m.rejected(reason);
        }
        Decision::Rejected(Rejection {
            reason,
            in_use: seen.in_use(),
            max: self.inner.max,
            waiting: seen.waiters(),
            waited,
        })
    }

    pub(crate) fn try_acquire_inner(&self) -> Result<Decision, Retired> {
        match self.try_take() {
            Take::Taken(_) => Ok(self.acquired_now()),
            Take::Busy(s) => Ok(self.rejected(RejectReason::Full, s, Duration::ZERO)),
            Take::Retired => Err(Retired),
        }
    }

    fn acquired_now(&self) -> Decision {
        if let Some(m) = &self.inner.metrics {
            m.acquired(Duration::ZERO);
        }
        Decision::Acquired(Permit {
            bulkhead: self.clone(),
            real: true,
            waited: Duration::ZERO,
            shadow: None,
        })
    }

    /// Takes a permit if one is free now and nobody is queued ahead: one compare-and-swap,
    /// never waits, never exceeds the limit.
    pub fn try_acquire(&self) -> Decision {
        match self.try_acquire_inner() {
            Ok(d) => d,
            Err(Retired) => self.retired_decision(),
        }
    }

    /// Only keyed maps retire bulkheads, and they never hand a retired one out through the
    /// public API; answer as "full" rather than panic.
    fn retired_decision(&self) -> Decision {
        self.rejected(RejectReason::Full, self.load(), Duration::ZERO)
    }

    /// Waits (blocking this thread) for a permit, at most the configured maximum wait.
    pub fn acquire(&self, priority: Priority) -> Decision {
        let deadline = saturating_deadline(self.now(), self.inner.max_wait);
        self.acquire_until(priority, deadline)
    }

    /// Waits (blocking this thread) for a permit until `deadline` on the bulkhead's clock.
    /// The lock-free fast path is tried first; waiters queue by priority, then arrival.
    /// A waiter handed a permit just as its deadline passes keeps it.
    pub fn acquire_until(&self, priority: Priority, deadline: Duration) -> Decision {
        match self.acquire_until_inner(priority, deadline) {
            Ok(d) => d,
            Err(Retired) => self.retired_decision(),
        }
    }

    pub(crate) fn acquire_until_inner(
        &self,
        priority: Priority,
        deadline: Duration,
    ) -> Result<Decision, Retired> {
        match self.try_take() {
            Take::Taken(_) => return Ok(self.acquired_now()),
            Take::Retired => return Err(Retired),
            Take::Busy(s) => {
                if !self.inner.mode.enforces() {
                    return Ok(self.rejected(RejectReason::Full, s, Duration::ZERO));
                }
            }
        }
        let start = self.now();
        let mut q = lock(&self.inner.queue);
        let (key, node) = match self.queue_up(&mut q, priority, None, start)? {
            Ok(queued) => queued,
            Err(decision) => return Ok(decision),
        };
        loop {
            // Relaxed: under the mutex (module docs).
            if node.granted.load(Ordering::Relaxed) {
                drop(q);
                return Ok(self.acquired(start));
            }
            let now = self.now();
            if now >= deadline {
                return Ok(match self.cancel_locked(&mut q, &key, &node) {
                    Cancel::Granted => {
                        drop(q);
                        self.acquired(start)
                    }
                    Cancel::Removed(seen) => {
                        drop(q);
                        self.rejected(RejectReason::Timeout, seen, start)
                    }
                });
            }
            let wait = (deadline - now).min(CLOCK_POLL);
            q = match node.cv.wait_timeout(q, wait) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// A future that resolves to a permit, waiting at most the configured maximum wait.
    /// See [`Acquire`] for how its deadline and cancellation work.
    pub fn acquire_async(&self, priority: Priority) -> Acquire {
        let deadline = saturating_deadline(self.now(), self.inner.max_wait);
        self.acquire_async_until(priority, deadline)
    }

    /// A future that resolves to a permit, or to a timeout once polled at or after `deadline`
    /// (on the bulkhead's clock).
    pub fn acquire_async_until(&self, priority: Priority, deadline: Duration) -> Acquire {
        Acquire {
            bulkhead: self.clone(),
            priority,
            deadline,
            state: AcquireState::Start,
        }
    }

    /// Retires an idle bulkhead (no permit in use, nobody waiting): from now on it hands out
    /// nothing. Used by keyed maps before evicting it.
    fn retire_if_idle(&self) -> bool {
        let cur = Snapshot::INITIAL;
        self.cas(cur, cur.retire()).is_ok()
    }
}

impl Evict for Bulkhead {
    fn try_retire(&self, _now: Duration) -> bool {
        self.retire_if_idle()
    }
}

// === async ===

enum AcquireState {
    Start,
    Queued {
        key: Key,
        node: Arc<Node>,
        start: Duration,
    },
    Done,
}

/// The future returned by [`Bulkhead::acquire_async`]: no runtime needed (it uses only
/// [`Waker`]s).
///
/// - It tries the lock-free path on its first poll, then queues (priority, then FIFO) and
///   is woken when a releaser hands it a permit.
/// - Its deadline is checked whenever it is polled; nothing wakes it at the deadline by
///   itself, since weir has no timer. Pair it with your runtime's timeout (for example
///   `tokio::time::timeout`) to stop waiting on time: dropping it is safe at any point.
/// - Dropping it while queued removes it from the queue; if a permit had already been handed
///   to it, the permit is released (to the next waiter), so none leaks.
#[must_use = "futures do nothing unless polled"]
pub struct Acquire {
    bulkhead: Bulkhead,
    priority: Priority,
    deadline: Duration,
    state: AcquireState,
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("bulkhead", &self.bulkhead.inner.name)
            .field("priority", &self.priority)
            .field("deadline", &self.deadline)
            .field("queued", &matches!(self.state, AcquireState::Queued { .. }))
            .finish()
    }
}

impl Acquire {
    pub(crate) fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<Decision, Retired>> {
        let b = &self.bulkhead;
        match &self.state {
            AcquireState::Done => {
                Poll::Ready(Ok(b.rejected(RejectReason::Full, b.load(), Duration::ZERO)))
            }
            AcquireState::Start => {
                match b.try_take() {
                    Take::Taken(_) => {
                        self.state = AcquireState::Done;
                        return Poll::Ready(Ok(b.acquired_now()));
                    }
                    Take::Retired => {
                        self.state = AcquireState::Done;
                        return Poll::Ready(Err(Retired));
                    }
                    Take::Busy(s) => {
                        if !b.inner.mode.enforces() {
                            self.state = AcquireState::Done;
                            return Poll::Ready(Ok(b.rejected(
                                RejectReason::Full,
                                s,
                                Duration::ZERO,
                            )));
                        }
                    }
                }
                let start = b.now();
                let mut q = lock(&b.inner.queue);
                match b.queue_up(&mut q, self.priority, Some(cx.waker().clone()), start) {
                    Err(Retired) => {
                        self.state = AcquireState::Done;
                        Poll::Ready(Err(Retired))
                    }
                    Ok(Err(decision)) => {
                        self.state = AcquireState::Done;
                        Poll::Ready(Ok(decision))
                    }
                    Ok(Ok((key, node))) => {
                        drop(q);
                        self.state = AcquireState::Queued { key, node, start };
                        if b.now() >= self.deadline {
                            // Already past the deadline: give up now (the next poll would).
                            return self.poll_inner(cx);
                        }
                        Poll::Pending
                    }
                }
            }
            AcquireState::Queued { key, node, start } => {
                let (key, node, start) = (*key, node.clone(), *start);
                let mut q = lock(&b.inner.queue);
                // Relaxed: under the mutex (module docs).
                if node.granted.load(Ordering::Relaxed) {
                    drop(q);
                    self.state = AcquireState::Done;
                    return Poll::Ready(Ok(b.acquired(start)));
                }
                if b.now() >= self.deadline {
                    let out = match b.cancel_locked(&mut q, &key, &node) {
                        Cancel::Granted => {
                            drop(q);
                            b.acquired(start)
                        }
                        Cancel::Removed(seen) => {
                            drop(q);
                            b.rejected(RejectReason::Timeout, seen, start)
                        }
                    };
                    self.state = AcquireState::Done;
                    return Poll::Ready(Ok(out));
                }
                if let Some(w) = q.waiting.get_mut(&key) {
                    match &w.waker {
                        Some(old) if old.will_wake(cx.waker()) => {}
                        _ => w.waker = Some(cx.waker().clone()),
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl Future for Acquire {
    type Output = Decision;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Decision> {
        let this = self.get_mut();
        match this.poll_inner(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(d)) => Poll::Ready(d),
            Poll::Ready(Err(Retired)) => Poll::Ready(this.bulkhead.retired_decision()),
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if let AcquireState::Queued { key, node, .. } =
            std::mem::replace(&mut self.state, AcquireState::Done)
        {
            let b = &self.bulkhead;
            let granted = {
                let mut q = lock(&b.inner.queue);
                matches!(b.cancel_locked(&mut q, &key, &node), Cancel::Granted)
            };
            if granted {
                // The permit was handed to us after all: pass it on (mutex released first).
                b.release();
            }
        }
    }
}
