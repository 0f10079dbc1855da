//! lift's load shedder, rebuilt on weir: a shedding rate from weighted overload signals, and
//! lift's five strategies.
//!
//! # Signals and the base rate
//! Every refresh (by default once a second, lift's tick) the shedder reads:
//! - CPU and memory load from a [`SystemSignals`] source (by default [`ProcSampler`]);
//! - the request latency over the metrics window (default 30 s), from a weir
//!   [`RollingHistogram`]: mean, p95 and p99 (lift sorted its last 1,000 samples);
//! - the error rate over the same window (errors / completed requests), from weir
//!   [`RollingCounter`]s (lift's tumbling counters were reset with a racy load-then-store).
//!
//! and computes, with thresholds `T`:
//!
//! > `cpuF = max(0, (cpu - T_cpu) / (1 - T_cpu))`, `memF` and `errF` likewise,
//! > `latF = max(0, (latency - T_lat) / T_lat)`,
//! > `base = clamp(0.3 cpuF + 0.3 memF + 0.3 latF + 0.1 errF, min_rate, max_rate)`.
//!
//! An unavailable CPU or memory reading counts as no load. The numbers are published through
//! `arc-swap` as a [`ShedderView`]; decisions read it lock-free and may be up to one refresh
//! old. The refresh is done by whichever request finds the view stale (one per period, elected
//! by compare-and-swap), or by [`LoadShedder::refresh`] if automatic refresh is turned off.
//!
//! # Strategies
//! Each decision computes a rate, draws `u` uniform in `[0, 1)`, and sheds when `u < rate`:
//! - [`Strategy::Random`]: `rate = base`.
//! - [`Strategy::Priority`]: `rate = min(base, cap[p]) / (1 + 0.1 × value(p))`, with lift's
//!   priority values (critical 10 ... background 1) and per-priority caps.
//! - [`Strategy::Adaptive`]: a per-request controller on latency. With `a` the adaptation rate
//!   and `L` the window latency: if `L <= target`, `rate -= a`; else `rate = min(rate + a,
//!   (L / target - 1) × 0.5)`; then clamped into `[min_rate, max_rate]`. The rate is one
//!   `AtomicU64` updated by compare-and-swap, so concurrent requests never lose an update
//!   (lift's read-modify-write on a shared float did).
//! - [`Strategy::Circuit`]: `rate = clamp(0.25 × overloaded signals, min_rate, max_rate)`,
//!   counting CPU, memory, latency and error rate above their thresholds.
//! - [`Strategy::Custom`]: a [`ShedPolicy`] (any `Fn(Priority, &ShedderView) -> f64`); its rate
//!   is clamped into `[0, 1]`, NaN taken as 0.
//!
//! # Orderings
//! - The published view is an `ArcSwap` (release store, acquire load): a decision sees one
//!   refresh's numbers together. Racing refreshes keep the newer view.
//! - The refresh claim is `Due` (`Relaxed`: elects a refresher only).
//! - The adaptive rate is `f64` bits in an `AtomicU64`, updated by a `Relaxed` compare-and-swap
//!   loop (`fetch_update`): atomicity alone makes every update count; the rate publishes no
//!   other memory.
//! - Counters, gauges and histograms are weir's (see their modules).
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::signals::{ProcSampler, SystemSignals};
use super::{Due, Priority, Verdict, clamp_or_low, in_range, nanos};
use crate::clock::{SharedClock, SystemClock};
use crate::counter::{Counter, FloatGauge, Gauge};
use crate::error::RegistryError;
use crate::histogram::Histogram;
use crate::policy::{Mode, Rng};
use crate::registry::Registry;
use crate::sync::{AtomicU64, Ordering};
use crate::window::{RollingCounter, RollingHistogram, WindowError};

/// Default per-priority caps of [`Strategy::Priority`] (critical first).
const DEFAULT_CAPS: [f64; 5] = [0.1, 0.3, 0.5, 0.8, 0.9];

// === Strategy, ShedPolicy ===

/// A user-supplied shedding rule for [`Strategy::Custom`]: the probability in `[0, 1]` of
/// shedding a request of `priority`, given the latest signals. Closures implement it.
///
/// ```
/// use weir::policy::shed::{Priority, ShedPolicy, ShedderView, Strategy};
/// let never_critical = |p: Priority, v: &ShedderView| {
///     if p == Priority::Critical { 0.0 } else { v.base_rate }
/// };
/// let _strategy = Strategy::custom(never_critical);
/// ```
pub trait ShedPolicy: Send + Sync + 'static {
    /// The shedding probability for this request (clamped into `[0, 1]`; NaN means 0).
    fn rate(&self, priority: Priority, view: &ShedderView) -> f64;
}

impl<F> ShedPolicy for F
where
    F: Fn(Priority, &ShedderView) -> f64 + Send + Sync + 'static,
{
    fn rate(&self, priority: Priority, view: &ShedderView) -> f64 {
        self(priority, view)
    }
}

/// How a [`LoadShedder`] turns its signals into a decision (module docs give the formulas).
#[derive(Clone, Default)]
pub enum Strategy {
    /// Shed with probability equal to the base rate.
    #[default]
    Random,
    /// The base rate, capped per priority and scaled by `1 / (1 + 0.1 × value(p))`.
    Priority,
    /// A per-request latency controller (lift's adaptive strategy), lost-update free.
    Adaptive,
    /// 0.25 per overloaded signal.
    Circuit,
    /// A user rule.
    Custom(Arc<dyn ShedPolicy>),
}

impl Strategy {
    /// [`Strategy::Custom`] from a rule or closure.
    pub fn custom(policy: impl ShedPolicy) -> Strategy {
        Strategy::Custom(Arc::new(policy))
    }

    /// The strategy's name: `random`, `priority`, `adaptive`, `circuit`, `custom`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::Priority => "priority",
            Strategy::Adaptive => "adaptive",
            Strategy::Circuit => "circuit",
            Strategy::Custom(_) => "custom",
        }
    }
}

impl fmt::Debug for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which latency statistic of the window feeds the latency factor and the adaptive strategy.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum LatencyStatistic {
    /// The mean (lift's average). The default.
    #[default]
    Mean,
    /// A quantile in `[0, 1]` (0.99 for p99).
    Quantile(f64),
}

// === View, decision ===

