//! Decisions built on weir's statistics: retry, load shedding and admission, circuit breaking,
//! bulkheads, timeouts and rate limits.
//!
//! Conventions shared by every policy:
//! - A decision is a `#[must_use]` value that carries its reason and the numbers it used.
//! - Whatever is withdrawn (retry tokens, permits, rate-limit cells) is withdrawn by
//!   compare-and-swap, with no check-then-act window, and loom-checked (`loom-tests/`).
//! - What is only estimated (rates, percentiles) comes from weir metrics and may be one refresh
//!   old; each policy says so where it applies.
//! - All time comes from a [`Clock`](crate::Clock) and all randomness from a seedable
//!   [`Rng`], so every test is deterministic.
//! - Every policy can run in [`Mode::Shadow`]: it decides and counts, but admits.
//! - Every policy can record its own metrics into a [`Registry`](crate::Registry), with lift's
//!   metric names in Prometheus style (`retry_attempts_total`,
//!   `load_shedding_requests_total{result}`, `circuit_breaker_state`, ...).
#![forbid(unsafe_code)]

pub mod breaker;
pub mod bulkhead;
pub mod ratelimit;
pub mod retry;
mod rng;
pub mod shed;
pub mod timeout;

pub use rng::Rng;

/// Whether a policy enforces its decisions or only observes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Decisions take effect: rejections reject.
    #[default]
    Enforce,
    /// Decisions are made and counted (metrics, decision values), but every request is
    /// admitted. Use it to see what a policy would do before turning it on.
    Shadow,
}

impl Mode {
    /// Whether a rejection should really reject.
    pub fn enforces(self) -> bool {
        self == Mode::Enforce
    }
}
