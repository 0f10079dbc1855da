//! The ratio budget: retries may be at most a fixed fraction of recent requests, plus a
//! reserve for a minimum retry rate (Finagle's `RetryBudget`, tower's `TpsBudget`).
//!
//! The semantics, the exactness guarantee and the limits are documented on [`RatioBudget`];
//! what follows is the protocol that implements them.
//!
//! # Exactness under concurrency
//! The guarantee: for every generation `g` in which a retry was granted, the retries ever
//! granted in the window of `g` never exceed `reserve + ratio × D(g)`. No interleaving of
//! deposits, retries and clock movement breaks it (loom checks the protocol below), and with no
//! clock movement concurrent retries are granted exactly as a sequence would grant them.
//!
//! The slots form a ring whose length is the slot count rounded up to a power of two, so
//! generation `g` lives at index `g & mask` and no operation divides (the clock's reading is
//! turned into a generation by comparing it with the end of the latest generation; a division
//! happens only when the clock has skipped a generation). Each slot has one word counting
//! retries and, per *stripe*, one word counting deposits, each tagged with the generation it
//! counts (`[generation mod 2^34: 34][sealed: 1][count: 29]` for retries, `[generation mod
//! 2^34: 34][count: 30]` for deposits). The deposits are striped because every request makes
//! one: a thread deposits into its own stripe (its slot in `crate::slot`, modulo the stripe
//! count, one stripe per hardware thread by default), whose ring sits on 128-byte blocks of its
//! own, so deposits from different threads do not write the same line. Every reader that needs
//! `D` sums the stripes; each stripe's words follow the protocol below on their own. The retry
//! words are on blocks of their own as well.
//!
//! - **Deposit**: a load of the caller's stripe's current deposit word and, when it already
//!   counts `g`, one `fetch_add`. If the word moved on to a later generation between the two
//!   (a thread there recycled it), the deposit counts in that later generation, never in the
//!   past; a word left from an expired generation is recycled to `g` by a compare-and-swap.
//! - **Retry, full scan**: the retry words of the window's past generations are *sealed* (a
//!   compare-and-swap sets the bit; a word left from an expired generation is replaced by a
//!   sealed empty word of the generation the window expects there), so nothing can be added to
//!   a past generation after a newer generation has been seen; the current retry word is
//!   recycled to `g` if it holds an expired generation. Then the deposit words of the window are
//!   summed, and the retry is granted with one compare-and-swap on the current retry word, which
//!   fails if the word moved (another retry, or a seal by a newer generation). The scan leaves
//!   a *summary* of the window's past generations, tagged `g`: their retry count, final since
//!   sealed, and their deposit count as read, which can only have grown since.
//! - **Retry, fast path**: with the summary tagged `g`, a retry reads it, its own stripe's
//!   current deposit word, what its stripe last saw of the other stripes' current words (a
//!   per-stripe word tagged `g`, written only by that stripe's threads), and the current retry
//!   word (in that order, so that only arithmetic separates the retry word's load from its
//!   compare-and-swap), and grants with the same compare-and-swap if the funds they show
//!   cover it. If they fall short, it sums the other stripes' current words afresh, remembers
//!   the sum in its stripe's word, and checks once more. Those funds are a lower bound of the
//!   window's (exact retries, a lower bound of deposits), so a grant is always safe; the fast
//!   path never refuses: when the funds it sees fall short, the full scan decides. So
//!   refusals are as exact as before, and a single thread's grants and balances are exactly
//!   the formula's.
//!
//! A thread that finds a word tagged with a later generation than its own moves forward to the
//! latest generation any operation has used (the `high` mark), so stragglers never write into
//! a generation that a newer one has sealed.
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
//! - The deposit's `fetch_add` is `Relaxed`: it does not change the tag, and as a
//!   read-modify-write it continues the release sequence of the compare-and-swap that wrote the
//!   tag, so a thread that acquires the word it wrote still sees `high` at least at the tag.
//!   It is sequenced before any later retry of the same thread, whose `AcqRel` compare-and-swap
//!   publishes it: a retry that acquires a retry word sees the deposits behind the retries it
//!   counts (the full scan reads the retry words before the deposit words for this reason).
//! - Summary words, and each stripe's word of the other stripes' deposits it has seen:
//!   `Relaxed` loads and stores. A reader trusts only the numbers, never other
//!   memory: the retry count is final, because the words it sums were sealed before the
//!   summary was written, and the deposit count is a lower bound at any time. A summary is used
//!   only when its tag is the reader's generation.
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
/// The most deposits (per stripe: see [`RatioBudgetBuilder::stripes`]) or retries one slot of a
/// [`RatioBudget`] counts.
pub const MAX_SLOT_COUNT: u64 = COUNT_MASK;
/// The most stripes a [`RatioBudget`] spreads its deposits over.
pub const MAX_DEPOSIT_STRIPES: u32 = 16;
/// Deposit words per 128-byte block: a stripe's ring takes whole blocks, so no two stripes
/// share a cache line (nor an adjacent-line prefetch pair).
const BLOCK_WORDS: usize = 16;

/// Bits 0..29 of a slot word: the count (deposits or retries) of its generation.
const COUNT_BITS: u32 = 29;
/// Bits 30..64 of a slot word: the generation it counts, modulo `2^34`.
const TAG_SHIFT: u32 = 30;
const TAG_BITS: u32 = 64 - TAG_SHIFT;
/// The count's bits, in place.
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// The tag's bits, shifted down.
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// Tag distances at or above this are read as "later than", below as "earlier than".
const HALF_TAGS: u64 = 1 << (TAG_BITS - 1);
/// Bit 29 of a retry word: set once its generation has ended; nothing more may be added to it.
const SEALED: u64 = 1 << COUNT_BITS;
/// Bits 0..30 of a deposit word: its count, which `fetch_add` raises. Deposits stop at
/// [`COUNT_MASK`]; bit 29 is slack for the adds that race past the limit (each was checked
/// against it just before), so no carry ever reaches the tag. Readers clamp to `COUNT_MASK`.
const DEPOSIT_FIELD: u64 = (1 << TAG_SHIFT) - 1;
/// Bits 0..30 of a summary word: a count of up to `2^30 - 1`.
const SUMMARY_FIELD: u64 = (1 << TAG_SHIFT) - 1;
/// The generation an operation works in never exceeds this, so `g + 1` cannot overflow.
const MAX_GENERATION: u64 = u64::MAX >> 1;
const PPM: u64 = 1_000_000;
const NANOS_PER_SEC: u64 = 1_000_000_000;