/// The shedder's signals and base rate as of its latest refresh.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ShedderView {
    /// CPU load in `[0, 1]`, or `None` when unavailable.
    pub cpu: Option<f64>,
    /// Memory load in `[0, 1]`, or `None` when unavailable.
    pub memory: Option<f64>,
    /// The latency statistic the formulas use (mean by default) over the window.
    pub latency: Duration,
    /// Mean latency over the window.
    pub mean_latency: Duration,
    /// 95th percentile latency over the window.
    pub p95_latency: Duration,
    /// 99th percentile latency over the window.
    pub p99_latency: Duration,
    /// Completed requests in the window.
    pub completed: u64,
    /// Errors among them.
    pub errors: u64,
    /// `errors / completed` (0 when nothing completed).
    pub error_rate: f64,
    /// `cpuF`.
    pub cpu_factor: f64,
    /// `memF`.
    pub memory_factor: f64,
    /// `latF`.
    pub latency_factor: f64,
    /// `errF`.
    pub error_factor: f64,
    /// The clamped weighted sum of the factors.
    pub base_rate: f64,
    /// How many of CPU, memory, latency and error rate are above their thresholds.
    pub overloaded_signals: u8,
    /// When the view was computed (shedder clock).
    pub at: Duration,
}

impl ShedderView {
    fn empty(at: Duration, base_rate: f64) -> ShedderView {
        ShedderView {
            cpu: None,
            memory: None,
            latency: Duration::ZERO,
            mean_latency: Duration::ZERO,
            p95_latency: Duration::ZERO,
            p99_latency: Duration::ZERO,
            completed: 0,
            errors: 0,
            error_rate: 0.0,
            cpu_factor: 0.0,
            memory_factor: 0.0,
            latency_factor: 0.0,
            error_factor: 0.0,
            base_rate,
            overloaded_signals: 0,
            at,
        }
    }
}

/// Which strategy decided, with its inputs.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ShedReason {
    /// [`Strategy::Random`]: the rate is the base rate.
    Random,
    /// [`Strategy::Priority`]: `rate = min(base, cap) × factor`.
    Priority {
        /// The priority's cap.
        cap: f64,
        /// `1 / (1 + 0.1 × value(p))`.
        factor: f64,
    },
    /// [`Strategy::Adaptive`]: the controller moved from `previous` to the decision's rate.
    Adaptive {
        /// The adaptive rate before this request's update.
        previous: f64,
        /// The target latency.
        target: Duration,
    },
    /// [`Strategy::Circuit`]: 0.25 per overloaded signal (the count is in the view).
    Circuit,
    /// [`Strategy::Custom`].
    Custom,
}

/// One admission decision of a [`LoadShedder`]: verdict, reason and numbers.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ShedDecision {
    /// Admit, shed, or (shadow mode) would shed.
    pub verdict: Verdict,
    /// The request's priority.
    pub priority: Priority,
    /// The strategy and its own inputs.
    pub reason: ShedReason,
    /// The shedding probability applied to this request.
    pub rate: f64,
    /// The uniform draw in `[0, 1)` (shed when below `rate`); `None` when the rate was 0.
    pub draw: Option<f64>,
    /// The signals the decision used.
    pub view: ShedderView,
}

impl ShedDecision {
    /// Whether the request goes ahead (see [`Verdict::admits`]).
    pub fn admits(&self) -> bool {
        self.verdict.admits()
    }
}

impl fmt::Display for ShedDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "load shedding: {:?} {} request at rate {:.3} (base {:.3})",
            self.verdict, self.priority, self.rate, self.view.base_rate
        )
    }
}

impl std::error::Error for ShedDecision {}

// === Ticket ===

/// How an admitted request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TicketOutcome {
    /// Completed without error: its latency is recorded.
    Success,
    /// Completed with an error: its latency is recorded and it counts towards the error rate.
    Error,
    /// Abandoned (cancelled, or the ticket was dropped): nothing is recorded but the end of the
    /// active request.
    Abandoned,
}

/// An admitted request. It is counted in `load_shedding_active_requests` until it ends; ending
/// it with [`success`](Ticket::success) or [`error`](Ticket::error) records its latency
/// (measured on the shedder's clock) and outcome into the windows the signals come from.
/// Dropping it abandons it.
#[must_use = "a ticket tracks one admitted request; end it with success() or error()"]
pub struct Ticket {
    shedder: Arc<Inner>,
    start: Duration,
    decision: ShedDecision,
    done: bool,
}

impl Ticket {
    /// The decision that admitted the request (in shadow mode, possibly a
    /// [`Verdict::ShadowReject`]).
    pub fn decision(&self) -> &ShedDecision {
        &self.decision
    }

    /// When the request was admitted (shedder clock).
    pub fn started_at(&self) -> Duration {
        self.start
    }

    /// The request succeeded.
    pub fn success(self) {
        self.finish(TicketOutcome::Success);
    }

    /// The request failed.
    pub fn error(self) {
        self.finish(TicketOutcome::Error);
    }

    /// Ends the request with `outcome`, its latency measured on the shedder's clock.
    pub fn finish(mut self, outcome: TicketOutcome) {
        self.end(outcome, None);
    }

    /// Ends the request with `outcome` and a latency measured by the caller.
    pub fn finish_with_latency(mut self, outcome: TicketOutcome, latency: Duration) {
        self.end(outcome, Some(latency));
    }

