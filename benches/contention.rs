//! Criterion contention benches: weir against baselines, in the same group, at 1, 2 and 4
//! threads.
//!
//! Each measurement spawns the threads, releases them together through a `Barrier`, and lets
//! every thread do `iters` operations; the time reported for an iteration is the wall time for
//! all threads to each do one operation (from the barrier's release to the last thread's
//! finish). The throughput shown is therefore total operations per second across threads.
//!
//! - group `counter`: `weir` (`Counter::inc`), `atomic_shared` (one shared `AtomicU64`),
//!   `striped_padded` (one `CachePadded<AtomicU64>` per thread).
//! - group `histogram`: `weir` (`Histogram::record`, with a reader thread taking a snapshot
//!   every 10 ms), `hdr_recorder` (hdrhistogram `SyncHistogram` with a `Recorder` per thread
//!   and a reader refreshing every 10 ms), `hdr_mutex` (`Mutex<hdrhistogram::Histogram>`).
//! - group `snapshot`: read one counter value from a registry's published snapshot while a
//!   republisher thread publishes a new one every 10 ms: `weir_load` (`Registry::published()`),
//!   `weir_cached` (a per-thread `Registry::reader()`), `arcswap_load` (a raw
//!   `ArcSwap<RegistrySnapshot>::load()`), `rwlock_read` (`RwLock<Arc<RegistrySnapshot>>`).
//! - group `labeled_lookup`: look up one of a thread's 64 label pairs (drawn from a counter
//!   family of 1,000 series) and add one: `weir` (`Family::with_series`), `hashmap_uncontended`
//!   (a thread-private `HashMap<Vec<String>, u64>`, `get_mut` by borrowed key), `hashmap_rwlock`
//!   (a shared `RwLock<HashMap<Vec<String>, Arc<AtomicU64>>>`, read lock, `get`, `fetch_add`).
//!
//! - groups `budget`, `budget_deposit`, `limiter`, `limiter_aimd`, `breaker`, `ratelimit`: one
//!   full admission decision per operation (for `budget_deposit`, the deposit every request
//!   makes), `weir` against `mutex` (the same logic guarded by one `std::sync::Mutex`), all
//!   threads sharing one decision maker; group `clock`: `system_now` and `cached_now`, the
//!   clock reads those decisions pay; group `floor`: `cas`, `cas_release`, `add_cas`, the
//!   atomic operations alone of a decision that changes one word every thread writes (the
//!   floor under the rate limit, the limiter and the budget). What each does is documented in
//!   `examples/support/decisions.rs`, which this bench shares with the example; every
//!   decision is set up to admit, and the bench
//!   panics if one is refused or a permit is left in flight.
//!
//! For a quick CSV scaling report over more thread counts, see `examples/contention.rs`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime};
use crossbeam_utils::CachePadded;
use hdrhistogram::sync::SyncHistogram;
use weir::{Counter, Family, Registry, RegistrySnapshot, Value};

#[path = "../examples/support/decisions.rs"]
mod decisions;

use decisions::Decide;

const THREADS: [usize; 3] = [1, 2, 4];
const READ_EVERY: Duration = Duration::from_millis(10);
const REPUBLISH_EVERY: Duration = Duration::from_millis(10);
/// The lookup family: 10 methods x 100 codes ("200" to "299") = 1,000 series.
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PROPFIND",
];
const SERIES: usize = METHODS.len() * 100;
/// Label pairs each lookup thread cycles through (a power of two).
const KEYS_PER_THREAD: usize = 64;

