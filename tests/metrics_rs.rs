//! The `metrics` facade recorder (feature `metrics-rs`), driven through the real `metrics`
//! macros and checked in `Registry::snapshot()`.
//!
//! Every test records through `metrics::with_local_recorder`, so tests never share a recorder;
//! only `install_sets_the_global_recorder` touches the global one, and no other test records
//! outside a local recorder.

use std::sync::Arc;
use std::thread;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
    with_local_recorder,
};
use weir::export::metrics_rs::{
    InstallError, MetricsRecorder, REJECTED_METRIC, ScaleError, install, sanitize_label_name,
    sanitize_metric_name,
};
use weir::export::prometheus::{self, RenderOptions};
use weir::{Registry, RegistrySnapshot};

fn rejected(snap: &RegistrySnapshot, reason: &str) -> u64 {
    snap.counter(REJECTED_METRIC, &[reason])
        .expect("rejected counter registered")
}

#[test]
fn counters_with_labels() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        counter!("http.requests", "method" => "GET", "code" => "200").increment(3);
        counter!("http.requests", "method" => "GET", "code" => "200").increment(1);
        // Same label names in another order: the same family, values mapped by name.
        counter!("http.requests", "code" => "500", "method" => "POST").increment(2);
        let method = String::from("PUT");
        counter!("http.requests", "method" => method, "code" => "201").increment(5);
        counter!("plain").increment(7);
    });
    let snap = registry.snapshot();
    let fam = snap.family("http_requests").expect("family");
    let names: Vec<&str> = fam.label_names.iter().map(|n| &**n).collect();
    assert_eq!(names, ["method", "code"]);
    assert_eq!(snap.counter("http_requests", &["GET", "200"]), Some(4));
    assert_eq!(snap.counter("http_requests", &["POST", "500"]), Some(2));
    assert_eq!(snap.counter("http_requests", &["PUT", "201"]), Some(5));
    assert_eq!(snap.counter("plain", &[]), Some(7));
}

#[test]
fn counter_absolute_never_lowers() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        let c = counter!("mirrored");
        c.absolute(10);
        c.absolute(4);
        c.increment(1);
        c.absolute(20);
    });
    assert_eq!(registry.snapshot().counter("mirrored", &[]), Some(20));
}

#[test]
fn gauges_are_float_gauges() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        gauge!("queue.depth", "queue" => "a").set(10.0);
        gauge!("queue.depth", "queue" => "a").increment(2.5);
        gauge!("queue.depth", "queue" => "a").decrement(0.5);
        gauge!("queue.depth", "queue" => "b").decrement(3);
    });
    let snap = registry.snapshot();
    assert_eq!(snap.float_gauge("queue_depth", &["a"]), Some(12.0));
    assert_eq!(snap.float_gauge("queue_depth", &["b"]), Some(-3.0));
}

#[test]
fn histograms_record_integral_values_as_given() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        let h = histogram!("payload.bytes", "route" => "/upload");
        h.record(100.0);
        h.record(1500);
        h.record(2.4); // rounds to 2
        h.record(2.5); // rounds to 3
        h.record_many(7.0, 4);
    });
    let snap = registry.snapshot();
    let h = snap
        .histogram("payload_bytes", &["/upload"])
        .expect("histogram");
    assert_eq!(h.count(), 8);
    assert_eq!(h.sum(), 100 + 1500 + 2 + 3 + 4 * 7);
    assert_eq!(h.min(), 2);
    assert_eq!(h.max(), 1500);
    assert_eq!(rejected(&snap, "negative"), 0);
}

#[test]
fn bad_histogram_values_are_counted_not_recorded() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        let h = histogram!("values");
        h.record(-1.0);
        h.record(f64::NEG_INFINITY);
        h.record_many(-0.5, 3);
        h.record(f64::NAN);
        h.record(f64::INFINITY);
        h.record(-0.0); // zero, not negative
        h.record(1e30); // beyond the layout: clamped and counted as saturated
    });
    let snap = registry.snapshot();
    let h = snap.histogram("values", &[]).expect("histogram");
    assert_eq!(h.count(), 2);
    assert_eq!(h.saturated(), 1);
    assert_eq!(rejected(&snap, "negative"), 5);
    assert_eq!(rejected(&snap, "nan"), 1);
    assert_eq!(rejected(&snap, "infinite"), 1);
    assert_eq!(rejected(&snap, "conflict"), 0);
}