// === words ===

/// A word of generation `generation` (modulo `2^34`) holding `count`; the tag part of a word is
/// `pack(generation, 0)`.
fn pack(generation: u64, count: u64) -> u64 {
    (generation << TAG_SHIFT) | count
}
fn tag(w: u64) -> u64 {
    w >> TAG_SHIFT
}
/// A retry word's count.
fn count(w: u64) -> u64 {
    w & COUNT_MASK
}
/// A deposit word's count.
fn deposit_count(w: u64) -> u64 {
    (w & DEPOSIT_FIELD).min(COUNT_MASK)
}
fn sealed(w: u64) -> bool {
    w & SEALED != 0
}

/// Where a word's generation lies relative to the generation `g` of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// The word counts the generation `g - expected_age`.
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
    stripes: Option<u32>,
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
    /// How many stripes the deposits are spread over (default: one per hardware thread).
    /// Rounded up to a power of two, at most [`MAX_DEPOSIT_STRIPES`]; 0 counts as 1. Each
    /// thread deposits into its own stripe's words, on cache lines of their own, so requests
    /// on different threads do not write the same line; withdrawals read every stripe when
    /// they need to. One stripe keeps the budget at one line of deposit words per 16 slots;
    /// each stripe adds that much again (128 bytes per 16 slots).
    pub fn stripes(mut self, stripes: u32) -> Self {
        self.stripes = Some(stripes);
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
        // A power of two at least `slots`, so that a generation's index is `g & mask`.
        let ring = slots.next_power_of_two();
        let mask = ring - 1;
        // Index `i` starts with the latest generation at or before `g0` that maps to it
        // (earlier than the budget, for all but `g0`'s own index): empty, and sealed for
        // retries unless it is `g0`'s.
        let start = |i: u64| g0.wrapping_sub(g0.wrapping_sub(i) & mask);
        let stripes = stripes_for(self.stripes);
        let blocks = (ring as usize).div_ceil(BLOCK_WORDS);
        Ok(RatioBudget {
            width,
            window,
            retries: (0..blocks)
                .map(|b| {
                    Block(std::array::from_fn(|k| {
                        let generation = start((b * BLOCK_WORDS + k) as u64 & mask);
                        let seal = if generation == g0 { 0 } else { SEALED };
                        AtomicU64::new(pack(generation, 0) | seal)
                    }))
                })
                .collect(),
            deposits: (0..stripes * blocks)
                .map(|b| {
                    let first = (b % blocks) * BLOCK_WORDS;
                    Block(std::array::from_fn(|k| {
                        AtomicU64::new(pack(start((first + k) as u64 & mask), 0))
                    }))
                })
                .collect(),
            seen: (0..stripes)
                .map(|_| {
                    // Tagged with a generation before `g0`: nothing seen yet.
                    Block(std::array::from_fn(|_| {
                        AtomicU64::new(pack(g0.wrapping_sub(1), 0))
                    }))
                })
                .collect(),
            blocks,
            stripe_mask: stripes - 1,
            n: slots,
            mask,
            high: AtomicU64::new(g0),
            // Tagged with a generation before `g0`: no summary yet.
            past_retries: AtomicU64::new(pack(g0.wrapping_sub(1), 0)),
            past_deposits: AtomicU64::new(pack(g0.wrapping_sub(1), 0)),
            num,
            den,
            base: i128::from(reserve) * i128::from(den),
            reserve,
            clock,
        })
    }
}

