//! Published snapshots, the refresher, and rolling windows over snapshot history.
//!
//! The refresher (explicit [`Registry::refresh_now`] or a background thread from
//! [`Registry::spawn_refresher`]) builds a [`RegistrySnapshot`] and publishes it, with a ring of
//! earlier snapshots, as one immutable [`Published`] value through `arc-swap`. Readers load it
//! without a lock and without allocating; an old `Published` (and the snapshots only it holds)
//! is freed when its last reader drops it. A thread that loads very often can keep a
//! [`PublishedReader`] ([`Registry::reader`]): an `arc-swap` `Cache` that, while nothing new
//! was published, answers with one relaxed pointer comparison instead of a full load. Windows
//! are differences between the newest snapshot and the one taken a window ago (design idea 4):
//! writers pay nothing for them.
//!
//! # Orderings
//! `arc-swap`'s store and load give release/acquire publication: a reader that loads a
//! `Published` sees it fully built. Refreshes are serialized by a mutex (held by refreshers
//! only, never by readers or writers), so the ring is updated by one refresher at a time.
//! [`PublishedReader::load`] compares its cached pointer with the current one with a `Relaxed`
//! load: equal pointers mean the cached `Arc` (acquired when it was cached) is still the newest,
//! and no data is read through the relaxed load; on a difference it does a full load (acquire)
//! and caches that. The cache holds a strong reference, so the cached value cannot be freed and
//! its address reused while it is compared against (no ABA). The stop flag of a background
//! refresher lives under a `std::sync::Mutex` with a `Condvar`.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex as StdMutex};
use std::thread;
use std::time::Duration;

use arc_swap::{ArcSwap, Cache, Guard};

use super::snapshot::{RegistrySnapshot, Value};
use super::{Registry, RegistryInner};
use crate::error::RegistryError;
use crate::histogram::HistogramSnapshot;
use crate::sync::{Mutex, lock};

pub(crate) struct State {
    history: Duration,
    current: ArcSwap<Published>,
    refresh: Mutex<()>,
}

impl State {
    pub(crate) fn new(history: Duration, now: Duration) -> State {
        let empty = Arc::new(RegistrySnapshot {
            seq: 0,
            time: now,
            families: Vec::new(),
        });
        State {
            history,
            current: ArcSwap::from_pointee(Published {
                latest: empty.clone(),
                ring: vec![empty],
            }),
            refresh: Mutex::new(()),
        }
    }
}

/// The published view of a registry: its newest snapshot and the history windows are computed
/// from. Loaded with [`Registry::published`]; derefs to the newest [`RegistrySnapshot`].
///
/// Values here are as of the last refresh: estimates built on them (rates, quantiles) may be one
/// refresh interval old.
pub struct Published {
    latest: Arc<RegistrySnapshot>,
    /// Oldest first; the last entry is `latest`.
    ring: Vec<Arc<RegistrySnapshot>>,
}

impl fmt::Debug for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Published")
            .field("sequence", &self.latest.seq)
            .field("time", &self.latest.time)
            .field("history", &self.ring.len())
            .finish()
    }
}

impl std::ops::Deref for Published {
    type Target = RegistrySnapshot;
    fn deref(&self) -> &RegistrySnapshot {
        &self.latest
    }
}

impl Published {
    /// The newest snapshot.
    pub fn snapshot(&self) -> &Arc<RegistrySnapshot> {
        &self.latest
    }

    /// The snapshots kept for windows, oldest first (the last is the newest snapshot).
    pub fn history(&self) -> &[Arc<RegistrySnapshot>] {
        &self.ring
    }

    /// A view of the last `window`: from the newest snapshot taken at least `window` before the
    /// newest one, to the newest. If history is shorter than `window`, the view starts at the
    /// oldest snapshot kept (see [`Window::is_complete`]); before any refresh that is the empty
    /// snapshot taken when the registry was made, so the view covers everything.
    pub fn window(&self, window: Duration) -> Window<'_> {
        let cutoff = self.latest.time.checked_sub(window);
        let base = match cutoff {
            Some(cutoff) => self
                .ring
                .iter()
                .rev()
                .find(|s| s.time <= cutoff)
                .unwrap_or(&self.ring[0]),
            None => &self.ring[0],
        };
        Window {
            requested: window,
            base,
            latest: &self.latest,
        }
    }
}

/// The difference between two published snapshots: what happened in a window.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    requested: Duration,
    base: &'a RegistrySnapshot,
    latest: &'a RegistrySnapshot,
}

