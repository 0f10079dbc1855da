//! HDR-compatible histograms with per-thread shards.
//!
//! Each histogram keeps one *shard* per thread slot that has recorded into it. A shard holds the
//! bucket counts in pages allocated on first touch (so memory follows the values actually
//! recorded), plus the sum and the saturated count. Only the slot's owner writes a shard, so a
//! record is a handful of plain loads and stores. A snapshot sums the shards; counts, min and max
//! are derived from the buckets, so a snapshot can never disagree with itself about them.
//!
//! # Orderings
//! - Bucket cells are updated by their single owner with a `Relaxed` load and store; the
//!   saturated count and the sum are stored with `Release` after the bucket. A snapshot loads
//!   each shard's sum and saturated count with `Acquire` *before* reading its buckets, so every
//!   record whose sum (or saturation) it includes is also in the buckets it reads: a snapshot's
//!   sum never counts a value its buckets miss.
//! - The other way round is settled by a sequence lock that only readers wait on. The owner
//!   makes `seq` odd (a `Relaxed` store followed by a `Release` fence) before a record's stores
//!   and even again (a `Release` store) after them. A snapshot reads `seq` (`Acquire`), the
//!   shard, then `seq` again after an `Acquire` fence; if any of its reads saw a store of a
//!   record that began after the first read, the fences make the second read see that record's
//!   odd value, so the two differ and the shard is read again. A shard read between two
//!   records has sum, saturated count and buckets from the same moment: no bucket holds a value
//!   the sum misses either, so the sums and counts of snapshots and of their deltas agree
//!   exactly. Writers never wait. A reader gives up after 64 reads of a shard whose owner
//!   keeps recording (or is preempted mid-record) and keeps the last read, which still has the
//!   one-way guarantee above; so does the shared fallback shard, whose writers do not take part.
//! - Page, shard and chunk pointers are published with `Release` and read by snapshots with
//!   `Acquire`, so a published page is seen zeroed, never uninitialized. Owners read their own
//!   pointers `Relaxed` (they wrote them or acquired them through the slot claim). Chunks are
//!   shared by several slots, so they are installed by compare-exchange (`AcqRel` on success so
//!   that the loser's `Acquire` failure load sees the winner's chunk initialized).
//! - The shared fallback shard (threads without a slot) uses `fetch_add` (`Relaxed` for buckets,
//!   `Release` for the sum, for the same pairing as above).
//! - The snapshot sequence number is a `Relaxed` `fetch_add`: it only has to be unique and
//!   increasing per histogram.

mod layout;
mod snapshot;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use layout::Layout;
pub use snapshot::{Bucket, Buckets, HistogramSnapshot};

use crate::error::HistogramError;
use crate::slot::{self, MAX_SLOTS};
use crate::sync::{self, AtomicPtr, AtomicU64, Ordering};
#[cfg(not(weir_loom))]
use std::sync::atomic::fence;

#[cfg(weir_loom)]
use loom::sync::atomic::fence;

/// How many times a snapshot reads a shard whose owner keeps recording before it takes the
/// last read as it is (module docs, "Orderings"). The first few retries spin, the rest yield,
/// so an owner preempted in the middle of a record gets to finish it.
const SHARD_READ_TRIES: usize = 64;
const SHARD_READ_SPINS: usize = 8;

/// Waits a little before a snapshot reads a busy shard again.
fn shard_read_backoff(tries: usize) {
    if tries <= SHARD_READ_SPINS {
        std::hint::spin_loop();
    } else {
        #[cfg(not(weir_loom))]
        std::thread::yield_now();
        #[cfg(weir_loom)]
        loom::thread::yield_now();
    }
}

#[cfg(not(weir_loom))]
const PAGE_SHIFT: u32 = 9;
#[cfg(weir_loom)]
const PAGE_SHIFT: u32 = 3;
const PAGE_LEN: usize = 1 << PAGE_SHIFT;
const PAGE_MASK: usize = PAGE_LEN - 1;

