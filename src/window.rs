//! Rolling windows ("the last 10 seconds") over a plain [`Counter`] or [`Histogram`], for code
//! that keeps no registry.
//!
//! Writers pay nothing for a window: [`RollingCounter::add`] *is* [`Counter::add`] and
//! [`RollingHistogram::record`] *is* [`Histogram::record`], and code that only writes can hold a
//! clone of the inner metric ([`RollingCounter::counter`], [`RollingHistogram::histogram`]).
//! Everything else happens when the window is read: a window is the difference of two cumulative
//! readings of the metric (the metric's total now, minus its total at the start of the window),
//! and the window keeps a small ring of past readings for that. The ring sits behind a [`Mutex`]
//! that only readers take; writers never touch it, and a reader never blocks a writer.
//!
//! There is no timer: readings are taken lazily, by reads. What a read reports is defined, in
//! terms of reads, in [`RollingCounter`]'s docs ("What a read reports"); it holds for
//! [`RollingHistogram`] too.
//!
//! ```
//! use std::time::Duration;
//! use weir::{ManualClock, RollingCounter};
//!
//! let clock = ManualClock::new();
//! let errors = RollingCounter::new(Duration::from_secs(10), Duration::from_secs(1), clock.clone())?;
//! errors.add(3);
//! clock.advance(Duration::from_secs(1));
//! assert_eq!(errors.sum(), 3);
//! errors.add(2);
//! clock.advance(Duration::from_secs(8));
//! assert_eq!(errors.sum(), 5);
//! clock.advance(Duration::from_secs(1)); // t = 10 s: the slot [0 s, 1 s) left the window
//! assert_eq!(errors.sum(), 2);
//! assert_eq!(errors.total(), 5);
//! # Ok::<(), weir::WindowError>(())
//! ```
//!
//! # Orderings
//! This module has no atomics of its own. The ring is behind a mutex; the metrics' cumulative
//! readings are monotonic because every reading is taken under that mutex, so each reading
//! happens-before the next, and a later reading of a cell sees at least what an earlier one saw.
//! That is what makes [`HistogramSnapshot::delta_since`] between two readings always succeed.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::counter::Counter;
use crate::histogram::{Histogram, HistogramSnapshot};
use crate::sync::{Mutex, lock};

