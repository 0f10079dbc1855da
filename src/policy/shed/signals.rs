//! CPU and memory signals for the [`LoadShedder`](super::LoadShedder): an injectable trait, a
//! sampler that reads Linux's `/proc`, a hand-set source for tests, and a source that has none.
//!
//! lift declared CPU and memory thresholds but never measured either (both were always 0).
//! Here they are measured, or honestly reported as unavailable (`None`), which the shedder
//! treats as "not overloaded" and shows in its decisions.
//!
//! # Orderings
//! [`ManualSignals`] keeps each value as `f64` bits in an `AtomicU64`, stored and loaded
//! `Relaxed`: a value publishes no other memory. [`ProcSampler`] keeps its previous CPU reading
//! behind a mutex (samples are taken at most once per shedder refresh).
#![forbid(unsafe_code)]

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::sync::{AtomicU64, Mutex, Ordering, lock};

/// One reading of the system's load: fractions in `[0, 1]`, `None` when unavailable.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SystemSample {
    /// CPU utilisation: busy time over total time since the previous sample.
    pub cpu: Option<f64>,
    /// Memory in use: `1 - available / total`.
    pub memory: Option<f64>,
}

impl SystemSample {
    /// A sample with these values.
    pub fn new(cpu: Option<f64>, memory: Option<f64>) -> SystemSample {
        SystemSample { cpu, memory }
    }

    /// NaN becomes unavailable; other values are clamped into `[0, 1]`.
    pub(crate) fn sanitized(self) -> SystemSample {
        let fix = |v: Option<f64>| v.filter(|x| !x.is_nan()).map(|x| x.clamp(0.0, 1.0));
        SystemSample {
            cpu: fix(self.cpu),
            memory: fix(self.memory),
        }
    }
}

/// A source of CPU and memory load. The shedder calls [`sample`](SystemSignals::sample) once
/// per refresh (by default once a second), never on the request path.
///
/// Values outside `[0, 1]` are clamped and NaN is taken as unavailable.
pub trait SystemSignals: Send + Sync + fmt::Debug + 'static {
    /// The current CPU and memory load.
    fn sample(&self) -> SystemSample;
}

impl<S: SystemSignals + ?Sized> SystemSignals for Arc<S> {
    fn sample(&self) -> SystemSample {
        (**self).sample()
    }
}

// === NoSignals ===

/// No CPU or memory signal: both always unavailable (the shedder then sheds on latency and
/// errors only).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSignals;

impl SystemSignals for NoSignals {
    fn sample(&self) -> SystemSample {
        SystemSample::default()
    }
}

// === ManualSignals ===

/// Signals set by hand, for tests, simulations, or a source weir cannot read itself (a
/// container's cgroup, a host agent). `Clone` shares the values.
///
/// ```
/// use weir::policy::shed::{ManualSignals, SystemSignals};
/// let s = ManualSignals::new();
/// assert_eq!(s.sample().cpu, None);
/// s.set_cpu(Some(0.95));
/// s.set_memory(Some(1.7)); // clamped when sampled
/// assert_eq!((s.sample().cpu, s.sample().memory), (Some(0.95), Some(1.7)));
/// ```
#[derive(Clone)]
pub struct ManualSignals {
    cpu: Arc<AtomicU64>,
    memory: Arc<AtomicU64>,
}

fn encode(v: Option<f64>) -> u64 {
    v.unwrap_or(f64::NAN).to_bits()
}

fn decode(bits: u64) -> Option<f64> {
    Some(f64::from_bits(bits)).filter(|x| !x.is_nan())
}

impl ManualSignals {
    /// Both signals unavailable.
    pub fn new() -> ManualSignals {
        ManualSignals {
            cpu: Arc::new(AtomicU64::new(encode(None))),
            memory: Arc::new(AtomicU64::new(encode(None))),
        }
    }

    /// Sets the CPU load (`None`: unavailable).
    pub fn set_cpu(&self, cpu: Option<f64>) {
        // Relaxed: module docs.
        self.cpu.store(encode(cpu), Ordering::Relaxed);
    }

