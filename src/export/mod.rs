//! Exporters: turn a [`RegistrySnapshot`](crate::RegistrySnapshot) into what other systems read.
//!
//! Exporters only read snapshots (data flows one way: cells → snapshots → exporters), so an
//! exporter never blocks or slows a writer, and two exporters reading the same snapshot agree.
//!
//! - [`prometheus`]: the Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text.
#![forbid(unsafe_code)]

#[cfg(feature = "metrics-rs")]
pub mod metrics_rs;
pub mod prometheus;
