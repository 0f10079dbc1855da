//! Window limiters on one atomic word: lift's sliding window as a weighted sliding-window
//! counter, and a fixed window.
//!
//! # Orderings
//! The state word is loaded with `Acquire`, CASed with `Release` on success and `Acquire` on
//! failure, and the clock is read *after* every load (and after every failed CAS, which is a
//! load). A thread that installs a state read its clock before its `Release` CAS; a thread that
//! `Acquire`s that state reads its clock afterwards. So, for a clock that is monotonic across
//! threads (the [`Clock`](crate::Clock) contract), no thread sees a state stamped with a later
//! window than its own reading. That is what lets the state keep only the low bits of the window
//! index and compare them by wrapping subtraction. `Relaxed` would keep each withdrawal exact
//! (the CAS decides) but lose that edge: a thread could see a state from a later window than its
//! own stale reading, and would then have to guess. The code still guards against it (a state at
//! most two windows "ahead" is treated conservatively as the current window at its start), so a
//! clock that breaks the contract can only make the limiter stricter, never over-admit.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{
    BuildError, Decision, LimitReason, MAX_TOLERANCE_NANOS, RateMetrics, clock_nanos, count,
};
use crate::clock::{SharedClock, SystemClock};
use crate::policy::Mode;
use crate::registry::Registry;
use crate::sync::{AtomicU64, Ordering};

/// The largest limit a [`SlidingWindow`] supports: `2^20 - 1` (each window's count has 20 bits).
pub const MAX_SLIDING_LIMIT: u64 = (1 << SLIDING_COUNT_BITS) - 1;
/// The largest limit a [`FixedWindow`] supports: `2^32 - 1`.
pub const MAX_FIXED_LIMIT: u64 = u32::MAX as u64;
/// The most sub-windows a [`SlidingWindow`] may weigh by.
pub const MAX_GRANULARITY: u32 = 1000;

const SLIDING_COUNT_BITS: u32 = 20;
const SLIDING_IDX_BITS: u32 = 24;
const FIXED_IDX_BITS: u32 = 32;

/// How a stored window index relates to the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Roll {
    /// The same window.
    Same,
    /// The stored window is the previous one.
    Next,
    /// The stored window is two or more windows old: its counts no longer matter.
    Reset,
    /// The stored window is up to two windows *ahead* of this thread's reading (a clock that is
    /// not monotonic across threads): decide as if at the start of the stored window, the
    /// strictest reading.
    Ahead(u64),
}

/// Compares the low `bits` of two window indexes. An index that wrapped all the way around
/// (`2^bits` windows without a request) may read as `Same`, `Next` or `Ahead`: the limiter is then
/// stricter than it should be for at most three windows, never looser.
fn roll(stored: u64, current: u64, bits: u32) -> Roll {
    let mask = (1u64 << bits) - 1;
    let behind = current.wrapping_sub(stored) & mask;
    let ahead = stored.wrapping_sub(current) & mask;
    match behind {
        0 => Roll::Same,
        1 => Roll::Next,
        _ if (1..=2).contains(&ahead) => Roll::Ahead(ahead),
        _ => Roll::Reset,
    }
}

/// `(window index, offset in window)` of a clock reading.
fn split(now: u64, window: u64) -> (u64, u64) {
    (now / window, now % window)
}

/// Nanoseconds from `now` to `window_index × window + offset` (0 if that is not later).
fn until(window_index: u64, offset: u64, window: u64, now: u64) -> Duration {
    let at = u128::from(window_index) * u128::from(window) + u128::from(offset);
    let d = at.saturating_sub(u128::from(now));
    Duration::from_nanos(u64::try_from(d).unwrap_or(u64::MAX))
}

/// The shared, validated part of both builders.
struct Common {
    mode: Mode,
    clock: SharedClock,
    metrics: Option<RateMetrics>,
}

fn common(
    mode: Mode,
    clock: Option<SharedClock>,
    registry: &Option<Registry>,
) -> Result<Common, BuildError> {
    Ok(Common {
        mode,
        clock: clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
        metrics: match registry {
            Some(r) => Some(RateMetrics::register(r)?),
            None => None,
        },
    })
}

