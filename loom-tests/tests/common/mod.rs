//! Shared helpers for the loom models.
#![allow(dead_code)]
#![cfg(weir_loom)]

/// Runs `f` under loom's model checker, printing the model's name first so a failure says which
/// model broke. The main thread's slot is released at the end, as thread exit would.
pub fn model<F>(name: &str, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    eprintln!("loom model: {name}");
    loom::model(move || {
        f();
        weir::__loom::release_slot();
    });
}

/// Spawns a modeled thread that releases its slot when `f` returns, as a real thread's exit does
/// (loom runs thread-local destructors outside its execution, where the slot table is
/// unreachable, so the models release explicitly).
pub fn spawn<F, T>(f: F) -> loom::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    loom::thread::spawn(move || {
        let out = f();
        weir::__loom::release_slot();
        out
    })
}

/// Runs `a` and `b` on two modeled threads at once and returns their results.
pub fn race<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send + 'static,
    B: FnOnce() -> RB + Send + 'static,
    RA: Send + 'static,
    RB: Send + 'static,
{
    let ta = spawn(a);
    let tb = spawn(b);
    (ta.join().unwrap(), tb.join().unwrap())
}

/// The transitions a breaker's listener saw, in order.
pub type Log = std::sync::Arc<std::sync::Mutex<Vec<weir::policy::breaker::Transition>>>;

/// An owned permit of `b` (models move permits into spawned threads); panics if refused.
pub fn permit(b: &weir::policy::breaker::CircuitBreaker) -> weir::policy::breaker::OwnedPermit {
    match b.try_acquire_owned() {
        weir::policy::breaker::Decision::Permitted(p) => p,
        weir::policy::breaker::Decision::Rejected(r) => panic!("rejected: {r:?}"),
    }
}
