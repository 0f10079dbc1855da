//! Timeouts: which timeout a request gets, and how often requests run out of it.
//!
//! A [`TimeoutPolicy`] chooses a request's timeout by lift's precedence:
//!
//! 1. **dynamic**: a [`TimeoutCalculator`], if one is set and it returns a non-zero timeout
//!    ([`AdaptiveCalculator`], [`PriorityCalculator`], [`LoadCalculator`],
//!    [`PercentileCalculator`], or your own);
//! 2. **tenant**: the request's tenant's configured timeout;
//! 3. **operation**: the request's operation's configured timeout;
//! 4. **default**: 30 s unless configured.
//!
//! The answer is a [`TimeoutDecision`] that names the level (and, for a calculator, every factor
//! it used). weir does not run or cancel anything: the caller arms its own timer with
//! [`TimeoutDecision::enforced_timeout`] (or [`deadline`](TimeoutDecision::deadline)) and
//! reports back with [`TimeoutPolicy::complete`], which classifies the request (ok or timed out),
//! counts it, and feeds the latency to the calculator. lift's known bug of a handler goroutine
//! left running after its timeout is the caller's to avoid: cancel the work when the timer fires.
//!
//! In [`Mode::Shadow`] the decision is computed and counted as usual but
//! [`enforced_timeout`](TimeoutDecision::enforced_timeout) is `None`: let the request run, and
//! `complete` counts whether it *would* have timed out.
//!
//! Stats are weir metrics (always kept; registered in a [`Registry`] when given one):
//! `timeout_requests_total{result="ok|timeout"}`, `timeout_configured_nanoseconds` (histogram of
//! chosen timeouts), `timeout_duration_nanoseconds` (histogram of completed requests' latencies),
//! and [`TimeoutPolicy::stats`] for the timeout ratio, averages, minimums and maximums.
//!
//! Nothing here panics on caller input: durations are multiplied with saturation (at
//! [`Duration::MAX`]), builders reject NaN, infinite and negative factors, and zero timeouts.
//! Formulas: `docs/policy-timeout.md`.
#![forbid(unsafe_code)]

mod calc;
mod percentile;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use calc::{
    AdaptiveCalculator, LoadCalculator, LoadGauges, LoadSignals, LoadSource, PriorityCalculator,
    TimeoutCalculator,
};
pub use percentile::{PercentileCalculator, PercentileCalculatorBuilder};

use crate::clock::{Clock, SharedClock, SystemClock};
use crate::counter::Counter;
use crate::error::RegistryError;
use crate::histogram::{Histogram, HistogramSnapshot};
use crate::policy::Mode;
use crate::registry::Registry;
use crate::window::WindowError;

/// lift's default timeout: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

// === request description ===

/// An HTTP method, as far as timeouts care.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// GET.
    #[default]
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// OPTIONS.
    Options,
    /// Any other method (or a non-HTTP operation).
    Other,
}

impl Method {
    /// The method named `name` (ASCII case-insensitive); [`Method::Other`] for anything else.
    ///
    /// ```
    /// use weir::policy::timeout::Method;
    /// assert_eq!(Method::from_name("delete"), Method::Delete);
    /// assert_eq!(Method::from_name("BREW"), Method::Other);
    /// ```
    pub fn from_name(name: &str) -> Method {
        const NAMES: [(&str, Method); 7] = [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("PATCH", Method::Patch),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(Method::Other, |&(_, m)| m)
    }
}

/// A request's priority (lift's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Must not fail.
    Critical,
    /// More important than usual.
    High,
    /// The default.
    #[default]
    Normal,
    /// Less important than usual.
    Low,
    /// Can wait.
    Background,
}