    fn end(&mut self, outcome: TicketOutcome, latency: Option<Duration>) {
        if self.done {
            return;
        }
        self.done = true;
        let inner = &*self.shedder;
        inner.active.dec();
        if outcome == TicketOutcome::Abandoned {
            return;
        }
        let latency = latency.unwrap_or_else(|| inner.clock.now().saturating_sub(self.start));
        inner.latency.record(nanos(latency));
        // Completed before errors: a refresh reads errors first, so it never sees an error
        // whose completion it misses (the counters' Release/Acquire cross-metric edge).
        inner.completed.inc();
        if outcome == TicketOutcome::Error {
            inner.errors.inc();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.end(TicketOutcome::Abandoned, None);
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("started_at", &self.start)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

// === Builder ===

#[derive(Clone, Copy, Debug)]
struct Config {
    cpu_threshold: f64,
    memory_threshold: f64,
    latency_threshold: Duration,
    error_rate_threshold: f64,
    target_latency: Duration,
    max_rate: f64,
    min_rate: f64,
    adaptation_rate: f64,
    statistic: LatencyStatistic,
}

/// Builds a [`LoadShedder`]. Defaults are lift's: thresholds CPU 0.8, memory 0.85, latency 5 s,
/// error rate 0.1; target latency 100 ms; rates in `[0, 0.9]`; adaptation rate 0.1; a 30 s
/// metrics window in 1 s steps; refreshed every second.
pub struct LoadShedderBuilder {
    config: Config,
    strategy: Strategy,
    caps: [f64; 5],
    signals: Option<Box<dyn SystemSignals>>,
    window: Duration,
    resolution: Duration,
    refresh: Duration,
    auto_refresh: bool,
    mode: Mode,
    seed: Option<u64>,
    clock: Option<SharedClock>,
    registry: Option<Registry>,
}

impl fmt::Debug for LoadShedderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShedderBuilder")
            .field("config", &self.config)
            .field("strategy", &self.strategy)
            .field("caps", &self.caps)
            .field("signals", &self.signals)
            .field("window", &self.window)
            .field("refresh", &self.refresh)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// A [`LoadShedder`] could not be built.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ShedderBuildError {
    /// A CPU, memory or error-rate threshold must be in `[0, 1)` (at 1 its factor divides by
    /// zero).
    Threshold {
        /// Which threshold.
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A latency threshold or target must be positive.
    ZeroLatency {
        /// Which (`latency_threshold`, `target_latency`).
        name: &'static str,
    },
    /// Rates must satisfy `0 <= min_rate <= max_rate <= 1`.
    RateRange {
        /// The requested minimum.
        min: f64,
        /// The requested maximum.
        max: f64,
    },
    /// The adaptation rate must be in `(0, 1]`.
    AdaptationRate {
        /// The rejected value.
        value: f64,
    },
    /// A priority cap must be in `[0, 1]`.
    PriorityCap {
        /// Whose cap.
        priority: Priority,
        /// The rejected value.
        cap: f64,
    },
    /// A latency quantile must be in `[0, 1]`.
    Quantile {
        /// The rejected value.
        quantile: f64,
    },
    /// The metrics window and its resolution do not make a rolling window.
    Window(WindowError),
    /// Registering the shedder's metrics failed. Use another registry, or remove the
    /// conflicting metric.
    Registry(RegistryError),
}

impl fmt::Display for ShedderBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShedderBuildError::Threshold { name, value } => {
                write!(f, "{name} must be in [0, 1), got {value}")
            }
            ShedderBuildError::ZeroLatency { name } => write!(f, "{name} must be positive"),
            ShedderBuildError::RateRange { min, max } => write!(
                f,
                "rates must satisfy 0 <= min_rate <= max_rate <= 1, got min {min}, max {max}"
            ),
            ShedderBuildError::AdaptationRate { value } => {
                write!(f, "adaptation rate must be in (0, 1], got {value}")
            }
            ShedderBuildError::PriorityCap { priority, cap } => {
                write!(
                    f,
                    "the cap of priority {priority} must be in [0, 1], got {cap}"
                )
            }
            ShedderBuildError::Quantile { quantile } => {
                write!(f, "latency quantile must be in [0, 1], got {quantile}")
            }
            ShedderBuildError::Window(e) => write!(f, "shedder metrics window: {e}"),
            ShedderBuildError::Registry(e) => write!(f, "registering shedder metrics: {e}"),
        }
    }
}

impl std::error::Error for ShedderBuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShedderBuildError::Window(e) => Some(e),
            ShedderBuildError::Registry(e) => Some(e),
            _ => None,
        }
    }
}

impl LoadShedderBuilder {
    /// The strategy (default [`Strategy::Random`]).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }
    /// CPU threshold in `[0, 1)` (default 0.8).
    pub fn cpu_threshold(mut self, t: f64) -> Self {
        self.config.cpu_threshold = t;
        self
    }
    /// Memory threshold in `[0, 1)` (default 0.85).
    pub fn memory_threshold(mut self, t: f64) -> Self {
        self.config.memory_threshold = t;
        self
    }
    /// Latency threshold of the latency factor (default 5 s).
    pub fn latency_threshold(mut self, t: Duration) -> Self {
        self.config.latency_threshold = t;
        self
    }
    /// Error-rate threshold in `[0, 1)` (default 0.1).
    pub fn error_rate_threshold(mut self, t: f64) -> Self {
        self.config.error_rate_threshold = t;
        self
    }
    /// Target latency of the adaptive strategy (default 100 ms).
    pub fn target_latency(mut self, t: Duration) -> Self {
        self.config.target_latency = t;
        self
    }
    /// Highest shedding rate (default 0.9).
    pub fn max_rate(mut self, r: f64) -> Self {
        self.config.max_rate = r;
        self
    }
    /// Lowest shedding rate (default 0).
    pub fn min_rate(mut self, r: f64) -> Self {
        self.config.min_rate = r;
        self
    }
    /// Step of the adaptive strategy, in `(0, 1]` (default 0.1).
    pub fn adaptation_rate(mut self, r: f64) -> Self {
        self.config.adaptation_rate = r;
        self
    }
    /// The latency statistic used by the formulas (default the mean).
    pub fn latency_statistic(mut self, s: LatencyStatistic) -> Self {
        self.config.statistic = s;
        self
    }
    /// The cap of one priority under [`Strategy::Priority`], in `[0, 1]` (defaults: critical
    /// 0.1, high 0.3, normal 0.5, low 0.8, background 0.9).
    pub fn priority_cap(mut self, priority: Priority, cap: f64) -> Self {
        self.caps[priority.index()] = cap;
        self
    }
    /// The CPU and memory source (default [`ProcSampler::new`]).
    pub fn signals(mut self, signals: impl SystemSignals) -> Self {
        self.signals = Some(Box::new(signals));
        self
    }
    /// The window latency and error rate are computed over (default 30 s).
    pub fn metrics_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
    /// The window's step (default 1 s; the window must be a whole multiple of it).
    pub fn window_resolution(mut self, resolution: Duration) -> Self {
        self.resolution = resolution;
        self
    }
    /// How often the signals and base rate are recomputed (default 1 s, lift's tick; zero:
    /// on every decision).
    pub fn refresh_interval(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }
    /// Whether decisions refresh a stale view themselves (default true). Turn it off to call
    /// [`LoadShedder::refresh`] from a thread of your own, keeping every refresh off the request
    /// path.
    pub fn auto_refresh(mut self, on: bool) -> Self {
        self.auto_refresh = on;
        self
    }
    /// Enforce (default) or shadow.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// Seeds the random draws (default: from entropy).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// The clock (default: a new [`SystemClock`]).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }
    /// Records the shedder's metrics into `registry`.
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    fn validate(&self) -> Result<(), ShedderBuildError> {
        let c = &self.config;
        for (name, value) in [
            ("cpu_threshold", c.cpu_threshold),
            ("memory_threshold", c.memory_threshold),
            ("error_rate_threshold", c.error_rate_threshold),
        ] {
            if !(in_range(value, 0.0, 1.0) && value < 1.0) {
                return Err(ShedderBuildError::Threshold { name, value });
            }
        }
        if c.latency_threshold.is_zero() {
            return Err(ShedderBuildError::ZeroLatency {
                name: "latency_threshold",
            });
        }
        if c.target_latency.is_zero() {
            return Err(ShedderBuildError::ZeroLatency {
                name: "target_latency",
            });
        }
        if !(in_range(c.min_rate, 0.0, 1.0)
            && in_range(c.max_rate, 0.0, 1.0)
            && c.min_rate <= c.max_rate)
        {
            return Err(ShedderBuildError::RateRange {
                min: c.min_rate,
                max: c.max_rate,
            });
        }
        if !(in_range(c.adaptation_rate, 0.0, 1.0) && c.adaptation_rate > 0.0) {
            return Err(ShedderBuildError::AdaptationRate {
                value: c.adaptation_rate,
            });
        }
        for p in Priority::ALL {
            let cap = self.caps[p.index()];
            if !in_range(cap, 0.0, 1.0) {
                return Err(ShedderBuildError::PriorityCap { priority: p, cap });
            }
        }
        if let LatencyStatistic::Quantile(q) = c.statistic
            && !in_range(q, 0.0, 1.0)
        {
            return Err(ShedderBuildError::Quantile { quantile: q });
        }
        Ok(())
    }

