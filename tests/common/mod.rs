//! A registry holding every metric kind, awkward label values, units and an overflowed family,
//! shared by the export integration tests.
#![allow(dead_code)]

use weir::Registry;
use weir::export::prometheus::RenderOptions;

/// Label values that need escaping or are otherwise unusual.
pub(crate) const AWKWARD: &[&str] = &[
    "a\\\"b",
    "back\\slash",
    "new\nline",
    "caf\u{e9} \u{65e5}\u{672c} \u{1F600}",
    "",
    "{braces},comma=equals",
    "trailing\\",
    "\"quoted\"",
];

/// The histogram family recorded in nanoseconds and exported in seconds with chosen buckets.
pub(crate) const SECONDS_HISTOGRAM: &str = "http_request_duration_seconds";
/// Its boundaries, in nanoseconds.
pub(crate) const SECONDS_BOUNDARIES: &[u64] = &[
    1_000,
    5_000,
    10_000,
    50_000,
    100_000,
    500_000,
    1_000_000,
    5_000_000,
    10_000_000,
    100_000_000,
];
/// The histogram family exported as a summary.
pub(crate) const SUMMARY: &str = "job_duration_seconds";
/// Its quantiles.
pub(crate) const QUANTILES: &[f64] = &[0.5, 0.9, 0.99, 0.999];
/// The family with a cardinality limit of 2 that overflows.
pub(crate) const OVERFLOWED: &str = "tenant_requests_total";

/// The fixture registry and the options it is rendered with.
pub(crate) fn fixture() -> (Registry, RenderOptions) {
    let registry = Registry::new();

    let requests = registry
        .counter_family(
            "http_requests_total",
            "Requests served, by path",
            &["method", "path"],
        )
        .unwrap();
    for (i, path) in AWKWARD.iter().enumerate() {
        requests.with(&["GET", path]).unwrap().add(i as u64 + 1);
    }
    requests.with(&["POST", "/"]).unwrap().add(u64::MAX);

    registry
        .describe(
            "sent_bytes_total",
            "Bytes sent \\ with \"quotes\"\nand a second line",
        )
        .unit("bytes")
        .counter_family(&[])
        .unwrap()
        .with(&[])
        .unwrap()
        .add(123_456_789);

    let depth = registry
        .gauge_family("queue_depth", "Jobs waiting", &["queue"])
        .unwrap();
    depth.with(&["fast"]).unwrap().set(-3);
    depth.with(&["slow"]).unwrap().set(i64::MAX);

    let temperature = registry
        .describe("room_temperature_celsius", "Temperature")
        .unit("celsius")
        .float_gauge_family(&["room"])
        .unwrap();
    for (room, v) in [
        ("cold", -12.5),
        ("hot", 1e300),
        ("tiny", 1.5e-7),
        ("nan", f64::NAN),
        ("inf", f64::INFINITY),
        ("minus_inf", f64::NEG_INFINITY),
    ] {
        temperature.with(&[room]).unwrap().set(v);
    }

    registry
        .gauge_family("idle_connections", "Registered, never set", &["pool"])
        .unwrap();

    let latency = registry
        .describe(SECONDS_HISTOGRAM, "Request latency")
        .unit("seconds")
        .histogram_family(&["route"])
        .unwrap();
    let users = latency.with(&["/users"]).unwrap();
    for i in 0..1_000u64 {
        users.record(1_000 + i * 7_919); // 1 µs .. ~7.9 ms
    }
    users.record(5_000); // exactly on a boundary
    users.record(u64::MAX); // saturated into the top bucket
    latency.with(&[AWKWARD[0]]).unwrap().record(42_000);
    latency.with(&["empty"]).unwrap();

    let sizes = registry
        .histogram_family(
            "response_size_bytes",
            "Response sizes (default buckets)",
            &[],
        )
        .unwrap()
        .with(&[])
        .unwrap();
    for v in [0, 1, 2, 100, 1_000, 65_536, 1 << 30] {
        sizes.record(v);
    }

    let jobs = registry
        .describe(SUMMARY, "Job latency as a summary")
        .unit("seconds")
        .histogram_family(&["kind"])
        .unwrap();
    let batch = jobs.with(&["batch"]).unwrap();
    for i in 1..=500u64 {
        batch.record(i * 2_000_000);
    }
    jobs.with(&["never"]).unwrap();

    let tenants = registry
        .describe(OVERFLOWED, "Requests by tenant")
        .cardinality_limit(2)
        .counter_family(&["tenant", "region"])
        .unwrap();
    for (i, tenant) in ["t1", "t2", "t3", "t4", "t5"].iter().enumerate() {
        tenants.with(&[tenant, "eu"]).unwrap().add(i as u64 + 1);
    }

    let options = RenderOptions::new()
        .buckets(SECONDS_HISTOGRAM, SECONDS_BOUNDARIES.to_vec())
        .unwrap()
        .scale(SECONDS_HISTOGRAM, 1e-9)
        .unwrap()
        .summary(SUMMARY, QUANTILES.to_vec())
        .unwrap()
        .scale(SUMMARY, 1e-9)
        .unwrap();
    (registry, options)
}