/// How many deposit stripes a budget gets: `asked` (or, if `None`, one per hardware thread;
/// one under loom, whose models ask for more where they check stripes), rounded up to a power
/// of two, at most [`MAX_DEPOSIT_STRIPES`].
fn stripes_for(asked: Option<u32>) -> usize {
    #[cfg(not(weir_loom))]
    let parallelism = || {
        static PARALLELISM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *PARALLELISM.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    };
    #[cfg(weir_loom)]
    let parallelism = || 1;
    let n = asked.map_or_else(parallelism, |n| n.max(1) as usize);
    n.min(MAX_DEPOSIT_STRIPES as usize).next_power_of_two()
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// `now` in whole nanoseconds, if that fits a `u64` (584 years).
#[inline]
fn nanos_u64(now: Duration) -> Option<u64> {
    now.as_secs()
        .checked_mul(NANOS_PER_SEC)?
        .checked_add(u64::from(now.subsec_nanos()))
}

/// `floor(now / width)`, at most [`MAX_GENERATION`]. Divides: kept off the hot path (see
/// `RatioBudget::now_gen`).
#[cold]
#[inline(never)]
fn generation_at(now: Duration, width: u64) -> u64 {
    match nanos_u64(now) {
        Some(ns) => ns / width,
        None => u64::try_from(now.as_nanos() / u128::from(width)).unwrap_or(MAX_GENERATION),
    }
    .min(MAX_GENERATION)
}

// === impl RatioBudget ===

/// A retry budget that grants at most `ratio` retries per request over a rolling window, plus
/// a reserve for a minimum retry rate; exact under any interleaving.
///
/// # Semantics
/// Time is cut into `slots` generations of `width = window / slots` each (generation
/// `g = floor(now / width)`); the window at generation `g` is the `slots` generations
/// `g - slots + 1 ..= g`. With the ratio written as a reduced fraction `num / den`:
///
/// - each request deposits `num` units (a [`deposit`](RatioBudget::deposit));
/// - each retry costs `den` units (a [`try_withdraw`](RatioBudget::try_withdraw));
/// - the reserve is `reserve = floor(min_retries_per_sec × window in seconds)` retries, worth
///   `reserve × den` units;
/// - the balance at generation `g` is `reserve × den + num × D(g) - den × W(g)`, where `D(g)`
///   and `W(g)` count the deposits and granted retries of the window;
/// - a retry is granted iff the balance is at least `den`, that is iff
///   `W(g) + 1 <= reserve + ratio × D(g)`, computed exactly in integers.
///
/// So with 1,000 requests in the window, no reserve and a ratio of 0.6 (`3/5`), exactly 600
/// retries are granted: not 599 (a cost rounded to `round(1000 / 0.6) = 1667` units) and not
/// 1,000 (a cost truncated to `(1.0 / 0.6) as isize = 1` unit per deposit of 1, as in tower's
/// `TpsBudget`). A ratio given as an `f64` is rounded to the nearest millionth;
/// [`ratio_parts`](RatioBudgetBuilder::ratio_parts) takes an exact fraction such as `1/3`.
///
/// Deposits and retries leave the window together with their generation, so the balance can go
/// below zero when deposits expire that newer retries were drawn against (the semantics of
/// Finagle and tower); retries are then refused until requests pay it back.
///
/// # Exactness under concurrency
/// The guarantee: for every generation `g` in which a retry was granted, the retries ever
/// granted in the window of `g` never exceed `reserve + ratio × D(g)`. No interleaving of
/// deposits, retries and clock movement breaks it (loom checks the protocol below), and with no
/// clock movement concurrent retries are granted exactly as a sequence would grant them.
///
/// # Concurrency
/// Every request deposits, so deposits are striped: a thread deposits into its own stripe's
/// words, on cache lines of their own (one stripe per hardware thread by default; see
/// [`RatioBudgetBuilder::stripes`]), and requests on different threads do not contend. A
/// retry reads its own stripe, and the other stripes only when that falls short of the cost.
///
/// # Limits
/// - A slot counts at most `2^29 - 1` (536,870,911) deposits per stripe and as many retries;
///   further deposits in that slot's stripe are not counted (fewer retries, never more), and a
///   retry that would overflow is refused. (A deposit checks the count before its
///   `fetch_add`; the adds that race past the limit land in the deposit word's spare 30th
///   count bit, which would take `2^29` threads at once to overflow.)
/// - Generations are stored modulo `2^34`. A slot (or the summary) left untouched for an exact
///   multiple of `2^34` generations (at the smallest width of 1 ms, about 199 years of the
///   budget standing idle, or a clock that jumps that far at once) could be mistaken for a
///   current one.
///
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
    /// The ring of retry words, `[tag: 34][sealed: 1][count: 29]`, in `blocks` blocks:
    /// generation `g` lives at word `g & mask`. Its length is the window's slot count rounded
    /// up to a power of two; the indices of the generations older than the window are simply
    /// not read.
    retries: Box<[Block]>,
    /// The rings of deposit words, `[tag: 34][count: 30]` (see [`DEPOSIT_FIELD`]), one ring
    /// per stripe, each `blocks` blocks long: stripe `s` keeps generation `g` at word
    /// `g & mask` of its blocks `s × blocks ..`.
    deposits: Box<[Block]>,
    /// Per stripe, word 0 of its own block: `[tag: 34][count: 30]`, a lower bound of the other
    /// stripes' deposits in the tagged generation, as a withdrawal of this stripe last summed
    /// them (written only by this stripe's threads, so its line stays theirs).
    seen: Box<[Block]>,
    /// Blocks per stripe.
    blocks: usize,
    /// The stripe count minus one (a power of two minus one).
    stripe_mask: usize,
    /// Generations per window (the builder's `slots`).
    n: u64,
    /// The ring's length minus one.
    mask: u64,
    /// The latest generation any operation has used.
    high: AtomicU64,
    /// The summary of a window's past generations (all but its current one), `[tag][count]`
    /// with the window's current generation as the tag: their retries (final, since sealed)
    /// and their deposits (as a scan last saw them; they can only have grown since).
    past_retries: AtomicU64,
    past_deposits: AtomicU64,
    /// Units deposited per request.
    num: u64,
    /// Units a retry costs.
    den: u64,
    /// `reserve × den`: the units the reserve is worth.
    base: i128,
    /// Retries granted per window without deposits.
    reserve: u64,
    clock: SharedClock,
}

/// 16 slot words alone on 128 bytes: retry words that every thread writes share no line with
/// anything else, and deposit words share none with another stripe's.
#[repr(align(128))]
struct Block([AtomicU64; BLOCK_WORDS]);

