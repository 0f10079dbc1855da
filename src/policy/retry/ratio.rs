//! The ratio budget: retries may be at most a fixed fraction of recent requests, plus a
//! reserve for a minimum retry rate (Finagle's `RetryBudget`, tower's `TpsBudget`).
//!
//! # Semantics
//! Time is cut into `slots` generations of `width = window / slots` each (generation
//! `g = floor(now / width)`); the window at generation `g` is the `slots` generations
//! `g - slots + 1 ..= g`. With the ratio written as a reduced fraction `num / den`:
//!
//! - each request deposits `num` units (a [`deposit`](RatioBudget::deposit));
//! - each retry costs `den` units (a [`try_withdraw`](RatioBudget::try_withdraw));
//! - the reserve is `reserve = floor(min_retries_per_sec × window in seconds)` retries, worth
//!   `reserve × den` units;
//! - the balance at generation `g` is `reserve × den + num × D(g) - den × W(g)`, where `D(g)`
//!   and `W(g)` count the deposits and granted retries of the window;
//! - a retry is granted iff the balance is at least `den`, that is iff
//!   `W(g) + 1 <= reserve + ratio × D(g)`, computed exactly in integers.
//!
//! So with 1,000 requests in the window, no reserve and a ratio of 0.6 (`3/5`), exactly 600
//! retries are granted: not 599 (a cost rounded to `round(1000 / 0.6) = 1667` units) and not
//! 1,000 (a cost truncated to `(1.0 / 0.6) as isize = 1` unit per deposit of 1, as in tower's
//! `TpsBudget`). A ratio given as an `f64` is rounded to the nearest millionth;
//! [`ratio_parts`](RatioBudgetBuilder::ratio_parts) takes an exact fraction such as `1/3`.
//!
//! Deposits and retries leave the window together with their generation, so the balance can go
//! below zero when deposits expire that newer retries were drawn against (the semantics of
//! Finagle and tower); retries are then refused until requests pay it back.
//!
//! # Exactness under concurrency
//! The guarantee: for every generation `g` in which a retry was granted, the retries ever
//! granted in the window of `g` never exceed `reserve + ratio × D(g)`. No interleaving of
//! deposits, retries and clock movement breaks it (loom checks the protocol below), and with no
//! clock movement concurrent retries are granted exactly as a sequence would grant them.
//!
//! Each slot holds two 64-bit words, one counting deposits and one counting retries, each
//! tagged with the generation it counts (`[sealed: 1][generation mod 2^34: 34][count: 29]`). A
//! retry at generation `g` scans the retry words of the window: each earlier generation's word
//! is *sealed* (a compare-and-swap sets the bit; a word left from an expired generation is
//! replaced by a sealed empty word of the generation the window expects there), so nothing can
//! be added to a past generation after a newer generation has been seen; the current word is
//! recycled to `g` if it holds an expired generation. It then sums the deposit words of the
//! window and grants the retry with one compare-and-swap on the current retry word, which fails
//! if the word moved (another retry, or a seal by a newer generation). A deposit is one
//! compare-and-swap on the current deposit word. A thread that finds a word tagged with a later
//! generation than its own moves forward to the latest generation any operation has used (the
//! `high` mark), so stragglers never write into the past.
//!
//! # Limits
//! - A slot counts at most `2^29 - 1` (536,870,911) deposits and as many retries; further
//!   deposits in that slot are not counted (fewer retries, never more), and a retry that would
//!   overflow is refused.
//! - Generations are stored modulo `2^34`. A slot left untouched for an exact multiple of
//!   `2^34` generations (at the smallest width of 1 ms, about 199 years of the budget standing
//!   idle) could be mistaken for a current one.
//!
//! # Orderings
//! - Slot words: loads are `Acquire` and successful compare-and-swaps `AcqRel` (failures
//!   `Acquire`). The only memory that must travel with a word is the `high` mark: an operation
//!   raises `high` to (or reads it at) its generation *before* it writes a word with that tag,
//!   so a thread that acquires a word tagged `t` and then reads `high` sees at least `t`. That
//!   is what lets a thread tell a word from a later generation (move forward) from a word whose
//!   tag wrapped (treat as expired). The counts themselves need no ordering: every decision
//!   rests on compare-and-swaps of single, self-describing words, which always act on the
//!   latest value.
//! - `high`: `Relaxed` load and `fetch_max`; its happens-before edge comes from the slot
//!   words, as above.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::budget::{FailureClass, RetryBudget, Withdrawal, sat_i64};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::sync::{AtomicU64, Ordering};

