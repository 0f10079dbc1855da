//! The breaker's sliding windows of call outcomes: the last N calls, or the calls of the last
//! T seconds. Both are lock-free and exact, and both count an outcome only in the window of the
//! closed generation its permit was issued in.
//!
//! - A count window ([`CountWindow`]) belongs to one closed generation: closing the breaker
//!   publishes a fresh one through `arc-swap` (see [`Window`]).
//! - The time window ([`TimeWindow`]) lives inline in the breaker for its whole life. Every word
//!   carries the *epoch* of the closed generation that wrote it (its low 8 bits), and readers
//!   and writers of a generation only use words of its epoch, so a new closed period starts
//!   empty without a new allocation or any `arc-swap` load on the hot path. Call counts are
//!   striped: each thread adds its calls to the row of its stripe (its weir slot modulo the
//!   stripe count), so concurrent successes do not write one shared cache line.
//!
//! # Orderings
//! A window publishes no memory besides its own counts: the counts are read as estimates to
//! compare against thresholds, and the breaker's state changes are decided by compare-and-swap
//! on the state word, not here. Exactness comes from atomicity: each ring nibble is swapped out
//! exactly once, each count is changed by an atomic read-modify-write, and time-bucket words
//! are replaced or added to by compare-and-swap. So every count-window operation is `Relaxed`.
//! The time window has two edges, both through its words being written with `Release` (the
//! successful CAS is `AcqRel`) and read with `Acquire`:
//! - a writer that sees a newer writer's tag also sees the head that writer moved first (it
//!   judges tags against the head; a stale head would make it replace a newer bucket);
//! - a writer that sees a word of another epoch re-reads the breaker's state word to decide
//!   whether that word is an older period's (its permit is current: replace it) or a newer
//!   one's (its permit is stale: drop the sample). Whoever wrote the newer epoch had read the
//!   state word's newer generation before writing (a new-period writer loads it to validate its
//!   permit; the closer made it), so the Acquire read of the word makes the re-read see that
//!   generation or a later one: a stale writer can never mistake a newer period's word for an
//!   older one.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::sync::{AtomicU64, Ordering};

/// Counts of outcomes in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Calls whose outcome was recorded.
    pub calls: u64,
    /// Of those, failures.
    pub failures: u64,
    /// Of those, slow calls (failed or not).
    pub slow: u64,
}

impl WindowCounts {
    /// Failures / calls (0 when there are no calls).
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }
    /// Slow calls / calls (0 when there are no calls).
    pub fn slow_rate(&self) -> f64 {
        ratio(self.slow, self.calls)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part.min(whole) as f64 / whole as f64
    }
}

/// One call's outcome, as a window stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) failed: bool,
    pub(crate) slow: bool,
}

// === count window ===

/// Ring nibble bit: the slot holds an outcome.
const NIB_PRESENT: u64 = 0b001;
/// Ring nibble bit: the outcome was a failure.
const NIB_FAILED: u64 = 0b010;
/// Ring nibble bit: the call was slow.
const NIB_SLOW: u64 = 0b100;
/// Nibbles per ring word.
const NIBS_PER_WORD: u64 = 16;

/// Aggregate word: three 21-bit fields (calls, failures, slow), bits 0..21, 21..42, 42..63.
const AGG_FIELD_BITS: u32 = 21;
/// One field's mask.
const AGG_FIELD_MASK: u64 = (1 << AGG_FIELD_BITS) - 1;
/// The largest count window: its fields, plus one pending sample per concurrent writer, must
/// fit in 21 bits.
pub(crate) const MAX_COUNT_WINDOW: u32 = 1_000_000;

fn agg_of(nib: u64) -> u64 {
    (nib & NIB_PRESENT)
        | (((nib & NIB_FAILED) >> 1) << AGG_FIELD_BITS)
        | (((nib & NIB_SLOW) >> 2) << (2 * AGG_FIELD_BITS))
}

/// The last `size` outcomes: a ring of 4-bit outcomes and one aggregate word.
pub(crate) struct CountWindow {
    size: u64,
    next: AtomicU64,
    ring: Box<[AtomicU64]>,
    agg: AtomicU64,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> CountWindow {
        let size = u64::from(size.clamp(1, MAX_COUNT_WINDOW));
        let words = size.div_ceil(NIBS_PER_WORD) as usize;
        CountWindow {
            size,
            next: AtomicU64::new(0),
            ring: (0..words).map(|_| AtomicU64::new(0)).collect(),
            agg: AtomicU64::new(0),
        }
    }

