//! Per-thread slot ids.
//!
//! A thread claims a small integer id (its *slot*) the first time it records into any weir metric,
//! and releases it when it exits. Every per-thread structure in weir (counter arenas, histogram
//! shards) is indexed by slot, so a slot's cells have exactly one writer at a time. When a thread
//! exits, its cells stay where they are with their values; the next thread to claim the slot
//! continues adding to them. Nothing is folded, so nothing can be lost.
//!
//! A thread that cannot have a slot (the table is full, or its thread-locals are already being
//! torn down) gets [`NO_SLOT`]; callers then use a shared atomic fallback cell, so an increment
//! is never dropped.
//!
//! # Orderings
//! - Claim is a `compare_exchange(false, true, Acquire, Relaxed)` on the slot's `used` flag and
//!   release is a `store(false, Release)`. The pair makes every write the previous owner made to
//!   the slot's cells happen-before the new owner's first read of them, which is what lets the new
//!   owner update them with a plain load + store.
//! - `high_water` is raised with a `Relaxed` `fetch_max`. Readers only need it to cover every slot
//!   whose writes happened-before the read; such a write happened after the claim's `fetch_max`,
//!   so by coherence the reader's load sees that value or a larger one.

use std::cell::Cell;

use crate::sync::{AtomicBool, AtomicUsize, Ordering, global};

/// How many threads can hold a slot at once. More concurrent threads than this still record
/// exactly, through each metric's shared fallback cell.
#[cfg(not(weir_loom))]
pub(crate) const MAX_SLOTS: usize = 1024;
#[cfg(weir_loom)]
pub(crate) const MAX_SLOTS: usize = 2;

/// Marks a thread that has not tried to claim a slot yet.
const UNCLAIMED: u32 = u32::MAX;
/// A thread without a slot: use the shared fallback cell. Any value `>= MAX_SLOTS` means this.
pub(crate) const NO_SLOT: u32 = u32::MAX - 1;

pub(crate) struct SlotTable {
    used: [AtomicBool; MAX_SLOTS],
    high_water: AtomicUsize,
}

global! {
    fn table() -> SlotTable {
        std: SlotTable {
            used: [const { AtomicBool::new(false) }; MAX_SLOTS],
            high_water: AtomicUsize::new(0),
        },
        loom: SlotTable {
            used: std::array::from_fn(|_| AtomicBool::new(false)),
            high_water: AtomicUsize::new(0),
        },
    }
}

impl SlotTable {
    fn claim(&self) -> Option<u32> {
        for (i, used) in self.used.iter().enumerate() {
            // Relaxed pre-check: only a hint to skip slots in use; the CAS decides.
            if used.load(Ordering::Relaxed) {
                continue;
            }
            // Acquire: pairs with the Release store in `release` by the slot's previous owner,
            // so that owner's cell writes are visible before we continue them.
            if used
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                // Relaxed: see the module docs (coherence is enough for readers).
                self.high_water.fetch_max(i + 1, Ordering::Relaxed);
                return Some(i as u32);
            }
        }
        None
    }

    fn release(&self, slot: u32) {
        // Release: publishes this thread's cell writes to the next owner (see `claim`).
        self.used[slot as usize].store(false, Ordering::Release);
    }
}

/// One past the highest slot ever claimed: readers sum slots `0..high_water()`.
#[inline]
pub(crate) fn high_water() -> usize {
    table().high_water.load(Ordering::Relaxed)
}

/// Releases the thread's slot when the thread exits.
struct SlotGuard {
    slot: Cell<Option<u32>>,
}

impl SlotGuard {
    fn release(&self) {
        // Anything this thread records from now on (in other thread-locals' destructors) goes to
        // the fallback cells.
        let _ = CURRENT.try_with(|c| c.set(NO_SLOT));
        if let Some(slot) = self.slot.take() {
            table().release(slot);
        }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.release();
    }
}

/// Releases the calling thread's slot now, as its exit would. Loom models call this at the end
/// of each modeled thread: loom runs thread-local destructors outside its execution context,
/// where the slot table (a per-execution static) cannot be reached.
#[cfg(weir_loom)]
pub(crate) fn release_current() {
    let _ = GUARD.try_with(SlotGuard::release);
}

#[cfg(not(weir_loom))]
std::thread_local! {
    static CURRENT: Cell<u32> = const { Cell::new(UNCLAIMED) };
    static GUARD: SlotGuard = claim_guard();
}

#[cfg(weir_loom)]
loom::thread_local! {
    static CURRENT: Cell<u32> = Cell::new(UNCLAIMED);
    static GUARD: SlotGuard = claim_guard();
}

fn claim_guard() -> SlotGuard {
    let slot = table().claim();
    let _ = CURRENT.try_with(|c| c.set(slot.unwrap_or(NO_SLOT)));
    SlotGuard {
        slot: Cell::new(slot),
    }
}

/// The calling thread's slot, claiming one on first use. Returns a value `>= MAX_SLOTS` when the
/// thread has no slot (use the fallback).
#[inline(always)]
pub(crate) fn current() -> u32 {
    #[cfg(not(weir_loom))]
    let slot = CURRENT.with(Cell::get);
    #[cfg(weir_loom)]
    let slot = CURRENT.try_with(Cell::get).unwrap_or(NO_SLOT);
    if slot != UNCLAIMED {
        return slot;
    }
    claim_current()
}

#[cold]
#[inline(never)]
fn claim_current() -> u32 {
    // Initializing GUARD claims the slot and records it in CURRENT. If the thread-locals are
    // already being destroyed, there is no slot to be had: use the fallback from now on.
    match GUARD.try_with(|g| g.slot.get()) {
        Ok(Some(slot)) => slot,
        Ok(None) | Err(_) => {
            let _ = CURRENT.try_with(|c| c.set(NO_SLOT));
            NO_SLOT
        }
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_after_thread_exit() {
        let a = std::thread::spawn(current).join().unwrap();
        assert!((a as usize) < MAX_SLOTS);
        // The exited thread's slot is free again; some thread can claim it.
        let claimed: Vec<u32> = (0..4)
            .map(|_| std::thread::spawn(current).join().unwrap())
            .collect();
        assert!(claimed.iter().all(|&s| (s as usize) < MAX_SLOTS));
        assert!(high_water() >= 1);
    }

    #[test]
    fn a_thread_keeps_its_slot() {
        let s = current();
        assert_eq!(s, current());
    }
}