/// The most slots a [`RatioBudget`] window may have.
pub const MAX_RATIO_SLOTS: u32 = 64;
/// The largest ratio (retries per request) a [`RatioBudget`] accepts.
pub const MAX_RATIO: f64 = 1000.0;
/// The longest window a [`RatioBudget`] accepts: one day.
pub const MAX_RATIO_WINDOW: Duration = Duration::from_secs(86_400);
/// The narrowest slot a [`RatioBudget`] accepts: 1 ms.
pub const MIN_SLOT_WIDTH: Duration = Duration::from_millis(1);
/// The most deposits (or retries) one slot of a [`RatioBudget`] counts.
pub const MAX_SLOT_COUNT: u64 = COUNT_MASK;

/// Bits 0..29 of a slot word: the count (deposits or retries) of its generation.
const COUNT_BITS: u32 = 29;
/// Bits 29..63 of a slot word: the generation it counts, modulo `2^34`.
const TAG_BITS: u32 = 34;
/// The count's bits, in place.
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// The tag's bits, shifted down.
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// Tag distances at or above this are read as "later than", below as "earlier than".
const HALF_TAGS: u64 = 1 << (TAG_BITS - 1);
/// Set on a retry word whose generation has ended: nothing more may be added to it.
const SEALED: u64 = 1 << 63;
const PPM: u64 = 1_000_000;

// === words ===

fn pack(generation: u64, count: u64) -> u64 {
    ((generation & TAG_MASK) << COUNT_BITS) | count
}
fn tag(w: u64) -> u64 {
    (w >> COUNT_BITS) & TAG_MASK
}
fn count(w: u64) -> u64 {
    w & COUNT_MASK
}
fn sealed(w: u64) -> bool {
    w & SEALED != 0
}

/// Where a word's generation lies relative to the generation `g` of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// The word counts the generation the window of `g` expects at its index.
    InWindow,
    /// An older generation: expired (or a tag that wrapped).
    Stale,
    /// A later generation than `g`.
    Ahead,
}

fn place(w: u64, g: u64, expected_age: u64) -> Place {
    let age = g.wrapping_sub(tag(w)) & TAG_MASK;
    if age == expected_age {
        Place::InWindow
    } else if age >= HALF_TAGS {
        Place::Ahead
    } else {
        Place::Stale
    }
}

// === builder ===

/// Builds a [`RatioBudget`]. Defaults are Finagle's: a 10 s window in 10 slots, a ratio of
/// 0.2, 10 retries per second of reserve, and the system clock.
#[derive(Clone, Debug)]
pub struct RatioBudgetBuilder {
    window: Duration,
    slots: u32,
    min_per_sec: u32,
    ratio: RatioSpec,
    clock: Option<SharedClock>,
}

#[derive(Clone, Copy, Debug)]
enum RatioSpec {
    Float(f64),
    Parts(u32, u32),
}