#[cfg(not(weir_loom))]
const CHUNK_LEN: usize = 32;
#[cfg(weir_loom)]
const CHUNK_LEN: usize = 2;
const CHUNKS: usize = MAX_SLOTS.div_ceil(CHUNK_LEN);

/// Default lowest discernible value: 1 (nanosecond).
pub const DEFAULT_LOWEST: u64 = 1;
/// Default highest trackable value: one hour in nanoseconds.
pub const DEFAULT_HIGHEST: u64 = 3_600 * 1_000_000_000;
/// Default significant digits: 3 (values are resolved to within 0.1%).
pub const DEFAULT_DIGITS: u8 = 3;

#[repr(align(128))]
struct Page {
    counts: [AtomicU64; PAGE_LEN],
}

impl Page {
    fn new_boxed() -> *mut Page {
        Box::into_raw(Box::new(Page {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }))
    }
}

/// One slot's (or the fallback's) counts for one histogram. Aligned so that the owner's header
/// never shares a cache line with another thread's data.
#[repr(align(128))]
struct Shard {
    /// Odd while the owner is recording, even between records (a sequence lock that only
    /// readers ever wait on: module docs, "Orderings").
    seq: AtomicU64,
    sum: AtomicU64,
    saturated: AtomicU64,
    pages: Box<[AtomicPtr<Page>]>,
}

impl Shard {
    fn new_boxed(layout: &Layout) -> *mut Shard {
        Box::into_raw(Box::new(Shard {
            seq: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            saturated: AtomicU64::new(0),
            pages: sync::null_ptrs(layout.len().div_ceil(PAGE_LEN)),
        }))
    }