impl Window<'_> {
    /// The time the window really covers (a multiple of the refresh interval, give or take
    /// scheduling).
    pub fn span(&self) -> Duration {
        self.latest.time.saturating_sub(self.base.time)
    }

    /// Whether the window covers at least the requested duration (false while history is
    /// shorter).
    pub fn is_complete(&self) -> bool {
        self.span() >= self.requested
    }

    /// The snapshot the window starts at.
    pub fn start(&self) -> &RegistrySnapshot {
        self.base
    }

    /// The snapshot the window ends at.
    pub fn end(&self) -> &RegistrySnapshot {
        self.latest
    }

    /// How much a counter grew in the window. `None` if the series does not exist (or is not a
    /// counter). A series registered during the window counts from zero.
    pub fn counter_delta(&self, name: &str, label_values: &[&str]) -> Option<u64> {
        let now = self.latest.counter(name, label_values)?;
        let then = self.base.counter(name, label_values).unwrap_or(0);
        Some(now.wrapping_sub(then))
    }

    /// A counter's rate per second over the window's span. `None` if the series does not exist
    /// or the span is zero.
    pub fn counter_rate(&self, name: &str, label_values: &[&str]) -> Option<f64> {
        let span = self.span().as_secs_f64();
        if span <= 0.0 {
            return None;
        }
        Some(self.counter_delta(name, label_values)? as f64 / span)
    }

    /// The histogram of the values recorded in the window (quantiles, count, sum over the
    /// window). `None` if the series does not exist or is not a histogram.
    pub fn histogram(&self, name: &str, label_values: &[&str]) -> Option<HistogramSnapshot> {
        let now = self.latest.histogram(name, label_values)?;
        match self.base.value(name, label_values) {
            Some(Value::Histogram(then)) => now.delta_since(then).ok(),
            _ => Some(now.clone()),
        }
    }
}

/// A per-thread, cached view of a registry's published snapshot, made by
/// [`Registry::reader`] (which documents it with an example).
///
/// [`load`](Self::load) returns the cached `Arc<Published>` after one relaxed pointer comparison
/// with the registry's current one, and does a full `arc-swap` load only when a newer view has
/// been published since. It needs `&mut self`, so keep one per thread; it is `Send`, so it can
/// be moved to that thread. A reader keeps the view it cached (and the history ring that view
/// holds) alive until a `load` sees a newer one, or until it is dropped, and it shares the
/// registry's state as a `Registry` clone does.
#[derive(Clone)]
pub struct PublishedReader {
    cache: Cache<Source, Arc<Published>>,
}

/// The registry's published slot, owned through the registry's shared state so that a reader
/// does not borrow the `Registry` it came from.
#[derive(Clone)]
struct Source(Arc<RegistryInner>);

impl Deref for Source {
    type Target = ArcSwap<Published>;
    fn deref(&self) -> &ArcSwap<Published> {
        &self.0.publish.current
    }
}

impl PublishedReader {
    /// The newest published view: the cached one if nothing was published since the last call
    /// (a relaxed pointer comparison, no shared write), else a fresh `arc-swap` load, which is
    /// then cached. The reference is valid until the next call.
    #[inline]
    #[must_use]
    pub fn load(&mut self) -> &Arc<Published> {
        self.cache.load()
    }
}

impl fmt::Debug for PublishedReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The registry's current view: the cached one can only be read through `&mut self`.
        let current = self.cache.arc_swap().load();
        f.debug_struct("PublishedReader")
            .field("current", &**current)
            .finish_non_exhaustive()
    }
}

/// Stops and joins a background refresher when dropped (or with [`stop`](Self::stop)).
#[derive(Debug)]
pub struct RefresherHandle {
    stop: Arc<(StdMutex<bool>, Condvar)>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RefresherHandle {
    /// Stops the refresher and waits for its thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let (flag, cv) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            // A refresher thread only panics if a snapshot panicked; there is nothing left to
            // clean up then.
            let _ = t.join();
        }
    }
}

impl Drop for RefresherHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Registry {
    /// The published view: a lock-free, allocation-free load (an `arc-swap` load). Hold the
    /// guard briefly; it pins the view it loaded.
    ///
    /// ```
    /// let registry = weir::Registry::new();
    /// registry.counter("jobs_total", "Jobs run", &[])?.add(3);
    /// assert_eq!(registry.published().counter("jobs_total", &[]), None); // not refreshed yet
    /// registry.refresh_now();
    /// assert_eq!(registry.published().counter("jobs_total", &[]), Some(3));
    /// # Ok::<(), weir::RegistryError>(())
    /// ```
    pub fn published(&self) -> Guard<Arc<Published>> {
        self.inner.publish.current.load()
    }

