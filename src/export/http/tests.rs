use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::ManualClock;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Sends one request with `Connection: close` and reads the reply to the end.
fn request(server: &Server, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = connect(server);
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse(&String::from_utf8(raw).unwrap())
}

fn parse(raw: &str) -> Reply {
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn get(server: &Server) -> Reply {
    request(server, "GET", "/metrics", &[])
}

fn registry_with_counter(value: u64) -> Registry {
    let registry = Registry::new();
    registry
        .counter("jobs_total", "Jobs run", &[("queue", "a")])
        .unwrap()
        .add(value);
    registry
}

#[test]
fn serves_the_published_snapshot_in_text_format() {
    let registry = registry_with_counter(3);
    let server = serve("127.0.0.1:0", &registry).unwrap();
    assert_ne!(server.local_addr().port(), 0);
    assert_eq!(
        server.url(),
        format!("http://127.0.0.1:{}/metrics", server.local_addr().port())
    );

    // Not refreshed yet: the published view is the empty one.
    let reply = get(&server);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some(TEXT_CONTENT_TYPE));
    assert_eq!(reply.body, "");

    registry.refresh_now();
    let reply = get(&server);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, prometheus::render(&registry.published()));
    assert!(reply.body.contains("jobs_total{queue=\"a\"} 3\n"));
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );

    // A write after the refresh is not seen until the next refresh.
    registry
        .counter("jobs_total", "Jobs run", &[("queue", "a")])
        .unwrap()
        .add(1);
    assert!(get(&server).body.contains("jobs_total{queue=\"a\"} 3\n"));
    registry.refresh_now();
    assert!(get(&server).body.contains("jobs_total{queue=\"a\"} 4\n"));
}

#[test]
fn negotiates_openmetrics() {
    let registry = registry_with_counter(5);
    registry.refresh_now();
    let server = serve("127.0.0.1:0", &registry).unwrap();
    // What Prometheus 2.x/3.x sends (abridged).
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,\
        application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let reply = request(&server, "GET", "/metrics", &[("Accept", prometheus_accept)]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some(OPENMETRICS_CONTENT_TYPE));
    assert_eq!(
        reply.body,
        prometheus::render_openmetrics(&registry.published())
    );
    assert!(reply.body.ends_with("# EOF\n"));

    let reply = request(&server, "GET", "/metrics", &[("Accept", "*/*")]);
    assert_eq!(reply.header("content-type"), Some(TEXT_CONTENT_TYPE));
    assert!(!reply.body.contains("# EOF"));
}

#[test]
fn accept_header_ranking() {
    let om = |headers: &[&str]| wants_openmetrics(headers.iter().copied());
    assert!(!om(&[]));
    assert!(!om(&["*/*"]));
    assert!(!om(&["text/plain"]));
    assert!(!om(&["text/plain;version=0.0.4"]));
    assert!(om(&["application/openmetrics-text"]));
    assert!(om(&["Application/OpenMetrics-Text; version=1.0.0"]));
    assert!(om(&["application/openmetrics-text;version=0.0.1"]));
    assert!(om(&[
        "application/openmetrics-text;version=1.0.0;q=0.9, text/plain;q=0.5"
    ]));
    assert!(!om(&[
        "application/openmetrics-text;q=0.4, text/plain;version=0.0.4;q=0.5"
    ]));
    assert!(om(&["text/plain", "application/openmetrics-text"]));
    assert!(!om(&["application/openmetrics-text;q=0"]));
    assert!(!om(&["application/openmetrics-text;q=bogus"]));
    assert!(!om(&["application/openmetrics-text;q=2"]));
    assert!(!om(&["application/json, text/html"]));
}

#[test]
fn head_other_methods_and_paths() {
    let registry = registry_with_counter(1);
    registry.refresh_now();
    let server = serve("127.0.0.1:0", &registry).unwrap();
    let full = get(&server);

    let head = request(&server, "HEAD", "/metrics", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    assert_eq!(head.header("content-type"), Some(TEXT_CONTENT_TYPE));
    assert_eq!(
        head.header("content-length"),
        Some(full.body.len().to_string().as_str())
    );

    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let reply = request(&server, method, "/metrics", &[("Content-Length", "0")]);
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    }
    for path in ["/", "/metrics/", "/metricsx", "/other"] {
        assert_eq!(request(&server, "GET", path, &[]).status, 404, "{path}");
    }
    // The query string is ignored.
    assert_eq!(request(&server, "GET", "/metrics?x=1", &[]).body, full.body);
}