    /// Validates the parameters and builds the shedder.
    ///
    /// # Errors
    ///
    /// A [`ShedderBuildError`] naming what to fix.
    pub fn build(self) -> Result<LoadShedder, ShedderBuildError> {
        self.validate()?;
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(SystemClock::new()) as SharedClock);
        let (parts, metrics) = match &self.registry {
            Some(r) => {
                let (parts, m) = register(r).map_err(ShedderBuildError::Registry)?;
                (parts, Some(m))
            }
            None => (
                Parts {
                    latency: Histogram::new(),
                    completed: Counter::new(),
                    errors: Counter::new(),
                    active: Gauge::new(),
                },
                None,
            ),
        };
        let counter = |c: Counter| {
            RollingCounter::with_counter(c, self.window, self.resolution, clock.clone())
                .map_err(ShedderBuildError::Window)
        };
        let completed = counter(parts.completed)?;
        let errors = counter(parts.errors)?;
        let latency = RollingHistogram::with_histogram(
            parts.latency,
            self.window,
            self.resolution,
            clock.clone(),
        )
        .map_err(ShedderBuildError::Window)?;
        let now = clock.now();
        let c = self.config;
        let initial = ShedderView::empty(now, c.min_rate);
        if let Some(m) = &metrics {
            m.rate.set(c.min_rate);
        }
        Ok(LoadShedder {
            inner: Arc::new(Inner {
                config: c,
                strategy: self.strategy,
                caps: self.caps,
                signals: self.signals.unwrap_or_else(|| Box::new(ProcSampler::new())),
                latency,
                completed,
                errors,
                active: parts.active,
                clock,
                rng: match self.seed {
                    Some(s) => Rng::with_seed(s),
                    None => Rng::from_entropy(),
                },
                mode: self.mode,
                due: Due::new(self.refresh),
                auto_refresh: self.auto_refresh,
                view: ArcSwap::from_pointee(initial),
                adaptive_rate: AtomicU64::new(c.min_rate.to_bits()),
                metrics,
            }),
        })
    }
}

struct Parts {
    latency: Histogram,
    completed: Counter,
    errors: Counter,
    active: Gauge,
}

struct Metrics {
    admitted: Counter,
    shed: Counter,
    rate: FloatGauge,
}

fn register(r: &Registry) -> Result<(Parts, Metrics), RegistryError> {
    let requests = r.counter_family(
        "load_shedding_requests_total",
        "Load shedding decisions, by result (shed includes shadow-mode sheds)",
        &["result"],
    )?;
    let metrics = Metrics {
        admitted: requests.with(&["admitted"])?,
        shed: requests.with(&["shed"])?,
        rate: r.float_gauge(
            "load_shedding_rate",
            "Shedding rate of the load shedder's strategy at its last refresh",
            &[],
        )?,
    };
    let parts = Parts {
        latency: r.histogram(
            "load_shedding_latency_nanoseconds",
            "Latency of requests admitted by the load shedder",
            &[],
        )?,
        completed: r.counter(
            "load_shedding_completed_total",
            "Requests admitted by the load shedder that completed (success or error)",
            &[],
        )?,
        errors: r.counter(
            "load_shedding_errors_total",
            "Requests admitted by the load shedder that completed with an error",
            &[],
        )?,
        active: r.gauge(
            "load_shedding_active_requests",
            "Requests admitted by the load shedder and still running",
            &[],
        )?,
    };
    Ok((parts, metrics))
}

// === LoadShedder ===

struct Inner {
    config: Config,
    strategy: Strategy,
    caps: [f64; 5],
    signals: Box<dyn SystemSignals>,
    latency: RollingHistogram<SharedClock>,
    completed: RollingCounter<SharedClock>,
    errors: RollingCounter<SharedClock>,
    active: Gauge,
    clock: SharedClock,
    rng: Rng,
    mode: Mode,
    due: Due,
    auto_refresh: bool,
    view: ArcSwap<ShedderView>,
    adaptive_rate: AtomicU64,
    metrics: Option<Metrics>,
}