/// The most slots (`window / resolution`) a rolling window may have.
pub const MAX_WINDOW_SLOTS: usize = 10_000;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn secs(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

// === Ring ===

/// One reading: the first one taken in its slot.
struct Reading<T> {
    slot: u64,
    at: u64,
    value: T,
}

/// The time of a read, after the ring caught up with it.
#[derive(Clone, Copy)]
struct Tick {
    now: u64,
    slot: u64,
}

/// The readings in the window, oldest first, at most one per slot (so at most `slots`).
struct Ring<T> {
    slots: u64,
    resolution: u128,
    readings: VecDeque<Reading<T>>,
    /// The latest time seen: the ring's clock never goes backwards.
    last_now: u64,
}

impl<T> Ring<T> {
    /// A ring holding the creation reading.
    fn new(spec: Spec, now: Duration, value: T) -> Ring<T> {
        let mut ring = Ring {
            slots: spec.slots,
            resolution: spec.resolution.as_nanos(),
            readings: VecDeque::new(),
            last_now: 0,
        };
        let tick = ring.tick(now);
        ring.keep(tick, value);
        ring
    }

    /// Moves the ring to `now`: drops every reading whose slot left the window. At most one pop
    /// per reading held, so `O(slots)` however far time jumped.
    fn tick(&mut self, now: Duration) -> Tick {
        let now = nanos(now).max(self.last_now);
        self.last_now = now;
        // The quotient is at most `now`, so it fits in u64.
        let slot = (u128::from(now) / self.resolution) as u64;
        let first = slot.saturating_sub(self.slots - 1);
        while self.readings.front().is_some_and(|r| r.slot < first) {
            self.readings.pop_front();
        }
        Tick { now, slot }
    }

    /// The first reading at or after the window's start, if any is still held.
    fn baseline(&self) -> Option<&Reading<T>> {
        self.readings.front()
    }

    /// Keeps `value` if it is the first reading in its slot.
    fn keep(&mut self, tick: Tick, value: T) {
        // Ticks never go backwards, so the newest reading's slot is at most `tick.slot`.
        if self.readings.back().is_none_or(|r| r.slot < tick.slot) {
            self.readings.push_back(Reading {
                slot: tick.slot,
                at: tick.now,
                value,
            });
        }
    }
}

/// Validated window parameters.
#[derive(Clone, Copy, Debug)]
struct Spec {
    window: Duration,
    resolution: Duration,
    slots: u64,
}

impl Spec {
    fn new(window: Duration, resolution: Duration) -> Result<Spec, WindowError> {
        if resolution.is_zero() {
            return Err(WindowError::ZeroResolution);
        }
        if window.is_zero() {
            return Err(WindowError::ZeroWindow);
        }
        let (w, r) = (window.as_nanos(), resolution.as_nanos());
        if w % r != 0 {
            return Err(WindowError::NotAMultiple { window, resolution });
        }
        let slots = w / r;
        if slots > MAX_WINDOW_SLOTS as u128 {
            return Err(WindowError::TooManySlots {
                slots: u64::try_from(slots).unwrap_or(u64::MAX),
            });
        }
        Ok(Spec {
            window,
            resolution,
            slots: slots as u64,
        })
    }
}

// === impl RollingCounter ===

/// A [`Counter`] plus a rolling window over it: "how many in the last `window`".
///
/// [`add`](RollingCounter::add) and [`inc`](RollingCounter::inc) are exactly
/// [`Counter::add`]; the window costs writers nothing. Reads ([`sum`](RollingCounter::sum),
/// [`rate_per_sec`](RollingCounter::rate_per_sec), [`total`](RollingCounter::total),
/// [`read`](RollingCounter::read)) take a reading of the counter and report the window as
/// defined below ("What a read reports"): exact when read at every `resolution` boundary, and
/// never including a value recorded before the window's start. The ring of readings is behind a
/// mutex that only readers take.
///
/// Share it with `Arc`, or hand writers a clone of [`counter`](RollingCounter::counter).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use weir::{RollingCounter, SystemClock};
///
/// let requests = Arc::new(RollingCounter::new(
///     Duration::from_secs(60),
///     Duration::from_secs(1),
///     SystemClock::new(),
/// )?);
/// let writer = requests.counter().clone(); // a plain Counter: nothing extra on the hot path
/// std::thread::spawn(move || writer.add(10)).join().unwrap();
/// requests.inc();
/// assert_eq!(requests.sum(), 11); // everything so far is within the last minute
/// # Ok::<(), weir::WindowError>(())
/// ```
///
/// There is no timer. Readings are taken *lazily*, by reads, so a window knows the metric's
/// total only at the moments someone read it (or made the window). What it reports is therefore
/// defined in terms of reads, as follows.
///
/// # What a read reports
///
/// Time comes from the window's [`Clock`] and is cut into *slots* of length `resolution`,
/// aligned to the clock's epoch: slot `k` is `[k × resolution, (k + 1) × resolution)`. A window of
/// `n = window / resolution` slots, read at time `t` in slot `k`, spans the newest `n` slots: the
/// current, partial slot and the `n - 1` before it, from `start = (k - n + 1) × resolution` to
/// `t` (or from the window's creation, if that is later). That is the resolution-aligned part of
/// `(t - window, t]`: at most `window` long, and at least `window - resolution`.
///
/// Every read, and the window's creation, takes a *reading*: the clock's time and the metric's
/// cumulative total (a [`Counter::get`] or a [`Histogram::snapshot`]). The first reading taken in
/// each slot is kept, for as long as its slot is within the window. A read then reports
///
/// > *total now* − *total at the first reading taken at or after `start`*
///
/// which is exactly what was recorded between those two readings (after the first, up to the
/// second). The result carries the times of both readings ([`CounterWindow::start`],
/// [`CounterWindow::end`]), and rates are computed over that interval, so a rate is an exact
/// average over the interval it names. Consequences:
///
/// - **Exact when read at every boundary.** If some read happens at each slot boundary (as a test
///   with a [`ManualClock`](crate::ManualClock) can arrange), every result is exactly the values recorded in
///   `[start, t]`. A value recorded at the same clock instant as a boundary read, but before it,
///   belongs to the slot before the boundary.
/// - **Never stale.** A value recorded between two reads is known only to have happened between
///   them, and the window counts it as of the *earlier* read: it leaves the window when that read
///   does. So a window may leave out a value recorded inside it (between `start` and the first
///   read at or after `start`), and never reports one recorded before `start`. After a quiet hour, everything old has expired, however
///   few reads there were.
/// - **Read at least once per slot for full coverage.** With at least one read in every slot,
///   at most one slot's worth of time at the start of the window is left out. A read that comes
///   more than `window - resolution` after the previous one may find no earlier reading inside
///   the window: it then covers an empty interval (sum zero, rate zero) and becomes the baseline
///   for the next read. (With a single slot, `window == resolution`, the window is the current
///   slot only, and the first read in each slot always covers an empty interval.)
/// - **Bounded work.** A read drops the readings that left the window and keeps at most one new
///   one: `O(n)` at worst, never proportional to the time elapsed since the last read, so a clock
///   that jumps by hours costs no more than one that ticks.
/// - **Memory.** At most `n` readings are kept: 24 bytes each for a counter, and one cumulative
///   [`HistogramSnapshot`] each (its non-empty buckets) for a histogram.
///
/// Reads are serialized by the ring's mutex, and the clock is read under it; the window never
/// lets its own view of time go backwards, even if a custom clock does.
pub struct RollingCounter<C: Clock = SystemClock> {
    counter: Counter,
    clock: C,
    spec: Spec,
    ring: Mutex<Ring<u64>>,
}

impl<C: Clock> RollingCounter<C> {
    /// A window of length `window` over a new counter, moving in steps of `resolution`.
    ///
    /// `window` must be a whole, non-zero multiple of a non-zero `resolution`, and at most
    /// [`MAX_WINDOW_SLOTS`] times it. Ten to a hundred slots suit most uses: the window's length
    /// varies by one `resolution` as it moves.
    ///
    /// # Errors
    ///
    /// A [`WindowError`] names the parameter to fix.
    pub fn new(
        window: Duration,
        resolution: Duration,
        clock: C,
    ) -> Result<RollingCounter<C>, WindowError> {
        RollingCounter::with_counter(Counter::new(), window, resolution, clock)
    }

    /// A window over an existing counter. The window starts now: what the counter held before
    /// is not in any window (it is still in [`total`](RollingCounter::total)).
    ///
    /// # Errors
    ///
    /// As for [`new`](RollingCounter::new).
    pub fn with_counter(
        counter: Counter,
        window: Duration,
        resolution: Duration,
        clock: C,
    ) -> Result<RollingCounter<C>, WindowError> {
        let spec = Spec::new(window, resolution)?;
        let now = clock.now();
        let ring = Ring::new(spec, now, counter.get());
        Ok(RollingCounter {
            counter,
            clock,
            spec,
            ring: Mutex::new(ring),
        })
    }

    /// Adds `n`: exactly [`Counter::add`].
    #[inline]
    pub fn add(&self, n: u64) {
        self.counter.add(n);
    }

    /// Adds one: exactly [`Counter::inc`].
    #[inline]
    pub fn inc(&self) {
        self.counter.inc();
    }

    /// The counter underneath. Writers can keep a clone and add to it directly.
    pub fn counter(&self) -> &Counter {
        &self.counter
    }

    /// Takes a reading and reports the window: its sum, the counter's total, and the interval
    /// covered.
    pub fn read(&self) -> CounterWindow {
        let mut ring = lock(&self.ring);
        let tick = ring.tick(self.clock.now());
        let total = self.counter.get();
        ring.keep(tick, total);
        let (start, base) = match ring.baseline() {
            Some(b) => (b.at, b.value),
            // Unreachable: `keep` left at least the newest reading. An empty interval is the
            // honest answer if it ever were.
            None => (tick.now, total),
        };
        CounterWindow {
            sum: total.wrapping_sub(base),
            total,
            start: Duration::from_nanos(start),
            end: Duration::from_nanos(tick.now),
        }
    }

    /// What was added within the window (see [`read`](RollingCounter::read)).
    pub fn sum(&self) -> u64 {
        self.read().sum
    }

    /// The window's sum per second of the interval it covers; 0.0 when that interval is empty
    /// (see [`CounterWindow::rate_per_sec`]).
    pub fn rate_per_sec(&self) -> f64 {
        self.read().rate_per_sec()
    }

    /// The counter's cumulative total ([`Counter::get`]). Also takes a reading, like every read.
    pub fn total(&self) -> u64 {
        self.read().total
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        self.spec.window
    }

    /// The step the window moves by.
    pub fn resolution(&self) -> Duration {
        self.spec.resolution
    }

    /// How many slots the window spans (`window / resolution`).
    pub fn slots(&self) -> usize {
        self.spec.slots as usize
    }

    /// The clock the window reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }
}

impl<C: Clock> fmt::Debug for RollingCounter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RollingCounter")
            .field("window", &self.spec.window)
            .field("resolution", &self.spec.resolution)
            .field("counter", &self.counter)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// One read of a [`RollingCounter`].
///
/// `sum` is exactly what was added after the reading at `start` and up to the reading at `end`
/// (both are times of the window's clock); see [`RollingCounter`]'s docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CounterWindow {
    /// What was added within the window.
    pub sum: u64,
    /// The counter's cumulative total at `end`.
    pub total: u64,
    /// When the baseline reading was taken: the first reading at or after the window's start.
    pub start: Duration,
    /// When this reading was taken.
    pub end: Duration,
}

