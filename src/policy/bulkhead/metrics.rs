//! The bulkhead's metric handles, obtained once from a [`Registry`] when it is built.
#![forbid(unsafe_code)]

use std::time::Duration;

use crate::counter::{Counter, Gauge};
use crate::error::RegistryError;
use crate::histogram::Histogram;
use crate::registry::Registry;

use super::RejectReason;

/// `bulkhead_acquisitions_total{name}`.
pub(crate) const ACQUISITIONS: &str = "bulkhead_acquisitions_total";
/// `bulkhead_rejections_total{name, reason}`.
pub(crate) const REJECTIONS: &str = "bulkhead_rejections_total";
/// `bulkhead_wait_nanoseconds{name}`.
pub(crate) const WAIT: &str = "bulkhead_wait_nanoseconds";
/// `bulkhead_in_flight{name}`.
pub(crate) const IN_FLIGHT: &str = "bulkhead_in_flight";
/// `bulkhead_max_permits{name}`.
pub(crate) const MAX: &str = "bulkhead_max_permits";

#[derive(Debug)]
pub(crate) struct Metrics {
    acquisitions: Counter,
    /// full, queue_full, timeout, shadow_full
    rejections: [Counter; 4],
    wait: Histogram,
    pub(crate) in_flight: Gauge,
}

impl Metrics {
    pub(crate) fn register(
        registry: &Registry,
        name: &str,
        max: u32,
    ) -> Result<Metrics, RegistryError> {
        let acquisitions = registry
            .counter_family(ACQUISITIONS, "Bulkhead permits acquired", &["name"])?
            .with(&[name])?;
        let rej = registry.counter_family(
            REJECTIONS,
            "Bulkhead acquisitions rejected, by reason (shadow_full: admitted in shadow mode)",
            &["name", "reason"],
        )?;
        let rejections = [
            rej.with(&[name, RejectReason::Full.as_str()])?,
            rej.with(&[name, RejectReason::QueueFull.as_str()])?,
            rej.with(&[name, RejectReason::Timeout.as_str()])?,
            rej.with(&[name, "shadow_full"])?,
        ];
        let wait = registry
            .describe(WAIT, "Time waited for a bulkhead permit (acquired ones)")
            .unit("nanoseconds")
            .histogram_family(&["name"])?
            .with(&[name])?;
        let in_flight = registry
            .gauge_family(IN_FLIGHT, "Bulkhead permits in use", &["name"])?
            .with(&[name])?;
        let max_g = registry
            .gauge_family(MAX, "Bulkhead permit limit", &["name"])?
            .with(&[name])?;
        max_g.set(i64::from(max));
        Ok(Metrics {
            acquisitions,
            rejections,
            wait,
            in_flight,
        })
    }

    pub(crate) fn acquired(&self, waited: Duration) {
        self.acquisitions.inc();
        self.in_flight.inc();
        self.wait.record_duration(waited);
    }

    pub(crate) fn rejected(&self, reason: RejectReason) {
        self.rejections[match reason {
            RejectReason::Full => 0,
            RejectReason::QueueFull => 1,
            RejectReason::Timeout => 2,
        }]
        .inc();
    }

    pub(crate) fn shadow(&self) {
        self.rejections[3].inc();
    }
}