/// Runs `iters` operations on each of `threads` threads after a common start, while `reader`
/// (if any) runs on one more thread until the workers are done. `make(thread_index)` builds a
/// worker's operation (with its own state) before the start. Returns the time from the start
/// to the last worker's finish.
fn timed<M, Op, R>(threads: usize, iters: u64, make: M, reader: Option<R>) -> Duration
where
    M: Fn(usize) -> Op + Sync,
    Op: FnMut(),
    R: FnOnce(&AtomicBool) + Send,
{
    let start = Barrier::new(threads + 1);
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let (start, make) = (&start, &make);
                s.spawn(move || {
                    let mut op = make(i);
                    start.wait();
                    for _ in 0..iters {
                        op();
                    }
                    Instant::now()
                })
            })
            .collect();
        let reader = reader.map(|r| {
            let done = &done;
            s.spawn(move || r(done))
        });
        start.wait();
        let t0 = Instant::now();
        let end = workers
            .into_iter()
            .map(|w| w.join().expect("worker panicked"))
            .max()
            .unwrap_or(t0);
        // Relaxed: the flag only tells the reader to stop; it publishes no data.
        done.store(true, Ordering::Relaxed);
        if let Some(r) = reader {
            r.join().expect("reader panicked");
        }
        end.saturating_duration_since(t0)
    })
}

/// A small, fast per-thread generator (xorshift64) of values uniform in `1..=1_000_000`.
struct XorShift(u64);

impl XorShift {
    fn new(thread: usize) -> XorShift {
        XorShift(0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(thread as u64 + 1) | 1)
    }

    #[inline(always)]
    fn value(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        ((u64::from(x as u32) * 1_000_000) >> 32) + 1
    }

    /// Uniform in `0..n`.
    fn index(&mut self, n: usize) -> usize {
        ((self.value() - 1) * n as u64 / 1_000_000) as usize
    }
}

fn hdr() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600 * 1_000_000_000, 3)
        .expect("weir's default layout is a valid hdrhistogram layout")
}

/// A reader that never runs (for cases without one).
const NO_READER: Option<fn(&AtomicBool)> = None;

fn quick(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
}

fn counter(c: &mut Criterion) {
    let mut group = c.benchmark_group("counter");
    quick(&mut group);
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_with_input(BenchmarkId::new("weir", threads), &threads, |b, &t| {
            let counter = weir::Counter::new();
            b.iter_custom(|iters| {
                let c = &counter;
                timed(t, iters, |_| move || black_box(c).inc(), NO_READER)
            });
        });
        group.bench_with_input(
            BenchmarkId::new("atomic_shared", threads),
            &threads,
            |b, &t| {
                let shared = AtomicU64::new(0);
                b.iter_custom(|iters| {
                    let a = &shared;
                    let op = |_| {
                        move || {
                            black_box(a).fetch_add(1, Ordering::Relaxed);
                        }
                    };
                    timed(t, iters, op, NO_READER)
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("striped_padded", threads),
            &threads,
            |b, &t| {
                let stripes: Vec<CachePadded<AtomicU64>> = (0..t)
                    .map(|_| CachePadded::new(AtomicU64::new(0)))
                    .collect();
                b.iter_custom(|iters| {
                    let stripes = &stripes;
                    let op = |i: usize| {
                        let mine = &stripes[i];
                        move || {
                            black_box(mine).fetch_add(1, Ordering::Relaxed);
                        }
                    };
                    timed(t, iters, op, NO_READER)
                });
            },
        );
    }
    group.finish();
}

fn histogram(c: &mut Criterion) {
    let mut group = c.benchmark_group("histogram");
    quick(&mut group);
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_with_input(BenchmarkId::new("weir", threads), &threads, |b, &t| {
            let histogram = weir::Histogram::new();
            b.iter_custom(|iters| {
                let h = &histogram;
                let op = |i| {
                    let mut rng = XorShift::new(i);
                    move || black_box(h).record(black_box(rng.value()))
                };
                let reader = |done: &AtomicBool| {
                    while !done.load(Ordering::Relaxed) {
                        thread::sleep(READ_EVERY);
                        black_box(h.snapshot());
                    }
                };
                timed(t, iters, op, Some(reader))
            });
        });
        group.bench_with_input(
            BenchmarkId::new("hdr_recorder", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    let mut sync: SyncHistogram<u64> = hdr().into_sync();
                    let recorders: Vec<Mutex<Option<_>>> =
                        (0..t).map(|_| Mutex::new(Some(sync.recorder()))).collect();
                    let recorders = &recorders;
                    let op = |i: usize| {
                        // Each worker takes its own recorder; dropping it at the worker's end
                        // hands its samples to the reader.
                        let mut rec = recorders[i]
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .take()
                            .expect("one recorder per worker");
                        let mut rng = XorShift::new(i);
                        move || black_box(&mut rec).saturating_record(black_box(rng.value()))
                    };
                    let sync = &mut sync;
                    let reader = |done: &AtomicBool| {
                        while !done.load(Ordering::Relaxed) {
                            thread::sleep(READ_EVERY);
                            // A timeout: a finished worker no longer answers a refresh.
                            sync.refresh_timeout(Duration::from_millis(50));
                            black_box(sync.len());
                        }
                    };
                    timed(t, iters, op, Some(reader))
                });
            },
        );
        group.bench_with_input(BenchmarkId::new("hdr_mutex", threads), &threads, |b, &t| {
            let shared = Mutex::new(hdr());
            b.iter_custom(|iters| {
                let shared = &shared;
                let op = |i| {
                    let mut rng = XorShift::new(i);
                    move || {
                        let v = black_box(rng.value());
                        black_box(shared)
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .saturating_record(v);
                    }
                };
                timed(t, iters, op, NO_READER)
            });
        });
    }
    group.finish();
}

