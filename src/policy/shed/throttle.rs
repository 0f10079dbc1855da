//! Client-side adaptive throttling (Google SRE book, "Handling Overload"), with criticality
//! classes.
//!
//! A client counts, over a rolling window, the requests it attempted (`requests`, including
//! those it throttled itself) and those the backend accepted (`accepts`). When the backend
//! starts rejecting, `accepts` falls behind and the client rejects new requests locally with
//! probability
//!
//! > `P = max(0, (requests - K × accepts) / (requests + 1))`
//!
//! so that a rejecting backend is spared the cost of refusing. `K` (default 2.0) is how much
//! more traffic than it accepts the backend is still sent: lower is more aggressive. A request
//! of priority `p` is rejected with probability `min(1, P × weight[p])`; the default weights
//! are critical 0.25, high 0.5, normal 1.0, low 1.5, background 2.0, so critical requests are
//! the least likely to be throttled and background ones the most.
//!
//! Both counts are weir [`RollingCounter`]s: counting is a per-thread cell add. `P` is
//! recomputed from the windows at most once per `refresh` (default 100 ms) by one of the callers
//! that find it stale, and published through `arc-swap`; every other decision reads the
//! published value lock-free. So `P` may be up to `refresh` old; set `refresh` to zero to
//! recompute on every decision.
//!
//! # Orderings
//! The published view is an `ArcSwap` (release on store, acquire on load), so a decision sees a
//! probability together with the counts it came from. The refresh claim is `Due`
//! (`Relaxed`: it only elects a refresher). The random draws come from [`Rng`] (`Relaxed`).
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{Due, Priority, Verdict, in_range};
use crate::clock::{SharedClock, SystemClock};
use crate::counter::{Counter, FloatGauge};
use crate::error::RegistryError;
use crate::policy::{Mode, Rng};
use crate::registry::Registry;
use crate::window::{RollingCounter, WindowError};

/// Default rejection weights, by priority (critical first).
const DEFAULT_WEIGHTS: [f64; 5] = [0.25, 0.5, 1.0, 1.5, 2.0];

/// The outcome of [`AdaptiveThrottle::check`]: the verdict and the numbers behind it.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ThrottleDecision {
    /// Admit, reject, or (shadow mode) would reject.
    pub verdict: Verdict,
    /// The request's priority.
    pub priority: Priority,
    /// `P = max(0, (requests - K × accepts) / (requests + 1))`.
    pub probability: f64,
    /// The priority's weight.
    pub weight: f64,
    /// `min(1, P × weight)`: the probability this request was rejected with.
    pub class_probability: f64,
    /// The uniform draw in `[0, 1)` (rejected when below `class_probability`); `None` when the
    /// class probability was 0 and nothing was drawn.
    pub draw: Option<f64>,
    /// Requests counted in the window `P` was computed from.
    pub requests: u64,
    /// Accepts counted in that window.
    pub accepts: u64,
}

impl ThrottleDecision {
    /// Whether the request goes ahead (see [`Verdict::admits`]).
    pub fn admits(&self) -> bool {
        self.verdict.admits()
    }
}

#[derive(Clone, Copy, Debug)]
struct View {
    probability: f64,
    requests: u64,
    accepts: u64,
    at: Duration,
}

struct Metrics {
    /// `[priority][admitted, throttled]`.
    decisions: [[Counter; 2]; 5],
    probability: FloatGauge,
}

