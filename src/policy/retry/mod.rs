//! Retries: backoff, classification, deadlines, budgets, and the [`RetryPolicy`] that ties
//! them into one decision per failed attempt.
//!
//! The pieces, each usable on its own:
//! - [`Backoff`]: fixed, linear, exponential or decorrelated-jitter delays, clamped to a
//!   maximum, then jittered (none, full, equal, or lift's ±fraction);
//! - [`Classifier`]: whether an [`Outcome`] (a status code or an error class) may be retried,
//!   in lift's decision order;
//! - budgets implementing [`RetryBudget`], shared across requests and exact under
//!   concurrency: [`RatioBudget`] (Finagle/tower), [`RetryThrottle`] (gRPC) and
//!   [`RetryQuota`] (AWS).
//!
//! A [`RetryPolicy`] decides, after each failed attempt, in this order: the classifier (not
//! retryable: give up), the attempt limit (`MaxAttempts`, counting the first attempt), the
//! backoff delay, the total deadline (give up if `elapsed + delay > total_timeout`), and last the
//! budget, so that nothing is withdrawn for a retry that would not happen anyway. The answer is
//! a [`RetryDecision`]: `Retry` with the delay, the next attempt's number and timeout, or
//! `GiveUp` with the reason and the numbers behind it. In [`Mode::Shadow`] an exhausted budget
//! is counted but the retry is allowed.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use weir::ManualClock;
//! use weir::policy::retry::{GiveUpReason, Outcome, RetryDecision, RetryPolicy};
//!
//! let clock = ManualClock::new();
//! let policy = RetryPolicy::builder()
//!     .clock(Arc::new(clock.clone()))
//!     .rng_seed(7)
//!     .build()?;
//!
//! let mut request = policy.begin();
//! // First attempt: 503.
//! match policy.on_failure(&mut request, &Outcome::Status(503)) {
//!     RetryDecision::Retry { delay, attempt, .. } => {
//!         assert_eq!((delay, attempt), (Duration::from_millis(100), 2));
//!         clock.advance(delay);
//!     }
//!     RetryDecision::GiveUp { reason } => panic!("{reason:?}"),
//! }
//! // Second attempt: 404, which is not retryable.
//! let decision = policy.on_failure(&mut request, &Outcome::Status(404));
//! assert!(matches!(decision, RetryDecision::GiveUp { reason: GiveUpReason::NotRetryable { .. } }));
//! # Ok::<(), weir::policy::retry::RetryPolicyError>(())
//! ```
//!
//! # Metrics
//! Given a [`Registry`](RetryPolicyBuilder::registry), a policy records, each with the label
//! `retry_name` (the policy's [name](RetryPolicyBuilder::name)):
//!
//! | name | kind | counts |
//! |---|---|---|
//! | `retry_requests_total` | counter | requests started ([`RetryPolicy::begin`]); lift's `TotalRequests` |
//! | `retry_attempts_total` | counter | attempts reported, failed or successful; lift's `TotalAttempts` |
//! | `retry_retried_requests_total` | counter | requests that were retried at least once; lift's `RetriedRequests` |
//! | `retry_successful_retries_total` | counter | retried requests that then succeeded; lift's `SuccessfulRetries` |
//! | `retry_failed_retries_total` | counter | retried requests that then gave up; lift's `FailedRetries` |
//! | `retry_budget_exhausted_total` | counter | retries a budget refused (in shadow mode too) |
//! | `retry_give_ups_total` | counter, label `reason` | give-ups by reason: `not_retryable`, `max_attempts`, `deadline_exceeded`, `budget_exhausted` |
//! | `retry_delay_nanoseconds` | histogram | the delay of each retry decision; its sum is lift's `TotalDelay` |
//!
//! lift's averages follow: `AverageAttempts = retry_attempts_total / retry_requests_total` and
//! `AverageDelay = sum(retry_delay_nanoseconds) / retry_requests_total`. Handles are obtained
//! once, when the policy is built; recording never looks a name up.
#![forbid(unsafe_code)]