/// lift's load shedder on weir's statistics (module docs: signals, formulas, strategies).
///
/// `Clone` shares the shedder.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use weir::policy::shed::{LoadShedder, ManualSignals, Priority, Strategy};
/// use weir::{ManualClock, SharedClock};
///
/// let clock = ManualClock::new();
/// let signals = ManualSignals::new();
/// let shedder = LoadShedder::builder()
///     .strategy(Strategy::Random)
///     .signals(signals.clone())
///     .clock(Arc::new(clock.clone()) as SharedClock)
///     .seed(1)
///     .build()?;
/// let ticket = shedder.try_admit(Priority::Normal).expect("idle: nothing is shed");
/// ticket.success();
///
/// signals.set_cpu(Some(1.0)); // cpuF = 1: base rate 0.3
/// clock.advance(Duration::from_secs(1)); // the next decision refreshes
/// let d = match shedder.try_admit(Priority::Normal) {
///     Ok(ticket) => *ticket.decision(),
///     Err(shed) => shed,
/// };
/// assert!((d.view.base_rate - 0.3).abs() < 1e-12);
/// # Ok::<(), weir::policy::shed::ShedderBuildError>(())
/// ```
///
/// Metrics, when built with a registry:
///
/// | name | kind | meaning |
/// |---|---|---|
/// | `load_shedding_requests_total{result}` | counter | decisions: `admitted` or `shed` (shadow-mode sheds count as `shed`) |
/// | `load_shedding_rate` | float gauge | the strategy's rate at the last refresh (base rate; adaptive rate; circuit rate) |
/// | `load_shedding_active_requests` | gauge | admitted requests still running |
/// | `load_shedding_latency_nanoseconds` | histogram | latency of completed requests |
/// | `load_shedding_completed_total` | counter | completed requests |
/// | `load_shedding_errors_total` | counter | completed requests that failed |
#[derive(Clone)]
pub struct LoadShedder {
    inner: Arc<Inner>,
}

impl LoadShedder {
    /// A builder with lift's defaults.
    pub fn builder() -> LoadShedderBuilder {
        LoadShedderBuilder {
            config: Config {
                cpu_threshold: 0.8,
                memory_threshold: 0.85,
                latency_threshold: Duration::from_secs(5),
                error_rate_threshold: 0.1,
                target_latency: Duration::from_millis(100),
                max_rate: 0.9,
                min_rate: 0.0,
                adaptation_rate: 0.1,
                statistic: LatencyStatistic::Mean,
            },
            strategy: Strategy::Random,
            caps: DEFAULT_CAPS,
            signals: None,
            window: Duration::from_secs(30),
            resolution: Duration::from_secs(1),
            refresh: Duration::from_secs(1),
            auto_refresh: true,
            mode: Mode::Enforce,
            seed: None,
            clock: None,
            registry: None,
        }
    }

    /// Decides whether to admit a request of `priority`. Lock-free unless this call is the one
    /// elected to refresh a stale view.
    ///
    /// # Errors
    ///
    /// The [`ShedDecision`] that shed the request (enforce mode only: in shadow mode every
    /// request gets a ticket, whose [`decision`](Ticket::decision) tells what would have
    /// happened).
    // The decision is returned by value, as a plain `Copy` struct: a memcpy, where a box or an
    // `Arc` would cost an allocation or a shared reference count on every shed request.
    #[allow(clippy::result_large_err)]
    pub fn try_admit(&self, priority: Priority) -> Result<Ticket, ShedDecision> {
        let inner = &*self.inner;
        let view = self.current();
        let (rate, reason) = inner.rate(priority, &view);
        let draw = (rate > 0.0).then(|| inner.rng.next_f64());
        let shed = draw.is_some_and(|d| d < rate);
        let verdict = if shed {
            Verdict::rejecting(inner.mode)
        } else {
            Verdict::Admit
        };
        if let Some(m) = &inner.metrics {
            if shed { &m.shed } else { &m.admitted }.inc();
        }
        let decision = ShedDecision {
            verdict,
            priority,
            reason,
            rate,
            draw,
            view,
        };
        if verdict == Verdict::Reject {
            return Err(decision);
        }
        inner.active.inc();
        Ok(Ticket {
            shedder: self.inner.clone(),
            start: inner.clock.now(),
            decision,
            done: false,
        })
    }

    /// Recomputes the signals and base rate now, and publishes them.
    pub fn refresh(&self) -> ShedderView {
        let now = self.inner.clock.now();
        self.inner.due.refreshed(now);
        *self.inner.refresh(now)
    }

    /// The view as last published.
    pub fn view(&self) -> ShedderView {
        **self.inner.view.load()
    }

    /// The adaptive strategy's current rate (starts at `min_rate`).
    pub fn adaptive_rate(&self) -> f64 {
        // Relaxed: module docs.
        f64::from_bits(self.inner.adaptive_rate.load(Ordering::Relaxed))
    }

    /// Admitted requests that have not ended yet.
    pub fn active(&self) -> i64 {
        self.inner.active.get()
    }

    /// Whether the shedder enforces or only observes.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    fn current(&self) -> ShedderView {
        let inner = &*self.inner;
        if inner.auto_refresh {
            let now = inner.clock.now();
            if inner.due.claim(now) {
                return *inner.refresh(now);
            }
        }
        // A guard, not a full `Arc` clone: no shared reference-count traffic.
        **inner.view.load()
    }
}

impl Inner {
    /// Reads every signal and publishes a new view.
    fn refresh(&self, now: Duration) -> Arc<ShedderView> {
        let c = &self.config;
        let window = self.latency.snapshot();
        // Errors first: see `Ticket::end`.
        let errors = self.errors.sum();
        let completed = self.completed.sum();
        let error_rate = if completed == 0 {
            0.0
        } else {
            (errors as f64 / completed as f64).min(1.0)
        };
        let sys = self.signals.sample().sanitized();
        let mean = window.mean() as u64;
        let latency = match c.statistic {
            LatencyStatistic::Mean => mean,
            LatencyStatistic::Quantile(q) => window.value_at_quantile(q),
        };
        let ratio_factor = |v: f64, t: f64| ((v - t) / (1.0 - t)).max(0.0);
        let cpu_factor = ratio_factor(sys.cpu.unwrap_or(0.0), c.cpu_threshold);
        let memory_factor = ratio_factor(sys.memory.unwrap_or(0.0), c.memory_threshold);
        let error_factor = ratio_factor(error_rate, c.error_rate_threshold);
        let lat_t = nanos(c.latency_threshold) as f64;
        let latency_factor = ((latency as f64 - lat_t) / lat_t).max(0.0);
        let weighted =
            0.3 * cpu_factor + 0.3 * memory_factor + 0.3 * latency_factor + 0.1 * error_factor;
        let base_rate = clamp_or_low(weighted, c.min_rate, c.max_rate);
        let overloaded_signals = u8::from(sys.cpu.is_some_and(|v| v > c.cpu_threshold))
            + u8::from(sys.memory.is_some_and(|v| v > c.memory_threshold))
            + u8::from(latency > nanos(c.latency_threshold))
            + u8::from(error_rate > c.error_rate_threshold);
        let fresh = Arc::new(ShedderView {
            cpu: sys.cpu,
            memory: sys.memory,
            latency: Duration::from_nanos(latency),
            mean_latency: Duration::from_nanos(mean),
            p95_latency: Duration::from_nanos(window.value_at_quantile(0.95)),
            p99_latency: Duration::from_nanos(window.value_at_quantile(0.99)),
            completed,
            errors,
            error_rate,
            cpu_factor,
            memory_factor,
            latency_factor,
            error_factor,
            base_rate,
            overloaded_signals,
            at: now,
        });
        self.view.rcu(|cur| {
            if cur.at > fresh.at {
                cur.clone()
            } else {
                fresh.clone()
            }
        });
        if let Some(m) = &self.metrics {
            let rate = match self.strategy {
                // Relaxed: a reading of the rate alone (module docs).
                Strategy::Adaptive => f64::from_bits(self.adaptive_rate.load(Ordering::Relaxed)),
                Strategy::Circuit => self.circuit_rate(&fresh),
                _ => base_rate,
            };
            m.rate.set(rate);
        }
        fresh
    }

