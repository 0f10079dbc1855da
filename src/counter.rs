//! Counters and gauges.
//!
//! A [`Counter`] is little more than an id. Each thread slot owns an *arena*: a lazily built table
//! of pages of 8-byte cells, one cell per counter id. Only the slot's owner writes its arena, so
//! an increment is a relaxed load plus a relaxed store (no locked instruction, no cache line
//! shared with another writer). `get` sums the cell of every slot plus the counter's shared
//! fallback cell. Padding is per thread, not per metric: a page is written by one thread only, so
//! 10,000 counters touched by 64 threads cost 64 × 10,000 × 8 B = 5 MB, not 80 MB.
//!
//! # Orderings
//! - Cell update by the owner: `load(Relaxed)` + `store(Release)`. The owner is the only writer
//!   (the slot claim/release pair in [`crate::slot`] hands cells between owners with
//!   happens-before), so the load always sees the latest value. For exactness readers need only
//!   coherence: an add that happened-before `get` is seen by `get`'s load of that cell. The
//!   Release store and the reader's Acquire loads add one more edge: a reader that sees an add
//!   also sees every add the writer made before it, to any metric. A registry snapshot reads
//!   metrics in reverse registration order, so if a program always adds to A before B (A
//!   registered first), no snapshot shows B's add without A's. On x86-64 the store is still a
//!   plain `mov` (or a non-locked `inc`), and the loads plain loads.
//! - Arena and page pointers are published with `Release` (compare-exchange or store) and read by
//!   readers with `Acquire`, so a reader that finds a page sees it initialized (zeroed). The owner
//!   reads its own pointers `Relaxed`: it wrote them itself, or received them through the slot
//!   claim's Acquire.
//! - The fallback cell is a shared `fetch_add(Release)`, read with Acquire, for the same edge.
//! - Counter ids are recycled through a mutex-protected free list. Before an id is freed, its cell
//!   is zeroed in every arena (Relaxed stores); the mutex orders those stores before the id's next
//!   allocation, and every later use of the new counter happens after that allocation.

use std::fmt;
use std::sync::Arc;

use crate::slot::{self, MAX_SLOTS};
use crate::sync::{AtomicI64, AtomicPtr, AtomicU64, Mutex, Ordering, global, lock};

#[cfg(not(weir_loom))]
const PAGE_SHIFT: u32 = 9;
#[cfg(weir_loom)]
const PAGE_SHIFT: u32 = 1;
const PAGE_LEN: usize = 1 << PAGE_SHIFT;
const PAGE_MASK: u32 = (PAGE_LEN as u32) - 1;

#[cfg(not(weir_loom))]
const DIR_LEN: usize = 2048; // a power of two (see `split`)
#[cfg(weir_loom)]
const DIR_LEN: usize = 4;

/// Counter ids at or above this live only in the fallback cell (1,048,576 under std).
const MAX_IDS: u32 = (DIR_LEN * PAGE_LEN) as u32;
const NO_ID: u32 = u32::MAX;

/// One page of cells, aligned so that no two threads' pages share a cache line.
#[repr(align(128))]
struct Page {
    cells: [AtomicU64; PAGE_LEN],
}

/// One slot's cells for every counter id.
struct Arena {
    dir: [AtomicPtr<Page>; DIR_LEN],
}

struct Arenas {
    by_slot: [AtomicPtr<Arena>; MAX_SLOTS],
}

global! {
    fn arenas() -> Arenas {
        std: Arenas { by_slot: [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_SLOTS] },
        loom: Arenas { by_slot: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())) },
    }
}

struct IdAlloc {
    next: u32,
    free: Vec<u32>,
}

global! {
    fn ids() -> Mutex<IdAlloc> {
        std: Mutex::new(IdAlloc { next: 0, free: Vec::new() }),
        loom: Mutex::new(IdAlloc { next: 0, free: Vec::new() }),
    }
}

fn alloc_id() -> u32 {
    let mut ids = lock(ids());
    if let Some(id) = ids.free.pop() {
        return id;
    }
    if ids.next < MAX_IDS {
        ids.next += 1;
        ids.next - 1
    } else {
        NO_ID
    }
}

#[inline(always)]
fn split(id: u32) -> (usize, usize) {
    // Ids below MAX_IDS (all but NO_ID, which callers exclude) have a page index below DIR_LEN;
    // the mask says so to the compiler, which then drops its bounds check.
    (
        (id >> PAGE_SHIFT) as usize & (DIR_LEN - 1),
        (id & PAGE_MASK) as usize,
    )
}

/// The cell of `id` in `slot`'s arena, for a reader. `None` if the slot never touched that page.
#[inline]
fn reader_cell(slot: usize, id: u32) -> Option<&'static AtomicU64> {
    let (page, cell) = split(id);
    // Acquire: pairs with the Release publication in `owner_cell_slow`.
    let arena = arenas().by_slot[slot].load(Ordering::Acquire);
    if arena.is_null() {
        return None;
    }
    // SAFETY: arenas are never freed once published, and were fully initialized before the
    // Release publication that our Acquire load observed.
    let arena: &'static Arena = unsafe { &*arena };
    let page = arena.dir[page].load(Ordering::Acquire);
    if page.is_null() {
        return None;
    }
    // SAFETY: as above, pages are never freed and were initialized before publication.
    Some(unsafe { &(*page).cells[cell] })
}

