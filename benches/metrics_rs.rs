//! Criterion benches of the `metrics` facade (feature `metrics-rs`): weir's recorder against a
//! recorder over `metrics-util`'s `Registry<Key, AtomicStorage>`, in the same group, at 1, 2
//! and 4 threads.
//!
//! Each measurement spawns the threads, each with the case's recorder as its local recorder
//! (`metrics::with_local_recorder`), releases them together through a `Barrier`, and lets every
//! thread do `iters` operations; the time reported for an iteration is the wall time for all
//! threads to each do one operation. The throughput shown is total operations per second.
//!
//! - group `metrics_macro`: `counter!("bench.requests").increment(1)` every operation (the
//!   recorder's `register_counter` runs every time).
//! - group `metrics_handle`: a `metrics::Counter` obtained once per thread from the macro, then
//!   `increment(1)`.
//!
//! For a quick CSV scaling report, see `examples/metrics_rs_bench.rs`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry as UtilRegistry};
use weir::export::metrics_rs::MetricsRecorder;

const THREADS: [usize; 3] = [1, 2, 4];

/// A recorder over `metrics-util`'s registry with atomic storage, as exporters build them.
struct UtilRecorder(UtilRegistry<Key, AtomicStorage>);

impl Recorder for UtilRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

/// Runs `iters` operations on each of `threads` threads, each with `recorder` as its local
/// recorder, after a common start. `make()` builds a worker's operation (inside the recorder's
/// scope) before the start. Returns the time from the start to the last worker's finish.
fn timed<M, Op>(threads: usize, iters: u64, recorder: &(dyn Recorder + Sync), make: M) -> Duration
where
    M: Fn() -> Op + Sync,
    Op: FnMut(),
{
    let start = Barrier::new(threads + 1);
    thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (start, make) = (&start, &make);
                s.spawn(move || {
                    metrics::with_local_recorder(recorder, || {
                        let mut op = make();
                        start.wait();
                        for _ in 0..iters {
                            op();
                        }
                        Instant::now()
                    })
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        let end = workers
            .into_iter()
            .map(|w| w.join().expect("worker panicked"))
            .max()
            .unwrap_or(t0);
        end.saturating_duration_since(t0)
    })
}

fn quick(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
}

fn macro_path() -> impl FnMut() {
    || metrics::counter!("bench.requests").increment(1)
}

fn handle_path() -> impl FnMut() {
    let counter = metrics::counter!("bench.requests");
    move || counter.increment(1)
}

fn group<Op: FnMut()>(c: &mut Criterion, name: &str, make: fn() -> Op) {
    let mut group = c.benchmark_group(name);
    quick(&mut group);
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_with_input(BenchmarkId::new("weir", threads), &threads, |b, &t| {
            let registry = weir::Registry::new();
            let recorder = MetricsRecorder::new(&registry);
            b.iter_custom(|iters| timed(t, iters, &recorder, make));
        });
        group.bench_with_input(
            BenchmarkId::new("metrics_util", threads),
            &threads,
            |b, &t| {
                let recorder = UtilRecorder(UtilRegistry::atomic());
                b.iter_custom(|iters| timed(t, iters, &recorder, make));
                // Keep the baseline's total observable so its increments are not elided.
                let total = recorder
                    .0
                    .get_counter(&Key::from_name("bench.requests"))
                    .map_or(0, |c| c.load(Ordering::Relaxed));
                std::hint::black_box(total);
            },
        );
    }
    group.finish();
}

fn metrics_macro(c: &mut Criterion) {
    group(c, "metrics_macro", macro_path);
}

fn metrics_handle(c: &mut Criterion) {
    group(c, "metrics_handle", handle_path);
}

// What `criterion_group!` and `criterion_main!` expand to, written out: the macro's generated
// `pub fn` would trip the crate's `missing_docs` lint.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    metrics_macro(&mut c);
    metrics_handle(&mut c);
    c.final_summary();
}