    /// Records a sample; returns the window's calls just before it (capped at the size).
    pub(crate) fn record(&self, s: Sample) -> u64 {
        let nib =
            NIB_PRESENT | if s.failed { NIB_FAILED } else { 0 } | if s.slow { NIB_SLOW } else { 0 };
        // Add the new sample to the aggregate first, remove the one it displaces after: every
        // field then stays at least the sum of the ring's nibbles (each subtracted value was
        // added earlier by the writer that stored it), so no field ever borrows from the next.
        // Relaxed: atomicity is all the counts need (module docs).
        let before = self.agg.fetch_add(agg_of(nib), Ordering::Relaxed);
        // Relaxed: only a distinct index per sample is needed.
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.size;
        let word = &self.ring[(i / NIBS_PER_WORD) as usize];
        let shift = (i % NIBS_PER_WORD) * 4;
        // Relaxed: the swap is atomic, so each displaced nibble is returned to exactly one
        // writer.
        let prev = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
            Some((w & !(0xf << shift)) | (nib << shift))
        });
        let old = (match prev {
            Ok(w) | Err(w) => w,
        } >> shift)
            & 0xf;
        if old != 0 {
            // Relaxed: as above.
            self.agg.fetch_sub(agg_of(old), Ordering::Relaxed);
        }
        (before & AGG_FIELD_MASK).min(self.size)
    }

    pub(crate) fn counts(&self) -> WindowCounts {
        // Relaxed: an estimate (module docs).
        let a = self.agg.load(Ordering::Relaxed);
        let calls = (a & AGG_FIELD_MASK).min(self.size);
        WindowCounts {
            calls,
            failures: ((a >> AGG_FIELD_BITS) & AGG_FIELD_MASK).min(calls),
            slow: ((a >> (2 * AGG_FIELD_BITS)) & AGG_FIELD_MASK).min(calls),
        }
    }
}

// === time window ===

/// A time-window word: `epoch (8) | round (24) | count (32)`.
///
/// - epoch: the low 8 bits of the closed generation that wrote the word. Readers and writers
///   of a generation use only words of its epoch; any other word is empty to them.
/// - round: which pass of the ring the word's slot is in (`slot / buckets`, modulo 2^24); with
///   the bucket's index, it names the slot.
/// - count: saturating.
const COUNT_MASK: u64 = u32::MAX as u64;
/// Bit offset of the round.
const ROUND_SHIFT: u32 = 32;
/// The round's values, before shifting.
const ROUND_MASK: u64 = (1 << 24) - 1;
/// Bit offset of the epoch.
const EPOCH_SHIFT: u32 = 56;
/// The epoch's values, before shifting.
const EPOCH_MASK: u64 = 0xff;
/// The most buckets a time window may have.
pub(crate) const MAX_BUCKETS: u32 = 1024;
/// The shortest bucket.
pub(crate) const MIN_BUCKET: Duration = Duration::from_millis(1);
/// Slots below this are split into round and index by a multiplication (exact for at most
/// 1024 buckets, see `TimeWindow::position`); slots of buckets of at least 1 ms are below
/// 2^45 for any clock reading.
const FAST_SLOTS: u64 = 1 << 45;
/// The reciprocal's fixed-point shift.
const RECIP_SHIFT: u32 = 56;

/// Call-count words per group of cache lines (128 bytes: two lines, as adjacent-line
/// prefetching pairs them), so that no two stripes' rows share a line.
#[cfg(not(weir_loom))]
const LINE_WORDS: usize = 16;
#[cfg(weir_loom)]
const LINE_WORDS: usize = 2;
/// At most this many stripes of call counts.
#[cfg(not(weir_loom))]
const MAX_STRIPES: usize = 8;
#[cfg(weir_loom)]
const MAX_STRIPES: usize = 2;
/// The striped call counts of one window stay within this many bytes (fewer stripes for very
/// many buckets).
const MAX_STRIPE_BYTES: usize = 16 * 1024;

#[repr(align(128))]
struct Line([AtomicU64; LINE_WORDS]);

/// The epoch of a closed generation, as words carry it.
fn epoch_of(generation: u32) -> u64 {
    u64::from(generation) & EPOCH_MASK
}

fn pack(epoch: u64, round: u64, count: u64) -> u64 {
    (epoch << EPOCH_SHIFT) | ((round & ROUND_MASK) << ROUND_SHIFT) | count
}

fn word_epoch(v: u64) -> u64 {
    v >> EPOCH_SHIFT
}

fn word_round(v: u64) -> u64 {
    (v >> ROUND_SHIFT) & ROUND_MASK
}

fn word_count(v: u64) -> u64 {
    v & COUNT_MASK
}

fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(u64::from(d.subsec_nanos())))
        .unwrap_or(u64::MAX)
}

/// How many stripes of call counts a window of `buckets` buckets gets: `asked` (or, if `None`,
/// one per hardware thread), rounded up to a power of two, at most [`MAX_STRIPES`], within
/// [`MAX_STRIPE_BYTES`].
fn stripes_for(buckets: usize, asked: Option<u32>) -> usize {
    // Asked once per process: the answer reads cgroup files, and keyed breakers build a window
    // for every new key.
    #[cfg(not(weir_loom))]
    let parallelism = {
        static PARALLELISM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *PARALLELISM.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    };
    #[cfg(weir_loom)]
    let parallelism = MAX_STRIPES;
    let parallelism = asked.map_or(parallelism, |n| n.max(1) as usize);
    let row_bytes = buckets.div_ceil(LINE_WORDS) * std::mem::size_of::<Line>();
    let mut n = parallelism.next_power_of_two().min(MAX_STRIPES);
    while n > 1 && n * row_bytes > MAX_STRIPE_BYTES {
        n /= 2;
    }
    n
}

/// What recording an outcome in a window did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    /// Counted. `before`: the calls its cell held just before it (a time window's stripe word
    /// for its bucket, a count window's total): at most the window's calls then.
    Counted { before: u64 },
    /// Not counted: the count window is another closed generation's (not yet replaced, or
    /// already replaced).
    Skipped,
    /// Not counted: the breaker has moved on from the permit's generation.
    Stale,
}

/// A slot, split into its ring pass and bucket index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    round: u64,
    index: usize,
}

/// The outcomes of the last `length`: `buckets` buckets of `length / buckets` each, kept for
/// the breaker's whole life (closed periods are told apart by epoch).
///
/// Each bucket has one call-count word per stripe, one failure word and one slow word. Words
/// are judged relative to the newest slot (the head): a word of bucket `b` counts for the
/// window ending at slot `h` when it has the reader's epoch and its round is the round of the
/// latest slot up to `h` in bucket `b`. A writer adds to a word of its own slot, or of the
/// newer slot of the head's window in its bucket (it read the clock a moment before a writer
/// that moved on); any other word of its epoch is out of date and is replaced. A writer that
/// moves the head forward empties the out-of-date words of the buckets from the old head to
/// its own slot (at most one pass of the ring), so a round can only alias (look current 2^24
/// rounds later) if the breaker saw no call for a multiple of 2^24 window lengths, give or
/// take one window. The winner of a transition to closed turns every word of another epoch
/// into an empty word of the new epoch, so an epoch can only alias (a word 256 generations old
/// look current) if a writer stays between its state check and its write across at least 85
/// closed periods.
pub(crate) struct TimeWindow {
    bucket_nanos: u64,
    buckets: usize,
    /// `ceil(2^56 / buckets)`: `slot / buckets` is `slot * recip >> 56` for slots below
    /// [`FAST_SLOTS`].
    recip: u64,
    /// Stripes of call counts (a power of two).
    stripes: usize,
    /// Lines per stripe row.
    row_lines: usize,
    /// Stripe-major rows of call counts; bucket `b` of stripe `s` is word `b % LINE_WORDS` of
    /// line `s * row_lines + b / LINE_WORDS`.
    calls: Box<[Line]>,
    failures: Box<[AtomicU64]>,
    slow: Box<[AtomicU64]>,
    /// One more than the newest slot any writer has used (0: none yet), in any closed period:
    /// slots are times, so the head does not depend on the period.
    head: AtomicU64,
    /// The generation of the latest closed period (for status reads while open).
    period: AtomicU64,
}

