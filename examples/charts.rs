//! SVG charts of a contention CSV: one chart per group of cases, threads on x, ops/sec on y.
//!
//! ```sh
//! cargo run --release --example contention -- --threads 1,2,4 --millis 300 > run.csv
//! cargo run --release --example charts -- run.csv --out docs/charts --machine "2-core Xeon (KVM)"
//! ```
//!
//! The input is the CSV that `examples/contention.rs` prints:
//! `case,threads,ops_per_sec,ns_per_op_per_thread`, one row per case and thread count.
//!
//! Cases are grouped by what they measure. `examples/contention.rs` names cases
//! `<implementation>/<case>` with the implementation `weir` or `base`; their groups are
//! `counter` (`weir/counter`, `base/atomic_shared`, `base/striped_padded`) and `histogram`
//! (`weir/histogram`, `base/hdr_recorder`, `base/hdr_mutex`); an unknown `weir/` or `base/` case
//! goes to `other`. Other files name cases `<group>/<case>` (as `../shared/anchors/`
//! does: `counter/atomic_shared`, `hist/hdr_mutex`, `snapshot/arcswap_load`), and the part
//! before the slash is the group. A case without a slash goes to `other`.
//!
//! Each group becomes `<out>/<name>-<group>.svg`, where `<name>` is the CSV's file name without
//! its extension (or `--name`). Thread counts are spaced evenly on the x axis (they are usually
//! powers of two); ops/sec is on a log scale (`--linear` for a linear one). The title names the
//! group and the machine given with `--machine`.
//!
//! Options: `--out DIR` (default `.`), `--machine TEXT` (default: none in the title), `--name
//! NAME`, `--linear`. A bad argument or a malformed CSV prints the reason and exits with status 2.

use std::collections::BTreeSet;
use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{SegmentValue, SegmentedCoord};
use plotters::coord::types::RangedCoordi32;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const HEADER: &str = "case,threads,ops_per_sec,ns_per_op_per_thread";
const USAGE: &str = "usage: charts CSV [--out DIR] [--machine TEXT] [--name NAME] [--linear]";

/// Line colors, in order of first appearance of each case in its group (Tableau 10).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The groups of `examples/contention.rs`'s cases.
const CONTENTION_GROUPS: [(&str, &str); 6] = [
    ("counter", "counter"),
    ("atomic_shared", "counter"),
    ("striped_padded", "counter"),
    ("histogram", "histogram"),
    ("hdr_recorder", "histogram"),
    ("hdr_mutex", "histogram"),
];

// === arguments ===

#[derive(Debug)]
struct Args {
    csv: PathBuf,
    out: PathBuf,
    machine: Option<String>,
    name: Option<String>,
    linear: bool,
}

/// A reason to stop, printed before exiting with status 2.
#[derive(Debug)]
struct Failure(String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Failure {}

fn fail<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(msg.into()))
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, Failure> {
    let (mut csv, mut out, mut machine, mut name, mut linear) = (None, None, None, None, false);
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| match it.next() {
            Some(v) => Ok(v),
            None => fail(format!("{flag} needs a value")),
        };
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--machine" => machine = Some(value("--machine")?),
            "--name" => name = Some(value("--name")?),
            "--linear" => linear = true,
            "-h" | "--help" => return fail(""),
            s if s.starts_with('-') => return fail(format!("unknown option {s}")),
            _ if csv.is_none() => csv = Some(PathBuf::from(arg)),
            _ => return fail(format!("unexpected argument {arg}")),
        }
    }
    let Some(csv) = csv else {
        return fail("no CSV file given");
    };
    Ok(Args {
        csv,
        out: out.unwrap_or_else(|| PathBuf::from(".")),
        machine,
        name,
        linear,
    })
}

// === the CSV ===

#[derive(Clone, Debug)]
struct Row {
    case: String,
    threads: u32,
    ops_per_sec: f64,
}