impl CounterWindow {
    /// The interval the sum covers (`end - start`); at most the window's length.
    pub fn span(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    /// `sum` per second of [`span`](CounterWindow::span): an exact average over that interval.
    /// 0.0 when the span is zero (nothing is known about any interval yet).
    pub fn rate_per_sec(&self) -> f64 {
        let span = nanos(self.span());
        if span == 0 {
            0.0
        } else {
            self.sum as f64 / secs(span)
        }
    }
}

// === impl RollingHistogram ===

/// A [`Histogram`] plus a rolling window over it: "the p99 of the last `window`".
///
/// [`record`](RollingHistogram::record) and friends are exactly [`Histogram::record`]; the window
/// costs writers nothing. [`snapshot`](RollingHistogram::snapshot) takes a snapshot of the
/// histogram and returns the difference from the baseline snapshot
/// ([`HistogramSnapshot::delta_since`]), over the interval that [`RollingCounter`]'s docs
/// define. The ring of cumulative snapshots is behind a mutex that only readers take; it holds
/// at most one snapshot per slot.
///
/// ```
/// use std::time::Duration;
/// use weir::{ManualClock, RollingHistogram};
///
/// let clock = ManualClock::new();
/// let latency = RollingHistogram::new(Duration::from_secs(3), Duration::from_secs(1), clock.clone())?;
/// latency.record(900_000); // a slow start...
/// clock.advance(Duration::from_secs(1));
/// latency.snapshot();
/// for _ in 0..100 {
///     latency.record(1_000); // ...then fast
/// }
/// clock.advance(Duration::from_secs(2)); // t = 3 s: the slow slot left the window
/// let s = latency.snapshot();
/// assert_eq!(s.count(), 100);
/// assert!(latency.value_at_quantile(0.99) < 1_100);
/// # Ok::<(), weir::WindowError>(())
/// ```
pub struct RollingHistogram<C: Clock = SystemClock> {
    histogram: Histogram,
    clock: C,
    spec: Spec,
    ring: Mutex<Ring<HistogramSnapshot>>,
}

/// `current - baseline`, for two readings taken in that order under the ring's mutex.
fn interval(current: &HistogramSnapshot, baseline: &HistogramSnapshot) -> HistogramSnapshot {
    match current.delta_since(baseline) {
        Ok(delta) => delta,
        Err(e) => {
            // Unreachable: both snapshots come from the same histogram, in order (module
            // docs). Fail loudly in tests; in release, report an empty interval rather than
            // panic in a reader.
            if cfg!(debug_assertions) {
                panic!("rolling histogram readings out of order: {e}");
            }
            match current.delta_since(current) {
                Ok(empty) => empty,
                Err(_) => current.clone(),
            }
        }
    }
}

impl<C: Clock> RollingHistogram<C> {
    /// A window over a new [`Histogram::new`] (nanosecond latencies, 1 ns to 1 hour, 3
    /// significant digits). `window` and `resolution` as for [`RollingCounter::new`].
    ///
    /// # Errors
    ///
    /// As for [`RollingCounter::new`].
    pub fn new(
        window: Duration,
        resolution: Duration,
        clock: C,
    ) -> Result<RollingHistogram<C>, WindowError> {
        RollingHistogram::with_histogram(Histogram::new(), window, resolution, clock)
    }

