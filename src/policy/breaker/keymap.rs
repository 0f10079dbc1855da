//! A bounded map from string keys to policy objects (breakers, bulkheads), with lock-free
//! lookups of existing keys and eviction of idle ones.
//!
//! The keys are spread over [`SHARDS`] shards. Each shard is an immutable `HashMap` published
//! through `arc-swap`, as the registry's series maps are: a lookup is a hash, an `arc-swap`
//! load (no shared read-modify-write, and no lock) and a map probe. Only inserting a key and
//! evicting keys take the shard's mutex; they copy the shard's map, change the copy and publish
//! it. A `RwLock` would not do: its read lock is a shared read-modify-write on every lookup.
//!
//! Bounded memory: at most `max_keys` keys (exact: a slot is reserved by compare-and-swap on
//! the key count before a key is inserted). When an insert finds the map full it evicts idle
//! keys (unused for `idle_ttl`, on the clock, and agreeing to go: [`Evict::try_retire`]), first
//! in its own shard, then in every shard; if none can go, the new key shares one overflow value
//! (key `__overflow__`). Only idle keys are ever evicted, so what happens depends on the clock
//! and the keys' use, never on which shard a key hashes to. [`KeyMap::evict_idle`] sweeps every
//! shard on demand.
//!
//! # Orderings
//! - Shard maps: `arc-swap` store (release) and load (acquire): a reader that finds an entry
//!   sees it fully built.
//! - Last-use times are `Relaxed`: a self-contained number (milliseconds on the clock) read
//!   only to choose what to evict; a lost update only makes a key look idle a little early,
//!   and eviction still asks the value ([`Evict::try_retire`]), which decides by its own CAS.
//! - The key count is changed by `Relaxed` read-modify-writes under the shard mutexes; the
//!   reservation is a compare-and-swap so the limit holds across shards, and nothing else is
//!   published through it.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::clock::SharedClock;
use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering, lock};

/// Shards per map.
pub(crate) const SHARDS: usize = 16;
/// The key every overflowing key shares.
pub(crate) const OVERFLOW_KEY: &str = "__overflow__";

/// What a keyed value must say before it is evicted.
pub(crate) trait Evict {
    /// Agrees to be evicted, and from now on refuses new work (a bulkhead retires so that no
    /// permit is handed out by an evicted instance), or refuses because it is in use.
    fn try_retire(&self, now: Duration) -> bool;
}

struct Entry<V> {
    value: V,
    /// Milliseconds on the clock of the last lookup (coarsened, see `touch`).
    last_used: AtomicU64,
}

type Map<V> = HashMap<Arc<str>, Arc<Entry<V>>>;

struct Shard<V> {
    map: ArcSwap<Map<V>>,
    /// Serializes inserts and evictions in this shard; never taken by lookups of existing keys.
    write: Mutex<()>,
}

pub(crate) struct KeyMap<V> {
    shards: Box<[Shard<V>]>,
    hasher: RandomState,
    clock: SharedClock,
    max_keys: usize,
    idle_ttl_ms: u64,
    /// Only rewrite a key's last-use time when it moved by more than this (ttl / 8), so hot
    /// keys are not written on every lookup.
    touch_ms: u64,
    len: AtomicUsize,
    overflow: ArcSwapOption<V>,
    overflow_init: Mutex<()>,
}

