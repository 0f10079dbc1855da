//! The one synchronization facade.
//!
//! Every atomic, cell and thread-local in weir comes from here. Under `cfg(weir_loom)` they are
//! loom's model-checked versions; otherwise they are std's. Both sides expose the same small API,
//! so the code above this module is written once and model-checked as it ships.
//!
//! The cfg is namespaced (`weir_loom`, not `loom`) so that a global `--cfg loom` set for another
//! crate does not switch weir's internals.

#[cfg(not(weir_loom))]
pub(crate) use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(not(weir_loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

#[cfg(weir_loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(weir_loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

/// A boxed slice of null `AtomicPtr`s.
pub(crate) fn null_ptrs<T>(len: usize) -> Box<[AtomicPtr<T>]> {
    (0..len)
        .map(|_| AtomicPtr::new(std::ptr::null_mut()))
        .collect()
}

/// Reads an `AtomicPtr` through exclusive access (used only in `Drop`).
pub(crate) fn take_ptr<T>(p: &mut AtomicPtr<T>) -> *mut T {
    #[cfg(not(weir_loom))]
    {
        *p.get_mut()
    }
    #[cfg(weir_loom)]
    {
        p.with_mut(|p| *p)
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every structure weir
/// keeps behind a mutex is valid after any partial update (they are free lists and caches).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Declares a process-wide static and an accessor function for it. Under std the static is a
/// plain `static` with a const initializer (no lazy-init check on the hot path); under loom it is
/// a `loom::lazy_static!`, which is fresh in every model execution.
macro_rules! global {
    ($(#[$m:meta])* $vis:vis fn $name:ident() -> $t:ty { std: $std_init:expr, loom: $loom_init:expr $(,)? }) => {
        $(#[$m])*
        #[inline(always)]
        $vis fn $name() -> &'static $t {
            #[cfg(not(weir_loom))]
            {
                static VALUE: $t = $std_init;
                &VALUE
            }
            #[cfg(weir_loom)]
            {
                loom::lazy_static! {
                    static ref VALUE: $t = $loom_init;
                }
                &VALUE
            }
        }
    };
}
pub(crate) use global;

/// Lets another thread run while this one waits for it: `std::thread::yield_now`, or loom's
/// (which tells the model checker that this thread makes no progress until another runs).
pub(crate) fn yield_now() {
    #[cfg(not(weir_loom))]
    std::thread::yield_now();
    #[cfg(weir_loom)]
    loom::thread::yield_now();
}

/// A value that only the holder of an exclusive right may reach, the right being defined and
/// handed from thread to thread by its owner's protocol (for [`BitLock`], a bit of a word).
/// Under loom it is loom's `UnsafeCell`, which reports two accesses not ordered by
/// happens-before as a race: a protocol that hands the right over without a Release/Acquire
/// pair fails its model.
pub(crate) struct ExclusiveCell<T> {
    #[cfg(not(weir_loom))]
    value: std::cell::UnsafeCell<T>,
    #[cfg(weir_loom)]
    value: loom::cell::UnsafeCell<T>,
}

// SAFETY: the cell only gives `&mut T` (never `&T` to several threads at once), to one thread
// at a time (the contract of `with_mut`), so sharing it is moving `T` between threads: sound
// when `T: Send`.
unsafe impl<T: Send> Sync for ExclusiveCell<T> {}
// SAFETY: owning the cell is owning a `T`.
unsafe impl<T: Send> Send for ExclusiveCell<T> {}

impl<T> ExclusiveCell<T> {
    pub(crate) fn new(value: T) -> ExclusiveCell<T> {
        ExclusiveCell {
            #[cfg(not(weir_loom))]
            value: std::cell::UnsafeCell::new(value),
            #[cfg(weir_loom)]
            value: loom::cell::UnsafeCell::new(value),
        }
    }

    /// Runs `f` on the value.
    ///
    /// # Safety
    ///
    /// The caller holds the exclusive right that the owner's protocol defines (no other call
    /// of `with_mut` on this cell runs or starts before this one returns), and the previous
    /// holder's `with_mut` happens-before this one (its release of the right is a Release
    /// operation that this thread's taking of it reads with Acquire).
    #[inline]
    pub(crate) unsafe fn with_mut<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        #[cfg(not(weir_loom))]
        {
            // SAFETY: exclusive and ordered after the previous access (the caller's contract).
            f(unsafe { &mut *self.value.get() })
        }
        #[cfg(weir_loom)]
        {
            // SAFETY: as above; loom checks the happens-before claim.
            self.value.with_mut(|p| f(unsafe { &mut *p }))
        }
    }
}

/// A word of flags with a lock in it: the value `T` belongs to whoever set the word's `OWNER`
/// bit, and a waiter that sets the `WANT` bit can be handed the value directly. The other bits
/// are the caller's, to change with the methods below, which never change `OWNER` or `WANT`
/// except as documented (they mask them), so the lock cannot be broken by a stray bit
/// operation, and no `unsafe` is needed above this module.
///
/// - The lock is taken by an `Acquire` RMW that finds `OWNER` clear and sets it
///   ([`BitLock::try_take`], [`BitLock::fetch_or_take`], [`Waiter::take`]); it is given back,
///   or handed to the waiter, by a `Release` RMW of the holder ([`Owner`]'s methods and
///   `Drop`). All changes of the word are RMWs, so each taker reads the last giver's Release
///   (or a later RMW in its release sequence): successive owners' accesses to the value are
///   ordered by happens-before.
/// - [`BitLock::want`] queues on a mutex, so at most one [`Waiter`] exists; it sets `WANT`,
///   and only the waiter's own take or an owner's handover clears it. A handover keeps `OWNER`
///   and clears `WANT`; the waiter sees that with an `Acquire` load and owns the value.
pub(crate) struct BitLock<T, const OWNER: u64, const WANT: u64> {
    word: AtomicU64,
    value: ExclusiveCell<T>,
    /// Queues waiters: held by the one [`Waiter`].
    queue: Mutex<()>,
}

/// The right to the value of a [`BitLock`]: this thread set `OWNER`. Dropped, it gives the
/// lock back (clearing `OWNER`, with `Release`), as on a panic.
pub(crate) struct Owner<'a, T, const OWNER: u64, const WANT: u64> {
    lock: &'a BitLock<T, OWNER, WANT>,
}

/// The one thread queued for a [`BitLock`] with `WANT` set ([`BitLock::want`]).
/// [`Waiter::take`] turns it into an [`Owner`] and a [`Queued`], which keeps later waiters
/// queued (and so `WANT` clear) until the caller drops it.
pub(crate) struct Waiter<'a, T, const OWNER: u64, const WANT: u64> {
    lock: &'a BitLock<T, OWNER, WANT>,
    /// The word as last read.
    cur: u64,
    _queue: MutexGuard<'a, ()>,
}

impl<T, const OWNER: u64, const WANT: u64> BitLock<T, OWNER, WANT> {
    /// The bits that only this module changes.
    const LOCK_BITS: u64 = OWNER | WANT;

    /// A free lock (the word 0) holding `value`.
    pub(crate) fn new(value: T) -> Self {
        const { assert!(OWNER.count_ones() == 1 && WANT.count_ones() == 1 && OWNER != WANT) };
        BitLock {
            word: AtomicU64::new(0),
            value: ExclusiveCell::new(value),
            queue: Mutex::new(()),
        }
    }

    /// Loads the word.
    #[inline]
    pub(crate) fn load(&self, order: Ordering) -> u64 {
        self.word.load(order)
    }

    /// `compare_exchange_weak` from `cur` to `new`, except that `OWNER` and `WANT` stay as
    /// they are in `cur` (use the take methods to set `OWNER`).
    #[inline]
    pub(crate) fn compare_exchange_weak(
        &self,
        cur: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        let new = (new & !Self::LOCK_BITS) | (cur & Self::LOCK_BITS);
        self.word.compare_exchange_weak(cur, new, success, failure)
    }

    /// `fetch_and` of the caller's bits: `OWNER` and `WANT` are kept.
    #[inline]
    pub(crate) fn fetch_and(&self, mask: u64, order: Ordering) -> u64 {
        self.word.fetch_and(mask | Self::LOCK_BITS, order)
    }

    /// Takes the lock if `cur` is the word and `OWNER` is clear in it: a
    /// `compare_exchange_weak` to `cur | set | OWNER` (`set`'s `WANT` bit ignored), `Acquire`
    /// on success, `Relaxed` on failure. `Err` holds the word read (or `cur`, if it has
    /// `OWNER` set).
    #[inline]
    pub(crate) fn try_take(&self, cur: u64, set: u64) -> Result<Owner<'_, T, OWNER, WANT>, u64> {
        if cur & OWNER != 0 {
            return Err(cur);
        }
        let new = cur | (set & !WANT) | OWNER;
        // Acquire on success: taking the lock reads the last owner's Release (module docs).
        // Relaxed on failure: nothing is taken.
        match self
            .word
            .compare_exchange_weak(cur, new, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Ok(Owner { lock: self }),
            Err(actual) => Err(actual),
        }
    }

    /// `fetch_or(bits | OWNER)` with `AcqRel` (`bits`' `WANT` ignored): Release publishes this
    /// thread's writes to whoever reads the bits set; Acquire because, if `OWNER` was clear,
    /// this takes the lock (returned). Returns the previous word.
    #[inline]
    pub(crate) fn fetch_or_take(&self, bits: u64) -> (u64, Option<Owner<'_, T, OWNER, WANT>>) {
        let prev = self.word.fetch_or((bits & !WANT) | OWNER, Ordering::AcqRel);
        // (Not `then_some`: an `Owner` built and dropped would clear `OWNER`.)
        let owner = if prev & OWNER == 0 {
            Some(Owner { lock: self })
        } else {
            None
        };
        (prev, owner)
    }

    /// Queues (behind other waiters) and sets `WANT`: the owner hands the lock over when it
    /// gives it up ([`Owner::give`]), or [`Waiter::take`] takes it once free.
    pub(crate) fn want(&self) -> Waiter<'_, T, OWNER, WANT> {
        let queue = lock(&self.queue);
        // Relaxed: a request; it publishes nothing, and the lock is taken with Acquire.
        let cur = self.word.fetch_or(WANT, Ordering::Relaxed) | WANT;
        Waiter {
            lock: self,
            cur,
            _queue: queue,
        }
    }
}