mod backoff;
mod budget;
mod classify;
mod quota;
mod ratio;
mod throttle;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use backoff::{
    Backoff, BackoffBuilder, BackoffError, DEFAULT_DECORRELATED_MULTIPLIER, DEFAULT_INITIAL_DELAY,
    DEFAULT_JITTER_FRACTION, DEFAULT_MAX_DELAY, DEFAULT_MULTIPLIER, Jitter, Strategy,
};
pub use budget::{FailureClass, RetryBudget, Withdrawal};
pub use classify::{
    Classification, Classifier, ClassifierBuilder, Condition, DEFAULT_ALLOW_CODES,
    DEFAULT_DENY_CODES, ErrorKind, NotRetryable, Outcome, Retryable,
};
pub use quota::{RetryQuota, RetryQuotaBuilder, RetryQuotaError};
pub use ratio::{
    MAX_DEPOSIT_STRIPES, MAX_RATIO, MAX_RATIO_SLOTS, MAX_RATIO_WINDOW, MAX_SLOT_COUNT,
    MIN_SLOT_WIDTH, RatioBudget, RatioBudgetBuilder, RatioBudgetError,
};
pub use throttle::{
    GRPC_MAX_TOKENS, MAX_THROTTLE_TOKENS, RetryThrottle, RetryThrottleBuilder, RetryThrottleError,
};

use crate::clock::{SharedClock, SystemClock};
use crate::counter::Counter;
use crate::error::RegistryError;
use crate::histogram::Histogram;
use crate::policy::{Mode, Rng};
use crate::registry::Registry;

/// lift's default attempt limit (the first attempt included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// lift's default time limit for one attempt.
pub const DEFAULT_PER_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// lift's default time limit for all attempts and delays together.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(300);

// === decisions ===

/// What to do after a failed attempt.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait `delay`, then make attempt number `attempt`, giving it at most `attempt_timeout`.
    Retry {
        /// How long to wait first.
        delay: Duration,
        /// The number of the next attempt (2 for the first retry).
        attempt: u32,
        /// The time the next attempt may take: the per-attempt timeout, or what is left of the
        /// total after the delay if that is less.
        attempt_timeout: Duration,
        /// Why the outcome was retryable.
        reason: Retryable,
        /// What the budget said.
        budget: BudgetCheck,
    },
    /// Stop; report the last attempt's failure.
    GiveUp {
        /// Why.
        reason: GiveUpReason,
    },
}

impl RetryDecision {
    /// Whether to retry.
    pub fn is_retry(&self) -> bool {
        matches!(self, RetryDecision::Retry { .. })
    }
    /// The delay before the retry, if there is one.
    pub fn delay(&self) -> Option<Duration> {
        match self {
            RetryDecision::Retry { delay, .. } => Some(*delay),
            RetryDecision::GiveUp { .. } => None,
        }
    }
}

/// What the budget said about a retry that goes ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetCheck {
    /// The policy has no budget.
    Unlimited,
    /// The budget granted it and withdrew `cost`, leaving `balance` (in the budget's units).
    Withdrawn {
        /// Units withdrawn.
        cost: u64,
        /// The balance after.
        balance: i64,
    },
    /// Shadow mode: the budget refused it (and it was counted in
    /// `retry_budget_exhausted_total`), but the retry goes ahead. Nothing was withdrawn.
    ShadowExhausted {
        /// The balance the budget saw.
        balance: i64,
        /// The balance a retry needs.
        required: i64,
    },
}

/// Why a policy gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The classifier refused the outcome.
    NotRetryable {
        /// The rule that refused it.
        rule: NotRetryable,
    },
    /// `attempts` attempts were made, the limit.
    MaxAttempts {
        /// Attempts made.
        attempts: u32,
        /// The limit.
        max_attempts: u32,
    },
    /// `elapsed + next_delay > total`: the retry would start past the total deadline.
    DeadlineExceeded {
        /// Time since the request began.
        elapsed: Duration,
        /// The delay the retry would have waited.
        next_delay: Duration,
        /// The total timeout.
        total: Duration,
    },
    /// The budget refused the retry (enforce mode).
    BudgetExhausted {
        /// The balance the budget saw (in its units).
        balance: i64,
        /// The balance a retry needs.
        required: i64,
    },
    /// The request had already succeeded or given up; report nothing more for it.
    AlreadyFinished,
}