fn parse_csv(text: &str) -> Result<Vec<Row>, Failure> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    match lines.next() {
        Some((_, h)) if h.replace(' ', "") == HEADER => {}
        Some((n, h)) => return fail(format!("line {n}: expected the header {HEADER}, got {h}")),
        None => return fail("empty CSV"),
    }
    let mut rows = Vec::new();
    for (n, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [case, threads, ops, ns] = fields[..] else {
            return fail(format!("line {n}: expected 4 fields, got {}", fields.len()));
        };
        let threads: u32 = match threads.parse() {
            Ok(t) if t > 0 => t,
            _ => return fail(format!("line {n}: bad thread count {threads:?}")),
        };
        let ops_per_sec: f64 = match ops.parse() {
            Ok(v) if f64::is_finite(v) && v > 0.0 => v,
            _ => return fail(format!("line {n}: bad ops_per_sec {ops:?}")),
        };
        if ns.parse::<f64>().is_err() {
            return fail(format!("line {n}: bad ns_per_op_per_thread {ns:?}"));
        }
        if case.is_empty() {
            return fail(format!("line {n}: empty case name"));
        }
        rows.push(Row {
            case: case.to_owned(),
            threads,
            ops_per_sec,
        });
    }
    if rows.is_empty() {
        return fail("no data rows");
    }
    Ok(rows)
}

fn group_of(case: &str) -> String {
    match case.split_once('/') {
        Some(("weir" | "base", what)) => CONTENTION_GROUPS
            .iter()
            .find(|(c, _)| *c == what)
            .map_or("other", |(_, g)| g)
            .to_owned(),
        Some((group, _)) if !group.is_empty() => group.to_owned(),
        _ => "other".to_owned(),
    }
}

/// One chart: its cases, in order of first appearance, each with its points.
struct Group {
    name: String,
    cases: Vec<(String, Vec<(u32, f64)>)>,
}

fn group_rows(rows: &[Row]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for r in rows {
        let g = group_of(&r.case);
        let gi = match groups.iter().position(|x| x.name == g) {
            Some(i) => i,
            None => {
                groups.push(Group {
                    name: g,
                    cases: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let cases = &mut groups[gi].cases;
        match cases.iter_mut().find(|(c, _)| *c == r.case) {
            Some((_, pts)) => pts.push((r.threads, r.ops_per_sec)),
            None => cases.push((r.case.clone(), vec![(r.threads, r.ops_per_sec)])),
        }
    }
    for g in &mut groups {
        for (_, pts) in &mut g.cases {
            pts.sort_by_key(|p| p.0);
        }
    }
    groups
}

// === drawing ===

/// `1.7 G`, `120 M`, `950 k`.
fn si(v: f64) -> String {
    let (scaled, unit) = if v >= 1e9 {
        (v / 1e9, " G")
    } else if v >= 1e6 {
        (v / 1e6, " M")
    } else if v >= 1e3 {
        (v / 1e3, " k")
    } else {
        (v, "")
    };
    let digits = if scaled < 10.0 && scaled.fract().abs() > 1e-9 {
        1
    } else {
        0
    };
    format!("{scaled:.digits$}{unit}")
}

/// Gridlines of a log axis over `lo..hi`: labelled ones at 1, 2 and 5 times a power of ten,
/// light ones at the other integer multiples.
fn log_grid(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let (mut bold, mut light) = (Vec::new(), Vec::new());
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in 1..10 {
            let v = decade * f64::from(m);
            if v >= lo && v <= hi {
                if [1, 2, 5].contains(&m) {
                    &mut bold
                } else {
                    &mut light
                }
                .push(v);
            }
        }
        decade *= 10.0;
    }
    (bold, light)
}

type XCoord = SegmentedCoord<RangedCoordi32>;

/// The style of a case's line: a color by position, thicker for weir's own cases.
fn case_style(i: usize, case: &str) -> ShapeStyle {
    let width = if case.starts_with("weir/") { 3 } else { 2 };
    COLORS[i % COLORS.len()].stroke_width(width)
}

/// Draws every case of `group` as a line with markers.
fn plot_cases<'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<XCoord, Y>>,
    group: &Group,
    slot: impl Fn(u32) -> i32,
) -> Result<(), Box<dyn Error>> {
    for (i, (case, pts)) in group.cases.iter().enumerate() {
        let points = pts
            .iter()
            .map(|&(t, v)| (SegmentValue::CenterOf(slot(t)), v));
        chart.draw_series(LineSeries::new(points, case_style(i, case)).point_size(4))?;
    }
    Ok(())
}

/// The legend, in its own panel beside the chart so that it never hides a line.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    group: &Group,
) -> Result<(), Box<dyn Error>> {
    let font = ("sans-serif", 15)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (case, _)) in group.cases.iter().enumerate() {
        let y = 40 + 26 * i32::try_from(i).unwrap_or(i32::MAX / 32);
        let style = case_style(i, case);
        area.draw(&PathElement::new(vec![(8, y), (40, y)], style))?;
        area.draw(&Circle::new((24, y), 4, style))?;
        area.draw(&Text::new(case.as_str(), (50, y), font.clone()))?;
    }
    Ok(())
}