    fn circuit_rate(&self, view: &ShedderView) -> f64 {
        clamp_or_low(
            0.25 * f64::from(view.overloaded_signals),
            self.config.min_rate,
            self.config.max_rate,
        )
    }

    /// The shedding rate for one request, and why.
    fn rate(&self, priority: Priority, view: &ShedderView) -> (f64, ShedReason) {
        let c = &self.config;
        match &self.strategy {
            Strategy::Random => (view.base_rate, ShedReason::Random),
            Strategy::Priority => {
                let cap = self.caps[priority.index()];
                let factor = 1.0 / (1.0 + 0.1 * f64::from(priority.value()));
                (
                    view.base_rate.min(cap) * factor,
                    ShedReason::Priority { cap, factor },
                )
            }
            Strategy::Adaptive => {
                let latency = nanos(view.latency) as f64;
                let target = nanos(c.target_latency) as f64;
                let step = |r: f64| {
                    let next = if latency <= target {
                        r - c.adaptation_rate
                    } else {
                        (r + c.adaptation_rate).min((latency / target - 1.0) * 0.5)
                    };
                    clamp_or_low(next, c.min_rate, c.max_rate)
                };
                // Relaxed CAS loop: module docs. The closure never returns None.
                let previous = match self.adaptive_rate.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |bits| Some(step(f64::from_bits(bits)).to_bits()),
                ) {
                    Ok(bits) | Err(bits) => f64::from_bits(bits),
                };
                (
                    step(previous),
                    ShedReason::Adaptive {
                        previous,
                        target: c.target_latency,
                    },
                )
            }
            Strategy::Circuit => (self.circuit_rate(view), ShedReason::Circuit),
            Strategy::Custom(policy) => (
                clamp_or_low(policy.rate(priority, view), 0.0, 1.0),
                ShedReason::Custom,
            ),
        }
    }
}