impl<'a, T, const OWNER: u64, const WANT: u64> Owner<'a, T, OWNER, WANT> {
    /// Runs `f` on the value.
    #[inline]
    pub(crate) fn with<R>(&mut self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: this `Owner` exists only while this thread's take set `OWNER` and nothing
        // has cleared it (only an `Owner` clears it, consuming itself, or hands it over),
        // and `&mut self` forbids a second `with` meanwhile: this is the only access. The
        // take was an Acquire RMW, or an Acquire load seeing a handover, reading the previous
        // owner's Release RMW that gave the lock up or a later RMW (every change of the word
        // is an RMW, so all lie in that Release's release sequence): the previous owner's
        // accesses happen before ours.
        unsafe { self.lock.value.with_mut(f) }
    }

    /// Gives the lock up if `cur` is the word, clearing the caller's bits `clear` in the same
    /// `compare_exchange_weak` (`Release` on success, `Relaxed` on failure): to the waiter if
    /// `WANT` is set in `cur` (keeping `OWNER`, clearing `WANT`), else by clearing `OWNER`.
    /// `Err` gives the owner back with the word read.
    #[inline]
    pub(crate) fn give(self, cur: u64, clear: u64) -> Result<(), (Self, u64)> {
        let clear = clear & !BitLock::<T, OWNER, WANT>::LOCK_BITS;
        let next = if cur & WANT != 0 {
            (cur & !(clear | WANT)) | OWNER
        } else {
            cur & !(clear | OWNER)
        };
        // Release on success: our accesses to the value happen before the next owner's.
        // Relaxed on failure: nothing is given.
        match self
            .lock
            .word
            .compare_exchange_weak(cur, next, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => {
                std::mem::forget(self);
                Ok(())
            }
            Err(actual) => Err((self, actual)),
        }
    }