impl TimeWindow {
    pub(crate) fn new(length: Duration, buckets: u32, stripes: Option<u32>) -> TimeWindow {
        let buckets = buckets.clamp(1, MAX_BUCKETS) as usize;
        let bucket_nanos = (nanos(length) / buckets as u64).max(1);
        let stripes = stripes_for(buckets, stripes);
        let row_lines = buckets.div_ceil(LINE_WORDS);
        let words = |n: usize| -> Box<[AtomicU64]> { (0..n).map(|_| AtomicU64::new(0)).collect() };
        TimeWindow {
            bucket_nanos,
            buckets,
            recip: (1u64 << RECIP_SHIFT).div_ceil(buckets as u64),
            stripes,
            row_lines,
            calls: (0..stripes * row_lines)
                .map(|_| Line(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
            failures: words(buckets),
            slow: words(buckets),
            head: AtomicU64::new(0),
            period: AtomicU64::new(0),
        }
    }

    fn len(&self) -> u64 {
        self.buckets as u64
    }

    /// `slot` as (round, index). With `M = ceil(2^56 / d)` and `M·d = 2^56 + e`, `0 <= e < d`,
    /// `n·M / 2^56 = n/d + n·e / (d·2^56)`; for `n < 2^45` and `d <= 1024` the second term is
    /// below `2^-11 < 1/d`, less than the distance from `n/d` to the next integer, so the floor
    /// is exact.
    fn position(&self, slot: u64) -> Position {
        let round = if slot < FAST_SLOTS {
            ((u128::from(slot) * u128::from(self.recip)) >> RECIP_SHIFT) as u64
        } else {
            slot / self.len()
        };
        Position {
            round,
            index: (slot - round * self.len()) as usize,
        }
    }

    /// The round of the latest slot up to `newest` in bucket `b` (`None`: no such slot yet).
    fn live_round(newest: Position, b: usize) -> Option<u64> {
        if b <= newest.index {
            Some(newest.round)
        } else {
            newest.round.checked_sub(1)
        }
    }

    /// Whether `v`, a word of bucket `b` in epoch `e`, counts for the window ending at `newest`.
    fn live(v: u64, e: u64, newest: Position, b: usize) -> bool {
        word_epoch(v) == e
            && Self::live_round(newest, b).is_some_and(|r| word_round(v) == r & ROUND_MASK)
    }

    fn calls_word(&self, stripe: usize, bucket: usize) -> &AtomicU64 {
        &self.calls[stripe * self.row_lines + bucket / LINE_WORDS].0[bucket % LINE_WORDS]
    }

    /// Every word of bucket `b`: the stripes' call counts, failures, slow calls.
    fn bucket_words(&self, b: usize) -> impl Iterator<Item = &AtomicU64> {
        (0..self.stripes)
            .map(move |s| self.calls_word(s, b))
            .chain([&self.failures[b], &self.slow[b]])
    }

    /// The slot of `nanos`, without a division when it is the head's slot (the common case:
    /// the head moves once per bucket).
    fn slot_at(&self, nanos: u64, head: u64) -> u64 {
        let newest = head.wrapping_sub(1);
        let start = newest.wrapping_mul(self.bucket_nanos);
        if head != 0 && nanos >= start && nanos - start < self.bucket_nanos {
            newest
        } else {
            nanos / self.bucket_nanos
        }
    }

    /// The newest slot, at least `floor`, as a position. Acquire is not needed here: callers
    /// reach this after an Acquire load of a bucket word when it matters (see `add`).
    fn newest(&self, floor: u64) -> Position {
        // Relaxed: see the comment in `record` for the edge that makes it fresh enough.
        let head = self.head.load(Ordering::Relaxed);
        self.position(head.saturating_sub(1).max(floor))
    }

    /// Empties the words of `slot`'s bucket that hold an out-of-date slot of epoch `e`. Words
    /// of other epochs are left alone: they are empty to epoch `e` anyway, and may be a newer
    /// period's.
    fn clear(&self, slot: u64, e: u64) {
        let b = self.position(slot).index;
        for w in self.bucket_words(b) {
            // AcqRel / Acquire: as in `add`.
            let _ = w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                let stale = word_epoch(v) == e
                    && word_count(v) != 0
                    && !Self::live(v, e, self.newest(slot), b);
                stale.then_some(pack(e, 0, 0))
            });
        }
    }

    /// Adds `d` to `w`, a word of bucket `at.index`, for the slot at `at` in epoch `e`; returns
    /// the count the word held for that slot (or the newer live slot of its bucket) before, or
    /// `None` if the breaker has moved on from the writer's generation (`current` says whether
    /// it still is the current closed generation).
    #[inline]
    fn add(
        &self,
        w: &AtomicU64,
        slot: u64,
        at: Position,
        e: u64,
        d: u64,
        current: &impl Fn() -> bool,
    ) -> Option<u64> {
        // Acquire: a word written by a newer writer comes with the head it moved first and, for
        // a newer epoch, with the state word's newer generation (module docs).
        let mut v = w.load(Ordering::Acquire);
        loop {
            let (next, before) = if word_epoch(v) == e {
                let c = word_count(v);
                if c == 0 {
                    // Empty (never written, or cleared): take it for this slot.
                    (pack(e, at.round, d), 0)
                } else if word_round(v) == at.round & ROUND_MASK
                    || Self::live(v, e, self.newest(slot), at.index)
                {
                    // This slot, or the newer live slot of this bucket: count it there.
                    (v - c + (c + d).min(COUNT_MASK), c)
                } else {
                    (pack(e, at.round, d), 0)
                }
            } else if current() {
                // Another epoch while this generation is current: an older period's word.
                (pack(e, at.round, d), 0)
            } else {
                // A newer period's word, or the breaker moved on: this outcome is stale.
                return None;
            };
            // AcqRel on success: Release publishes this writer's head move (and, through its
            // state check, its generation) with the word; Acquire on failure: as the load above.
            match w.compare_exchange_weak(v, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(before),
                Err(actual) => v = actual,
            }
        }
    }

