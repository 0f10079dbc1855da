//! Published snapshots, the refresher, and rolling windows over snapshot history.
//!
//! The refresher (explicit [`Registry::refresh_now`] or a background thread from
//! [`Registry::spawn_refresher`]) builds a [`RegistrySnapshot`] and publishes it, with a ring of
//! earlier snapshots, as one immutable [`Published`] value through `arc-swap`. Readers load it
//! without a lock and without allocating; an old `Published` (and the snapshots only it holds)
//! is freed when its last reader drops it. Windows are differences between the newest snapshot
//! and the one taken a window ago (design idea 4): writers pay nothing for them.
//!
//! # Orderings
//! `arc-swap`'s store and load give release/acquire publication: a reader that loads a
//! `Published` sees it fully built. Refreshes are serialized by a mutex (held by refreshers
//! only, never by readers or writers), so the ring is updated by one refresher at a time. The
//! stop flag of a background refresher lives under a `std::sync::Mutex` with a `Condvar`.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex as StdMutex};
use std::thread;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};

use super::Registry;
use super::snapshot::{RegistrySnapshot, Value};
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
