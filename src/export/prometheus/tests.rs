use super::*;
use crate::{Bucket, Histogram, Registry};

fn text(f: impl FnOnce(&mut String, f64), v: f64) -> String {
    let mut s = String::new();
    f(&mut s, v);
    s
}

fn label_number(v: f64, format: Format) -> String {
    let mut s = String::new();
    push_label_number(&mut s, v, format);
    s
}

// === numbers ===

#[test]
fn go_g_matches_go() {
    // Outputs of Go's strconv.FormatFloat(v, 'g', -1, 64).
    let cases: &[(f64, &str)] = &[
        (1.0, "1"),
        (-1.0, "-1"),
        (0.5, "0.5"),
        (0.001, "0.001"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (1e-10, "1e-10"),
        (123456.0, "123456"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (1e10, "1e+10"),
        (1.1e23, "1.1e+23"),
        (1e100, "1e+100"),
        (-2.5e-300, "-2.5e-300"),
        (0.1 + 0.2, "0.30000000000000004"),
        (f64::MAX, "1.7976931348623157e+308"),
        (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
        (5e-324, "5e-324"),
        (12.5, "12.5"),
        (99999.5, "99999.5"),
    ];
    for &(v, want) in cases {
        assert_eq!(text(push_go_g, v), want, "{v:?}");
    }
}

#[test]
fn sample_values() {
    let cases: &[(f64, &str)] = &[
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (0.0, "0"),
        (-0.0, "0"),
        (1e6, "1000000"),
        (-42.0, "-42"),
        (9_007_199_254_740_991.0, "9007199254740991"),
        (9_007_199_254_740_992.0, "9.007199254740992e+15"),
        (1e20, "1e+20"),
        (0.25, "0.25"),
        (1e-9, "1e-09"),
    ];
    for &(v, want) in cases {
        assert_eq!(text(push_value, v), want, "{v:?}");
    }
}

#[test]
fn values_round_trip() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        // xorshift over all bit patterns, finite ones only.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = f64::from_bits(x);
        if !v.is_finite() {
            continue;
        }
        let s = text(push_value, v);
        assert_eq!(s.parse::<f64>().ok(), Some(v), "{v:?} -> {s}");
        let l = label_number(v, Format::OpenMetrics);
        assert_eq!(l.parse::<f64>().ok(), Some(v), "{v:?} -> {l}");
    }
}

#[test]
fn canonical_label_numbers() {
    // The OpenMetrics specification's canonical renderings.
    for (v, want) in [
        (0.0, "0.0"),
        (0.001, "0.001"),
        (0.002, "0.002"),
        (0.01, "0.01"),
        (0.1, "0.1"),
        (0.9, "0.9"),
        (0.95, "0.95"),
        (0.99, "0.99"),
        (0.999, "0.999"),
        (1.0, "1.0"),
        (1.7, "1.7"),
        (10.0, "10.0"),
        (1e-10, "1e-10"),
        (1e-9, "1e-09"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (100000.0, "100000.0"),
        (1e6, "1e+06"),
        (1e10, "1e+10"),
        (1e23, "1e+23"),
        (1.1e23, "1.1e+23"),
        (f64::INFINITY, "+Inf"),
    ] {
        assert_eq!(label_number(v, Format::OpenMetrics), want, "{v:?}");
    }
    // 0.0.4: Go's %g as the Go client writes `le`, no `.0`.
    for (v, want) in [(0.0, "0"), (1.0, "1"), (0.005, "0.005"), (1e6, "1e+06")] {
        assert_eq!(label_number(v, Format::Text), want, "{v:?}");
    }
}

#[test]
fn scale_divides_by_integer_inverses() {
    assert_eq!(Scale::new(1.0), Scale::Identity);
    assert_eq!(Scale::new(1e-9), Scale::Div(1e9));
    assert_eq!(Scale::new(1e-3), Scale::Div(1e3));
    assert_eq!(Scale::new(0.3), Scale::Mul(0.3));
    assert_eq!(Scale::new(1000.0), Scale::Mul(1000.0));
    assert_eq!(Scale::new(1e-9).apply(1_000_000.0), 0.001);
    assert_eq!(Scale::new(1e-9).apply(5_000.0), 5e-6);
}

// === escaping ===

#[test]
fn escaping() {
    let mut s = String::new();
    push_escaped(&mut s, "a\\\"b\nc\u{e9}\u{1F600}\t\"", true);
    assert_eq!(s, "a\\\\\\\"b\\nc\u{e9}\u{1F600}\t\\\"");
    s.clear();
    push_escaped(&mut s, "say \"hi\"\\\n", false);
    assert_eq!(s, "say \"hi\"\\\\\\n");
}

#[test]
fn awkward_label_values_and_help() {
    let registry = Registry::new();
    let family = registry
        .counter_family(
            "odd_total",
            "Help with \\ and \"quotes\"\nand a new line",
            &["v"],
        )
        .unwrap();
    for v in [
        "a\\\"b",
        "back\\slash",
        "new\nline",
        "caf\u{e9} \u{1F600}",
        "",
        "{},=",
    ] {
        family.with(&[v]).unwrap().inc();
    }
    let snap = registry.snapshot();
    let expected_samples = concat!(
        "odd_total{v=\"\"} 1\n",
        "odd_total{v=\"a\\\\\\\"b\"} 1\n",
        "odd_total{v=\"back\\\\slash\"} 1\n",
        "odd_total{v=\"caf\u{e9} \u{1F600}\"} 1\n",
        "odd_total{v=\"new\\nline\"} 1\n",
        "odd_total{v=\"{},=\"} 1\n",
    );
    assert_eq!(
        render(&snap),
        format!(
            "# HELP odd_total Help with \\\\ and \"quotes\"\\nand a new line\n\
             # TYPE odd_total counter\n{expected_samples}"
        )
    );
    assert_eq!(
        render_openmetrics(&snap),
        format!(
            "# TYPE odd counter\n\
             # HELP odd Help with \\\\ and \\\"quotes\\\"\\nand a new line\n{expected_samples}# EOF\n"
        )
    );
}

// === kinds ===

#[test]
fn counters() {
    let registry = Registry::new();
    let c = registry
        .describe("sent_bytes_total", "Bytes sent")
        .unit("bytes")
        .counter_family(&["peer"])
        .unwrap();
    c.with(&["b"]).unwrap().add(10);
    c.with(&["a"]).unwrap().add(u64::MAX);
    registry
        .counter("events", "No _total suffix", &[])
        .unwrap()
        .add(2);
    let snap = registry.snapshot();
    assert_eq!(
        render(&snap),
        "# HELP sent_bytes_total Bytes sent\n\
         # TYPE sent_bytes_total counter\n\
         sent_bytes_total{peer=\"a\"} 18446744073709551615\n\
         sent_bytes_total{peer=\"b\"} 10\n\
         # HELP events No _total suffix\n\
         # TYPE events counter\n\
         events 2\n"
    );
    assert_eq!(
        render_openmetrics(&snap),
        "# TYPE sent_bytes counter\n\
         # UNIT sent_bytes bytes\n\
         # HELP sent_bytes Bytes sent\n\
         sent_bytes_total{peer=\"a\"} 18446744073709551615\n\
         sent_bytes_total{peer=\"b\"} 10\n\
         # TYPE events counter\n\
         # HELP events No _total suffix\n\
         events_total 2\n\
         # EOF\n"
    );
}

#[test]
fn gauges() {
    let registry = Registry::new();
    let g = registry.gauge_family("temperature", "", &["room"]).unwrap();
    g.with(&["x"]).unwrap().set(-40);
    g.with(&["y"]).unwrap().set(i64::MAX);
    let f = registry
        .float_gauge_family("ratio", "A float", &["k"])
        .unwrap();
    for (k, v) in [
        ("half", 0.5),
        ("inf", f64::INFINITY),
        ("minf", f64::NEG_INFINITY),
        ("nan", f64::NAN),
        ("big", 1e300),
        ("tiny", 1.5e-7),
    ] {
        f.with(&[k]).unwrap().set(v);
    }
    let snap = registry.snapshot();
    let samples = "temperature{room=\"x\"} -40\n\
                   temperature{room=\"y\"} 9223372036854775807\n";
    let floats = "ratio{k=\"big\"} 1e+300\n\
                  ratio{k=\"half\"} 0.5\n\
                  ratio{k=\"inf\"} +Inf\n\
                  ratio{k=\"minf\"} -Inf\n\
                  ratio{k=\"nan\"} NaN\n\
                  ratio{k=\"tiny\"} 1.5e-07\n";
    assert_eq!(
        render(&snap),
        format!(
            "# TYPE temperature gauge\n{samples}\
             # HELP ratio A float\n# TYPE ratio gauge\n{floats}"
        )
    );
    assert_eq!(
        render_openmetrics(&snap),
        format!(
            "# TYPE temperature gauge\n{samples}\
             # TYPE ratio gauge\n# HELP ratio A float\n{floats}# EOF\n"
        )
    );
}

#[test]
fn histogram_with_chosen_boundaries() {
    let registry = Registry::new();
    let h = registry
        .histogram("size", "Sizes", &[("shard", "1")])
        .unwrap();
    for v in [1, 5, 5_000] {
        h.record(v);
    }
    let options = RenderOptions::new()
        .buckets("size", vec![1, 5, 5_000, 5_003, 10_000])
        .unwrap();
    let snap = registry.snapshot();
    let samples = |le: [&str; 5]| {
        format!(
            "size_bucket{{shard=\"1\",le=\"{}\"}} 1\n\
             size_bucket{{shard=\"1\",le=\"{}\"}} 2\n\
             size_bucket{{shard=\"1\",le=\"{}\"}} 2\n\
             size_bucket{{shard=\"1\",le=\"{}\"}} 3\n\
             size_bucket{{shard=\"1\",le=\"{}\"}} 3\n\
             size_bucket{{shard=\"1\",le=\"+Inf\"}} 3\n\
             size_sum{{shard=\"1\"}} 5006\n\
             size_count{{shard=\"1\"}} 3\n",
            le[0], le[1], le[2], le[3], le[4]
        )
    };
    assert_eq!(
        render_with(&snap, &options),
        format!(
            "# HELP size Sizes\n# TYPE size histogram\n{}",
            samples(["1", "5", "5000", "5003", "10000"])
        )
    );
    assert_eq!(
        render_openmetrics_with(&snap, &options),
        format!(
            "# TYPE size histogram\n# HELP size Sizes\n{}# EOF\n",
            samples(["1.0", "5.0", "5000.0", "5003.0", "10000.0"])
        )
    );
}

#[test]
fn histogram_scaled_to_seconds() {
    let registry = Registry::new();
    let h = registry
        .describe("rpc_duration_seconds", "RPC latency")
        .unit("seconds")
        .histogram_family(&[])
        .unwrap()
        .with(&[])
        .unwrap();
    h.record(1_000); // 1 µs, exact in the HDR layout
    h.record(2_000_000); // 2 ms
    let options = RenderOptions::new()
        .buckets(
            "rpc_duration_seconds",
            vec![1_000, 1_000_000, 5_000_000, 1_000_000_000],
        )
        .unwrap()
        .scale("rpc_duration_seconds", 1e-9)
        .unwrap();
    let snap = registry.snapshot();
    assert_eq!(
        render_openmetrics_with(&snap, &options),
        "# TYPE rpc_duration_seconds histogram\n\
         # UNIT rpc_duration_seconds seconds\n\
         # HELP rpc_duration_seconds RPC latency\n\
         rpc_duration_seconds_bucket{le=\"1e-06\"} 1\n\
         rpc_duration_seconds_bucket{le=\"0.001\"} 1\n\
         rpc_duration_seconds_bucket{le=\"0.005\"} 2\n\
         rpc_duration_seconds_bucket{le=\"1.0\"} 2\n\
         rpc_duration_seconds_bucket{le=\"+Inf\"} 2\n\
         rpc_duration_seconds_sum 0.002001\n\
         rpc_duration_seconds_count 2\n\
         # EOF\n"
    );
    assert!(render_with(&snap, &options).contains("rpc_duration_seconds_bucket{le=\"1\"} 2\n"));
}

#[test]
fn histogram_default_boundaries() {
    let registry = Registry::new();
    let h = registry
        .describe("payload_bytes", "Payload sizes")
        .histogram_layout(
            Histogram::builder()
                .lowest(1)
                .highest(1_000)
                .significant_digits(2),
        )
        .histogram_family(&[])
        .unwrap()
        .with(&[])
        .unwrap();
    h.record(3);
    h.record(700);
    h.record(5_000); // saturated into the top bucket
    let text = render(&registry.snapshot());
    let les: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        les,
        [
            "1", "2", "5", "10", "20", "50", "100", "200", "500", "1000", "+Inf"
        ]
    );
    assert!(text.contains("payload_bytes_bucket{le=\"5\"} 1\n"));
    assert!(text.contains("payload_bytes_bucket{le=\"500\"} 1\n"));
    assert!(text.contains("payload_bytes_bucket{le=\"+Inf\"} 3\n"));
    assert!(text.contains("payload_bytes_count 3\n"));

    // `default_buckets` replaces the series for every histogram without its own.
    let options = RenderOptions::new().default_buckets(vec![10]).unwrap();
    let text = render_with(&registry.snapshot(), &options);
    assert_eq!(text.matches("_bucket").count(), 2);
    assert!(text.contains("payload_bytes_bucket{le=\"10\"} 1\n"));
}

#[test]
fn summaries() {
    let registry = Registry::new();
    let family = registry
        .describe("task_duration_seconds", "Task latency")
        .unit("seconds")
        .histogram_family(&["task"])
        .unwrap();
    let h = family.with(&["a"]).unwrap();
    for v in 1..=100 {
        h.record(v * 1_000_000); // 1..100 ms
    }
    family.with(&["empty"]).unwrap();
    let options = RenderOptions::new()
        .summary("task_duration_seconds", vec![0.99, 0.5, 0.5, 1.0])
        .unwrap()
        .scale("task_duration_seconds", 1e-9)
        .unwrap();
    let snap = registry.snapshot();
    let hs = snap.histogram("task_duration_seconds", &["a"]).unwrap();
    let p50 = hs.value_at_quantile(0.5) as f64 / 1e9;
    let p99 = hs.value_at_quantile(0.99) as f64 / 1e9;
    let max = hs.value_at_quantile(1.0) as f64 / 1e9;
    let samples = |q: [&str; 3]| {
        format!(
            "task_duration_seconds{{task=\"a\",quantile=\"{}\"}} {p50}\n\
             task_duration_seconds{{task=\"a\",quantile=\"{}\"}} {p99}\n\
             task_duration_seconds{{task=\"a\",quantile=\"{}\"}} {max}\n\
             task_duration_seconds_sum{{task=\"a\"}} 5.05\n\
             task_duration_seconds_count{{task=\"a\"}} 100\n\
             task_duration_seconds{{task=\"empty\",quantile=\"{}\"}} NaN\n\
             task_duration_seconds{{task=\"empty\",quantile=\"{}\"}} NaN\n\
             task_duration_seconds{{task=\"empty\",quantile=\"{}\"}} NaN\n\
             task_duration_seconds_sum{{task=\"empty\"}} 0\n\
             task_duration_seconds_count{{task=\"empty\"}} 0\n",
            q[0], q[1], q[2], q[0], q[1], q[2]
        )
    };
    assert!((0.05..0.0501).contains(&p50), "{p50}");
    assert_eq!(
        render_with(&snap, &options),
        format!(
            "# HELP task_duration_seconds Task latency\n\
             # TYPE task_duration_seconds summary\n{}",
            samples(["0.5", "0.99", "1"])
        )
    );
    assert_eq!(
        render_openmetrics_with(&snap, &options),
        format!(
            "# TYPE task_duration_seconds summary\n\
             # UNIT task_duration_seconds seconds\n\
             # HELP task_duration_seconds Task latency\n{}# EOF\n",
            samples(["0.5", "0.99", "1.0"])
        )
    );
}

#[test]
fn empty_families_are_left_out() {
    let registry = Registry::new();
    registry
        .gauge_family("idle", "Nothing yet", &["x"])
        .unwrap();
    registry.gauge("busy", "Set", &[]).unwrap().set(1);
    let snap = registry.snapshot();
    assert_eq!(
        render(&snap),
        "# HELP busy Set\n# TYPE busy gauge\nbusy 1\n"
    );
    assert_eq!(
        render_openmetrics(&snap),
        "# TYPE busy gauge\n# HELP busy Set\nbusy 1\n# EOF\n"
    );
    assert_eq!(render_openmetrics(&Registry::new().snapshot()), "# EOF\n");
    assert_eq!(render(&Registry::new().snapshot()), "");
}

#[test]
fn scaled_counters_and_gauges() {
    let registry = Registry::new();
    registry
        .counter("cpu_seconds_total", "CPU time", &[])
        .unwrap()
        .add(1_500_000_000);
    registry
        .gauge("offset_seconds", "Clock offset", &[])
        .unwrap()
        .set(-250_000);
    let options = RenderOptions::new()
        .scale("cpu_seconds_total", 1e-9)
        .unwrap()
        .scale("offset_seconds", 1e-6)
        .unwrap();
    let text = render_with(&registry.snapshot(), &options);
    assert!(text.contains("cpu_seconds_total 1.5\n"), "{text}");
    assert!(text.contains("offset_seconds -0.25\n"), "{text}");
}

// === the bucket rule ===

#[test]
fn conservative_rule_with_values_at_the_boundary() {
    let h = Histogram::new(); // 3 significant digits: exact below 2048, then wider buckets
    let values = [1_000, 1_001, 5_000, 5_003, 5_004, 1_000_000];
    for v in values {
        h.record(v);
    }
    let s = h.snapshot();
    let buckets: Vec<Bucket> = s.buckets().collect();
    // 5000 and 5003 share the HDR bucket [5000, 5003].
    assert!(
        buckets
            .iter()
            .any(|b| (b.low, b.high, b.count) == (5_000, 5_003, 2))
    );
    let bounds = [
        999, 1_000, 1_001, 4_999, 5_000, 5_002, 5_003, 5_004, 999_999, 1_000_000,
    ];
    let counts = cumulative_counts(&s, &bounds);
    assert_eq!(counts, [0, 1, 2, 2, 2, 2, 4, 4, 5, 5]);
    // 1_000_000 lies in a bucket 512 wide: [999_936, 1_000_447].
    let top = buckets.last().unwrap();
    assert_eq!((top.low, top.high), (999_936, 1_000_447));
    assert_eq!(cumulative_counts(&s, &[1_000_447]), [6]);
    // Never more than the values that are certainly <= le.
    for (le, c) in bounds.iter().zip(&counts) {
        let at_most = values.iter().filter(|&&v| v <= *le).count() as u64;
        assert!(*c <= at_most, "le={le}: {c} > {at_most}");
    }
}

#[test]
fn exact_region_is_as_documented() {
    // The module docs: with lowest 1, HDR buckets are one value wide below these limits.
    for (digits, limit) in [(1, 32), (2, 256), (3, 2_048), (4, 32_768), (5, 262_144)] {
        let h = Histogram::builder()
            .significant_digits(digits)
            .build()
            .unwrap();
        h.record(limit - 1);
        h.record(limit);
        let b: Vec<Bucket> = h.snapshot().buckets().collect();
        assert_eq!((b[0].low, b[0].high), (limit - 1, limit - 1), "{digits}");
        assert!(b[1].high > b[1].low, "{digits}");
        // A value equal to a boundary in the exact region is counted at that boundary.
        assert_eq!(cumulative_counts(&h.snapshot(), &[limit - 1]), [1]);
    }
}

fn cumulative_counts(s: &HistogramSnapshot, bounds: &[u64]) -> Vec<u64> {
    // Render one series and read the counts back.
    let family = FamilySnapshot {
        name: "h".into(),
        help: "".into(),
        unit: None,
        kind: MetricKind::Histogram,
        label_names: Vec::<Arc<str>>::new().into(),
        series: vec![crate::registry::SeriesSnapshot {
            label_values: Vec::<Arc<str>>::new().into(),
            value: Value::Histogram(s.clone()),
        }],
    };
    let mut out = String::new();
    let mut w = FamilyWriter {
        out: &mut out,
        family: &family,
        format: Format::Text,
        scale: Scale::Identity,
    };
    w.histogram(&[], s, bounds);
    let counts: Vec<u64> = out
        .lines()
        .filter(|l| l.starts_with("h_bucket") && !l.contains("+Inf"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), bounds.len());
    counts
}

#[test]
fn cumulative_counts_are_monotonic_and_end_at_count() {
    let h = Histogram::builder().significant_digits(1).build().unwrap();
    let mut x: u64 = 12345;
    for _ in 0..5_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        h.record((x >> 33) % 5_000_000);
    }
    let s = h.snapshot();
    let bounds = default_boundaries(s.lowest(), s.highest());
    let counts = cumulative_counts(&s, &bounds);
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(*counts.last().unwrap() <= s.count());
    let text = render(&{
        let r = Registry::new();
        let hh = r.histogram("v", "", &[]).unwrap();
        hh.record(7);
        r.snapshot()
    });
    assert!(
        text.contains("v_bucket{le=\"+Inf\"} 1\nv_sum 7\nv_count 1\n"),
        "{text}"
    );
}

