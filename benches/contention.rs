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
//!
//! - groups `budget`, `limiter`, `breaker`, `ratelimit`: one full admission decision per
//!   operation, `weir` against `mutex` (the same logic guarded by one `std::sync::Mutex`), all
//!   threads sharing one decision maker; group `clock`: `system_now`, the clock read those
//!   decisions pay. What each does is documented in `examples/support/decisions.rs`, which
//!   this bench shares with the example; every decision is set up to admit, and the bench
//!   panics if one is refused or a permit is left in flight.
//!
//! For a quick CSV scaling report over more thread counts, see `examples/contention.rs`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime};
use crossbeam_utils::CachePadded;
use hdrhistogram::sync::SyncHistogram;

#[path = "../examples/support/decisions.rs"]
mod decisions;

use decisions::Decide;

const THREADS: [usize; 3] = [1, 2, 4];
const READ_EVERY: Duration = Duration::from_millis(10);

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
        "limiter",
        decisions::WeirLimiter::new,
        decisions::MutexLimiter::new,
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
    }
    group.finish();
}

// What `criterion_group!` and `criterion_main!` expand to, written out: the macro's generated
// `pub fn` would trip the crate's `missing_docs` lint.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    counter(&mut c);
    histogram(&mut c);
    decisions(&mut c);
    c.final_summary();
}
