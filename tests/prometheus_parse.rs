//! Parses the exporters' output back with an independent parser (`openmetrics-parser`, a pest
//! grammar for both the 0.0.4 text format and OpenMetrics) and compares every value with the
//! snapshot it came from.

mod common;

use std::collections::HashMap;

use openmetrics_parser::{
    HistogramValue, MetricNumber, OpenMetricsType, OpenMetricsValue, PrometheusType,
    PrometheusValue, SummaryValue, openmetrics, prometheus as prom,
};
use weir::export::prometheus::{self, RenderOptions, default_boundaries};
use weir::{FamilySnapshot, HistogramSnapshot, MetricKind, RegistrySnapshot, Value};

/// One parsed series, whichever format it came from.
#[derive(Debug)]
enum Parsed {
    Counter(f64),
    Gauge(f64),
    Histogram(HistogramValue),
    Summary(SummaryValue),
}

#[derive(Debug)]
struct ParsedFamily {
    kind: String,
    help: String,
    unit: String,
    label_names: Vec<String>,
    /// By label values, in `label_names` order.
    series: Vec<(Vec<String>, Parsed)>,
}

fn num(n: &MetricNumber) -> f64 {
    n.as_f64()
}

fn parse_text(text: &str) -> HashMap<String, ParsedFamily> {
    if text.is_empty() {
        // No family has a series. `openmetrics-parser` wants at least one family.
        return HashMap::new();
    }
    let exposition = prom::parse_prometheus(text)
        .unwrap_or_else(|e| panic!("0.0.4 text did not parse: {e:?}\n{text}"));
    exposition
        .families
        .into_iter()
        .map(|(name, family)| {
            let kind = match family.family_type {
                PrometheusType::Counter => "counter",
                PrometheusType::Gauge => "gauge",
                PrometheusType::Histogram => "histogram",
                PrometheusType::Summary => "summary",
                PrometheusType::Unknown => "unknown",
            };
            let label_names = family.get_label_names().to_vec();
            let help = family.help.clone();
            let unit = family.unit.clone();
            let series = family
                .iter_samples()
                .map(|s| {
                    let labels = label_values(&label_names, s.get_labelset().unwrap().iter());
                    let value = match &s.value {
                        PrometheusValue::Counter(c) => Parsed::Counter(num(&c.value)),
                        PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => {
                            Parsed::Gauge(num(n))
                        }
                        PrometheusValue::Histogram(h) => Parsed::Histogram(h.clone()),
                        PrometheusValue::Summary(q) => Parsed::Summary(q.clone()),
                    };
                    (labels, value)
                })
                .collect();
            (
                name,
                ParsedFamily {
                    kind: kind.to_owned(),
                    help,
                    unit,
                    label_names,
                    series,
                },
            )
        })
        .collect()
}

/// `openmetrics-parser` 0.5 rejects `# UNIT` on histograms and summaries ("metrics can't have
/// units"), which OpenMetrics 1.0 allows (only info and stateset families must have no unit; the
/// Python client's parser, run by tests/promtool.rs, accepts them). Drop those lines before
/// parsing, and return the units they carried.
fn without_histogram_units(text: &str) -> (String, HashMap<String, String>) {
    let mut kept = String::new();
    let mut units = HashMap::new();
    let mut kind = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            kind = if rest.ends_with(" histogram") || rest.ends_with(" summary") {
                "skip"
            } else {
                ""
            };
        } else if let Some(rest) = line.strip_prefix("# UNIT ")
            && kind == "skip"
        {
            let (family, unit) = rest.split_once(' ').unwrap();
            units.insert(family.to_owned(), unit.to_owned());
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    (kept, units)
}

fn parse_openmetrics(text: &str) -> HashMap<String, ParsedFamily> {
    if text == "# EOF\n" {
        // No family has a series. `openmetrics-parser` wants at least one family.
        return HashMap::new();
    }
    let (text, units) = without_histogram_units(text);
    let text = text.as_str();
    let exposition = openmetrics::parse_openmetrics(text)
        .unwrap_or_else(|e| panic!("OpenMetrics text did not parse: {e:?}\n{text}"));
    exposition
        .families
        .into_iter()
        .map(|(name, family)| {
            let kind = match family.family_type {
                OpenMetricsType::Counter => "counter",
                OpenMetricsType::Gauge => "gauge",
                OpenMetricsType::Histogram => "histogram",
                OpenMetricsType::Summary => "summary",
                other => panic!("unexpected family type {other:?}"),
            };
            let label_names = family.get_label_names().to_vec();
            let help = family.help.clone();
            let unit = match units.get(&name) {
                Some(u) => u.clone(),
                None => family.unit.clone(),
            };
            let series = family
                .iter_samples()
                .map(|s| {
                    let labels = label_values(&label_names, s.get_labelset().unwrap().iter());
                    let value = match &s.value {
                        OpenMetricsValue::Counter(c) => Parsed::Counter(num(&c.value)),
                        OpenMetricsValue::Gauge(n) => Parsed::Gauge(num(n)),
                        OpenMetricsValue::Histogram(h) => Parsed::Histogram(h.clone()),
                        OpenMetricsValue::Summary(q) => Parsed::Summary(q.clone()),
                        other => panic!("unexpected value {other:?}"),
                    };
                    (labels, value)
                })
                .collect();
            (
                name,
                ParsedFamily {
                    kind: kind.to_owned(),
                    help,
                    unit,
                    label_names,
                    series,
                },
            )
        })
        .collect()
}

