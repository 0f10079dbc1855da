//! Writes an HdrHistogram interval log (`.hlog`) of request latencies for a few seconds.
//!
//! ```sh
//! cargo run --release --features hlog --example hlog            # writes target/weir-example.hlog
//! cargo run --release --features hlog --example hlog -- my.hlog  # or another path
//! ```
//!
//! Four worker threads record simulated latencies (in nanoseconds) into a registry histogram
//! family with two routes while the main thread logs one interval every 500 ms for 3 seconds.
//! Read the log with any HdrHistogram tool: the Java `HistogramLogProcessor`, the Rust
//! `hdrhistogram` crate's `IntervalLogIterator`, or the Python `hdrhistogram` package
//! (`tests/data/read_hlog.py` prints each interval's count and percentiles).

use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use weir::Registry;
use weir::export::hlog::IntervalLoggerBuilder;

const ROUTES: [&str; 2] = ["/cart", "/search"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = match std::env::args_os().nth(1) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/weir-example.hlog"),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }

    let registry = Registry::new();
    let latency = registry.histogram_family(
        "request_duration_nanoseconds",
        "Request latency",
        &["route"],
    )?;

    let mut log = IntervalLoggerBuilder::new()
        .clock(registry.clock().clone())
        .comment("weir examples/hlog.rs: simulated request latencies, in nanoseconds")
        .build(BufWriter::new(std::fs::File::create(&path)?))?;
    for route in ROUTES {
        // Tags may not hold commas or whitespace; route names are fine.
        log.add_registry_series(
            &registry,
            "request_duration_nanoseconds",
            &[route],
            Some(route),
        )?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let (latency, stop) = (latency.clone(), stop.clone());
            thread::spawn(move || -> Result<(), weir::RegistryError> {
                let handles = [latency.with(&[ROUTES[0]])?, latency.with(&[ROUTES[1]])?];
                let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (t + 1);
                // Relaxed: the flag carries no data; the join below orders everything else.
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Mostly 50 µs .. 2 ms, one request in a thousand 10x slower.
                    let base = 50_000 + x % 1_950_000;
                    let slow = if x.is_multiple_of(1_000) { 10 } else { 1 };
                    handles[(x >> 63) as usize].record(base * slow);
                    // Let the other threads (and the logger) run on a small machine.
                    if x.is_multiple_of(64) {
                        thread::yield_now();
                    }
                }
                Ok(())
            })
        })
        .collect();

    println!("interval  route     count       p50 (µs)  p99 (µs)  max (µs)");
    for _ in 0..6 {
        thread::sleep(Duration::from_millis(500));
        for i in log.log_interval()? {
            let h = i.histogram();
            println!(
                "{:>5.1} s   {:<8} {:>9}  {:>9}  {:>8}  {:>8}",
                i.start().as_secs_f64(),
                i.tag().unwrap_or("-"),
                h.count(),
                h.value_at_quantile(0.5) / 1_000,
                h.value_at_quantile(0.99) / 1_000,
                h.max() / 1_000,
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().map_err(|_| "worker panicked")??;
    }
    // What was recorded after the last interval goes into one final, short interval.
    log.log_interval()?;
    log.into_inner().into_inner().map_err(|e| e.into_error())?;
    println!("{}", path.display());
    Ok(())
}