impl GiveUpReason {
    /// The `reason` label value in `retry_give_ups_total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            GiveUpReason::NotRetryable { .. } => "not_retryable",
            GiveUpReason::MaxAttempts { .. } => "max_attempts",
            GiveUpReason::DeadlineExceeded { .. } => "deadline_exceeded",
            GiveUpReason::BudgetExhausted { .. } => "budget_exhausted",
            GiveUpReason::AlreadyFinished => "already_finished",
        }
    }
}

/// The facts a [`RetryPolicy::decide`] call needs about the attempt that failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptInfo {
    /// The failed attempt's number: 1 for the first attempt (0 is read as 1).
    pub attempt: u32,
    /// Time since the request began.
    pub elapsed: Duration,
    /// The delay waited before this attempt (zero for the first); decorrelated jitter uses it.
    pub previous_delay: Duration,
}

/// One request's retry state, kept by the caller between attempts (see
/// [`RetryPolicy::begin`]). Not shared between threads; cheap to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryRequest {
    started: Duration,
    attempts: u32,
    previous_delay: Duration,
    total_delay: Duration,
    last_withdrawal: u64,
    retried: bool,
    finished: bool,
}

impl RetryRequest {
    /// Attempts reported so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    /// When the request began, by the policy's clock.
    pub fn started_at(&self) -> Duration {
        self.started
    }
    /// The sum of the delays of the retries decided so far.
    pub fn total_delay(&self) -> Duration {
        self.total_delay
    }
    /// Whether the request succeeded or gave up.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

// === metrics ===

struct Metrics {
    requests: Counter,
    attempts: Counter,
    retried: Counter,
    successful: Counter,
    failed: Counter,
    budget_exhausted: Counter,
    /// Indexed by `give_up_index`.
    give_ups: [Counter; 4],
    delay: Histogram,
}

const GIVE_UP_REASONS: [&str; 4] = [
    "not_retryable",
    "max_attempts",
    "deadline_exceeded",
    "budget_exhausted",
];

fn give_up_index(r: &GiveUpReason) -> Option<usize> {
    GIVE_UP_REASONS.iter().position(|s| *s == r.as_str())
}

impl Metrics {
    fn register(registry: &Registry, name: &str) -> Result<Metrics, RegistryError> {
        let counter = |metric: &str, help: &str| -> Result<Counter, RegistryError> {
            registry
                .describe(metric, help)
                .counter_family(&["retry_name"])?
                .with(&[name])
        };
        let give_ups = registry
            .describe(
                "retry_give_ups_total",
                "Requests the retry policy gave up on, by reason",
            )
            .counter_family(&["retry_name", "reason"])?;
        let give_up = |reason: &str| give_ups.with(&[name, reason]);
        Ok(Metrics {
            requests: counter(
                "retry_requests_total",
                "Requests started under the retry policy",
            )?,
            attempts: counter(
                "retry_attempts_total",
                "Attempts made, first attempts included",
            )?,
            retried: counter(
                "retry_retried_requests_total",
                "Requests retried at least once",
            )?,
            successful: counter(
                "retry_successful_retries_total",
                "Retried requests that then succeeded",
            )?,
            failed: counter(
                "retry_failed_retries_total",
                "Retried requests that then gave up",
            )?,
            budget_exhausted: counter(
                "retry_budget_exhausted_total",
                "Retries the retry budget refused (counted in shadow mode too)",
            )?,
            give_ups: [
                give_up(GIVE_UP_REASONS[0])?,
                give_up(GIVE_UP_REASONS[1])?,
                give_up(GIVE_UP_REASONS[2])?,
                give_up(GIVE_UP_REASONS[3])?,
            ],
            delay: registry
                .describe("retry_delay_nanoseconds", "Delay before each retry")
                .unit("nanoseconds")
                .histogram_family(&["retry_name"])?
                .with(&[name])?,
        })
    }
}

// === builder ===

/// Builds a [`RetryPolicy`]; starts from lift's defaults (3 attempts, exponential backoff from
/// 100 ms doubling to at most 30 s without jitter, lift's classifier, 30 s per attempt, 5 min
/// in total, no budget, enforce mode, the system clock, an entropy-seeded generator).
pub struct RetryPolicyBuilder {
    max_attempts: u32,
    backoff: Backoff,
    classifier: Classifier,
    per_attempt_timeout: Duration,
    total_timeout: Duration,
    budget: Option<Arc<dyn RetryBudget>>,
    mode: Mode,
    clock: Option<SharedClock>,
    rng: Option<Rng>,
    registry: Option<Registry>,
    name: String,
}

impl fmt::Debug for RetryPolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl RetryPolicyBuilder {
    /// Attempts allowed, the first included (default 3; at least 1, which means no retries).
    pub fn max_attempts(mut self, max: u32) -> Self {
        self.max_attempts = max;
        self
    }
    /// The backoff (default [`Backoff::default`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
    /// The classifier (default [`Classifier::default`]).
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }
    /// The longest one attempt may take (default 30 s; above zero).
    pub fn per_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.per_attempt_timeout = timeout;
        self
    }
    /// The longest all attempts and delays may take together (default 5 min; above zero).
    pub fn total_timeout(mut self, timeout: Duration) -> Self {
        self.total_timeout = timeout;
        self
    }
    /// A budget shared with other policies or requests (default none).
    pub fn budget(mut self, budget: Arc<dyn RetryBudget>) -> Self {
        self.budget = Some(budget);
        self
    }
    /// [`Mode::Shadow`]: count budget refusals but retry anyway (default enforce).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// The clock that measures elapsed time (default: a new [`SystemClock`]).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }
    /// The generator for jitter (default [`Rng::from_entropy`]).
    pub fn rng(mut self, rng: Rng) -> Self {
        self.rng = Some(rng);
        self
    }
    /// Seeds the jitter generator: repeatable delays.
    pub fn rng_seed(self, seed: u64) -> Self {
        self.rng(Rng::with_seed(seed))
    }
    /// Records the policy's metrics (see the [module docs](self)) into `registry`.
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }
    /// The `retry_name` label of the metrics (default `"default"`, as in lift).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Checks the settings, registers the metrics, and builds the policy.
    ///
    /// # Errors
    /// [`RetryPolicyError`] names the first invalid setting, or the registry's refusal.
    pub fn build(self) -> Result<RetryPolicy, RetryPolicyError> {
        if self.max_attempts == 0 {
            return Err(RetryPolicyError::ZeroMaxAttempts);
        }
        if self.per_attempt_timeout.is_zero() {
            return Err(RetryPolicyError::ZeroTimeout {
                which: "per_attempt_timeout",
            });
        }
        if self.total_timeout.is_zero() {
            return Err(RetryPolicyError::ZeroTimeout {
                which: "total_timeout",
            });
        }
        let metrics = match &self.registry {
            Some(r) => Some(Metrics::register(r, &self.name).map_err(RetryPolicyError::Registry)?),
            None => None,
        };
        Ok(RetryPolicy {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            classifier: self.classifier,
            per_attempt_timeout: self.per_attempt_timeout,
            total_timeout: self.total_timeout,
            budget: self.budget,
            mode: self.mode,
            clock: self
                .clock
                .unwrap_or_else(|| Arc::new(SystemClock::new()) as SharedClock),
            rng: self.rng.unwrap_or_default(),
            metrics,
            name: self.name,
        })
    }
}