    /// Owner-only update (see the module docs for the orderings).
    #[inline(always)]
    fn add_owned(&self, index: usize, value: u64, n: u64, saturated: bool) {
        // Relaxed: the owner is the only writer of `seq`.
        let seq = self.seq.load(Ordering::Relaxed);
        // Relaxed store, then a Release fence: a snapshot whose reads of this record's stores
        // below see any of them also sees this odd value in its closing load (its Acquire
        // fence synchronizes with this fence), and reads the shard again.
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let dir = &self.pages[index >> PAGE_SHIFT];
        let mut page = dir.load(Ordering::Relaxed);
        if page.is_null() {
            page = Page::new_boxed();
            // Release: publishes the zeroed page to snapshots. Only the owner stores here.
            dir.store(page, Ordering::Release);
        }
        // SAFETY: pages live until the histogram is dropped, and the histogram outlives `&self`.
        let cell = unsafe { &(*page).counts[index & PAGE_MASK] };
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
        if saturated {
            // Relaxed load: the owner is the only writer of this cell.
            let s = self.saturated.load(Ordering::Relaxed);
            // Release: a snapshot that sees this count (Acquire) also sees the bucket update,
            // even when it gives up re-reading a busy shard.
            self.saturated.store(s.wrapping_add(n), Ordering::Release);
        }
        let sum = self.sum.load(Ordering::Relaxed);
        // Release: a snapshot that sees this sum (Acquire) also sees the bucket update above,
        // even when it gives up re-reading a busy shard.
        self.sum.store(
            sum.saturating_add(value.saturating_mul(n)),
            Ordering::Release,
        );
        // Release: a snapshot that reads this even value first (Acquire) sees the whole record.
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Shared update, for the fallback shard.
    #[cold]
    fn add_shared(&self, index: usize, value: u64, n: u64, saturated: bool) {
        let dir = &self.pages[index >> PAGE_SHIFT];
        let mut page = dir.load(Ordering::Acquire);
        if page.is_null() {
            let fresh = Page::new_boxed();
            // AcqRel/Acquire: publish ours, or see the winner's page initialized.
            match dir.compare_exchange(
                std::ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => page = fresh,
                Err(winner) => {
                    // SAFETY: `fresh` was never published; we own it.
                    drop(unsafe { Box::from_raw(fresh) });
                    page = winner;
                }
            }
        }
        // SAFETY: pages live until the histogram is dropped.
        let cell = unsafe { &(*page).counts[index & PAGE_MASK] };
        cell.fetch_add(n, Ordering::Relaxed);
        if saturated {
            // Release: pairs with the snapshot's Acquire load, as in `add_owned`.
            self.saturated.fetch_add(n, Ordering::Release);
        }
        let add = value.saturating_mul(n);
        // Release: pairs with the snapshot's Acquire load of the sum, as in `add_owned`. The
        // closure never returns None, so the result is always Ok.
        let _ = self
            .sum
            .fetch_update(Ordering::Release, Ordering::Relaxed, |s| {
                Some(s.saturating_add(add))
            });
    }

    /// Adds this shard into a snapshot accumulator: its sum, saturated count and non-zero
    /// buckets from one moment between two of its owner's records, re-read (up to
    /// [`SHARD_READ_TRIES`] times) while the owner records; `scratch` is reused across shards.
    fn read_into(&self, acc: &mut snapshot::Accumulator, scratch: &mut Vec<(u32, u64)>) {
        let mut tries = 0;
        loop {
            tries += 1;
            let last = tries >= SHARD_READ_TRIES;
            // Acquire: pairs with the owner's closing Release store; an even value read here
            // means every record it closes is visible below.
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 1 && !last {
                shard_read_backoff(tries);
                continue;
            }
            scratch.clear();
            // Acquire, before the buckets: see the module docs (what a give-up read keeps).
            let sum = self.sum.load(Ordering::Acquire);
            // Acquire, before the buckets: a saturated record counted here is in the buckets
            // read below (pairs with the owner's Release store).
            let saturated = self.saturated.load(Ordering::Acquire);
            for (p, dir) in self.pages.iter().enumerate() {
                // Acquire: pairs with the page's Release publication.
                let page = dir.load(Ordering::Acquire);
                if page.is_null() {
                    continue;
                }
                // SAFETY: pages live until the histogram is dropped; the caller holds it.
                let page = unsafe { &*page };
                let base = p * PAGE_LEN;
                for (i, c) in page.counts.iter().enumerate() {
                    let c = c.load(Ordering::Relaxed);
                    if c != 0 {
                        // Flat indexes fit u32: a layout has far fewer than 2^32 buckets.
                        scratch.push(((base + i) as u32, c));
                    }
                }
            }
            // Acquire fence, then a Relaxed load: if any read above saw a store of a record
            // that began after `before`, this load sees that record's odd value or later.
            fence(Ordering::Acquire);
            let after = self.seq.load(Ordering::Relaxed);
            if after == before || last {
                acc.add_shard(sum, saturated, scratch);
                return;
            }
            shard_read_backoff(tries);
        }
    }

    /// Heap bytes held by this shard.
    fn heap_bytes(&self) -> usize {
        let pages = self
            .pages
            .iter()
            .filter(|p| !p.load(Ordering::Relaxed).is_null())
            .count();
        std::mem::size_of::<Shard>()
            + std::mem::size_of_val(&*self.pages)
            + pages * std::mem::size_of::<Page>()
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        for p in self.pages.iter_mut() {
            let page = sync::take_ptr(p);
            if !page.is_null() {
                // SAFETY: we have exclusive access; the page came from Box::into_raw and is
                // freed exactly once, here.
                drop(unsafe { Box::from_raw(page) });
            }
        }
    }
}

struct Chunk {
    shards: [AtomicPtr<Shard>; CHUNK_LEN],
}

struct Inner {
    layout: Layout,
    /// Unique per histogram: lets `delta_since` refuse snapshots of another histogram.
    id: u64,
    seq: AtomicU64,
    chunks: [AtomicPtr<Chunk>; CHUNKS],
    fallback: AtomicPtr<Shard>,
}

fn next_histogram_id() -> u64 {
    use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};
    // A process-wide id source; plain std atomics (this is not part of any modeled protocol).
    // Relaxed: uniqueness only needs the RMW's atomicity.
    static NEXT: StdAtomicU64 = StdAtomicU64::new(1);
    NEXT.fetch_add(1, StdOrdering::Relaxed)
}

