//! Contention scaling report: weir's counter and histogram against baselines, as CSV.
//!
//! ```text
//! cargo run --release --example contention -- --threads 1,2,4,8,16 --millis 300 [--filter S]
//! ```
//!
//! For every thread count and every case whose name contains the filter, it spawns that many
//! threads, releases them together through a `Barrier`, lets each loop on the operation in
//! batches of 1024 until a stop flag is raised after `--millis`, and prints one CSV row:
//! `case,threads,ops_per_sec,ns_per_op_per_thread`, where `ops_per_sec` is all threads' ops
//! divided by the elapsed wall time and `ns_per_op_per_thread = elapsed_ns * threads / ops`.
//!
//! Cases are run thread count by thread count (all cases at 1 thread, then all at 2, ...), so
//! that the cases a ratio compares are measured close together in time.
//!
//! Cases:
//! - `weir/counter`: `weir::Counter::inc`; the total is checked against the ops counted (exit 1
//!   if it differs: exactness is the point).
//! - `base/atomic_shared`: one `AtomicU64::fetch_add` shared by all threads.
//! - `base/striped_padded`: one `CachePadded<AtomicU64>` per thread, `fetch_add`.
//! - `weir/histogram`: `weir::Histogram::record`, with a reader thread taking `snapshot()` every
//!   10 ms during the run.
//! - `base/hdr_recorder`: hdrhistogram's `SyncHistogram`, one `Recorder` per thread, a reader
//!   thread calling `refresh` every 10 ms during the run.
//! - `base/hdr_mutex`: one `Mutex<hdrhistogram::Histogram<u64>>`.
//! - `weir/snapshot_load`: `Registry::published()` (an `arc-swap` load returning a guard), then
//!   one counter value read from the snapshot, while a republisher thread adds one to that
//!   counter and calls `refresh_now()` every 10 ms.
//! - `weir/snapshot_cached`: the same read through a per-thread `Registry::reader()` (an
//!   `arc-swap` `Cache`), with the same republisher.
//! - `base/arcswap_load`: a raw `ArcSwap<RegistrySnapshot>::load()` and the same read, while the
//!   republisher stores `Arc::new(registry.snapshot())` every 10 ms.
//! - `base/rwlock_read`: `RwLock<Arc<RegistrySnapshot>>::read()` and the same read, while the
//!   republisher takes the write lock to replace the `Arc` every 10 ms.
//! - `weir/labeled_lookup`: `Family::with_series(&[method, code], |c| c.inc())` on a counter
//!   family of 1,000 series (10 methods x 100 codes); each thread cycles through its own 64
//!   label pairs, drawn at random (fixed seed) from the 1,000. The total over all series is
//!   checked against the ops counted.
//! - `base/hashmap_uncontended`: the same 64 keys per thread looked up in a thread-private
//!   `HashMap<Vec<String>, u64>` holding all 1,000 keys (std hasher, as weir's families use),
//!   `get_mut` by borrowed key (`&[String]`) and `+= 1`. No lock, nothing shared.
//! - `base/hashmap_rwlock`: the same keys in one shared `RwLock<HashMap<Vec<String>,
//!   Arc<AtomicU64>>>`: read lock, `get` by borrowed key, `fetch_add(1, Relaxed)`.
//!
//! The snapshot cases all read the same value the same way: the first series of the first
//! family of a `RegistrySnapshot` of a registry holding that 1,000-series family (by position,
//! not by name, so that the load is what differs between them).
//!
//! Histogram values come from a per-thread xorshift generator, uniform in `1..=1_000_000`; every
//! histogram has weir's default layout (1 ns to 1 h, 3 significant digits). The histogram
//! readers' snapshot counts and times, and the republishers' counts and times, are reported on
//! stderr, so stdout is pure CSV.
//!
//! Decision cases (one op = one full decision on the admit path; settings and the exact work of
//! each are documented in `examples/support/decisions.rs`, shared with the criterion bench):
//! - `weir/budget`: `RatioBudget::deposit` then `try_withdraw` (a request that retries once).
//! - `base/budget_mutex`: the same slot accounting in one `Mutex`, same two calls.
//! - `weir/budget_deposit`, `base/budget_deposit_mutex`: the deposit alone, what every request
//!   pays.
//! - `weir/limiter`: `Limiter::try_acquire` then `Permit::success` under a `FixedLimit`
//!   (which learns nothing: no clock read, no sample).
//! - `base/limiter_mutex`: in-flight count, limit and algorithm in one `Mutex`; same work.
//! - `weir/limiter_aimd`, `base/limiter_aimd_mutex`: the same with an `Aimd` algorithm, which
//!   learns: two clock reads and one RTT sample fed to the algorithm per decision.
//! - `weir/breaker`: `CircuitBreaker::try_acquire` then `Permit::success` (lift's defaults).
//! - `base/breaker_mutex`: the same state machine and window in one `Mutex`.
//! - `weir/ratelimit`: `Gcra::try_acquire` on a quota that always admits.
//! - `base/ratelimit_mutex`: the same GCRA arithmetic on a `Mutex<u64>`.
//! - `base/clock_now`: a `SystemClock` read alone (behind a `SharedClock`), which the limiter
//!   cases pay twice (grant and release) when their algorithm learns from RTTs.
//! - `base/cached_clock_now`: a `CachedClock` read alone (1 ms resolution, behind a
//!   `SharedClock`), the clock of the budget, breaker and rate limit cases, weir and baseline.
//! - `base/floor_cas`, `base/floor_cas_release`, `base/floor_add_cas`: the atomic operations
//!   alone of a decision that changes one word every thread writes (load and CAS; load, CAS and
//!   `fetch_sub`; `fetch_add`, load and CAS), on one isolated line, with no clock and no
//!   arithmetic: the floor under `weir/ratelimit`, `weir/limiter` and `weir/budget`, whose
//!   contracts need that shape.
//!
//! Every decision case is set up so that it always admits; a refused decision, or state left
//! behind (permits in flight, a breaker not closed), is reported on stderr and makes the exit
//! status 1, like a failed exactness check.

