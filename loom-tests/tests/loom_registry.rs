//! Registry: concurrent registration of one series, refresher against readers.
//!
//! `arc-swap` (the registry's publication cell) is not loom-aware: its own atomics run
//! unmodeled here, one modeled thread at a time. What these models explore is weir's protocol
//! around it: the registration mutex, the re-check under it, and the handles and counter cells
//! behind it.
#![cfg(weir_loom)]

mod common;

use common::{model, spawn};
use weir::Registry;

/// Two threads register the same labeled counter at once: both get the same counter.
#[test]
fn concurrent_registration_gives_one_series() {
    model("concurrent_registration_gives_one_series", || {
        let r = Registry::new();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                spawn(move || r.counter("hits_total", "h", &[("k", "v")]).unwrap())
            })
            .collect();
        let cs: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        cs[0].inc();
        cs[1].inc();
        assert_eq!(r.snapshot().counter("hits_total", &["v"]), Some(2));
        assert_eq!(r.snapshot().family("hits_total").unwrap().series.len(), 1);
    });
}

/// A refresher publishes while a reader loads: the reader sees a whole published view, whose
/// sequence never goes backwards, and whose counter value is one the writer made.
#[test]
fn refresher_against_reader() {
    model("refresher_against_reader", || {
        let r = Registry::new();
        let c = r.counter("jobs_total", "h", &[]).unwrap();
        let refresher = {
            let r = r.clone();
            spawn(move || {
                c.inc();
                r.refresh_now();
            })
        };
        let first = r.published_full();
        let second = r.published_full();
        assert!(second.sequence() >= first.sequence());
        for p in [&first, &second] {
            match p.sequence() {
                0 => assert_eq!(p.counter("jobs_total", &[]), None),
                _ => assert_eq!(p.counter("jobs_total", &[]), Some(1)),
            }
        }
        refresher.join().unwrap();
        assert_eq!(r.published().counter("jobs_total", &[]), Some(1));
    });
}