/// Client-side adaptive throttling with priority-weighted rejection (module docs).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use weir::policy::shed::{AdaptiveThrottle, Priority};
/// use weir::{ManualClock, SharedClock};
///
/// let clock = ManualClock::new();
/// let throttle = AdaptiveThrottle::builder()
///     .clock(Arc::new(clock.clone()) as SharedClock)
///     .refresh(Duration::ZERO)
///     .seed(7)
///     .build()?;
/// // The backend accepts 10 of 100 requests (some of which the throttle already rejected:
/// // they count as requests too)...
/// for i in 0..100 {
///     let _ = throttle.check(Priority::Normal);
///     if i % 10 == 0 {
///         throttle.record_accepted();
///     }
/// }
/// // ...so P = (100 - 2 × 10) / 101.
/// let d = throttle.check(Priority::Critical);
/// assert!((d.probability - 80.0 / 101.0).abs() < 1e-12);
/// assert!((d.class_probability - 0.25 * 80.0 / 101.0).abs() < 1e-12);
/// # Ok::<(), weir::policy::shed::ThrottleBuildError>(())
/// ```
///
/// Metrics, when built with a registry:
///
/// | name | kind | meaning |
/// |---|---|---|
/// | `adaptive_throttle_requests_total{priority, result}` | counter | decisions; `result` is `admitted` or `throttled` (in shadow mode, throttled counts what would have been) |
/// | `adaptive_throttle_attempts_total` | counter | requests counted by the formula (the window's `requests`) |
/// | `adaptive_throttle_accepts_total` | counter | backend accepts (the window's `accepts`) |
/// | `adaptive_throttle_probability` | float gauge | `P` at the last refresh |
pub struct AdaptiveThrottle {
    requests: RollingCounter<SharedClock>,
    accepts: RollingCounter<SharedClock>,
    k: f64,
    weights: [f64; 5],
    mode: Mode,
    rng: Rng,
    due: Due,
    view: ArcSwap<View>,
    clock: SharedClock,
    metrics: Option<Metrics>,
}

/// Builds an [`AdaptiveThrottle`].
pub struct ThrottleBuilder {
    k: f64,
    window: Duration,
    resolution: Duration,
    refresh: Duration,
    weights: [f64; 5],
    mode: Mode,
    seed: Option<u64>,
    clock: Option<SharedClock>,
    registry: Option<Registry>,
}

impl fmt::Debug for ThrottleBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleBuilder")
            .field("k", &self.k)
            .field("window", &self.window)
            .field("resolution", &self.resolution)
            .field("refresh", &self.refresh)
            .field("weights", &self.weights)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// An [`AdaptiveThrottle`] could not be built.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ThrottleBuildError {
    /// `K` must be a finite number of at least 1.0 (below 1, a backend that accepts everything
    /// would still be throttled). 2.0 is the SRE book's usual value.
    K {
        /// The rejected value.
        k: f64,
    },
    /// A priority's weight must be finite and non-negative.
    Weight {
        /// Whose weight.
        priority: Priority,
        /// The rejected value.
        weight: f64,
    },
    /// The window and resolution do not make a valid rolling window.
    Window(WindowError),
    /// Registering the throttle's metrics failed. Use another registry, or remove the
    /// conflicting metric.
    Registry(RegistryError),
}

impl fmt::Display for ThrottleBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThrottleBuildError::K { k } => {
                write!(f, "K must be finite and at least 1.0, got {k}")
            }
            ThrottleBuildError::Weight { priority, weight } => write!(
                f,
                "the weight of priority {priority} must be finite and non-negative, got {weight}"
            ),
            ThrottleBuildError::Window(e) => write!(f, "throttle window: {e}"),
            ThrottleBuildError::Registry(e) => write!(f, "registering throttle metrics: {e}"),
        }
    }
}

impl std::error::Error for ThrottleBuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ThrottleBuildError::Window(e) => Some(e),
            ThrottleBuildError::Registry(e) => Some(e),
            _ => None,
        }
    }
}