impl Inner {
    /// The calling slot's shard, created on first use. The slot must be `< MAX_SLOTS`.
    #[inline(always)]
    fn owned_shard(&self, slot: usize) -> &Shard {
        // Acquire: the chunk may have been installed by another slot's thread; we must see its
        // initialization (free on x86, where every load is an acquire load).
        let chunk = self.chunks[slot / CHUNK_LEN].load(Ordering::Acquire);
        if !chunk.is_null() {
            // SAFETY: chunks live until the histogram is dropped.
            // Relaxed: only this slot's owner stores this pointer (see `owned_shard_slow`).
            let shard = unsafe { &(*chunk).shards[slot % CHUNK_LEN] }.load(Ordering::Relaxed);
            if !shard.is_null() {
                // SAFETY: shards live until the histogram is dropped.
                return unsafe { &*shard };
            }
        }
        self.owned_shard_slow(slot)
    }

    #[cold]
    #[inline(never)]
    fn owned_shard_slow(&self, slot: usize) -> &Shard {
        let chunk_ref = &self.chunks[slot / CHUNK_LEN];
        // Acquire: see another slot's chunk initialized if it won the race.
        let mut chunk = chunk_ref.load(Ordering::Acquire);
        if chunk.is_null() {
            let fresh = Box::into_raw(Box::new(Chunk {
                shards: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            }));
            // AcqRel on success publishes our chunk; Acquire on failure sees the winner's
            // initialized (several slots share a chunk, so installs race).
            match chunk_ref.compare_exchange(
                std::ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => chunk = fresh,
                Err(winner) => {
                    // SAFETY: `fresh` was never published; we own it.
                    drop(unsafe { Box::from_raw(fresh) });
                    chunk = winner;
                }
            }
        }
        // SAFETY: chunks live until the histogram is dropped.
        let shard_ref = unsafe { &(*chunk).shards[slot % CHUNK_LEN] };
        let mut shard = shard_ref.load(Ordering::Relaxed);
        if shard.is_null() {
            shard = Shard::new_boxed(&self.layout);
            // Release: publishes the initialized shard to snapshots. Only the slot's owner
            // stores here.
            shard_ref.store(shard, Ordering::Release);
        }
        // SAFETY: shards live until the histogram is dropped.
        unsafe { &*shard }
    }

    #[cold]
    fn fallback_shard(&self) -> &Shard {
        let mut shard = self.fallback.load(Ordering::Acquire);
        if shard.is_null() {
            let fresh = Shard::new_boxed(&self.layout);
            // AcqRel/Acquire: publish ours or see the winner's shard initialized.
            match self.fallback.compare_exchange(
                std::ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => shard = fresh,
                Err(winner) => {
                    // SAFETY: `fresh` was never published; we own it.
                    drop(unsafe { Box::from_raw(fresh) });
                    shard = winner;
                }
            }
        }
        // SAFETY: shards live until the histogram is dropped.
        unsafe { &*shard }
    }