// === registry: published snapshots and labeled lookups ===

fn label_pair(i: usize) -> [String; 2] {
    [
        METHODS[i % METHODS.len()].to_string(),
        (200 + i / METHODS.len()).to_string(),
    ]
}

/// The series thread `thread` cycles through (the same draw as `examples/contention.rs`).
fn thread_keys(thread: usize) -> Vec<usize> {
    let mut rng = XorShift::new(thread);
    (0..KEYS_PER_THREAD).map(|_| rng.index(SERIES)).collect()
}

/// A registry with the counter family `requests_total{method, code}`, all 1,000 series made,
/// and the counter of the series that sorts first (the one the snapshot benches read).
fn lookup_registry() -> (Registry, Family<Counter>, Counter) {
    let registry = Registry::new();
    let family = registry
        .counter_family("requests_total", "Requests served", &["method", "code"])
        .expect("a valid family");
    for i in 0..SERIES {
        let [method, code] = label_pair(i);
        family
            .with(&[&method, &code])
            .expect("1,000 series are below the cardinality limit");
    }
    let snapshot = registry.snapshot();
    let first: Vec<&str> = snapshot.families()[0].series[0]
        .label_values
        .iter()
        .map(|v| &**v)
        .collect();
    let first = family.with(&first).expect("an existing series");
    (registry, family, first)
}

/// What every snapshot bench reads: the first series of the first family, by position.
#[inline(always)]
fn first_value(snapshot: &RegistrySnapshot) -> u64 {
    match snapshot.families()[0].series[0].value {
        Value::Counter(v) => v,
        _ => unreachable!("the first family holds counters"),
    }
}

/// A republisher: every 10 ms until `done`, adds one to `first` and calls `publish`.
fn republisher<'a>(first: &'a Counter, publish: impl Fn() + 'a) -> impl FnOnce(&AtomicBool) + 'a {
    move |done| {
        while !done.load(Ordering::Relaxed) {
            thread::sleep(REPUBLISH_EVERY);
            first.inc();
            publish();
        }
    }
}