    /// A window over an existing histogram (choose its layout with [`Histogram::builder`]). The
    /// window starts now: what the histogram held before is not in any window.
    ///
    /// # Errors
    ///
    /// As for [`RollingCounter::new`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir::{Histogram, RollingHistogram, SystemClock};
    ///
    /// let h = Histogram::builder().significant_digits(2).highest(60_000_000_000).build()?;
    /// let w = RollingHistogram::with_histogram(h, Duration::from_secs(30), Duration::from_secs(1), SystemClock::new())?;
    /// w.record_duration(Duration::from_millis(5));
    /// assert_eq!(w.snapshot().significant_digits(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_histogram(
        histogram: Histogram,
        window: Duration,
        resolution: Duration,
        clock: C,
    ) -> Result<RollingHistogram<C>, WindowError> {
        let spec = Spec::new(window, resolution)?;
        let now = clock.now();
        let ring = Ring::new(spec, now, histogram.snapshot());
        Ok(RollingHistogram {
            histogram,
            clock,
            spec,
            ring: Mutex::new(ring),
        })
    }

    /// Records one value: exactly [`Histogram::record`].
    #[inline]
    pub fn record(&self, value: u64) {
        self.histogram.record(value);
    }

    /// Records `value` `n` times: exactly [`Histogram::record_n`].
    #[inline]
    pub fn record_n(&self, value: u64, n: u64) {
        self.histogram.record_n(value, n);
    }

    /// Records a duration in nanoseconds: exactly [`Histogram::record_duration`].
    #[inline]
    pub fn record_duration(&self, d: Duration) {
        self.histogram.record_duration(d);
    }

    /// The histogram underneath. Writers can keep a clone and record into it directly.
    pub fn histogram(&self) -> &Histogram {
        &self.histogram
    }

    /// Takes a reading and reports the window: what was recorded within it, and the interval
    /// covered.
    pub fn read(&self) -> HistogramWindow {
        let mut ring = lock(&self.ring);
        let tick = ring.tick(self.clock.now());
        let current = self.histogram.snapshot();
        let (snapshot, start) = match ring.baseline() {
            Some(b) => (interval(&current, &b.value), b.at),
            // Every reading left the window: this read is the first inside it.
            None => (interval(&current, &current), tick.now),
        };
        ring.keep(tick, current);
        HistogramWindow {
            snapshot,
            start: Duration::from_nanos(start),
            end: Duration::from_nanos(tick.now),
        }
    }

    /// What was recorded within the window, as a snapshot (see
    /// [`read`](RollingHistogram::read)).
    pub fn snapshot(&self) -> HistogramSnapshot {
        self.read().snapshot
    }