#[test]
fn descriptions_before_registration_become_help_and_unit() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        describe_counter!("sent_bytes_total", Unit::Bytes, "Bytes sent");
        describe_gauge!("temperature", "Current temperature");
        describe_histogram!("request.latency_seconds", Unit::Seconds, "Request latency");
        describe_counter!("items", Unit::Count, "Items");
        counter!("sent_bytes_total").increment(512);
        gauge!("temperature").set(21.5);
        histogram!("request.latency_seconds").record(0.25);
        counter!("items").increment(1);
        // Described after registration: kept for families created later, so ignored here.
        describe_counter!("items", "Items, described late");
        counter!("items").increment(1);
    });
    let snap = registry.snapshot();
    let sent = snap.family("sent_bytes_total").expect("counter");
    assert_eq!(&*sent.help, "Bytes sent");
    assert_eq!(sent.unit.as_deref(), Some("bytes"));
    assert_eq!(
        &*snap.family("temperature").expect("gauge").help,
        "Current temperature"
    );
    let lat = snap.family("request_latency_seconds").expect("histogram");
    assert_eq!(&*lat.help, "Request latency");
    assert_eq!(lat.unit.as_deref(), Some("seconds"));
    // Seconds are kept as nanoseconds.
    let h = snap
        .histogram("request_latency_seconds", &[])
        .expect("histogram");
    assert_eq!(h.count(), 1);
    assert_eq!(h.sum(), 250_000_000);
    assert_eq!(
        recorder.histogram_scale("request_latency_seconds"),
        Some(1e9)
    );
    let items = snap.family("items").expect("counter");
    assert_eq!(&*items.help, "Items");
    assert_eq!(items.unit, None);
    assert_eq!(snap.counter("items", &[]), Some(2));
    // A unit the name does not carry is ignored (and the time scale still applies).
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        describe_histogram!("rpc.time", Unit::Milliseconds, "RPC time");
        histogram!("rpc.time").record(1.5);
    });
    let snap = registry.snapshot();
    assert_eq!(snap.family("rpc_time").expect("histogram").unit, None);
    assert_eq!(
        snap.histogram("rpc_time", &[]).map(|h| h.sum()),
        Some(1_500_000)
    );
}

#[test]
fn builder_scales() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::builder(&registry)
        .histogram_scale(10.0)
        .expect("scale")
        .histogram_scale_for("db.query", 1e6)
        .expect("scale")
        .time_units_as_nanoseconds(false)
        .build();
    with_local_recorder(&recorder, || {
        describe_histogram!("wait_seconds", Unit::Seconds, "Wait");
        histogram!("wait_seconds").record(1.5);
        histogram!("db.query").record(0.002);
        histogram!("other").record(0.44);
    });
    let snap = registry.snapshot();
    assert_eq!(
        snap.histogram("wait_seconds", &[]).map(|h| h.sum()),
        Some(15)
    );
    assert_eq!(
        snap.histogram("db_query", &[]).map(|h| h.sum()),
        Some(2_000)
    );
    assert_eq!(snap.histogram("other", &[]).map(|h| h.sum()), Some(4));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            MetricsRecorder::builder(&registry).histogram_scale(bad),
            Err(ScaleError::NotPositiveFinite { .. })
        ));
        assert!(
            MetricsRecorder::builder(&registry)
                .histogram_scale_for("x", bad)
                .is_err()
        );
    }
    let bad_layout = weir::Histogram::builder().significant_digits(9);
    assert!(
        MetricsRecorder::builder(&registry)
            .histogram_layout(bad_layout)
            .is_err()
    );
}

#[test]
fn custom_histogram_layout() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::builder(&registry)
        .histogram_layout(
            weir::Histogram::builder()
                .significant_digits(2)
                .highest(1_000),
        )
        .expect("layout")
        .build();
    with_local_recorder(&recorder, || {
        histogram!("small").record(10.0);
        histogram!("small").record(5_000.0);
    });
    let snap = registry.snapshot();
    let h = snap.histogram("small", &[]).expect("histogram");
    assert_eq!(h.significant_digits(), 2);
    assert_eq!(h.count(), 2);
    assert_eq!(h.saturated(), 1);
}