fn check_window(limit: u64, max: u64, window: Duration) -> Result<u64, BuildError> {
    if limit == 0 {
        return Err(BuildError::ZeroLimit);
    }
    if limit > max {
        return Err(BuildError::LimitTooLarge { limit, max });
    }
    if window.is_zero() {
        return Err(BuildError::ZeroWindow);
    }
    u64::try_from(window.as_nanos())
        .ok()
        .filter(|&w| w <= MAX_TOLERANCE_NANOS)
        .ok_or(BuildError::WindowTooLong { window })
}

// === impl SlidingWindow ===

/// lift's sliding-window limit as a weighted sliding-window counter, in one atomic word.
///
/// Time is cut into aligned windows of length `W`, each split into `G` sub-windows (the
/// *granularity*; lift uses `W / 10`, so `G = 10`). The word holds the current window's index
/// (low 24 bits), the previous window's count and the current window's count (20 bits each).
/// In sub-window `k` (`0 <= k < G`) of the current window, the estimated number of requests in
/// the last `W` is
///
/// > `estimate = prev × (G - k) / G + cur`
///
/// (the previous window's count, weighted by how much of it the sliding window still covers, at
/// the sub-window's granularity), and a request for `n` is admitted iff
/// `estimate + n <= limit`, by CAS: exact against the estimate under any interleaving.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use weir::ManualClock;
/// use weir::policy::ratelimit::SlidingWindow;
///
/// let clock = ManualClock::new();
/// let limiter = SlidingWindow::new(100, Duration::from_secs(10), Arc::new(clock.clone()))?;
/// assert_eq!((0..150).filter(|_| limiter.try_acquire().admits()).count(), 100);
/// clock.advance(Duration::from_secs(10)); // next window, k = 0: the previous 100 weigh fully
/// assert!(!limiter.try_acquire().admits());
/// clock.advance(Duration::from_secs(3)); // k = 3: 100 × 7/10 = 70 remain in the window
/// assert_eq!((0..150).filter(|_| limiter.try_acquire().admits()).count(), 30);
/// # Ok::<(), weir::policy::ratelimit::BuildError>(())
/// ```
pub struct SlidingWindow {
    /// `idx (24 bits) | prev (20 bits) | cur (20 bits)`.
    state: AtomicU64,
    limit: u64,
    window: u64,
    granularity: u64,
    common: Common,
}

#[inline]
fn sliding_pack(idx: u64, prev: u64, cur: u64) -> u64 {
    let idx_mask = (1u64 << SLIDING_IDX_BITS) - 1;
    ((idx & idx_mask) << (2 * SLIDING_COUNT_BITS)) | (prev << SLIDING_COUNT_BITS) | cur
}

#[inline]
fn sliding_unpack(word: u64) -> (u64, u64, u64) {
    (
        word >> (2 * SLIDING_COUNT_BITS),
        (word >> SLIDING_COUNT_BITS) & MAX_SLIDING_LIMIT,
        word & MAX_SLIDING_LIMIT,
    )
}

impl SlidingWindow {
    /// An enforcing limiter of `limit` per sliding `window` at lift's granularity (10
    /// sub-windows), recording no metrics.
    ///
    /// # Errors
    ///
    /// As [`SlidingWindowBuilder::build`].
    pub fn new(
        limit: u64,
        window: Duration,
        clock: SharedClock,
    ) -> Result<SlidingWindow, BuildError> {
        SlidingWindow::builder(limit, window).clock(clock).build()
    }

    /// A builder (granularity, clock, mode, metrics).
    pub fn builder(limit: u64, window: Duration) -> SlidingWindowBuilder {
        SlidingWindowBuilder {
            limit,
            window,
            granularity: 10,
            mode: Mode::Enforce,
            clock: None,
            registry: None,
        }
    }

    /// Asks for one request's worth.
    #[inline]
    pub fn try_acquire(&self) -> Decision {
        self.try_acquire_n(1)
    }

    /// Asks for `n` at once (all or nothing). `n = 0` takes nothing and reports the current
    /// state; `n > limit` is `Limited` with [`LimitReason::ExceedsCapacity`].
    pub fn try_acquire_n(&self, n: u64) -> Decision {
        let d = self.decide(n);
        count(&self.common.metrics, &d);
        d
    }