/// [`RetryPolicyBuilder::build`] refused a setting.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryPolicyError {
    /// At least one attempt is needed; use 1 for no retries.
    ZeroMaxAttempts,
    /// Timeouts must be longer than zero.
    ZeroTimeout {
        /// `per_attempt_timeout` or `total_timeout`.
        which: &'static str,
    },
    /// The registry refused a metric (a name registered before with another kind or labels);
    /// register the retry metrics only through retry policies.
    Registry(RegistryError),
}

impl fmt::Display for RetryPolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryPolicyError::ZeroMaxAttempts => f.write_str("max_attempts must be at least 1"),
            RetryPolicyError::ZeroTimeout { which } => {
                write!(f, "{which} must be longer than zero")
            }
            RetryPolicyError::Registry(e) => write!(f, "cannot register retry metrics: {e}"),
        }
    }
}

impl std::error::Error for RetryPolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RetryPolicyError::Registry(e) => Some(e),
            _ => None,
        }
    }
}

// === impl RetryPolicy ===

/// Decides, after each failed attempt, whether and when to retry; see the
/// [module docs](self). Shared by reference across threads: all per-request state lives in
/// the caller's [`RetryRequest`].
pub struct RetryPolicy {
    max_attempts: u32,
    backoff: Backoff,
    classifier: Classifier,
    per_attempt_timeout: Duration,
    total_timeout: Duration,
    budget: Option<Arc<dyn RetryBudget>>,
    mode: Mode,
    clock: SharedClock,
    rng: Rng,
    metrics: Option<Metrics>,
    name: String,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("classifier", &self.classifier)
            .field("per_attempt_timeout", &self.per_attempt_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("budget", &self.budget)
            .field("mode", &self.mode)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl RetryPolicy {
    /// A builder with lift's defaults.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::default(),
            classifier: Classifier::default(),
            per_attempt_timeout: DEFAULT_PER_ATTEMPT_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            budget: None,
            mode: Mode::Enforce,
            clock: None,
            rng: None,
            registry: None,
            name: "default".to_owned(),
        }
    }