    /// Calls `f` on every shard that exists now.
    fn for_each_shard(&self, mut f: impl FnMut(&Shard)) {
        let slots = slot::high_water();
        for (c, chunk) in self.chunks.iter().enumerate() {
            if c * CHUNK_LEN >= slots {
                break;
            }
            // Acquire: pairs with the chunk's publication.
            let chunk = chunk.load(Ordering::Acquire);
            if chunk.is_null() {
                continue;
            }
            // SAFETY: chunks live until the histogram is dropped; `self` is borrowed.
            for shard in unsafe { &(*chunk).shards } {
                // Acquire: pairs with the shard's Release publication.
                let shard = shard.load(Ordering::Acquire);
                if !shard.is_null() {
                    // SAFETY: as above.
                    f(unsafe { &*shard });
                }
            }
        }
        let fallback = self.fallback.load(Ordering::Acquire);
        if !fallback.is_null() {
            // SAFETY: as above.
            f(unsafe { &*fallback });
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for chunk in self.chunks.iter_mut() {
            let chunk = sync::take_ptr(chunk);
            if chunk.is_null() {
                continue;
            }
            // SAFETY: exclusive access in drop; the chunk came from Box::into_raw and is freed
            // exactly once, here.
            let mut chunk = unsafe { Box::from_raw(chunk) };
            for shard in chunk.shards.iter_mut() {
                let shard = sync::take_ptr(shard);
                if !shard.is_null() {
                    // SAFETY: as above, for the shard.
                    drop(unsafe { Box::from_raw(shard) });
                }
            }
        }
        let fallback = sync::take_ptr(&mut self.fallback);
        if !fallback.is_null() {
            // SAFETY: as above.
            drop(unsafe { Box::from_raw(fallback) });
        }
    }
}

// === impl Histogram ===

/// A histogram of `u64` values (latencies in nanoseconds by default) that scales with cores.
///
/// Recording touches only the calling thread's shard: no locked instruction, no shared cache
/// line. [`snapshot`](Histogram::snapshot) never blocks writers and loses nothing: it sums every
/// shard into an immutable [`HistogramSnapshot`] whose bucket layout is HdrHistogram's, so it
/// converts exactly into an `hdrhistogram::Histogram<u64>`. `Clone` shares the histogram.
///
/// Values above the highest trackable value are recorded as that value (into the top bucket)
/// and counted by [`HistogramSnapshot::saturated`]; recording never panics.
///
/// ```
/// use std::time::Duration;
/// let latency = weir::Histogram::new();
/// latency.record(1_500);
/// latency.record_duration(Duration::from_micros(20));
/// let s = latency.snapshot();
/// assert_eq!(s.count(), 2);
/// assert!(s.value_at_quantile(1.0) >= 20_000);
/// ```
#[derive(Clone)]
pub struct Histogram {
    inner: Arc<Inner>,
}

/// Builds a [`Histogram`] with a custom bucket layout.
///
/// ```
/// let h = weir::Histogram::builder()
///     .significant_digits(2)
///     .lowest(1_000)
///     .highest(60_000_000_000)
///     .build()?;
/// h.record(5_000_000);
/// # Ok::<(), weir::HistogramError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct HistogramBuilder {
    digits: u8,
    lowest: u64,
    highest: u64,
}

impl HistogramBuilder {
    /// Significant decimal digits kept for every value, `1..=5` (default 3).
    pub fn significant_digits(mut self, digits: u8) -> Self {
        self.digits = digits;
        self
    }
    /// The lowest discernible value, at least 1 (default 1). Values below it share bucket 0.
    pub fn lowest(mut self, lowest: u64) -> Self {
        self.lowest = lowest;
        self
    }
    /// The highest trackable value, at least `2 × lowest` (default one hour in nanoseconds).
    pub fn highest(mut self, highest: u64) -> Self {
        self.highest = highest;
        self
    }
    /// Builds the histogram, or says which setting is wrong.
    pub fn build(self) -> Result<Histogram, HistogramError> {
        Layout::new(self.lowest, self.highest, self.digits).map(Histogram::with_layout)
    }
}

impl Histogram {
    /// A histogram for latencies in nanoseconds: 1 ns to one hour, 3 significant digits.
    pub fn new() -> Histogram {
        match Layout::new(DEFAULT_LOWEST, DEFAULT_HIGHEST, DEFAULT_DIGITS) {
            Ok(layout) => Histogram::with_layout(layout),
            // The defaults are constants checked by a unit test.
            Err(e) => unreachable!("default histogram layout is valid: {e}"),
        }
    }

    /// A builder for a custom bucket layout.
    pub fn builder() -> HistogramBuilder {
        HistogramBuilder {
            digits: DEFAULT_DIGITS,
            lowest: DEFAULT_LOWEST,
            highest: DEFAULT_HIGHEST,
        }
    }

    pub(crate) fn with_layout(layout: Layout) -> Histogram {
        Histogram {
            inner: Arc::new(Inner {
                layout,
                id: next_histogram_id(),
                seq: AtomicU64::new(0),
                chunks: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
                fallback: AtomicPtr::new(std::ptr::null_mut()),
            }),
        }
    }