use std::collections::HashMap;
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use hdrhistogram::sync::SyncHistogram;
use weir::{Counter, Family, Registry, RegistrySnapshot, Value};

#[path = "support/decisions.rs"]
mod decisions;

use decisions::Decide;

/// Operations between two checks of the stop flag.
const BATCH: u64 = 1024;
/// How often the histogram cases' reader thread takes a snapshot.
const READ_EVERY: Duration = Duration::from_millis(10);
/// Histogram layout, the same for weir and hdrhistogram (weir's defaults).
const LOWEST: u64 = 1;
const HIGHEST: u64 = 3_600 * 1_000_000_000;
const DIGITS: u8 = 3;
/// How often the snapshot cases' republisher publishes a new snapshot.
const REPUBLISH_EVERY: Duration = Duration::from_millis(10);
/// Label values of the lookup family: 10 methods x 100 codes ("200" to "299") = 1,000 series.
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PROPFIND",
];
const CODES: usize = 100;
const SERIES: usize = METHODS.len() * CODES;
/// Label pairs each lookup thread cycles through (a power of two).
const KEYS_PER_THREAD: usize = 64;

const CASES: [&str; 30] = [
    "weir/counter",
    "base/atomic_shared",
    "base/striped_padded",
    "weir/histogram",
    "base/hdr_recorder",
    "base/hdr_mutex",
    "weir/snapshot_load",
    "weir/snapshot_cached",
    "base/arcswap_load",
    "base/rwlock_read",
    "weir/labeled_lookup",
    "base/hashmap_uncontended",
    "base/hashmap_rwlock",
    "weir/budget",
    "base/budget_mutex",
    "weir/budget_deposit",
    "base/budget_deposit_mutex",
    "weir/limiter",
    "base/limiter_mutex",
    "weir/limiter_aimd",
    "base/limiter_aimd_mutex",
    "weir/breaker",
    "base/breaker_mutex",
    "weir/ratelimit",
    "base/ratelimit_mutex",
    "base/clock_now",
    "base/cached_clock_now",
    "base/floor_cas",
    "base/floor_cas_release",
    "base/floor_add_cas",
];