impl ThrottleBuilder {
    /// The multiplier `K` (default 2.0; at least 1.0).
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }
    /// The rolling window the counts cover (default 2 minutes, as in the SRE book).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
    /// The window's step (default 1 s; the window must be a whole multiple of it).
    pub fn resolution(mut self, resolution: Duration) -> Self {
        self.resolution = resolution;
        self
    }
    /// How often `P` is recomputed from the windows (default 100 ms; zero: every decision).
    pub fn refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }
    /// The rejection weight of one priority (finite, non-negative; 0 never throttles it).
    pub fn weight(mut self, priority: Priority, weight: f64) -> Self {
        self.weights[priority.index()] = weight;
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
    /// Records the throttle's metrics into `registry`.
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Validates the parameters and builds the throttle.
    ///
    /// # Errors
    ///
    /// A [`ThrottleBuildError`] naming what to fix.
    pub fn build(self) -> Result<AdaptiveThrottle, ThrottleBuildError> {
        if !in_range(self.k, 1.0, f64::MAX) {
            return Err(ThrottleBuildError::K { k: self.k });
        }
        for p in Priority::ALL {
            let weight = self.weights[p.index()];
            if !in_range(weight, 0.0, f64::MAX) {
                return Err(ThrottleBuildError::Weight {
                    priority: p,
                    weight,
                });
            }
        }
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(SystemClock::new()) as SharedClock);
        let (requests, accepts, metrics) = match &self.registry {
            Some(r) => {
                let (req, acc, m) = register(r).map_err(ThrottleBuildError::Registry)?;
                (req, acc, Some(m))
            }
            None => (Counter::new(), Counter::new(), None),
        };
        let window = |c: Counter| {
            RollingCounter::with_counter(c, self.window, self.resolution, clock.clone())
                .map_err(ThrottleBuildError::Window)
        };
        let requests = window(requests)?;
        let accepts = window(accepts)?;
        let now = clock.now();
        Ok(AdaptiveThrottle {
            requests,
            accepts,
            k: self.k,
            weights: self.weights,
            mode: self.mode,
            rng: match self.seed {
                Some(s) => Rng::with_seed(s),
                None => Rng::from_entropy(),
            },
            due: Due::new(self.refresh),
            view: ArcSwap::from_pointee(View {
                probability: 0.0,
                requests: 0,
                accepts: 0,
                at: now,
            }),
            clock,
            metrics,
        })
    }
}

fn register(r: &Registry) -> Result<(Counter, Counter, Metrics), RegistryError> {
    let family = r.counter_family(
        "adaptive_throttle_requests_total",
        "Client-side throttling decisions, by priority and result",
        &["priority", "result"],
    )?;
    let pair = |p: Priority| -> Result<[Counter; 2], RegistryError> {
        Ok([
            family.with(&[p.as_str(), "admitted"])?,
            family.with(&[p.as_str(), "throttled"])?,
        ])
    };
    let metrics = Metrics {
        decisions: [
            pair(Priority::Critical)?,
            pair(Priority::High)?,
            pair(Priority::Normal)?,
            pair(Priority::Low)?,
            pair(Priority::Background)?,
        ],
        probability: r.float_gauge(
            "adaptive_throttle_probability",
            "Client-side throttling probability P at the last refresh",
            &[],
        )?,
    };
    let requests = r.counter(
        "adaptive_throttle_attempts_total",
        "Requests counted by client-side throttling (throttled ones included)",
        &[],
    )?;
    let accepts = r.counter(
        "adaptive_throttle_accepts_total",
        "Requests the backend accepted",
        &[],
    )?;
    Ok((requests, accepts, metrics))
}

impl AdaptiveThrottle {
    /// A builder with the defaults: K 2.0, a 2-minute window in 1 s steps, refresh every
    /// 100 ms, the default weights, enforce mode.
    pub fn builder() -> ThrottleBuilder {
        ThrottleBuilder {
            k: 2.0,
            window: Duration::from_secs(120),
            resolution: Duration::from_secs(1),
            refresh: Duration::from_millis(100),
            weights: DEFAULT_WEIGHTS,
            mode: Mode::Enforce,
            seed: None,
            clock: None,
            registry: None,
        }
    }

    /// Decides whether to send a request of `priority`, and counts it as a request (whatever
    /// the verdict, as the formula requires).
    pub fn check(&self, priority: Priority) -> ThrottleDecision {
        let view = self.current();
        let weight = self.weights[priority.index()];
        let class_probability = (view.probability * weight).min(1.0);
        let draw = (class_probability > 0.0).then(|| self.rng.next_f64());
        let reject = draw.is_some_and(|d| d < class_probability);
        self.requests.inc();
        let verdict = if reject {
            Verdict::rejecting(self.mode)
        } else {
            Verdict::Admit
        };
        if let Some(m) = &self.metrics {
            m.decisions[priority.index()][usize::from(reject)].inc();
        }
        ThrottleDecision {
            verdict,
            priority,
            probability: view.probability,
            weight,
            class_probability,
            draw,
            requests: view.requests,
            accepts: view.accepts,
        }
    }