impl RatioBudgetBuilder {
    /// How long deposits and retries count (default 10 s; at most one day).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
    /// How many slots the window moves by (default 10; `1..=64`). The window must be a
    /// multiple of them, each at least 1 ms wide.
    pub fn slots(mut self, slots: u32) -> Self {
        self.slots = slots;
        self
    }
    /// Retries per second allowed even with no requests (default 10): a reserve of
    /// `floor(min × window in seconds)` retries per window. 0 for none.
    pub fn min_retries_per_sec(mut self, min: u32) -> Self {
        self.min_per_sec = min;
        self
    }
    /// Retries allowed per request (default 0.2; finite, `0..=1000`), rounded to the nearest
    /// millionth.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = RatioSpec::Float(ratio);
        self
    }
    /// The ratio as an exact fraction `num / den` (`den >= 1`, ratio at most 1000).
    pub fn ratio_parts(mut self, num: u32, den: u32) -> Self {
        self.ratio = RatioSpec::Parts(num, den);
        self
    }
    /// The clock (default: a new [`SystemClock`]).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the settings and builds the budget.
    ///
    /// # Errors
    /// [`RatioBudgetError`] names the first invalid setting.
    pub fn build(self) -> Result<RatioBudget, RatioBudgetError> {
        let window = self.window;
        if window.is_zero() {
            return Err(RatioBudgetError::ZeroWindow);
        }
        if window > MAX_RATIO_WINDOW {
            return Err(RatioBudgetError::WindowTooLong { window });
        }
        if self.slots == 0 || self.slots > MAX_RATIO_SLOTS {
            return Err(RatioBudgetError::Slots { slots: self.slots });
        }
        // At most a day in nanoseconds: fits u64.
        let window_ns = window.as_nanos() as u64;
        let slots = u64::from(self.slots);
        if !window_ns.is_multiple_of(slots) {
            return Err(RatioBudgetError::NotAMultiple {
                window,
                slots: self.slots,
            });
        }
        let width = window_ns / slots;
        if width < MIN_SLOT_WIDTH.as_nanos() as u64 {
            return Err(RatioBudgetError::SlotTooNarrow {
                width: Duration::from_nanos(width),
            });
        }
        let (num, den) = match self.ratio {
            RatioSpec::Float(r) => {
                if !(r.is_finite() && (0.0..=MAX_RATIO).contains(&r)) {
                    return Err(RatioBudgetError::InvalidRatio { ratio: r });
                }
                // At most 1e9: exact in f64 and u64.
                ((r * PPM as f64).round() as u64, PPM)
            }
            RatioSpec::Parts(num, den) => {
                let (n, d) = (u64::from(num), u64::from(den));
                if d == 0 || n > d * MAX_RATIO as u64 {
                    return Err(RatioBudgetError::InvalidRatioParts { num, den });
                }
                (n, d)
            }
        };
        let g = gcd(num, den);
        let (num, den) = (num / g, den / g);
        // min_per_sec < 2^32, window < 2^47 ns: the product fits u128 easily, the quotient u64.
        let reserve = (u128::from(self.min_per_sec) * u128::from(window_ns) / 1_000_000_000) as u64;
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(SystemClock::new()) as SharedClock);
        let g0 = generation_at(clock.now(), width);
        let word = pack(g0, 0);
        Ok(RatioBudget {
            width,
            window,
            deposits: (0..slots).map(|_| AtomicU64::new(word)).collect(),
            retries: (0..slots).map(|_| AtomicU64::new(word)).collect(),
            high: AtomicU64::new(g0),
            num,
            den,
            reserve,
            clock,
        })
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

fn generation_at(now: Duration, width: u64) -> u64 {
    // now / width <= now in ns / 1e6 < 2^64.
    (now.as_nanos() / u128::from(width)) as u64
}

// === impl RatioBudget ===

/// A retry budget that grants at most `ratio` retries per request over a rolling window, plus
/// a reserve for a minimum retry rate; exact under any interleaving. See the
/// [module docs](self) for the formulas and the protocol.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use weir::ManualClock;
/// use weir::policy::retry::RatioBudget;
///
/// let clock = ManualClock::new();
/// let budget = RatioBudget::builder()
///     .ratio(0.6)
///     .min_retries_per_sec(0)
///     .clock(Arc::new(clock.clone()))
///     .build()?;
/// for _ in 0..1000 {
///     budget.deposit();
/// }
/// let granted = (0..2000).filter(|_| budget.try_withdraw().is_withdrawn()).count();
/// assert_eq!(granted, 600);
/// clock.advance(Duration::from_secs(10)); // the window has passed: all expired
/// assert!(!budget.try_withdraw().is_withdrawn());
/// # Ok::<(), weir::policy::retry::RatioBudgetError>(())
/// ```
pub struct RatioBudget {
    /// Slot width in nanoseconds.
    width: u64,
    window: Duration,
    deposits: Box<[AtomicU64]>,
    retries: Box<[AtomicU64]>,
    /// The latest generation any operation has used.
    high: AtomicU64,
    /// Units deposited per request.
    num: u64,
    /// Units a retry costs.
    den: u64,
    /// Retries granted per window without deposits.
    reserve: u64,
    clock: SharedClock,
}

