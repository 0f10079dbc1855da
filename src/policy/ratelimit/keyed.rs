//! Keyed GCRA limits: user > tenant > default, a bounded key table, idle eviction, fail-open.
//!
//! # Orderings
//! - The key table is [`SHARDS`] shards, each an immutable hash map published through
//!   `arc-swap` (release on store, acquire on load: a lookup that finds an entry sees it fully
//!   built) plus a mutex that inserts and evictions hold. Lookups never take the mutex.
//! - The key count is reserved with a `Relaxed` CAS loop (`l < max → l + 1`): it only bounds
//!   memory and publishes nothing; being one atomic RMW, it never lets more than `max_keys`
//!   reservations succeed.
//! - The next-sweep time is a `Relaxed` CAS: it only elects one thread to sweep at a time.
//! - Eviction *retires* an entry by a CAS of its TAT (`gcra.rs`, `Relaxed`) to a tombstone, then
//!   publishes a map without it, both under the shard mutex. An acquisition on the entry either
//!   changes the TAT before the retire CAS (which then fails: the entry is in use, not idle) or
//!   reads the tombstone and retries under the shard mutex. That retry cannot take the mutex
//!   before the evictor releases it: the evictor wrote the tombstone while holding it, and the
//!   retrying thread read that write before locking, so (by coherence) its lock is ordered after
//!   the evictor's unlock, and it sees the map without the entry. No cells taken from an entry are
//!   lost with it; only entries that are full (and so carry no state) are ever evicted.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
#[cfg(not(weir_loom))]
use std::hash::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

#[cfg(not(weir_loom))]
use arc_swap::ArcSwap;

use super::gcra::{Acquired, GcraCell, TOMBSTONE};
use super::{BuildError, Decision, LimitReason, MAX_NANOS, Quota, RateMetrics, clock_nanos};
use crate::clock::{SharedClock, SystemClock};
use crate::counter::{Counter, Gauge};
use crate::error::RegistryError;
use crate::policy::Mode;
use crate::registry::Registry;
use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering, lock};

/// Default capacity of the key table.
pub const DEFAULT_MAX_KEYS: usize = 10_000;
/// Default idle time after which a full (unused) key may be evicted.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default least time between two automatic sweeps of a full table.
const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

const SHARDS: usize = 32;

// === keys and rules ===

/// Who a request comes from: an optional user and an optional tenant.
///
/// ```
/// use weir::policy::ratelimit::RateKey;
/// let k = RateKey::user("alice").tenant("acme");
/// assert_eq!((k.user, k.tenant), (Some("alice"), Some("acme")));
/// assert_eq!(RateKey::anonymous(), RateKey::default());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RateKey<'a> {
    /// The user id, if known.
    pub user: Option<&'a str>,
    /// The tenant id, if known.
    pub tenant: Option<&'a str>,
}

impl<'a> RateKey<'a> {
    /// Neither user nor tenant: every such request shares one bucket.
    pub fn anonymous() -> RateKey<'a> {
        RateKey::default()
    }

    /// A user (no tenant yet; chain [`tenant`](RateKey::tenant)).
    pub fn user(user: &'a str) -> RateKey<'a> {
        RateKey {
            user: Some(user),
            tenant: None,
        }
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: &'a str) -> RateKey<'a> {
        self.tenant = Some(tenant);
        self
    }

    /// A tenant only.
    pub fn for_tenant(tenant: &'a str) -> RateKey<'a> {
        RateKey {
            user: None,
            tenant: Some(tenant),
        }
    }
}

/// Which configured limit applied (lift's precedence: user > tenant > default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// The user has a limit of their own.
    User,
    /// The user has none (or is unknown) and the tenant has one: the tenant's users share it.
    Tenant,
    /// Neither has one: the default limit (lift's 1000 per hour unless configured).
    Default,
}

/// What the bucket is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// One bucket per user id.
    User,
    /// One bucket per tenant id.
    Tenant,
    /// One bucket for all requests with neither.
    Anonymous,
}

impl Identity {
    fn tag(self) -> u8 {
        match self {
            Identity::User => 1,
            Identity::Tenant => 2,
            Identity::Anonymous => 3,
        }
    }
}