    /// Counts one request the backend accepted.
    pub fn record_accepted(&self) {
        self.accepts.inc();
    }

    /// `P` recomputed from the windows now (and published, as a refresh).
    pub fn refresh(&self) -> f64 {
        let now = self.clock.now();
        self.due.refreshed(now);
        self.recompute(now).probability
    }

    /// `P` as last published (at most `refresh` old).
    pub fn probability(&self) -> f64 {
        self.view.load().probability
    }

    /// Whether the throttle enforces or only observes.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn current(&self) -> View {
        let now = self.clock.now();
        if self.due.claim(now) {
            *self.recompute(now)
        } else {
            // A guard, not a full `Arc` clone: no shared reference-count traffic.
            **self.view.load()
        }
    }

    fn recompute(&self, now: Duration) -> Arc<View> {
        let requests = self.requests.sum();
        let accepts = self.accepts.sum();
        let r = requests as f64;
        let probability = ((r - self.k * accepts as f64) / (r + 1.0)).max(0.0);
        let fresh = Arc::new(View {
            probability,
            requests,
            accepts,
            at: now,
        });
        // Keep the newer of two racing refreshes.
        self.view.rcu(|cur| {
            if cur.at > fresh.at {
                cur.clone()
            } else {
                fresh.clone()
            }
        });
        if let Some(m) = &self.metrics {
            m.probability.set(probability);
        }
        fresh
    }
}