    /// A cached reader of the published view, for a thread that loads it very often.
    ///
    /// The reader's `load(&mut self) -> &Arc<Published>` returns the view it cached after one
    /// relaxed pointer comparison with the registry's current one (no shared write, unlike
    /// [`published`](Self::published), whose `arc-swap` load writes and clears a per-thread
    /// debt slot), and does a full load only when a newer view has been published since. It
    /// needs `&mut self`, so each thread should own its reader; a reader is `Send` and can be
    /// moved to the thread that uses it.
    ///
    /// A reader keeps the view it cached alive (with the history ring that view holds) until a
    /// `load` sees a newer one, or until it is dropped: a reader that stops loading pins that
    /// memory. Like a `Registry` clone, a reader keeps the registry's shared state alive; it
    /// does not borrow the `Registry` it came from. Values are as of the last refresh, as for
    /// [`published`](Self::published).
    ///
    /// ```
    /// let registry = weir::Registry::new();
    /// let jobs = registry.counter("jobs_total", "Jobs run", &[])?;
    /// let mut reader = registry.reader();
    /// jobs.add(2);
    /// registry.refresh_now();
    /// assert_eq!(reader.load().counter("jobs_total", &[]), Some(2));
    /// jobs.inc();
    /// assert_eq!(reader.load().counter("jobs_total", &[]), Some(2)); // not refreshed yet
    /// registry.refresh_now();
    /// assert_eq!(reader.load().counter("jobs_total", &[]), Some(3));
    /// # Ok::<(), weir::RegistryError>(())
    /// ```
    #[must_use]
    pub fn reader(&self) -> PublishedReader {
        PublishedReader {
            cache: Cache::new(Source(self.inner.clone())),
        }
    }

    /// The published view as an owned `Arc` (one reference-count increment).
    pub fn published_full(&self) -> Arc<Published> {
        self.inner.publish.current.load_full()
    }

    /// Takes a snapshot now, adds it to the history ring (dropping snapshots older than the
    /// history needs) and publishes the result. Returns what it published.
    pub fn refresh_now(&self) -> Arc<Published> {
        let state = &self.inner.publish;
        let _one_at_a_time = lock(&state.refresh);
        let snap = Arc::new(self.snapshot());
        let old = state.current.load_full();
        let cutoff = snap.time.checked_sub(state.history);
        // Keep every snapshot inside the history, plus the newest one older than it, so that a
        // window as long as the history still has a start.
        let keep_from = match cutoff {
            Some(cutoff) => old.ring.iter().rposition(|s| s.time <= cutoff).unwrap_or(0),
            None => 0,
        };
        let mut ring: Vec<Arc<RegistrySnapshot>> = old.ring[keep_from..].to_vec();
        ring.push(snap.clone());
        let published = Arc::new(Published { latest: snap, ring });
        state.current.store(published.clone());
        published
    }

    /// Starts a thread that calls [`refresh_now`](Self::refresh_now) every `interval` until the
    /// returned handle is dropped (which stops and joins it).
    pub fn spawn_refresher(&self, interval: Duration) -> Result<RefresherHandle, RegistryError> {
        if interval.is_zero() {
            return Err(RegistryError::ZeroInterval);
        }
        let stop = Arc::new((StdMutex::new(false), Condvar::new()));
        let registry = self.clone();
        let thread_stop = stop.clone();
        let thread = thread::Builder::new()
            .name("weir-refresher".into())
            .spawn(move || {
                let (flag, cv) = &*thread_stop;
                let mut stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    let (guard, _) = cv
                        .wait_timeout(stopped, interval)
                        .unwrap_or_else(|p| p.into_inner());
                    stopped = guard;
                    if *stopped {
                        return;
                    }
                    drop(stopped);
                    registry.refresh_now();
                    stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
                }
            })
            .map_err(|_| RegistryError::SpawnFailed)?;
        Ok(RefresherHandle {
            stop,
            thread: Some(thread),
        })
    }
}

#[cfg(all(test, not(weir_loom)))]
mod reader_tests {
    use super::*;

    #[test]
    fn reader_follows_refreshes_and_pins_only_its_view() {
        let registry = Registry::new();
        let jobs = registry.counter("jobs_total", "Jobs", &[]).unwrap();
        let mut reader = registry.reader();
        assert_eq!(reader.load().counter("jobs_total", &[]), None);
        jobs.add(5);
        let first = registry.refresh_now();
        assert!(Arc::ptr_eq(reader.load(), &first));
        assert_eq!(reader.load().counter("jobs_total", &[]), Some(5));
        jobs.inc();
        let second = registry.refresh_now();
        // The reader still holds `first` until it loads again.
        assert_eq!(Arc::strong_count(&first), 2); // `first` and the reader's cache
        assert!(Arc::ptr_eq(reader.load(), &second));
        assert_eq!(Arc::strong_count(&first), 1);
        assert_eq!(reader.load().counter("jobs_total", &[]), Some(6));
    }

    #[test]
    fn reader_is_send_and_sees_refreshes_from_another_thread() {
        fn assert_send<T: Send>(_: &T) {}
        let registry = Registry::new();
        let jobs = registry.counter("jobs_total", "Jobs", &[]).unwrap();
        let reader = registry.reader();
        assert_send(&reader);
        let seen = thread::scope(|s| {
            let t = s.spawn(move || {
                let mut reader = reader;
                loop {
                    if let Some(n) = reader.load().counter("jobs_total", &[]) {
                        return n;
                    }
                    thread::yield_now();
                }
            });
            jobs.add(7);
            registry.refresh_now();
            t.join().unwrap()
        });
        assert_eq!(seen, 7);
    }
}