    fn decide(&self, n: u64) -> Decision {
        let (g, w, limit) = (self.granularity, self.window, self.limit);
        // Acquire, then read the clock: module docs.
        let mut word = self.state.load(Ordering::Acquire);
        loop {
            let now = clock_nanos(self.common.clock.now());
            let (idx, off) = split(now, w);
            // off < w, g <= MAX_GRANULARITY: the product fits in u128 and the quotient is < g.
            let k = (u128::from(off) * u128::from(g) / u128::from(w)) as u64;
            let (sidx, sprev, scur) = sliding_unpack(word);
            let (idx, prev, cur, k) = match roll(sidx, idx, SLIDING_IDX_BITS) {
                Roll::Same => (idx, sprev, scur, k),
                Roll::Next => (idx, scur, 0, k),
                Roll::Reset => (idx, 0, 0, k),
                Roll::Ahead(a) => (idx + a, sprev, scur, 0),
            };
            // prev, cur <= 2^20 and g <= 1000: no overflow in u64.
            let weighted = prev * (g - k) + cur * g;
            if n > limit {
                return Decision::Limited {
                    retry_after: Duration::MAX,
                    reset_after: self.reset_after(idx, prev, cur, now),
                    limit,
                    reason: LimitReason::ExceedsCapacity,
                    mode: self.common.mode,
                };
            }
            if weighted + n * g > limit * g {
                return Decision::Limited {
                    retry_after: self.retry_after(idx, prev, cur, k, n, now),
                    reset_after: self.reset_after(idx, prev, cur, now),
                    limit,
                    reason: LimitReason::Exhausted,
                    mode: self.common.mode,
                };
            }
            let allowed = Decision::Allowed {
                remaining: (limit * g - weighted - n * g) / g,
                reset_after: self.reset_after(idx, prev, cur + n, now),
                limit,
            };
            if n == 0 {
                return allowed;
            }
            let new = sliding_pack(idx, prev, cur + n);
            // Release on success / Acquire on failure: module docs. The CAS makes the
            // withdrawal exact; a failure decides again from the newer state (and a new clock
            // reading, taken after this Acquire).
            match self
                .state
                .compare_exchange_weak(word, new, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return allowed,
                Err(current) => word = current,
            }
        }
    }

    /// Time until the estimate is zero if nothing else is admitted: the end of the next window
    /// while the current window has a count, the end of this window while only the previous one
    /// does.
    fn reset_after(&self, idx: u64, prev: u64, cur: u64, now: u64) -> Duration {
        if cur > 0 {
            until(idx + 2, 0, self.window, now)
        } else if prev > 0 {
            until(idx + 1, 0, self.window, now)
        } else {
            Duration::ZERO
        }
    }

    /// The first later sub-window boundary at which `n` fits, if nothing else is admitted.
    fn retry_after(&self, idx: u64, prev: u64, cur: u64, k: u64, n: u64, now: u64) -> Duration {
        let (g, w, limit) = (self.granularity, self.window, self.limit);
        for j in k + 1..2 * g {
            let (win, p, c, kk) = if j < g {
                (0, prev, cur, j)
            } else {
                (1, cur, 0, j - g)
            };
            if p * (g - kk) + c * g + n * g <= limit * g {
                let offset = (u128::from(kk) * u128::from(w)).div_ceil(u128::from(g)) as u64;
                return until(idx + win, offset, w, now);
            }
        }
        // Two windows on, the estimate is zero and any n <= limit fits.
        until(idx + 2, 0, w, now)
    }

    /// The limit per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window)
    }

    /// Sub-windows per window.
    pub fn granularity(&self) -> u32 {
        // Validated to be at most MAX_GRANULARITY.
        self.granularity as u32
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.common.mode
    }
}

