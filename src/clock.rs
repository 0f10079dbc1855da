//! Clocks: where everything time-based in weir reads the time.
//!
//! A [`Clock`] reports a monotonic (never decreasing) [`Duration`] since its own epoch. Rolling
//! windows, and the rate limits and breakers built later, take a clock rather than calling
//! [`Instant::now`] themselves, so that tests and simulations can drive time by hand with a
//! [`ManualClock`] and get exact, repeatable results. Production code uses [`SystemClock`].
//!
//! Times from different clocks have different epochs and must not be compared; times from clones
//! of one clock share its epoch.
//!
//! # Orderings
//! - [`ManualClock`] keeps its time as nanoseconds in one shared `AtomicU64`. `advance` and `set`
//!   write it with `Release` (a compare-exchange loop, so concurrent advances add up exactly and
//!   `set` can refuse to go backwards atomically), and `now` loads it with `Acquire`. The pair
//!   makes a clock reading an event in happens-before: a thread that reads time `t` also sees
//!   everything the thread that moved the clock to `t` did before moving it (for example, values
//!   a simulation recorded before advancing the clock). `Relaxed` would keep the time itself
//!   exact but lose that edge.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::{AtomicU64, Ordering};

/// A source of monotonic time: the time elapsed since the clock's epoch.
///
/// Implementations must never go backwards: each call to [`now`](Clock::now) returns at least
/// what any earlier call returned (earlier in happens-before, on any thread). Users in weir also
/// guard against a clock that breaks this by never letting their own view of time decrease.
///
/// ```
/// use std::time::Duration;
/// use weir::{Clock, ManualClock, SharedClock};
///
/// fn elapsed_since(clock: &dyn Clock, start: Duration) -> Duration {
///     clock.now().saturating_sub(start)
/// }
///
/// let manual = ManualClock::new();
/// let shared: SharedClock = std::sync::Arc::new(manual.clone());
/// let start = shared.now();
/// manual.advance(Duration::from_millis(250));
/// assert_eq!(elapsed_since(&shared, start), Duration::from_millis(250));
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The time elapsed since this clock's epoch. Never less than an earlier reading.
    fn now(&self) -> Duration;
}

/// A type-erased, shareable clock, for structures that should not be generic over their clock.
pub type SharedClock = Arc<dyn Clock>;

impl<C: Clock + ?Sized> Clock for Arc<C> {
    #[inline]
    fn now(&self) -> Duration {
        (**self).now()
    }
}

// === impl SystemClock ===

/// The real, monotonic clock: time since the [`Instant`] at which it was made.
///
/// Clones share the epoch. Two `SystemClock`s made at different moments have different epochs,
/// so their readings must not be compared with each other.
///
/// ```
/// use weir::{Clock, SystemClock};
/// let clock = SystemClock::new();
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b >= a);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    epoch: Instant,
}

impl SystemClock {
    /// A clock whose epoch is now.
    pub fn new() -> SystemClock {
        SystemClock {
            epoch: Instant::now(),
        }
    }

    /// The time elapsed since this clock was made (saturating at zero if the platform's
    /// monotonic clock misbehaves, as [`Instant::elapsed`] does).
    #[inline]
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The instant this clock's readings count from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Duration {
        SystemClock::now(self)
    }
}

// === impl ManualClock ===

/// A clock that only moves when told to: for tests and simulations.
///
/// It starts at zero. Clones share the same time, so a test keeps one clone and hands others to
/// the code under test. It is thread safe; concurrent [`advance`](ManualClock::advance) calls add
/// up exactly. Time is kept in whole nanoseconds and saturates at `u64::MAX` nanoseconds (about
/// 584 years). The clock never goes backwards: [`set`](ManualClock::set) refuses an earlier time.
///
/// ```
/// use std::time::Duration;
/// use weir::ManualClock;
///
/// let clock = ManualClock::new();
/// let handed_out = clock.clone();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(handed_out.now(), Duration::from_secs(2));
/// clock.set(Duration::from_secs(5))?;
/// assert!(clock.set(Duration::from_secs(1)).is_err()); // never backwards
/// assert_eq!(clock.now(), Duration::from_secs(5));
/// # Ok::<(), weir::SetTimeError>(())
/// ```
#[derive(Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

