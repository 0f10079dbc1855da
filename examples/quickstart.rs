//! A first tour of weir: counters, histograms, a registry with labels, published snapshots and
//! a rolling window.
//!
//! ```sh
//! cargo run --release --example quickstart
//! ```

use std::thread;
use std::time::Duration;

use weir::{Counter, Histogram, Registry};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Plain handles: cheap to clone, exact to read.
    let requests = Counter::new();
    let latency = Histogram::new(); // nanoseconds, 1 ns .. 1 h, 3 significant digits

    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let (requests, latency) = (requests.clone(), latency.clone());
            thread::spawn(move || {
                for i in 0..250_000u64 {
                    requests.inc();
                    latency.record(50_000 + (i * 7 + t * 13) % 20_000);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "worker panicked")?;
    }
    let s = latency.snapshot();
    println!("requests: {}", requests.get());
    println!(
        "latency: count {} min {} ns p50 {} ns p99 {} ns max {} ns mean {:.0} ns",
        s.count(),
        s.min(),
        s.value_at_quantile(0.5),
        s.value_at_quantile(0.99),
        s.max(),
        s.mean()
    );

    // A registry: named metrics with labels, consistent snapshots, published views.
    let registry = Registry::new();
    let by_route =
        registry.counter_family("http_requests_total", "Requests served", &["route", "code"])?;
    let duration = registry
        .describe("http_request_duration_nanoseconds", "Request latency")
        .unit("nanoseconds")
        .histogram_family(&["route"])?;
    let refresher = registry.spawn_refresher(Duration::from_millis(100))?;

    let registry_workers: Vec<_> = (0..4u64)
        .map(|t| {
            let (by_route, duration) = (by_route.clone(), duration.clone());
            thread::spawn(move || -> Result<(), weir::RegistryError> {
                // Look the series up once; the hot loop then only touches the handles.
                let ok = by_route.with(&["/users", "200"])?;
                let err = by_route.with(&["/users", "500"])?;
                let users = duration.with(&["/users"])?;
                for i in 0..100_000u64 {
                    if (i + t) % 50 == 0 {
                        err.inc()
                    } else {
                        ok.inc()
                    }
                    users.record(200_000 + i % 1_000);
                }
                Ok(())
            })
        })
        .collect();
    for w in registry_workers {
        w.join().map_err(|_| "worker panicked")??;
    }

    registry.refresh_now();
    let published = registry.published();
    let ok = published
        .counter("http_requests_total", &["/users", "200"])
        .unwrap_or(0);
    let err = published
        .counter("http_requests_total", &["/users", "500"])
        .unwrap_or(0);
    println!("published #{}: {ok} ok, {err} errors", published.sequence());
    let window = published.window(Duration::from_secs(60));
    if let Some(h) = window.histogram("http_request_duration_nanoseconds", &["/users"]) {
        println!(
            "last {:?} (history so far {:?}): {} requests, p99 {} ns",
            Duration::from_secs(60),
            window.span(),
            h.count(),
            h.value_at_quantile(0.99)
        );
    }
    drop(refresher); // stops and joins the background thread
    Ok(())
}
