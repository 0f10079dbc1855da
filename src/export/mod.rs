//! Exporters: turn a [`RegistrySnapshot`](crate::RegistrySnapshot) into what other systems read.
//!
//! Exporters only read snapshots (data flows one way: cells → snapshots → exporters), so an
//! exporter never blocks or slows a writer, and two exporters reading the same snapshot agree.
//!
//! - [`prometheus`]: the Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text.
//! - `hlog` (cargo feature `hlog`): HdrHistogram interval logs of exact histogram deltas.
//! - `http` (cargo feature `http`): a Prometheus scrape endpoint serving the published snapshot.
#![forbid(unsafe_code)]

#[cfg(feature = "hlog")]
pub mod hlog;
#[cfg(feature = "http")]
pub mod http;
pub mod prometheus;
#[cfg(feature = "http")]
pub use http::serve;
