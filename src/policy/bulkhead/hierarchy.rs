//! Global, per-tenant and per-operation bulkheads acquired together, with rollback.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SharedClock, SystemClock};
use crate::policy::Mode;
use crate::policy::breaker::keymap::KeyMap;
use crate::registry::Registry;

use super::{
    Bulkhead, BulkheadBuilder, BulkheadConfigError, Decision, Permit, Priority, Rejection, Retired,
};

/// Which level of a [`HierarchicalBulkhead`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// The global bulkhead.
    Global,
    /// The tenant's bulkhead.
    Tenant,
    /// The operation's bulkhead.
    Operation,
}

/// Permits at every level a call went through; dropping it releases them, operation first,
/// then tenant, then global.
#[must_use = "dropping the permit releases it at once"]
#[derive(Debug)]
pub struct HierarchicalPermit {
    // Fields drop in declaration order: the reverse of acquisition.
    operation: Option<Permit>,
    tenant: Option<Permit>,
    global: Permit,
}

impl HierarchicalPermit {
    /// The global permit.
    pub fn global(&self) -> &Permit {
        &self.global
    }
    /// The tenant permit, if a tenant was given.
    pub fn tenant(&self) -> Option<&Permit> {
        self.tenant.as_ref()
    }
    /// The operation permit, if an operation was given.
    pub fn operation(&self) -> Option<&Permit> {
        self.operation.as_ref()
    }
    /// Total time waited across the levels.
    pub fn waited(&self) -> Duration {
        self.global.waited()
            + self.tenant.as_ref().map_or(Duration::ZERO, Permit::waited)
            + self
                .operation
                .as_ref()
                .map_or(Duration::ZERO, Permit::waited)
    }
}

/// The answer to a hierarchical acquire.
#[must_use = "dropping an acquired permit releases it at once"]
#[derive(Debug)]
pub enum HierarchicalDecision {
    /// Permits at every level.
    Acquired(HierarchicalPermit),
    /// A level refused; the permits taken at the levels above it were released.
    Rejected {
        /// The level that refused.
        level: Level,
        /// Its rejection.
        rejection: Rejection,
    },
}

impl HierarchicalDecision {
    /// The permit, if every level granted one.
    pub fn permit(self) -> Option<HierarchicalPermit> {
        match self {
            HierarchicalDecision::Acquired(p) => Some(p),
            HierarchicalDecision::Rejected { .. } => None,
        }
    }
}

/// Builds a [`HierarchicalBulkhead`]. Defaults are lift's: 100 global, 10 per tenant, 20
/// per operation, 30 s maximum wait; plus at most 10,000 tenant and 10,000 operation keys,
/// evicted after 10 minutes idle.
#[must_use = "a builder does nothing until built"]
#[derive(Debug)]
pub struct HierarchicalBuilder {
    base: BulkheadBuilder,
    global: u32,
    tenant: u32,
    operation: u32,
    max_keys: usize,
    idle_ttl: Duration,
}

impl HierarchicalBuilder {
    /// Permits of the global bulkhead (lift: 100).
    pub fn global(mut self, n: u32) -> Self {
        self.global = n;
        self
    }
    /// Permits of each tenant's bulkhead (lift: 10).
    pub fn per_tenant(mut self, n: u32) -> Self {
        self.tenant = n;
        self
    }
    /// Permits of each operation's bulkhead (lift: 20).
    pub fn per_operation(mut self, n: u32) -> Self {
        self.operation = n;
        self
    }
    /// At most this many tenant keys and this many operation keys (beyond it, new keys share
    /// one `__overflow__` bulkhead per level until idle keys are evicted).
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }
    /// A key's bulkhead unused this long, with no permit out and nobody waiting, may be
    /// evicted.
    pub fn idle_ttl(mut self, d: Duration) -> Self {
        self.idle_ttl = d;
        self
    }
    /// The one deadline budget an acquire waits, across all levels (lift: 30 s).
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.base = self.base.max_wait(d);
        self
    }
    /// Queue limit at each level.
    pub fn max_waiters(mut self, n: u32) -> Self {
        self.base = self.base.max_waiters(n);
        self
    }
    /// Enforce or only observe (see [`BulkheadBuilder::mode`]).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.base = self.base.mode(mode);
        self
    }
    /// The clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.base = self.base.clock(clock);
        self
    }
    /// Record each level's metrics (name labels `<name>`, `<name>:tenant:<id>`,
    /// `<name>:op:<operation>`).
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.base = self.base.registry(registry);
        self
    }

    /// Builds it.
    ///
    /// # Errors
    ///
    /// As for [`BulkheadBuilder::build`] at each level, and [`BulkheadConfigError::Keys`].
    pub fn build(self) -> Result<HierarchicalBulkhead, BulkheadConfigError> {
        if self.max_keys == 0 || self.idle_ttl.is_zero() {
            return Err(BulkheadConfigError::Keys);
        }
        for n in [self.global, self.tenant, self.operation] {
            let mut b = self.base.clone();
            b.max = n;
            b.validate()?;
        }
        let clock: SharedClock = self
            .base
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(SystemClock::new()));
        let global = self
            .base
            .build_with(&self.base.name, self.global, clock.clone())?;
        Ok(HierarchicalBulkhead {
            tenants: KeyMap::new(clock.clone(), self.max_keys, self.idle_ttl),
            operations: KeyMap::new(clock.clone(), self.max_keys, self.idle_ttl),
            global,
            tenant_max: self.tenant,
            operation_max: self.operation,
            clock,
            base: self.base,
        })
    }
}

