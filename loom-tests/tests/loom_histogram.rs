//! Histograms: record against snapshot (never torn), page publication, the fallback shard.
#![cfg(weir_loom)]

mod common;

use common::model;
use common::spawn;
use weir::Histogram;

fn small() -> Histogram {
    Histogram::builder()
        .significant_digits(1)
        .lowest(1)
        .highest(1000)
        .build()
        .unwrap()
}

/// A snapshot taken while another thread records: its sum is the sum of a prefix of the recorded
/// values, its buckets hold exactly the values of that prefix, and its count matches them.
#[test]
fn record_against_snapshot_is_never_torn() {
    model("record_against_snapshot_is_never_torn", || {
        let h = small();
        let values = [1u64, 40, 700];
        let w = {
            let h = h.clone();
            spawn(move || {
                for v in values {
                    h.record(v);
                }
            })
        };
        let s = h.snapshot();
        let bucket_total: u64 = s.buckets().map(|b| b.count).sum();
        assert_eq!(s.count(), bucket_total);
        let prefix = (0..=values.len())
            .find(|&k| values[..k].iter().sum::<u64>() == s.sum())
            .unwrap_or_else(|| panic!("sum {} is not a prefix sum", s.sum()));
        for &v in &values[..prefix] {
            assert!(
                s.buckets().any(|b| b.low <= v && v <= b.high),
                "sum includes {v} but its bucket is empty"
            );
        }
        // The other way round too (the shard's sequence lock): the buckets hold exactly the
        // values the sum includes, no record that the sum misses.
        assert_eq!(
            s.count(),
            prefix as u64,
            "buckets hold a record the sum misses"
        );
        w.join().unwrap();
        let end = h.snapshot();
        assert_eq!(end.count(), 3);
        assert_eq!(end.sum(), 741);
        let d = end.delta_since(&s).unwrap();
        assert_eq!(d.count(), 3 - s.count());
    });
}

/// Threads beyond the slot table record through the shared fallback shard; nothing is lost.
#[test]
fn fallback_shard_when_slots_run_out() {
    model("fallback_shard_when_slots_run_out", || {
        let h = small();
        h.record(3);
        let hs: Vec<_> = [5u64, 500]
            .into_iter()
            .map(|v| {
                let h = h.clone();
                spawn(move || h.record(v))
            })
            .collect();
        for t in hs {
            t.join().unwrap();
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum(), 508);
    });
}