/// The calling thread's own cell for `id`, allocating the arena or page on first use. `None`
/// when the thread has no slot or the id has no cells (use the fallback).
#[inline(always)]
fn owner_cell(slot: u32, id: u32) -> Option<&'static AtomicU64> {
    if slot as usize >= MAX_SLOTS || id == NO_ID {
        return None;
    }
    let (page, cell) = split(id);
    // Relaxed: we are the slot's owner; we published this pointer ourselves or acquired it
    // through the slot claim.
    let arena = arenas().by_slot[slot as usize].load(Ordering::Relaxed);
    if !arena.is_null() {
        // SAFETY: arenas are never freed once published.
        let arena: &'static Arena = unsafe { &*arena };
        let page = arena.dir[page].load(Ordering::Relaxed);
        if !page.is_null() {
            // SAFETY: pages are never freed once published.
            return Some(unsafe { &(*page).cells[cell] });
        }
    }
    owner_cell_slow(slot as usize, page, cell)
}

#[cold]
#[inline(never)]
fn owner_cell_slow(slot: usize, page: usize, cell: usize) -> Option<&'static AtomicU64> {
    let slot_ref = &arenas().by_slot[slot];
    // Relaxed: only this slot's owner stores here (see `owner_cell`).
    let mut arena = slot_ref.load(Ordering::Relaxed);
    if arena.is_null() {
        let fresh = Box::into_raw(Box::new(Arena {
            dir: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
        }));
        // Release: publishes the initialized arena to readers (their Acquire load). Only the
        // slot's owner stores here, so a plain store suffices.
        slot_ref.store(fresh, Ordering::Release);
        arena = fresh;
    }
    // SAFETY: arenas are never freed once published.
    let arena: &'static Arena = unsafe { &*arena };
    let dir = &arena.dir[page];
    let mut p = dir.load(Ordering::Relaxed);
    if p.is_null() {
        let fresh = Box::into_raw(Box::new(Page {
            cells: std::array::from_fn(|_| AtomicU64::new(0)),
        }));
        // Release: publishes the zeroed page to readers; only the owner stores here.
        dir.store(fresh, Ordering::Release);
        p = fresh;
    }
    // SAFETY: pages are never freed once published.
    Some(unsafe { &(*p).cells[cell] })
}

// === impl Counter ===

/// A monotonically increasing `u64` counter that scales with cores.
///
/// `add` from one thread is a relaxed load and store on a cell that only that thread writes;
/// `get` sums every thread's cell and is exact: it includes every `add` that happened-before it.
/// Totals wrap at `u64::MAX` (as Prometheus counters do in practice, never in a realistic run).
/// `Clone` shares the counter.
///
/// ```
/// let requests = weir::Counter::new();
/// requests.inc();
/// requests.add(41);
/// assert_eq!(requests.get(), 42);
/// ```
#[derive(Clone)]
pub struct Counter {
    inner: Arc<CounterInner>,
}

struct CounterInner {
    id: u32,
    fallback: AtomicU64,
}

impl Counter {
    /// Creates a counter at zero.
    pub fn new() -> Counter {
        Counter {
            inner: Arc::new(CounterInner {
                id: alloc_id(),
                fallback: AtomicU64::new(0),
            }),
        }
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        match owner_cell(slot::current(), self.inner.id) {
            // Relaxed load: this thread is the cell's only writer (module docs). Release store:
            // a reader whose Acquire load sees this add also sees everything this thread did
            // before it (what makes registry snapshots consistent across metrics). On x86 both
            // are plain moves.
            Some(cell) => cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Release,
            ),
            // Release: as for the owned cell (atomicity alone makes it exact).
            None => {
                self.inner.fallback.fetch_add(n, Ordering::Release);
            }
        }
    }

    /// The total: every `add` that happened-before this call, and possibly some concurrent ones.
    pub fn get(&self) -> u64 {
        // Acquire loads: coherence alone makes the total exact; Acquire adds the cross-metric
        // edge described in the module docs.
        let mut total = self.inner.fallback.load(Ordering::Acquire);
        if self.inner.id != NO_ID {
            for slot in 0..slot::high_water() {
                if let Some(cell) = reader_cell(slot, self.inner.id) {
                    total = total.wrapping_add(cell.load(Ordering::Acquire));
                }
            }
        }
        total
    }

    /// A reader that reports exact intervals (see [`CounterReader`]), starting from now.
    pub fn reader(&self) -> CounterReader {
        CounterReader {
            counter: self.clone(),
            last: self.get(),
        }
    }
}

impl Default for Counter {
    fn default() -> Counter {
        Counter::new()
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counter")
            .field("value", &self.get())
            .finish()
    }
}