impl Priority {
    /// The priority named `name` (ASCII case-insensitive: `critical`, `high`, `normal`, `low`,
    /// `background`); [`Priority::Normal`] for anything else, as lift.
    pub fn from_name(name: &str) -> Priority {
        const NAMES: [(&str, Priority); 4] = [
            ("critical", Priority::Critical),
            ("high", Priority::High),
            ("low", Priority::Low),
            ("background", Priority::Background),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(Priority::Normal, |&(_, p)| p)
    }
}

/// What a timeout decision needs to know about a request (no HTTP crate required).
///
/// ```
/// use weir::policy::timeout::{Method, Priority, RequestInfo};
/// let r = RequestInfo::new(Method::Post)
///     .params(3)
///     .body_bytes(4096)
///     .priority(Priority::High)
///     .tenant("acme")
///     .operation("POST /orders");
/// assert_eq!(r.tenant, Some("acme"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RequestInfo<'a> {
    /// The method.
    pub method: Method,
    /// How many parameters (query parameters, in lift).
    pub params: usize,
    /// The body's size in bytes.
    pub body_bytes: u64,
    /// The priority.
    pub priority: Priority,
    /// The tenant, if any.
    pub tenant: Option<&'a str>,
    /// The operation (lift uses `"METHOD /path"`), if any.
    pub operation: Option<&'a str>,
}

impl<'a> RequestInfo<'a> {
    /// A request with this method, no parameters, no body, normal priority, no tenant or
    /// operation.
    pub fn new(method: Method) -> RequestInfo<'a> {
        RequestInfo {
            method,
            ..RequestInfo::default()
        }
    }
    /// Sets the parameter count.
    pub fn params(mut self, params: usize) -> Self {
        self.params = params;
        self
    }
    /// Sets the body size.
    pub fn body_bytes(mut self, bytes: u64) -> Self {
        self.body_bytes = bytes;
        self
    }
    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
    /// Sets the tenant.
    pub fn tenant(mut self, tenant: &'a str) -> Self {
        self.tenant = Some(tenant);
        self
    }
    /// Sets the operation.
    pub fn operation(mut self, operation: &'a str) -> Self {
        self.operation = Some(operation);
        self
    }
}

// === decisions ===

/// Whether a percentile-based timeout hit one of its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Clamp {
    /// Within the bounds.
    None,
    /// Raised to the minimum.
    ToMin,
    /// Lowered to the maximum.
    ToMax,
}

/// How a calculator arrived at its timeout: the inputs and factors it used.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Calculated {
    /// [`AdaptiveCalculator`]: `base × method_factor × params_factor × body_factor`.
    Adaptive {
        /// The base timeout.
        base: Duration,
        /// The method's factor.
        method_factor: f64,
        /// The parameter-count factor (1 when under the threshold).
        params_factor: f64,
        /// The body-size factor (1 when under the threshold).
        body_factor: f64,
    },
    /// [`PriorityCalculator`]: `base × factor`.
    Priority {
        /// The base timeout.
        base: Duration,
        /// The request's priority.
        priority: Priority,
        /// Its factor.
        factor: f64,
    },
    /// [`LoadCalculator`]: `base × min(1 + Σ weights of signals over threshold, cap)`.
    Load {
        /// The base timeout.
        base: Duration,
        /// The load reading used.
        signals: LoadSignals,
        /// The factor applied.
        factor: f64,
        /// Whether the cap bit.
        capped: bool,
    },
    /// [`PercentileCalculator`]: `clamp(quantile × multiplier, min, max)`.
    Percentile {
        /// The quantile.
        quantile: f64,
        /// The windowed latency at that quantile.
        observed: Duration,
        /// The multiplier.
        multiplier: f64,
        /// Latencies in the window.
        samples: u64,
        /// Whether a bound applied.
        clamp: Clamp,
    },
    /// A calculator of your own.
    Custom {
        /// Its name.
        name: &'static str,
    },
}

/// A calculator's answer: a timeout, and how it was computed.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Calculation {
    /// The timeout.
    pub timeout: Duration,
    /// How.
    pub how: Calculated,
}

impl Calculation {
    /// A calculation (for calculators of your own: use [`Calculated::Custom`]).
    pub fn new(timeout: Duration, how: Calculated) -> Calculation {
        Calculation { timeout, how }
    }
}

/// Which precedence level chose the timeout.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum TimeoutRule {
    /// The dynamic calculator, with its working.
    Dynamic(Calculation),
    /// The tenant's configured timeout.
    Tenant,
    /// The operation's configured timeout.
    Operation,
    /// The policy's default.
    Default,
}