/// Global, per-tenant and per-operation bulkheads (lift: 100 / 10 / 20), acquired in that
/// order under one deadline; if a lower level refuses, the permits taken above it are
/// released (rollback). Tenant and operation bulkheads are made on first use and kept in
/// bounded maps with lock-free lookups (as [`KeyedBreakers`](crate::policy::breaker::KeyedBreakers));
/// an idle one (no permit out, nobody waiting) is retired by compare-and-swap before it is
/// evicted, so a key never has two live bulkheads and its limit always holds.
///
/// As in lift, a call waiting at a lower level holds the permits of the levels above it
/// meanwhile; size the global limit with that in mind (or use `try_acquire`).
///
/// ```
/// use weir::policy::bulkhead::{HierarchicalBulkhead, HierarchicalDecision, Level, Priority};
///
/// let h = HierarchicalBulkhead::builder("api").global(3).per_tenant(1).build()?;
/// let p = h.try_acquire(Some("t1"), Some("GET /users")).permit().unwrap();
/// match h.try_acquire(Some("t1"), Some("GET /users")) {
///     HierarchicalDecision::Rejected { level, .. } => assert_eq!(level, Level::Tenant),
///     HierarchicalDecision::Acquired(_) => unreachable!(),
/// }
/// assert_eq!(h.global().in_use(), 1); // the global permit was rolled back
/// drop(p);
/// assert_eq!(h.global().in_use(), 0);
/// # Ok::<(), weir::policy::bulkhead::BulkheadConfigError>(())
/// ```
pub struct HierarchicalBulkhead {
    global: Bulkhead,
    tenants: KeyMap<Bulkhead>,
    operations: KeyMap<Bulkhead>,
    tenant_max: u32,
    operation_max: u32,
    clock: SharedClock,
    base: BulkheadBuilder,
}

impl fmt::Debug for HierarchicalBulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HierarchicalBulkhead")
            .field("global", &self.global)
            .field("tenants", &self.tenants)
            .field("operations", &self.operations)
            .finish_non_exhaustive()
    }
}

impl HierarchicalBulkhead {
    /// A builder with lift's limits; `name` labels the metrics.
    pub fn builder(name: &str) -> HierarchicalBuilder {
        HierarchicalBuilder {
            base: Bulkhead::builder(name, 1),
            global: 100,
            tenant: 10,
            operation: 20,
            max_keys: 10_000,
            idle_ttl: Duration::from_secs(600),
        }
    }

    /// The global bulkhead.
    pub fn global(&self) -> &Bulkhead {
        &self.global
    }

    fn make(&self, level: Level, key: &str) -> Bulkhead {
        let (label, max) = match level {
            Level::Tenant => (format!("{}:tenant:{key}", self.base.name), self.tenant_max),
            _ => (format!("{}:op:{key}", self.base.name), self.operation_max),
        };
        match self.base.build_with(&label, max, self.clock.clone()) {
            Ok(b) => b,
            Err(_) => {
                // A registry conflict: the key's bulkhead works without metrics.
                let mut quiet = self.base.clone();
                quiet.registry = None;
                match quiet.build_with(&label, max, self.clock.clone()) {
                    Ok(b) => b,
                    Err(_) => unreachable!("validated bulkhead without metrics failed to build"),
                }
            }
        }
    }