#[test]
fn render_options_pass_through() {
    let registry = Registry::new();
    let h = registry
        .describe("job_duration_seconds", "Job latency")
        .histogram_family(&[])
        .unwrap()
        .with(&[])
        .unwrap();
    h.record(1_500_000);
    registry.refresh_now();
    let options = RenderOptions::new()
        .buckets("job_duration_seconds", vec![1_000_000, 10_000_000])
        .unwrap()
        .scale("job_duration_seconds", 1e-9)
        .unwrap();
    let server = Server::builder(&registry)
        .render_options(options.clone())
        .bind("127.0.0.1:0")
        .unwrap();
    let body = get(&server).body;
    assert_eq!(
        body,
        prometheus::render_with(&registry.published(), &options)
    );
    assert!(body.contains("job_duration_seconds_bucket{le=\"0.001\"} 0\n"));
    assert!(body.contains("job_duration_seconds_bucket{le=\"0.01\"} 1\n"));
    assert!(body.contains("job_duration_seconds_sum 0.0015\n"));
}

#[test]
fn max_age_refreshes_on_scrape() {
    let clock = Arc::new(ManualClock::new());
    let registry = Registry::builder().clock(clock.clone()).build();
    let jobs = registry.counter("jobs_total", "Jobs run", &[]).unwrap();
    jobs.add(2);
    let server = Server::builder(&registry)
        .max_age(Duration::from_secs(10))
        .bind("127.0.0.1:0")
        .unwrap();

    // The published view (time 0) is not older than 10 s: served as is (empty).
    assert_eq!(get(&server).body, "");
    assert_eq!(registry.published().sequence(), 0);

    clock.advance(Duration::from_secs(11));
    assert!(get(&server).body.contains("jobs_total 2\n"));
    let refreshed = registry.published().sequence();
    assert_ne!(refreshed, 0, "the scrape published its refresh");

    // Fresh enough again: no refresh, the new write is not seen.
    jobs.add(1);
    clock.advance(Duration::from_secs(5));
    assert!(get(&server).body.contains("jobs_total 2\n"));
    assert_eq!(registry.published().sequence(), refreshed);

    clock.advance(Duration::from_secs(6));
    assert!(get(&server).body.contains("jobs_total 3\n"));
}

#[test]
fn max_age_zero_refreshes_every_scrape() {
    let registry = registry_with_counter(1);
    let server = Server::builder(&registry)
        .max_age(Duration::ZERO)
        .bind("127.0.0.1:0")
        .unwrap();
    assert!(get(&server).body.contains("jobs_total{queue=\"a\"} 1\n"));
    registry
        .counter("jobs_total", "Jobs run", &[("queue", "a")])
        .unwrap()
        .inc();
    assert!(get(&server).body.contains("jobs_total{queue=\"a\"} 2\n"));
}

#[test]
fn cache_serves_the_same_bytes_for_one_snapshot() {
    let registry = registry_with_counter(1);
    registry.refresh_now();
    let server = serve("127.0.0.1:0", &registry).unwrap();
    let a = get(&server).body;
    let b = get(&server).body;
    assert_eq!(a, b);
    let om = request(
        &server,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text")],
    );
    assert!(om.body.ends_with("# EOF\n"));
    // Text again after OpenMetrics: each format has its own cache slot.
    assert_eq!(get(&server).body, a);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let registry = registry_with_counter(1);
    registry.refresh_now();
    let server = serve("127.0.0.1:0", &registry).unwrap();
    let expected = prometheus::render(&registry.published());
    let mut stream = connect(&server);
    for _ in 0..3 {
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\n\r\n")
            .unwrap();
        let reply = read_one_reply(&mut stream);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, expected);
    }
}

/// Asserts that the server closed `stream` (end of file or reset) without sending anything.
fn assert_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{what}: got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            panic!("{what}: still open after {IO_TIMEOUT:?}")
        }
        Err(_) => {} // reset
    }
}

