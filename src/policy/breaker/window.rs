//! The breaker's sliding windows of call outcomes: the last N calls, or the calls of the last
//! T seconds. Both are lock-free and exact; a window belongs to one closed generation of the
//! breaker and is replaced (not cleared) when the breaker closes again.
//!
//! # Orderings
//! A window publishes no memory besides its own counts: the counts are read as estimates to
//! compare against thresholds, and the breaker's state changes are decided by compare-and-swap
//! on the state word, not here. Exactness comes from atomicity: each ring nibble is swapped out
//! exactly once, each count is changed by an atomic read-modify-write, and time-bucket words
//! are replaced or added to by compare-and-swap. So every operation is `Relaxed`, except one
//! edge in the time window: a bucket word is written with `Release` and read with `Acquire`,
//! so that a writer that sees a newer writer's tag also sees the head that writer moved first
//! (it judges tags against the head; a stale head would make it replace a newer bucket).
#![forbid(unsafe_code)]

use std::time::Duration;

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

    pub(crate) fn record(&self, s: Sample) {
        let nib =
            NIB_PRESENT | if s.failed { NIB_FAILED } else { 0 } | if s.slow { NIB_SLOW } else { 0 };
        // Add the new sample to the aggregate first, remove the one it displaces after: every
        // field then stays at least the sum of the ring's nibbles (each subtracted value was
        // added earlier by the writer that stored it), so no field ever borrows from the next.
        // Relaxed: atomicity is all the counts need (module docs).
        self.agg.fetch_add(agg_of(nib), Ordering::Relaxed);
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

/// Bucket words hold a tag in their high 32 bits: the bucket's slot number modulo 2^32.
const TAG_SHIFT: u32 = 32;
/// A bucket word's count, in its low 32 bits (saturating).
const COUNT_MASK: u64 = u32::MAX as u64;
/// The most buckets a time window may have.
pub(crate) const MAX_BUCKETS: u32 = 1024;
/// The shortest bucket.
pub(crate) const MIN_BUCKET: Duration = Duration::from_millis(1);

/// One bucket: three words `tag | count` (calls, failures, slow calls). Each word is replaced
/// (new tag, fresh count) or added to by one CAS, so no update is lost to a reset.
struct Bucket {
    words: [AtomicU64; 3],
}

/// The outcomes of the last `length`: `buckets` buckets of `length / buckets` each.
///
/// Tags are judged relative to the newest slot (the head): a word counts for a window ending
/// at slot `h` when its tag is one of the window's slots, `(h - tag) mod 2^32 < buckets`. A
/// writer adds to a word whose tag is its own slot, or a slot inside the head's window (it read
/// the clock a moment before a writer that moved on); any other word is stale and is replaced.
/// A writer that moves the head forward also empties the buckets of the slots it skipped, so a
/// tag can only alias (look current 2^32 slots later) if every such clearing missed it.
pub(crate) struct TimeWindow {
    bucket_nanos: u64,
    buckets: Box<[Bucket]>,
    /// One more than the newest slot any writer has used (0: none yet).
    head: AtomicU64,
}

fn tag(slot: u64) -> u64 {
    slot & COUNT_MASK
}

impl TimeWindow {
    pub(crate) fn new(length: Duration, buckets: u32) -> TimeWindow {
        let buckets = buckets.clamp(1, MAX_BUCKETS);
        let nanos = u64::try_from(length.as_nanos()).unwrap_or(u64::MAX);
        let bucket_nanos = (nanos / u64::from(buckets)).max(1);
        TimeWindow {
            bucket_nanos,
            buckets: (0..buckets)
                .map(|_| Bucket {
                    words: std::array::from_fn(|_| AtomicU64::new(0)),
                })
                .collect(),
            head: AtomicU64::new(0),
        }
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    fn slot_of(&self, now: Duration) -> u64 {
        let nanos = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        nanos / self.bucket_nanos
    }

    fn bucket(&self, slot: u64) -> &Bucket {
        &self.buckets[(slot % self.len()) as usize]
    }

    /// Whether a word tagged `t` belongs to the window ending at slot `newest`.
    fn in_window(&self, t: u64, newest: u64) -> bool {
        (tag(newest).wrapping_sub(t) & COUNT_MASK) < self.len()
    }

    /// The newest slot, at least `floor`. Acquire is not needed here: callers reach this after
    /// an Acquire load of a bucket word when it matters (see `record`).
    fn newest(&self, floor: u64) -> u64 {
        // Relaxed: see the comment in `record` for the edge that makes it fresh enough.
        self.head
            .load(Ordering::Relaxed)
            .saturating_sub(1)
            .max(floor)
    }

    /// Empties the bucket of `slot` unless it holds a slot of the current window.
    fn clear(&self, slot: u64) {
        for w in &self.bucket(slot).words {
            // AcqRel / Acquire: as in `record`.
            let _ = w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                let newest = self.newest(slot);
                (!self.in_window(v >> TAG_SHIFT, newest)).then_some(tag(slot) << TAG_SHIFT)
            });
        }
    }

    pub(crate) fn record(&self, now: Duration, s: Sample) {
        let slot = self.slot_of(now);
        // Relaxed: the head is only compared with tags; the edge that makes a writer see a
        // head at least as new as any tag it reads is the bucket words' Release / Acquire (a
        // writer moves the head before it writes a bucket).
        let prev = self.head.fetch_max(slot + 1, Ordering::Relaxed);
        if prev != 0 && prev < slot + 1 {
            // This writer moved the head forward: empty the buckets of the slots it skipped
            // (at most one pass of the ring), so no bucket keeps a tag old enough to alias.
            let from = prev.max((slot + 1).saturating_sub(self.len()));
            for skipped in from..slot {
                self.clear(skipped);
            }
        }
        let deltas = [1, u64::from(s.failed), u64::from(s.slow)];
        for (w, d) in self.bucket(slot).words.iter().zip(deltas) {
            if d == 0 {
                continue;
            }
            // AcqRel on success: Release publishes this writer's head move with the word;
            // Acquire on every load: a writer that reads a newer writer's word then reads a
            // head at least that new (it was moved before the word was written).
            let _ = w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                let t = v >> TAG_SHIFT;
                if v & COUNT_MASK == 0 {
                    // Empty (never written, or cleared): take it for this slot.
                    Some((tag(slot) << TAG_SHIFT) | d)
                } else if t == tag(slot) || self.in_window(t, self.newest(slot)) {
                    // This slot, or a newer one of the current window: count it there.
                    Some((t << TAG_SHIFT) | ((v & COUNT_MASK) + d).min(COUNT_MASK))
                } else {
                    Some((tag(slot) << TAG_SHIFT) | d)
                }
            });
        }
    }

    pub(crate) fn counts(&self, now: Duration) -> WindowCounts {
        // Relaxed: an estimate (module docs).
        let head = self.head.load(Ordering::Relaxed);
        if head == 0 {
            return WindowCounts::default();
        }
        let slot = self.slot_of(now);
        if slot.saturating_sub(head - 1) >= self.len() {
            // Nothing was recorded within the window.
            return WindowCounts::default();
        }
        let newest = slot.max(head - 1);
        let mut sums = [0u64; 3];
        for b in self.buckets.iter() {
            for (sum, w) in sums.iter_mut().zip(&b.words) {
                // Relaxed: an estimate (module docs).
                let v = w.load(Ordering::Relaxed);
                if self.in_window(v >> TAG_SHIFT, newest) {
                    *sum += v & COUNT_MASK;
                }
            }
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

pub(crate) enum Kind {
    Count(CountWindow),
    Time(TimeWindow),
}

/// The window of one closed generation of a breaker.
pub(crate) struct Window {
    pub(crate) generation: u32,
    kind: Kind,
}

impl Window {
    pub(crate) fn new(generation: u32, spec: &super::SlidingWindow) -> Window {
        let kind = match *spec {
            super::SlidingWindow::Count { calls } => Kind::Count(CountWindow::new(calls)),
            super::SlidingWindow::Time { length, buckets } => {
                Kind::Time(TimeWindow::new(length, buckets))
            }
        };
        Window { generation, kind }
    }

    pub(crate) fn record(&self, now: Duration, s: Sample) {
        match &self.kind {
            Kind::Count(w) => w.record(s),
            Kind::Time(w) => w.record(now, s),
        }
    }

    pub(crate) fn counts(&self, now: Duration) -> WindowCounts {
        match &self.kind {
            Kind::Count(w) => w.counts(),
            Kind::Time(w) => w.counts(now),
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

    #[test]
    fn time_window_slides() {
        let w = TimeWindow::new(Duration::from_secs(10), 10);
        let at = Duration::from_millis;
        w.record(at(0), FAIL);
        w.record(at(500), OK);
        w.record(at(1500), SLOW);
        assert_eq!(
            w.counts(at(1500)),
            WindowCounts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        assert_eq!(w.counts(at(9999)).calls, 3);
        // At 10 s the first bucket [0, 1 s) leaves the window.
        assert_eq!(
            w.counts(at(10_000)),
            WindowCounts {
                calls: 1,
                failures: 0,
                slow: 1
            }
        );
        assert_eq!(w.counts(at(11_000)), WindowCounts::default());
        // A write long after reuses buckets correctly.
        w.record(at(1_000_000), FAIL);
        assert_eq!(
            w.counts(at(1_000_000)),
            WindowCounts {
                calls: 1,
                failures: 1,
                slow: 0
            }
        );
        // A write at an old time (a thread that read the clock earlier) lands in a live bucket.
        w.record(at(999_999), OK);
        assert_eq!(w.counts(at(1_000_000)).calls, 2);
    }

    #[test]
    fn time_window_skipped_buckets_are_cleared_across_tag_wrap() {
        let w = TimeWindow::new(Duration::from_millis(4), 4);
        let at = |slot: u64| Duration::from_millis(slot);
        w.record(at(1), FAIL);
        // 2^32 slots later the tag aliases; the head advance cleared the bucket.
        let later = 1 + (1u64 << 32);
        w.record(at(later - 1), OK);
        w.record(at(later), OK);
        assert_eq!(
            w.counts(at(later)),
            WindowCounts {
                calls: 2,
                failures: 0,
                slow: 0
            }
        );
        // A bucket far behind (2^31 + a few slots) is replaced, not mistaken for a newer one.
        let w = TimeWindow::new(Duration::from_millis(4), 4);
        w.record(at(2), FAIL);
        let far = 2 + (1u64 << 31) + 4;
        w.record(at(far), OK);
        assert_eq!(
            w.counts(at(far)),
            WindowCounts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn time_window_concurrent_counts_every_call() {
        let w = TimeWindow::new(Duration::from_secs(60), 6);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let w = &w;
                s.spawn(move || {
                    for i in 0..5_000u64 {
                        w.record(
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
            w.counts(Duration::from_secs(5)),
            WindowCounts {
                calls: 20_000,
                failures: 10_000,
                slow: 4_000
            }
        );
    }
}
