//! Interval logs read back with the `hdrhistogram` crate's own parser and deserializer: every
//! interval holds exactly the delta weir computed, and the intervals add up to the total.
//!
//! Needs the `hlog` feature: `cargo test --features hlog --test hlog` (or `--all-features`).

use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use rand::{Rng, SeedableRng};
use weir::export::hlog::{IntervalLogger, IntervalLoggerBuilder, LoggedInterval};
use weir::{Histogram, HistogramSnapshot, ManualClock, Registry};

/// One interval line, parsed and deserialized.
#[derive(Debug)]
struct Read {
    tag: Option<String>,
    start: Duration,
    duration: Duration,
    max: f64,
    histogram: hdrhistogram::Histogram<u64>,
}

/// Parses a whole log; returns (StartTime, BaseTime, intervals).
fn read_log(text: &[u8]) -> (Option<Duration>, Option<Duration>, Vec<Read>) {
    let mut d = Deserializer::new();
    let (mut start, mut base, mut out) = (None, None, Vec::new());
    for entry in IntervalLogIterator::new(text) {
        match entry.expect("the crate's parser accepts the log") {
            LogEntry::StartTime(t) => start = Some(t),
            LogEntry::BaseTime(t) => base = Some(t),
            LogEntry::Interval(i) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(i.encoded_histogram())
                    .expect("base64");
                let histogram = d
                    .deserialize(&mut bytes.as_slice())
                    .expect("V2 + DEFLATE histogram");
                out.push(Read {
                    tag: i.tag().map(|t| t.as_str().to_owned()),
                    start: i.start_timestamp(),
                    duration: i.duration(),
                    max: i.max(),
                    histogram,
                });
            }
        }
    }
    (start, base, out)
}

const QUANTILES: &[f64] = &[0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0];

/// The deserialized histogram is bucket for bucket the delta weir wrote.
fn assert_same(read: &Read, written: &LoggedInterval) {
    let (h, delta) = (&read.histogram, written.histogram());
    assert_eq!(read.tag.as_deref(), written.tag());
    assert_eq!(read.start, written.start(), "start of {:?}", read.tag);
    assert_eq!(
        read.duration,
        written.duration(),
        "length of {:?}",
        read.tag
    );
    assert_eq!(h.len(), delta.count());
    assert_eq!(h.low(), delta.lowest());
    assert_eq!(h.high(), delta.highest());
    assert_eq!(h.sigfig(), delta.significant_digits());
    let theirs: Vec<(u64, u64)> = h
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    let ours: Vec<(u64, u64)> = delta.buckets().map(|b| (b.high, b.count)).collect();
    assert_eq!(theirs, ours, "buckets of {:?}", read.tag);
    for &q in QUANTILES {
        assert_eq!(
            h.value_at_quantile(q),
            delta.value_at_quantile(q),
            "q{q} of {:?}",
            read.tag
        );
    }
    assert_eq!(read.max, delta.max() as f64);
}