/// What a full key table does with a request for a key it cannot hold (lift's `FailOpen`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WhenFull {
    /// Admit without a limit ([`Decision::FailedOpen`]); lift's behaviour. Keeps new callers
    /// served while many keys are active, at the price of not limiting them.
    #[default]
    FailOpen,
    /// Reject ([`Decision::Limited`] with [`LimitReason::KeyTableFull`]). Bounds what a flood of
    /// new keys can get through, at the price of turning away new legitimate callers meanwhile.
    FailClosed,
}

/// A [`KeyedLimiter`]'s decision: the [`Decision`], and which rule and bucket made it.
#[must_use = "a rate-limit decision must be acted on: check `admits()`"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedDecision {
    /// The decision, with the numbers for headers.
    pub decision: Decision,
    /// Which configured limit applied.
    pub rule: Rule,
    /// What the bucket is keyed by.
    pub identity: Identity,
    /// The quota of that rule.
    pub quota: Quota,
}

impl KeyedDecision {
    /// Whether the request may proceed (see [`Decision::admits`]).
    #[inline]
    pub fn admits(&self) -> bool {
        self.decision.admits()
    }

    /// Whether the limiter decided the request is over the limit (in either mode).
    #[inline]
    pub fn is_limited(&self) -> bool {
        self.decision.is_limited()
    }
}

impl fmt::Display for KeyedDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:?} rule, per {:?}, {} per {:?})",
            self.decision,
            self.rule,
            self.identity,
            self.quota.count(),
            self.quota.period()
        )
    }
}

// === the table ===

struct Entry {
    identity: Identity,
    id: Box<str>,
    quota: Quota,
    cell: GcraCell,
}

/// Hashes are computed with the limiter's `RandomState` before they reach a shard map.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Entries with the same hash (almost always one).
type Chain = Arc<[Arc<Entry>]>;
type ShardMap = HashMap<u64, Chain, BuildHasherDefault<IdentityHasher>>;

struct Shard {
    map: MapCell,
    /// Held by inserts and evictions of this shard, never by lookups.
    lock: Mutex<()>,
}

/// A shard's published map: `arc-swap` (lock-free loads, release/acquire publication).
#[cfg(not(weir_loom))]
struct MapCell(ArcSwap<ShardMap>);

#[cfg(not(weir_loom))]
impl MapCell {
    fn new() -> MapCell {
        MapCell(ArcSwap::from_pointee(ShardMap::default()))
    }
    #[inline]
    fn load(&self) -> arc_swap::Guard<Arc<ShardMap>> {
        self.0.load()
    }
    fn store(&self, map: Arc<ShardMap>) {
        self.0.store(map);
    }
}

/// Under loom: loom cannot see `arc-swap`'s atomics, so a map published through it would carry
/// no happens-before edge in the model (and a fresh entry's atomic would look unsynchronized).
/// A loom mutex around the `Arc` models the same release-on-store, acquire-on-load publication.
#[cfg(weir_loom)]
struct MapCell(Mutex<Arc<ShardMap>>);

#[cfg(weir_loom)]
impl MapCell {
    fn new() -> MapCell {
        MapCell(Mutex::new(Arc::new(ShardMap::default())))
    }
    fn load(&self) -> Arc<ShardMap> {
        lock(&self.0).clone()
    }
    fn store(&self, map: Arc<ShardMap>) {
        *lock(&self.0) = map;
    }
}

/// Hashes keys. `RandomState` against hash flooding; under loom a fixed hasher, because a model
/// must run the same way in every execution (the hash picks the shard).
#[cfg(not(weir_loom))]
type KeyHasher = RandomState;
#[cfg(weir_loom)]
type KeyHasher = BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

fn find<'m>(map: &'m ShardMap, hash: u64, identity: Identity, id: &str) -> Option<&'m Arc<Entry>> {
    map.get(&hash)?
        .iter()
        .find(|e| e.identity == identity && &*e.id == id)
}

fn decided(a: Acquired) -> Option<Decision> {
    match a {
        Acquired::Decided(d) => Some(d),
        Acquired::Retired => None,
    }
}

