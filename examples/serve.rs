//! Serves a registry with a few live metrics at `http://<addr>/metrics` (feature `http`).
//!
//! ```sh
//! cargo run --release --features http --example serve                      # until Ctrl-C
//! cargo run --release --features http --example serve -- --seconds 30 --addr 127.0.0.1:9898
//! curl -s http://127.0.0.1:9898/metrics                                     # text 0.0.4
//! curl -s -H 'Accept: application/openmetrics-text' http://127.0.0.1:9898/metrics
//! ```
//!
//! `--addr` defaults to `127.0.0.1:9898` (use port 0 for any free port; the URL is printed).
//! Without `--seconds` it serves until interrupted; Ctrl-C ends the process, and the operating
//! system closes the socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use weir::Registry;
use weir::export::http::Server;
use weir::export::prometheus::RenderOptions;

struct Args {
    addr: String,
    seconds: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:9898".to_owned(),
        seconds: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value()?,
            "--seconds" => {
                let v = value()?;
                args.seconds = Some(v.parse().map_err(|_| format!("bad --seconds {v:?}"))?);
            }
            "-h" | "--help" => {
                return Err("usage: serve [--addr HOST:PORT] [--seconds N]".to_owned());
            }
            other => return Err(format!("unknown flag {other:?} (try --help)")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;

    let registry = Registry::new();
    let requests =
        registry.counter_family("http_requests_total", "Requests served", &["route", "code"])?;
    let duration = registry
        .describe("http_request_duration_seconds", "Request latency")
        .unit("seconds")
        .histogram_family(&["route"])?;
    let breaker = registry.gauge_family(
        "circuit_breaker_state",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open",
        &["name"],
    )?;
    let in_flight = registry.gauge("http_requests_in_flight", "Requests being served", &[])?;

    // Refresh the published view every second; the server serves that view.
    let _refresher = registry.spawn_refresher(Duration::from_secs(1))?;
    let server = Server::builder(&registry)
        .render_options(
            // Durations are recorded in nanoseconds and exported in seconds.
            RenderOptions::new()
                .buckets(
                    "http_request_duration_seconds",
                    vec![
                        1_000_000,
                        2_500_000,
                        5_000_000,
                        10_000_000,
                        25_000_000,
                        50_000_000,
                        100_000_000,
                    ],
                )?
                .scale("http_request_duration_seconds", 1e-9)?,
        )
        .bind(args.addr.as_str())?;
    println!("serving {}", server.url());
    match args.seconds {
        Some(s) => println!("for {s} s"),
        None => println!("until Ctrl-C"),
    }

    // A simulated workload: two routes, some errors, a breaker that opens now and then.
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        thread::spawn(move || -> Result<(), weir::RegistryError> {
            let routes = ["/users", "/orders"];
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // xorshift: a cheap, deterministic stream of pseudo-random numbers.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let route = routes[(x % 2) as usize];
                let code = if x % 100 < 3 { "500" } else { "200" };
                in_flight.add(1);
                requests.with(&[route, code])?.inc();
                duration
                    .with(&[route])?
                    .record(500_000 + (x >> 8) % 40_000_000);
                in_flight.add(-1);
                tick += 1;
                breaker
                    .with(&["payments"])?
                    .set(if tick % 20_000 < 1_000 { 2 } else { 0 });
                thread::sleep(Duration::from_micros(500));
            }
            Ok(())
        })
    };

    let started = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(200));
        if args
            .seconds
            .is_some_and(|s| started.elapsed() >= Duration::from_secs(s))
        {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().map_err(|_| "worker panicked")??;
    server.shutdown();
    println!("stopped");
    Ok(())
}