fn draw(group: &Group, path: &Path, args: &Args) -> Result<(), Box<dyn Error>> {
    let threads: Vec<u32> = group
        .cases
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.0))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let slot = |t: u32| threads.iter().position(|&x| x == t).unwrap_or(0) as i32;
    let x_fmt = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => usize::try_from(*i)
            .ok()
            .and_then(|i| threads.get(i))
            .map_or(String::new(), u32::to_string),
        _ => String::new(),
    };
    let values = group
        .cases
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let title = match &args.machine {
        Some(m) => format!("{}: ops/sec by threads, {m}", group.name),
        None => format!("{}: ops/sec by threads", group.name),
    };

    let root = SVGBackend::new(path, (1040, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let body = root.titled(&title, ("sans-serif", 24))?;
    let (plot, legend) = body.split_horizontally(760);
    draw_legend(&legend, group)?;
    let mut builder = ChartBuilder::on(&plot);
    builder
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(84);
    // An i32 range is inclusive here: one segment per thread count.
    let x: XCoord = (0..threads.len() as i32 - 1).into_segmented();
    if args.linear {
        let mut chart = builder.build_cartesian_2d(x, 0f64..hi * 1.1)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .bold_line_style(BLACK.mix(0.15))
            .light_line_style(BLACK.mix(0.04))
            .x_desc("threads")
            .y_desc("ops/sec")
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|v| si(*v))
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 15))
            .draw()?;
        plot_cases(&mut chart, group, slot)?;
    } else {
        let (lo, hi) = (lo / 1.6, hi * 1.6);
        let (bold, light) = log_grid(lo, hi);
        let y = (lo..hi)
            .log_scale()
            .with_key_points(bold)
            .with_light_points(light);
        let mut chart = builder.build_cartesian_2d(x, y)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .bold_line_style(BLACK.mix(0.15))
            .light_line_style(BLACK.mix(0.05))
            .x_desc("threads")
            .y_desc("ops/sec (log scale)")
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|v| si(*v))
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 15))
            .draw()?;
        plot_cases(&mut chart, group, slot)?;
    }
    root.present()?;
    Ok(())
}

fn run(args: &Args) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let text = std::fs::read_to_string(&args.csv)
        .map_err(|e| Failure(format!("reading {}: {e}", args.csv.display())))?;
    let rows = parse_csv(&text)?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .csv
            .file_stem()
            .map_or("chart".to_owned(), |s| s.to_string_lossy().into_owned()),
    };
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Failure(format!("creating {}: {e}", args.out.display())))?;
    let mut written = Vec::new();
    for group in group_rows(&rows) {
        let path = args.out.join(format!("{name}-{}.svg", group.name));
        draw(&group, &path, args)?;
        written.push(path);
    }
    Ok(written)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(Failure(msg)) => {
            if !msg.is_empty() {
                eprintln!("charts: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(paths) => {
            for p in paths {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("charts: {e}");
            ExitCode::from(2)
        }
    }
}