#[test]
fn names_and_labels_are_sanitized() {
    assert_eq!(
        sanitize_metric_name("http.server.requests"),
        "http_server_requests"
    );
    assert_eq!(sanitize_label_name("http.route"), "http_route");
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        counter!("2xx-responses", "http.route" => "/a", "le" => "x").increment(1);
        histogram!("size", "le" => "1", "quantile" => "2").record(3.0);
        counter!("dup", "a" => "1", "a" => "2").increment(1);
    });
    let snap = registry.snapshot();
    let fam = snap.family("_2xx_responses").expect("family");
    let names: Vec<&str> = fam.label_names.iter().map(|n| &**n).collect();
    assert_eq!(names, ["http_route", "le_"]);
    assert_eq!(snap.counter("_2xx_responses", &["/a", "x"]), Some(1));
    let size = snap.family("size").expect("family");
    let names: Vec<&str> = size.label_names.iter().map(|n| &**n).collect();
    assert_eq!(names, ["le_", "quantile_"]);
    let dup = snap.family("dup").expect("family");
    let names: Vec<&str> = dup.label_names.iter().map(|n| &**n).collect();
    assert_eq!(names, ["a", "a_2"]);
    assert_eq!(snap.counter("dup", &["1", "2"]), Some(1));
}

#[test]
fn label_name_conflicts_fall_back_to_per_label_set_families() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        counter!("jobs", "queue" => "a").increment(1);
        counter!("jobs").increment(2);
        counter!("jobs", "queue" => "a", "kind" => "x").increment(3);
        counter!("jobs", "kind" => "x", "queue" => "b").increment(4);
        // Same name as another kind.
        gauge!("jobs", "queue" => "a").set(5.0);
        counter!("jobs", "queue" => "a").increment(1);
    });
    let snap = registry.snapshot();
    assert_eq!(snap.counter("jobs", &["a"]), Some(2));
    assert_eq!(snap.counter("jobs_unlabeled", &[]), Some(2));
    // The fallback takes the label names in the order the first such key gave them.
    assert_eq!(snap.counter("jobs_by_kind_queue", &["a", "x"]), Some(3));
    assert_eq!(snap.counter("jobs_by_kind_queue", &["b", "x"]), Some(4));
    assert_eq!(snap.float_gauge("jobs_gauge", &["a"]), Some(5.0));
    assert_eq!(rejected(&snap, "conflict"), 0);
}

#[test]
fn unresolvable_conflicts_drop_and_count_updates() {
    let registry = Registry::new();
    registry
        .counter_family("taken", "", &["a"])
        .expect("register");
    registry
        .gauge("taken_unlabeled", "", &[])
        .expect("register");
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        let c = counter!("taken");
        c.increment(10);
        c.increment(10);
        c.absolute(99);
        gauge!("taken").set(1.0);
        histogram!("taken").record_many(1.0, 5);
    });
    let snap = registry.snapshot();
    // The counter's fallback `taken_unlabeled` is a gauge: its two increments and one
    // absolute are dropped. The gauge and histogram go to their per-kind fallbacks.
    assert_eq!(rejected(&snap, "conflict"), 3);
    assert_eq!(snap.gauge("taken_unlabeled", &[]), Some(0));
    assert_eq!(snap.float_gauge("taken_gauge", &[]), Some(1.0));
    assert_eq!(
        snap.histogram("taken_histogram", &[]).map(|h| h.count()),
        Some(5)
    );
}

#[test]
fn families_registered_directly_are_shared() {
    let registry = Registry::new();
    let direct = registry
        .describe("latency_seconds", "Latency (direct)")
        .unit("seconds")
        .histogram_family(&["route"])
        .expect("register");
    direct.with(&["/a"]).expect("series").record(1_000);
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        describe_histogram!("latency_seconds", Unit::Seconds, "Latency (facade)");
        histogram!("latency_seconds", "route" => "/a").record(0.000002);
    });
    let snap = registry.snapshot();
    let fam = snap.family("latency_seconds").expect("family");
    assert_eq!(&*fam.help, "Latency (direct)");
    let h = snap.histogram("latency_seconds", &["/a"]).expect("series");
    assert_eq!(h.count(), 2);
    assert_eq!(h.sum(), 3_000);
}

#[test]
fn threads_record_exactly() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(&registry);
    let threads = 4;
    let per_thread = 10_000u64;
    thread::scope(|s| {
        for t in 0..threads {
            let recorder = &recorder;
            s.spawn(move || {
                with_local_recorder(recorder, || {
                    let held = counter!("held");
                    for i in 0..per_thread {
                        counter!("ops", "thread" => (t % 2).to_string()).increment(1);
                        held.increment(2);
                        histogram!("lat").record((i % 100) as f64);
                        gauge!("level").increment(1.0);
                    }
                });
            });
        }
    });
    let snap = registry.snapshot();
    let total = threads as u64 * per_thread;
    assert_eq!(
        snap.counter("ops", &["0"]).unwrap_or(0) + snap.counter("ops", &["1"]).unwrap_or(0),
        total
    );
    assert_eq!(snap.counter("held", &[]), Some(2 * total));
    assert_eq!(snap.histogram("lat", &[]).map(|h| h.count()), Some(total));
    assert_eq!(snap.float_gauge("level", &[]), Some(total as f64));
}