fn duration_to_nanos(d: Duration) -> Option<u64> {
    u64::try_from(d.as_nanos()).ok()
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> ManualClock {
        ManualClock {
            nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The current time.
    #[inline]
    pub fn now(&self) -> Duration {
        // Acquire: pairs with the Release in `advance`/`set` (module docs).
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }

    /// Moves the clock forward by `by` (saturating at `u64::MAX` nanoseconds) and returns the new
    /// time.
    pub fn advance(&self, by: Duration) -> Duration {
        let by = duration_to_nanos(by).unwrap_or(u64::MAX);
        // Release on success: publishes what this thread did before moving the clock (module
        // docs). Relaxed on failure: the retry reloads, and nothing is published by failing.
        let prev = self
            .nanos
            .fetch_update(Ordering::Release, Ordering::Relaxed, |t| {
                Some(t.saturating_add(by))
            });
        // The closure never returns None, so both arms hold the previous time.
        let prev = match prev {
            Ok(t) | Err(t) => t,
        };
        Duration::from_nanos(prev.saturating_add(by))
    }

    /// Sets the clock to `to`, which must not be earlier than the current time (setting the
    /// current time again is allowed and does nothing).
    ///
    /// Use [`advance`](ManualClock::advance) to move by an amount instead.
    ///
    /// # Errors
    ///
    /// [`SetTimeError::Backwards`] if `to` is earlier than the current time, and
    /// [`SetTimeError::OutOfRange`] if it does not fit in `u64` nanoseconds. On error the clock
    /// is unchanged.
    pub fn set(&self, to: Duration) -> Result<(), SetTimeError> {
        let target = duration_to_nanos(to).ok_or(SetTimeError::OutOfRange { requested: to })?;
        // Release on success, as in `advance`; Relaxed on failure (nothing is published).
        self.nanos
            .fetch_update(Ordering::Release, Ordering::Relaxed, |t| {
                (target >= t).then_some(target)
            })
            .map(|_| ())
            .map_err(|now| SetTimeError::Backwards {
                requested: to,
                now: Duration::from_nanos(now),
            })
    }
}

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Duration {
        ManualClock::now(self)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}

/// [`ManualClock::set`] refused the requested time; the clock is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetTimeError {
    /// The requested time is earlier than the clock's current time, and clocks never go
    /// backwards. Make a new `ManualClock` to start over, or only move forward.
    Backwards {
        /// The rejected time.
        requested: Duration,
        /// The clock's time when the request was refused.
        now: Duration,
    },
    /// The requested time does not fit in `u64` nanoseconds (about 584 years). Use a smaller
    /// time.
    OutOfRange {
        /// The rejected time.
        requested: Duration,
    },
}

impl fmt::Display for SetTimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SetTimeError::Backwards { requested, now } => write!(
                f,
                "cannot set the clock back to {requested:?}: it already reads {now:?}"
            ),
            SetTimeError::OutOfRange { requested } => write!(
                f,
                "cannot set the clock to {requested:?}: more than u64::MAX nanoseconds"
            ),
        }
    }
}

impl std::error::Error for SetTimeError {}

// === impl CachedClock ===

/// A clock read with one relaxed load: a background thread stores the monotonic time into one
/// atomic word every `resolution`, and [`now`](Clock::now) reads that word.
///
/// For decisions that need the time on every call but only to a millisecond or so (rate limits,
/// budgets' windows, breaker windows), it takes the clock read off the hot path: about a
/// nanosecond instead of a `clock_gettime` (tens of nanoseconds on a virtual machine). Readings
/// lag real time by up to `resolution` plus scheduling delay, and never go backwards. Clones
/// share the word; the thread stops and is joined when the last clone is dropped.
///
/// ```
/// use std::time::Duration;
/// use weir::{CachedClock, Clock};
/// let clock = CachedClock::new(Duration::from_millis(1))?;
/// let a = clock.now();
/// std::thread::sleep(Duration::from_millis(20));
/// assert!(clock.now() > a);
/// # Ok::<(), weir::CachedClockError>(())
/// ```
#[cfg(not(weir_loom))]
#[derive(Clone)]
pub struct CachedClock {
    shared: Arc<CachedShared>,
    _ticker: Arc<Ticker>,
}

#[cfg(not(weir_loom))]
struct CachedShared {
    nanos: std::sync::atomic::AtomicU64,
    stop: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
}

/// Owns the ticker thread: dropping the last `CachedClock` drops this, which stops and joins it.
#[cfg(not(weir_loom))]
struct Ticker {
    shared: Arc<CachedShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(not(weir_loom))]
impl Drop for Ticker {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            // The ticker only loops and stores; a panic there leaves nothing to clean up.
            let _ = t.join();
        }
    }
}

#[cfg(not(weir_loom))]
impl CachedClock {
    /// Starts the ticker thread, refreshing the time every `resolution` (at least 1 µs would be
    /// wasteful; a millisecond suits most decisions).
    pub fn new(resolution: Duration) -> Result<CachedClock, CachedClockError> {
        use std::sync::atomic::Ordering as StdOrdering;
        if resolution.is_zero() {
            return Err(CachedClockError::ZeroResolution);
        }
        let epoch = Instant::now();
        let shared = Arc::new(CachedShared {
            nanos: std::sync::atomic::AtomicU64::new(0),
            stop: std::sync::Mutex::new(false),
            wake: std::sync::Condvar::new(),
        });
        let ticking = shared.clone();
        let thread = std::thread::Builder::new()
            .name("weir-clock".into())
            .spawn(move || {
                let mut stopped = ticking.stop.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    // Relaxed: the word is the only data; fetch_max keeps it monotonic.
                    ticking.nanos.fetch_max(now, StdOrdering::Relaxed);
                    let (guard, _) = ticking
                        .wake
                        .wait_timeout(stopped, resolution)
                        .unwrap_or_else(|p| p.into_inner());
                    stopped = guard;
                    if *stopped {
                        return;
                    }
                }
            })
            .map_err(|_| CachedClockError::SpawnFailed)?;
        // Publish a first reading before returning, so `now` is never behind creation.
        let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        shared.nanos.fetch_max(now, StdOrdering::Relaxed);
        Ok(CachedClock {
            _ticker: Arc::new(Ticker {
                shared: shared.clone(),
                thread: Some(thread),
            }),
            shared,
        })
    }
}