fn manual_logger(clock: &ManualClock) -> IntervalLogger<Vec<u8>> {
    IntervalLoggerBuilder::new()
        .clock(Arc::new(clock.clone()))
        .start_time(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
        .comment("weir tests/hlog.rs")
        .build(Vec::new())
        .unwrap()
}

#[test]
fn several_intervals_read_back_exactly() {
    let clock = ManualClock::new();
    let registry = Registry::builder().clock(Arc::new(clock.clone())).build();
    let routes = registry
        .describe("request_latency", "Request latency in microseconds")
        .histogram_layout(
            Histogram::builder()
                .significant_digits(2)
                .lowest(10)
                .highest(60_000_000),
        )
        .histogram_family(&["route"])
        .unwrap();
    let plain = Histogram::new();
    let mut log = manual_logger(&clock);
    log.add_histogram(&plain, Some("plain")).unwrap();
    log.add_registry_series(&registry, "request_latency", &["/cart"], Some("cart"))
        .unwrap();
    let cart = routes.with(&["/cart"]).unwrap();

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut written = Vec::new();
    let mut cumulative: Vec<HistogramSnapshot> = Vec::new();
    for interval in 0..6u64 {
        // Interval 3 records nothing at all: an empty interval is still written.
        let n = if interval == 3 {
            0
        } else {
            500 * (interval + 1)
        };
        for _ in 0..n {
            plain.record(rng.gen_range(1_000..5_000_000));
            cart.record(rng.gen_range(50..200_000) * (interval + 1));
        }
        // Intervals of 1.0 s, 1.25 s, 1.5 s, ...
        clock.advance(Duration::from_millis(1_000 + 250 * interval));
        let got = log.log_interval().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].histogram().count(), n);
        assert_eq!(got[1].histogram().count(), n);
        written.extend(got);
        cumulative.push(plain.snapshot());
    }

    let text = log.into_inner();
    let (start, base, read) = read_log(&text);
    let t0 = Duration::from_millis(1_700_000_000_123);
    assert_eq!((start, base), (Some(t0), Some(t0)));
    assert_eq!(read.len(), written.len());
    for (r, w) in read.iter().zip(&written) {
        assert_same(r, w);
    }

    // Consecutive intervals tile the time line.
    let plain_reads: Vec<&Read> = read
        .iter()
        .filter(|r| r.tag.as_deref() == Some("plain"))
        .collect();
    let mut at = Duration::ZERO;
    for (k, r) in plain_reads.iter().enumerate() {
        assert_eq!(r.start, at);
        assert_eq!(r.duration, Duration::from_millis(1_000 + 250 * k as u64));
        at += r.duration;
    }

    // The intervals add up to the histogram's total, bucket for bucket.
    for (tag, total) in [("plain", plain.snapshot()), ("cart", cart.snapshot())] {
        let mut sum = hdrhistogram::Histogram::<u64>::new_from(&total.to_hdr());
        for r in read.iter().filter(|r| r.tag.as_deref() == Some(tag)) {
            sum.add(&r.histogram).unwrap();
        }
        assert_eq!(sum.len(), total.count(), "{tag}");
        assert_eq!(sum, total.to_hdr(), "{tag}");
    }
    // The running totals agree with the per-interval deltas.
    let mut running = 0;
    for (k, r) in plain_reads.iter().enumerate() {
        running += r.histogram.len();
        assert_eq!(running, cumulative[k].count());
    }
}

#[test]
fn family_series_and_untagged_source() {
    let clock = ManualClock::new();
    let registry = Registry::new();
    let family = registry
        .histogram_family("job_seconds", "", &["queue"])
        .unwrap();
    let mut log = manual_logger(&clock);
    log.add_family_series(&family, &["default"], None).unwrap();
    family.with(&["default"]).unwrap().record_n(1_234, 10);
    clock.advance(Duration::from_secs(5));
    let written = log.log_interval().unwrap();
    let text = log.into_inner();
    assert!(
        String::from_utf8_lossy(&text).contains("\n0.000,5.000,1234.000,HISTF"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    let (_, _, read) = read_log(&text);
    assert_eq!(read.len(), 1);
    assert_same(&read[0], &written[0]);
}

/// Writers keep recording on several threads while intervals are logged: the logged intervals
/// still add up exactly to what was recorded.
#[test]
fn concurrent_writers_lose_nothing() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 20_000;
    let clock = ManualClock::new();
    let h = Histogram::new();
    let mut log = manual_logger(&clock);
    log.add_histogram(&h, Some("load")).unwrap();
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let h = h.clone();
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    h.record(1 + (i * 7919 + t * 104_729) % 10_000_000);
                }
            })
        })
        .collect();
    let mut written = Vec::new();
    // Log while the writers run (bounded: at most 10,000 intervals), then once after they end.
    let mut rounds = 0;
    while writers.iter().any(|w| !w.is_finished()) && rounds < 10_000 {
        clock.advance(Duration::from_millis(10));
        written.extend(log.log_interval().unwrap());
        rounds += 1;
    }
    for w in writers {
        w.join().unwrap();
    }
    clock.advance(Duration::from_millis(10));
    written.extend(log.log_interval().unwrap());

    let (_, _, read) = read_log(&log.into_inner());
    assert_eq!(read.len(), written.len());
    let mut total = 0;
    for (r, w) in read.iter().zip(&written) {
        assert_same(r, w);
        total += r.histogram.len();
    }
    assert_eq!(total, THREADS * PER_THREAD);
    assert_eq!(total, h.snapshot().count());
}