#[test]
fn boundaries_that_collide_as_f64_are_merged() {
    let r = Registry::new();
    r.histogram("big", "", &[]).unwrap().record(5);
    let b = 1u64 << 60;
    let options = RenderOptions::new()
        .buckets("big", vec![10, b, b + 1, u64::MAX])
        .unwrap();
    let text = render_with(&r.snapshot(), &options);
    let les: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        les,
        [
            "10",
            "1.152921504606847e+18",
            "1.8446744073709552e+19",
            "+Inf"
        ]
    );
}

// === defaults and options ===

#[test]
fn default_boundary_series() {
    assert_eq!(default_boundaries(1, 100), [1, 2, 5, 10, 20, 50, 100]);
    assert_eq!(default_boundaries(1_000, 60_000_000_000).len(), 24);
    assert_eq!(default_boundaries(3, 4), [3]);
    assert_eq!(default_boundaries(21, 42), [30]);
    assert_eq!(default_boundaries(6, 9), Vec::<u64>::new());
    let all = default_boundaries(1, u64::MAX);
    assert_eq!(all.len(), 20);
    assert_eq!(all.last(), Some(&10_000_000_000_000_000_000));
    for (lo, hi) in [
        (1, 2),
        (1, 3_600_000_000_000),
        (7, 1 << 40),
        (1_000, u64::MAX),
    ] {
        let b = default_boundaries(lo, hi);
        assert!(b.len() <= DEFAULT_MAX_BUCKETS);
        assert!(b.windows(2).all(|w| w[0] < w[1]));
        assert!(b.iter().all(|&v| v >= lo && v <= hi));
    }
}

