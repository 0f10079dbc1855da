//! Load shedding and admission: adaptive concurrency limits, client-side adaptive throttling, and
//! lift's weighted-signal load shedder.
//!
//! Three independent tools, usable alone or stacked:
//!
//! - [`Limiter`]: a concurrency limiter whose limit is learned by an algorithm ([`Aimd`],
//!   [`Vegas`], [`Gradient2`], or a [`FixedLimit`]), with the semantics of Netflix's
//!   concurrency-limits. [`Limiter::try_acquire`] is one compare-and-swap loop on one atomic
//!   word that holds both the limit and the in-flight count, so in-flight never exceeds the
//!   limit, not even transiently, and acquiring never takes a lock.
//! - [`AdaptiveThrottle`]: the client-side adaptive throttling of Google's SRE book. The client
//!   rejects locally with probability `max(0, (requests - K·accepts) / (requests + 1))` over a
//!   rolling window, weighted by the request's [`Priority`].
//! - [`LoadShedder`]: lift's shedder. A shedding rate from CPU, memory, latency and error-rate
//!   signals, and lift's strategies (random, priority, adaptive, circuit, custom), with the
//!   races and lost updates of lift's Go implementation designed out.
//!
//! Every decision explains itself: a [`Rejection`], a [`ThrottleDecision`] or a
//! [`ShedDecision`] carries its reason and the numbers it used. Every tool can run in
//! [`Mode::Shadow`](crate::policy::Mode::Shadow): it decides and counts as in enforce mode, but
//! admits (see [`Verdict::ShadowReject`]). Given a [`Registry`](crate::Registry), each records
//! its metrics there; the names are listed in `docs/policy-shed.md` and on each builder.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use weir::policy::shed::{Aimd, Limiter, Outcome};
//! use weir::{ManualClock, SharedClock};
//!
//! let clock = ManualClock::new();
//! let limiter = Limiter::builder(Aimd::builder().initial(2).min(1).max(10).build()?)
//!     .clock(Arc::new(clock.clone()) as SharedClock)
//!     .build()?;
//! let a = limiter.try_acquire().expect("below the limit");
//! let b = limiter.try_acquire().expect("below the limit");
//! let rejected = limiter.try_acquire().unwrap_err();
//! assert_eq!((rejected.limit, rejected.in_flight), (2, 2));
//! clock.advance(Duration::from_millis(3));
//! a.release(Outcome::Success); // AIMD: the limit was in use, so it grows by one
//! b.release(Outcome::Dropped); // a drop backs it off
//! assert_eq!(limiter.limit(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Orderings
//! The atomics of each part are described in its own module: the limiter's state word in
//! `limiter.rs`, the throttle's and the shedder's published views and refresh claims in
//! `throttle.rs` and `lift.rs`. The refresh claim shared by both (`Due`) uses `Relaxed`
//! compare-exchanges: it only elects which caller recomputes a view; the view itself is
//! published through `arc-swap` (release/acquire).
#![forbid(unsafe_code)]

mod lift;
mod limit;
mod limiter;
mod signals;
mod throttle;

use std::fmt;
use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

pub use lift::{
    LatencyStatistic, LoadShedder, LoadShedderBuilder, ShedDecision, ShedPolicy, ShedReason,
    ShedderBuildError, ShedderView, Strategy, Ticket, TicketOutcome,
};
pub use limit::{
    Aimd, AimdBuilder, FixedLimit, Gradient2, Gradient2Builder, LimitAlgorithm, LimitConfigError,
    Sample, Vegas, VegasBuilder,
};
pub use limiter::{
    Limiter, LimiterBuildError, LimiterBuilder, LimiterState, Outcome, OwnedPermit, Permit,
    RejectReason, Rejection,
};
pub use signals::{ManualSignals, NoSignals, ProcSampler, SystemSample, SystemSignals};
pub use throttle::{AdaptiveThrottle, ThrottleBuildError, ThrottleBuilder, ThrottleDecision};

// === Verdict ===

/// What a decision did with a request.
///
/// Every decision in this module carries one. In [`Mode::Shadow`](crate::policy::Mode::Shadow)
/// a request the policy would reject gets [`ShadowReject`](Verdict::ShadowReject): it is
/// admitted, and counted as rejected in the policy's metrics.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Admitted: the policy found no reason to reject.
    Admit,
    /// Rejected (enforce mode).
    Reject,
    /// The policy would have rejected, but runs in shadow mode: admitted.
    ShadowReject,
}

impl Verdict {
    /// Whether the request goes ahead ([`Admit`](Verdict::Admit) or
    /// [`ShadowReject`](Verdict::ShadowReject)).
    pub fn admits(self) -> bool {
        !matches!(self, Verdict::Reject)
    }

    /// Whether the policy decided to reject ([`Reject`](Verdict::Reject) or
    /// [`ShadowReject`](Verdict::ShadowReject)).
    pub fn would_reject(self) -> bool {
        !matches!(self, Verdict::Admit)
    }

