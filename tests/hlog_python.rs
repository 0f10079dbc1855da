//! Reads weir's interval logs back with an independent implementation: the PyPI `hdrhistogram`
//! package (module `hdrh`), through `tests/data/read_hlog.py`.
//!
//! Install it with `python3 -m pip install hdrhistogram` (`PYTHON` selects the interpreter,
//! default `python3`). Set `WEIR_SKIP_PYTHON_HDR=1` to skip this check where it cannot be
//! installed. Needs the `hlog` feature: `cargo test --features hlog --test hlog_python`.

use std::collections::HashMap;
use std::io::{BufWriter, ErrorKind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use weir::export::hlog::{IntervalLoggerBuilder, LoggedInterval};
use weir::{Histogram, HistogramSnapshot, ManualClock, Registry};

const INSTALL: &str = "install it with `python3 -m pip install hdrhistogram` (or set PYTHON to \
     an interpreter that has it); set WEIR_SKIP_PYTHON_HDR=1 to skip this check";

/// The percentiles the script prints, as (field name, percentile).
const PERCENTILES: &[(&str, f64)] = &[
    ("p0", 0.0),
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p100", 100.0),
];

fn skipped() -> bool {
    if std::env::var_os("WEIR_SKIP_PYTHON_HDR").is_some_and(|v| v == "1") {
        eprintln!("WEIR_SKIP_PYTHON_HDR=1: skipped reading interval logs with the Python hdrh");
        true
    } else {
        false
    }
}

/// Removes the file when dropped, even if the test fails.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the reader script on `path`; returns its stdout.
fn read_with_python(path: &Path) -> String {
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/read_hlog.py");
    let out = match Command::new(&python).arg(&script).arg(path).output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!(
                "{python:?} not found: install Python 3, then the hdrhistogram package: {INSTALL}"
            )
        }
        Err(e) => panic!("could not run {python:?}: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        panic!("{stderr}the Python hdrhistogram package is missing: {INSTALL}");
    }
    assert!(
        out.status.success(),
        "read_hlog.py failed ({}):\nstdout:\n{}\nstderr:\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
    );
    String::from_utf8(out.stdout).expect("the script prints UTF-8")
}

/// One `key=value ...` record of the script's output.
fn fields(line: &str) -> HashMap<&str, &str> {
    line.split(' ')
        .skip(1)
        .map(|kv| {
            kv.split_once('=')
                .unwrap_or_else(|| panic!("bad field {kv:?}"))
        })
        .collect()
}