fn label_values<'a>(
    names: &[String],
    set: impl Iterator<Item = (&'a String, &'a String)>,
) -> Vec<String> {
    let map: HashMap<&String, &String> = set.collect();
    names.iter().map(|n| map[n].clone()).collect()
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// What the families' values should read as: the options they were rendered with, restated.
#[derive(Default)]
struct Expect {
    openmetrics: bool,
    scales: HashMap<String, f64>,
    buckets: HashMap<String, Vec<u64>>,
    /// Quantiles as given to `RenderOptions::summary`.
    summaries: HashMap<String, Vec<f64>>,
}

impl Expect {
    /// The fixture's options (see `common::fixture`).
    fn fixture(openmetrics: bool) -> Expect {
        Expect {
            openmetrics,
            scales: [(common::SECONDS_HISTOGRAM, 1e-9), (common::SUMMARY, 1e-9)]
                .into_iter()
                .map(|(n, s)| (n.to_owned(), s))
                .collect(),
            buckets: [(
                common::SECONDS_HISTOGRAM.to_owned(),
                common::SECONDS_BOUNDARIES.to_vec(),
            )]
            .into_iter()
            .collect(),
            summaries: [(common::SUMMARY.to_owned(), common::QUANTILES.to_vec())]
                .into_iter()
                .collect(),
        }
    }

    /// `RenderOptions::scale` as documented: division by `1 / scale` when that is an integer.
    fn scale(&self, family: &str, v: f64) -> f64 {
        match self.scales.get(family) {
            None => v,
            Some(1.0) => v,
            Some(&s) => {
                let inverse = (1.0 / s).round();
                if s < 1.0 && inverse >= 2.0 && (1.0 / s - inverse).abs() <= inverse * 1e-12 {
                    v / inverse
                } else {
                    v * s
                }
            }
        }
    }

    fn summary(&self, family: &str) -> Option<Vec<f64>> {
        let mut q = self.summaries.get(family)?.clone();
        q.sort_by(f64::total_cmp);
        q.dedup();
        Some(q)
    }

    fn boundaries(&self, family: &str, h: &HistogramSnapshot) -> Vec<u64> {
        match self.buckets.get(family) {
            Some(b) => b.clone(),
            None => default_boundaries(h.lowest(), h.highest()),
        }
    }

    fn family_name<'f>(&self, family: &'f FamilySnapshot) -> &'f str {
        if self.openmetrics && family.kind == MetricKind::Counter {
            family.name.strip_suffix("_total").unwrap_or(&family.name)
        } else {
            &family.name
        }
    }

    fn check(&self, snapshot: &RegistrySnapshot, parsed: &HashMap<String, ParsedFamily>) {
        // Families without series are left out.
        let families: Vec<&FamilySnapshot> = snapshot
            .families()
            .iter()
            .filter(|f| !f.series.is_empty())
            .collect();
        assert_eq!(parsed.len(), families.len(), "{:?}", parsed.keys());
        for family in families {
            let name = self.family_name(family);
            let got = parsed
                .get(name)
                .unwrap_or_else(|| panic!("family {name} missing from {:?}", parsed.keys()));
            let kind = match family.kind {
                MetricKind::Counter => "counter",
                MetricKind::Histogram if self.summary(&family.name).is_some() => "summary",
                MetricKind::Histogram => "histogram",
                _ => "gauge",
            };
            assert_eq!(got.kind, kind, "{name}");
            assert_eq!(got.help, *family.help, "{name}");
            if self.openmetrics {
                assert_eq!(got.unit, family.unit.as_deref().unwrap_or(""), "{name}");
            }
            assert_eq!(
                got.series.len(),
                family.series.len(),
                "{name}: {:?}",
                got.series
            );
            // The parser sorts label names; compare in its order.
            let mut names: Vec<&str> = family.label_names.iter().map(|n| &**n).collect();
            names.sort_unstable();
            if !family.series.is_empty() {
                assert_eq!(got.label_names, names, "{name}");
            }
            for series in &family.series {
                let values: Vec<String> = names
                    .iter()
                    .map(|n| {
                        let i = family.label_names.iter().position(|l| &**l == *n).unwrap();
                        series.label_values[i].to_string()
                    })
                    .collect();
                let (_, parsed) = got
                    .series
                    .iter()
                    .find(|(l, _)| *l == values)
                    .unwrap_or_else(|| panic!("{name}{values:?} missing: {:?}", got.series));
                self.check_value(&family.name, &values, &series.value, parsed);
            }
        }
    }

    fn check_value(&self, family: &str, labels: &[String], want: &Value, got: &Parsed) {
        let at = format!("{family}{labels:?}");
        match (want, got) {
            (Value::Counter(v), Parsed::Counter(g)) => {
                assert!(same(*g, self.scale(family, *v as f64)), "{at}: {g} != {v}")
            }
            (Value::Gauge(v), Parsed::Gauge(g)) => {
                assert!(same(*g, self.scale(family, *v as f64)), "{at}: {g} != {v}")
            }
            (Value::FloatGauge(v), Parsed::Gauge(g)) => {
                assert!(same(*g, self.scale(family, *v)), "{at}: {g} != {v}")
            }
            (Value::Histogram(h), Parsed::Histogram(g)) => {
                assert_eq!(g.count, Some(h.count()), "{at}");
                let sum = g.sum.as_ref().map(num);
                assert_eq!(sum, Some(self.scale(family, h.sum() as f64)), "{at}");
                // Boundaries that are not above the previous one once scaled (or are infinite)
                // are left out, as documented.
                let mut bounds = Vec::new();
                for b in self.boundaries(family, h) {
                    let le = self.scale(family, b as f64);
                    if le.is_finite() && bounds.last().is_none_or(|&(_, p)| le > p) {
                        bounds.push((b, le));
                    }
                }
                assert_eq!(g.buckets.len(), bounds.len() + 1, "{at}: {:?}", g.buckets);
                for ((b, le), bucket) in bounds.iter().zip(&g.buckets) {
                    // The documented rule, computed independently: HDR buckets whose highest
                    // value is <= le.
                    let want: u64 = h.buckets().filter(|x| x.high <= *b).map(|x| x.count).sum();
                    assert_eq!(bucket.upper_bound, *le, "{at}");
                    assert_eq!(num(&bucket.count), want as f64, "{at} le={b}");
                }
                let inf = g.buckets.last().unwrap();
                assert_eq!(inf.upper_bound, f64::INFINITY, "{at}");
                assert_eq!(num(&inf.count), h.count() as f64, "{at}");
                assert!(
                    g.buckets
                        .windows(2)
                        .all(|w| num(&w[0].count) <= num(&w[1].count)),
                    "{at}: not monotonic"
                );
            }
            (Value::Histogram(h), Parsed::Summary(g)) => {
                assert_eq!(g.count, Some(h.count()), "{at}");
                let sum = g.sum.as_ref().map(num);
                assert_eq!(sum, Some(self.scale(family, h.sum() as f64)), "{at}");
                let qs: Vec<f64> = g.quantiles.iter().map(|q| q.quantile).collect();
                assert_eq!(Some(qs), self.summary(family), "{at}");
                for q in &g.quantiles {
                    let want = if h.count() == 0 {
                        f64::NAN
                    } else {
                        self.scale(family, h.value_at_quantile(q.quantile) as f64)
                    };
                    assert!(same(num(&q.value), want), "{at} q={}", q.quantile);
                }
            }
            (want, got) => panic!("{at}: {want:?} rendered as {got:?}"),
        }
    }
}