    /// Sets the memory load (`None`: unavailable).
    pub fn set_memory(&self, memory: Option<f64>) {
        // Relaxed: module docs.
        self.memory.store(encode(memory), Ordering::Relaxed);
    }
}

impl Default for ManualSignals {
    fn default() -> ManualSignals {
        ManualSignals::new()
    }
}

impl SystemSignals for ManualSignals {
    fn sample(&self) -> SystemSample {
        // Relaxed: module docs.
        SystemSample {
            cpu: decode(self.cpu.load(Ordering::Relaxed)),
            memory: decode(self.memory.load(Ordering::Relaxed)),
        }
    }
}

impl fmt::Debug for ManualSignals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualSignals")
            .field("sample", &self.sample())
            .finish()
    }
}

// === ProcSampler ===

/// Jiffies from the aggregate `cpu` line of `/proc/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

/// Reads CPU and memory load from Linux's `/proc/stat` and `/proc/meminfo`.
///
/// CPU is the busy share of all CPU time between two samples (the first sample: since boot):
/// `user + nice + system + irq + softirq + steal` over that plus `idle + iowait`. Memory is
/// `1 - MemAvailable / MemTotal` (without `MemAvailable`, from kernels before 3.14:
/// `MemFree + Buffers + Cached` stands in). When a file cannot be read or parsed (not Linux, a
/// sandbox without `/proc`), that signal is `None`: the sampler never fails and never panics.
///
/// ```
/// use weir::policy::shed::{ProcSampler, SystemSignals};
/// let s = ProcSampler::new().sample();
/// if let Some(cpu) = s.cpu {
///     assert!((0.0..=1.0).contains(&cpu));
/// }
/// let missing = ProcSampler::with_paths("/nonexistent/stat", "/nonexistent/meminfo");
/// assert_eq!(missing.sample().memory, None);
/// ```
pub struct ProcSampler {
    stat: PathBuf,
    meminfo: PathBuf,
    previous: Mutex<Previous>,
}

#[derive(Default)]
struct Previous {
    times: Option<CpuTimes>,
    cpu: Option<f64>,
}

impl ProcSampler {
    /// Reads `/proc/stat` and `/proc/meminfo`.
    pub fn new() -> ProcSampler {
        ProcSampler::with_paths("/proc/stat", "/proc/meminfo")
    }

    /// Reads files in the formats of `/proc/stat` and `/proc/meminfo` at other paths (a
    /// container's view, or test fixtures).
    pub fn with_paths(stat: impl Into<PathBuf>, meminfo: impl Into<PathBuf>) -> ProcSampler {
        ProcSampler {
            stat: stat.into(),
            meminfo: meminfo.into(),
            previous: Mutex::new(Previous::default()),
        }
    }

    fn cpu(&self) -> Option<f64> {
        let now = std::fs::read_to_string(&self.stat)
            .ok()
            .and_then(|s| parse_cpu(&s));
        let mut prev = lock(&self.previous);
        let now = now?;
        let (busy, total) = match prev.times {
            Some(p) if now.total >= p.total && now.busy >= p.busy => {
                (now.busy - p.busy, now.total - p.total)
            }
            // First sample, or counters went backwards (a different file): since boot.
            _ => (now.busy, now.total),
        };
        prev.times = Some(now);
        if total == 0 {
            // No time passed since the previous sample: keep its value.
            return prev.cpu;
        }
        let cpu = (busy as f64 / total as f64).clamp(0.0, 1.0);
        prev.cpu = Some(cpu);
        Some(cpu)
    }

    fn memory(&self) -> Option<f64> {
        std::fs::read_to_string(&self.meminfo)
            .ok()
            .and_then(|s| parse_meminfo(&s))
    }
}

impl Default for ProcSampler {
    fn default() -> ProcSampler {
        ProcSampler::new()
    }
}

impl SystemSignals for ProcSampler {
    fn sample(&self) -> SystemSample {
        SystemSample {
            cpu: self.cpu(),
            memory: self.memory(),
        }
    }
}

impl fmt::Debug for ProcSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcSampler")
            .field("stat", &self.stat)
            .field("meminfo", &self.meminfo)
            .finish_non_exhaustive()
    }
}