impl fmt::Debug for AdaptiveThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottle")
            .field("k", &self.k)
            .field("weights", &self.weights)
            .field("mode", &self.mode)
            .field("view", &*self.view.load())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const SEC: Duration = Duration::from_secs(1);

    fn throttle(mode: Mode) -> (ManualClock, AdaptiveThrottle) {
        let clock = ManualClock::new();
        let t = AdaptiveThrottle::builder()
            .clock(Arc::new(clock.clone()))
            .refresh(Duration::ZERO)
            .window(10 * SEC)
            .mode(mode)
            .seed(11)
            .build()
            .unwrap();
        (clock, t)
    }

    #[test]
    fn probability_follows_the_formula() {
        let (_, t) = throttle(Mode::Enforce);
        assert_eq!(t.check(Priority::Normal).probability, 0.0);
        // 1 request, 0 accepts so far: P = 1 / 2.
        let d = t.check(Priority::Normal);
        assert_eq!((d.requests, d.accepts, d.probability), (1, 0, 0.5));
        for _ in 0..10 {
            t.record_accepted();
        }
        // 2 requests, 10 accepts: negative, clamped to 0; nothing drawn.
        let d = t.check(Priority::Background);
        assert_eq!(
            (d.probability, d.class_probability, d.draw),
            (0.0, 0.0, None)
        );
        assert_eq!(d.verdict, Verdict::Admit);
        assert_eq!(t.refresh(), 0.0);
    }

    #[test]
    fn rejection_is_weighted_by_priority() {
        let (_, t) = throttle(Mode::Enforce);
        for _ in 0..1000 {
            let _ = t.check(Priority::Normal);
        }
        // P = 1000 / 1001 for the first check below; all classes but critical and high are
        // (almost) always rejected.
        let mut rejected = [0u32; 5];
        let n = 2000;
        for i in 0..n {
            let p = Priority::ALL[i % 5];
            let d = t.check(p);
            assert!(d.probability > 0.99);
            assert_eq!(d.class_probability, (d.probability * d.weight).min(1.0));
            if !d.admits() {
                assert_eq!(d.verdict, Verdict::Reject);
                assert!(d.draw.unwrap() < d.class_probability);
                rejected[p.index()] += 1;
            }
        }
        let per = (n / 5) as f64;
        let rate = |p: Priority| f64::from(rejected[p.index()]) / per;
        assert!(
            (rate(Priority::Critical) - 0.25).abs() < 0.08,
            "{rejected:?}"
        );
        assert!((rate(Priority::High) - 0.5).abs() < 0.08, "{rejected:?}");
        assert!(rate(Priority::Normal) > 0.97, "{rejected:?}");
        assert_eq!(rejected[Priority::Low.index()], 400);
        assert_eq!(rejected[Priority::Background.index()], 400);
    }

    #[test]
    fn window_forgets_old_traffic() {
        let (clock, t) = throttle(Mode::Enforce);
        for _ in 0..100 {
            let _ = t.check(Priority::Normal);
        }
        clock.advance(5 * SEC);
        assert!(t.refresh() > 0.9);
        clock.advance(5 * SEC);
        // The slot holding the 100 requests left the 10 s window.
        assert_eq!(t.refresh(), 0.0);
        assert_eq!(t.probability(), 0.0);
    }

    #[test]
    fn shadow_mode_admits_and_counts() {
        let registry = Registry::new();
        let clock = ManualClock::new();
        let t = AdaptiveThrottle::builder()
            .clock(Arc::new(clock.clone()))
            .refresh(Duration::ZERO)
            .mode(Mode::Shadow)
            .weight(Priority::Normal, 1e9)
            .registry(&registry)
            .seed(5)
            .build()
            .unwrap();
        assert_eq!(t.mode(), Mode::Shadow);
        let first = t.check(Priority::Normal);
        assert_eq!(first.verdict, Verdict::Admit);
        let d = t.check(Priority::Normal); // P = 1/2, weight huge: class probability 1
        assert_eq!(d.class_probability, 1.0);
        assert_eq!(d.verdict, Verdict::ShadowReject);
        assert!(d.admits());
        t.record_accepted();
        let s = registry.snapshot();
        let c = |r: &str| s.counter("adaptive_throttle_requests_total", &["normal", r]);
        assert_eq!((c("admitted"), c("throttled")), (Some(1), Some(1)));
        assert_eq!(s.counter("adaptive_throttle_attempts_total", &[]), Some(2));
        assert_eq!(s.counter("adaptive_throttle_accepts_total", &[]), Some(1));
        assert_eq!(
            s.float_gauge("adaptive_throttle_probability", &[]),
            Some(0.5)
        );
        assert!(format!("{t:?}").contains("AdaptiveThrottle"));
    }

    #[test]
    fn refresh_interval_caches_probability() {
        let clock = ManualClock::new();
        let t = AdaptiveThrottle::builder()
            .clock(Arc::new(clock.clone()))
            .seed(1)
            .build()
            .unwrap();
        let _ = t.check(Priority::Normal); // refreshes at t = 0: P = 0
        for _ in 0..50 {
            assert_eq!(t.check(Priority::Normal).probability, 0.0); // cached
        }
        clock.advance(Duration::from_millis(100));
        assert!(t.check(Priority::Normal).probability > 0.9);
    }

    #[test]
    fn build_errors() {
        for k in [0.5, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                AdaptiveThrottle::builder().k(k).build(),
                Err(ThrottleBuildError::K { .. })
            ));
        }
        let e = AdaptiveThrottle::builder()
            .weight(Priority::Low, -1.0)
            .build()
            .unwrap_err();
        assert_eq!(
            e,
            ThrottleBuildError::Weight {
                priority: Priority::Low,
                weight: -1.0
            }
        );
        let e = AdaptiveThrottle::builder()
            .resolution(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(e, ThrottleBuildError::Window(WindowError::ZeroResolution));
        assert!(std::error::Error::source(&e).is_some());
        let bad = Registry::new();
        bad.gauge("adaptive_throttle_requests_total", "x", &[])
            .unwrap();
        let e = AdaptiveThrottle::builder()
            .registry(&bad)
            .build()
            .unwrap_err();
        assert!(matches!(e, ThrottleBuildError::Registry(_)));
        for e in [e, ThrottleBuildError::K { k: 0.0 }] {
            assert!(!e.to_string().is_empty());
        }
        assert!(format!("{:?}", AdaptiveThrottle::builder()).contains("ThrottleBuilder"));
    }
}