impl fmt::Debug for RatioBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatioBudget")
            .field("window", &self.window)
            .field("slots", &self.deposits.len())
            .field("ratio", &format_args!("{}/{}", self.num, self.den))
            .field("reserve", &self.reserve)
            .field("balance", &self.balance())
            .finish()
    }
}

impl RatioBudget {
    /// A builder with Finagle's defaults.
    pub fn builder() -> RatioBudgetBuilder {
        RatioBudgetBuilder {
            window: Duration::from_secs(10),
            slots: 10,
            min_per_sec: 10,
            ratio: RatioSpec::Float(0.2),
            clock: None,
        }
    }

    /// Units each request deposits: the ratio's reduced numerator.
    pub fn deposit_units(&self) -> u64 {
        self.num
    }
    /// Units each retry costs: the ratio's reduced denominator.
    pub fn retry_cost(&self) -> u64 {
        self.den
    }
    /// Retries the reserve grants per window.
    pub fn reserve_retries(&self) -> u64 {
        self.reserve
    }
    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn slot_count(&self) -> u64 {
        self.deposits.len() as u64
    }

    /// The generation to work in: the clock's, or the latest any operation used if that is
    /// later (so this budget's time never goes backwards).
    fn now_gen(&self) -> u64 {
        let g = generation_at(self.clock.now(), self.width);
        // Relaxed: see the module's Orderings.
        let h = self.high.load(Ordering::Relaxed);
        if g > h {
            // Relaxed: as above; raised before any word tagged `g` is written.
            self.high.fetch_max(g, Ordering::Relaxed).max(g)
        } else {
            h
        }
    }

    /// After seeing a word tagged later than `g`: the latest generation, if it is later.
    fn catch_up(&self, g: u64) -> Option<u64> {
        // Relaxed: the word we acquired carries the edge (module Orderings).
        let h = self.high.load(Ordering::Relaxed);
        (h > g).then_some(h)
    }

    /// The age (in generations, from `g`) of the generation the window expects at `index`.
    fn expected_age(&self, g: u64, index: u64) -> u64 {
        let n = self.slot_count();
        (g % n + n - index) % n
    }

