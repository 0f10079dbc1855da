//! Exporters: turn a [`RegistrySnapshot`](crate::RegistrySnapshot) into what other systems read.
//!
//! Exporters only read snapshots (data flows one way: cells → snapshots → exporters), so an
//! exporter never blocks or slows a writer, and two exporters reading the same snapshot agree.
//!
//! - [`prometheus`]: the Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text.
//! - `hlog` (cargo feature `hlog`): HdrHistogram interval logs of exact histogram deltas.
//! - `http` (cargo feature `http`): a Prometheus scrape endpoint serving the published snapshot.
//! - `metrics_rs` (cargo feature `metrics-rs`): a `metrics` facade recorder backed by a registry.
//! - `tower` (cargo feature `tower`): tower layers for retry, concurrency limits, circuit
//!   breakers, bulkheads and rate limits, with typed rejections.
#![forbid(unsafe_code)]

#[cfg(feature = "hlog")]
pub mod hlog;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "metrics-rs")]
pub mod metrics_rs;
pub mod prometheus;
#[cfg(feature = "tower")]
pub mod tower;
#[cfg(feature = "http")]
pub use http::serve;