    /// Records one value.
    #[inline]
    pub fn record(&self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `value` `n` times.
    #[inline]
    pub fn record_n(&self, value: u64, n: u64) {
        let inner = &*self.inner;
        let layout = &inner.layout;
        let saturated = value > layout.highest;
        let value = if saturated { layout.highest } else { value };
        let index = layout.index_of(value);
        let slot = slot::current() as usize;
        if slot < MAX_SLOTS {
            inner
                .owned_shard(slot)
                .add_owned(index, value, n, saturated);
        } else {
            inner
                .fallback_shard()
                .add_shared(index, value, n, saturated);
        }
    }

    /// Records a duration in nanoseconds (saturating at `u64::MAX` ns, about 584 years).
    #[inline]
    pub fn record_duration(&self, d: Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// An immutable, consistent copy of everything recorded so far. Never blocks writers.
    ///
    /// Its count equals the sum of its buckets, its min and max come from its buckets, and its
    /// sum is the sum of exactly the values its buckets hold: each thread's records are read
    /// from one moment between two of that thread's records (module docs, "Orderings"), so
    /// the sum and count of a [`delta_since`](HistogramSnapshot::delta_since) agree too.
    /// Records concurrent with the snapshot may or may not be included; every record that
    /// happened-before it is.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let inner = &*self.inner;
        // Relaxed: only uniqueness and per-histogram monotonicity are needed.
        let seq = inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut acc = snapshot::Accumulator::new(PAGE_LEN);
        let mut scratch = Vec::new();
        inner.for_each_shard(|s| s.read_into(&mut acc, &mut scratch));
        acc.finish(inner.layout, inner.id, seq)
    }

    pub(crate) fn layout(&self) -> Layout {
        self.inner.layout
    }

    /// The lowest discernible value.
    pub fn lowest(&self) -> u64 {
        self.inner.layout.lowest
    }
    /// The highest trackable value.
    pub fn highest(&self) -> u64 {
        self.inner.layout.highest
    }
    /// The significant digits.
    pub fn significant_digits(&self) -> u8 {
        self.inner.layout.digits
    }

    /// Heap bytes held by this histogram now: its header, and every shard and page that threads
    /// have touched. Shared by clones.
    pub fn heap_bytes(&self) -> usize {
        let inner = &*self.inner;
        let mut bytes = std::mem::size_of::<Inner>();
        for chunk in inner.chunks.iter() {
            if !chunk.load(Ordering::Acquire).is_null() {
                bytes += std::mem::size_of::<Chunk>();
            }
        }
        inner.for_each_shard(|s| bytes += s.heap_bytes());
        bytes
    }
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("lowest", &self.inner.layout.lowest)
            .field("highest", &self.inner.layout.highest)
            .field("significant_digits", &self.inner.layout.digits)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn default_layout_is_valid() {
        let h = Histogram::new();
        assert_eq!(
            (h.lowest(), h.highest(), h.significant_digits()),
            (1, DEFAULT_HIGHEST, 3)
        );
    }

    #[test]
    fn builder_errors() {
        assert_eq!(
            Histogram::builder().significant_digits(0).build().err(),
            Some(HistogramError::SignificantDigits { digits: 0 })
        );
        assert_eq!(
            Histogram::builder().lowest(0).build().err(),
            Some(HistogramError::LowestIsZero)
        );
        assert!(matches!(
            Histogram::builder().lowest(100).highest(150).build(),
            Err(HistogramError::HighestTooLow { .. })
        ));
    }

    #[test]
    fn clamps_and_counts_saturated() {
        let h = Histogram::builder().highest(1000).build().unwrap();
        h.record(5000);
        h.record(u64::MAX);
        h.record(10);
        let s = h.snapshot();
        assert_eq!(s.count(), 3);
        assert_eq!(s.saturated(), 2);
        assert!(s.max() >= 1000);
        assert_eq!(s.sum(), 1000 + 1000 + 10);
    }
}