    /// Records an outcome of closed generation `generation` at `now`. `current` says whether
    /// that generation is still the breaker's current one; it is asked only when a word of
    /// another epoch is found.
    #[inline]
    pub(crate) fn record(
        &self,
        generation: u32,
        now: Duration,
        s: Sample,
        current: impl Fn() -> bool,
    ) -> Write {
        let e = epoch_of(generation);
        // Relaxed: the head is only compared with rounds; the edge that makes a writer see a
        // head at least as new as any word it reads is the bucket words' Release / Acquire (a
        // writer moves the head before it writes a bucket).
        let head = self.head.load(Ordering::Relaxed);
        let slot = self.slot_at(nanos(now), head);
        if slot >= head {
            self.advance(slot, e);
        }
        let at = self.position(slot);
        let stripe = crate::slot::current() as usize & (self.stripes - 1);
        let calls = self.calls_word(stripe, at.index);
        let Some(before) = self.add(calls, slot, at, e, 1, &current) else {
            return Write::Stale;
        };
        if s.failed
            && self
                .add(&self.failures[at.index], slot, at, e, 1, &current)
                .is_none()
        {
            return Write::Stale;
        }
        if s.slow
            && self
                .add(&self.slow[at.index], slot, at, e, 1, &current)
                .is_none()
        {
            return Write::Stale;
        }
        Write::Counted { before }
    }

    /// Moves the head to `slot` if it is behind; the writer that moves it empties the
    /// out-of-date words of the buckets from the old head to its own (at most one pass of the
    /// ring), so no word keeps a round old enough to alias.
    #[cold]
    fn advance(&self, slot: u64, e: u64) {
        // Relaxed: as in `record`. Only a writer whose slot is past the head writes it, so the
        // head's line is written once per bucket, not once per call.
        let prev = self.head.fetch_max(slot + 1, Ordering::Relaxed);
        if prev != 0 && prev <= slot {
            let from = prev.max((slot + 1).saturating_sub(self.len()));
            for sl in from..=slot {
                self.clear(sl, e);
            }
        }
    }

    /// Starts closed generation `generation`: every word of another epoch becomes an empty word
    /// of its epoch. Stops early if `current` says the breaker has moved on (the next closed
    /// period's winner does it then).
    pub(crate) fn start_period(&self, generation: u32, current: &dyn Fn() -> bool) {
        // Relaxed: read only by `status`, a diagnostic estimate.
        self.period.store(u64::from(generation), Ordering::Relaxed);
        let e = epoch_of(generation);
        for b in 0..self.buckets {
            for w in self.bucket_words(b) {
                // Acquire: as in `add` (a word of a newer epoch comes with its generation).
                let mut v = w.load(Ordering::Acquire);
                while word_epoch(v) != e {
                    if !current() {
                        return;
                    }
                    // AcqRel / Acquire: as in `add`.
                    match w.compare_exchange_weak(
                        v,
                        pack(e, 0, 0),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break,
                        Err(actual) => v = actual,
                    }
                }
            }
        }
    }

    /// The generation of the latest closed period.
    pub(crate) fn period(&self) -> u32 {
        // Relaxed: a diagnostic estimate (see `start_period`).
        self.period.load(Ordering::Relaxed) as u32
    }

    /// The counts of closed generation `generation` in the window ending at `now`.
    pub(crate) fn counts(&self, generation: u32, now: Duration) -> WindowCounts {
        // Relaxed: an estimate (module docs).
        let head = self.head.load(Ordering::Relaxed);
        if head == 0 {
            return WindowCounts::default();
        }
        let slot = nanos(now) / self.bucket_nanos;
        if slot.saturating_sub(head - 1) >= self.len() {
            // Nothing was recorded within the window.
            return WindowCounts::default();
        }
        let newest = self.position(slot.max(head - 1));
        let e = epoch_of(generation);
        let mut sums = [0u64; 3];
        for b in 0..self.buckets {
            let count = |w: &AtomicU64| {
                // Relaxed: an estimate (module docs).
                let v = w.load(Ordering::Relaxed);
                if Self::live(v, e, newest, b) {
                    word_count(v)
                } else {
                    0
                }
            };
            sums[0] += (0..self.stripes)
                .map(|s| count(self.calls_word(s, b)))
                .sum::<u64>();
            sums[1] += count(&self.failures[b]);
            sums[2] += count(&self.slow[b]);
        }
        let [calls, failures, slow] = sums;
        WindowCounts {
            calls,
            failures: failures.min(calls),
            slow: slow.min(calls),
        }
    }
}

