//! The `metrics` facade on weir against `metrics-util`'s registry, as CSV (feature
//! `metrics-rs`).
//!
//! ```text
//! cargo run --release --features metrics-rs --example metrics_rs_bench -- --threads 1,2,4 --millis 300
//! ```
//!
//! Same method and output as `examples/contention.rs`: for every thread count and every case
//! whose name contains `--filter`, the threads are released together through a `Barrier`, each
//! loops on the operation in batches of 1024 until a stop flag is raised after `--millis`, and
//! one CSV row is printed: `case,threads,ops_per_sec,ns_per_op_per_thread`
//! (`ns_per_op_per_thread = elapsed_ns * threads / ops`). Cases run thread count by thread
//! count, so the two sides of a comparison are measured close together in time.
//!
//! Every worker sets the case's recorder with `metrics::with_local_recorder` (the same cost for
//! both sides) and increments by 1:
//! - `weir/macro`, `util/macro`: `counter!("bench.requests").increment(1)` every operation, so
//!   the recorder's `register_counter` runs every time (a static key).
//! - `weir/macro_labels`, `util/macro_labels`: the same with two static labels.
//! - `weir/handle`, `util/handle`: a `metrics::Counter` obtained once per thread from
//!   `counter!("bench.requests")`, then `increment(1)`.
//!
//! `weir/*` record through `weir::export::metrics_rs::MetricsRecorder`. `util/*` record through
//! a recorder built the way `metrics-exporter-prometheus` builds its own: a
//! `metrics_util::registry::Registry<Key, AtomicStorage>` whose `get_or_create_counter` hands out
//! a clone of the key's `Arc<AtomicU64>`. Totals are checked against the ops counted (exit 1 if
//! one differs).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry as UtilRegistry};
use weir::export::metrics_rs::MetricsRecorder;

/// Operations between two checks of the stop flag.
const BATCH: u64 = 1024;

const CASES: [&str; 6] = [
    "weir/macro",
    "util/macro",
    "weir/macro_labels",
    "util/macro_labels",
    "weir/handle",
    "util/handle",
];

const USAGE: &str = "\
usage: metrics_rs_bench [--threads LIST] [--millis N] [--filter S]

  --threads LIST   comma-separated thread counts, each >= 1 (default 1,2,4)
  --millis N       measured run time of each case at each thread count, >= 1 (default 300)
  --filter S       run only the cases whose name contains S (default: all)
  -h, --help       print this help

cases: weir/macro, util/macro, weir/macro_labels, util/macro_labels, weir/handle, util/handle
output (stdout): CSV case,threads,ops_per_sec,ns_per_op_per_thread";

// === arguments ===

#[derive(Debug)]
struct Args {
    threads: Vec<usize>,
    millis: u64,
    filter: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        threads: vec![1, 2, 4],
        millis: 300,
        filter: None,
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Err(String::new());
        }
        if !matches!(name.as_str(), "--threads" | "--millis" | "--filter") {
            return Err(format!("unknown argument {arg:?}"));
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            return Err(format!("{name} needs a value"));
        };
        match name.as_str() {
            "--threads" => {
                let list: Result<Vec<usize>, _> = value
                    .split(',')
                    .map(|p| p.trim().parse::<usize>())
                    .collect();
                match list {
                    Ok(l) if !l.is_empty() && l.iter().all(|&n| n >= 1) => parsed.threads = l,
                    _ => {
                        return Err(format!(
                            "--threads {value:?}: expected comma-separated positive integers"
                        ));
                    }
                }
            }
            "--millis" => match value.trim().parse::<u64>() {
                Ok(n) if n >= 1 => parsed.millis = n,
                _ => return Err(format!("--millis {value:?}: expected a positive integer")),
            },
            _ => parsed.filter = Some(value),
        }
    }
    Ok(parsed)
}

// === the baseline recorder ===

/// A recorder over `metrics-util`'s registry with atomic storage, as exporters build them.
struct UtilRecorder {
    registry: UtilRegistry<Key, AtomicStorage>,
}

impl UtilRecorder {
    fn new() -> UtilRecorder {
        UtilRecorder {
            registry: UtilRegistry::atomic(),
        }
    }

    fn total(&self, key: &Key) -> u64 {
        self.registry
            .get_counter(key)
            .map_or(0, |c| c.load(Ordering::Acquire))
    }
}

impl Recorder for UtilRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.registry
            .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.registry
            .get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