    fn rejecting(mode: crate::policy::Mode) -> Verdict {
        if mode.enforces() {
            Verdict::Reject
        } else {
            Verdict::ShadowReject
        }
    }
}

// === Priority ===

/// How important a request is: lift's five priorities, which are also the criticality classes
/// of [`AdaptiveThrottle`].
///
/// [`value`](Priority::value) is lift's number (critical 10, high 8, normal 5, low 2,
/// background 1), used by the [`Strategy::Priority`] formula. Critical requests are the least
/// likely to be shed or throttled, background ones the most.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Work that must not be shed unless nothing else helps (lift value 10).
    Critical,
    /// Important interactive work (lift value 8).
    High,
    /// Ordinary requests (lift value 5).
    #[default]
    Normal,
    /// Deferrable work (lift value 2).
    Low,
    /// Batch and background work, shed first (lift value 1).
    Background,
}

impl Priority {
    /// All priorities, most important first.
    pub const ALL: [Priority; 5] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
        Priority::Background,
    ];

    /// lift's numeric priority: critical 10, high 8, normal 5, low 2, background 1.
    pub fn value(self) -> u8 {
        match self {
            Priority::Critical => 10,
            Priority::High => 8,
            Priority::Normal => 5,
            Priority::Low => 2,
            Priority::Background => 1,
        }
    }

    /// The lower-case name, as used in metric labels (`critical`, `high`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
            Priority::Background => "background",
        }
    }

    /// Position in [`ALL`](Priority::ALL) (0 for critical).
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === Due ===

/// Elects at most one caller per period to refresh a cached view.
pub(crate) struct Due {
    /// Clock time (nanoseconds) from which the next refresh is due.
    next: AtomicU64,
    every: u64,
}

impl Due {
    pub(crate) fn new(every: Duration) -> Due {
        Due {
            next: AtomicU64::new(0),
            every: nanos(every),
        }
    }

    /// Whether the caller should refresh now. When a refresh is due, exactly one of the callers
    /// that race here wins; the next refresh is then due `every` later.
    pub(crate) fn claim(&self, now: Duration) -> bool {
        let now = nanos(now);
        // Relaxed: the claim elects a refresher and publishes nothing (module docs).
        let next = self.next.load(Ordering::Relaxed);
        if now < next {
            return false;
        }
        // Relaxed on success and failure: whoever wins refreshes; losers use the published view.
        self.next
            .compare_exchange(
                next,
                now.saturating_add(self.every),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Records a refresh made outside `claim` (an explicit refresh): the next is due `every`
    /// after `now`.
    pub(crate) fn refreshed(&self, now: Duration) {
        // Relaxed: as in `claim`.
        self.next
            .fetch_max(nanos(now).saturating_add(self.every), Ordering::Relaxed);
    }
}

impl fmt::Debug for Due {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Due")
            .field("every", &Duration::from_nanos(self.every))
            .finish_non_exhaustive()
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX`.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `x` if it is a finite number in `[lo, hi]`.
pub(crate) fn in_range(x: f64, lo: f64, hi: f64) -> bool {
    x.is_finite() && x >= lo && x <= hi
}

/// Clamps into `[lo, hi]`, mapping NaN to `lo`.
pub(crate) fn clamp_or_low(x: f64, lo: f64, hi: f64) -> f64 {
    if x.is_nan() { lo } else { x.clamp(lo, hi) }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert!(Verdict::Admit.admits() && !Verdict::Admit.would_reject());
        assert!(!Verdict::Reject.admits() && Verdict::Reject.would_reject());
        assert!(Verdict::ShadowReject.admits() && Verdict::ShadowReject.would_reject());
        assert_eq!(
            Verdict::rejecting(crate::policy::Mode::Shadow),
            Verdict::ShadowReject
        );
    }

    #[test]
    fn priorities() {
        let values: Vec<u8> = Priority::ALL.iter().map(|p| p.value()).collect();
        assert_eq!(values, [10, 8, 5, 2, 1]);
        for (i, p) in Priority::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
        }
        assert_eq!(Priority::default().to_string(), "normal");
    }

    #[test]
    fn due_elects_one_per_period() {
        let d = Due::new(Duration::from_secs(1));
        assert!(d.claim(Duration::ZERO));
        assert!(!d.claim(Duration::from_millis(999)));
        assert!(d.claim(Duration::from_secs(1)));
        d.refreshed(Duration::from_secs(5));
        assert!(!d.claim(Duration::from_secs(5)));
        assert!(d.claim(Duration::from_secs(6)));
        let zero = Due::new(Duration::ZERO);
        assert!(zero.claim(Duration::ZERO) && zero.claim(Duration::ZERO));
        assert!(format!("{d:?}").contains("Due"));
        assert_eq!(clamp_or_low(f64::NAN, 0.1, 0.9), 0.1);
        assert!(!in_range(f64::INFINITY, 0.0, f64::INFINITY));
    }
}