/// A request's timeout, which rule chose it, and when the request started.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use weir::ManualClock;
/// use weir::policy::timeout::{Method, RequestInfo, TimeoutPolicy, TimeoutRule};
///
/// let clock = ManualClock::new();
/// let policy = TimeoutPolicy::builder()
///     .operation_timeout("GET /health", Duration::from_secs(1))
///     .clock(Arc::new(clock.clone()))
///     .build()?;
/// let d = policy.decide(&RequestInfo::new(Method::Get).operation("GET /health"));
/// assert_eq!(d.timeout(), Duration::from_secs(1));
/// assert_eq!(d.rule(), TimeoutRule::Operation);
/// clock.advance(Duration::from_millis(1500));
/// assert!(policy.complete(&d).is_timeout());
/// assert_eq!(policy.stats().ratio(), 1.0);
/// # Ok::<(), weir::policy::timeout::TimeoutBuildError>(())
/// ```
#[must_use = "a timeout decision must be armed: use `enforced_timeout()` or `deadline()`"]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeoutDecision {
    timeout: Duration,
    rule: TimeoutRule,
    started: Duration,
    mode: Mode,
}

impl TimeoutDecision {
    /// The timeout chosen (in shadow mode too).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The timeout to arm: `Some(timeout)` when enforcing, `None` in shadow mode (let the
    /// request run; [`TimeoutPolicy::complete`] still counts whether it would have timed out).
    pub fn enforced_timeout(&self) -> Option<Duration> {
        self.mode.enforces().then_some(self.timeout)
    }

    /// Which precedence level chose it.
    pub fn rule(&self) -> TimeoutRule {
        self.rule
    }

    /// When the decision was made, by the policy's clock.
    pub fn started(&self) -> Duration {
        self.started
    }

    /// `started + timeout`, by the policy's clock (saturating).
    pub fn deadline(&self) -> Duration {
        self.started.saturating_add(self.timeout)
    }

    /// The policy's mode when it decided.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

impl fmt::Display for TimeoutDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timeout {:?} from ", self.timeout)?;
        match self.rule {
            TimeoutRule::Dynamic(c) => match c.how {
                Calculated::Adaptive {
                    base,
                    method_factor,
                    params_factor,
                    body_factor,
                } => write!(
                    f,
                    "adaptive: {base:?} × {method_factor} (method) × {params_factor} (params) \
                     × {body_factor} (body)"
                )?,
                Calculated::Priority {
                    base,
                    priority,
                    factor,
                } => write!(f, "priority: {base:?} × {factor} ({priority:?})")?,
                Calculated::Load {
                    base,
                    factor,
                    capped,
                    ..
                } => write!(
                    f,
                    "load: {base:?} × {factor}{}",
                    if capped { " (capped)" } else { "" }
                )?,
                Calculated::Percentile {
                    quantile,
                    observed,
                    multiplier,
                    samples,
                    clamp,
                } => write!(
                    f,
                    "p{} {observed:?} × {multiplier} over {samples} samples{}",
                    quantile * 100.0,
                    match clamp {
                        Clamp::None => "",
                        Clamp::ToMin => " (raised to min)",
                        Clamp::ToMax => " (lowered to max)",
                    }
                )?,
                Calculated::Custom { name } => write!(f, "calculator {name}")?,
            },
            TimeoutRule::Tenant => f.write_str("tenant")?,
            TimeoutRule::Operation => f.write_str("operation")?,
            TimeoutRule::Default => f.write_str("default")?,
        }
        if !self.mode.enforces() {
            f.write_str(" (shadow: not enforced)")?;
        }
        Ok(())
    }
}

/// How a request ended, relative to its timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutOutcome {
    /// It finished within its timeout.
    Completed {
        /// How long it took.
        elapsed: Duration,
        /// Its timeout.
        timeout: Duration,
    },
    /// It ran for at least its timeout.
    TimedOut {
        /// How long it ran.
        elapsed: Duration,
        /// Its timeout.
        timeout: Duration,
        /// False in shadow mode: it would have timed out, but ran on.
        enforced: bool,
    },
}

impl TimeoutOutcome {
    /// Whether it timed out (or would have, in shadow mode).
    pub fn is_timeout(&self) -> bool {
        matches!(self, TimeoutOutcome::TimedOut { .. })
    }
}

/// Counts and latencies of a [`TimeoutPolicy`] (lift's timeout stats).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct TimeoutStats {
    /// Completed requests (ok and timed out).
    pub requests: u64,
    /// Requests that timed out (or would have, in shadow mode).
    pub timeouts: u64,
    /// Mean latency of completed requests (zero when none).
    pub mean_duration: Duration,
    /// Shortest latency (zero when none).
    pub min_duration: Duration,
    /// Longest latency (zero when none).
    pub max_duration: Duration,
    /// Mean chosen timeout over all decisions (zero when none).
    pub mean_timeout: Duration,
}