// === window ===

/// A count window and the closed generation it belongs to.
pub(crate) struct GenerationCount {
    generation: u32,
    window: CountWindow,
}

/// A breaker's window: the inline time window, or the count window of the current (or last)
/// closed generation.
pub(crate) enum Window {
    Count {
        size: u32,
        current: ArcSwap<GenerationCount>,
    },
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn new(spec: &super::SlidingWindow, stripes: Option<u32>) -> Window {
        match *spec {
            super::SlidingWindow::Count { calls } => Window::Count {
                size: calls,
                current: ArcSwap::from_pointee(GenerationCount {
                    generation: 0,
                    window: CountWindow::new(calls),
                }),
            },
            super::SlidingWindow::Time { length, buckets } => {
                Window::Time(TimeWindow::new(length, buckets, stripes))
            }
        }
    }

    /// Records an outcome of closed generation `generation` (see [`TimeWindow::record`]).
    #[inline]
    pub(crate) fn record(
        &self,
        generation: u32,
        now: Duration,
        s: Sample,
        current: impl Fn() -> bool,
    ) -> Write {
        match self {
            Window::Count { current: c, .. } => {
                let w = c.load();
                if w.generation == generation {
                    Write::Counted {
                        before: w.window.record(s),
                    }
                } else {
                    Write::Skipped
                }
            }
            Window::Time(w) => w.record(generation, now, s, current),
        }
    }

    /// Starts closed generation `generation` with an empty window. Called once per closed
    /// period, by the winner of the transition.
    pub(crate) fn start_period(&self, generation: u32, current: &dyn Fn() -> bool) {
        match self {
            Window::Count { size, current: c } => c.store(Arc::new(GenerationCount {
                generation,
                window: CountWindow::new(*size),
            })),
            Window::Time(w) => w.start_period(generation, current),
        }
    }

    /// The counts of closed generation `generation` at `now` (zero if the count window is
    /// another generation's).
    pub(crate) fn counts(&self, generation: u32, now: Duration) -> WindowCounts {
        match self {
            Window::Count { current: c, .. } => {
                let w = c.load();
                if w.generation == generation {
                    w.window.counts()
                } else {
                    WindowCounts::default()
                }
            }
            Window::Time(w) => w.counts(generation, now),
        }
    }