const USAGE: &str = "\
usage: contention [--threads LIST] [--millis N] [--filter S]

  --threads LIST   comma-separated thread counts, each >= 1 (default 1,2,4,8,16)
  --millis N       measured run time of each case at each thread count, >= 1 (default 300)
  --filter S       run only the cases whose name contains S (default: all)
  -h, --help       print this help

cases: weir/counter, base/atomic_shared, base/striped_padded,
       weir/histogram, base/hdr_recorder, base/hdr_mutex,
       weir/snapshot_load, weir/snapshot_cached, base/arcswap_load, base/rwlock_read,
       weir/labeled_lookup, base/hashmap_uncontended, base/hashmap_rwlock,
       weir/budget, base/budget_mutex, weir/budget_deposit, base/budget_deposit_mutex,
       weir/limiter, base/limiter_mutex,
       weir/limiter_aimd, base/limiter_aimd_mutex,
       weir/breaker, base/breaker_mutex, weir/ratelimit,
       base/ratelimit_mutex,
       base/clock_now, base/cached_clock_now,
       base/floor_cas, base/floor_cas_release, base/floor_add_cas
output (stdout): CSV case,threads,ops_per_sec,ns_per_op_per_thread";

// === arguments ===

#[derive(Debug)]
struct Args {
    threads: Vec<usize>,
    millis: u64,
    filter: Option<String>,
}

#[derive(Debug)]
enum ArgError {
    /// `--help` was asked for.
    Help,
    /// Not an option this program knows.
    Unknown(String),
    /// An option given without its value.
    MissingValue(&'static str),
    /// An option's value could not be used.
    Invalid {
        option: &'static str,
        value: String,
        why: &'static str,
    },
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, ArgError> {
    let mut parsed = Args {
        threads: vec![1, 2, 4, 8, 16],
        millis: 300,
        filter: None,
    };
    while let Some(arg) = args.next() {
        // Accept both `--opt value` and `--opt=value`.
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let option: &'static str = match name.as_str() {
            "-h" | "--help" => return Err(ArgError::Help),
            "--threads" => "--threads",
            "--millis" => "--millis",
            "--filter" => "--filter",
            _ => return Err(ArgError::Unknown(arg)),
        };
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(ArgError::MissingValue(option)),
        };
        let invalid = |why| ArgError::Invalid {
            option,
            value: value.clone(),
            why,
        };
        match option {
            "--threads" => {
                let mut list = Vec::new();
                for part in value.split(',') {
                    match part.trim().parse::<usize>() {
                        Ok(n) if n >= 1 => list.push(n),
                        Ok(_) => return Err(invalid("thread counts must be at least 1")),
                        Err(_) => {
                            return Err(invalid(
                                "expected comma-separated positive integers, e.g. 1,2,4",
                            ));
                        }
                    }
                }
                parsed.threads = list;
            }
            "--millis" => match value.trim().parse::<u64>() {
                Ok(n) if n >= 1 => parsed.millis = n,
                _ => {
                    return Err(invalid(
                        "expected a positive integer number of milliseconds",
                    ));
                }
            },
            _ => parsed.filter = Some(value),
        }
    }
    Ok(parsed)
}

// === measurement ===

/// What one case at one thread count measured.
struct Run {
    ops: u64,
    elapsed: Duration,
}

/// Shared between the driver and the worker threads of one run.
struct Ctx {
    start: Barrier,
    stop: AtomicBool,
}

impl Ctx {
    fn new(threads: usize) -> Ctx {
        Ctx {
            // The workers plus the driver, which takes the start time when all are ready.
            start: Barrier::new(threads + 1),
            stop: AtomicBool::new(false),
        }
    }

