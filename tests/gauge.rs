//! Integration tests for `Gauge` and `FloatGauge`: concurrent updates are never lost.

use std::thread;

use weir::{FloatGauge, Gauge};

#[test]
fn gauge_concurrent_add_sub_is_exact() {
    const THREADS: i64 = 8;
    const OPS: i64 = 100_000;
    let g = Gauge::new();
    g.set(1_000);
    thread::scope(|s| {
        for t in 0..THREADS {
            let g = &g;
            s.spawn(move || {
                for i in 0..OPS {
                    // Net per thread: adds of (i % 7) + t, subs of (i % 5).
                    g.add(i % 7 + t);
                    g.sub(i % 5);
                    g.inc();
                    g.dec();
                }
            });
        }
    });
    let expected: i64 = 1_000
        + (0..THREADS)
            .map(|t| (0..OPS).map(|i| i % 7 + t - i % 5).sum::<i64>())
            .sum::<i64>();
    assert_eq!(g.get(), expected);
}

#[test]
fn gauge_balanced_in_flight_returns_to_zero() {
    let g = Gauge::new();
    thread::scope(|s| {
        for _ in 0..8 {
            let g = g.clone();
            s.spawn(move || {
                for _ in 0..50_000 {
                    g.inc();
                    g.dec();
                }
                g.add(3);
                g.sub(3);
            });
        }
    });
    assert_eq!(g.get(), 0);
}

#[test]
fn gauge_set_and_wrapping() {
    let g = Gauge::default();
    assert_eq!(g.get(), 0);
    g.set(i64::MAX);
    g.inc();
    assert_eq!(g.get(), i64::MIN);
    g.dec();
    assert_eq!(g.get(), i64::MAX);
    g.set(-3);
    assert_eq!(g.get(), -3);
    let clone = g.clone();
    clone.add(10);
    assert_eq!(g.get(), 7);
    assert!(format!("{g:?}").contains('7'));
}

#[test]
fn float_gauge_concurrent_add_sub_is_exact() {
    // Every partial sum below is a multiple of 1/8 well under 2^50, so f64 addition is exact in
    // any interleaving and the result must be exact.
    const THREADS: usize = 8;
    const OPS: usize = 50_000;
    let g = FloatGauge::new();
    g.set(0.5);
    thread::scope(|s| {
        for t in 0..THREADS {
            let g = &g;
            s.spawn(move || {
                for i in 0..OPS {
                    g.add(((i % 9) as f64) * 0.125 + t as f64);
                    g.add(-(((i % 4) as f64) * 0.25));
                }
            });
        }
    });
    let expected: f64 = 0.5
        + (0..THREADS)
            .map(|t| {
                (0..OPS)
                    .map(|i| ((i % 9) as f64) * 0.125 + t as f64 - ((i % 4) as f64) * 0.25)
                    .sum::<f64>()
            })
            .sum::<f64>();
    assert_eq!(g.get(), expected);
}

#[test]
fn float_gauge_balanced_returns_to_start() {
    let g = FloatGauge::default();
    g.set(2.0);
    thread::scope(|s| {
        for _ in 0..8 {
            let g = g.clone();
            s.spawn(move || {
                for _ in 0..20_000 {
                    g.add(0.5);
                    g.add(-0.5);
                }
            });
        }
    });
    assert_eq!(g.get(), 2.0);
    g.add(f64::INFINITY);
    assert_eq!(g.get(), f64::INFINITY);
    g.add(f64::NEG_INFINITY);
    assert!(g.get().is_nan());
    g.set(-1.25);
    assert_eq!(g.get(), -1.25);
    assert!(format!("{g:?}").contains("-1.25"));
}