    /// Counts one request.
    pub fn deposit(&self) {
        let n = self.slot_count();
        let mut g = self.now_gen();
        'generation: loop {
            let cell = &self.deposits[(g % n) as usize];
            // Acquire: see the module's Orderings.
            let mut w = cell.load(Ordering::Acquire);
            loop {
                let new = match place(w, g, 0) {
                    Place::InWindow if count(w) == COUNT_MASK => return,
                    Place::InWindow => w + 1,
                    Place::Stale => pack(g, 1),
                    Place::Ahead => match self.catch_up(g) {
                        Some(h) => {
                            g = h;
                            continue 'generation;
                        }
                        None => pack(g, 1), // a wrapped tag: expired
                    },
                };
                // AcqRel on success: Release publishes the tag after `high`; Acquire (also on
                // failure) reads the tag of the value we retry from.
                match cell.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return,
                    Err(actual) => w = actual,
                }
            }
        }
    }

    /// Grants one retry if the window's balance covers it, withdrawing its cost in the same
    /// compare-and-swap that checks it. Units are those of the [module docs](self): the
    /// balance is `reserve × den + num × D - den × W`.
    pub fn try_withdraw(&self) -> Withdrawal {
        let n = self.slot_count();
        let cost = i128::from(self.den);
        let mut g = self.now_gen();
        'scan: loop {
            let cur_index = g % n;
            let mut past = 0u64;
            let mut cur = 0u64;
            for i in 0..n {
                let age = self.expected_age(g, i);
                let cell = &self.retries[i as usize];
                // Acquire: see the module's Orderings.
                let mut w = cell.load(Ordering::Acquire);
                loop {
                    let p = match place(w, g, age) {
                        Place::Ahead => match self.catch_up(g) {
                            Some(h) => {
                                g = h;
                                continue 'scan;
                            }
                            None => Place::Stale, // a wrapped tag: expired
                        },
                        p => p,
                    };
                    let new = match (p, i == cur_index, sealed(w)) {
                        // The current generation's word, open: the one to withdraw from.
                        (Place::InWindow, true, false) => {
                            cur = w;
                            break;
                        }
                        // Sealed by a later generation: move forward.
                        (Place::InWindow, true, true) => {
                            g = match self.catch_up(g) {
                                Some(h) => h,
                                None => {
                                    // Unreachable while `high` is kept (module docs); stay
                                    // lock-free regardless.
                                    let next = g + 1;
                                    // Relaxed: as in `now_gen`.
                                    self.high.fetch_max(next, Ordering::Relaxed);
                                    next
                                }
                            };
                            continue 'scan;
                        }
                        // An expired word where the current generation goes: recycle it.
                        (Place::Stale | Place::Ahead, true, _) => pack(g, 0),
                        // A past generation of the window, final: count it.
                        (Place::InWindow, false, true) => {
                            past += count(w);
                            break;
                        }
                        // A past generation still open: seal it, then count it.
                        (Place::InWindow, false, false) => w | SEALED,
                        // An expired word where a past generation of the window goes: replace
                        // it with that generation, empty and sealed, so no straggler can still
                        // open it.
                        // (`Ahead` was resolved above: moved forward, or found wrapped.)
                        (Place::Stale | Place::Ahead, false, _) => {
                            pack(g.wrapping_sub(age), 0) | SEALED
                        }
                    };
                    // AcqRel / Acquire: as in `deposit`.
                    match cell.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => {
                            if i == cur_index {
                                cur = new;
                            } else {
                                past += count(new);
                            }
                            break;
                        }
                        Err(actual) => w = actual,
                    }
                }
            }
            let mut deposits = 0u64;
            for i in 0..n {
                // Acquire: see the module's Orderings.
                let w = self.deposits[i as usize].load(Ordering::Acquire);
                match place(w, g, self.expected_age(g, i)) {
                    Place::InWindow => deposits += count(w),
                    Place::Stale => {}
                    Place::Ahead => {
                        if let Some(h) = self.catch_up(g) {
                            g = h;
                            continue 'scan;
                        }
                    }
                }
            }
            let funds =
                i128::from(self.reserve) * cost + i128::from(self.num) * i128::from(deposits);
            let cell = &self.retries[cur_index as usize];
            // Whether the current word moved under us since `funds` was read: then deposits may
            // have moved too, and a refusal must come from a fresh scan (another thread's CAS
            // succeeded, so rescanning keeps the budget lock-free).
            let mut raced = false;
            loop {
                let balance = funds - cost * i128::from(past + count(cur));
                if (balance < cost || count(cur) == COUNT_MASK) && raced {
                    continue 'scan;
                }
                if balance < cost || count(cur) == COUNT_MASK {
                    return Withdrawal::Refused {
                        cost: 0,
                        balance: sat_i64(balance),
                        required: sat_i64(cost),
                    };
                }
                // AcqRel / Acquire: as in `deposit`. Strong: a spurious failure would rescan.
                match cell.compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        return Withdrawal::Withdrawn {
                            cost: self.den,
                            balance: sat_i64(balance - cost),
                        };
                    }
                    // Another retry in the same generation: only the count moved.
                    Err(actual) if tag(actual) == tag(cur) && !sealed(actual) => {
                        cur = actual;
                        raced = true;
                    }
                    // Sealed or recycled by a later generation.
                    Err(_) => continue 'scan,
                }
            }
        }
    }

    /// The balance now, in units (see the [module docs](self)); negative while expired
    /// deposits leave retries unfunded. A read-only estimate under concurrency.
    pub fn balance(&self) -> i64 {
        let n = self.slot_count();
        let g = self.now_gen();
        let (mut d, mut w) = (0u64, 0u64);
        for i in 0..n {
            let age = self.expected_age(g, i);
            // Acquire: see the module's Orderings.
            let dw = self.deposits[i as usize].load(Ordering::Acquire);
            if place(dw, g, age) == Place::InWindow {
                d += count(dw);
            }
            let rw = self.retries[i as usize].load(Ordering::Acquire);
            if place(rw, g, age) == Place::InWindow {
                w += count(rw);
            }
        }
        let cost = i128::from(self.den);
        sat_i64(
            i128::from(self.reserve) * cost + i128::from(self.num) * i128::from(d)
                - cost * i128::from(w),
        )
    }

    /// Retries the balance covers now (0 when it is negative). A read-only estimate under
    /// concurrency.
    pub fn available(&self) -> u64 {
        u64::try_from(self.balance()).unwrap_or(0) / self.den
    }
}