#[test]
fn option_errors() {
    assert_eq!(
        RenderOptions::new().buckets("x", vec![1, 5, 5, 10]),
        Err(BoundaryError::NotIncreasing {
            index: 2,
            boundaries: vec![1, 5, 5, 10]
        })
    );
    let e = RenderOptions::new()
        .default_buckets(vec![3, 2])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "bucket boundaries must be strictly increasing, but boundary 1 (2) is not greater than \
         the one before it (3)"
    );
    // Display never panics, even on a hand-made error.
    let odd = BoundaryError::NotIncreasing {
        index: 0,
        boundaries: vec![],
    };
    assert_eq!(
        odd.to_string(),
        "bucket boundaries must be strictly increasing, but boundary 0 (0) is not greater than \
         the one before it (0)"
    );
    assert!(RenderOptions::new().buckets("x", vec![]).is_ok());
    assert!(RenderOptions::new().buckets("x", vec![0, u64::MAX]).is_ok());
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(RenderOptions::new().scale("x", bad).is_err(), "{bad}");
    }
    for bad in [-0.1, 1.5, f64::NAN] {
        assert!(
            RenderOptions::new().summary("x", vec![0.5, bad]).is_err(),
            "{bad}"
        );
    }
    // The last of buckets/summary wins.
    let o = RenderOptions::new()
        .summary("x", vec![0.5])
        .unwrap()
        .buckets("x", vec![1])
        .unwrap();
    assert_eq!(
        o.family("x").unwrap().histogram,
        HistogramAs::Buckets(vec![1])
    );
}

