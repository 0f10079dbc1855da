//! Snapshot cost: how long one `Registry::snapshot()` takes, on one thread, for registries of
//! 1,000 and 10,000 counter series and 1,000 and 10,000 histogram series.
//!
//! ```text
//! cargo run --release --example snapshot_cost [-- --millis N]
//! ```
//!
//! Each registry holds one family with labels `route` and `code`; series `i` has the label
//! values `/route/{i / 100}` and `{200 + i % 100}`. Every counter series is incremented once;
//! every histogram series records 100 values uniform in 1..2 ms (in nanoseconds, default
//! layout), a narrow band that touches 3 pages of buckets. Two more registries have had 16
//! threads, alive at once, record into every series, so each series has more per-thread state
//! to sum: 17 cells per counter (this thread's and the 16 threads'), 16 shards per histogram
//! (only the 16 threads record there).
//!
//! For each registry, `snapshot()` is called once to warm up, then repeatedly until at least
//! `--millis` (default 1000) have passed and at least 10 snapshots were taken. The time of a
//! snapshot excludes dropping it. The table gives the mean, minimum and median time per
//! snapshot, and the mean per series.
//!
//! To show where the time goes, and whether spreading a snapshot over threads (as rayon would)
//! could pay, two more columns time only the reading of the values, timed the same way:
//! `Counter::get` or `Histogram::snapshot` on every series' handle, on this thread ("values, 1
//! thread"), and split into equal parts over `std::thread::available_parallelism()` scoped
//! threads, spawning included ("values, N threads"). What `snapshot()` spends beyond "values, 1
//! thread" is its own work: gathering the series, sorting, building the families.

use std::hint::black_box;
use std::ops::Range;
use std::process::ExitCode;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use weir::{Counter, Histogram, Registry, Value};

/// Threads that record into every series of the "touched by 16 threads" registries.
const THREADS: usize = 16;
/// Values recorded into each histogram series (by each recording thread).
const VALUES_PER_HISTOGRAM: u64 = 100;
/// The narrow band histogram values are drawn from: 1 ms ..= 2 ms, in nanoseconds.
const BAND: (u64, u64) = (1_000_000, 1_000_000);
/// Measurements stop after this many snapshots even if `--millis` has not passed.
const MAX_ROUNDS: usize = 100_000;
const MIN_ROUNDS: usize = 10;

const USAGE: &str = "\
usage: snapshot_cost [--millis N]

  --millis N   minimum time of each measurement (a registry's snapshots, and each of the
               two value-reading columns), >= 1 (default 1000)
  -h, --help   print this help";

// === arguments ===

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<u64, String> {
    let mut millis = 1000;
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match name.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--millis" => {
                let value = inline
                    .or_else(|| args.next())
                    .ok_or("--millis needs a value")?;
                millis = match value.trim().parse::<u64>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(format!(
                            "bad value '{value}' for --millis: expected a positive integer"
                        ));
                    }
                };
            }
            _ => return Err(format!("unknown argument '{arg}'")),
        }
    }
    Ok(millis)
}

// === registries ===

/// The label values of series `i`.
fn labels(i: usize) -> [String; 2] {
    [format!("/route/{}", i / 100), (200 + i % 100).to_string()]
}

/// Uniform values in `low..low + span` from a per-thread xorshift64 generator.
struct Values {
    state: u64,
    low: u64,
    span: u64,
}

impl Values {
    fn new(thread: usize, (low, span): (u64, u64)) -> Values {
        Values {
            state: 0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(thread as u64 + 1) | 1,
            low,
            span,
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        self.low + ((u64::from(x as u32) * self.span) >> 32)
    }
}

/// The handles of a registry's series, to read their values without the registry.
enum Handles {
    Counters(Vec<Counter>),
    Histograms(Vec<Histogram>),
}

impl Handles {
    fn len(&self) -> usize {
        match self {
            Handles::Counters(v) => v.len(),
            Handles::Histograms(v) => v.len(),
        }
    }

    /// The values of the series in `range`, read as `snapshot()` reads them.
    fn read(&self, range: Range<usize>) -> Vec<Value> {
        match self {
            Handles::Counters(v) => v[range].iter().map(|c| Value::Counter(c.get())).collect(),
            Handles::Histograms(v) => v[range]
                .iter()
                .map(|h| Value::Histogram(h.snapshot()))
                .collect(),
        }
    }