    /// The attempt limit.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// The backoff.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }
    /// The classifier.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }
    /// The budget, if any.
    pub fn budget(&self) -> Option<&Arc<dyn RetryBudget>> {
        self.budget.as_ref()
    }
    /// Enforce or shadow.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Starts a request: deposits into the budget, counts `retry_requests_total`, and notes
    /// the start time. Give its first attempt [`attempt_timeout`](RetryPolicy::attempt_timeout).
    #[must_use = "report the request's attempts with on_failure / on_success"]
    pub fn begin(&self) -> RetryRequest {
        if let Some(b) = &self.budget {
            b.deposit();
        }
        if let Some(m) = &self.metrics {
            m.requests.inc();
        }
        RetryRequest {
            started: self.clock.now(),
            attempts: 0,
            previous_delay: Duration::ZERO,
            total_delay: Duration::ZERO,
            last_withdrawal: 0,
            retried: false,
            finished: false,
        }
    }

    /// The time the request's next attempt may take: the per-attempt timeout, or what is left
    /// of the total timeout if that is less (zero once it has passed).
    pub fn attempt_timeout(&self, request: &RetryRequest) -> Duration {
        let elapsed = self.clock.now().saturating_sub(request.started);
        self.per_attempt_timeout
            .min(self.total_timeout.saturating_sub(elapsed))
    }

    /// The request's latest attempt failed with `outcome`: decides (see
    /// [`decide`](RetryPolicy::decide)) and updates the request and the metrics.
    pub fn on_failure(&self, request: &mut RetryRequest, outcome: &Outcome<'_>) -> RetryDecision {
        if request.finished {
            return RetryDecision::GiveUp {
                reason: GiveUpReason::AlreadyFinished,
            };
        }
        request.attempts = request.attempts.saturating_add(1);
        if let Some(m) = &self.metrics {
            m.attempts.inc();
        }
        let info = AttemptInfo {
            attempt: request.attempts,
            elapsed: self.clock.now().saturating_sub(request.started),
            previous_delay: request.previous_delay,
        };
        let decision = self.decide(info, outcome);
        match decision {
            RetryDecision::Retry { delay, budget, .. } => {
                if !request.retried {
                    request.retried = true;
                    if let Some(m) = &self.metrics {
                        m.retried.inc();
                    }
                }
                request.previous_delay = delay;
                request.total_delay = request.total_delay.saturating_add(delay);
                request.last_withdrawal = match budget {
                    BudgetCheck::Withdrawn { cost, .. } => cost,
                    _ => 0,
                };
            }
            RetryDecision::GiveUp { .. } => {
                request.finished = true;
                if request.retried
                    && let Some(m) = &self.metrics
                {
                    m.failed.inc();
                }
            }
        }
        decision
    }