    fn map(&self, level: Level) -> &KeyMap<Bulkhead> {
        match level {
            Level::Tenant => &self.tenants,
            _ => &self.operations,
        }
    }

    /// The tenant's bulkhead (made on first use).
    pub fn tenant(&self, tenant: &str) -> Bulkhead {
        self.lookup(Level::Tenant, tenant, false)
    }

    /// The operation's bulkhead (made on first use).
    pub fn operation(&self, operation: &str) -> Bulkhead {
        self.lookup(Level::Operation, operation, false)
    }

    fn lookup(&self, level: Level, key: &str, after_retire: bool) -> Bulkhead {
        let make = |k: &str| Ok::<Bulkhead, ()>(self.make(level, k));
        let found = if after_retire {
            self.map(level).get_after_retire(key, make)
        } else {
            self.map(level).get(key, make)
        };
        match found {
            Ok(f) => f,
            Err(()) => unreachable!("making a keyed bulkhead never fails"),
        }
    }

    /// Acquires at one keyed level, looking the key up again if its bulkhead was retired
    /// between the lookup and the acquire.
    fn keyed(
        &self,
        level: Level,
        key: &str,
        f: &impl Fn(&Bulkhead) -> Result<Decision, Retired>,
    ) -> Decision {
        let mut b = self.lookup(level, key, false);
        loop {
            match f(&b) {
                Ok(d) => return d,
                Err(Retired) => b = self.lookup(level, key, true),
            }
        }
    }

    fn acquire_with(
        &self,
        tenant: Option<&str>,
        operation: Option<&str>,
        f: impl Fn(&Bulkhead) -> Result<Decision, Retired>,
    ) -> HierarchicalDecision {
        let global = match f(&self.global) {
            Ok(Decision::Acquired(p)) => p,
            Ok(Decision::Rejected(rejection)) => {
                return HierarchicalDecision::Rejected {
                    level: Level::Global,
                    rejection,
                };
            }
            Err(Retired) => unreachable!("the global bulkhead is never retired"),
        };
        let tenant = match tenant {
            None => None,
            Some(t) => match self.keyed(Level::Tenant, t, &f) {
                Decision::Acquired(p) => Some(p),
                Decision::Rejected(rejection) => {
                    drop(global);
                    return HierarchicalDecision::Rejected {
                        level: Level::Tenant,
                        rejection,
                    };
                }
            },
        };
        let operation = match operation {
            None => None,
            Some(o) => match self.keyed(Level::Operation, o, &f) {
                Decision::Acquired(p) => Some(p),
                Decision::Rejected(rejection) => {
                    drop(tenant);
                    drop(global);
                    return HierarchicalDecision::Rejected {
                        level: Level::Operation,
                        rejection,
                    };
                }
            },
        };
        HierarchicalDecision::Acquired(HierarchicalPermit {
            operation,
            tenant,
            global,
        })
    }

    /// Takes a permit at every level without waiting (lock-free at each level).
    pub fn try_acquire(
        &self,
        tenant: Option<&str>,
        operation: Option<&str>,
    ) -> HierarchicalDecision {
        self.acquire_with(tenant, operation, Bulkhead::try_acquire_inner)
    }

    /// Waits (blocking) for a permit at every level, at most the configured maximum wait in
    /// all.
    pub fn acquire(
        &self,
        tenant: Option<&str>,
        operation: Option<&str>,
        priority: Priority,
    ) -> HierarchicalDecision {
        let deadline = super::saturating_deadline(self.clock.now(), self.base.max_wait);
        self.acquire_until(tenant, operation, priority, deadline)
    }

    /// Waits (blocking) for a permit at every level until `deadline` on the clock.
    pub fn acquire_until(
        &self,
        tenant: Option<&str>,
        operation: Option<&str>,
        priority: Priority,
        deadline: Duration,
    ) -> HierarchicalDecision {
        self.acquire_with(tenant, operation, |b| {
            b.acquire_until_inner(priority, deadline)
        })
    }

    /// How many tenant keys and operation keys have a bulkhead now.
    pub fn key_counts(&self) -> (usize, usize) {
        (self.tenants.len(), self.operations.len())
    }

    /// Evicts idle tenant and operation bulkheads (no permit out, nobody waiting, unused for
    /// the idle TTL); returns how many went.
    pub fn evict_idle(&self) -> usize {
        self.tenants.evict_idle() + self.operations.evict_idle()
    }
}