impl fmt::Debug for SlidingWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a reading for display only.
        let (idx, prev, cur) = sliding_unpack(self.state.load(Ordering::Relaxed));
        f.debug_struct("SlidingWindow")
            .field("limit", &self.limit)
            .field("window", &self.window())
            .field("granularity", &self.granularity)
            .field("mode", &self.common.mode)
            .field("window_index_low_bits", &idx)
            .field("prev", &prev)
            .field("cur", &cur)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SlidingWindow`].
#[derive(Debug)]
pub struct SlidingWindowBuilder {
    limit: u64,
    window: Duration,
    granularity: u32,
    mode: Mode,
    clock: Option<SharedClock>,
    registry: Option<Registry>,
}

impl SlidingWindowBuilder {
    /// Sub-windows per window (default 10, lift's `window / 10`).
    pub fn granularity(mut self, granularity: u32) -> Self {
        self.granularity = granularity;
        self
    }

    /// The clock (default: a new [`SystemClock`]).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Enforce (default) or shadow.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Count decisions in `rate_limit_requests_total{result}` of this registry.
    pub fn metrics(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroLimit`], [`BuildError::LimitTooLarge`] (above
    /// [`MAX_SLIDING_LIMIT`]), [`BuildError::ZeroWindow`], [`BuildError::WindowTooLong`],
    /// [`BuildError::Granularity`], [`BuildError::Registry`].
    pub fn build(self) -> Result<SlidingWindow, BuildError> {
        let window = check_window(self.limit, MAX_SLIDING_LIMIT, self.window)?;
        let g = self.granularity;
        if g == 0 || g > MAX_GRANULARITY || u64::from(g) > window {
            return Err(BuildError::Granularity { granularity: g });
        }
        Ok(SlidingWindow {
            state: AtomicU64::new(0),
            limit: self.limit,
            window,
            granularity: u64::from(g),
            common: common(self.mode, self.clock, &self.registry)?,
        })
    }
}

// === impl FixedWindow ===

/// `limit` per aligned window (`[k × W, (k + 1) × W)` of the clock), in one atomic word: the
/// window index (low 32 bits) and its count. Cheap, but admits up to `2 × limit` across a window
/// boundary; prefer [`SlidingWindow`] or [`Gcra`](super::Gcra) where that matters.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use weir::ManualClock;
/// use weir::policy::ratelimit::FixedWindow;
///
/// let clock = ManualClock::new();
/// let limiter = FixedWindow::new(3, Duration::from_secs(1), Arc::new(clock.clone()))?;
/// assert_eq!((0..5).filter(|_| limiter.try_acquire().admits()).count(), 3);
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(limiter.try_acquire().retry_after(), Some(Duration::from_millis(750)));
/// clock.advance(Duration::from_millis(750));
/// assert!(limiter.try_acquire().admits());
/// # Ok::<(), weir::policy::ratelimit::BuildError>(())
/// ```
pub struct FixedWindow {
    /// `idx (32 bits) | count (32 bits)`.
    state: AtomicU64,
    limit: u64,
    window: u64,
    common: Common,
}

impl FixedWindow {
    /// An enforcing limiter of `limit` per `window`, recording no metrics.
    ///
    /// # Errors
    ///
    /// As [`FixedWindowBuilder::build`].
    pub fn new(
        limit: u64,
        window: Duration,
        clock: SharedClock,
    ) -> Result<FixedWindow, BuildError> {
        FixedWindow::builder(limit, window).clock(clock).build()
    }

    /// A builder (clock, mode, metrics).
    pub fn builder(limit: u64, window: Duration) -> FixedWindowBuilder {
        FixedWindowBuilder {
            limit,
            window,
            mode: Mode::Enforce,
            clock: None,
            registry: None,
        }
    }

    /// Asks for one request's worth.
    #[inline]
    pub fn try_acquire(&self) -> Decision {
        self.try_acquire_n(1)
    }

    /// Asks for `n` at once (all or nothing); as [`SlidingWindow::try_acquire_n`].
    pub fn try_acquire_n(&self, n: u64) -> Decision {
        let d = self.decide(n);
        count(&self.common.metrics, &d);
        d
    }