#[test]
fn options_only_touch_histograms_where_they_apply() {
    let r = Registry::new();
    r.counter("c_total", "", &[]).unwrap().inc();
    let options = RenderOptions::new()
        .summary("c_total", vec![0.5])
        .unwrap()
        .buckets("missing", vec![1])
        .unwrap();
    assert_eq!(
        render_with(&r.snapshot(), &options),
        "# TYPE c_total counter\nc_total 1\n"
    );
}

// === overflow ===

#[test]
fn overflow_series_and_family() {
    let registry = Registry::builder().cardinality_limit(2).build();
    let paths = registry
        .counter_family("http_requests_total", "Requests", &["path", "code"])
        .unwrap();
    paths.with(&["/a", "200"]).unwrap().inc();
    paths.with(&["/b", "200"]).unwrap().add(2);
    paths.with(&["/c", "500"]).unwrap().add(3); // over the limit: overflow series
    paths.with(&["/d", "200"]).unwrap().add(4); // overflow again
    let snap = registry.snapshot();
    let redirected = snap
        .counter(OVERFLOW, &["http_requests_total"])
        .expect("overflow counter");
    assert_eq!(
        render(&snap),
        format!(
            "# HELP http_requests_total Requests\n\
             # TYPE http_requests_total counter\n\
             http_requests_total{{path=\"/a\",code=\"200\"}} 1\n\
             http_requests_total{{path=\"/b\",code=\"200\"}} 2\n\
             http_requests_total{{path=\"__overflow__\",code=\"__overflow__\"}} 7\n\
             # HELP weir_series_overflow_total Lookups of new series redirected to the overflow \
             series because their family reached its cardinality limit\n\
             # TYPE weir_series_overflow_total counter\n\
             weir_series_overflow_total{{metric=\"http_requests_total\"}} {redirected}\n"
        )
    );
    let om = render_openmetrics(&snap);
    assert!(om.contains("# TYPE weir_series_overflow counter\n"), "{om}");
    assert!(om.contains(&format!(
        "weir_series_overflow_total{{metric=\"http_requests_total\"}} {redirected}\n"
    )));
    assert!(om.contains("http_requests_total{path=\"__overflow__\",code=\"__overflow__\"} 7\n"));
}

const OVERFLOW: &str = crate::registry::OVERFLOW_METRIC;

#[test]
fn deterministic() {
    let registry = Registry::new();
    for name in ["zeta", "alpha", "mid"] {
        let f = registry.gauge_family(name, "g", &["k"]).unwrap();
        for k in ["3", "1", "2"] {
            f.with(&[k]).unwrap().set(1);
        }
    }
    let snap = registry.snapshot();
    let a = render(&snap);
    assert_eq!(a, render(&snap));
    assert_eq!(a, render(&registry.snapshot()));
    let order: Vec<&str> = a
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "zeta{k=\"1\"}",
            "zeta{k=\"2\"}",
            "zeta{k=\"3\"}",
            "alpha{k=\"1\"}",
            "alpha{k=\"2\"}",
            "alpha{k=\"3\"}",
            "mid{k=\"1\"}",
            "mid{k=\"2\"}",
            "mid{k=\"3\"}"
        ]
    );
}
