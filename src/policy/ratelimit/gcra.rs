//! The generic cell rate algorithm on one atomic word.
//!
//! # Orderings
//! The theoretical arrival time (TAT) is one `AtomicU64`, loaded and compare-exchanged with
//! `Relaxed`. It is the only data the limiter owns and it publishes nothing else; what makes a
//! decision exact is that read-modify-writes on one atomic are totally ordered and each CAS
//! compares against the latest value, which every ordering guarantees. So two acquisitions can
//! never both succeed from the same TAT, and the sum of what succeeds never exceeds what the TAT
//! arithmetic allows. The keyed table's eviction protocol (retire by CAS to a tombstone under the
//! shard mutex) relies on the same property: see `keyed.rs`.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::{BuildError, Decision, LimitReason, Quota, RateMetrics, clock_nanos};
use crate::clock::{SharedClock, SystemClock};
use crate::policy::Mode;
use crate::registry::Registry;
use crate::sync::{AtomicU64, Ordering};

/// The TAT of an entry evicted from a keyed table. Never a real TAT: real ones are at most
/// `MAX_NANOS + 2 × MAX_TOLERANCE_NANOS < u64::MAX`.
pub(crate) const TOMBSTONE: u64 = u64::MAX;

/// The outcome of one acquisition on a cell.
pub(crate) enum Acquired {
    /// A decision was made (and, if allowed, the cells were taken).
    Decided(Decision),
    /// The cell was retired (evicted from a keyed table): look the key up again.
    Retired,
}

/// The TAT word and the arithmetic on it, shared by [`Gcra`] and keyed entries.
pub(crate) struct GcraCell {
    /// Theoretical arrival time, nanoseconds of the limiter's clock. `<= now` means full.
    tat: AtomicU64,
}

impl GcraCell {
    pub(crate) fn new() -> GcraCell {
        GcraCell {
            tat: AtomicU64::new(0),
        }
    }

    /// Takes `n` cells at time `now` if the quota allows it.
    ///
    /// With `T` the emission interval and `τ = T × burst`: `new = max(tat, now) + n × T`; admit
    /// iff `new - now <= τ`, installing `new` by CAS. In shadow mode a limited request installs
    /// nothing (the state is what enforcement would leave).
    #[inline]
    pub(crate) fn acquire(&self, q: &Quota, now: u64, n: u64, mode: Mode) -> Acquired {
        let interval = q.interval_nanos();
        let tau = q.tolerance_nanos();
        let burst = q.burst();
        // Relaxed: see the module docs (exactness comes from the CAS alone).
        let mut tat = self.tat.load(Ordering::Relaxed);
        if n > burst {
            if tat == TOMBSTONE {
                return Acquired::Retired;
            }
            return Acquired::Decided(Decision::Limited {
                retry_after: Duration::MAX,
                reset_after: Duration::from_nanos(tat.saturating_sub(now)),
                limit: burst,
                reason: LimitReason::ExceedsCapacity,
                mode,
            });
        }
        // n <= burst, so n × T <= τ <= MAX_TOLERANCE_NANOS: no overflow.
        let inc = n * interval;
        loop {
            if tat == TOMBSTONE {
                return Acquired::Retired;
            }
            let base = tat.max(now);
            // base <= MAX_NANOS + τ (a TAT is installed only when new - now <= τ), so the sum is
            // below TOMBSTONE; saturate anyway.
            let new = base.saturating_add(inc).min(TOMBSTONE - 1);
            let ahead = new - now;
            if ahead > tau {
                return Acquired::Decided(Decision::Limited {
                    retry_after: Duration::from_nanos(ahead - tau),
                    reset_after: Duration::from_nanos(base - now),
                    limit: burst,
                    reason: LimitReason::Exhausted,
                    mode,
                });
            }
            let allowed = Decision::Allowed {
                remaining: (tau - ahead) / interval,
                reset_after: Duration::from_nanos(ahead),
                limit: burst,
            };
            if inc == 0 {
                return Acquired::Decided(allowed);
            }
            // Relaxed on success and failure: the CAS itself is what makes the withdrawal
            // exact (module docs); a failure reloads the newer TAT and decides again.
            match self
                .tat
                .compare_exchange_weak(tat, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Acquired::Decided(allowed),
                Err(current) => tat = current,
            }
        }
    }

