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
