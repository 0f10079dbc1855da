//! Integration tests for `Counter` and `CounterReader`: exact totals under contention, across
//! thread exit and slot reuse, with more threads than slots, with concurrent interval readers,
//! through clones, and across counter id recycling.
//!
//! Every test is bounded by a fixed amount of work (no timing assertions, no sleeps that the
//! outcome depends on).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::{Counter, CounterReader};

/// `weir`'s slot table size under std (`slot::MAX_SLOTS`, crate-private). Threads beyond this,
/// alive at once, record through each counter's shared fallback cell.
const MAX_SLOTS: usize = 1024;

#[test]
fn eight_threads_a_million_incs_each() {
    let c = Counter::new();
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..1_000_000 {
                    c.inc();
                }
            });
        }
    });
    assert_eq!(c.get(), 8_000_000);
}

#[test]
fn exited_threads_keep_their_counts_and_slots_are_reused() {
    let c = Counter::new();
    let mut expected = 0u64;
    // Sequential waves: every thread of a wave exits (releasing its slot) before the next wave
    // starts, so later waves continue in cells that earlier threads left behind.
    for wave in 0..6u64 {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let c = c.clone();
                thread::spawn(move || {
                    let n = 10_000 + wave * 100 + t;
                    for _ in 0..n {
                        c.inc();
                    }
                    c.add(wave * 7 + t);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        expected += (0..4u64)
            .map(|t| 10_000 + wave * 100 + t + wave * 7 + t)
            .sum::<u64>();
        assert_eq!(c.get(), expected, "after sequential wave {wave}");
    }
}

#[test]
fn waves_of_short_threads_alongside_long_lived_writers() {
    let c = Counter::new();
    let stop = AtomicBool::new(false);
    let long_lived_total = AtomicU64::new(0);
    let mut waves_total = 0u64;
    thread::scope(|s| {
        // Long-lived writers keep their slots for the whole test and report what they added.
        for t in 0..2u64 {
            let (c, stop, long_lived_total) = (&c, &stop, &long_lived_total);
            s.spawn(move || {
                let mut mine = 0u64;
                // Bounded: at most this many adds even if `stop` were never seen.
                for i in 0..20_000_000u64 {
                    if i % 1024 == 0 && stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let n = 1 + (i + t) % 3;
                    c.add(n);
                    mine += n;
                }
                long_lived_total.fetch_add(mine, Ordering::Relaxed);
            });
        }
        // Meanwhile, waves of short threads start and exit, some starting only after others
        // have exited, so slots are released and claimed again while others write.
        for wave in 0..20u64 {
            let handles: Vec<_> = (0..3u64)
                .map(|t| {
                    let c = c.clone();
                    thread::spawn(move || {
                        for _ in 0..5_000 {
                            c.inc();
                        }
                        c.add(wave + t);
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            waves_total += (0..3u64).map(|t| 5_000 + wave + t).sum::<u64>();
            // The short threads have all exited: their counts are in, the long-lived writers'
            // are at least partly in.
            assert!(c.get() >= waves_total);
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(
        c.get(),
        waves_total + long_lived_total.load(Ordering::Relaxed)
    );
}

#[test]
fn more_threads_than_slots_still_count_exactly() {
    // All these threads are alive at once (they meet at a barrier after their first add), so at
    // least THREADS - MAX_SLOTS of them cannot have a slot and must use the fallback cell.
    const THREADS: usize = MAX_SLOTS + 64;
    let c = Counter::new();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (c, barrier) = (c.clone(), barrier.clone());
            thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    c.inc();
                    barrier.wait();
                    c.add(t as u64);
                })
                .expect("spawn")
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let expected = THREADS as u64 + (0..THREADS as u64).sum::<u64>();
    assert_eq!(c.get(), expected);
    // Threads started after all of those exited still count (slots are free again).
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| c.add(1_000));
        }
    });
    assert_eq!(c.get(), expected + 4_000);
}

#[test]
fn reader_deltas_sum_to_the_total_with_concurrent_writers() {
    const WRITERS: u64 = 4;
    const ADDS: u64 = 250_000;
    let c = Counter::new();
    let mut reader: CounterReader = c.reader();
    assert_eq!(reader.last_total(), 0);
    let done = AtomicBool::new(false);
    let mut deltas = Vec::new();
    thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let c = &c;
                s.spawn(move || {
                    for i in 0..ADDS {
                        c.add(1 + (i + t) % 5);
                    }
                })
            })
            .collect();
        let done_ref = &done;
        s.spawn(move || {
            for w in writers {
                w.join().unwrap();
            }
            done_ref.store(true, Ordering::Release);
        });
        // Bounded: the writers do a fixed amount of work; the loop ends once they are done.
        while !done.load(Ordering::Acquire) {
            let before = reader.last_total();
            let d = reader.delta();
            // A counter never goes backwards, so a delta is never a wrapped "negative" number.
            assert_eq!(reader.last_total(), before.wrapping_add(d));
            assert!(reader.last_total() >= before, "counter went backwards");
            deltas.push(d);
            thread::yield_now();
        }
    });
    let total: u64 = (0..WRITERS)
        .map(|t| (0..ADDS).map(|i| 1 + (i + t) % 5).sum::<u64>())
        .sum();
    let final_delta = reader.delta();
    assert_eq!(deltas.iter().sum::<u64>() + final_delta, total);
    assert_eq!(reader.last_total(), total);
    assert_eq!(c.get(), total);
    assert_eq!(reader.delta(), 0);
}