// === measurement ===

struct Run {
    ops: u64,
    elapsed: Duration,
}

struct Ctx {
    start: Barrier,
    stop: AtomicBool,
}

impl Ctx {
    /// A worker's measured loop: waits for the start, runs `op` in batches until stopped.
    fn work(&self, mut op: impl FnMut()) -> (u64, Instant) {
        self.start.wait();
        let mut ops = 0;
        // Relaxed: the flag publishes no data; seeing it late only lengthens the run, and
        // each worker's stop time is taken when it actually stops.
        while !self.stop.load(Ordering::Relaxed) {
            for _ in 0..BATCH {
                op();
            }
            ops += BATCH;
        }
        (ops, Instant::now())
    }
}

/// Runs `worker(ctx)` on `threads` threads with `recorder` as each one's local recorder.
fn measure(
    threads: usize,
    millis: u64,
    recorder: &(dyn Recorder + Sync),
    worker: &(dyn Fn(&Ctx) -> (u64, Instant) + Sync),
) -> Run {
    let ctx = Ctx {
        start: Barrier::new(threads + 1),
        stop: AtomicBool::new(false),
    };
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let ctx = &ctx;
                s.spawn(move || metrics::with_local_recorder(recorder, || worker(ctx)))
            })
            .collect();
        ctx.start.wait();
        let start = Instant::now();
        thread::sleep(Duration::from_millis(millis));
        ctx.stop.store(true, Ordering::Relaxed);
        let mut ops = 0;
        let mut end = start;
        for h in handles {
            let (n, stopped_at) = h.join().expect("worker thread panicked");
            ops += n;
            end = end.max(stopped_at);
        }
        Run {
            ops,
            elapsed: end - start,
        }
    })
}

fn macro_op(ctx: &Ctx) -> (u64, Instant) {
    ctx.work(|| metrics::counter!("bench.requests").increment(1))
}

fn macro_labels_op(ctx: &Ctx) -> (u64, Instant) {
    ctx.work(|| {
        metrics::counter!("bench.requests", "route" => "/api/users", "method" => "GET").increment(1)
    })
}

fn handle_op(ctx: &Ctx) -> (u64, Instant) {
    let counter = metrics::counter!("bench.requests");
    ctx.work(|| counter.increment(1))
}

fn run_case(case: &str, threads: usize, millis: u64) -> (Run, u64) {
    let (side, op) = case.split_once('/').unwrap_or((case, ""));
    let worker: fn(&Ctx) -> (u64, Instant) = match op {
        "macro" => macro_op,
        "macro_labels" => macro_labels_op,
        _ => handle_op,
    };
    let labels: &[(&str, &str)] = if op == "macro_labels" {
        &[("route", "/api/users"), ("method", "GET")]
    } else {
        &[]
    };
    if side == "weir" {
        let registry = weir::Registry::new();
        let recorder = MetricsRecorder::new(&registry);
        let run = measure(threads, millis, &recorder, &worker);
        let values: Vec<&str> = labels.iter().map(|(_, v)| *v).collect();
        let total = registry
            .snapshot()
            .counter("bench_requests", &values)
            .unwrap_or(0);
        (run, total)
    } else {
        let recorder = UtilRecorder::new();
        let run = measure(threads, millis, &recorder, &worker);
        let key = Key::from_parts(
            "bench.requests",
            labels
                .iter()
                .map(|(k, v)| metrics::Label::new(*k, *v))
                .collect::<Vec<_>>(),
        );
        let total = recorder.total(&key);
        (run, total)
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cases: Vec<&str> = CASES
        .iter()
        .copied()
        .filter(|c| args.filter.as_deref().is_none_or(|f| c.contains(f)))
        .collect();
    let mut failures = 0;
    println!("case,threads,ops_per_sec,ns_per_op_per_thread");
    for &threads in &args.threads {
        for case in &cases {
            let (run, total) = run_case(case, threads, args.millis);
            if total != run.ops {
                eprintln!(
                    "error: {case} at {threads} threads: total is {total}, expected {}",
                    run.ops
                );
                failures += 1;
            }
            let secs = run.elapsed.as_secs_f64();
            let ops_per_sec = run.ops as f64 / secs;
            let ns = secs * 1e9 * threads as f64 / run.ops as f64;
            println!("{case},{threads},{ops_per_sec:.0},{ns:.2}");
        }
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