    /// The value at quantile `q` of the window (as [`HistogramSnapshot::value_at_quantile`]:
    /// `q` is clamped into `[0, 1]`, and an empty window gives 0).
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        self.snapshot().value_at_quantile(q)
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        self.spec.window
    }

    /// The step the window moves by.
    pub fn resolution(&self) -> Duration {
        self.spec.resolution
    }

    /// How many slots the window spans (`window / resolution`).
    pub fn slots(&self) -> usize {
        self.spec.slots as usize
    }

    /// The clock the window reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }
}

impl<C: Clock> fmt::Debug for RollingHistogram<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RollingHistogram")
            .field("window", &self.spec.window)
            .field("resolution", &self.spec.resolution)
            .field("histogram", &self.histogram)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// One read of a [`RollingHistogram`].
///
/// `snapshot` holds exactly what was recorded after the reading at `start` and up to the reading
/// at `end` (times of the window's clock); see [`RollingCounter`]'s docs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistogramWindow {
    /// What was recorded within the window.
    pub snapshot: HistogramSnapshot,
    /// When the baseline reading was taken: the first reading at or after the window's start.
    pub start: Duration,
    /// When this reading was taken.
    pub end: Duration,
}

impl HistogramWindow {
    /// The interval the snapshot covers (`end - start`); at most the window's length.
    pub fn span(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    /// Values recorded per second of [`span`](HistogramWindow::span); 0.0 when the span is zero.
    pub fn rate_per_sec(&self) -> f64 {
        let span = nanos(self.span());
        if span == 0 {
            0.0
        } else {
            self.snapshot.count() as f64 / secs(span)
        }
    }
}

// === WindowError ===

/// A rolling window could not be made with the requested window and resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowError {
    /// The resolution is zero. Use a positive step, typically `window / 10` to `window / 100`.
    ZeroResolution,
    /// The window is zero. Use a positive length, a whole multiple of the resolution.
    ZeroWindow,
    /// The window is not a whole multiple of the resolution. Round the window to a multiple, or
    /// pick a resolution that divides it (for example 1 s for a 60 s window).
    NotAMultiple {
        /// The requested window.
        window: Duration,
        /// The requested resolution.
        resolution: Duration,
    },
    /// `window / resolution` is more than [`MAX_WINDOW_SLOTS`]. Use a coarser resolution.
    TooManySlots {
        /// The requested number of slots (saturated at `u64::MAX`).
        slots: u64,
    },
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WindowError::ZeroResolution => f.write_str("window resolution must not be zero"),
            WindowError::ZeroWindow => f.write_str("window length must not be zero"),
            WindowError::NotAMultiple { window, resolution } => write!(
                f,
                "window ({window:?}) must be a whole multiple of the resolution ({resolution:?})"
            ),
            WindowError::TooManySlots { slots } => write!(
                f,
                "window / resolution is {slots} slots; at most {MAX_WINDOW_SLOTS} are allowed"
            ),
        }
    }
}

