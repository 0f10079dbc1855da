//! Checks the exporters' output with the real tools Prometheus users run.
//!
//! - The 0.0.4 text goes through `promtool check metrics` (Prometheus' own parser and linter).
//!   Install it with `apt-get update && apt-get install -y prometheus` (Debian/Ubuntu), or point
//!   `PROMTOOL` at a promtool binary.
//! - `promtool check metrics` only parses the 0.0.4 format: on OpenMetrics it reads a counter's
//!   `x_total` samples under `# TYPE x counter` as a separate, untyped family and fails its lint.
//!   So the OpenMetrics text goes through the strict OpenMetrics parser of the Python client,
//!   `prometheus_client.openmetrics.parser` (install with `python3 -m pip install
//!   prometheus_client`; `PYTHON` selects the interpreter, default `python3`).
//!
//! Set `WEIR_SKIP_PROMTOOL=1` to skip both checks where the tools cannot be installed.

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use weir::export::prometheus;

const INSTALL_PROMTOOL: &str = "install it with `apt-get update && apt-get install -y prometheus` \
     (Debian/Ubuntu), or set PROMTOOL=/path/to/promtool; set WEIR_SKIP_PROMTOOL=1 to skip this check";
const INSTALL_PYTHON_CLIENT: &str = "install it with `python3 -m pip install prometheus_client` \
     (or set PYTHON to an interpreter that has it); set WEIR_SKIP_PROMTOOL=1 to skip this check";

fn skipped(what: &str) -> bool {
    if std::env::var_os("WEIR_SKIP_PROMTOOL").is_some_and(|v| v == "1") {
        eprintln!("WEIR_SKIP_PROMTOOL=1: skipped {what}");
        true
    } else {
        false
    }
}

/// Writes `text` to a fresh file in the temporary directory.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("weir-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn run_promtool(path: &PathBuf) -> std::process::Output {
    let promtool = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    let stdin = std::fs::File::open(path).unwrap();
    match Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::from(stdin))
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("promtool not found ({promtool:?}): {INSTALL_PROMTOOL}")
        }
        Err(e) => panic!("could not run {promtool:?}: {e}"),
    }
}

#[test]
fn promtool_accepts_the_text_format() {
    if skipped("promtool check metrics") {
        return;
    }
    let (registry, options) = common::fixture();
    let snap = registry.snapshot();
    for (name, text) in [
        ("default.prom", prometheus::render(&snap)),
        ("options.prom", prometheus::render_with(&snap, &options)),
    ] {
        let path = temp_file(name, &text);
        let out = run_promtool(&path);
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "promtool check metrics rejected {name} ({}):\nstdout:\n{}\nstderr:\n{}\ninput:\n{text}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
}

/// Parses the file named by argv[1] with the OpenMetrics parser and prints, per family, its
/// name, type, unit and sample count, then the `path` label values of `http_requests_total` as
/// UTF-8 hex (so the Rust side can compare them byte for byte).
const PY_CHECK: &str = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
with open(sys.argv[1], encoding="utf-8", newline="") as f:
    text = f.read()
for fam in text_string_to_metric_families(text):
    print("family", fam.name, fam.type, fam.unit or "-", len(fam.samples))
    if fam.name == "http_requests":
        for s in fam.samples:
            print("path", s.labels["path"].encode("utf-8").hex())
"#;

#[test]
fn prometheus_client_accepts_openmetrics() {
    if skipped("the OpenMetrics check with prometheus_client") {
        return;
    }
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let (registry, options) = common::fixture();
    let snap = registry.snapshot();
    for (name, text) in [
        ("default.om", prometheus::render_openmetrics(&snap)),
        (
            "options.om",
            prometheus::render_openmetrics_with(&snap, &options),
        ),
    ] {
        let path = temp_file(name, &text);
        let out = match Command::new(&python)
            .arg("-c")
            .arg(PY_CHECK)
            .arg(&path)
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!(
                    "{python:?} not found: the OpenMetrics check needs Python 3 with prometheus_client; {INSTALL_PYTHON_CLIENT}"
                )
            }
            Err(e) => panic!("could not run {python:?}: {e}"),
        };
        let _ = std::fs::remove_file(&path);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named 'prometheus_client'") {
            panic!("prometheus_client is not installed for {python:?}: {INSTALL_PYTHON_CLIENT}");
        }
        assert!(
            out.status.success(),
            "prometheus_client rejected {name} ({}):\n{stderr}\ninput:\n{text}",
            out.status
        );
        assert!(
            !stdout.contains("idle_connections"),
            "families without series are left out"
        );
        let summary = name == "options.om";
        for family in [
            "family http_requests counter - 9".to_owned(),
            "family sent_bytes counter bytes 1".to_owned(),
            "family queue_depth gauge - 2".to_owned(),
            "family room_temperature_celsius gauge celsius 6".to_owned(),
            if summary {
                // 3 series x (10 boundaries + +Inf + _sum + _count)
                "family http_request_duration_seconds histogram seconds 39".to_owned()
            } else {
                "family http_request_duration_seconds histogram seconds".to_owned()
            },
            if summary {
                // 2 series x (4 quantiles + _sum + _count)
                "family job_duration_seconds summary seconds 12".to_owned()
            } else {
                "family job_duration_seconds histogram seconds".to_owned()
            },
            "family response_size_bytes histogram -".to_owned(),
            "family tenant_requests counter - 3".to_owned(),
            "family weir_series_overflow counter - 1".to_owned(),
        ] {
            assert!(
                stdout.lines().any(|l| l.starts_with(&family)),
                "{name}: no line starting {family:?} in:\n{stdout}"
            );
        }
        let mut want: Vec<String> = common::AWKWARD.iter().map(|v| hex(v)).collect();
        want.push(hex("/"));
        want.sort();
        let mut got: Vec<String> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("path "))
            .map(str::to_owned)
            .collect();
        got.sort();
        assert_eq!(got, want, "{name}: label values did not survive escaping");
    }
}