#[test]
fn text_format_parses_back_to_the_snapshot() {
    let (registry, options) = common::fixture();
    let snapshot = registry.snapshot();
    for options in [RenderOptions::new(), options] {
        let text = prometheus::render_with(&snapshot, &options);
        let expect = if options == RenderOptions::new() {
            Expect::default()
        } else {
            Expect::fixture(false)
        };
        expect.check(&snapshot, &parse_text(&text));
    }
}

#[test]
fn openmetrics_parses_back_to_the_snapshot() {
    let (registry, options) = common::fixture();
    let snapshot = registry.snapshot();
    for options in [RenderOptions::new(), options] {
        let text = prometheus::render_openmetrics_with(&snapshot, &options);
        let expect = if options == RenderOptions::new() {
            Expect {
                openmetrics: true,
                ..Expect::default()
            }
        } else {
            Expect::fixture(true)
        };
        expect.check(&snapshot, &parse_openmetrics(&text));
    }
}

#[test]
fn overflow_is_visible_after_parsing() {
    let (registry, _) = common::fixture();
    let parsed = parse_text(&prometheus::render(&registry.snapshot()));
    let tenants = &parsed[common::OVERFLOWED];
    assert!(
        tenants
            .series
            .iter()
            .any(|(l, _)| l.iter().all(|v| v == weir::registry::OVERFLOW_LABEL_VALUE))
    );
    let overflow = &parsed[weir::registry::OVERFLOW_METRIC];
    assert_eq!(overflow.label_names, ["metric"]);
    assert_eq!(overflow.series[0].0, [common::OVERFLOWED]);
}