#[test]
fn independent_readers_keep_their_own_baselines() {
    let c = Counter::new();
    let mut a = c.reader();
    c.add(10);
    let mut b = c.reader();
    c.add(5);
    assert_eq!(a.delta(), 15);
    assert_eq!(b.delta(), 5);
    let mut a2 = a.clone();
    c.add(1);
    assert_eq!(a.delta(), 1);
    assert_eq!(a2.delta(), 1);
    assert_eq!(b.delta(), 1);
}

#[test]
fn clones_share_one_counter() {
    let c = Counter::new();
    let c2 = c.clone();
    c2.add(5);
    assert_eq!(c.get(), 5);
    thread::scope(|s| {
        for _ in 0..4 {
            let c3 = c.clone();
            s.spawn(move || {
                for _ in 0..10_000 {
                    c3.inc();
                }
            });
        }
    });
    assert_eq!(c.get(), 40_005);
    assert_eq!(c2.get(), 40_005);
    drop(c);
    // The counter lives while any clone does.
    c2.inc();
    assert_eq!(c2.get(), 40_006);
}

#[test]
fn default_and_debug() {
    let c = Counter::default();
    c.add(3);
    assert_eq!(c.get(), 3);
    assert!(format!("{c:?}").contains('3'));
}

#[test]
fn wrapping_at_u64_max() {
    let c = Counter::new();
    let mut r = c.reader();
    c.add(u64::MAX);
    assert_eq!(c.get(), u64::MAX);
    c.add(2);
    assert_eq!(c.get(), 1);
    // The interval is still exact modulo 2^64.
    assert_eq!(r.delta(), 1);
}

#[test]
fn recycled_counter_ids_start_at_zero_while_others_write() {
    const CHURNERS: u64 = 3;
    const ROUNDS: u64 = 2_000;
    let stable: Vec<Counter> = (0..4).map(|_| Counter::new()).collect();
    let stop = AtomicBool::new(false);
    let stable_totals: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
    thread::scope(|s| {
        // Writers of long-lived counters.
        for (i, c) in stable.iter().enumerate() {
            let (stop, total) = (&stop, &stable_totals[i]);
            s.spawn(move || {
                let mut mine = 0u64;
                for k in 0..5_000_000u64 {
                    if k % 1024 == 0 && stop.load(Ordering::Relaxed) {
                        break;
                    }
                    c.add(k % 4);
                    mine += k % 4;
                }
                total.store(mine, Ordering::Relaxed);
            });
        }
        // Churners create counters, write them (from this thread and from a helper thread, so
        // the cells of a recycled id live in several slots), check them, and drop them. Ids
        // freed by one churner are picked up by the others.
        let churners: Vec<_> = (0..CHURNERS)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(0xC0FFEE + t);
                    let mut held: Vec<(Counter, u64)> = Vec::new();
                    for round in 0..ROUNDS {
                        let c = Counter::new();
                        assert_eq!(c.get(), 0, "fresh counter not zero (churner {t}, {round})");
                        let n = rng.gen_range(1..1_000u64);
                        c.add(n);
                        let mut total = n;
                        if round % 50 == 0 {
                            let helper = c.clone();
                            thread::spawn(move || helper.add(3)).join().unwrap();
                            total += 3;
                        }
                        assert_eq!(c.get(), total);
                        held.push((c, total));
                        // Drop a random held counter, keeping a few alive at a time.
                        if held.len() > 8 || rng.gen_bool(0.5) {
                            let i = rng.gen_range(0..held.len());
                            let (c, total) = held.swap_remove(i);
                            assert_eq!(c.get(), total);
                        }
                    }
                    for (c, total) in held {
                        assert_eq!(c.get(), total);
                    }
                })
            })
            .collect();
        for h in churners {
            h.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    for (c, total) in stable.iter().zip(&stable_totals) {
        assert_eq!(c.get(), total.load(Ordering::Relaxed));
    }
    // After all that churn, new counters still start at zero.
    let fresh: Vec<Counter> = (0..256).map(|_| Counter::new()).collect();
    assert!(fresh.iter().all(|c| c.get() == 0));
}