    /// A worker's measured loop: waits for the start, runs `op` in batches until stopped.
    /// Returns its op count and the instant it stopped.
    fn work(&self, mut op: impl FnMut()) -> (u64, Instant) {
        self.start.wait();
        let mut ops = 0;
        // Relaxed: the flag publishes no data; seeing it a little late only lengthens the run,
        // and the elapsed time is taken when each worker actually stops.
        while !self.stop.load(Ordering::Relaxed) {
            for _ in 0..BATCH {
                op();
            }
            ops += BATCH;
        }
        (ops, Instant::now())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Runs `worker(thread_index, ctx)` on `threads` threads (and `reader(ctx)` on one more, if
/// given) for `millis`, then returns the total ops and the time from the start to the last
/// worker's stop.
fn measure<W, R>(threads: usize, millis: u64, worker: W, reader: Option<R>) -> Run
where
    W: Fn(usize, &Ctx) -> (u64, Instant) + Sync,
    R: FnOnce(&Ctx) + Send,
{
    let ctx = Ctx::new(threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (ctx, worker) = (&ctx, &worker);
                s.spawn(move || worker(i, ctx))
            })
            .collect();
        ctx.start.wait();
        let start = Instant::now();
        let reader = reader.map(|r| {
            let ctx = &ctx;
            s.spawn(move || r(ctx))
        });
        thread::sleep(Duration::from_millis(millis));
        ctx.stop.store(true, Ordering::Relaxed);
        let mut ops = 0;
        let mut end = start;
        for h in handles {
            let (n, stopped_at) = h.join().expect("worker thread panicked");
            ops += n;
            end = end.max(stopped_at);
        }
        if let Some(r) = reader {
            r.join().expect("reader thread panicked");
        }
        Run {
            ops,
            elapsed: end - start,
        }
    })
}

/// A small, fast per-thread generator (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn new(thread: usize) -> XorShift {
        // Distinct, non-zero seeds per thread.
        XorShift(0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(thread as u64 + 1) | 1)
    }

    /// Uniform in `1..=1_000_000` (multiply-shift of the low 32 bits, no division).
    #[inline(always)]
    fn value(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        ((u64::from(x as u32) * 1_000_000) >> 32) + 1
    }

    /// Uniform in `0..n` (`n` at most `u32::MAX`).
    fn index(&mut self, n: usize) -> usize {
        ((self.value() - 1) * n as u64 / 1_000_000) as usize
    }
}

fn hdr() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(LOWEST, HIGHEST, DIGITS)
        .expect("weir's default layout is a valid hdrhistogram layout")
}

/// Snapshot statistics of a reader thread, for stderr.
#[derive(Default)]
struct ReadStats {
    reads: u32,
    total: Duration,
    max: Duration,
}

impl ReadStats {
    fn add(&mut self, d: Duration) {
        self.reads += 1;
        self.total += d;
        self.max = self.max.max(d);
    }

    /// `who` took the snapshots: `"reader"` or `"republisher"`.
    fn report(&self, case: &str, threads: usize, who: &str) {
        let mean = if self.reads == 0 {
            Duration::ZERO
        } else {
            self.total / self.reads
        };
        eprintln!(
            "# {case},{threads}: {who} took {} snapshots, mean {:.1} us, max {:.1} us",
            self.reads,
            mean.as_secs_f64() * 1e6,
            self.max.as_secs_f64() * 1e6
        );
    }
}

/// Exactness checks that failed (the run goes on; the exit status reports them).
#[derive(Default)]
struct Failures(u32);

impl Failures {
    fn check(&mut self, case: &str, threads: usize, what: &str, got: u64, want: u64) {
        if got != want {
            eprintln!("error: {case} at {threads} threads: {what} is {got}, expected {want}");
            self.0 += 1;
        }
    }

    fn fail(&mut self, case: &str, threads: usize, what: &str) {
        eprintln!("error: {case} at {threads} threads: {what}");
        self.0 += 1;
    }
}

