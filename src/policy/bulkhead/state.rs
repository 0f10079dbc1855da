//! The bulkhead's packed permit word: permits in use, waiters queued, and a retired flag, in
//! one `u64` read through the [`Snapshot`] newtype and changed only by compare-and-swap.
//!
//! ```text
//!  63   62                         32 31                              0
//! +---+-----------------------------+---------------------------------+
//! | R |        waiters (31)         |           in use (32)           |
//! +---+-----------------------------+---------------------------------+
//! ```
//!
//! Invariants: `in_use <= max` always (every increment is a CAS that checks it); `waiters`
//! changes only under the waiter-queue mutex and equals the queue's length whenever that mutex
//! is free; while `waiters > 0`, no lock-free path changes the word (acquiring needs
//! `waiters == 0`, and so does the lock-free release), so a released permit is always handed
//! to a waiter, never dropped back into the pool behind the queue's back.
#![forbid(unsafe_code)]

/// Bits 0..32: permits handed out and not yet released.
const IN_USE_MASK: u64 = 0xffff_ffff;
/// Bit offset of the waiter count.
const WAITERS_SHIFT: u32 = 32;
/// The waiter count's values (31 bits), before shifting.
pub(crate) const WAITERS_MAX: u64 = (1 << 31) - 1;
/// Bit 63: the bulkhead was retired (evicted from a keyed map) and hands out nothing more.
const RETIRED: u64 = 1 << 63;
/// The largest permit limit (the in-use field must also hold it).
pub(crate) const MAX_PERMITS: u32 = 1 << 31;

/// One reading of the permit word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Snapshot(u64);

impl Snapshot {
    pub(crate) const INITIAL: Snapshot = Snapshot(0);

    pub(crate) fn from_bits(bits: u64) -> Snapshot {
        Snapshot(bits)
    }

    pub(crate) fn bits(self) -> u64 {
        self.0
    }

    pub(crate) fn in_use(self) -> u32 {
        (self.0 & IN_USE_MASK) as u32
    }

    pub(crate) fn waiters(self) -> u32 {
        ((self.0 >> WAITERS_SHIFT) & WAITERS_MAX) as u32
    }

    pub(crate) fn retired(self) -> bool {
        self.0 & RETIRED != 0
    }

    /// One more permit in use (the caller checked the limit).
    pub(crate) fn take(self) -> Snapshot {
        Snapshot(self.0 + 1)
    }

    /// One fewer permit in use (the caller checked `in_use > 0`).
    pub(crate) fn put(self) -> Snapshot {
        Snapshot(self.0 - 1)
    }

    /// One more waiter (the caller checked the waiter limit).
    pub(crate) fn enqueue(self) -> Snapshot {
        Snapshot(self.0 + (1 << WAITERS_SHIFT))
    }

    /// One fewer waiter (the caller checked `waiters > 0`).
    pub(crate) fn dequeue(self) -> Snapshot {
        Snapshot(self.0 - (1 << WAITERS_SHIFT))
    }

    pub(crate) fn retire(self) -> Snapshot {
        Snapshot(self.0 | RETIRED)
    }
}

/// What the lock-free acquire attempt found.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// A permit was taken; the snapshot is the word after.
    Taken(Snapshot),
    /// None free (or waiters queued ahead); the snapshot is the word seen.
    Busy(Snapshot),
    /// The bulkhead was retired.
    Retired,
}

/// What enqueueing (under the queue mutex) did.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Enqueue {
    /// A permit was free after all and was taken.
    Taken(Snapshot),
    /// The caller is now counted as a waiter (and must push its node before unlocking).
    Queued(Snapshot),
    /// The queue is at its limit.
    QueueFull(Snapshot),
    /// The bulkhead was retired.
    Retired,
}

/// What releasing one permit did.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// Returned to the pool.
    Returned,
    /// Waiters are queued: the permit must be handed to one, under the queue mutex.
    HandOff,
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let s = Snapshot::INITIAL.take().take().enqueue();
        assert_eq!((s.in_use(), s.waiters(), s.retired()), (2, 1, false));
        let s = s.dequeue().put();
        assert_eq!((s.in_use(), s.waiters()), (1, 0));
        let full = Snapshot::from_bits(u64::from(MAX_PERMITS));
        assert_eq!(full.in_use(), MAX_PERMITS);
        assert_eq!(full.waiters(), 0);
        let r = Snapshot::INITIAL.retire();
        assert!(r.retired());
        assert_eq!(Snapshot::from_bits(r.bits()), r);
        let w = Snapshot::from_bits(WAITERS_MAX << 32);
        assert_eq!(w.waiters() as u64, WAITERS_MAX);
        assert!(!w.retired());
    }
}
