//! # weir
//!
//! A lock-free metrics and statistics engine that is exact, never blocks a writer, and scales
//! with cores, and (in later modules) the retry, load-shedding, circuit-breaking and admission
//! decisions built on it.
//!
//! The recording primitives are [`Counter`], [`Gauge`], [`FloatGauge`] and [`Histogram`]. A
//! thread that records claims a small *slot* on first use; each metric keeps per-slot cells that
//! only that thread writes, so recording needs no locked instruction and shares no cache line.
//! Readers sum the cells. Cells are cumulative: intervals are computed on the reader side
//! ([`CounterReader`], [`HistogramSnapshot::delta_since`]), so reading never resets, blocks or
//! races a writer, and no sample is lost or counted twice.
//!
//! ```
//! use std::sync::Arc;
//! use std::thread;
//!
//! let requests = Arc::new(weir::Counter::new());
//! let latency = Arc::new(weir::Histogram::new());
//! let workers: Vec<_> = (0..4)
//!     .map(|_| {
//!         let (requests, latency) = (requests.clone(), latency.clone());
//!         thread::spawn(move || {
//!             for i in 0..1000 {
//!                 requests.inc();
//!                 latency.record(1_000 + i);
//!             }
//!         })
//!     })
//!     .collect();
//! for w in workers {
//!     w.join().unwrap();
//! }
//! assert_eq!(requests.get(), 4000);
//! let s = latency.snapshot();
//! assert_eq!(s.count(), 4000);
//! assert!(s.value_at_quantile(0.5) >= 1_490 && s.value_at_quantile(0.5) <= 1_510);
//! ```
#![deny(unsafe_op_in_unsafe_fn)]

mod clock;
mod counter;
mod error;
pub mod export;
mod histogram;
pub mod policy;
pub mod registry;
mod slot;
mod sync;
mod window;

#[cfg(not(weir_loom))]
pub use clock::CachedClock;
pub use clock::{CachedClockError, Clock, ManualClock, SetTimeError, SharedClock, SystemClock};
pub use counter::{Counter, CounterReader, FloatGauge, Gauge};
pub use error::{DeltaError, HistogramError, MergeError, QuantileError, RegistryError};
pub use histogram::{
    Bucket, Buckets, DEFAULT_DIGITS, DEFAULT_HIGHEST, DEFAULT_LOWEST, Histogram, HistogramBuilder,
    HistogramSnapshot,
};
pub use registry::{
    Family, FamilySnapshot, MetricKind, Published, PublishedReader, RefresherHandle, Registry,
    RegistrySnapshot, Value, Window,
};
pub use window::{
    CounterWindow, HistogramWindow, MAX_WINDOW_SLOTS, RollingCounter, RollingHistogram, WindowError,
};

/// Internals exposed for the loom models in `loom-tests/` (cfg `weir_loom` only).
#[cfg(weir_loom)]
#[doc(hidden)]
pub mod __loom {
    /// How many slots the loom build has (beyond it, threads use the fallback cells).
    pub const MAX_SLOTS: usize = crate::slot::MAX_SLOTS;
    /// Releases the calling thread's slot, as thread exit does (see `slot::release_current`).
    pub fn release_slot() {
        crate::slot::release_current();
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