impl fmt::Debug for RatioBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatioBudget")
            .field("window", &self.window)
            .field("slots", &self.n)
            .field("ratio", &format_args!("{}/{}", self.num, self.den))
            .field("reserve", &self.reserve)
            .field("stripes", &(self.stripe_mask + 1))
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
            stripes: None,
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

    /// The retry word of generation `g`.
    #[inline(always)]
    fn retry_word(&self, g: u64) -> &AtomicU64 {
        // The mask keeps the index below the ring's length, a power of two.
        let i = (g & self.mask) as usize;
        &self.retries[i / BLOCK_WORDS].0[i % BLOCK_WORDS]
    }

    /// The deposit word of generation `g` in stripe `stripe` (`<= stripe_mask`).
    #[inline(always)]
    fn deposit_word(&self, stripe: usize, g: u64) -> &AtomicU64 {
        let i = (g & self.mask) as usize;
        &self.deposits[stripe * self.blocks + i / BLOCK_WORDS].0[i % BLOCK_WORDS]
    }

    /// The calling thread's stripe: its slot (`crate::slot`), modulo the stripe count. A thread
    /// without a slot shares whichever stripe that gives; any stripe is correct, since every
    /// change to a deposit word is a read-modify-write.
    #[inline(always)]
    fn own_stripe(&self) -> usize {
        if self.stripe_mask == 0 {
            return 0;
        }
        crate::slot::current() as usize & self.stripe_mask
    }

    /// The generation to work in: the clock's, or the latest any operation used if that is
    /// later (so this budget's time never goes backwards). No division unless the clock has
    /// left the latest generation and the one after it.
    #[inline(always)]
    fn now_gen(&self) -> u64 {
        let now = self.clock.now();
        // Relaxed: see the module's Orderings.
        let h = self.high.load(Ordering::Relaxed);
        let g = match nanos_u64(now) {
            Some(ns) => {
                // h <= MAX_GENERATION, so h + 1 fits; the product may not, and one that
                // overflows is beyond any `ns`.
                let end = (h + 1).checked_mul(self.width);
                match end {
                    None => return h,
                    Some(end) if ns < end => return h,
                    Some(end) if ns - end < self.width => h + 1,
                    Some(_) => generation_at(now, self.width),
                }
            }
            None => generation_at(now, self.width),
        };
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

    /// Counts one request.
    pub fn deposit(&self) {
        let mut g = self.now_gen();
        let stripe = self.own_stripe();
        loop {
            let cell = self.deposit_word(stripe, g);
            // Acquire: see the module's Orderings.
            let w = cell.load(Ordering::Acquire);
            if w & !DEPOSIT_FIELD == pack(g, 0) {
                if w & DEPOSIT_FIELD < COUNT_MASK {
                    // Relaxed: the tag was published by the Release that wrote it, and this
                    // RMW continues that release sequence; the count needs only atomicity.
                    // Should the word have moved on to a later generation since the load (a
                    // thread that was there recycled it), the deposit counts there: never in
                    // the past.
                    cell.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            match self.open_deposits(cell, w, g) {
                Ok(()) => return,
                Err(h) => g = h,
            }
        }
    }

    /// [`deposit`](Self::deposit)'s slow path: the word of `g`'s index, `w`, is not `g`'s yet.
    /// Recycles it with the deposit counted; `Err` with a later generation to move to.
    #[cold]
    fn open_deposits(&self, cell: &AtomicU64, mut w: u64, g: u64) -> Result<(), u64> {
        loop {
            let new = match place(w, g, 0) {
                Place::InWindow if w & DEPOSIT_FIELD >= COUNT_MASK => return Ok(()),
                Place::InWindow => w + 1,
                Place::Stale => pack(g, 1),
                Place::Ahead => match self.catch_up(g) {
                    Some(h) => return Err(h),
                    None => pack(g, 1), // a wrapped tag: expired
                },
            };
            // AcqRel on success: Release publishes the tag after `high`; Acquire (also on
            // failure) reads the tag of the value we retry from.
            match cell.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(actual) => w = actual,
            }
        }
    }

    /// A past generation's retry word `w` (generation `g - age`, at `cell`) that is not yet
    /// sealed with the right tag: seals it, or replaces an expired word with a sealed empty one
    /// of that generation. `Ok` with its final count; `Err` with a later generation to move to.
    #[cold]
    fn seal_past(&self, cell: &AtomicU64, mut w: u64, g: u64, age: u64) -> Result<u64, u64> {
        loop {
            let p = match place(w, g, age) {
                Place::Ahead => match self.catch_up(g) {
                    Some(h) => return Err(h),
                    None => Place::Stale, // a wrapped tag: expired
                },
                p => p,
            };
            let new = match (p, sealed(w)) {
                // Final: count it.
                (Place::InWindow, true) => return Ok(count(w)),
                // Still open: seal it, then count it.
                (Place::InWindow, false) => w | SEALED,
                // An expired word where a past generation of the window goes: replace it with
                // that generation, empty and sealed, so no straggler can still open it.
                // (`Ahead` was resolved above: moved forward, or found wrapped.)
                (Place::Stale | Place::Ahead, _) => pack(g.wrapping_sub(age), 0) | SEALED,
            };
            // AcqRel / Acquire: as in `open_deposits`.
            match cell.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(count(new)),
                Err(actual) => w = actual,
            }
        }
    }

    /// The current generation's retry word `w` (at `cell`) that is not `g`'s open word:
    /// recycles an expired one. `Ok` with the open word of `g`; `Err` with a later generation
    /// to move to.
    #[cold]
    fn open_retries(&self, cell: &AtomicU64, mut w: u64, g: u64) -> Result<u64, u64> {
        loop {
            let p = match place(w, g, 0) {
                Place::Ahead => match self.catch_up(g) {
                    Some(h) => return Err(h),
                    None => Place::Stale, // a wrapped tag: expired
                },
                p => p,
            };
            let new = match (p, sealed(w)) {
                (Place::InWindow, false) => return Ok(w),
                // Sealed by a later generation: move forward. If `high` shows none, the word
                // only looks like `g`'s: a generation that far back (2^34 generations, or the
                // ring's starting words after a jump of nearly that) can be sealed, `g` cannot
                // be until a later generation was used. Expired, like any wrapped tag.
                (Place::InWindow, true) => match self.catch_up(g) {
                    Some(h) => return Err(h),
                    None => pack(g, 0),
                },
                // An expired word where the current generation goes: recycle it.
                (Place::Stale | Place::Ahead, _) => pack(g, 0),
            };
            // AcqRel / Acquire: as in `open_deposits`.
            match cell.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(new),
                Err(actual) => w = actual,
            }
        }
    }

    /// Sums the deposit words of `g`'s window: `(past generations, current generation)`.
    /// `Err` with a later generation to move to.
    #[inline(always)]
    fn window_deposits(&self, g: u64) -> Result<(u64, u64), u64> {
        let mut deposits = [0u64; 2];
        for stripe in 0..=self.stripe_mask {
            for age in 0..self.n {
                let generation = g.wrapping_sub(age);
                // Acquire: see the module's Orderings.
                let w = self
                    .deposit_word(stripe, generation)
                    .load(Ordering::Acquire);
                if w & !DEPOSIT_FIELD == pack(generation, 0) {
                    deposits[usize::from(age == 0)] += deposit_count(w);
                } else if place(w, g, age) == Place::Ahead
                    && let Some(h) = self.catch_up(g)
                {
                    return Err(h);
                }
                // Otherwise expired (or a wrapped tag): nothing of the window.
            }
        }
        Ok((deposits[0], deposits[1]))
    }

    /// Grants one retry if the window's balance covers it, withdrawing its cost in the same
    /// compare-and-swap that checks it. Units are those of [`RatioBudget`]'s docs: the
    /// balance is `reserve × den + num × D - den × W`.
    pub fn try_withdraw(&self) -> Withdrawal {
        let g = self.now_gen();
        match self.withdraw_fast(g) {
            Some(w) => w,
            None => self.withdraw_scan(g),
        }
    }

    /// Grants a retry from the summary of `g`'s past generations and the current slot alone:
    /// `None` unless the summary is `g`'s and the funds it shows cover the retry (it never
    /// refuses; [`withdraw_scan`](Self::withdraw_scan) does, after reading every word).
    #[inline(always)]
    fn withdraw_fast(&self, g: u64) -> Option<Withdrawal> {
        // Relaxed: the summary's numbers are exact retries and a lower bound of deposits
        // whenever they are read (module Orderings); its tag says which window they are for.
        let sw = self.past_retries.load(Ordering::Relaxed);
        // Relaxed: as above.
        let sd = self.past_deposits.load(Ordering::Relaxed);
        if sw & !SUMMARY_FIELD != pack(g, 0) || sd & !SUMMARY_FIELD != pack(g, 0) {
            return None;
        }
        let (past_w, past_d) = (sw & SUMMARY_FIELD, sd & SUMMARY_FIELD);
        let retries = self.retry_word(g);
        let own = self.own_stripe();
        // The current generation's deposits counted so far: the caller's own stripe and what
        // its stripe last saw of the others (both on lines this stripe's threads write); only
        // if those fall short, every other stripe's word, and the sum is remembered. Read
        // before the retry word, unlike the full scan: the fast path only grants, and for a
        // grant any lower bound of the deposits will do (a word of `g` only grows). Reading
        // them first leaves nothing but arithmetic between the retry word's load and its
        // compare-and-swap, the window in which another thread can take the line away.
        let mut d = self.current_deposits(own, g);
        let mut all = self.stripe_mask == 0;
        if !all {
            // Relaxed: a number only, trusted when its tag is `g` (see `seen`).
            let seen = self.seen[own].0[0].load(Ordering::Relaxed);
            if seen & !SUMMARY_FIELD == pack(g, 0) {
                d += seen & SUMMARY_FIELD;
            }
        }
        let cost = i128::from(self.den);
        // Everything but the current retry count, computed before that count is loaded.
        let funds = |d: u64| {
            self.base + i128::from(self.num) * i128::from(past_d + d) - cost * i128::from(past_w)
        };
        let mut before = funds(d);
        // Acquire: see the module's Orderings.
        let mut cur = retries.load(Ordering::Acquire);
        loop {
            if cur & !COUNT_MASK != pack(g, 0) || count(cur) == COUNT_MASK {
                return None;
            }
            let balance = before - cost * i128::from(count(cur));
            if balance < cost {
                if all {
                    return None;
                }
                all = true;
                let others: u64 = (0..=self.stripe_mask)
                    .filter(|&s| s != own)
                    .map(|s| self.current_deposits(s, g))
                    .sum();
                let others = others.min(SUMMARY_FIELD);
                // Relaxed: a number only (see `seen`). Racing threads of one stripe may leave
                // an older sum: still a lower bound.
                self.seen[own].0[0].store(pack(g, others), Ordering::Relaxed);
                d = self.current_deposits(own, g) + others;
                before = funds(d);
                // Acquire: as above; a fresh value, next to the compare-and-swap again.
                cur = retries.load(Ordering::Acquire);
                continue;
            }
            // AcqRel / Acquire: as in `open_deposits`.
            match retries.compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Some(Withdrawal::Withdrawn {
                        cost: self.den,
                        balance: sat_i64(balance - cost),
                    });
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// The deposits of generation `g` in stripe `stripe`'s word: 0 if the word holds another
    /// generation (none of `g`'s deposits that we may count).
    #[inline(always)]
    fn current_deposits(&self, stripe: usize, g: u64) -> u64 {
        // Acquire: see the module's Orderings.
        let w = self.deposit_word(stripe, g).load(Ordering::Acquire);
        if w & !DEPOSIT_FIELD == pack(g, 0) {
            deposit_count(w)
        } else {
            0
        }
    }

    /// [`try_withdraw`](Self::try_withdraw) reading every word of the window: seals the past
    /// generations' retry words, sums the deposits, and refreshes the summary.
    #[inline(never)]
    fn withdraw_scan(&self, mut g: u64) -> Withdrawal {
        let cost = i128::from(self.den);
        'scan: loop {
            // The window's past retry words, each made final (sealed) before it is counted.
            let mut past = 0u64;
            for age in 1..self.n {
                let generation = g.wrapping_sub(age);
                let cell = self.retry_word(generation);
                // Acquire: see the module's Orderings.
                let w = cell.load(Ordering::Acquire);
                if w & !COUNT_MASK == pack(generation, 0) | SEALED {
                    past += count(w);
                } else {
                    match self.seal_past(cell, w, g, age) {
                        Ok(c) => past += c,
                        Err(h) => {
                            g = h;
                            continue 'scan;
                        }
                    }
                }
            }
            // The current retry word, read before the deposits: the deposits behind every retry
            // it counts are then seen too.
            let cell = self.retry_word(g);
            // Acquire: see the module's Orderings.
            let mut cur = cell.load(Ordering::Acquire);
            if cur & !COUNT_MASK != pack(g, 0) {
                match self.open_retries(cell, cur, g) {
                    Ok(w) => cur = w,
                    Err(h) => {
                        g = h;
                        continue 'scan;
                    }
                }
            }
            let (past_d, cur_d) = match self.window_deposits(g) {
                Ok(d) => d,
                Err(h) => {
                    g = h;
                    continue 'scan;
                }
            };
            if past <= SUMMARY_FIELD && past_d <= SUMMARY_FIELD {
                // Relaxed: see `withdraw_fast`. Written after the past words were sealed, so
                // `past` is final; `past_d` only grows.
                self.past_retries.store(pack(g, past), Ordering::Relaxed);
                // Relaxed: as above.
                self.past_deposits.store(pack(g, past_d), Ordering::Relaxed);
            }
            let funds = self.base + i128::from(self.num) * i128::from(past_d + cur_d);
            // Whether the current word moved under us since `funds` was read: then deposits may
            // have moved too, and a refusal must come from a fresh scan (another thread's CAS
            // succeeded, so rescanning keeps the budget lock-free).
            let mut raced = false;
            loop {
                let balance = funds - cost * i128::from(past + count(cur));
                if balance < cost || count(cur) == COUNT_MASK {
                    if raced {
                        continue 'scan;
                    }
                    return Withdrawal::Refused {
                        cost: 0,
                        balance: sat_i64(balance),
                        required: sat_i64(cost),
                    };
                }
                // AcqRel / Acquire: as in `open_deposits`. Strong: a spurious failure would
                // rescan.
                match cell.compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        return Withdrawal::Withdrawn {
                            cost: self.den,
                            balance: sat_i64(balance - cost),
                        };
                    }
                    // Another retry in the same generation: only the count moved.
                    Err(actual) if actual & !COUNT_MASK == cur & !COUNT_MASK => {
                        cur = actual;
                        raced = true;
                    }
                    // Sealed or recycled by a later generation.
                    Err(_) => continue 'scan,
                }
            }
        }
    }

    /// The balance now, in units (see [`RatioBudget`]); negative while expired
    /// deposits leave retries unfunded. A read-only estimate under concurrency.
    pub fn balance(&self) -> i64 {
        let g = self.now_gen();
        let (mut d, mut w) = (0u64, 0u64);
        for age in 0..self.n {
            let generation = g.wrapping_sub(age);
            for stripe in 0..=self.stripe_mask {
                // Acquire: see the module's Orderings.
                let dw = self
                    .deposit_word(stripe, generation)
                    .load(Ordering::Acquire);
                if place(dw, g, age) == Place::InWindow {
                    d += deposit_count(dw);
                }
            }
            // Acquire: as above.
            let rw = self.retry_word(generation).load(Ordering::Acquire);
            if place(rw, g, age) == Place::InWindow {
                w += count(rw);
            }
        }
        let cost = i128::from(self.den);
        sat_i64(self.base + i128::from(self.num) * i128::from(d) - cost * i128::from(w))
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

    // The atomics these tests touch directly are read and written by this thread alone:
    // `Relaxed` throughout.

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
        let past = b.retry_word(0).load(Ordering::Relaxed);
        assert_eq!((tag(past), count(past), sealed(past)), (6, 0, true));
        let cur = b.retry_word(1).load(Ordering::Relaxed);
        assert_eq!((tag(cur), count(cur), sealed(cur)), (7, 1, false));
    }

    #[test]
    fn stripes_are_rounded_up_capped_and_at_least_one() {
        let c: SharedClock = Arc::new(ManualClock::new());
        let stripes = |n: u32| {
            RatioBudget::builder()
                .stripes(n)
                .clock(c.clone())
                .build()
                .unwrap()
                .stripe_mask
                + 1
        };
        assert_eq!(stripes(0), 1);
        assert_eq!(stripes(1), 1);
        assert_eq!(stripes(3), 4);
        assert_eq!(stripes(16), 16);
        assert_eq!(stripes(17), 16);
        assert_eq!(stripes(u32::MAX), 16);
        let b = RatioBudget::builder()
            .stripes(4)
            .clock(c.clone())
            .build()
            .unwrap();
        // 10 slots: a ring of 16 words, one block per stripe.
        assert_eq!((b.blocks, b.deposits.len(), b.seen.len()), (1, 4, 4));
        assert!(format!("{b:?}").contains("stripes: 4"));
        let b = RatioBudget::builder()
            .window(Duration::from_millis(64))
            .slots(64)
            .stripes(2)
            .clock(c)
            .build()
            .unwrap();
        assert_eq!((b.blocks, b.deposits.len(), b.retries.len()), (4, 8, 4));
    }

    /// Deposits on every stripe count, wherever the withdrawing thread's own stripe is: a
    /// withdrawal first tries its own stripe and what it saw before, then reads them all.
    #[test]
    fn every_stripe_funds_retries() {
        let c = ManualClock::new();
        let b = RatioBudget::builder()
            .ratio_parts(1, 1)
            .min_retries_per_sec(0)
            .stripes(4)
            .clock(Arc::new(c.clone()))
            .build()
            .unwrap();
        let own = b.own_stripe();
        for stripe in (0..4).filter(|&s| s != own) {
            // As if a thread of that stripe had deposited 3 times.
            b.deposit_word(stripe, 0).fetch_add(3, Ordering::Relaxed);
        }
        assert_eq!(b.balance(), 9);
        // The first withdrawal scans (no summary yet) and sees all 9.
        assert!(b.try_withdraw().is_withdrawn());
        // The fast path: its own stripe holds none, so it reads the others and remembers them.
        assert!(b.withdraw_fast(0).is_some());
        let seen = b.seen[own].0[0].load(Ordering::Relaxed);
        assert_eq!((tag(seen), seen & SUMMARY_FIELD), (0, 9));
        // Now from what it remembered, without reading the others again.
        assert!(b.withdraw_fast(0).is_some());
        let granted = 3 + (0..20).filter(|_| b.try_withdraw().is_withdrawn()).count();
        assert_eq!(granted, 9);
        assert_eq!(b.balance(), 0);
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

    // === against a reference model ===

    /// The formula of the module docs, one generation at a time, with plain maps.
    struct Model {
        n: u64,
        num: i128,
        den: i128,
        reserve: i128,
        deposits: std::collections::BTreeMap<u64, i128>,
        retries: std::collections::BTreeMap<u64, i128>,
    }

    impl Model {
        fn of(b: &RatioBudget) -> Model {
            Model {
                n: b.n,
                num: i128::from(b.deposit_units()),
                den: i128::from(b.retry_cost()),
                reserve: i128::from(b.reserve_retries()),
                deposits: Default::default(),
                retries: Default::default(),
            }
        }
        fn balance(&self, g: u64) -> i128 {
            let lo = g.saturating_sub(self.n - 1);
            let sum = |m: &std::collections::BTreeMap<u64, i128>| {
                m.range(lo..=g).map(|(_, v)| *v).sum::<i128>()
            };
            self.reserve * self.den + self.num * sum(&self.deposits) - self.den * sum(&self.retries)
        }
        /// What `try_withdraw` must answer at `g`; records a grant.
        fn withdraw(&mut self, g: u64) -> Withdrawal {
            let balance = self.balance(g);
            if balance >= self.den {
                *self.retries.entry(g).or_default() += 1;
                Withdrawal::Withdrawn {
                    cost: self.den as u64,
                    balance: (balance - self.den) as i64,
                }
            } else {
                Withdrawal::Refused {
                    cost: 0,
                    balance: balance as i64,
                    required: self.den as i64,
                }
            }
        }
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, k: u64) -> u64 {
            self.next() % k
        }
    }

    /// Runs `ops` random deposits, retries and clock moves (within a slot, one slot, a few
    /// slots, whole windows, and jumps from 2^33 to 3 × 2^33 generations, which put every tag
    /// at least half the tag space behind) on a budget that starts at `start` generations, and
    /// checks every answer and balance against the model.
    fn against_model(
        slots: u32,
        width_ms: u64,
        parts: (u32, u32),
        min: u32,
        start: u64,
        seed: u64,
    ) {
        let width = width_ms * 1_000_000;
        let clock = ManualClock::new();
        clock.set(Duration::from_nanos(start * width)).unwrap();
        let b = RatioBudget::builder()
            .window(Duration::from_nanos(width * u64::from(slots)))
            .slots(slots)
            .ratio_parts(parts.0, parts.1)
            .min_retries_per_sec(min)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let mut m = Model::of(&b);
        let mut rng = Rng(seed | 1);
        let n = u64::from(slots);
        let generation = |c: &ManualClock| (c.now().as_nanos() / u128::from(width)) as u64;
        for step in 0..3000 {
            let g = generation(&clock);
            let what = rng.below(100);
            if what < 45 {
                b.deposit();
                *m.deposits.entry(g).or_default() += 1;
            } else if what < 85 {
                assert_eq!(
                    b.try_withdraw(),
                    m.withdraw(g),
                    "step {step}, generation {g}"
                );
            } else {
                let by = match rng.below(7) {
                    0 => rng.below(width),
                    1 => width,
                    2 => width * (1 + rng.below(2 * n + 2)),
                    3 => width * n * (1 + rng.below(1000)),
                    4 if rng.below(8) == 0 => width * ((1 << 33) + rng.below(1 << 33)),
                    _ => rng.below(3 * width),
                };
                if clock.now().as_nanos() + u128::from(by) < u128::from(u64::MAX) {
                    clock.advance(Duration::from_nanos(by));
                }
            }
            let g = generation(&clock);
            assert_eq!(
                i128::from(b.balance()),
                m.balance(g),
                "step {step}, generation {g}"
            );
        }
    }

    #[test]
    fn matches_the_model_for_all_slot_counts() {
        for (i, slots) in [1u32, 2, 3, 5, 8, 10, 16, 17, 63, 64]
            .into_iter()
            .enumerate()
        {
            for (j, parts) in [(1, 1), (3, 5), (0, 1), (7, 3)].into_iter().enumerate() {
                let min = [0, 1, 100][j % 3];
                against_model(
                    slots,
                    1 + i as u64 % 3,
                    parts,
                    min,
                    0,
                    (i * 10 + j) as u64 + 7,
                );
            }
        }
    }

    /// Tags are generations modulo 2^34, and the ring's index is the generation modulo its
    /// length: a budget that starts just below 2^34 (and 2^35) generations runs across the
    /// boundary where tags wrap to 0, and every index boundary of the ring along the way.
    #[test]
    fn matches_the_model_across_the_tag_wrap() {
        for slots in [1u32, 2, 3, 10, 64] {
            for start in [(1u64 << 34) - 3, (1 << 35) - 2 * u64::from(slots) - 1] {
                against_model(slots, 1, (1, 1), 0, start, start ^ u64::from(slots));
            }
        }
    }

    /// Ages across the ring's index 0, step by step: with 10 slots (a ring of 16), each
    /// generation's deposit stays exactly 10 generations.
    #[test]
    fn deposits_leave_after_exactly_the_window() {
        let c = ManualClock::new();
        let b = RatioBudget::builder()
            .window(Duration::from_millis(10))
            .slots(10)
            .ratio_parts(1, 1)
            .min_retries_per_sec(0)
            .clock(Arc::new(c.clone()))
            .build()
            .unwrap();
        for g in 0..100u64 {
            b.deposit();
            // One deposit in each of the last min(g + 1, 10) generations, one retry per
            // generation drawn against them.
            assert_eq!(
                b.balance(),
                (g + 1).min(10) as i64 - g.min(9) as i64,
                "at {g}"
            );
            assert!(b.try_withdraw().is_withdrawn(), "at {g}");
            c.advance(Duration::from_millis(1));
        }
    }

    /// The generation without division: the same as `floor(now / width)` for the clock's next
    /// generation, a skipped one, a reading behind `high`, and readings at the end of `u64`
    /// nanoseconds.
    #[test]
    fn generations_without_division() {
        let c = ManualClock::new();
        let b = RatioBudget::builder()
            .window(Duration::from_millis(30))
            .slots(10)
            .clock(Arc::new(c.clone()))
            .build()
            .unwrap();
        let w = 3_000_000u64;
        for to in [
            0,
            w - 1,
            w,
            2 * w - 1,
            2 * w,
            4 * w + 7,
            1 << 40,
            (1 << 40) + w,
            u64::MAX - 1,
            u64::MAX,
        ] {
            c.set(Duration::from_nanos(to)).unwrap();
            assert_eq!(b.now_gen(), to / w, "at {to} ns");
        }
        assert_eq!(generation_at(Duration::MAX, 1_000_000), MAX_GENERATION);
        assert_eq!(
            generation_at(Duration::from_secs(u64::MAX / 1_000_000_000 + 1), 1_000_000),
            (u64::MAX / 1_000_000_000 + 1) * 1000
        );
    }

    /// A clock whose readings do not fit `u64` nanoseconds, and that can go backwards.
    #[derive(Debug)]
    struct HugeClock(std::sync::Mutex<Duration>);
    impl Clock for HugeClock {
        fn now(&self) -> Duration {
            *self.0.lock().unwrap()
        }
    }

    #[test]
    fn huge_and_backward_readings_neither_panic_nor_rewind() {
        let clock = Arc::new(HugeClock(std::sync::Mutex::new(Duration::from_secs(5))));
        let b = RatioBudget::builder()
            .ratio_parts(1, 1)
            .min_retries_per_sec(0)
            .clock(clock.clone())
            .build()
            .unwrap();
        b.deposit();
        *clock.0.lock().unwrap() = Duration::MAX;
        b.deposit();
        b.deposit();
        assert_eq!(b.balance(), 2);
        assert!(b.try_withdraw().is_withdrawn());
        // Backwards: the budget's time stays where it was.
        *clock.0.lock().unwrap() = Duration::from_secs(5);
        b.deposit();
        assert_eq!(b.balance(), 2);
        assert!(b.try_withdraw().is_withdrawn());
        assert!(b.try_withdraw().is_withdrawn());
        assert!(!b.try_withdraw().is_withdrawn());
        assert_eq!(b.now_gen(), MAX_GENERATION);
    }

    /// A deposit whose word moved on to a later generation between its load and its
    /// `fetch_add` counts there; one that arrives at a past generation after the summary was
    /// written is not in the summary, so the fast path falls short and the full scan, which
    /// sees it, grants the retry.
    #[test]
    fn summary_is_a_lower_bound_the_scan_completes() {
        let c = ManualClock::new();
        let b = RatioBudget::builder()
            .window(Duration::from_millis(4))
            .slots(4)
            .ratio_parts(1, 1)
            .min_retries_per_sec(0)
            .clock(Arc::new(c.clone()))
            .build()
            .unwrap();
        b.deposit(); // generation 0
        c.set(Duration::from_millis(1)).unwrap();
        b.deposit(); // generation 1
        assert!(b.try_withdraw().is_withdrawn()); // full scan: summary of generation 1
        assert_eq!(tag(b.past_deposits.load(Ordering::Relaxed)), 1);
        assert_eq!(count(b.past_deposits.load(Ordering::Relaxed)), 1);
        assert!(b.withdraw_fast(1).is_some()); // the fast path: 2 deposits, 2 retries
        // A straggler's deposit into generation 0, after the summary.
        let cell = b.deposit_word(b.own_stripe(), 0);
        cell.fetch_add(1, Ordering::Relaxed);
        assert_eq!(b.withdraw_fast(1), None); // the summary shows no funds left
        assert!(b.try_withdraw().is_withdrawn()); // the scan sees the third deposit
        assert!(!b.try_withdraw().is_withdrawn());
        assert_eq!(b.balance(), 0);
    }

    /// A slot count of deposits: further deposits are not counted, and the word's tag survives
    /// adds that race past the limit.
    #[test]
    fn deposits_stop_at_the_slot_limit() {
        let c = ManualClock::new();
        let b = RatioBudget::builder()
            .ratio_parts(1, 1)
            .min_retries_per_sec(0)
            .clock(Arc::new(c.clone()))
            .build()
            .unwrap();
        let cell = b.deposit_word(b.own_stripe(), 0);
        cell.store(pack(0, COUNT_MASK - 1), Ordering::Relaxed);
        b.deposit();
        b.deposit();
        assert_eq!(cell.load(Ordering::Relaxed), pack(0, COUNT_MASK));
        // Adds that raced past the check land in the spare bit, and are not counted.
        cell.fetch_add(5, Ordering::Relaxed);
        assert_eq!(tag(cell.load(Ordering::Relaxed)), 0);
        assert_eq!(b.balance(), COUNT_MASK as i64);
        assert_eq!(MAX_SLOT_COUNT, COUNT_MASK);
    }
}