    /// `read` over all series, split into `parts` ranges read on that many scoped threads.
    fn read_parallel(&self, parts: usize) -> Vec<Vec<Value>> {
        let n = self.len();
        thread::scope(|s| {
            let handles: Vec<_> = (0..parts)
                .map(|p| {
                    let range = n * p / parts..n * (p + 1) / parts;
                    s.spawn(move || self.read(range))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("reader thread panicked"))
                .collect()
        })
    }
}

/// Runs `f(thread_index)` on `THREADS` threads alive at once (none exits before all have run
/// `f`, so each holds its own weir slot), and joins them.
fn on_live_threads(f: impl Fn(usize) + Sync) {
    let all_done = Barrier::new(THREADS);
    thread::scope(|s| {
        for i in 0..THREADS {
            let (f, all_done) = (&f, &all_done);
            s.spawn(move || {
                f(i);
                all_done.wait();
            });
        }
    });
}

/// A registry with `n` counter series, each incremented once here, and by each of `THREADS`
/// live threads if `threads` is set.
fn counters(n: usize, threads: bool) -> (Registry, Handles) {
    let registry = Registry::new();
    let family = registry
        .counter_family("requests_total", "Requests served", &["route", "code"])
        .expect("a valid family");
    let handles: Vec<Counter> = (0..n)
        .map(|i| {
            let [route, code] = labels(i);
            family
                .with(&[&route, &code])
                .expect("within the cardinality limit")
        })
        .collect();
    for c in &handles {
        c.inc();
    }
    if threads {
        on_live_threads(|_| {
            for c in &handles {
                c.inc();
            }
        });
    }
    (registry, Handles::Counters(handles))
}

/// A registry with `n` histogram series, each with `VALUES_PER_HISTOGRAM` values in the band
/// recorded here, or by each of `THREADS` live threads if `threads` is set.
fn histograms(n: usize, threads: bool) -> (Registry, Handles) {
    let registry = Registry::new();
    let family = registry
        .histogram_family(
            "request_duration_nanoseconds",
            "Request latency",
            &["route", "code"],
        )
        .expect("a valid family");
    let handles: Vec<Histogram> = (0..n)
        .map(|i| {
            let [route, code] = labels(i);
            family
                .with(&[&route, &code])
                .expect("within the cardinality limit")
        })
        .collect();
    let record = |thread: usize| {
        let mut values = Values::new(thread, BAND);
        for h in &handles {
            for _ in 0..VALUES_PER_HISTOGRAM {
                h.record(values.next());
            }
        }
    };
    if threads {
        on_live_threads(record);
    } else {
        record(0);
    }
    (registry, Handles::Histograms(handles))
}

// === timing ===

/// Times of repeated calls of one operation.
struct Timing {
    rounds: usize,
    mean: Duration,
    min: Duration,
    median: Duration,
}

/// Calls `f` once to warm up, then until `min_time` has passed and at least `MIN_ROUNDS`
/// calls were made. Each call's result is dropped outside the time taken.
fn time<T>(min_time: Duration, mut f: impl FnMut() -> T) -> Timing {
    drop(black_box(f()));
    let mut times = Vec::new();
    let start = Instant::now();
    while (times.len() < MIN_ROUNDS || start.elapsed() < min_time) && times.len() < MAX_ROUNDS {
        let t = Instant::now();
        let out = black_box(f());
        times.push(t.elapsed());
        drop(out);
    }
    times.sort_unstable();
    Timing {
        rounds: times.len(),
        mean: times.iter().sum::<Duration>() / times.len() as u32,
        min: times[0],
        median: times[times.len() / 2],
    }
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn main() -> ExitCode {
    let millis = match parse_args(std::env::args().skip(1)) {
        Ok(m) => m,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let min_time = Duration::from_millis(millis);
    let parts = thread::available_parallelism().map_or(2, |n| n.get());

    type Build = fn() -> (Registry, Handles);
    let cases: [(&str, Build); 6] = [
        ("1,000 counters", || counters(1_000, false)),
        ("10,000 counters", || counters(10_000, false)),
        ("10,000 counters, 16 threads recorded", || {
            counters(10_000, true)
        }),
        ("1,000 histograms (1..2 ms)", || histograms(1_000, false)),
        ("10,000 histograms (1..2 ms)", || histograms(10_000, false)),
        ("1,000 histograms (1..2 ms), 16 threads recorded", || {
            histograms(1_000, true)
        }),
    ];

    println!(
        "{:<48} {:>6} {:>10} {:>10} {:>10} {:>11} {:>10} {:>10}",
        "registry (one thread takes the snapshot)",
        "snaps",
        "mean_us",
        "min_us",
        "median_us",
        "ns/series",
        "values_1t",
        format!("values_{parts}t"),
    );
    for (what, build) in cases {
        let (registry, handles) = build();
        let n = handles.len();
        let snap = time(min_time, || registry.snapshot());
        let one = time(min_time, || handles.read(0..n));
        let many = time(min_time, || handles.read_parallel(parts));
        println!(
            "{:<48} {:>6} {:>10} {:>10} {:>10} {:>11.0} {:>10} {:>10}",
            what,
            snap.rounds,
            us(snap.mean),
            us(snap.min),
            us(snap.median),
            snap.mean.as_secs_f64() * 1e9 / n as f64,
            us(one.mean),
            us(many.mean),
        );
    }
    println!();
    println!(
        "values_1t / values_{parts}t: mean time to read every series' value through its handle \
         (Counter::get / Histogram::snapshot) on 1 thread / split over {parts} scoped threads \
         (spawn included); times in microseconds"
    );
    ExitCode::SUCCESS
}