    fn decide(&self, n: u64) -> Decision {
        let (w, limit) = (self.window, self.limit);
        // Acquire, then read the clock: module docs.
        let mut word = self.state.load(Ordering::Acquire);
        loop {
            let now = clock_nanos(self.common.clock.now());
            let (idx, _) = split(now, w);
            let (sidx, scount) = (word >> FIXED_IDX_BITS, word & MAX_FIXED_LIMIT);
            let (idx, used) = match roll(sidx, idx, FIXED_IDX_BITS) {
                Roll::Same => (idx, scount),
                Roll::Next | Roll::Reset => (idx, 0),
                Roll::Ahead(a) => (idx + a, scount),
            };
            let end = until(idx + 1, 0, w, now);
            if n > limit || used + n > limit {
                return Decision::Limited {
                    retry_after: if n > limit { Duration::MAX } else { end },
                    reset_after: if used > 0 { end } else { Duration::ZERO },
                    limit,
                    reason: if n > limit {
                        LimitReason::ExceedsCapacity
                    } else {
                        LimitReason::Exhausted
                    },
                    mode: self.common.mode,
                };
            }
            let allowed = Decision::Allowed {
                remaining: limit - used - n,
                reset_after: if used + n > 0 { end } else { Duration::ZERO },
                limit,
            };
            if n == 0 {
                return allowed;
            }
            let idx_mask = (1u64 << FIXED_IDX_BITS) - 1;
            let new = ((idx & idx_mask) << FIXED_IDX_BITS) | (used + n);
            // Release on success / Acquire on failure: module docs.
            match self
                .state
                .compare_exchange_weak(word, new, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return allowed,
                Err(current) => word = current,
            }
        }
    }

    /// The limit per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window)
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.common.mode
    }
}

impl fmt::Debug for FixedWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a reading for display only.
        let word = self.state.load(Ordering::Relaxed);
        f.debug_struct("FixedWindow")
            .field("limit", &self.limit)
            .field("window", &self.window())
            .field("mode", &self.common.mode)
            .field("window_index_low_bits", &(word >> FIXED_IDX_BITS))
            .field("count", &(word & MAX_FIXED_LIMIT))
            .finish_non_exhaustive()
    }
}

/// Builds a [`FixedWindow`].
#[derive(Debug)]
pub struct FixedWindowBuilder {
    limit: u64,
    window: Duration,
    mode: Mode,
    clock: Option<SharedClock>,
    registry: Option<Registry>,
}

impl FixedWindowBuilder {
    /// The clock (default: a new [`SystemClock`]).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Enforce (default) or shadow.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Count decisions in `rate_limit_requests_total{result}` of this registry.
    pub fn metrics(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroLimit`], [`BuildError::LimitTooLarge`] (above [`MAX_FIXED_LIMIT`]),
    /// [`BuildError::ZeroWindow`], [`BuildError::WindowTooLong`], [`BuildError::Registry`].
    pub fn build(self) -> Result<FixedWindow, BuildError> {
        let window = check_window(self.limit, MAX_FIXED_LIMIT, self.window)?;
        Ok(FixedWindow {
            state: AtomicU64::new(0),
            limit: self.limit,
            window,
            common: common(self.mode, self.clock, &self.registry)?,
        })
    }
}

impl fmt::Debug for Common {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Common")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn roll_classifies_wrapping_indexes() {
        assert_eq!(roll(5, 5, 24), Roll::Same);
        assert_eq!(roll(5, 6, 24), Roll::Next);
        assert_eq!(roll(5, 9, 24), Roll::Reset);
        assert_eq!(roll(6, 5, 24), Roll::Ahead(1));
        assert_eq!(roll(7, 5, 24), Roll::Ahead(2));
        assert_eq!(roll(8, 5, 24), Roll::Reset);
        // Wrapped: the stored low bits are (1 << 24) - 1, the current index is 1 << 24.
        assert_eq!(roll((1 << 24) - 1, 1 << 24, 24), Roll::Next);
        assert_eq!(roll(3, 3 + (1 << 24), 24), Roll::Same); // aliasing: stricter, not looser
    }

    #[test]
    fn pack_round_trips() {
        let w = sliding_pack((1 << 24) + 7, MAX_SLIDING_LIMIT, 3);
        assert_eq!(sliding_unpack(w), (7, MAX_SLIDING_LIMIT, 3));
    }
}