fn num(f: &HashMap<&str, &str>, key: &str) -> u64 {
    f.get(key)
        .unwrap_or_else(|| panic!("no {key} in {f:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// The value at `percentile` as the Python package defines it (`get_value_at_percentile`):
/// the top of the bucket where the running count reaches `int(p * total / 100 + 0.5)` (at
/// least 1); for percentile 0, the bottom of the first bucket. Computed from weir's buckets.
fn python_rule(delta: &HistogramSnapshot, percentile: f64) -> u64 {
    let total = delta.count();
    let target = (((percentile.min(100.0) * total as f64) / 100.0 + 0.5) as u64).max(1);
    let mut seen = 0;
    for b in delta.buckets() {
        seen += b.count;
        if seen >= target {
            return if percentile == 0.0 { b.low } else { b.high };
        }
    }
    0
}

/// Where `value` is among the tops of `delta`'s non-empty buckets.
fn bucket_rank(delta: &HistogramSnapshot, value: u64) -> Option<usize> {
    delta
        .buckets()
        .position(|b| b.low <= value && value <= b.high)
}

fn check(line: &str, written: &LoggedInterval) {
    let f = fields(line);
    let delta = written.histogram();
    let what = format!("interval {:?} at {:?}", written.tag(), written.start());
    assert_eq!(f["tag"], written.tag().unwrap_or("-"), "{what}");
    assert_eq!(
        num(&f, "start_ms"),
        written.start().as_millis() as u64,
        "{what}"
    );
    assert_eq!(
        num(&f, "duration_ms"),
        written.duration().as_millis() as u64,
        "{what}"
    );
    // Counts and the layout: exactly.
    assert_eq!(num(&f, "count"), delta.count(), "{what}");
    assert_eq!(num(&f, "lowest"), delta.lowest(), "{what}");
    assert_eq!(num(&f, "highest"), delta.highest(), "{what}");
    assert_eq!(
        num(&f, "digits"),
        u64::from(delta.significant_digits()),
        "{what}"
    );
    if delta.count() == 0 {
        return;
    }
    assert_eq!(num(&f, "min"), delta.min(), "{what}");
    assert_eq!(num(&f, "max"), delta.max(), "{what}");
    for &(key, p) in PERCENTILES {
        let theirs = num(&f, key);
        // The package rounds the target count where HdrHistogram (and weir) take the ceiling:
        // with its own rule, the decoded buckets give exactly the same value...
        assert_eq!(theirs, python_rule(delta, p), "{key} of {what}");
        // ...which is weir's own quantile to within one recorded bucket (the precision).
        let ours = delta.value_at_quantile(p / 100.0);
        let (a, b) = (bucket_rank(delta, theirs), bucket_rank(delta, ours));
        assert!(
            a.is_some() && b.is_some() && a.unwrap().abs_diff(b.unwrap()) <= 1,
            "{key} of {what}: python {theirs}, weir {ours}"
        );
    }
}

#[test]
fn python_hdrhistogram_reads_weir_logs() {
    if skipped() {
        return;
    }
    let path = std::env::temp_dir().join(format!("weir-{}-python.hlog", std::process::id()));
    let _cleanup = TempFile(path.clone());

    let clock = ManualClock::new();
    let registry = Registry::builder().clock(Arc::new(clock.clone())).build();
    let routes = registry
        .describe("rpc_latency", "RPC latency in microseconds")
        .histogram_layout(
            Histogram::builder()
                .significant_digits(2)
                .lowest(10)
                .highest(60_000_000),
        )
        .histogram_family(&["method"])
        .unwrap();
    let get = routes.with(&["get"]).unwrap();
    let latency = Histogram::new(); // 1 ns .. 1 hour, 3 digits

    let file = std::fs::File::create(&path).unwrap();
    let mut log = IntervalLoggerBuilder::new()
        .clock(Arc::new(clock.clone()))
        .start_time(SystemTime::UNIX_EPOCH + Duration::from_millis(1_712_345_678_901))
        .comment("weir tests/hlog_python.rs")
        .build(BufWriter::new(file))
        .unwrap();
    log.add_histogram(&latency, Some("latency")).unwrap();
    log.add_registry_series(&registry, "rpc_latency", &["get"], Some("rpc.get"))
        .unwrap();

    let mut written = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        // xorshift64: a fixed, dependency-free sequence.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for interval in 0..8u64 {
        let n = match interval {
            2 => 0, // an empty interval
            3 => 1, // a single value
            _ => 1_000 * interval + 37,
        };
        for _ in 0..n {
            // Log-uniform-ish values over the whole range, and some above it (saturated).
            let shift = next() % 42;
            latency.record(1 + (next() >> (22 + shift)));
            get.record(10 + next() % (70_000_000 >> (next() % 20)));
        }
        clock.advance(Duration::from_millis(997 + 111 * interval));
        written.extend(log.log_interval().unwrap());
    }
    drop(log.into_inner().into_inner().unwrap());

    let stdout = read_with_python(&path);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("log start_time=1712345678.901 base_time=1712345678.901"),
        "{stdout}"
    );
    let lines: Vec<&str> = lines.collect();
    assert_eq!(lines.len(), written.len(), "{stdout}");
    for (line, w) in lines.iter().zip(&written) {
        check(line, w);
    }
    for (tag, h) in [("latency", &latency), ("rpc.get", &get)] {
        let logged: u64 = lines
            .iter()
            .map(|l| fields(l))
            .filter(|f| f["tag"] == tag)
            .map(|f| num(&f, "count"))
            .sum();
        assert_eq!(logged, h.snapshot().count(), "{tag}");
    }
}
