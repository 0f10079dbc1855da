//! A small, seedable, lock-free random number generator for policy decisions (jitter, random
//! shedding). Not for cryptography.
//!
//! # Orderings
//! The state is one `AtomicU64` advanced by a `Relaxed` `fetch_add` of a fixed odd increment
//! (SplitMix64's sequence): every caller gets a distinct step of the sequence, and the output
//! is a mix of that step. No other memory is published.
#![forbid(unsafe_code)]

use std::fmt;

use crate::sync::{AtomicU64, Ordering};

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A seedable generator shared by reference across threads: each call is one relaxed
/// `fetch_add` plus a few multiplies and shifts. With one thread calling, the sequence is
/// fully determined by the seed.
///
/// ```
/// let a = weir::policy::Rng::with_seed(7);
/// let b = weir::policy::Rng::with_seed(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let x = a.next_f64();
/// assert!((0.0..1.0).contains(&x));
/// ```
pub struct Rng {
    state: AtomicU64,
}

impl Rng {
    /// A generator with a fixed seed (deterministic sequence).
    pub fn with_seed(seed: u64) -> Rng {
        Rng {
            state: AtomicU64::new(seed),
        }
    }

    /// A generator seeded from the system clock and the address of a stack variable: different
    /// in every process, for production use.
    pub fn from_entropy() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let local = 0u8;
        let addr = &local as *const u8 as u64;
        Rng::with_seed(mix(t ^ addr.rotate_left(32)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        // Relaxed: each caller only needs a distinct step; see the module docs.
        let s = self.state.fetch_add(GAMMA, Ordering::Relaxed).wrapping_add(GAMMA);
        mix(s)
    }

    /// A uniform `f64` in `[0, 1)`.
    pub fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[0, bound)`; 0 when `bound` is 0.
    pub fn below(&self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Multiply-shift: bias at most bound / 2^64, irrelevant for policy decisions.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

impl Default for Rng {
    fn default() -> Rng {
        Rng::from_entropy()
    }
}

impl fmt::Debug for Rng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rng").finish_non_exhaustive()
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    #[test]
    fn uniform_enough() {
        let r = Rng::with_seed(1);
        let n = 100_000;
        let mut buckets = [0u32; 10];
        for _ in 0..n {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            buckets[(x * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((9_000..11_000).contains(&b), "{buckets:?}");
        }
        assert_eq!(r.below(0), 0);
        assert!((0..1000).all(|_| r.below(3) < 3));
    }
}