impl TimeoutStats {
    /// `timeouts / requests`; 0.0 when there were no requests.
    pub fn ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.timeouts as f64 / self.requests as f64
        }
    }
}

// === errors ===

/// A timeout policy or calculator could not be built.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TimeoutBuildError {
    /// A configured timeout is zero. Use a positive timeout, or leave the entry out.
    ZeroTimeout {
        /// Which one (`"default"`, `"tenant"`, `"operation"`).
        what: &'static str,
    },
    /// A factor, weight or threshold is NaN or infinite, or a factor is not positive (a weight
    /// is negative). Use a finite value; factors multiply a timeout, so they must be above 0.
    InvalidFactor {
        /// Which one.
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A quantile outside `[0, 1]` (or NaN). Use for example 0.99.
    InvalidQuantile {
        /// The rejected value.
        quantile: f64,
    },
    /// Bounds with a zero minimum or a minimum above the maximum. Use `0 < min <= max`.
    InvalidBounds {
        /// The requested minimum.
        min: Duration,
        /// The requested maximum.
        max: Duration,
    },
    /// The latency window was refused (see [`WindowError`]).
    Window(WindowError),
    /// Registering the policy's metrics failed (a metric of the same name but another kind,
    /// labels or unit is registered). Use another registry or rename the other metric.
    Registry(RegistryError),
}

impl fmt::Display for TimeoutBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeoutBuildError::ZeroTimeout { what } => {
                write!(f, "the {what} timeout must not be zero")
            }
            TimeoutBuildError::InvalidFactor { name, value } => {
                write!(
                    f,
                    "{name} must be finite (and factors positive), got {value}"
                )
            }
            TimeoutBuildError::InvalidQuantile { quantile } => {
                write!(f, "quantile must be in [0, 1], got {quantile}")
            }
            TimeoutBuildError::InvalidBounds { min, max } => {
                write!(
                    f,
                    "bounds must satisfy 0 < min <= max, got {min:?}..{max:?}"
                )
            }
            TimeoutBuildError::Window(e) => write!(f, "latency window: {e}"),
            TimeoutBuildError::Registry(e) => write!(f, "registering timeout metrics: {e}"),
        }
    }
}

impl std::error::Error for TimeoutBuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TimeoutBuildError::Window(e) => Some(e),
            TimeoutBuildError::Registry(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RegistryError> for TimeoutBuildError {
    fn from(e: RegistryError) -> TimeoutBuildError {
        TimeoutBuildError::Registry(e)
    }
}

// === the policy ===

struct TimeoutMetrics {
    ok: Counter,
    timeout: Counter,
    configured: Histogram,
    duration: Histogram,
}

impl TimeoutMetrics {
    fn standalone() -> TimeoutMetrics {
        TimeoutMetrics {
            ok: Counter::new(),
            timeout: Counter::new(),
            configured: Histogram::new(),
            duration: Histogram::new(),
        }
    }

    fn register(r: &Registry) -> Result<TimeoutMetrics, RegistryError> {
        let requests = r.counter_family(
            "timeout_requests_total",
            "Completed requests by whether they ran out of their timeout (timeout includes \
             shadow-mode requests that would have)",
            &["result"],
        )?;
        Ok(TimeoutMetrics {
            ok: requests.with(&["ok"])?,
            timeout: requests.with(&["timeout"])?,
            configured: r
                .describe(
                    "timeout_configured_nanoseconds",
                    "Timeouts chosen for requests",
                )
                .unit("nanoseconds")
                .histogram_family(&[])?
                .with(&[])?,
            duration: r
                .describe(
                    "timeout_duration_nanoseconds",
                    "Latency of requests under a timeout",
                )
                .unit("nanoseconds")
                .histogram_family(&[])?
                .with(&[])?,
        })
    }
}

/// Chooses timeouts by lift's precedence and keeps lift's timeout stats as weir metrics.
///
/// Deciding takes no lock: two lookups in immutable hash maps, the calculator, and a histogram
/// record (completing: a counter increment and a histogram record).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use weir::ManualClock;
/// use weir::policy::timeout::{
///     AdaptiveCalculator, Method, RequestInfo, TimeoutPolicy, TimeoutRule,
/// };
///
/// let registry = weir::Registry::new();
/// let policy = TimeoutPolicy::builder()
///     .default_timeout(Duration::from_secs(30))
///     .tenant_timeout("acme", Duration::from_secs(5))
///     .calculator(AdaptiveCalculator::new(Duration::from_secs(10)))
///     .clock(Arc::new(ManualClock::new()))
///     .metrics(&registry)
///     .build()?;
/// let d = policy.decide(&RequestInfo::new(Method::Delete).tenant("acme"));
/// assert_eq!(d.timeout(), Duration::from_secs(30)); // dynamic (10 s × 3) beats tenant
/// assert!(matches!(d.rule(), TimeoutRule::Dynamic(_)));
/// let outcome = policy.complete_after(&d, Duration::from_secs(2));
/// assert!(!outcome.is_timeout());
/// assert_eq!(registry.snapshot().counter("timeout_requests_total", &["ok"]), Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TimeoutPolicy {
    default: Duration,
    tenants: HashMap<Box<str>, Duration>,
    operations: HashMap<Box<str>, Duration>,
    calculator: Option<Box<dyn TimeoutCalculator>>,
    mode: Mode,
    clock: SharedClock,
    metrics: TimeoutMetrics,
}