    /// The counts of the latest closed period at `now`, for status reads.
    pub(crate) fn latest_counts(&self, now: Duration) -> WindowCounts {
        match self {
            Window::Count { current: c, .. } => c.load().window.counts(),
            Window::Time(w) => w.counts(w.period(), now),
        }
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    const OK: Sample = Sample {
        failed: false,
        slow: false,
    };
    const FAIL: Sample = Sample {
        failed: true,
        slow: false,
    };
    const SLOW: Sample = Sample {
        failed: false,
        slow: true,
    };

    #[test]
    fn count_window_keeps_last_n() {
        let w = CountWindow::new(5);
        for _ in 0..3 {
            w.record(FAIL);
        }
        assert_eq!(
            w.counts(),
            WindowCounts {
                calls: 3,
                failures: 3,
                slow: 0
            }
        );
        for _ in 0..4 {
            w.record(OK);
        }
        assert_eq!(
            w.counts(),
            WindowCounts {
                calls: 5,
                failures: 1,
                slow: 0
            }
        );
        w.record(SLOW);
        assert_eq!(
            w.counts(),
            WindowCounts {
                calls: 5,
                failures: 0,
                slow: 1
            }
        );
        assert_eq!(w.counts().slow_rate(), 0.2);
        assert_eq!(WindowCounts::default().failure_rate(), 0.0);
    }

    #[test]
    fn count_window_concurrent_is_exact() {
        let w = CountWindow::new(37);
        std::thread::scope(|s| {
            for t in 0..4 {
                let w = &w;
                s.spawn(move || {
                    for i in 0..10_000 {
                        w.record(Sample {
                            failed: (i + t) % 3 == 0,
                            slow: false,
                        });
                    }
                });
            }
        });
        let c = w.counts();
        assert_eq!(c.calls, 37);
        // The aggregate equals the ring's contents exactly.
        let mut fails = 0;
        for i in 0..37u64 {
            let word = w.ring[(i / 16) as usize].load(Ordering::Relaxed);
            let nib = (word >> ((i % 16) * 4)) & 0xf;
            assert_ne!(nib & NIB_PRESENT, 0);
            fails += (nib & NIB_FAILED) >> 1;
        }
        assert_eq!(c.failures, fails);
    }

    /// Records `s` at `t` for generation 0, which is current.
    fn rec(w: &TimeWindow, t: Duration, s: Sample) -> Write {
        w.record(0, t, s, || true)
    }

    #[test]
    fn time_window_slides() {
        let w = TimeWindow::new(Duration::from_secs(10), 10, None);
        let at = Duration::from_millis;
        rec(&w, at(0), FAIL);
        rec(&w, at(500), OK);
        rec(&w, at(1500), SLOW);
        assert_eq!(
            w.counts(0, at(1500)),
            WindowCounts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        assert_eq!(w.counts(0, at(9999)).calls, 3);
        // At 10 s the first bucket [0, 1 s) leaves the window.
        assert_eq!(
            w.counts(0, at(10_000)),
            WindowCounts {
                calls: 1,
                failures: 0,
                slow: 1
            }
        );
        assert_eq!(w.counts(0, at(11_000)), WindowCounts::default());
        // A write long after reuses buckets correctly.
        rec(&w, at(1_000_000), FAIL);
        assert_eq!(
            w.counts(0, at(1_000_000)),
            WindowCounts {
                calls: 1,
                failures: 1,
                slow: 0
            }
        );
        // A write at an old time (a thread that read the clock earlier) lands in a live bucket.
        rec(&w, at(999_999), OK);
        assert_eq!(w.counts(0, at(1_000_000)).calls, 2);
    }

    #[test]
    fn time_window_reports_the_cell_count_before() {
        let w = TimeWindow::new(Duration::from_secs(10), 10, None);
        let at = Duration::from_millis;
        assert_eq!(rec(&w, at(0), OK), Write::Counted { before: 0 });
        assert_eq!(rec(&w, at(1), FAIL), Write::Counted { before: 1 });
        assert_eq!(rec(&w, at(999), OK), Write::Counted { before: 2 });
        // A new bucket starts at zero, and so does the same bucket one window later.
        assert_eq!(rec(&w, at(1000), OK), Write::Counted { before: 0 });
        assert_eq!(rec(&w, at(10_000), OK), Write::Counted { before: 0 });
        assert_eq!(rec(&w, at(10_001), OK), Write::Counted { before: 1 });
    }

    #[test]
    fn time_window_skipped_buckets_are_cleared_across_round_wrap() {
        let w = TimeWindow::new(Duration::from_millis(4), 4, None);
        let at = |slot: u64| Duration::from_millis(slot);
        rec(&w, at(1), FAIL);
        // 2^24 rounds later the round aliases; the head advance cleared the bucket.
        let later = 1 + 4 * (1u64 << 24);
        rec(&w, at(later - 1), OK);
        rec(&w, at(later), OK);
        assert_eq!(
            w.counts(0, at(later)),
            WindowCounts {
                calls: 2,
                failures: 0,
                slow: 0
            }
        );
        // A bucket far behind (2^23 rounds and a few slots) is replaced, not mistaken for a
        // newer one.
        let w = TimeWindow::new(Duration::from_millis(4), 4, None);
        rec(&w, at(2), FAIL);
        let far = 2 + 4 * (1u64 << 23) + 4;
        rec(&w, at(far), OK);
        assert_eq!(
            w.counts(0, at(far)),
            WindowCounts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn stripes_asked_are_rounded_capped_and_bounded() {
        assert_eq!(stripes_for(10, Some(1)), 1);
        assert_eq!(stripes_for(10, Some(3)), 4);
        assert_eq!(stripes_for(10, Some(8)), 8);
        assert_eq!(stripes_for(10, Some(1000)), MAX_STRIPES);
        // 1,000 buckets: each stripe row takes 63 lines (8 KiB), so 16 KiB holds 2 rows.
        assert_eq!(stripes_for(1000, Some(8)), 2);
        let w = TimeWindow::new(Duration::from_secs(10), 10, Some(1));
        assert_eq!((w.stripes, w.calls.len()), (1, 1));
        let default = stripes_for(10, None);
        assert!(default.is_power_of_two() && default <= MAX_STRIPES);
    }

    #[test]
    fn time_window_landing_bucket_is_cleared_for_idle_stripes() {
        // A stripe whose thread went away keeps its old word; when the head moves onto its
        // bucket again, the word is emptied, so it cannot alias 2^24 rounds later while the
        // head moves one slot at a time.
        let w = TimeWindow::new(Duration::from_millis(2), 2, None);
        let at = |slot: u64| Duration::from_millis(slot);
        let other = (crate::slot::current() as usize + 1) & (w.stripes - 1);
        let _ = w.add(w.calls_word(other, 0), 0, w.position(0), 0, 5, &|| true);
        rec(&w, at(0), OK);
        assert_eq!(w.counts(0, at(0)).calls, 6);
        rec(&w, at(1), OK);
        rec(&w, at(2), OK); // lands on bucket 0 again
        if w.stripes > 1 {
            assert_eq!(
                word_count(w.calls_word(other, 0).load(Ordering::Relaxed)),
                0
            );
        }
        assert_eq!(w.counts(0, at(2)).calls, 2);
    }

    #[test]
    fn positions_by_reciprocal_are_exact() {
        for buckets in (1..=MAX_BUCKETS)
            .step_by(7)
            .chain([2, 3, 10, 1000, 1023, 1024])
        {
            let w = TimeWindow::new(Duration::from_secs(86_400), buckets, None);
            let d = u64::from(buckets);
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let edges = [
                0,
                1,
                d - 1,
                d,
                d + 1,
                FAST_SLOTS - 1,
                FAST_SLOTS,
                u64::MAX / 1_000_000,
            ];
            for i in 0..2000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let slot = match i {
                    0..8 => edges[i as usize],
                    _ => (x % FAST_SLOTS) / d * d + (x % d) + [0, d - 1][(i % 2) as usize],
                };
                let p = w.position(slot);
                assert_eq!(
                    (p.round, p.index as u64),
                    (slot / d, slot % d),
                    "{slot} / {d}"
                );
            }
        }
    }

    #[test]
    fn time_window_periods_are_separate() {
        let w = TimeWindow::new(Duration::from_secs(10), 10, None);
        let t = Duration::from_millis(5);
        let current = std::cell::Cell::new(0u32);
        let current = &current;
        let is = |g: u32| move || current.get() == g;
        assert!(matches!(w.record(0, t, FAIL, is(0)), Write::Counted { .. }));
        assert!(matches!(w.record(0, t, OK, is(0)), Write::Counted { .. }));
        // Generation 3 closes: its window starts empty, at the same time.
        current.set(3);
        w.start_period(3, &is(3));
        assert_eq!(w.period(), 3);
        assert_eq!(w.counts(3, t), WindowCounts::default());
        assert_eq!(w.counts(0, t), WindowCounts::default());
        // A stale generation-0 outcome finds generation 3's words and is dropped.
        assert_eq!(w.record(3, t, OK, is(3)), Write::Counted { before: 0 });
        assert_eq!(w.record(0, t, FAIL, is(0)), Write::Stale);
        assert_eq!(
            w.counts(3, t),
            WindowCounts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        // Without a start (the winner has not run yet), a current writer replaces the older
        // period's words.
        current.set(6);
        assert_eq!(w.record(6, t, FAIL, is(6)), Write::Counted { before: 0 });
        assert_eq!(
            w.counts(6, t),
            WindowCounts {
                calls: 1,
                failures: 1,
                slow: 0
            }
        );
        // A late start for generation 6 keeps generation 6's words.
        w.start_period(6, &is(6));
        assert_eq!(w.counts(6, t).calls, 1);
        // A start for a generation that is no longer current changes nothing.
        w.start_period(3, &is(3));
        assert_eq!(w.counts(6, t).calls, 1);
    }

    #[test]
    fn time_window_epochs_wrap() {
        // Generations 256 apart share an epoch; starting a period empties the older one.
        let w = TimeWindow::new(Duration::from_secs(10), 10, None);
        let t = Duration::from_millis(5);
        let _ = w.record(2, t, FAIL, || true);
        w.start_period(5, &|| true);
        w.start_period(258, &|| true);
        assert_eq!(w.counts(258, t), WindowCounts::default());
    }

    #[test]
    fn time_window_concurrent_counts_every_call() {
        let w = TimeWindow::new(Duration::from_secs(60), 6, None);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let w = &w;
                s.spawn(move || {
                    for i in 0..5_000u64 {
                        rec(
                            w,
                            Duration::from_millis(i),
                            Sample {
                                failed: i % 2 == 0,
                                slow: i % 5 == 0,
                            },
                        );
                    }
                });
            }
        });
        assert_eq!(
            w.counts(0, Duration::from_secs(5)),
            WindowCounts {
                calls: 20_000,
                failures: 10_000,
                slow: 4_000
            }
        );
    }
}
