//! One breaker per key (per tenant, per operation), with bounded memory.
#![forbid(unsafe_code)]

use std::fmt;
use std::time::Duration;

use super::keymap::{Evict, KeyMap};
use super::state::millis_floor;
use super::{BreakerConfigError, CircuitBreaker, OwnedDecision, Shared, State};

/// Builds lift's breaker key: `name`, then `:tenant:<id>` if a tenant is given, then
/// `:op:<METHOD>:<path>` if an operation is given.
///
/// ```
/// use weir::policy::breaker::breaker_key;
/// assert_eq!(breaker_key("api", None, None), "api");
/// assert_eq!(breaker_key("api", Some("t1"), None), "api:tenant:t1");
/// assert_eq!(breaker_key("api", Some("t1"), Some(("GET", "/users"))), "api:tenant:t1:op:GET:/users");
/// assert_eq!(breaker_key("api", None, Some(("POST", "/pay"))), "api:op:POST:/pay");
/// ```
pub fn breaker_key(name: &str, tenant: Option<&str>, operation: Option<(&str, &str)>) -> String {
    let mut k = String::with_capacity(
        name.len()
            + tenant.map_or(0, |t| t.len() + 8)
            + operation.map_or(0, |(m, p)| m.len() + p.len() + 5),
    );
    k.push_str(name);
    if let Some(t) = tenant {
        k.push_str(":tenant:");
        k.push_str(t);
    }
    if let Some((m, p)) = operation {
        k.push_str(":op:");
        k.push_str(m);
        k.push(':');
        k.push_str(p);
    }
    k
}

impl Evict for CircuitBreaker {
    /// A breaker may be evicted when it holds no state worth keeping: closed, or open with its
    /// open duration over. An open or half-open breaker stays, so eviction never closes a
    /// circuit early. Permits still held keep the evicted breaker alive; their outcomes go to
    /// it, not to the key's next breaker.
    fn try_retire(&self, now: Duration) -> bool {
        let s = self.load();
        match s.state() {
            State::Closed => true,
            State::Open => s.open_expired(millis_floor(now)),
            State::HalfOpen => false,
        }
    }
}

/// Circuit breakers by key, made on first use from one configuration
/// ([`BreakerBuilder::build_keyed`](super::BreakerBuilder::build_keyed)).
///
/// - Lookups of existing keys take no lock (sharded copy-on-write maps behind `arc-swap`,
///   like the registry's series); only a key's first use and eviction take a shard mutex.
/// - At most `max_keys` breakers are kept. A key unused for `idle_ttl` (on the clock) is
///   evicted by [`evict_idle`](KeyedBreakers::evict_idle), or when an insert finds the map
///   full, but only if its breaker is closed or its open duration is over. Keys in use are
///   never evicted: if no idle key can go, new keys share one overflow breaker (key
///   `__overflow__`) until one can.
/// - With a registry, each breaker's metrics carry its key as the `name` label. An evicted
///   key's series stay in the registry (whose per-family cardinality limit bounds them).
///
/// ```
/// use std::time::Duration;
/// use weir::ManualClock;
/// use weir::policy::breaker::{CircuitBreaker, State, breaker_key};
///
/// let clock = ManualClock::new();
/// let breakers = CircuitBreaker::builder("api")
///     .consecutive_failures(1)
///     .clock(clock.clone())
///     .build_keyed(1000, Duration::from_secs(600))?;
/// let key = breaker_key("api", Some("tenant-7"), Some(("GET", "/users")));
/// let _ = breakers.get(&key).try_acquire().permit().unwrap().failure();
/// assert_eq!(breakers.get(&key).state(), State::Open);
/// assert_eq!(breakers.get("api:tenant:8").state(), State::Closed);
/// assert_eq!(breakers.len(), 2);
/// # Ok::<(), weir::policy::breaker::BreakerConfigError>(())
/// ```
pub struct KeyedBreakers {
    shared: Shared,
    map: KeyMap<CircuitBreaker>,
}

impl fmt::Debug for KeyedBreakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakers")
            .field("map", &self.map)
            .finish_non_exhaustive()
    }
}

impl KeyedBreakers {
    pub(super) fn new(shared: Shared, max_keys: usize, idle_ttl: Duration) -> KeyedBreakers {
        let clock = shared.clock.clone();
        KeyedBreakers {
            shared,
            map: KeyMap::new(clock, max_keys, idle_ttl),
        }
    }

    fn make(&self, key: &str) -> Result<CircuitBreaker, BreakerConfigError> {
        self.shared.breaker(key)
    }

    /// The breaker for `key`, made on first use. Never fails: if the breaker's metrics cannot
    /// be registered (a registry conflict) the key gets a breaker without metrics.
    pub fn get(&self, key: &str) -> CircuitBreaker {
        match self.map.get(key, |k| self.make(k)) {
            Ok(found) => found,
            Err(_) => {
                let quiet = Shared {
                    registry: None,
                    ..self.shared.clone()
                };
                match self.map.get(key, |k| quiet.breaker(k)) {
                    Ok(found) => found,
                    // Without a registry, building cannot fail (the config is validated).
                    Err(_) => unreachable!("breaker without metrics failed to build"),
                }
            }
        }
    }

    /// Shorthand for `get(key).try_acquire_owned()`: the permit holds the key's breaker, so it
    /// reports there even if the key is evicted meanwhile.
    pub fn try_acquire(&self, key: &str) -> OwnedDecision {
        self.get(key).into_decision()
    }

    /// How many keys have a breaker now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key has a breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` has its own breaker now (not the overflow breaker).
    pub fn contains(&self, key: &str) -> bool {
        self.map.contains(key)
    }

    /// Every key with a breaker now, in no particular order.
    pub fn keys(&self) -> Vec<String> {
        self.map.keys().iter().map(|k| k.to_string()).collect()
    }

    /// Evicts every breaker idle for at least the TTL that holds no open or half-open state;
    /// returns how many went. Call it periodically if keys come and go.
    pub fn evict_idle(&self) -> usize {
        self.map.evict_idle()
    }
}