impl TimeoutPolicy {
    /// A builder: default 30 s, no tenant or operation timeouts, no calculator, enforcing,
    /// system clock, metrics kept but not registered.
    pub fn builder() -> TimeoutPolicyBuilder {
        TimeoutPolicyBuilder {
            default: DEFAULT_TIMEOUT,
            tenants: HashMap::new(),
            operations: HashMap::new(),
            calculator: None,
            mode: Mode::Enforce,
            clock: None,
            registry: None,
        }
    }

    /// The timeout for `request`, by precedence dynamic > tenant > operation > default; records
    /// it in `timeout_configured_nanoseconds`.
    pub fn decide(&self, request: &RequestInfo<'_>) -> TimeoutDecision {
        let (timeout, rule) = self.choose(request);
        self.metrics.configured.record_duration(timeout);
        TimeoutDecision {
            timeout,
            rule,
            started: self.clock.now(),
            mode: self.mode,
        }
    }

    fn choose(&self, r: &RequestInfo<'_>) -> (Duration, TimeoutRule) {
        if let Some(calc) = &self.calculator
            && let Some(c) = calc.calculate(r)
            && !c.timeout.is_zero()
        {
            return (c.timeout, TimeoutRule::Dynamic(c));
        }
        if let Some(t) = r.tenant.and_then(|t| self.tenants.get(t)) {
            return (*t, TimeoutRule::Tenant);
        }
        if let Some(t) = r.operation.and_then(|o| self.operations.get(o)) {
            return (*t, TimeoutRule::Operation);
        }
        (self.default, TimeoutRule::Default)
    }

    /// Reports that the request of `decision` finished now (by the policy's clock); see
    /// [`complete_after`](TimeoutPolicy::complete_after).
    pub fn complete(&self, decision: &TimeoutDecision) -> TimeoutOutcome {
        let elapsed = self.clock.now().saturating_sub(decision.started);
        self.complete_after(decision, elapsed)
    }

    /// Reports that the request of `decision` ran for `elapsed`: a timeout when
    /// `elapsed >= timeout`. Counts it in `timeout_requests_total{result}`, records `elapsed` in
    /// `timeout_duration_nanoseconds`, and passes it to the calculator.
    pub fn complete_after(&self, decision: &TimeoutDecision, elapsed: Duration) -> TimeoutOutcome {
        let timed_out = elapsed >= decision.timeout;
        if timed_out {
            self.metrics.timeout.inc();
        } else {
            self.metrics.ok.inc();
        }
        self.metrics.duration.record_duration(elapsed);
        if let Some(c) = &self.calculator {
            c.observe(elapsed, timed_out);
        }
        if timed_out {
            TimeoutOutcome::TimedOut {
                elapsed,
                timeout: decision.timeout,
                enforced: decision.mode.enforces(),
            }
        } else {
            TimeoutOutcome::Completed {
                elapsed,
                timeout: decision.timeout,
            }
        }
    }