// === arbitrary registries ===

use proptest::prelude::*;

/// Label values and help text: any Unicode except carriage return, which neither format can
/// escape and which `openmetrics-parser`'s grammar takes for a line break (Prometheus' own
/// parsers accept it inside label values).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a\\\\\"\n{},= é😀]{0,12}",].prop_map(|s| s.replace('\r', ""))
}

fn any_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        -1e6..1e6f64,
    ]
}

#[derive(Debug, Clone)]
struct Case {
    help: String,
    counters: Vec<(String, String, u64)>,
    gauges: Vec<(String, f64)>,
    values: Vec<(String, u64)>,
    boundaries: Option<Vec<u64>>,
    scale: f64,
    quantiles: Vec<f64>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        text(),
        prop::collection::vec((text(), text(), any::<u64>()), 0..6),
        prop::collection::vec((text(), any_float()), 0..6),
        prop::collection::vec((text(), prop_oneof![0..5_000u64, any::<u64>()]), 0..40),
        prop::option::of(prop::collection::btree_set(
            prop_oneof![0..10_000u64, any::<u64>()],
            0..12,
        )),
        prop::sample::select(vec![1.0, 1e-9, 1e-6, 1e-3, 0.25, 3.0, 1e3, 1e-300, 1e300]),
        prop::collection::vec(0.0..=1.0f64, 0..5),
    )
        .prop_map(
            |(help, counters, gauges, values, boundaries, scale, quantiles)| Case {
                help,
                counters,
                gauges,
                values,
                boundaries: boundaries.map(|b| b.into_iter().collect()),
                scale,
                quantiles,
            },
        )
}

fn build(case: &Case) -> (weir::Registry, RenderOptions, Expect) {
    let registry = weir::Registry::builder().cardinality_limit(4).build();
    let counters = registry
        .counter_family("c_total", &case.help, &["a", "b"])
        .unwrap();
    for (a, b, n) in &case.counters {
        counters.with(&[a, b]).unwrap().add(*n);
    }
    let gauges = registry
        .float_gauge_family("g", &case.help, &["a"])
        .unwrap();
    for (a, v) in &case.gauges {
        gauges.with(&[a]).unwrap().set(*v);
    }
    let h = registry.histogram_family("h", &case.help, &["a"]).unwrap();
    let s = registry.histogram_family("s", "", &["a"]).unwrap();
    for (a, v) in &case.values {
        h.with(&[a]).unwrap().record(*v);
        s.with(&[a]).unwrap().record(*v);
    }
    let mut options = RenderOptions::new()
        .scale("h", case.scale)
        .unwrap()
        .scale("g", case.scale)
        .unwrap()
        .scale("s", case.scale)
        .unwrap()
        .summary("s", case.quantiles.clone())
        .unwrap();
    let mut expect = Expect::default();
    for f in ["h", "g", "s"] {
        expect.scales.insert(f.to_owned(), case.scale);
    }
    expect
        .summaries
        .insert("s".to_owned(), case.quantiles.clone());
    if let Some(b) = &case.boundaries {
        options = options.buckets("h", b.clone()).unwrap();
        expect.buckets.insert("h".to_owned(), b.clone());
    }
    (registry, options, expect)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn arbitrary_registries_parse_back(case in case()) {
        let (registry, options, mut expect) = build(&case);
        let snapshot = registry.snapshot();
        let text = prometheus::render_with(&snapshot, &options);
        expect.check(&snapshot, &parse_text(&text));
        let om = prometheus::render_openmetrics_with(&snapshot, &options);
        expect.openmetrics = true;
        expect.check(&snapshot, &parse_openmetrics(&om));
        prop_assert!(om.ends_with("# EOF\n"));
    }
}