    /// Gives back up to `n` cells: `tat = max(tat - n × T, now)`, by CAS. Returns how many cells
    /// came back, counting one that had partly refilled by itself as given back:
    /// `ceil((tat - new) / T)`, at most `n`; 0 when the limiter was already full or the cell is
    /// retired. (With that count, "cells taken minus cells given back" never exceeds
    /// `burst + now / T`, whatever the interleaving: `net × T <= max(tat, now)` is invariant.)
    pub(crate) fn refund(&self, q: &Quota, now: u64, n: u64) -> u64 {
        let interval = q.interval_nanos();
        let dec = n.saturating_mul(interval);
        // Relaxed: as for `acquire`.
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            if tat == TOMBSTONE || tat <= now || n == 0 {
                return 0;
            }
            let new = tat.saturating_sub(dec).max(now);
            // Relaxed: see `acquire`.
            match self
                .tat
                .compare_exchange_weak(tat, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return (tat - new).div_ceil(interval).min(n),
                Err(current) => tat = current,
            }
        }
    }

    /// Retires the cell if it has been full for at least `idle` (`tat + idle <= now`): CAS to the
    /// tombstone. A full cell carries no state (a fresh cell decides exactly the same), so
    /// retiring it loses nothing; an acquisition that races it either changes the TAT first (the
    /// CAS fails) or sees the tombstone and looks the key up again.
    pub(crate) fn retire_if_idle(&self, now: u64, idle: u64) -> bool {
        // Relaxed: see the module docs.
        let tat = self.tat.load(Ordering::Relaxed);
        if tat == TOMBSTONE || tat.saturating_add(idle) > now {
            return false;
        }
        // Relaxed: the CAS against the observed TAT is the whole protocol (module docs).
        self.tat
            .compare_exchange(tat, TOMBSTONE, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// The TAT now (`TOMBSTONE` if retired).
    pub(crate) fn tat(&self) -> u64 {
        // Relaxed: a reading for reporting only.
        self.tat.load(Ordering::Relaxed)
    }
}

// === impl Gcra ===

/// A rate limiter running the generic cell rate algorithm on one atomic word.
///
/// Every acquisition is one CAS on the theoretical arrival time; nothing is ever overdrawn. With
/// a clock that does not move, exactly `burst` cells are admitted in total, whatever the number
/// of threads. `T = period / count`, `τ = T × burst`; a request for `n` cells at time `now` is
/// admitted iff `max(tat, now) + n × T - now <= τ` (see `docs/policy-ratelimit.md`).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use weir::ManualClock;
/// use weir::policy::ratelimit::{Gcra, Quota};
///
/// let clock = ManualClock::new();
/// let limiter = Gcra::new(Quota::per_second(10)?.with_burst(5)?, Arc::new(clock.clone()));
/// let admitted = (0..20).filter(|_| limiter.try_acquire().admits()).count();
/// assert_eq!(admitted, 5); // the burst
/// clock.advance(Duration::from_millis(100)); // one emission interval
/// assert!(limiter.try_acquire().admits());
/// assert!(!limiter.try_acquire().admits());
/// # Ok::<(), weir::policy::ratelimit::QuotaError>(())
/// ```
pub struct Gcra {
    /// Alone on its cache line(s): every acquisition writes it, and the settings below are
    /// read by every acquisition, so sharing a line would make each write evict them from the
    /// other threads' caches.
    cell: CachePadded<GcraCell>,
    quota: Quota,
    mode: Mode,
    clock: SharedClock,
    metrics: Option<RateMetrics>,
}

impl Gcra {
    /// An enforcing limiter with this quota and clock, recording no metrics.
    pub fn new(quota: Quota, clock: SharedClock) -> Gcra {
        Gcra {
            cell: CachePadded::new(GcraCell::new()),
            quota,
            mode: Mode::Enforce,
            clock,
            metrics: None,
        }
    }

    /// A builder (clock, mode, metrics).
    pub fn builder(quota: Quota) -> GcraBuilder {
        GcraBuilder {
            quota,
            mode: Mode::Enforce,
            clock: None,
            registry: None,
        }
    }

    /// Asks for one cell.
    #[inline]
    pub fn try_acquire(&self) -> Decision {
        self.try_acquire_n(1)
    }

    /// Asks for `n` cells at once (all or nothing). `n = 0` takes nothing and reports the
    /// current state as `Allowed`; `n > burst` is `Limited` with
    /// [`LimitReason::ExceedsCapacity`].
    #[inline]
    pub fn try_acquire_n(&self, n: u64) -> Decision {
        let now = clock_nanos(self.clock.now());
        let d = match self.cell.acquire(&self.quota, now, n, self.mode) {
            Acquired::Decided(d) => d,
            // A standalone cell is never retired.
            Acquired::Retired => unreachable!("a standalone GCRA cell is never retired"),
        };
        super::count(&self.metrics, &d);
        d
    }

    /// Gives back up to `n` cells taken earlier (lift's skip-successful: refund a request's cost
    /// when it succeeded). The TAT moves back by `n × T` but never below now, so a refund never
    /// makes the limiter hold more than its burst. Returns the cells given back, counting a
    /// cell that had already partly refilled as given back (so it may be fewer than `n` when the
    /// limiter was nearly full, and is 0 when it was full).
    ///
    /// Refund only what was taken: the limiter cannot tell a refund from a gift.
    pub fn refund(&self, n: u64) -> u64 {
        let now = clock_nanos(self.clock.now());
        self.cell.refund(&self.quota, now, n)
    }

    /// Cells available now, without taking any.
    pub fn remaining(&self) -> u64 {
        let now = clock_nanos(self.clock.now());
        let used = self.cell.tat().saturating_sub(now);
        self.quota.tolerance_nanos().saturating_sub(used) / self.quota.interval_nanos()
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The TAT as a clock reading (for diagnostics).
    pub fn theoretical_arrival_time(&self) -> Duration {
        Duration::from_nanos(self.cell.tat())
    }
}

impl fmt::Debug for Gcra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gcra")
            .field("quota", &self.quota)
            .field("mode", &self.mode)
            .field("tat", &self.cell.tat())
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Gcra`].
///
/// ```
/// use weir::policy::{Mode, ratelimit::{Gcra, Quota}};
///
/// let registry = weir::Registry::new();
/// let limiter = Gcra::builder(Quota::per_minute(600)?)
///     .mode(Mode::Shadow)
///     .metrics(&registry)
///     .build()?;
/// assert!(limiter.try_acquire().admits());
/// assert_eq!(registry.snapshot().counter("rate_limit_requests_total", &["allowed"]), Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct GcraBuilder {
    quota: Quota,
    mode: Mode,
    clock: Option<SharedClock>,
    registry: Option<Registry>,
}

impl GcraBuilder {
    /// The clock (default: a new [`SystemClock`]).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Enforce (default) or shadow.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Count decisions in `rate_limit_requests_total{result}` of this registry.
    pub fn metrics(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// [`BuildError::Registry`] if the metrics cannot be registered.
    pub fn build(self) -> Result<Gcra, BuildError> {
        let metrics = match &self.registry {
            Some(r) => Some(RateMetrics::register(r)?),
            None => None,
        };
        Ok(Gcra {
            cell: CachePadded::new(GcraCell::new()),
            quota: self.quota,
            mode: self.mode,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
            metrics,
        })
    }
}