    /// Totals, ratio, and latency and timeout averages and extremes so far.
    pub fn stats(&self) -> TimeoutStats {
        // A report, not a decision: read while requests complete, a request may show in the
        // counters and not yet in the histograms (or the reverse).
        let timeouts = self.metrics.timeout.get();
        let ok = self.metrics.ok.get();
        let d = self.metrics.duration.snapshot();
        let c = self.metrics.configured.snapshot();
        let nanos = |v: u64| Duration::from_nanos(v);
        let mean = |s: &HistogramSnapshot| {
            if s.count() == 0 {
                Duration::ZERO
            } else {
                Duration::from_nanos(s.mean().round() as u64)
            }
        };
        let empty = d.count() == 0;
        TimeoutStats {
            requests: ok + timeouts,
            timeouts,
            mean_duration: mean(&d),
            min_duration: if empty {
                Duration::ZERO
            } else {
                nanos(d.min())
            },
            max_duration: if empty {
                Duration::ZERO
            } else {
                nanos(d.max())
            },
            mean_timeout: mean(&c),
        }
    }

    /// Latencies of completed requests so far.
    pub fn durations(&self) -> HistogramSnapshot {
        self.metrics.duration.snapshot()
    }

    /// Timeouts chosen so far.
    pub fn configured(&self) -> HistogramSnapshot {
        self.metrics.configured.snapshot()
    }

    /// The default timeout.
    pub fn default_timeout(&self) -> Duration {
        self.default
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

impl fmt::Debug for TimeoutPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutPolicy")
            .field("default", &self.default)
            .field("tenants", &self.tenants.len())
            .field("operations", &self.operations.len())
            .field("calculator", &self.calculator)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TimeoutPolicy`].
pub struct TimeoutPolicyBuilder {
    default: Duration,
    tenants: HashMap<Box<str>, Duration>,
    operations: HashMap<Box<str>, Duration>,
    calculator: Option<Box<dyn TimeoutCalculator>>,
    mode: Mode,
    clock: Option<SharedClock>,
    registry: Option<Registry>,
}

impl TimeoutPolicyBuilder {
    /// The default timeout (default 30 s).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default = timeout;
        self
    }

    /// A tenant's timeout (replaces an earlier one for the same tenant).
    pub fn tenant_timeout(mut self, tenant: &str, timeout: Duration) -> Self {
        self.tenants.insert(tenant.into(), timeout);
        self
    }

    /// An operation's timeout (replaces an earlier one for the same operation).
    pub fn operation_timeout(mut self, operation: &str, timeout: Duration) -> Self {
        self.operations.insert(operation.into(), timeout);
        self
    }

    /// The dynamic calculator (highest precedence when it answers).
    pub fn calculator(mut self, calculator: impl TimeoutCalculator + 'static) -> Self {
        self.calculator = Some(Box::new(calculator));
        self
    }

    /// Enforce (default) or shadow.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The clock (default: a new [`SystemClock`]).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Register `timeout_requests_total{result}`, `timeout_configured_nanoseconds` and
    /// `timeout_duration_nanoseconds` in this registry (policies sharing a registry share them).
    pub fn metrics(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Builds the policy.
    ///
    /// # Errors
    ///
    /// [`TimeoutBuildError::ZeroTimeout`] for a zero default, tenant or operation timeout;
    /// [`TimeoutBuildError::Registry`] if the metrics cannot be registered.
    pub fn build(self) -> Result<TimeoutPolicy, TimeoutBuildError> {
        if self.default.is_zero() {
            return Err(TimeoutBuildError::ZeroTimeout { what: "default" });
        }
        if self.tenants.values().any(Duration::is_zero) {
            return Err(TimeoutBuildError::ZeroTimeout { what: "tenant" });
        }
        if self.operations.values().any(Duration::is_zero) {
            return Err(TimeoutBuildError::ZeroTimeout { what: "operation" });
        }
        let metrics = match &self.registry {
            Some(r) => TimeoutMetrics::register(r)?,
            None => TimeoutMetrics::standalone(),
        };
        Ok(TimeoutPolicy {
            default: self.default,
            tenants: self.tenants,
            operations: self.operations,
            calculator: self.calculator,
            mode: self.mode,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
            metrics,
        })
    }
}

impl fmt::Debug for TimeoutPolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutPolicyBuilder")
            .field("default", &self.default)
            .field("calculator", &self.calculator)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}