fn hex(s: &str) -> String {
    s.bytes().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

// === random registries ===

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::export::prometheus::RenderOptions;

/// A label value or help text of up to 8 characters drawn from awkward ones (escapes, control
/// characters, carriage return, non-ASCII).
fn awkward_text(rng: &mut StdRng) -> String {
    const CHARS: &[char] = &[
        'a', 'Z', '0', ' ', '\\', '"', '\n', '\r', '\t', '\0', '{', '}', ',', '=', '#', 'é', '日',
        '😀', '\u{7f}', '\u{2028}',
    ];
    let len = rng.gen_range(0..=8);
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())])
        .collect()
}

/// Renders `count` random registries in both formats, with random options.
fn random_documents(count: usize) -> Vec<(String, String)> {
    let mut rng = StdRng::seed_from_u64(0x5EED_0F3E_1F00);
    (0..count)
        .map(|_| {
            let registry = weir::Registry::builder()
                .cardinality_limit(rng.gen_range(1..6))
                .build();
            // promtool's lint wants help text on every family.
            let help = format!("help {}", awkward_text(&mut rng));
            let c = registry
                .counter_family("random_events_total", &help, &["a", "b"])
                .unwrap();
            let g = registry
                .float_gauge_family("random_level", &help, &["a"])
                .unwrap();
            let h = registry
                .describe("random_latency_seconds", &help)
                .unit("seconds")
                .histogram_family(&["a"])
                .unwrap();
            let s = registry
                .describe("random_wait_seconds", &help)
                .unit("seconds")
                .histogram_family(&[])
                .unwrap()
                .with(&[])
                .unwrap();
            for _ in 0..rng.gen_range(0..10) {
                c.with(&[&awkward_text(&mut rng), &awkward_text(&mut rng)])
                    .unwrap()
                    .add(rng.r#gen());
                let v = match rng.gen_range(0..4) {
                    0 => f64::from_bits(rng.r#gen()),
                    1 => f64::INFINITY,
                    _ => rng.gen_range(-1e9..1e9),
                };
                g.with(&[&awkward_text(&mut rng)]).unwrap().set(v);
                let series = h.with(&[&awkward_text(&mut rng)]).unwrap();
                for _ in 0..rng.gen_range(0..20) {
                    let v = if rng.gen_bool(0.1) {
                        rng.r#gen()
                    } else {
                        rng.gen_range(0..10_000_000)
                    };
                    series.record(v);
                    s.record(v);
                }
            }
            let mut bounds: Vec<u64> = (0..rng.gen_range(0..15))
                .map(|_| rng.gen_range(0..100_000_000))
                .collect();
            bounds.sort_unstable();
            bounds.dedup();
            let scale = [1.0, 1e-9, 1e-6, 0.5][rng.gen_range(0..4)];
            let quantiles: Vec<f64> = (0..rng.gen_range(0..4)).map(|_| rng.r#gen()).collect();
            let options = RenderOptions::new()
                .buckets("random_latency_seconds", bounds)
                .unwrap()
                .scale("random_latency_seconds", scale)
                .unwrap()
                .summary("random_wait_seconds", quantiles)
                .unwrap()
                .scale("random_wait_seconds", scale)
                .unwrap();
            let snap = registry.snapshot();
            (
                prometheus::render_with(&snap, &options),
                prometheus::render_openmetrics_with(&snap, &options),
            )
        })
        .collect()
}

#[test]
fn random_registries_pass_promtool() {
    if skipped("promtool check metrics on random registries") {
        return;
    }
    let documents = random_documents(40);
    let with_histograms = documents
        .iter()
        .filter(|(text, _)| text.contains("random_latency_seconds_bucket"))
        .count();
    assert!(
        with_histograms >= 20,
        "only {with_histograms} documents with histograms"
    );
    for (i, (text, _)) in documents.into_iter().enumerate() {
        if text.is_empty() {
            continue;
        }
        let path = temp_file(&format!("random-{i}.prom"), &text);
        let out = run_promtool(&path);
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "promtool check metrics rejected random document {i} ({}):\n{}{}\ninput:\n{text}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
}

const PY_CHECK_MANY: &str = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for path in sys.argv[1:]:
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    try:
        list(text_string_to_metric_families(text))
    except Exception as e:
        print("REJECTED", path, repr(e))
        print(text)
        sys.exit(1)
print("all ok")
"#;

#[test]
fn random_registries_pass_prometheus_client() {
    if skipped("the OpenMetrics check of random registries with prometheus_client") {
        return;
    }
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let paths: Vec<PathBuf> = random_documents(40)
        .into_iter()
        .enumerate()
        .map(|(i, (_, om))| temp_file(&format!("random-{i}.om"), &om))
        .collect();
    let out = Command::new(&python)
        .arg("-c")
        .arg(PY_CHECK_MANY)
        .args(&paths)
        .output();
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    let out = match out {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{python:?} not found: {INSTALL_PYTHON_CLIENT}")
        }
        Err(e) => panic!("could not run {python:?}: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'prometheus_client'") {
        panic!("prometheus_client is not installed for {python:?}: {INSTALL_PYTHON_CLIENT}");
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all ok"), "{stdout}");
}