/// Reads one reply with a Content-Length body from a keep-alive connection.
fn read_one_reply(stream: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection closed early"
        );
        raw.push(byte[0]);
    }
    let head = parse(std::str::from_utf8(&raw).unwrap());
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    Reply {
        body: String::from_utf8(body).unwrap(),
        ..head
    }
}

#[test]
fn drop_closes_the_port_and_open_connections() {
    let registry = registry_with_counter(1);
    registry.refresh_now();
    let server = serve("127.0.0.1:0", &registry).unwrap();
    let addr = server.local_addr();

    // An idle keep-alive connection, after one request.
    let mut idle = connect(&server);
    idle.write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\n\r\n")
        .unwrap();
    assert_eq!(read_one_reply(&mut idle).status, 200);
    // A connection that has sent nothing yet.
    let mut silent = connect(&server);

    drop(server); // joins the server thread

    assert_closed(&mut idle, "idle connection");
    assert_closed(&mut silent, "silent connection");
    assert!(
        TcpStream::connect(addr).is_err(),
        "the port no longer accepts"
    );
    let _ = idle.shutdown(Shutdown::Both);
}

#[test]
fn shutdown_joins() {
    let registry = Registry::new();
    let server = serve("127.0.0.1:0", &registry).unwrap();
    let addr = server.local_addr();
    server.shutdown();
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn bind_errors_are_reported() {
    let registry = Registry::new();
    let first = serve("127.0.0.1:0", &registry).unwrap();
    let taken = first.local_addr();
    match serve(taken, &registry) {
        Err(ServeError::Bind { addr, source }) => {
            assert_eq!(addr, taken);
            assert_eq!(source.kind(), io::ErrorKind::AddrInUse);
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    // Not `host:port`: rejected without a name lookup.
    assert!(matches!(
        serve("not an address", &registry),
        Err(ServeError::Resolve(_))
    ));
    assert!(matches!(
        serve(&[][..] as &[SocketAddr], &registry),
        Err(ServeError::NoAddress)
    ));
    let e = serve(taken, &registry).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("could not bind {taken}: "))
    );
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn max_connections_closes_extra_connections() {
    let registry = registry_with_counter(1);
    registry.refresh_now();
    let server = Server::builder(&registry)
        .max_connections(1)
        .bind("127.0.0.1:0")
        .unwrap();
    // Hold the one allowed connection open (keep-alive) after a request, so the server has
    // certainly registered it.
    let mut held = connect(&server);
    held.write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\n\r\n")
        .unwrap();
    assert_eq!(read_one_reply(&mut held).status, 200);

    let mut extra = connect(&server);
    let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\n\r\n");
    assert_closed(&mut extra, "extra connection");

    // Once the held connection closes, new connections are served again.
    drop(held);
    let mut served = false;
    for _ in 0..100 {
        let mut s = connect(&server);
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n");
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        if raw.starts_with(b"HTTP/1.1 200") {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(served);
}

#[test]
fn header_read_timeout_closes_silent_connections() {
    let registry = Registry::new();
    let server = Server::builder(&registry)
        .header_read_timeout(Some(Duration::from_millis(200)))
        .bind("127.0.0.1:0")
        .unwrap();
    let mut silent = connect(&server);
    let mut buf = [0u8; 256];
    // hyper answers 408 or just closes; either way the connection ends well before IO_TIMEOUT.
    let mut raw = Vec::new();
    loop {
        match silent.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("still open after {IO_TIMEOUT:?}")
            }
            Err(_) => break, // reset
        }
    }
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[test]
fn starts_and_stops_inside_a_callers_tokio_runtime() {
    // A caller already inside a runtime (an async main) can bind and drop the server: the
    // server's runtime lives on its own thread.
    let caller = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let registry = registry_with_counter(1);
    registry.refresh_now();
    let body = caller.block_on(async {
        let server = serve("127.0.0.1:0", &registry).unwrap();
        let body = get(&server).body;
        drop(server);
        body
    });
    assert!(body.contains("jobs_total{queue=\"a\"} 1\n"));
}