/// Runs a decision case: every thread calls `decide` on the one shared `d`. Refusals are
/// counted (every case is set up to admit, so any refusal is a failure), and the shared state
/// is checked after the run.
fn run_decision<D: Decide>(
    case: &str,
    threads: usize,
    millis: u64,
    d: D,
    failures: &mut Failures,
) -> Run {
    let refused = AtomicU64::new(0);
    let no_reader: Option<fn(&Ctx)> = None;
    let run = measure(
        threads,
        millis,
        |_, ctx| {
            let mut mine = 0u64;
            let r = ctx.work(|| {
                if !black_box(&d).decide() {
                    mine += 1;
                }
            });
            // Relaxed: summed after the threads are joined.
            refused.fetch_add(mine, Ordering::Relaxed);
            r
        },
        no_reader,
    );
    failures.check(case, threads, "refused decisions", refused.into_inner(), 0);
    if let Err(e) = d.check() {
        failures.fail(case, threads, &e);
    }
    run
}

// === registry cases ===

/// The label values (method, code) of series `i` of the lookup family.
fn label_pair(i: usize) -> [String; 2] {
    [
        METHODS[i % METHODS.len()].to_string(),
        (200 + i / METHODS.len()).to_string(),
    ]
}

/// The series (indexes into `0..SERIES`) that thread `thread` cycles through: drawn at random,
/// the same in every run and for every lookup case.
fn thread_keys(thread: usize) -> Vec<usize> {
    let mut rng = XorShift::new(thread);
    (0..KEYS_PER_THREAD).map(|_| rng.index(SERIES)).collect()
}

/// A registry holding the counter family `requests_total{method, code}` with all its 1,000
/// series created.
fn lookup_registry() -> (Registry, Family<Counter>) {
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
    (registry, family)
}

/// What every snapshot case reads: the value of the first series of the first family.
#[inline(always)]
fn first_value(snapshot: &RegistrySnapshot) -> u64 {
    match snapshot.families()[0].series[0].value {
        Value::Counter(v) => v,
        _ => unreachable!("the first family holds counters"),
    }
}

/// The counter behind [`first_value`] (the series that sorts first).
fn first_counter(registry: &Registry, family: &Family<Counter>) -> Counter {
    let snapshot = registry.snapshot();
    let values: Vec<&str> = snapshot.families()[0].series[0]
        .label_values
        .iter()
        .map(|v| &**v)
        .collect();
    family.with(&values).expect("an existing series")
}

/// Runs a snapshot case: `worker` on `threads` threads while a republisher, every 10 ms, adds
/// one to the counter the workers read and calls `publish`. Afterwards the value read through
/// `read_now` must equal the number of publications (each published the add before it).
#[allow(clippy::too_many_arguments)]
fn republishing<W, P, N>(
    case: &str,
    threads: usize,
    millis: u64,
    failures: &mut Failures,
    first: &Counter,
    worker: W,
    publish: P,
    read_now: N,
) -> Run
where
    W: Fn(usize, &Ctx) -> (u64, Instant) + Sync,
    P: Fn() + Sync,
    N: Fn() -> u64,
{
    let mut stats = ReadStats::default();
    let run = measure(
        threads,
        millis,
        worker,
        Some(|ctx: &Ctx| {
            while !ctx.stopped() {
                thread::sleep(REPUBLISH_EVERY);
                first.inc();
                let t = Instant::now();
                publish();
                stats.add(t.elapsed());
            }
        }),
    );
    stats.report(case, threads, "republisher");
    failures.check(
        case,
        threads,
        "published value",
        read_now(),
        u64::from(stats.reads),
    );
    run
}

/// Checks that the counters of a lookup case add up to the ops counted.
fn check_total(failures: &mut Failures, case: &str, threads: usize, total: u64, run: &Run) {
    failures.check(case, threads, "sum over all series", total, run.ops);
}