#[derive(Clone, Debug)]
struct KeyedMetrics {
    requests: RateMetrics,
    keys: Gauge,
    evictions: Counter,
    full_open: Counter,
    full_closed: Counter,
}

impl KeyedMetrics {
    fn register(r: &Registry) -> Result<KeyedMetrics, RegistryError> {
        let full = r.counter_family(
            "rate_limit_key_table_full_total",
            "Requests for a new key while the key table was full, by what the limiter did",
            &["action"],
        )?;
        Ok(KeyedMetrics {
            requests: RateMetrics::register(r)?,
            keys: r.gauge("rate_limit_keys", "Keys held by keyed rate limiters", &[])?,
            evictions: r.counter(
                "rate_limit_evictions_total",
                "Idle keys evicted from keyed rate limiters",
                &[],
            )?,
            full_open: full.with(&["fail_open"])?,
            full_closed: full.with(&["fail_closed"])?,
        })
    }
}

/// Rate limits per user, tenant or anonymous caller, with lift's precedence and bounded memory.
///
/// **Rules.** A request's [`RateKey`] picks one rule, and the rule picks the bucket:
///
/// | the request has | rule | bucket |
/// |---|---|---|
/// | a user with a configured limit | [`Rule::User`] | that user |
/// | else a tenant with a configured limit | [`Rule::Tenant`] | that tenant (its users share it) |
/// | else a user | [`Rule::Default`] | that user |
/// | else a tenant | [`Rule::Default`] | that tenant |
/// | neither | [`Rule::Default`] | one shared anonymous bucket |
///
/// Each bucket is a GCRA cell ([`Gcra`](super::Gcra)'s algorithm) with the rule's [`Quota`].
///
/// **Memory.** At most `max_keys` buckets are held. A bucket that has been full (unused) for
/// `idle_timeout` may be evicted: a full bucket carries no state, so eviction never changes a
/// decision. [`evict_idle`](KeyedLimiter::evict_idle) sweeps on demand, and a request for a new
/// key that finds the table full sweeps first (at most once per sweep interval). If the table is
/// still full, the request fails open or closed ([`WhenFull`]), counted in
/// `rate_limit_key_table_full_total{action}`.
///
/// **Hot path.** A request for an existing key is an `arc-swap` load of one shard's map, a hash
/// probe and one CAS on the bucket: no lock. Only a new key takes its shard's mutex (and copies
/// that shard's map).
///
/// ```
/// use std::sync::Arc;
/// use weir::ManualClock;
/// use weir::policy::ratelimit::{KeyedLimiter, Quota, RateKey, Rule};
///
/// let limiter = KeyedLimiter::builder()
///     .default_quota(Quota::per_hour(1000)?)
///     .tenant_quota("acme", Quota::per_hour(5)?)
///     .user_quota("root", Quota::per_hour(100_000)?)
///     .clock(Arc::new(ManualClock::new()))
///     .build()?;
///
/// let d = limiter.check(RateKey::user("bob").tenant("acme"));
/// assert!(d.admits());
/// assert_eq!(d.rule, Rule::Tenant); // bob shares acme's 5 per hour
/// assert_eq!(limiter.check(RateKey::user("root").tenant("acme")).rule, Rule::User);
/// let used = (0..10).filter(|_| limiter.check(RateKey::for_tenant("acme")).admits()).count();
/// assert_eq!(used, 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct KeyedLimiter {
    default: Quota,
    tenants: HashMap<Box<str>, Quota>,
    users: HashMap<Box<str>, Quota>,
    shards: Box<[Shard]>,
    hasher: KeyHasher,
    len: AtomicUsize,
    max_keys: usize,
    idle: u64,
    sweep_every: u64,
    next_sweep: AtomicU64,
    when_full: WhenFull,
    mode: Mode,
    clock: SharedClock,
    metrics: Option<KeyedMetrics>,
}