    /// The request's latest attempt succeeded: counts it, and tells the budget (which may
    /// refund). Does nothing for a finished request.
    pub fn on_success(&self, request: &mut RetryRequest) {
        if request.finished {
            return;
        }
        request.finished = true;
        request.attempts = request.attempts.saturating_add(1);
        if let Some(m) = &self.metrics {
            m.attempts.inc();
            if request.retried {
                m.successful.inc();
            }
        }
        if let Some(b) = &self.budget {
            b.on_success(request.last_withdrawal);
        }
    }

    /// The decision after a failed attempt, from the attempt's number, the time elapsed, and
    /// its outcome; the building block of [`on_failure`](RetryPolicy::on_failure), for callers
    /// that keep their own request state.
    ///
    /// Checks, in order: the classifier, the attempt limit, the delay against the total
    /// timeout, and the budget (withdrawn only when everything else allows the retry). Records
    /// the decision metrics (`retry_delay_nanoseconds`, `retry_give_ups_total`,
    /// `retry_budget_exhausted_total`) but no per-request ones, and makes no deposit.
    pub fn decide(&self, info: AttemptInfo, outcome: &Outcome<'_>) -> RetryDecision {
        let attempt = info.attempt.max(1);
        let reason = match self.classifier.classify(outcome) {
            Classification::Retryable(r) => r,
            Classification::NotRetryable(rule) => {
                return self.give_up(GiveUpReason::NotRetryable { rule });
            }
        };
        let class = outcome.failure_class();
        if attempt >= self.max_attempts {
            self.charge(class);
            return self.give_up(GiveUpReason::MaxAttempts {
                attempts: attempt,
                max_attempts: self.max_attempts,
            });
        }
        let delay = self.backoff.delay(attempt, info.previous_delay, &self.rng);
        let start = info.elapsed.saturating_add(delay);
        if start > self.total_timeout {
            self.charge(class);
            return self.give_up(GiveUpReason::DeadlineExceeded {
                elapsed: info.elapsed,
                next_delay: delay,
                total: self.total_timeout,
            });
        }
        let budget = match &self.budget {
            None => BudgetCheck::Unlimited,
            Some(b) => match b.try_withdraw(class) {
                Withdrawal::Withdrawn { cost, balance } => BudgetCheck::Withdrawn { cost, balance },
                Withdrawal::Refused {
                    balance, required, ..
                } => {
                    if let Some(m) = &self.metrics {
                        m.budget_exhausted.inc();
                    }
                    if self.mode.enforces() {
                        return self.give_up(GiveUpReason::BudgetExhausted { balance, required });
                    }
                    BudgetCheck::ShadowExhausted { balance, required }
                }
            },
        };
        if let Some(m) = &self.metrics {
            m.delay.record_duration(delay);
        }
        RetryDecision::Retry {
            delay,
            attempt: attempt.saturating_add(1),
            attempt_timeout: self
                .per_attempt_timeout
                .min(self.total_timeout.saturating_sub(start)),
            reason,
            budget,
        }
    }

    /// Charges a retryable failure that will not be retried to budgets that charge failures.
    fn charge(&self, class: FailureClass) {
        if let Some(b) = &self.budget {
            b.charge_failure(class);
        }
    }

    fn give_up(&self, reason: GiveUpReason) -> RetryDecision {
        if let (Some(m), Some(i)) = (&self.metrics, give_up_index(&reason)) {
            m.give_ups[i].inc();
        }
        RetryDecision::GiveUp { reason }
    }
}