fn run_case(case: &str, threads: usize, millis: u64, failures: &mut Failures) -> Run {
    let no_reader: Option<fn(&Ctx)> = None;
    // A decision case: `decision!(T)` runs `decisions::T::new()`.
    macro_rules! decision {
        ($t:ident) => {
            run_decision(case, threads, millis, decisions::$t::new(), failures)
        };
    }
    match case {
        "weir/counter" => {
            let counter = weir::Counter::new();
            let run = measure(
                threads,
                millis,
                |_, ctx| ctx.work(|| black_box(&counter).inc()),
                no_reader,
            );
            failures.check(case, threads, "Counter::get()", counter.get(), run.ops);
            run
        }
        "base/atomic_shared" => {
            let shared = AtomicU64::new(0);
            let run = measure(
                threads,
                millis,
                |_, ctx| {
                    ctx.work(|| {
                        black_box(&shared).fetch_add(1, Ordering::Relaxed);
                    })
                },
                no_reader,
            );
            failures.check(case, threads, "total", shared.into_inner(), run.ops);
            run
        }
        "base/striped_padded" => {
            let stripes: Vec<CachePadded<AtomicU64>> = (0..threads)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect();
            let run = measure(
                threads,
                millis,
                |i, ctx| {
                    let mine = &stripes[i];
                    ctx.work(|| {
                        black_box(mine).fetch_add(1, Ordering::Relaxed);
                    })
                },
                no_reader,
            );
            let total = stripes.iter().map(|s| s.load(Ordering::Relaxed)).sum();
            failures.check(case, threads, "sum of stripes", total, run.ops);
            run
        }
        "weir/histogram" => {
            let histogram = weir::Histogram::new();
            let mut stats = ReadStats::default();
            let run = measure(
                threads,
                millis,
                |i, ctx| {
                    let mut rng = XorShift::new(i);
                    ctx.work(|| black_box(&histogram).record(black_box(rng.value())))
                },
                Some(|ctx: &Ctx| {
                    while !ctx.stopped() {
                        thread::sleep(READ_EVERY);
                        let t = Instant::now();
                        black_box(histogram.snapshot());
                        stats.add(t.elapsed());
                    }
                }),
            );
            stats.report(case, threads, "reader");
            failures.check(
                case,
                threads,
                "snapshot().count()",
                histogram.snapshot().count(),
                run.ops,
            );
            run
        }
        "base/hdr_recorder" => {
            let mut sync: SyncHistogram<u64> = hdr().into_sync();
            let recorders: Vec<Mutex<Option<_>>> = (0..threads)
                .map(|_| Mutex::new(Some(sync.recorder())))
                .collect();
            let mut stats = ReadStats::default();
            let run = {
                let sync = &mut sync;
                measure(
                    threads,
                    millis,
                    |i, ctx| {
                        // Each worker takes its own recorder; it is dropped (and its last
                        // samples sent) when the worker returns.
                        let mut rec = recorders[i]
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .take()
                            .expect("one recorder per worker");
                        let mut rng = XorShift::new(i);
                        ctx.work(|| black_box(&mut rec).saturating_record(black_box(rng.value())))
                    },
                    Some(|ctx: &Ctx| {
                        while !ctx.stopped() {
                            thread::sleep(READ_EVERY);
                            let t = Instant::now();
                            // With a timeout: a worker that has stopped recording no longer
                            // answers a phase shift, and must not hang the reader.
                            sync.refresh_timeout(Duration::from_millis(100));
                            black_box(sync.len());
                            stats.add(t.elapsed());
                        }
                    }),
                )
            };
            stats.report(case, threads, "reader");
            // Every recorder has been dropped: this collects all their samples.
            sync.refresh();
            failures.check(case, threads, "merged len()", sync.len(), run.ops);
            run
        }
        "base/hdr_mutex" => {
            let shared = Mutex::new(hdr());
            let run = measure(
                threads,
                millis,
                |i, ctx| {
                    let mut rng = XorShift::new(i);
                    ctx.work(|| {
                        let v = black_box(rng.value());
                        black_box(&shared)
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .saturating_record(v);
                    })
                },
                no_reader,
            );
            let total = shared
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .len();
            failures.check(case, threads, "len()", total, run.ops);
            run
        }
        "weir/snapshot_load" => {
            let (registry, family) = lookup_registry();
            let first = first_counter(&registry, &family);
            registry.refresh_now();
            republishing(
                case,
                threads,
                millis,
                failures,
                &first,
                |_, ctx| {
                    ctx.work(|| {
                        black_box(first_value(&black_box(&registry).published()));
                    })
                },
                || {
                    registry.refresh_now();
                },
                || first_value(&registry.published()),
            )
        }
        "weir/snapshot_cached" => {
            let (registry, family) = lookup_registry();
            let first = first_counter(&registry, &family);
            registry.refresh_now();
            republishing(
                case,
                threads,
                millis,
                failures,
                &first,
                |_, ctx| {
                    let mut reader = registry.reader();
                    ctx.work(|| {
                        black_box(first_value(black_box(&mut reader).load()));
                    })
                },
                || {
                    registry.refresh_now();
                },
                || first_value(registry.reader().load()),
            )
        }
        "base/arcswap_load" => {
            let (registry, family) = lookup_registry();
            let first = first_counter(&registry, &family);
            let current = ArcSwap::from_pointee(registry.snapshot());
            republishing(
                case,
                threads,
                millis,
                failures,
                &first,
                |_, ctx| {
                    ctx.work(|| {
                        black_box(first_value(&black_box(&current).load()));
                    })
                },
                || current.store(Arc::new(registry.snapshot())),
                || first_value(&current.load()),
            )
        }
        "base/rwlock_read" => {
            let (registry, family) = lookup_registry();
            let first = first_counter(&registry, &family);
            let current = RwLock::new(Arc::new(registry.snapshot()));
            republishing(
                case,
                threads,
                millis,
                failures,
                &first,
                |_, ctx| {
                    ctx.work(|| {
                        let guard = black_box(&current)
                            .read()
                            .unwrap_or_else(PoisonError::into_inner);
                        black_box(first_value(&guard));
                    })
                },
                || {
                    let fresh = Arc::new(registry.snapshot());
                    let old = std::mem::replace(
                        &mut *current.write().unwrap_or_else(PoisonError::into_inner),
                        fresh,
                    );
                    // The old snapshot is freed after the write lock is released.
                    drop(old);
                },
                || first_value(&current.read().unwrap_or_else(PoisonError::into_inner)),
            )
        }
        "weir/labeled_lookup" => {
            let (registry, family) = lookup_registry();
            let pairs: Vec<[String; 2]> = (0..SERIES).map(label_pair).collect();
            let run = measure(
                threads,
                millis,
                |i, ctx| {
                    let keys: Vec<[&str; 2]> = thread_keys(i)
                        .into_iter()
                        .map(|k| [pairs[k][0].as_str(), pairs[k][1].as_str()])
                        .collect();
                    let mut k = 0;
                    ctx.work(|| {
                        // An error (none is possible here) would show in the total check.
                        let r = black_box(&family).with_series(black_box(&keys[k]), |c| c.inc());
                        black_box(r).ok();
                        k = (k + 1) % KEYS_PER_THREAD;
                    })
                },
                no_reader,
            );
            let total = registry.snapshot().family("requests_total").map_or(0, |f| {
                f.series
                    .iter()
                    .map(|s| match s.value {
                        Value::Counter(v) => v,
                        _ => 0,
                    })
                    .sum()
            });
            check_total(failures, case, threads, total, &run);
            run
        }
        "base/hashmap_uncontended" => {
            let pairs: Vec<Vec<String>> = (0..SERIES).map(|i| label_pair(i).to_vec()).collect();
            let total = AtomicU64::new(0);
            let run = measure(
                threads,
                millis,
                |i, ctx| {
                    let mut map: HashMap<Vec<String>, u64> =
                        pairs.iter().map(|p| (p.clone(), 0)).collect();
                    let keys: Vec<Vec<String>> = thread_keys(i)
                        .into_iter()
                        .map(|k| pairs[k].clone())
                        .collect();
                    let mut k = 0;
                    let done = ctx.work(|| {
                        if let Some(v) = black_box(&mut map).get_mut(black_box(keys[k].as_slice()))
                        {
                            *v += 1;
                        }
                        k = (k + 1) % KEYS_PER_THREAD;
                    });
                    total.fetch_add(map.values().sum(), Ordering::Relaxed);
                    done
                },
                no_reader,
            );
            check_total(failures, case, threads, total.into_inner(), &run);
            run
        }
        "base/hashmap_rwlock" => {
            let pairs: Vec<Vec<String>> = (0..SERIES).map(|i| label_pair(i).to_vec()).collect();
            let shared: RwLock<HashMap<Vec<String>, Arc<AtomicU64>>> = RwLock::new(
                pairs
                    .iter()
                    .map(|p| (p.clone(), Arc::new(AtomicU64::new(0))))
                    .collect(),
            );
            let run = measure(
                threads,
                millis,
                |i, ctx| {
                    let keys: Vec<Vec<String>> = thread_keys(i)
                        .into_iter()
                        .map(|k| pairs[k].clone())
                        .collect();
                    let mut k = 0;
                    ctx.work(|| {
                        let map = black_box(&shared)
                            .read()
                            .unwrap_or_else(PoisonError::into_inner);
                        if let Some(c) = map.get(black_box(keys[k].as_slice())) {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                        k = (k + 1) % KEYS_PER_THREAD;
                    })
                },
                no_reader,
            );
            let total = shared
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .map(|c| c.load(Ordering::Relaxed))
                .sum();
            check_total(failures, case, threads, total, &run);
            run
        }
        "weir/budget" => decision!(WeirBudget),
        "base/budget_mutex" => decision!(MutexBudget),
        "weir/budget_deposit" => decision!(WeirBudgetDeposit),
        "base/budget_deposit_mutex" => decision!(MutexBudgetDeposit),
        "weir/limiter" => decision!(WeirLimiter),
        "base/limiter_mutex" => decision!(MutexLimiter),
        "weir/limiter_aimd" => decision!(WeirLimiterAimd),
        "base/limiter_aimd_mutex" => decision!(MutexLimiterAimd),
        "weir/breaker" => decision!(WeirBreaker),
        "base/breaker_mutex" => decision!(MutexBreaker),
        "weir/ratelimit" => decision!(WeirRatelimit),
        "base/ratelimit_mutex" => decision!(MutexRatelimit),
        "base/clock_now" => decision!(ClockNow),
        "base/cached_clock_now" => decision!(CachedClockNow),
        "base/floor_cas" => decision!(FloorCas),
        "base/floor_cas_release" => decision!(FloorCasRelease),
        "base/floor_add_cas" => decision!(FloorAddCas),
        other => unreachable!("unknown case {other}"),
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(ArgError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            match e {
                ArgError::Unknown(a) => eprintln!("error: unknown argument '{a}'"),
                ArgError::MissingValue(o) => eprintln!("error: {o} needs a value"),
                ArgError::Invalid { option, value, why } => {
                    eprintln!("error: bad value '{value}' for {option}: {why}")
                }
                ArgError::Help => {}
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cases: Vec<&str> = CASES
        .iter()
        .copied()
        .filter(|c| args.filter.as_deref().is_none_or(|f| c.contains(f)))
        .collect();
    if cases.is_empty() {
        eprintln!(
            "error: no case matches filter '{}'",
            args.filter.as_deref().unwrap_or("")
        );
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }

    let mut failures = Failures::default();
    println!("case,threads,ops_per_sec,ns_per_op_per_thread");
    for &threads in &args.threads {
        for case in &cases {
            let run = run_case(case, threads, args.millis, &mut failures);
            let secs = run.elapsed.as_secs_f64();
            let ops_per_sec = run.ops as f64 / secs;
            let ns_per_op = secs * 1e9 * threads as f64 / run.ops as f64;
            println!("{case},{threads},{ops_per_sec:.0},{ns_per_op:.3}");
        }
    }
    if failures.0 > 0 {
        eprintln!(
            "error: {} exactness or decision check(s) failed",
            failures.0
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