impl KeyedLimiter {
    /// A builder: default quota lift's 1000 per hour, no overrides, 10,000 keys, 60 s idle
    /// timeout, fail-open, enforcing, system clock, no metrics.
    pub fn builder() -> KeyedLimiterBuilder {
        KeyedLimiterBuilder {
            default: Quota::lift_default(),
            tenants: HashMap::new(),
            users: HashMap::new(),
            max_keys: DEFAULT_MAX_KEYS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            when_full: WhenFull::default(),
            mode: Mode::Enforce,
            clock: None,
            registry: None,
        }
    }

    /// Which rule, bucket and quota apply to `key`.
    fn resolve<'k>(&self, key: &RateKey<'k>) -> (Rule, Identity, &'k str, Quota) {
        if let Some(u) = key.user
            && let Some(q) = self.users.get(u)
        {
            return (Rule::User, Identity::User, u, *q);
        }
        if let Some(t) = key.tenant
            && let Some(q) = self.tenants.get(t)
        {
            return (Rule::Tenant, Identity::Tenant, t, *q);
        }
        match (key.user, key.tenant) {
            (Some(u), _) => (Rule::Default, Identity::User, u, self.default),
            (None, Some(t)) => (Rule::Default, Identity::Tenant, t, self.default),
            (None, None) => (Rule::Default, Identity::Anonymous, "", self.default),
        }
    }

    fn hash(&self, identity: Identity, id: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u8(identity.tag());
        h.write(id.as_bytes());
        h.write_u8(0xff);
        h.finish()
    }

    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> 58) as usize % SHARDS]
    }

    fn now(&self) -> u64 {
        clock_nanos(self.clock.now())
    }

    /// Asks for one cell from `key`'s bucket.
    #[inline]
    pub fn check(&self, key: RateKey<'_>) -> KeyedDecision {
        self.check_n(key, 1)
    }

    /// Asks for `n` cells from `key`'s bucket (all or nothing; see [`Gcra::try_acquire_n`]).
    ///
    /// [`Gcra::try_acquire_n`]: super::Gcra::try_acquire_n
    pub fn check_n(&self, key: RateKey<'_>, n: u64) -> KeyedDecision {
        let (rule, identity, id, quota) = self.resolve(&key);
        let hash = self.hash(identity, id);
        let shard = self.shard(hash);
        let now = self.now();
        let found = {
            let map = shard.map.load();
            find(&map, hash, identity, id)
                .and_then(|e| decided(e.cell.acquire(&e.quota, now, n, self.mode)))
        };
        let decision = match found {
            Some(d) => d,
            None => self.insert_and_acquire(shard, hash, identity, id, quota, now, n),
        };
        if let Some(m) = &self.metrics {
            m.requests.count(&decision);
        }
        KeyedDecision {
            decision,
            rule,
            identity,
            quota,
        }
    }

    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn insert_and_acquire(
        &self,
        shard: &Shard,
        hash: u64,
        identity: Identity,
        id: &str,
        quota: Quota,
        now: u64,
        n: u64,
    ) -> Decision {
        for attempt in 0..2 {
            {
                let _guard = lock(&shard.lock);
                let map = shard.map.load();
                // Under the mutex the map holds no retired entry (evictions retire and remove
                // under it), so a found entry decides.
                if let Some(d) = find(&map, hash, identity, id)
                    .and_then(|e| decided(e.cell.acquire(&e.quota, now, n, self.mode)))
                {
                    return d;
                }
                if self.reserve() {
                    let entry = Arc::new(Entry {
                        identity,
                        id: id.into(),
                        quota,
                        cell: GcraCell::new(),
                    });
                    let d = decided(entry.cell.acquire(&quota, now, n, self.mode));
                    let mut new_map = ShardMap::clone(&map);
                    let chain: Chain = match new_map.get(&hash) {
                        Some(old) => old
                            .iter()
                            .filter(|e| e.cell.tat() != TOMBSTONE)
                            .cloned()
                            .chain(std::iter::once(entry))
                            .collect(),
                        None => Arc::from([entry]),
                    };
                    new_map.insert(hash, chain);
                    shard.map.store(Arc::new(new_map));
                    if let Some(m) = &self.metrics {
                        m.keys.inc();
                    }
                    // A fresh cell is never retired, so `d` is always `Some`.
                    if let Some(d) = d {
                        return d;
                    }
                }
            }
            // Full: sweep (outside the shard mutex: the sweep takes every shard's in turn), at
            // most once per sweep interval across threads, then try once more.
            if attempt > 0 || self.try_sweep(now) == 0 {
                break;
            }
        }
        self.when_full(&quota)
    }

    fn when_full(&self, quota: &Quota) -> Decision {
        match self.when_full {
            WhenFull::FailOpen => {
                if let Some(m) = &self.metrics {
                    m.full_open.inc();
                }
                Decision::FailedOpen {
                    max_keys: self.max_keys,
                }
            }
            WhenFull::FailClosed => {
                if let Some(m) = &self.metrics {
                    m.full_closed.inc();
                }
                let hint = Duration::from_nanos(self.idle.max(self.sweep_every));
                Decision::Limited {
                    retry_after: hint,
                    reset_after: hint,
                    limit: quota.burst(),
                    reason: LimitReason::KeyTableFull,
                    mode: self.mode,
                }
            }
        }
    }

    /// Reserves room for one key; false when the table is full.
    fn reserve(&self) -> bool {
        // Relaxed: module docs (a bound on memory; one RMW, so never more than max_keys).
        self.len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                (l < self.max_keys).then_some(l + 1)
            })
            .is_ok()
    }

    /// Sweeps if no sweep ran within the sweep interval; returns the keys evicted.
    fn try_sweep(&self, now: u64) -> usize {
        // Relaxed: elects one sweeper per interval; publishes nothing (module docs).
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now < due {
            return 0;
        }
        let next = now.saturating_add(self.sweep_every);
        // Relaxed: as above.
        if self
            .next_sweep
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        self.evict_idle_at(now)
    }

    /// Evicts every key whose bucket has been full for at least the idle timeout; returns how
    /// many. Takes each shard's mutex in turn (lookups of existing keys never wait for it).
    /// Call it from a timer to keep the table small; a full table also sweeps by itself.
    pub fn evict_idle(&self) -> usize {
        self.evict_idle_at(self.now())
    }

    fn evict_idle_at(&self, now: u64) -> usize {
        let mut evicted = 0;
        for shard in self.shards.iter() {
            let _guard = lock(&shard.lock);
            let map = shard.map.load();
            let mut changed: Vec<u64> = Vec::new();
            let mut removed = 0;
            for (hash, chain) in map.iter() {
                let retired = chain
                    .iter()
                    .filter(|e| e.cell.retire_if_idle(now, self.idle))
                    .count();
                if retired > 0 {
                    removed += retired;
                    changed.push(*hash);
                }
            }
            if changed.is_empty() {
                continue;
            }
            let mut new_map = ShardMap::clone(&map);
            for hash in changed {
                let keep: Vec<Arc<Entry>> = new_map
                    .get(&hash)
                    .map(|c| {
                        c.iter()
                            .filter(|e| e.cell.tat() != TOMBSTONE)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                if keep.is_empty() {
                    new_map.remove(&hash);
                } else {
                    new_map.insert(hash, keep.into());
                }
            }
            shard.map.store(Arc::new(new_map));
            // Relaxed: module docs.
            self.len.fetch_sub(removed, Ordering::Relaxed);
            evicted += removed;
        }
        if evicted > 0
            && let Some(m) = &self.metrics
        {
            m.keys.sub(evicted as i64);
            m.evictions.add(evicted as u64);
        }
        evicted
    }

    /// Gives back up to `n` cells to `key`'s bucket (lift's skip-successful); see
    /// [`Gcra::refund`](super::Gcra::refund). Returns the cells given back, counted as there:
    /// 0 if the bucket is full or was evicted (an evicted bucket was full).
    pub fn refund(&self, key: RateKey<'_>, n: u64) -> u64 {
        let (_, identity, id, _) = self.resolve(&key);
        let hash = self.hash(identity, id);
        let now = self.now();
        let map = self.shard(hash).map.load();
        find(&map, hash, identity, id).map_or(0, |e| e.cell.refund(&e.quota, now, n))
    }

    /// Cells available now in `key`'s bucket, without taking any.
    pub fn remaining(&self, key: RateKey<'_>) -> u64 {
        let (_, identity, id, quota) = self.resolve(&key);
        let hash = self.hash(identity, id);
        let now = self.now();
        let map = self.shard(hash).map.load();
        let tat = find(&map, hash, identity, id).map_or(0, |e| e.cell.tat());
        let used = if tat == TOMBSTONE {
            0
        } else {
            tat.saturating_sub(now)
        };
        quota.tolerance_nanos().saturating_sub(used) / quota.interval_nanos()
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        // Relaxed: a reading for reporting.
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The table's capacity.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The quota and rule that apply to `key` (without touching its bucket).
    pub fn quota_for(&self, key: RateKey<'_>) -> (Rule, Quota) {
        let (rule, _, _, quota) = self.resolve(&key);
        (rule, quota)
    }
}

impl fmt::Debug for KeyedLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("default", &self.default)
            .field("tenant_rules", &self.tenants.len())
            .field("user_rules", &self.users.len())
            .field("keys", &self.len())
            .field("max_keys", &self.max_keys)
            .field("idle_timeout", &Duration::from_nanos(self.idle))
            .field("when_full", &self.when_full)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Builds a [`KeyedLimiter`].
#[derive(Debug)]
pub struct KeyedLimiterBuilder {
    default: Quota,
    tenants: HashMap<Box<str>, Quota>,
    users: HashMap<Box<str>, Quota>,
    max_keys: usize,
    idle_timeout: Duration,
    sweep_interval: Duration,
    when_full: WhenFull,
    mode: Mode,
    clock: Option<SharedClock>,
    registry: Option<Registry>,
}

impl KeyedLimiterBuilder {
    /// The limit for callers with no user or tenant limit (default: lift's 1000 per hour).
    pub fn default_quota(mut self, quota: Quota) -> Self {
        self.default = quota;
        self
    }

    /// A tenant's limit, shared by its users that have none of their own (replaces an earlier
    /// one for the same tenant).
    pub fn tenant_quota(mut self, tenant: &str, quota: Quota) -> Self {
        self.tenants.insert(tenant.into(), quota);
        self
    }

    /// A user's own limit (replaces an earlier one for the same user).
    pub fn user_quota(mut self, user: &str, quota: Quota) -> Self {
        self.users.insert(user.into(), quota);
        self
    }

    /// Capacity of the key table (default [`DEFAULT_MAX_KEYS`]).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// How long a bucket must have been full before it may be evicted (default
    /// [`DEFAULT_IDLE_TIMEOUT`]; zero evicts full buckets at once, which is exact but churns
    /// busy keys). Clamped to about 292 years.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Least time between two automatic sweeps of a full table (default 1 s). Sweeps cost
    /// `O(max_keys)`; this bounds how often a flood of new keys can trigger one.
    pub fn sweep_interval(mut self, every: Duration) -> Self {
        self.sweep_interval = every;
        self
    }

    /// What a full table does (default [`WhenFull::FailOpen`], as lift).
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
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

    /// Record `rate_limit_requests_total{result}`, `rate_limit_keys`,
    /// `rate_limit_evictions_total` and `rate_limit_key_table_full_total{action}` in this
    /// registry.
    pub fn metrics(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroMaxKeys`], [`BuildError::Registry`].
    pub fn build(self) -> Result<KeyedLimiter, BuildError> {
        if self.max_keys == 0 {
            return Err(BuildError::ZeroMaxKeys);
        }
        let metrics = match &self.registry {
            Some(r) => Some(KeyedMetrics::register(r)?),
            None => None,
        };
        Ok(KeyedLimiter {
            default: self.default,
            tenants: self.tenants,
            users: self.users,
            shards: (0..SHARDS)
                .map(|_| Shard {
                    map: MapCell::new(),
                    lock: Mutex::new(()),
                })
                .collect(),
            hasher: KeyHasher::default(),
            len: AtomicUsize::new(0),
            max_keys: self.max_keys,
            idle: clock_nanos(self.idle_timeout),
            sweep_every: clock_nanos(self.sweep_interval).min(MAX_NANOS),
            next_sweep: AtomicU64::new(0),
            when_full: self.when_full,
            mode: self.mode,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
            metrics,
        })
    }
}