    /// Gives the lock back now (clearing `OWNER`, even if `WANT` is set: the waiter then takes
    /// it), clearing the caller's bits `clear` in the same `fetch_and`, with `Release`.
    pub(crate) fn give_back(self, clear: u64) {
        let clear = clear & !BitLock::<T, OWNER, WANT>::LOCK_BITS;
        // Release: as in `give`.
        self.lock
            .word
            .fetch_and(!(clear | OWNER), Ordering::Release);
        std::mem::forget(self);
    }
}

impl<T, const OWNER: u64, const WANT: u64> Drop for Owner<'_, T, OWNER, WANT> {
    fn drop(&mut self) {
        // Release: as in `give`.
        self.lock.word.fetch_and(!OWNER, Ordering::Release);
    }
}

/// Keeps other waiters of a [`BitLock`] queued (see [`Waiter::take`]).
pub(crate) struct Queued<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl<'a, T, const OWNER: u64, const WANT: u64> Waiter<'a, T, OWNER, WANT> {
    /// Waits (yielding) until the owner hands the lock over or it is free to take, and takes
    /// it; `WANT` is then clear. Other waiters stay queued until the [`Queued`] is dropped, so
    /// while it lives no one sets `WANT` (and the owner is not asked to hand over).
    pub(crate) fn take(self) -> (Owner<'a, T, OWNER, WANT>, Queued<'a>) {
        let Waiter {
            lock,
            mut cur,
            _queue: queue,
        } = self;
        let owner = loop {
            if cur & WANT == 0 {
                // Handed over: the owner cleared WANT keeping OWNER (nothing else clears it
                // while this waiter, the only one, waits), read below with Acquire.
                break Owner { lock };
            }
            if cur & OWNER == 0 {
                // Acquire on success: taking the lock, as in `try_take`. Acquire on failure
                // too: the value read may be a handover, which the next iteration acts on.
                match lock.word.compare_exchange_weak(
                    cur,
                    (cur | OWNER) & !WANT,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break Owner { lock },
                    Err(actual) => cur = actual,
                }
                continue;
            }
            yield_now();
            // Acquire: if this sees WANT cleared, it reads the owner's Release handover.
            cur = lock.word.load(Ordering::Acquire);
        };
        (owner, Queued(queue))
    }
}