impl RetryBudget for RatioBudget {
    fn deposit(&self) {
        RatioBudget::deposit(self);
    }
    /// Every retry costs the same, whatever its class.
    fn try_withdraw(&self, _class: FailureClass) -> Withdrawal {
        RatioBudget::try_withdraw(self)
    }
    fn on_success(&self, _last_withdrawal: u64) {}
}

/// A [`RatioBudget`] setting was invalid.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum RatioBudgetError {
    /// The window must be longer than zero (10 s is Finagle's default).
    ZeroWindow,
    /// The window may be at most [`MAX_RATIO_WINDOW`].
    WindowTooLong {
        /// The rejected window.
        window: Duration,
    },
    /// Slots must be in `1..=64`.
    Slots {
        /// The rejected number.
        slots: u32,
    },
    /// The window must be a whole multiple of the slots (in nanoseconds).
    NotAMultiple {
        /// The window.
        window: Duration,
        /// The slots.
        slots: u32,
    },
    /// A slot (window / slots) must be at least [`MIN_SLOT_WIDTH`]; use fewer slots.
    SlotTooNarrow {
        /// The rejected width.
        width: Duration,
    },
    /// The ratio must be finite and in `0..=1000`.
    InvalidRatio {
        /// The rejected ratio.
        ratio: f64,
    },
    /// An exact ratio needs `den >= 1` and `num / den <= 1000`.
    InvalidRatioParts {
        /// The numerator.
        num: u32,
        /// The denominator.
        den: u32,
    },
}

impl fmt::Display for RatioBudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RatioBudgetError::ZeroWindow => {
                f.write_str("retry budget window must be longer than zero")
            }
            RatioBudgetError::WindowTooLong { window } => {
                write!(f, "retry budget window {window:?} is longer than one day")
            }
            RatioBudgetError::Slots { slots } => {
                write!(f, "retry budget slots must be in 1..=64, got {slots}")
            }
            RatioBudgetError::NotAMultiple { window, slots } => {
                write!(
                    f,
                    "retry budget window {window:?} is not a multiple of {slots} slots"
                )
            }
            RatioBudgetError::SlotTooNarrow { width } => {
                write!(
                    f,
                    "retry budget slots are {width:?} wide; the minimum is 1 ms"
                )
            }
            RatioBudgetError::InvalidRatio { ratio } => {
                write!(f, "retry ratio must be finite and in 0..=1000, got {ratio}")
            }
            RatioBudgetError::InvalidRatioParts { num, den } => {
                write!(
                    f,
                    "retry ratio {num}/{den} needs a denominator >= 1 and a value <= 1000"
                )
            }
        }
    }
}