impl fmt::Debug for LoadShedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("LoadShedder")
            .field("strategy", &inner.strategy)
            .field("mode", &inner.mode)
            .field("config", &inner.config)
            .field("view", &*inner.view.load())
            .field("active", &inner.active.get())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::policy::shed::{ManualSignals, NoSignals};

    const MS: Duration = Duration::from_millis(1);
    const SEC: Duration = Duration::from_secs(1);

    struct Rig {
        clock: ManualClock,
        signals: ManualSignals,
        shedder: LoadShedder,
    }

    fn rig(f: impl FnOnce(LoadShedderBuilder) -> LoadShedderBuilder) -> Rig {
        let clock = ManualClock::new();
        let signals = ManualSignals::new();
        let b = LoadShedder::builder()
            .signals(signals.clone())
            .clock(Arc::new(clock.clone()))
            .seed(42);
        let shedder = f(b).build().unwrap();
        Rig {
            clock,
            signals,
            shedder,
        }
    }

    fn decide(s: &LoadShedder, p: Priority) -> ShedDecision {
        match s.try_admit(p) {
            Ok(t) => {
                let d = *t.decision();
                t.success();
                d
            }
            Err(d) => d,
        }
    }

    /// A ticket, retrying while the shedder sheds (bounded).
    fn admit(s: &LoadShedder) -> Ticket {
        for _ in 0..10_000 {
            if let Ok(t) = s.try_admit(Priority::Normal) {
                return t;
            }
        }
        panic!("never admitted");
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn base_rate_formula() {
        let r = rig(|b| b);
        // latency: mean 7.5 s -> latF = 2.5 / 5 = 0.5; errors 3 of 4 -> errF = 0.65 / 0.9
        for (lat, err) in [(5, false), (10, true), (5, true), (10, true)] {
            let t = r.shedder.try_admit(Priority::Normal).unwrap();
            let outcome = if err {
                TicketOutcome::Error
            } else {
                TicketOutcome::Success
            };
            t.finish_with_latency(outcome, Duration::from_secs(lat));
        }
        r.signals.set_cpu(Some(0.9)); // cpuF = 0.1 / 0.2 = 0.5
        r.signals.set_memory(Some(0.925)); // memF = 0.075 / 0.15 = 0.5
        r.clock.advance(SEC);
        let v = r.shedder.refresh();
        assert!(close(v.cpu_factor, 0.5) && close(v.memory_factor, 0.5));
        assert_eq!((v.completed, v.errors), (4, 3));
        assert!(close(v.error_rate, 0.75));
        assert!(close(v.error_factor, 0.65 / 0.9));
        // The histogram keeps 3 significant digits: the mean is within 0.1%.
        assert!(
            (v.latency_factor - 0.5).abs() < 0.002,
            "{}",
            v.latency_factor
        );
        let expect: f64 = 0.3 * 0.5 * 3.0 + 0.1 * 0.65 / 0.9;
        assert!(
            (v.base_rate - expect.min(0.9)).abs() < 0.001,
            "{}",
            v.base_rate
        );
        assert_eq!(v.overloaded_signals, 4);
        assert!(v.p99_latency >= Duration::from_secs(10) - 10 * MS);
        r.signals.set_cpu(Some(1.0));
        r.signals.set_memory(Some(1.0));
        let b = r.shedder.refresh().base_rate;
        assert!((b - (0.6 + 0.15 + 0.1 * 0.65 / 0.9)).abs() < 0.001, "{b}");
        // Clamped into [min_rate, max_rate].
        let r2 = rig(|b| b.max_rate(0.5).min_rate(0.2));
        assert_eq!(r2.shedder.refresh().base_rate, 0.2);
        r2.signals.set_cpu(Some(1.0));
        r2.signals.set_memory(Some(1.0));
        assert_eq!(r2.shedder.refresh().base_rate, 0.5);
        // Unavailable signals count as no load.
        r.signals.set_cpu(None);
        r.signals.set_memory(None);
        let v = r.shedder.refresh();
        assert_eq!((v.cpu, v.cpu_factor, v.memory_factor), (None, 0.0, 0.0));
    }

    #[test]
    fn random_strategy_sheds_at_the_base_rate() {
        let r = rig(|b| b);
        let d = decide(&r.shedder, Priority::Normal);
        assert_eq!((d.rate, d.draw, d.verdict), (0.0, None, Verdict::Admit));
        r.signals.set_cpu(Some(1.0)); // base 0.3
        r.clock.advance(SEC);
        let n = 10_000;
        let mut shed = 0;
        for _ in 0..n {
            let d = decide(&r.shedder, Priority::Normal);
            assert_eq!(d.reason, ShedReason::Random);
            assert!(close(d.rate, 0.3));
            if !d.admits() {
                assert!(d.draw.unwrap() < 0.3);
                shed += 1;
            }
        }
        let frac = f64::from(shed) / f64::from(n);
        assert!((frac - 0.3).abs() < 0.02, "{frac}");
        assert_eq!(r.shedder.active(), 0);
    }

    #[test]
    fn priority_strategy_caps_and_scales() {
        let r = rig(|b| {
            b.strategy(Strategy::Priority)
                .priority_cap(Priority::Background, 0.2)
        });
        r.signals.set_cpu(Some(1.0));
        r.signals.set_memory(Some(1.0)); // base 0.6
        r.clock.advance(SEC);
        let rate = |p| decide(&r.shedder, p).rate;
        assert!(close(rate(Priority::Critical), 0.1 / 2.0));
        assert!(close(rate(Priority::High), 0.3 / 1.8));
        assert!(close(rate(Priority::Normal), 0.5 / 1.5));
        assert!(close(rate(Priority::Low), 0.6 / 1.2));
        assert!(close(rate(Priority::Background), 0.2 / 1.1));
        let d = decide(&r.shedder, Priority::Low);
        assert_eq!(
            d.reason,
            ShedReason::Priority {
                cap: 0.8,
                factor: 1.0 / 1.2
            }
        );
    }

    #[test]
    fn adaptive_strategy_steps_per_request() {
        let r = rig(|b| b.strategy(Strategy::Adaptive).refresh_interval(SEC));
        assert_eq!(r.shedder.adaptive_rate(), 0.0);
        // Latency 300 ms against a 100 ms target: cap (3 - 1) × 0.5 = 1.0, max_rate 0.9.
        let t = r.shedder.try_admit(Priority::Normal).unwrap();
        t.finish_with_latency(TicketOutcome::Success, 300 * MS);
        r.clock.advance(SEC);
        let mut rates = vec![];
        for _ in 0..12 {
            rates.push(decide(&r.shedder, Priority::Normal).rate);
        }
        // Each decision adds 0.1 up to 0.9.
        for (i, rate) in rates.iter().enumerate() {
            let expect = (0.1 * (i + 1) as f64).min(0.9);
            assert!((rate - expect).abs() < 1e-9, "{rates:?}");
        }
        let d = decide(&r.shedder, Priority::Normal);
        assert!(matches!(d.reason, ShedReason::Adaptive { previous, .. } if close(previous, 0.9)));
        // Latency falls to 110 ms: the cap (1.1 - 1) × 0.5 = 0.05 pulls the rate down at once.
        r.clock.advance(Duration::from_secs(60)); // the slow sample leaves the window
        admit(&r.shedder).finish_with_latency(TicketOutcome::Success, 110 * MS);
        r.clock.advance(SEC);
        let d = decide(&r.shedder, Priority::Normal);
        assert!(close(d.rate, 0.05), "{}", d.rate);
        // At or below target: down by 0.1 per request, to min_rate.
        r.clock.advance(Duration::from_secs(60));
        let d = decide(&r.shedder, Priority::Normal);
        assert_eq!(d.view.latency, Duration::ZERO);
        assert_eq!(d.rate, 0.0);
        assert_eq!(r.shedder.adaptive_rate(), 0.0);
    }

    #[test]
    fn circuit_strategy_counts_overloaded_signals() {
        let r = rig(|b| b.strategy(Strategy::Circuit).max_rate(1.0));
        r.signals.set_cpu(Some(0.81));
        r.clock.advance(SEC);
        assert!(close(decide(&r.shedder, Priority::Normal).rate, 0.25));
        r.signals.set_memory(Some(0.86));
        for _ in 0..10 {
            admit(&r.shedder).finish_with_latency(TicketOutcome::Error, Duration::from_secs(6));
        }
        r.clock.advance(SEC);
        let d = decide(&r.shedder, Priority::Normal);
        assert_eq!(d.view.overloaded_signals, 4);
        assert_eq!((d.rate, d.reason), (1.0, ShedReason::Circuit));
        assert_eq!(d.verdict, Verdict::Reject);
    }

    #[test]
    fn custom_strategy_is_clamped() {
        let r = rig(|b| {
            b.strategy(Strategy::custom(|p: Priority, v: &ShedderView| match p {
                Priority::Critical => f64::NAN,
                Priority::Background => 7.0,
                _ => v.base_rate + 0.5,
            }))
        });
        assert_eq!(decide(&r.shedder, Priority::Critical).rate, 0.0);
        let d = decide(&r.shedder, Priority::Background);
        assert_eq!(
            (d.rate, d.verdict, d.reason),
            (1.0, Verdict::Reject, ShedReason::Custom)
        );
        assert_eq!(decide(&r.shedder, Priority::Normal).rate, 0.5);
        assert!(format!("{:?}", r.shedder).contains("custom"));
    }

    #[test]
    fn shadow_mode_admits_and_counts_shed() {
        let registry = Registry::new();
        let r = rig(|b| {
            b.strategy(Strategy::custom(|_: Priority, _: &ShedderView| 1.0))
                .mode(Mode::Shadow)
                .registry(&registry)
        });
        assert_eq!(r.shedder.mode(), Mode::Shadow);
        let t = r.shedder.try_admit(Priority::Normal).unwrap();
        assert_eq!(t.decision().verdict, Verdict::ShadowReject);
        assert_eq!(t.started_at(), Duration::ZERO);
        assert_eq!(r.shedder.active(), 1);
        let s = registry.snapshot();
        assert_eq!(
            s.counter("load_shedding_requests_total", &["shed"]),
            Some(1)
        );
        assert_eq!(
            s.counter("load_shedding_requests_total", &["admitted"]),
            Some(0)
        );
        assert_eq!(s.gauge("load_shedding_active_requests", &[]), Some(1));
        r.clock.advance(20 * MS);
        t.error();
        let s = registry.snapshot();
        assert_eq!(s.gauge("load_shedding_active_requests", &[]), Some(0));
        assert_eq!(s.counter("load_shedding_completed_total", &[]), Some(1));
        assert_eq!(s.counter("load_shedding_errors_total", &[]), Some(1));
        let h = s
            .histogram("load_shedding_latency_nanoseconds", &[])
            .unwrap();
        assert_eq!(h.count(), 1);
        r.signals.set_cpu(Some(1.0));
        r.shedder.refresh();
        let s = registry.snapshot();
        // cpuF = 1, and one error in one completion: errF = 1. Base 0.3 + 0.1.
        let rate = s.float_gauge("load_shedding_rate", &[]).unwrap();
        assert!(close(rate, 0.4), "{rate}");
    }

    #[test]
    fn dropped_ticket_is_abandoned() {
        let r = rig(|b| b);
        let t = r.shedder.try_admit(Priority::Normal).unwrap();
        assert!(format!("{t:?}").contains("Ticket"));
        drop(t);
        let t = r.shedder.try_admit(Priority::Normal).unwrap();
        t.finish(TicketOutcome::Abandoned);
        assert_eq!(r.shedder.active(), 0);
        r.clock.advance(SEC);
        assert_eq!(r.shedder.refresh().completed, 0);
    }

    #[test]
    fn manual_refresh_only() {
        let r = rig(|b| b.auto_refresh(false));
        r.signals.set_cpu(Some(1.0));
        r.clock.advance(Duration::from_secs(10));
        assert_eq!(decide(&r.shedder, Priority::Normal).view.base_rate, 0.0);
        assert!(close(r.shedder.refresh().base_rate, 0.3));
        assert!(close(r.shedder.view().base_rate, 0.3));
    }

    #[test]
    fn quantile_statistic() {
        let r = rig(|b| {
            b.latency_statistic(LatencyStatistic::Quantile(0.99))
                .latency_threshold(100 * MS)
        });
        for i in 0..100 {
            let t = r.shedder.try_admit(Priority::Normal).unwrap();
            let lat = if i == 99 { 1000 * MS } else { 10 * MS };
            t.finish_with_latency(TicketOutcome::Success, lat);
        }
        r.clock.advance(SEC);
        let v = r.shedder.refresh();
        assert!(v.latency < 11 * MS, "{:?}", v.latency); // p99 of 99 fast + 1 slow
        assert!(v.mean_latency > 19 * MS);
    }

    #[test]
    fn build_errors() {
        let e = |b: LoadShedderBuilder| b.signals(NoSignals).build().unwrap_err();
        assert!(matches!(
            e(LoadShedder::builder().cpu_threshold(1.0)),
            ShedderBuildError::Threshold {
                name: "cpu_threshold",
                ..
            }
        ));
        assert!(matches!(
            e(LoadShedder::builder().memory_threshold(f64::NAN)),
            ShedderBuildError::Threshold { .. }
        ));
        assert!(matches!(
            e(LoadShedder::builder().error_rate_threshold(-0.1)),
            ShedderBuildError::Threshold { .. }
        ));
        assert_eq!(
            e(LoadShedder::builder().latency_threshold(Duration::ZERO)),
            ShedderBuildError::ZeroLatency {
                name: "latency_threshold"
            }
        );
        assert!(matches!(
            e(LoadShedder::builder().target_latency(Duration::ZERO)),
            ShedderBuildError::ZeroLatency { .. }
        ));
        assert!(matches!(
            e(LoadShedder::builder().min_rate(0.5).max_rate(0.4)),
            ShedderBuildError::RateRange { .. }
        ));
        assert!(matches!(
            e(LoadShedder::builder().max_rate(1.5)),
            ShedderBuildError::RateRange { .. }
        ));
        assert!(matches!(
            e(LoadShedder::builder().adaptation_rate(0.0)),
            ShedderBuildError::AdaptationRate { .. }
        ));
        assert!(matches!(
            e(LoadShedder::builder().priority_cap(Priority::High, 2.0)),
            ShedderBuildError::PriorityCap { .. }
        ));
        assert!(matches!(
            e(LoadShedder::builder().latency_statistic(LatencyStatistic::Quantile(1.5))),
            ShedderBuildError::Quantile { .. }
        ));
        let w = e(LoadShedder::builder().metrics_window(Duration::ZERO));
        assert_eq!(w, ShedderBuildError::Window(WindowError::ZeroWindow));
        assert!(std::error::Error::source(&w).is_some());
        let bad = Registry::new();
        bad.gauge("load_shedding_requests_total", "x", &[]).unwrap();
        let reg = e(LoadShedder::builder().registry(&bad));
        assert!(matches!(reg, ShedderBuildError::Registry(_)));
        for err in [w, reg, ShedderBuildError::RateRange { min: 1.0, max: 0.0 }] {
            assert!(!err.to_string().is_empty());
        }
        assert!(format!("{:?}", LoadShedder::builder()).contains("LoadShedderBuilder"));
    }

    #[test]
    fn decision_display_and_strategy_names() {
        let r = rig(|b| b);
        let d = decide(&r.shedder, Priority::High);
        assert!(d.to_string().contains("high"));
        let names: Vec<_> = [
            Strategy::Random,
            Strategy::Priority,
            Strategy::Adaptive,
            Strategy::Circuit,
            Strategy::custom(|_: Priority, _: &ShedderView| 0.0),
        ]
        .iter()
        .map(|s| s.as_str())
        .collect();
        assert_eq!(
            names,
            ["random", "priority", "adaptive", "circuit", "custom"]
        );
        assert_eq!(format!("{:?}", Strategy::default()), "random");
    }
}
