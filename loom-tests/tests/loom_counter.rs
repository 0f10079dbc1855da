//! Counters: slot claim, release and reuse; concurrent add and get; the shared fallback cell.
#![cfg(weir_loom)]

mod common;

use common::model;
use common::spawn;
use weir::Counter;

/// A thread adds and exits (releasing its slot); a thread started after it reuses the slot and
/// continues in the same cells. Nothing is lost across the exit and the new claim.
#[test]
fn slot_release_and_reuse_loses_nothing() {
    model("slot_release_and_reuse_loses_nothing", || {
        let c = Counter::new();
        let c1 = c.clone();
        spawn(move || c1.add(1)).join().unwrap();
        let c2 = c.clone();
        let c3 = c.clone();
        let a = spawn(move || c2.add(2));
        let b = spawn(move || c3.add(4));
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(c.get(), 7);
    });
}

/// `get` concurrent with adds only ever sees a total made of whole adds, never decreasing, and
/// the final total is exact.
#[test]
fn concurrent_add_and_get() {
    model("concurrent_add_and_get", || {
        let c = Counter::new();
        let w = {
            let c = c.clone();
            spawn(move || {
                c.add(1);
                c.add(2);
            })
        };
        let first = c.get();
        let second = c.get();
        assert!([0, 1, 3].contains(&first), "torn read {first}");
        assert!(second >= first, "went backwards: {first} then {second}");
        w.join().unwrap();
        assert_eq!(c.get(), 3);
    });
}

/// More threads than slots (loom builds have two): the extra threads add through the shared
/// fallback cell, and the total is still exact.
#[test]
fn fallback_cell_when_slots_run_out() {
    assert_eq!(weir::__loom::MAX_SLOTS, 2);
    model("fallback_cell_when_slots_run_out", || {
        let c = Counter::new();
        c.add(1); // the main thread holds a slot for the whole model
        let hs: Vec<_> = [10, 100]
            .into_iter()
            .map(|n| {
                let c = c.clone();
                spawn(move || c.add(n))
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(c.get(), 111);
    });
}

/// A counter dropped and its id recycled: the new counter starts at zero even though another
/// thread wrote the old one's cell.
#[test]
fn recycled_id_starts_at_zero() {
    model("recycled_id_starts_at_zero", || {
        let old = Counter::new();
        let o = old.clone();
        spawn(move || o.add(5)).join().unwrap();
        drop(old);
        let fresh = Counter::new();
        let f = fresh.clone();
        let t = spawn(move || f.add(1));
        let seen = fresh.get();
        assert!(seen <= 1, "saw a stale cell: {seen}");
        t.join().unwrap();
        assert_eq!(fresh.get(), 1);
    });
}