/// Parses the aggregate `cpu ` line of `/proc/stat`.
fn parse_cpu(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest time is already in user/nice).
    let idle = get(3).saturating_add(get(4));
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .fold(0u64, |acc, &i| acc.saturating_add(get(i)));
    Some(CpuTimes {
        busy,
        total: busy.saturating_add(idle),
    })
}

/// Memory in use, `1 - available / total`, from `/proc/meminfo`.
fn parse_meminfo(meminfo: &str) -> Option<f64> {
    let field = |name: &str| -> Option<u64> {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
    };
    let total = field("MemTotal").filter(|&t| t > 0)?;
    let available = match field("MemAvailable") {
        Some(a) => a,
        None => field("MemFree")?
            .saturating_add(field("Buffers").unwrap_or(0))
            .saturating_add(field("Cached").unwrap_or(0)),
    };
    Some((1.0 - available as f64 / total as f64).clamp(0.0, 1.0))
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let s = "cpu  100 20 30 800 50 5 5 0 7 0\ncpu0 1 2 3 4\nintr 1\n";
        assert_eq!(
            parse_cpu(s),
            Some(CpuTimes {
                busy: 160,
                total: 1010
            })
        );
        assert_eq!(parse_cpu("cpu  1 2 3\n"), None);
        assert_eq!(parse_cpu("cpu  a b c d\n"), None);
        assert_eq!(parse_cpu("intr 1\n"), None);
        assert_eq!(
            parse_cpu("cpu 1 1 1 1\n"),
            Some(CpuTimes { busy: 3, total: 4 })
        );
    }

    #[test]
    fn parses_meminfo() {
        let m = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\n";
        assert_eq!(parse_meminfo(m), Some(0.75));
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 100 kB\nCached: 300 kB\n";
        assert_eq!(parse_meminfo(old), Some(0.5));
        assert_eq!(parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n"), None);
        assert_eq!(parse_meminfo("garbage"), None);
        assert_eq!(
            parse_meminfo("MemTotal: 10 kB\nMemAvailable: 20 kB\n"),
            Some(0.0)
        );
    }

    #[test]
    fn sampler_reads_deltas_between_samples() {
        let dir = std::env::temp_dir().join(format!("weir-shed-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (stat, mem) = (dir.join("stat"), dir.join("meminfo"));
        std::fs::write(&stat, "cpu  50 0 50 100 0 0 0 0\n").unwrap();
        std::fs::write(&mem, "MemTotal: 100 kB\nMemAvailable: 10 kB\n").unwrap();
        let s = ProcSampler::with_paths(&stat, &mem);
        assert_eq!(s.sample(), SystemSample::new(Some(0.5), Some(0.9)));
        // +90 busy, +10 idle since the previous sample.
        std::fs::write(&stat, "cpu  140 0 50 110 0 0 0 0\n").unwrap();
        assert_eq!(s.sample().cpu, Some(0.9));
        // No time passed: the previous value stands.
        assert_eq!(s.sample().cpu, Some(0.9));
        std::fs::write(&stat, "not a stat file").unwrap();
        assert_eq!(s.sample().cpu, None);
        assert!(format!("{s:?}").contains("ProcSampler"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn real_proc_or_clean_fallback() {
        let s = ProcSampler::default().sample();
        for v in [s.cpu, s.memory].into_iter().flatten() {
            assert!((0.0..=1.0).contains(&v));
        }
        if cfg!(target_os = "linux") && std::path::Path::new("/proc/meminfo").exists() {
            assert!(s.memory.is_some());
        }
    }

    #[test]
    fn manual_and_none() {
        let m = ManualSignals::default();
        m.set_cpu(Some(f64::NAN));
        assert_eq!(m.sample().cpu, None);
        m.set_cpu(Some(2.0));
        m.set_memory(Some(-1.0));
        assert_eq!(
            m.sample().sanitized(),
            SystemSample::new(Some(1.0), Some(0.0))
        );
        let shared: Arc<dyn SystemSignals> = Arc::new(m.clone());
        assert_eq!(shared.sample().cpu, Some(2.0));
        assert_eq!(NoSignals.sample(), SystemSample::default());
        assert!(format!("{m:?}").contains("ManualSignals"));
    }
}