#[test]
fn handles_move_between_threads() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(&registry);
    let handle = with_local_recorder(&recorder, || counter!("moved"));
    let handle = Arc::new(handle);
    thread::scope(|s| {
        for _ in 0..3 {
            let handle = handle.clone();
            s.spawn(move || handle.increment(5));
        }
    });
    assert_eq!(registry.snapshot().counter("moved", &[]), Some(15));
}

#[test]
fn many_keys_overflow_the_thread_cache_without_losing_counts() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        for round in 0..2 {
            for i in 0..5_000 {
                counter!("keys", "id" => i.to_string()).increment(round + 1);
            }
        }
    });
    let snap = registry.snapshot();
    let fam = snap.family("keys").expect("family");
    assert_eq!(fam.series.len(), 5_000);
    assert_eq!(snap.counter("keys", &["0"]), Some(3));
    assert_eq!(snap.counter("keys", &["4999"]), Some(3));
}

#[test]
fn cardinality_limit_applies() {
    let registry = Registry::builder().cardinality_limit(2).build();
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        for i in 0..5 {
            counter!("limited", "id" => i.to_string()).increment(1);
        }
    });
    let snap = registry.snapshot();
    assert_eq!(snap.counter("limited", &["0"]), Some(1));
    assert_eq!(snap.counter("limited", &["1"]), Some(1));
    assert_eq!(
        snap.counter("limited", &[weir::registry::OVERFLOW_LABEL_VALUE]),
        Some(3)
    );
}

#[test]
fn recorders_do_not_share_thread_caches() {
    let first = Registry::new();
    let second = Registry::new();
    let a = MetricsRecorder::new(&first);
    let b = MetricsRecorder::new(&second);
    for _ in 0..3 {
        with_local_recorder(&a, || counter!("same").increment(1));
        with_local_recorder(&b, || counter!("same").increment(10));
    }
    // A clone shares the recorder.
    let a2 = a.clone();
    with_local_recorder(&a2, || counter!("same").increment(100));
    assert_eq!(first.snapshot().counter("same", &[]), Some(103));
    assert_eq!(second.snapshot().counter("same", &[]), Some(30));
    // A dropped recorder's cache entries are pruned when another recorder arrives; new
    // recorders on the same registry find the same series.
    drop((a, a2, b));
    for _ in 0..3 {
        let r = MetricsRecorder::new(&first);
        with_local_recorder(&r, || counter!("same").increment(1));
    }
    assert_eq!(first.snapshot().counter("same", &[]), Some(106));
}

#[test]
fn render_options_export_facade_units() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(&registry);
    with_local_recorder(&recorder, || {
        describe_histogram!("job_duration_seconds", Unit::Seconds, "Job duration");
        histogram!("job_duration_seconds").record(0.5);
        histogram!("job_duration_seconds").record(1.5);
        histogram!("unscaled").record(3.0);
        counter!("jobs_total").increment(2);
    });
    let options = recorder.render_options(
        RenderOptions::new()
            .buckets("job_duration_seconds", vec![1_000_000_000])
            .expect("buckets"),
    );
    let text = prometheus::render_with(&registry.snapshot(), &options);
    assert!(
        text.contains("job_duration_seconds_bucket{le=\"1\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("job_duration_seconds_sum 2\n"), "{text}");
    assert!(text.contains("unscaled_sum 3\n"), "{text}");
    assert!(text.contains("jobs_total 2\n"), "{text}");
    assert!(
        text.contains("weir_metrics_rs_rejected_total{reason=\"nan\"} 0\n"),
        "{text}"
    );
    let om = prometheus::render_openmetrics_with(&registry.snapshot(), &options);
    assert!(om.contains("# UNIT job_duration_seconds seconds\n"), "{om}");
}

#[test]
fn install_sets_the_global_recorder() {
    let registry = Registry::new();
    install(&registry).expect("first install");
    assert_eq!(
        MetricsRecorder::new(&Registry::new()).install(),
        Err(InstallError::AlreadyInstalled)
    );
    assert!(
        MetricsRecorder::builder(&Registry::new())
            .install()
            .is_err()
    );
    // A fresh thread has no local recorder: the macros reach the global one.
    thread::spawn(|| counter!("global.hits").increment(4))
        .join()
        .expect("thread");
    assert_eq!(registry.snapshot().counter("global_hits", &[]), Some(4));
}