impl<V> fmt::Debug for KeyMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMap")
            // Relaxed: a diagnostic read of a self-contained count.
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("max_keys", &self.max_keys)
            .field("idle_ttl_ms", &self.idle_ttl_ms)
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<V: Clone + Evict> KeyMap<V> {
    pub(crate) fn new(clock: SharedClock, max_keys: usize, idle_ttl: Duration) -> KeyMap<V> {
        let hasher = RandomState::new();
        let idle_ttl_ms = ms(idle_ttl).max(1);
        KeyMap {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    map: ArcSwap::from_pointee(HashMap::new()),
                    write: Mutex::new(()),
                })
                .collect(),
            hasher,
            clock,
            max_keys: max_keys.max(1),
            idle_ttl_ms,
            touch_ms: idle_ttl_ms / 8,
            len: AtomicUsize::new(0),
            overflow: ArcSwapOption::empty(),
            overflow_init: Mutex::new(()),
        }
    }

    fn shard(&self, key: &str) -> &Shard<V> {
        let h = self.hasher.hash_one(key);
        &self.shards[(h >> 32) as usize % SHARDS]
    }

    /// How many keys are held (not counting the overflow value).
    pub(crate) fn len(&self) -> usize {
        // Relaxed: a self-contained count (module docs).
        self.len.load(Ordering::Relaxed)
    }

    fn touch(&self, e: &Entry<V>, now_ms: u64) {
        // Relaxed: module docs.
        let last = e.last_used.load(Ordering::Relaxed);
        if now_ms > last.saturating_add(self.touch_ms) {
            e.last_used.store(now_ms, Ordering::Relaxed);
        }
    }

    /// The value for `key`, made by `make` on first use. Existing keys are found without any
    /// lock (module docs).
    pub(crate) fn get<E>(&self, key: &str, make: impl Fn(&str) -> Result<V, E>) -> Result<V, E> {
        let shard = self.shard(key);
        if let Some(e) = shard.map.load().get(key) {
            self.touch(e, ms(self.clock.now()));
            return Ok(e.value.clone());
        }
        self.get_locked(shard, key, &make)
    }

    /// As [`get`](KeyMap::get), but through the shard's mutex: waits for an eviction in
    /// progress to finish, so a value that refused work because it was retired is not found
    /// again.
    pub(crate) fn get_after_retire<E>(
        &self,
        key: &str,
        make: impl Fn(&str) -> Result<V, E>,
    ) -> Result<V, E> {
        self.get_locked(self.shard(key), key, &make)
    }

    #[cold]
    fn get_locked<E>(
        &self,
        shard: &Shard<V>,
        key: &str,
        make: &impl Fn(&str) -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(v) = self.insert(shard, key, make)? {
            return Ok(v);
        }
        // Full, and no idle key in this shard could go: sweep every shard's idle keys (one
        // shard mutex at a time, none held now), then try once more before overflowing.
        if self.evict_idle() > 0
            && let Some(v) = self.insert(shard, key, make)?
        {
            return Ok(v);
        }
        self.overflow(make)
    }

    /// Finds or inserts `key` under the shard mutex; `None` if the map is full and no idle key
    /// in the shard agreed to go.
    fn insert<E>(
        &self,
        shard: &Shard<V>,
        key: &str,
        make: &impl Fn(&str) -> Result<V, E>,
    ) -> Result<Option<V>, E> {
        let _w = lock(&shard.write);
        let now = self.clock.now();
        let now_ms = ms(now);
        let current = shard.map.load_full();
        if let Some(e) = current.get(key) {
            self.touch(e, now_ms);
            return Ok(Some(e.value.clone()));
        }
        let mut map: Map<V> = (*current).clone();
        let mut changed = false;
        // Relaxed: module docs.
        if self.len.load(Ordering::Relaxed) >= self.max_keys {
            changed |= self.sweep(&mut map, now, now_ms) > 0;
        }
        // Relaxed: the reservation CAS keeps the count exact across shards; it publishes
        // nothing (module docs).
        let reserved = self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_keys).then_some(n + 1)
            })
            .is_ok();
        if !reserved {
            if changed {
                shard.map.store(Arc::new(map));
            }
            return Ok(None);
        }
        let value = match make(key) {
            Ok(v) => v,
            Err(e) => {
                // Give the reserved slot back.
                // Relaxed: module docs.
                self.len.fetch_sub(1, Ordering::Relaxed);
                if changed {
                    shard.map.store(Arc::new(map));
                }
                return Err(e);
            }
        };
        map.insert(
            Arc::from(key),
            Arc::new(Entry {
                value: value.clone(),
                last_used: AtomicU64::new(now_ms),
            }),
        );
        shard.map.store(Arc::new(map));
        Ok(Some(value))
    }

    /// Removes the idle entries of `map` that agree to go; returns how many, and decrements
    /// the key count by as many.
    fn sweep(&self, map: &mut Map<V>, now: Duration, now_ms: u64) -> usize {
        let before = map.len();
        map.retain(|_, e| {
            // Relaxed: module docs.
            let idle =
                now_ms.saturating_sub(e.last_used.load(Ordering::Relaxed)) >= self.idle_ttl_ms;
            !(idle && e.value.try_retire(now))
        });
        let removed = before - map.len();
        if removed > 0 {
            // Relaxed: module docs.
            self.len.fetch_sub(removed, Ordering::Relaxed);
        }
        removed
    }

    fn overflow<E>(&self, make: &impl Fn(&str) -> Result<V, E>) -> Result<V, E> {
        if let Some(v) = &*self.overflow.load() {
            return Ok((**v).clone());
        }
        let _g = lock(&self.overflow_init);
        if let Some(v) = &*self.overflow.load() {
            return Ok((**v).clone());
        }
        let v = make(OVERFLOW_KEY)?;
        self.overflow.store(Some(Arc::new(v.clone())));
        Ok(v)
    }

    /// Evicts every key idle for at least the TTL that agrees to go; returns how many went.
    pub(crate) fn evict_idle(&self) -> usize {
        let now = self.clock.now();
        let now_ms = ms(now);
        let mut total = 0;
        for shard in self.shards.iter() {
            let _w = lock(&shard.write);
            let current = shard.map.load_full();
            let mut map: Map<V> = (*current).clone();
            let removed = self.sweep(&mut map, now, now_ms);
            if removed > 0 {
                shard.map.store(Arc::new(map));
                total += removed;
            }
        }
        total
    }

    /// Whether `key` is held now (not counting the overflow value).
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.shard(key).map.load().contains_key(key)
    }

    /// Every key held now (in no particular order).
    pub(crate) fn keys(&self) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(shard.map.load().keys().cloned());
        }
        out
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::AtomicBool;

    #[derive(Clone)]
    struct V {
        name: Arc<str>,
        busy: Arc<AtomicBool>,
    }

    impl Evict for V {
        fn try_retire(&self, _now: Duration) -> bool {
            !self.busy.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    fn make(k: &str) -> Result<V, ()> {
        Ok(V {
            name: k.into(),
            busy: Arc::new(AtomicBool::new(false)),
        })
    }

    #[test]
    fn finds_inserts_and_bounds() {
        let clock = ManualClock::new();
        let m: KeyMap<V> = KeyMap::new(Arc::new(clock.clone()), 3, Duration::from_secs(10));
        let a = m.get("a", make).unwrap();
        assert_eq!(&*a.name, "a");
        let again = m.get("a", make).unwrap();
        assert!(Arc::ptr_eq(&a.busy, &again.busy));
        for k in ["b", "c"] {
            m.get(k, make)
                .unwrap()
                .busy
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        a.busy.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(m.len(), 3);
        // Full, and nobody agrees to go: overflow.
        let d = m.get("d", make).unwrap();
        assert_eq!(&*d.name, OVERFLOW_KEY);
        assert!(!m.contains("d"));
        let d2 = m.get("e", make).unwrap();
        assert!(Arc::ptr_eq(&d.busy, &d2.busy));
        // "a" agrees to go once idle for the TTL.
        a.busy.store(false, std::sync::atomic::Ordering::Relaxed);
        clock.advance(Duration::from_secs(9));
        assert_eq!(m.evict_idle(), 0);
        clock.advance(Duration::from_secs(1));
        assert_eq!(m.evict_idle(), 1);
        assert_eq!(m.len(), 2);
        assert!(!m.contains("a"));
        let d = m.get("d", make).unwrap();
        assert_eq!(&*d.name, "d");
        assert_eq!(m.len(), 3);
        let mut keys: Vec<String> = m.keys().iter().map(|k| k.to_string()).collect();
        keys.sort();
        assert_eq!(keys, ["b", "c", "d"]);
        // Full again; "b" agrees to go but is not idle: a new key overflows (whatever shard it
        // hashes to), until "b" has been idle for the TTL, when the insert itself evicts it.
        let b = m.get("b", make).unwrap();
        b.busy.store(false, std::sync::atomic::Ordering::Relaxed);
        d.busy.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(&*m.get("f", make).unwrap().name, OVERFLOW_KEY);
        clock.advance(Duration::from_secs(10));
        m.get("c", make).unwrap(); // used now: not idle (and busy anyway)
        assert_eq!(&*m.get("f", make).unwrap().name, "f");
        assert!(!m.contains("b"));
        assert!(m.contains("c") && m.contains("d"));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn errors_give_the_slot_back() {
        let m: KeyMap<V> = KeyMap::new(Arc::new(ManualClock::new()), 1, Duration::from_secs(1));
        assert!(m.get("x", |_| Err::<V, ()>(())).is_err());
        assert_eq!(m.len(), 0);
        assert_eq!(&*m.get("y", make).unwrap().name, "y");
    }

    #[test]
    fn concurrent_gets_make_one_value_per_key() {
        let m: KeyMap<V> = KeyMap::new(Arc::new(ManualClock::new()), 1000, Duration::from_secs(1));
        let made = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..200 {
                        let k = format!("k{}", i % 50);
                        m.get(&k, |k| {
                            made.fetch_add(1, Ordering::Relaxed);
                            make(k)
                        })
                        .unwrap();
                    }
                });
            }
        });
        assert_eq!(made.load(Ordering::Relaxed), 50);
        assert_eq!(m.len(), 50);
    }
}