fn snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    quick(&mut group);
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_with_input(BenchmarkId::new("weir_load", threads), &threads, |b, &t| {
            let (registry, _family, first) = lookup_registry();
            registry.refresh_now();
            b.iter_custom(|iters| {
                let r = &registry;
                let op = |_| {
                    move || {
                        black_box(first_value(&black_box(r).published()));
                    }
                };
                let publish = || {
                    r.refresh_now();
                };
                timed(t, iters, op, Some(republisher(&first, publish)))
            });
        });
        group.bench_with_input(
            BenchmarkId::new("weir_cached", threads),
            &threads,
            |b, &t| {
                let (registry, _family, first) = lookup_registry();
                registry.refresh_now();
                b.iter_custom(|iters| {
                    let r = &registry;
                    let op = |_| {
                        let mut reader = r.reader();
                        move || {
                            black_box(first_value(black_box(&mut reader).load()));
                        }
                    };
                    let publish = || {
                        r.refresh_now();
                    };
                    timed(t, iters, op, Some(republisher(&first, publish)))
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("arcswap_load", threads),
            &threads,
            |b, &t| {
                let (registry, _family, first) = lookup_registry();
                let current = ArcSwap::from_pointee(registry.snapshot());
                b.iter_custom(|iters| {
                    let (r, current) = (&registry, &current);
                    let op = |_| {
                        move || {
                            black_box(first_value(&black_box(current).load()));
                        }
                    };
                    let publish = || current.store(Arc::new(r.snapshot()));
                    timed(t, iters, op, Some(republisher(&first, publish)))
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("rwlock_read", threads),
            &threads,
            |b, &t| {
                let (registry, _family, first) = lookup_registry();
                let current = RwLock::new(Arc::new(registry.snapshot()));
                b.iter_custom(|iters| {
                    let (r, current) = (&registry, &current);
                    let op = |_| {
                        move || {
                            let guard = black_box(current)
                                .read()
                                .unwrap_or_else(PoisonError::into_inner);
                            black_box(first_value(&guard));
                        }
                    };
                    let publish = || {
                        let fresh = Arc::new(r.snapshot());
                        let old = std::mem::replace(
                            &mut *current.write().unwrap_or_else(PoisonError::into_inner),
                            fresh,
                        );
                        // Freed after the write lock is released.
                        drop(old);
                    };
                    timed(t, iters, op, Some(republisher(&first, publish)))
                });
            },
        );
    }
    group.finish();
}

fn labeled_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("labeled_lookup");
    quick(&mut group);
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_with_input(BenchmarkId::new("weir", threads), &threads, |b, &t| {
            let (_registry, family, _first) = lookup_registry();
            let pairs: Vec<[String; 2]> = (0..SERIES).map(label_pair).collect();
            b.iter_custom(|iters| {
                let (family, pairs) = (&family, &pairs);
                let op = |i| {
                    let keys: Vec<[&str; 2]> = thread_keys(i)
                        .into_iter()
                        .map(|k| [pairs[k][0].as_str(), pairs[k][1].as_str()])
                        .collect();
                    let mut k = 0;
                    move || {
                        let r = black_box(family).with_series(black_box(&keys[k]), |c| c.inc());
                        black_box(r).ok();
                        k = (k + 1) % KEYS_PER_THREAD;
                    }
                };
                timed(t, iters, op, NO_READER)
            });
        });
        group.bench_with_input(
            BenchmarkId::new("hashmap_uncontended", threads),
            &threads,
            |b, &t| {
                let pairs: Vec<Vec<String>> = (0..SERIES).map(|i| label_pair(i).to_vec()).collect();
                b.iter_custom(|iters| {
                    let pairs = &pairs;
                    let op = |i| {
                        let mut map: HashMap<Vec<String>, u64> =
                            pairs.iter().map(|p| (p.clone(), 0)).collect();
                        let keys: Vec<Vec<String>> = thread_keys(i)
                            .into_iter()
                            .map(|k| pairs[k].clone())
                            .collect();
                        let mut k = 0;
                        move || {
                            if let Some(v) =
                                black_box(&mut map).get_mut(black_box(keys[k].as_slice()))
                            {
                                *v += 1;
                            }
                            k = (k + 1) % KEYS_PER_THREAD;
                        }
                    };
                    timed(t, iters, op, NO_READER)
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("hashmap_rwlock", threads),
            &threads,
            |b, &t| {
                let pairs: Vec<Vec<String>> = (0..SERIES).map(|i| label_pair(i).to_vec()).collect();
                let shared: RwLock<HashMap<Vec<String>, Arc<AtomicU64>>> = RwLock::new(
                    pairs
                        .iter()
                        .map(|p| (p.clone(), Arc::new(AtomicU64::new(0))))
                        .collect(),
                );
                b.iter_custom(|iters| {
                    let (pairs, shared) = (&pairs, &shared);
                    let op = |i| {
                        let keys: Vec<Vec<String>> = thread_keys(i)
                            .into_iter()
                            .map(|k| pairs[k].clone())
                            .collect();
                        let mut k = 0;
                        move || {
                            let map = black_box(shared)
                                .read()
                                .unwrap_or_else(PoisonError::into_inner);
                            if let Some(c) = map.get(black_box(keys[k].as_slice())) {
                                c.fetch_add(1, Ordering::Relaxed);
                            }
                            k = (k + 1) % KEYS_PER_THREAD;
                        }
                    };
                    timed(t, iters, op, NO_READER)
                });
            },
        );
    }
    group.finish();
}

/// Benches `make()`'s decision maker as `id` at every thread count of the current group.
fn bench_decider<D: Decide>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    threads: usize,
    make: fn() -> D,
) {
    group.bench_with_input(BenchmarkId::new(id, threads), &threads, |b, &t| {
        let decider = make();
        let refused = AtomicU64::new(0);
        b.iter_custom(|iters| {
            let (d, refused) = (&decider, &refused);
            let op = |_| {
                move || {
                    if !black_box(d).decide() {
                        // Relaxed: a count, read after the threads are joined.
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            };
            timed(t, iters, op, NO_READER)
        });
        assert_eq!(refused.into_inner(), 0, "{id}: refused decisions");
        if let Err(e) = decider.check() {
            panic!("{id} at {threads} threads: {e}");
        }
    });
}

fn decisions(c: &mut Criterion) {
    fn group<A: Decide, B: Decide>(
        c: &mut Criterion,
        name: &str,
        weir: fn() -> A,
        base: fn() -> B,
    ) {
        let mut group = c.benchmark_group(name);
        quick(&mut group);
        for threads in THREADS {
            group.throughput(Throughput::Elements(threads as u64));
            bench_decider(&mut group, "weir", threads, weir);
            bench_decider(&mut group, "mutex", threads, base);
        }
        group.finish();
    }
    group(
        c,
        "budget",
        decisions::WeirBudget::new,
        decisions::MutexBudget::new,
    );
    group(
        c,
        "budget_deposit",
        decisions::WeirBudgetDeposit::new,
        decisions::MutexBudgetDeposit::new,
    );
    group(
        c,
        "limiter",
        decisions::WeirLimiter::new,
        decisions::MutexLimiter::new,
    );
    group(
        c,
        "limiter_aimd",
        decisions::WeirLimiterAimd::new,
        decisions::MutexLimiterAimd::new,
    );
    group(
        c,
        "breaker",
        decisions::WeirBreaker::new,
        decisions::MutexBreaker::new,
    );
    group(
        c,
        "ratelimit",
        decisions::WeirRatelimit::new,
        decisions::MutexRatelimit::new,
    );
    let mut group = c.benchmark_group("clock");
    quick(&mut group);
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        bench_decider(&mut group, "system_now", threads, decisions::ClockNow::new);
        bench_decider(
            &mut group,
            "cached_now",
            threads,
            decisions::CachedClockNow::new,
        );
    }
    group.finish();
    let mut group = c.benchmark_group("floor");
    quick(&mut group);
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        bench_decider(&mut group, "cas", threads, decisions::FloorCas::new);
        bench_decider(
            &mut group,
            "cas_release",
            threads,
            decisions::FloorCasRelease::new,
        );
        bench_decider(&mut group, "add_cas", threads, decisions::FloorAddCas::new);
    }
    group.finish();
}

// What `criterion_group!` and `criterion_main!` expand to, written out: the macro's generated
// `pub fn` would trip the crate's `missing_docs` lint.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    counter(&mut c);
    histogram(&mut c);
    snapshot(&mut c);
    labeled_lookup(&mut c);
    decisions(&mut c);
    c.final_summary();
}