#[cfg(not(weir_loom))]
impl Clock for CachedClock {
    #[inline]
    fn now(&self) -> Duration {
        // Relaxed: a self-contained number, monotonic by the ticker's fetch_max.
        Duration::from_nanos(self.shared.nanos.load(std::sync::atomic::Ordering::Relaxed))
    }
}

#[cfg(not(weir_loom))]
impl fmt::Debug for CachedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedClock")
            .field("now", &self.now())
            .finish_non_exhaustive()
    }
}

/// [`CachedClock::new`] could not start its clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CachedClockError {
    /// The refresh interval must be longer than zero; a millisecond suits most decisions.
    ZeroResolution,
    /// The operating system refused to start the ticker thread; retry, or use `SystemClock`.
    SpawnFailed,
}

impl fmt::Display for CachedClockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CachedClockError::ZeroResolution => {
                f.write_str("clock resolution must be longer than zero")
            }
            CachedClockError::SpawnFailed => {
                f.write_str("could not start the clock's ticker thread")
            }
        }
    }
}

impl std::error::Error for CachedClockError {}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward() {
        let c = ManualClock::new();
        assert_eq!(c.now(), Duration::ZERO);
        assert_eq!(c.advance(Duration::from_nanos(7)), Duration::from_nanos(7));
        assert_eq!(c.set(Duration::from_nanos(7)), Ok(()));
        assert_eq!(
            c.set(Duration::from_nanos(6)),
            Err(SetTimeError::Backwards {
                requested: Duration::from_nanos(6),
                now: Duration::from_nanos(7),
            })
        );
        assert_eq!(c.now(), Duration::from_nanos(7));
        assert!(c.set(Duration::from_secs(10)).is_ok());
        assert_eq!(c.now(), Duration::from_secs(10));
    }

    #[test]
    fn manual_clock_saturates_and_rejects_out_of_range() {
        let c = ManualClock::new();
        assert_eq!(
            c.set(Duration::MAX),
            Err(SetTimeError::OutOfRange {
                requested: Duration::MAX
            })
        );
        assert_eq!(c.advance(Duration::MAX), Duration::from_nanos(u64::MAX));
        assert_eq!(
            c.advance(Duration::from_secs(1)),
            Duration::from_nanos(u64::MAX)
        );
        assert!(
            !SetTimeError::OutOfRange {
                requested: Duration::MAX
            }
            .to_string()
            .is_empty()
        );
    }

    #[test]
    fn clones_share_time_and_concurrent_advances_add_up() {
        let c = ManualClock::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                let c = c.clone();
                s.spawn(move || {
                    for _ in 0..1000 {
                        c.advance(Duration::from_nanos(1));
                    }
                });
            }
        });
        assert_eq!(c.now(), Duration::from_nanos(4000));
    }

    #[test]
    fn arc_and_shared_clocks_delegate() {
        let m = ManualClock::new();
        let arc = Arc::new(m.clone());
        let shared: SharedClock = Arc::new(m.clone());
        m.advance(Duration::from_secs(3));
        assert_eq!(Clock::now(&arc), Duration::from_secs(3));
        assert_eq!(Clock::now(&shared), Duration::from_secs(3));
        let nested: SharedClock = Arc::new(shared.clone());
        assert_eq!(nested.now(), Duration::from_secs(3));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock::default();
        let copy = c;
        let mut last = Duration::ZERO;
        for _ in 0..1000 {
            let t = Clock::now(&copy);
            assert!(t >= last);
            last = t;
        }
        assert_eq!(c.epoch(), copy.epoch());
    }

    #[test]
    fn cached_clock_moves_forward_and_stops_on_drop() {
        assert_eq!(
            CachedClock::new(Duration::ZERO).err(),
            Some(CachedClockError::ZeroResolution)
        );
        let clock = CachedClock::new(Duration::from_millis(1)).unwrap();
        let copy = clock.clone();
        let a = clock.now();
        let deadline = Instant::now() + Duration::from_secs(10);
        while copy.now() <= a {
            assert!(Instant::now() < deadline, "the cached clock never moved");
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut last = clock.now();
        for _ in 0..100 {
            let t = copy.now();
            assert!(t >= last);
            last = t;
        }
        drop(clock);
        drop(copy); // the last handle: stops and joins the ticker (the test would hang if not)
    }
}