impl Drop for CounterInner {
    fn drop(&mut self) {
        if self.id == NO_ID {
            return;
        }
        // No handle to this counter exists any more, so no thread can be writing its cells.
        // Zero them, then recycle the id; the mutex orders the zeroing before the next use.
        for slot in 0..slot::high_water() {
            if let Some(cell) = reader_cell(slot, self.id) {
                cell.store(0, Ordering::Relaxed);
            }
        }
        lock(ids()).free.push(self.id);
    }
}

/// Exact intervals of a [`Counter`]: each call to [`delta`](CounterReader::delta) returns what
/// was added since the previous call (or since the reader was made).
///
/// The counter's cells are cumulative and only ever added to; the reader keeps its own baseline,
/// so reading never blocks or resets writers, and no add is lost or counted twice across
/// intervals. Any number of readers can follow one counter independently.
///
/// ```
/// let c = weir::Counter::new();
/// let mut r = c.reader();
/// c.add(5);
/// assert_eq!(r.delta(), 5);
/// c.add(2);
/// assert_eq!(r.delta(), 2);
/// assert_eq!(r.delta(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct CounterReader {
    counter: Counter,
    last: u64,
}

impl CounterReader {
    /// What was added since the last call.
    pub fn delta(&mut self) -> u64 {
        let now = self.counter.get();
        let d = now.wrapping_sub(self.last);
        self.last = now;
        d
    }

    /// The total at the last call (or when the reader was made).
    pub fn last_total(&self) -> u64 {
        self.last
    }
}

// === impl Gauge ===

/// An `i64` gauge: a value that goes up and down, or is set outright.
///
/// A gauge is one atomic word: `set` must overwrite every earlier change, which per-thread cells
/// cannot do without a lock. Arithmetic wraps. `Clone` shares the gauge.
///
/// ```
/// let in_flight = weir::Gauge::new();
/// in_flight.inc();
/// in_flight.add(10);
/// in_flight.dec();
/// assert_eq!(in_flight.get(), 10);
/// in_flight.set(-3);
/// assert_eq!(in_flight.get(), -3);
/// ```
#[derive(Clone, Default)]
pub struct Gauge {
    value: Arc<AtomicI64>,
}

// Relaxed throughout: a gauge publishes no other memory, and each RMW is atomic.
impl Gauge {
    /// Creates a gauge at zero.
    pub fn new() -> Gauge {
        Gauge::default()
    }
    /// Sets the value.
    #[inline]
    pub fn set(&self, v: i64) {
        self.value.store(v, Ordering::Relaxed);
    }
    /// Adds `n` (wrapping).
    #[inline]
    pub fn add(&self, n: i64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }
    /// Subtracts `n` (wrapping).
    #[inline]
    pub fn sub(&self, n: i64) {
        self.value.fetch_sub(n, Ordering::Relaxed);
    }
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.sub(1);
    }
    /// The current value.
    #[inline]
    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Gauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gauge").field("value", &self.get()).finish()
    }
}

// === impl FloatGauge ===

/// An `f64` gauge, stored as its bit pattern in one atomic word.
///
/// `add` is a compare-exchange loop, so concurrent adds are never lost.
///
/// ```
/// let load = weir::FloatGauge::new();
/// load.set(0.5);
/// load.add(0.25);
/// assert_eq!(load.get(), 0.75);
/// ```
#[derive(Clone, Default)]
pub struct FloatGauge {
    bits: Arc<AtomicU64>,
}

impl FloatGauge {
    /// Creates a gauge at `0.0`.
    pub fn new() -> FloatGauge {
        FloatGauge::default()
    }
    /// Sets the value.
    #[inline]
    pub fn set(&self, v: f64) {
        // Relaxed: publishes nothing but the value itself.
        self.bits.store(v.to_bits(), Ordering::Relaxed);
    }
    /// Adds `delta` (IEEE-754 addition; NaN and infinities propagate as in `f64`).
    pub fn add(&self, delta: f64) {
        // Relaxed: the CAS loop makes the read-modify-write atomic; nothing else is published.
        let mut cur = self.bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + delta).to_bits();
            match self
                .bits
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }
    /// The current value.
    #[inline]
    pub fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }
}

impl fmt::Debug for FloatGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FloatGauge")
            .field("value", &self.get())
            .finish()
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn ids_are_recycled_zeroed() {
        let a = Counter::new();
        let writer = a.clone();
        std::thread::spawn(move || writer.add(7)).join().unwrap();
        a.add(1);
        let id = a.inner.id;
        drop(a);
        // The id goes back to the free list (LIFO), so a new counter reuses it; every new
        // counter, including the one that got the old id, starts at zero.
        let fresh: Vec<Counter> = (0..64).map(|_| Counter::new()).collect();
        assert!(fresh.iter().all(|c| c.get() == 0));
        let reused_here = fresh.iter().any(|c| c.inner.id == id);
        // (A test running in parallel may have taken it first: then it is not free either.)
        assert!(
            reused_here || !lock(ids()).free.contains(&id),
            "id {id} was not recycled"
        );
    }

    #[test]
    fn float_gauge_concurrent_adds_are_exact() {
        let g = FloatGauge::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        g.add(1.0);
                    }
                });
            }
        });
        assert_eq!(g.get(), 40_000.0);
    }
}