impl std::error::Error for WindowError {}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::clock::{ManualClock, SharedClock};

    const MS: Duration = Duration::from_millis(1);
    const SEC: Duration = Duration::from_secs(1);
    const NS: Duration = Duration::from_nanos(1);

    fn counter(
        window: Duration,
        resolution: Duration,
    ) -> (ManualClock, RollingCounter<ManualClock>) {
        let clock = ManualClock::new();
        let w = RollingCounter::new(window, resolution, clock.clone()).unwrap();
        (clock, w)
    }

    fn histogram(
        window: Duration,
        resolution: Duration,
    ) -> (ManualClock, RollingHistogram<ManualClock>) {
        let clock = ManualClock::new();
        let w = RollingHistogram::new(window, resolution, clock.clone()).unwrap();
        (clock, w)
    }

    // --- parameters ---

    #[test]
    fn rejects_bad_parameters() {
        let c = ManualClock::new();
        let new = |w, r| RollingCounter::new(w, r, c.clone()).map(|_| ());
        assert_eq!(new(SEC, Duration::ZERO), Err(WindowError::ZeroResolution));
        assert_eq!(
            new(Duration::ZERO, Duration::ZERO),
            Err(WindowError::ZeroResolution)
        );
        assert_eq!(new(Duration::ZERO, SEC), Err(WindowError::ZeroWindow));
        assert_eq!(
            new(SEC, 300 * MS),
            Err(WindowError::NotAMultiple {
                window: SEC,
                resolution: 300 * MS
            })
        );
        assert!(matches!(
            new(SEC, 2 * SEC),
            Err(WindowError::NotAMultiple { .. })
        ));
        assert_eq!(
            new(10_001 * MS, MS),
            Err(WindowError::TooManySlots { slots: 10_001 })
        );
        assert_eq!(
            new(Duration::MAX, NS),
            Err(WindowError::TooManySlots { slots: u64::MAX })
        );
        assert_eq!(new(10_000 * MS, MS), Ok(()));
        assert_eq!(new(SEC, SEC), Ok(()));
        let h = RollingHistogram::new(SEC, Duration::ZERO, c.clone());
        assert_eq!(h.err(), Some(WindowError::ZeroResolution));
        for e in [
            WindowError::ZeroResolution,
            WindowError::ZeroWindow,
            WindowError::NotAMultiple {
                window: SEC,
                resolution: 300 * MS,
            },
            WindowError::TooManySlots { slots: 10_001 },
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn accessors() {
        let (_, w) = counter(10 * SEC, SEC);
        assert_eq!((w.window(), w.resolution(), w.slots()), (10 * SEC, SEC, 10));
        assert_eq!(w.clock().now(), Duration::ZERO);
        assert!(format!("{w:?}").contains("RollingCounter"));
        let (_, h) = histogram(10 * SEC, 100 * MS);
        assert_eq!(
            (h.window(), h.resolution(), h.slots()),
            (10 * SEC, 100 * MS, 100)
        );
        assert!(format!("{h:?}").contains("RollingHistogram"));
    }

    #[test]
    fn windows_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<RollingCounter>();
        check::<RollingHistogram<SharedClock>>();
        check::<CounterWindow>();
        check::<HistogramWindow>();
    }

    // --- counter ---

    #[test]
    fn value_just_before_and_just_after_a_boundary() {
        // 3 slots of 1 s, read at every boundary.
        let (clock, w) = counter(3 * SEC, SEC);
        clock.set(SEC - NS).unwrap();
        w.add(1); // slot 0, one nanosecond before the boundary
        clock.set(SEC).unwrap();
        assert_eq!(w.sum(), 1); // boundary read at exactly 1 s
        w.add(10); // same instant, after the boundary read: slot 1
        clock.set(SEC + NS).unwrap();
        w.add(100); // slot 1, one nanosecond after the boundary
        assert_eq!(w.sum(), 111);
        clock.set(2 * SEC).unwrap();
        assert_eq!(w.sum(), 111);
        // At 3 s - 1 ns the window still spans slots 0..=2: everything.
        clock.set(3 * SEC - NS).unwrap();
        assert_eq!(w.sum(), 111);
        // At 3 s slot 0 leaves: the window is [1 s, 3 s], measured from the read at exactly 1 s.
        clock.set(3 * SEC).unwrap();
        let r = w.read();
        assert_eq!((r.sum, r.total, r.start, r.end), (110, 111, SEC, 3 * SEC));
        assert_eq!(r.span(), 2 * SEC);
        assert_eq!(r.rate_per_sec(), 55.0);
        clock.set(4 * SEC - NS).unwrap();
        assert_eq!(w.sum(), 110);
        // At 4 s slot 1 leaves too.
        clock.set(4 * SEC).unwrap();
        assert_eq!(w.sum(), 0);
        assert_eq!(w.total(), 111);
    }

    #[test]
    fn exact_with_reads_at_every_boundary() {
        // Add k in second k; read at every boundary; the window is always the last 5 slots.
        let (clock, w) = counter(5 * SEC, SEC);
        let mut added = vec![];
        for k in 0..40u64 {
            w.add(k);
            added.push(k);
            clock.advance(SEC);
            let r = w.read();
            // At t = k + 1 the window spans slots k - 3 ..= k + 1 (the last one empty so far).
            let from = (k + 1).saturating_sub(4) as usize;
            let expect: u64 = added[from..].iter().sum();
            assert_eq!(r.sum, expect, "at t = {} s", k + 1);
            assert_eq!(r.end - r.start, SEC * (k + 1).min(4) as u32);
        }
    }

    #[test]
    fn several_reads_in_one_slot_keep_the_first_as_baseline() {
        let (clock, w) = counter(2 * SEC, SEC);
        clock.set(SEC + 100 * MS).unwrap();
        w.add(1);
        assert_eq!(w.sum(), 1); // first read in slot 1, at 1.1 s: total 1
        w.add(2);
        clock.set(SEC + 500 * MS).unwrap();
        assert_eq!(w.sum(), 3); // second read in slot 1: not kept
        w.add(4);
        clock.set(2 * SEC).unwrap();
        let r = w.read(); // slot 0 left; baseline is the first reading in slot 1 (1.1 s, total 1)
        assert_eq!((r.sum, r.start), (6, SEC + 100 * MS));
    }

    #[test]
    fn window_longer_than_history_reports_everything_since_creation() {
        let clock = ManualClock::new();
        clock.set(7 * SEC + 300 * MS).unwrap(); // created mid-slot
        let c = Counter::new();
        c.add(1_000); // before the window exists: never in it
        let w =
            RollingCounter::with_counter(c.clone(), Duration::from_secs(3600), SEC, clock.clone())
                .unwrap();
        for i in 1..=20u64 {
            c.add(i);
            clock.advance(250 * MS);
        }
        let r = w.read();
        assert_eq!(r.sum, 210);
        assert_eq!(r.total, 1_210);
        assert_eq!((r.start, r.end), (7 * SEC + 300 * MS, 12 * SEC + 300 * MS));
        assert_eq!(r.rate_per_sec(), 42.0);
    }

    #[test]
    fn clock_jumping_hours_expires_everything_without_looping() {
        // 10,000 slots of 1 ns: walking the elapsed slots one by one would take hours.
        let (clock, w) = counter(10_000 * NS, NS);
        for _ in 0..20_000 {
            w.inc();
            clock.advance(NS);
            w.read();
        }
        assert_eq!(w.sum(), 9_999); // slots 10,001..=20,000; the newest is still empty
        w.add(7); // added after the last read, then a long silence
        clock.advance(Duration::from_secs(3 * 3600));
        let r = w.read();
        assert_eq!((r.sum, r.total), (0, 20_007));
        assert_eq!(r.span(), Duration::ZERO);
        assert_eq!(r.rate_per_sec(), 0.0);
        w.add(5);
        clock.advance(NS);
        assert_eq!(w.sum(), 5);

        // The same with a coarse window and a histogram.
        let (clock, h) = histogram(10 * SEC, SEC);
        h.record(42);
        clock.advance(SEC);
        assert_eq!(h.snapshot().count(), 1);
        clock.advance(Duration::from_secs(5 * 3600));
        let s = h.snapshot();
        assert_eq!((s.count(), s.sum()), (0, 0));
        h.record(7);
        assert_eq!(h.snapshot().count(), 1);
    }

    #[test]
    fn zero_activity() {
        let (clock, w) = counter(10 * SEC, SEC);
        let r = w.read();
        assert_eq!((r.sum, r.total, r.span()), (0, 0, Duration::ZERO));
        assert_eq!(r.rate_per_sec(), 0.0);
        for step in [NS, MS, SEC, 17 * SEC, Duration::from_secs(86_400)] {
            clock.advance(step);
            assert_eq!(w.sum(), 0);
            assert_eq!(w.rate_per_sec(), 0.0);
            assert_eq!(w.total(), 0);
        }
        let (clock, h) = histogram(10 * SEC, SEC);
        clock.advance(3 * SEC);
        let r = h.read();
        assert_eq!((r.snapshot.count(), r.span()), (0, 3 * SEC));
        assert_eq!(r.rate_per_sec(), 0.0);
        assert_eq!(h.value_at_quantile(0.99), 0);
    }

    #[test]
    fn sparse_reads_never_report_stale_values() {
        let (clock, w) = counter(10 * SEC, SEC);
        clock.set(3 * SEC).unwrap();
        w.add(5); // recorded at 3 s, first observed at 15 s
        clock.set(15 * SEC).unwrap();
        // The creation reading (0 s) left the window [6 s, 15 s]; nothing earlier is inside it.
        let r = w.read();
        assert_eq!((r.sum, r.total, r.start, r.end), (0, 5, 15 * SEC, 15 * SEC));
        w.add(1);
        clock.set(16 * SEC).unwrap();
        let r = w.read();
        assert_eq!((r.sum, r.span()), (1, SEC));
        assert_eq!(r.rate_per_sec(), 1.0);
    }

    #[test]
    fn single_slot_window_is_the_current_slot() {
        let (clock, w) = counter(SEC, SEC);
        w.add(3);
        clock.set(999 * MS).unwrap();
        assert_eq!(w.sum(), 3);
        clock.set(SEC).unwrap();
        assert_eq!(w.sum(), 0);
        w.add(4);
        clock.set(SEC + 500 * MS).unwrap();
        let r = w.read();
        assert_eq!((r.sum, r.span()), (4, 500 * MS));
        assert_eq!(r.rate_per_sec(), 8.0);
    }

    /// A clock that may go backwards, to check the window does not.
    #[derive(Debug, Clone, Default)]
    struct UnrulyClock(Arc<AtomicU64>);
    impl Clock for UnrulyClock {
        fn now(&self) -> Duration {
            Duration::from_nanos(self.0.load(Ordering::SeqCst))
        }
    }

    #[test]
    fn a_clock_that_goes_backwards_is_held_still() {
        let clock = UnrulyClock::default();
        let w = RollingCounter::new(2 * SEC, SEC, clock.clone()).unwrap();
        clock.0.store(5_000_000_000, Ordering::SeqCst);
        w.add(1);
        assert_eq!(w.sum(), 0); // the creation reading at 0 s left the window
        w.add(2);
        clock.0.store(1_000_000_000, Ordering::SeqCst); // back to 1 s: treated as 5 s
        let r = w.read();
        assert_eq!((r.sum, r.start, r.end), (2, 5 * SEC, 5 * SEC));
        clock.0.store(6_000_000_000, Ordering::SeqCst);
        assert_eq!(w.sum(), 2);
        clock.0.store(7_000_000_000, Ordering::SeqCst);
        assert_eq!(w.sum(), 0);
    }

    #[test]
    fn shared_clock_works() {
        let manual = ManualClock::new();
        let shared: SharedClock = Arc::new(manual.clone());
        let w: RollingCounter<SharedClock> = RollingCounter::new(2 * SEC, SEC, shared).unwrap();
        w.add(2);
        manual.advance(SEC);
        assert_eq!(w.sum(), 2);
        manual.advance(SEC);
        assert_eq!(w.sum(), 0);
    }

    #[test]
    fn concurrent_writers_and_a_reader_end_exact() {
        const WRITERS: u64 = 4;
        const ADDS: u64 = 50_000;
        let (clock, w) = counter(Duration::from_secs(3600), SEC);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|_| {
                    let c = w.counter().clone();
                    s.spawn(move || {
                        for _ in 0..ADDS {
                            c.inc();
                        }
                    })
                })
                .collect();
            let reader = s.spawn(|| {
                let mut last_total = 0;
                while !done.load(Ordering::Acquire) {
                    clock.advance(MS);
                    let r = w.read();
                    // Nothing has left the hour-long window: sum and total agree and grow.
                    assert_eq!(r.sum, r.total);
                    assert!(r.total >= last_total);
                    last_total = r.total;
                }
            });
            for t in writers {
                t.join().unwrap();
            }
            done.store(true, Ordering::Release);
            reader.join().unwrap();
        });
        let r = w.read();
        assert_eq!((r.sum, r.total), (WRITERS * ADDS, WRITERS * ADDS));
    }

    // --- histogram ---

    #[test]
    fn histogram_value_just_before_and_just_after_a_boundary() {
        let (clock, h) = histogram(2 * SEC, SEC);
        clock.set(SEC - NS).unwrap();
        h.record(10);
        clock.set(SEC).unwrap();
        assert_eq!(h.snapshot().count(), 1);
        clock.set(SEC + NS).unwrap();
        h.record(20);
        h.record_n(30, 2);
        h.record_duration(Duration::from_nanos(40));
        let s = h.snapshot();
        assert_eq!((s.count(), s.sum(), s.min(), s.max()), (5, 130, 10, 40));
        clock.set(2 * SEC - NS).unwrap();
        assert_eq!(h.snapshot().count(), 5);
        clock.set(2 * SEC).unwrap(); // slot 0 leaves: the 10 goes
        let r = h.read();
        assert_eq!((r.snapshot.count(), r.snapshot.sum()), (4, 120));
        assert_eq!((r.start, r.end), (SEC, 2 * SEC));
        assert_eq!(r.rate_per_sec(), 4.0);
        assert_eq!(h.value_at_quantile(0.0), 20);
        assert_eq!(h.value_at_quantile(1.0), 40);
        clock.set(3 * SEC).unwrap();
        assert_eq!(h.snapshot().count(), 0);
    }

    #[test]
    fn histogram_quantiles_follow_the_window() {
        let (clock, h) = histogram(10 * SEC, SEC);
        for _ in 0..1000 {
            h.record(1_000_000);
        }
        for step in 1..=9 {
            clock.advance(SEC);
            h.snapshot();
            if step == 5 {
                for _ in 0..1000 {
                    h.record(1_000);
                }
            }
        }
        assert_eq!(h.snapshot().count(), 2000);
        clock.advance(SEC); // t = 10 s: slot 0 and its slow values leave
        let s = h.snapshot();
        assert_eq!(s.count(), 1000);
        assert_eq!(h.value_at_quantile(0.99), 1_000);
        assert_eq!(h.histogram().snapshot().count(), 2000);
    }

    #[test]
    fn with_histogram_keeps_layout_and_excludes_earlier_values() {
        let hist = Histogram::builder()
            .significant_digits(2)
            .lowest(1_000)
            .highest(10_000_000)
            .build()
            .unwrap();
        hist.record(5_000);
        let clock = ManualClock::new();
        let h = RollingHistogram::with_histogram(hist, Duration::from_secs(60), SEC, clock.clone())
            .unwrap();
        h.record(7_000);
        h.record(u64::MAX);
        clock.advance(10 * SEC);
        let s = h.snapshot();
        assert_eq!((s.count(), s.saturated()), (2, 1));
        assert_eq!(
            (s.lowest(), s.highest(), s.significant_digits()),
            (1_000, 10_000_000, 2)
        );
    }

    #[test]
    fn histogram_concurrent_writers_and_a_reader_end_exact() {
        const WRITERS: u64 = 4;
        const RECORDS: u64 = 20_000;
        let (clock, h) = histogram(Duration::from_secs(3600), SEC);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|t| {
                    let hist = h.histogram().clone();
                    s.spawn(move || {
                        for i in 0..RECORDS {
                            hist.record(1 + (i + t) % 5_000);
                        }
                    })
                })
                .collect();
            let reader = s.spawn(|| {
                let mut last = 0;
                while !done.load(Ordering::Acquire) {
                    clock.advance(MS);
                    let n = h.snapshot().count();
                    assert!(n >= last);
                    last = n;
                }
            });
            for t in writers {
                t.join().unwrap();
            }
            done.store(true, Ordering::Release);
            reader.join().unwrap();
        });
        let s = h.snapshot();
        assert_eq!(s.count(), WRITERS * RECORDS);
        let expect_sum: u64 = (0..WRITERS)
            .map(|t| (0..RECORDS).map(|i| 1 + (i + t) % 5_000).sum::<u64>())
            .sum();
        assert_eq!(s.sum(), expect_sum);
    }
}
