//! A real Prometheus server scrapes weir's endpoint (feature `http`).
//!
//! Starts `prometheus` on loopback with a temporary config that scrapes the endpoint every
//! second and a temporary storage directory, then asks Prometheus' query API until the weir
//! counter's value appears (at most 60 s), changes the counter and waits for the new value.
//! Prometheus asks for OpenMetrics first, so this checks the OpenMetrics output end to end.
//!
//! Needs the `prometheus` binary: `apt-get update && apt-get install -y prometheus` (Debian and
//! Ubuntu; the test runs the binary directly and does not use the package's service), or set
//! `PROMETHEUS=/path/to/prometheus`. Set `WEIR_SKIP_PROMETHEUS=1` to skip it where it cannot be
//! installed.
//!
//! Run it with `cargo test --features http --test prometheus_server` (or `--all-features`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir::Registry;
use weir::export::http::Server;
use weir::export::prometheus::RenderOptions;

const INSTALL: &str = "install it with `apt-get update && apt-get install -y prometheus` \
     (Debian/Ubuntu), or set PROMETHEUS=/path/to/prometheus; set WEIR_SKIP_PROMETHEUS=1 to skip \
     this test";

/// How long to wait for Prometheus to start, scrape and answer with a value.
const DEADLINE: Duration = Duration::from_secs(60);

/// A running Prometheus and its temporary directory: killed and removed on drop, panics
/// included.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

fn prometheus_binary() -> Option<std::ffi::OsString> {
    if std::env::var_os("WEIR_SKIP_PROMETHEUS").is_some_and(|v| v == "1") {
        eprintln!("WEIR_SKIP_PROMETHEUS=1: skipped the Prometheus server test");
        return None;
    }
    Some(std::env::var_os("PROMETHEUS").unwrap_or_else(|| "prometheus".into()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts Prometheus scraping `target` every second, on a free loopback port.
fn start_prometheus(binary: &std::ffi::OsStr, target: SocketAddr) -> Prometheus {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("weir-prometheus-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: weir\n    static_configs:\n      - targets: ['{target}']\n"
    );
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    // The port is free now; another process could take it before Prometheus binds it, which
    // shows as Prometheus exiting early (see `query`).
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn();
    match child {
        Ok(child) => Prometheus { child, dir, addr },
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!("the Prometheus server ({binary:?}) is not installed: {INSTALL}");
            }
            panic!("could not run {binary:?}: {e}");
        }
    }
}

/// Percent-encodes a PromQL expression for a query string.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One `GET` over HTTP/1.0 (so the answer is not chunked); the body, or `None` if Prometheus is
/// not answering yet.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_owned())
}

/// Asks Prometheus for `query` until a sample with value `want` appears; returns the last
/// answer. Panics if Prometheus exits or the deadline passes.
fn wait_for_value(prom: &mut Prometheus, query: &str, want: &str, deadline: Instant) -> String {
    let path = format!("/api/v1/query?query={}", encode(query));
    // A sample in the instant-vector answer: `"value":[<time>,"<value>"]`.
    let needle = format!(",\"{want}\"]");
    let mut last = String::new();
    loop {
        if let Ok(Some(status)) = prom.child.try_wait() {
            panic!(
                "prometheus exited early ({status}); its log:\n{}",
                prom.log()
            );
        }
        if let Some(body) = http_get(prom.addr, &path) {
            if body.contains("\"status\":\"success\"") && body.contains(&needle) {
                return body;
            }
            last = body;
        }
        assert!(
            Instant::now() < deadline,
            "no sample {query} = {want} from Prometheus within {DEADLINE:?}; last answer: {last}\n\
             prometheus log:\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn prometheus_scrapes_the_endpoint() {
    let Some(binary) = prometheus_binary() else {
        return;
    };

    let registry = Registry::new();
    let requests = registry
        .counter_family("weir_it_requests_total", "Requests served", &["route"])
        .unwrap();
    requests.with(&["/users"]).unwrap().add(42);
    let latency = registry
        .describe("weir_it_latency_seconds", "Request latency")
        .unit("seconds")
        .histogram_family(&[])
        .unwrap()
        .with(&[])
        .unwrap();
    latency.record(3_000_000); // 3 ms, in nanoseconds
    let _refresher = registry
        .spawn_refresher(Duration::from_millis(200))
        .unwrap();
    let server = Server::builder(&registry)
        .render_options(
            RenderOptions::new()
                .buckets("weir_it_latency_seconds", vec![1_000_000, 10_000_000])
                .unwrap()
                .scale("weir_it_latency_seconds", 1e-9)
                .unwrap(),
        )
        .bind("127.0.0.1:0")
        .unwrap();

    let mut prom = start_prometheus(&binary, server.local_addr());
    let deadline = Instant::now() + DEADLINE;

    let answer = wait_for_value(&mut prom, "weir_it_requests_total", "42", deadline);
    assert!(answer.contains("\"route\":\"/users\""), "{answer}");
    assert!(answer.contains("\"job\":\"weir\""), "{answer}");

    // The histogram arrives with the scaled boundaries, cumulative.
    wait_for_value(
        &mut prom,
        "weir_it_latency_seconds_bucket{le=\"0.01\"}",
        "1",
        deadline,
    );
    wait_for_value(
        &mut prom,
        "weir_it_latency_seconds_bucket{le=\"0.001\"}",
        "0",
        deadline,
    );

    // A live change reaches Prometheus through the refresher and the next scrape.
    requests.with(&["/users"]).unwrap().add(8);
    wait_for_value(&mut prom, "weir_it_requests_total", "50", deadline);

    drop(prom); // kill Prometheus before the endpoint goes away
    drop(server);
}