impl std::error::Error for RatioBudgetError {}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn budget(clock: &ManualClock, ratio: f64, min: u32) -> RatioBudget {
        RatioBudget::builder()
            .ratio(ratio)
            .min_retries_per_sec(min)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap()
    }

    #[test]
    fn words_pack_and_place() {
        let w = pack(5, 7);
        assert_eq!((tag(w), count(w), sealed(w)), (5, 7, false));
        assert!(sealed(w | SEALED));
        assert_eq!(place(w, 5, 0), Place::InWindow);
        assert_eq!(place(w, 6, 1), Place::InWindow);
        assert_eq!(place(w, 15, 0), Place::Stale);
        assert_eq!(place(w, 4, 0), Place::Ahead);
        // Wrapping: generation 2^34 + 5 sees tag 5 as the current one.
        assert_eq!(place(w, (1 << 34) + 5, 0), Place::InWindow);
        assert_eq!(place(pack(TAG_MASK, 0), 1, 2), Place::InWindow);
    }

    #[test]
    fn ratios_reduce_exactly() {
        let c = ManualClock::new();
        let b = budget(&c, 0.6, 0);
        assert_eq!((b.deposit_units(), b.retry_cost()), (3, 5));
        let b = budget(&c, 0.0, 0);
        assert_eq!((b.deposit_units(), b.retry_cost()), (0, 1));
        let b = RatioBudget::builder()
            .ratio_parts(2, 6)
            .clock(Arc::new(c.clone()))
            .build()
            .unwrap();
        assert_eq!((b.deposit_units(), b.retry_cost()), (1, 3));
        assert_eq!(b.reserve_retries(), 100); // 10/s over 10 s
        assert!(format!("{b:?}").contains("1/3"));
    }

    #[test]
    fn reserve_and_expiry() {
        let c = ManualClock::new();
        let b = budget(&c, 0.5, 1); // reserve 10 per 10 s window
        assert_eq!(b.available(), 10);
        let granted = (0..20).filter(|_| b.try_withdraw().is_withdrawn()).count();
        assert_eq!(granted, 10);
        assert_eq!(b.balance(), 0);
        // Retries leave the window with their generation.
        c.advance(Duration::from_secs(10));
        assert_eq!(b.available(), 10);
        // Deposits in slot 0, retries drawn in slot 5: when slot 0 expires the balance is
        // negative until new requests pay it back.
        let c = ManualClock::new();
        let b = budget(&c, 1.0, 0);
        for _ in 0..4 {
            b.deposit();
        }
        c.advance(Duration::from_secs(5));
        assert_eq!(
            (0..9).filter(|_| b.try_withdraw().is_withdrawn()).count(),
            4
        );
        c.advance(Duration::from_secs(5));
        assert_eq!(b.balance(), -4);
        assert_eq!(b.available(), 0);
        for _ in 0..5 {
            b.deposit();
        }
        assert_eq!(
            (0..9).filter(|_| b.try_withdraw().is_withdrawn()).count(),
            1
        );
    }

    #[test]
    fn stale_past_words_become_sealed_tombstones() {
        let c = ManualClock::new();
        let b = RatioBudget::builder()
            .window(Duration::from_secs(2))
            .slots(2)
            .ratio(1.0)
            .min_retries_per_sec(0)
            .clock(Arc::new(c.clone()))
            .build()
            .unwrap();
        c.set(Duration::from_secs(7)).unwrap(); // generation 7; index 0 holds generation 0
        b.deposit();
        assert!(b.try_withdraw().is_withdrawn());
        let past = b.retries[0].load(Ordering::Relaxed);
        assert_eq!((tag(past), count(past), sealed(past)), (6, 0, true));
        let cur = b.retries[1].load(Ordering::Relaxed);
        assert_eq!((tag(cur), count(cur), sealed(cur)), (7, 1, false));
    }

    #[test]
    fn invalid_settings() {
        let c: SharedClock = Arc::new(ManualClock::new());
        let e = |f: fn(RatioBudgetBuilder) -> RatioBudgetBuilder| {
            f(RatioBudget::builder().clock(c.clone()))
                .build()
                .unwrap_err()
        };
        assert_eq!(
            e(|b| b.window(Duration::ZERO)),
            RatioBudgetError::ZeroWindow
        );
        assert!(matches!(
            e(|b| b.window(Duration::MAX)),
            RatioBudgetError::WindowTooLong { .. }
        ));
        assert_eq!(e(|b| b.slots(0)), RatioBudgetError::Slots { slots: 0 });
        assert_eq!(e(|b| b.slots(65)), RatioBudgetError::Slots { slots: 65 });
        assert!(matches!(
            e(|b| b.slots(3)),
            RatioBudgetError::NotAMultiple { .. }
        ));
        assert!(matches!(
            e(|b| b.window(Duration::from_millis(5)).slots(10)),
            RatioBudgetError::SlotTooNarrow { .. }
        ));
        for r in [f64::NAN, -0.5, 1000.5, f64::INFINITY] {
            assert!(matches!(
                e_ratio(&c, r),
                RatioBudgetError::InvalidRatio { .. }
            ));
        }
        assert!(matches!(
            e(|b| b.ratio_parts(1, 0)),
            RatioBudgetError::InvalidRatioParts { .. }
        ));
        assert!(matches!(
            e(|b| b.ratio_parts(1001, 1)),
            RatioBudgetError::InvalidRatioParts { .. }
        ));
        assert!(!RatioBudgetError::ZeroWindow.to_string().is_empty());
    }

    fn e_ratio(c: &SharedClock, r: f64) -> RatioBudgetError {
        RatioBudget::builder()
            .clock(c.clone())
            .ratio(r)
            .build()
            .unwrap_err()
    }
}
