use std::time::Duration;

use super::*;
use crate::ManualClock;

#[test]
fn register_and_lookup() {
    let r = Registry::new();
    let a = r
        .counter("requests_total", "Requests", &[("method", "GET")])
        .unwrap();
    let b = r
        .counter("requests_total", "Requests", &[("method", "GET")])
        .unwrap();
    a.inc();
    b.inc();
    assert_eq!(a.get(), 2, "same series, same counter");
    let post = r
        .counter("requests_total", "Requests", &[("method", "POST")])
        .unwrap();
    post.add(5);
    let s = r.snapshot();
    assert_eq!(s.counter("requests_total", &["GET"]), Some(2));
    assert_eq!(s.counter("requests_total", &["POST"]), Some(5));
    let fam = s.family("requests_total").unwrap();
    assert_eq!(fam.series.len(), 2);
    assert_eq!(&*fam.series[0].label_values[0], "GET");
}

#[test]
fn label_order_is_the_familys() {
    let r = Registry::new();
    let a = r
        .counter("x_total", "x", &[("a", "1"), ("b", "2")])
        .unwrap();
    let b = r
        .counter("x_total", "x", &[("b", "2"), ("a", "1")])
        .unwrap();
    a.inc();
    b.inc();
    assert_eq!(r.snapshot().counter("x_total", &["1", "2"]), Some(2));
}

#[test]
fn errors() {
    let r = Registry::new();
    assert!(matches!(
        r.counter("9bad", "", &[]),
        Err(RegistryError::InvalidMetricName { .. })
    ));
    assert!(matches!(
        r.counter("__x", "", &[]),
        Err(RegistryError::InvalidMetricName { .. })
    ));
    assert!(matches!(
        r.counter("ok", "", &[("__l", "v")]),
        Err(RegistryError::InvalidLabelName { .. })
    ));
    assert!(matches!(
        r.counter("ok", "", &[("le", "v")]),
        Err(RegistryError::ReservedLabelName { .. })
    ));
    assert!(matches!(
        r.counter_family("dup", "", &["a", "a"]),
        Err(RegistryError::DuplicateLabelName { .. })
    ));
    r.counter("c_total", "", &[("a", "1")]).unwrap();
    assert!(matches!(
        r.gauge("c_total", "", &[("a", "1")]),
        Err(RegistryError::KindMismatch { .. })
    ));
    assert!(matches!(
        r.counter("c_total", "", &[("b", "1")]),
        Err(RegistryError::SchemaMismatch { .. })
    ));
    let fam = r.counter_family("c_total", "", &["a"]).unwrap();
    assert!(matches!(
        fam.with(&["1", "2"]),
        Err(RegistryError::LabelCount {
            expected: 1,
            got: 2,
            ..
        })
    ));
    assert!(matches!(
        r.describe("lat", "").unit("seconds").histogram_family(&[]),
        Err(RegistryError::InvalidUnit { .. })
    ));
    // Nothing was registered by the failed calls.
    assert!(r.snapshot().family("9bad").is_none());
    assert!(r.snapshot().family("lat").is_none());
}

#[test]
fn families_and_with_series() {
    let r = Registry::new();
    let f = r
        .counter_family("http_requests_total", "h", &["method", "code"])
        .unwrap();
    f.with(&["GET", "200"]).unwrap().inc();
    f.with_series(&["GET", "200"], |c| c.add(2)).unwrap();
    f.with_series(&["PUT", "500"], |c| c.inc()).unwrap();
    let s = r.snapshot();
    assert_eq!(s.counter("http_requests_total", &["GET", "200"]), Some(3));
    assert_eq!(s.counter("http_requests_total", &["PUT", "500"]), Some(1));
}

#[test]
fn cardinality_overflow_is_counted() {
    let r = Registry::builder().cardinality_limit(3).build();
    let f = r.counter_family("per_user_total", "h", &["user"]).unwrap();
    for u in 0..10 {
        f.with(&[&u.to_string()]).unwrap().inc();
    }
    let s = r.snapshot();
    let fam = s.family("per_user_total").unwrap();
    assert_eq!(fam.series.len(), 4, "3 series and the overflow series");
    assert_eq!(
        s.counter("per_user_total", &[OVERFLOW_LABEL_VALUE]),
        Some(7)
    );
    assert_eq!(s.counter(OVERFLOW_METRIC, &["per_user_total"]), Some(7));
    let total: u64 = fam
        .series
        .iter()
        .map(|x| match x.value {
            Value::Counter(c) => c,
            _ => 0,
        })
        .sum();
    assert_eq!(total, 10, "nothing dropped");
}

#[test]
fn overflowed_family_redirects_exactly_from_many_threads() {
    let r = Registry::builder().cardinality_limit(2).build();
    let f = r
        .counter_family("per_tenant_total", "h", &["tenant"])
        .unwrap();
    f.with(&["a"]).unwrap().inc();
    f.with(&["b"]).unwrap().inc();
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 2_000;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let f = &f;
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    // New label sets (redirected, lock-free once overflowed) and existing ones
                    // (still their own series) interleaved.
                    f.with(&[&format!("{t}-{i}")]).unwrap().inc();
                    f.with_series(&["a"], |c| c.inc()).unwrap();
                }
            });
        }
    });
    let s = r.snapshot();
    assert_eq!(s.family("per_tenant_total").unwrap().series.len(), 3);
    assert_eq!(
        s.counter("per_tenant_total", &["a"]),
        Some(1 + THREADS * PER_THREAD)
    );
    assert_eq!(s.counter("per_tenant_total", &["b"]), Some(1));
    assert_eq!(
        s.counter("per_tenant_total", &[OVERFLOW_LABEL_VALUE]),
        Some(THREADS * PER_THREAD)
    );
    assert_eq!(
        s.counter(OVERFLOW_METRIC, &["per_tenant_total"]),
        Some(THREADS * PER_THREAD)
    );
}

#[test]
fn snapshot_label_order_follows_new_series() {
    let r = Registry::builder().cardinality_limit(5).build();
    let f = r.counter_family("orders_total", "h", &["shop"]).unwrap();
    let labels = |s: &RegistrySnapshot| -> Vec<String> {
        s.family("orders_total")
            .unwrap()
            .series
            .iter()
            .map(|x| x.label_values[0].to_string())
            .collect()
    };
    f.with(&["m"]).unwrap().add(1);
    f.with(&["c"]).unwrap().add(2);
    assert_eq!(labels(&r.snapshot()), ["c", "m"]);
    assert_eq!(
        labels(&r.snapshot()),
        ["c", "m"],
        "cached order, same series"
    );
    f.with(&["a"]).unwrap().add(3);
    f.with(&["x"]).unwrap().add(4);
    f.with(&["f"]).unwrap().add(5);
    let s = r.snapshot();
    assert_eq!(labels(&s), ["a", "c", "f", "m", "x"]);
    assert_eq!(s.counter("orders_total", &["f"]), Some(5));
    // The sixth label set overflows: the overflow series joins the family's order.
    f.with(&["b"]).unwrap().add(6);
    let s = r.snapshot();
    assert_eq!(labels(&s), ["__overflow__", "a", "c", "f", "m", "x"]);
    assert_eq!(s.counter("orders_total", &[OVERFLOW_LABEL_VALUE]), Some(6));
    assert_eq!(s.counter("orders_total", &["m"]), Some(1));
    assert_eq!(labels(&r.snapshot()), labels(&s));
}

#[test]
fn concurrent_registration_gives_one_metric() {
    let r = Registry::new();
    let handles: Vec<Counter> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| r.counter("race_total", "h", &[("k", "v")]).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for h in &handles {
        h.inc();
    }
    assert_eq!(r.snapshot().counter("race_total", &["v"]), Some(8));
}

#[test]
fn snapshot_reads_in_reverse_registration_order() {
    // Writers always add to `requests` before `errors`; `requests` was registered first.
    let r = Registry::new();
    let requests = r.counter("requests_total", "h", &[]).unwrap();
    let errors = r.counter("errors_total", "h", &[]).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    requests.inc();
                    errors.inc();
                }
            });
        }
        for _ in 0..2_000 {
            let snap = r.snapshot();
            let (req, err) = (
                snap.counter("requests_total", &[]).unwrap(),
                snap.counter("errors_total", &[]).unwrap(),
            );
            assert!(err <= req, "errors {err} > requests {req}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

#[test]
fn published_and_windows_with_manual_clock() {
    let clock = ManualClock::new();
    let r = Registry::builder()
        .clock(std::sync::Arc::new(clock.clone()))
        .history(Duration::from_secs(60))
        .build();
    let c = r.counter("events_total", "h", &[]).unwrap();
    let h = r.histogram("latency_nanoseconds", "h", &[]).unwrap();
    assert_eq!(r.published().sequence(), 0);
    for second in 1..=120u64 {
        c.add(10);
        h.record(second * 1000);
        clock.advance(Duration::from_secs(1));
        r.refresh_now();
    }
    let p = r.published();
    assert_eq!(p.sequence(), 120);
    let w = p.window(Duration::from_secs(10));
    assert!(w.is_complete());
    assert_eq!(w.span(), Duration::from_secs(10));
    assert_eq!(w.counter_delta("events_total", &[]), Some(100));
    assert_eq!(w.counter_rate("events_total", &[]), Some(10.0));
    let wh = w.histogram("latency_nanoseconds", &[]).unwrap();
    assert_eq!(wh.count(), 10);
    assert!(wh.min() >= 110_900 && wh.max() <= 120_100, "{wh:?}");
    // Longer than history: starts at the oldest kept snapshot.
    let long = p.window(Duration::from_secs(3600));
    assert!(!long.is_complete());
    assert!(long.span() >= Duration::from_secs(60));
    // History is bounded.
    assert!(p.history().len() <= 62, "{}", p.history().len());
}

#[test]
fn window_before_any_history_covers_everything() {
    let clock = ManualClock::new();
    let r = Registry::builder()
        .clock(std::sync::Arc::new(clock.clone()))
        .build();
    let c = r.counter("e_total", "h", &[]).unwrap();
    c.add(4);
    clock.advance(Duration::from_secs(1));
    r.refresh_now();
    let p = r.published();
    assert_eq!(
        p.window(Duration::from_secs(30))
            .counter_delta("e_total", &[]),
        Some(4)
    );
}

#[test]
fn old_published_views_are_freed_when_last_reader_lets_go() {
    let r = Registry::builder().history(Duration::ZERO).build();
    r.refresh_now();
    let held = r.published_full();
    let weak_snapshot = std::sync::Arc::downgrade(held.snapshot());
    r.refresh_now();
    r.refresh_now();
    assert!(weak_snapshot.upgrade().is_some(), "a reader still holds it");
    drop(held);
    assert!(
        weak_snapshot.upgrade().is_none(),
        "freed once the last reader let go"
    );
}

#[test]
fn background_refresher_stops_on_drop() {
    let r = Registry::new();
    let c = r.counter("bg_total", "h", &[]).unwrap();
    c.add(2);
    let handle = r.spawn_refresher(Duration::from_millis(1)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while r.published().counter("bg_total", &[]) != Some(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "refresher never published"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(handle);
    let seq = r.published().sequence();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        r.published().sequence(),
        seq,
        "no refresh after the handle dropped"
    );
    assert!(matches!(
        r.spawn_refresher(Duration::ZERO),
        Err(RegistryError::ZeroInterval)
    ));
}

#[test]
fn label_hash_separates_values() {
    let h = LabelHasher::new();
    let a: &[&str] = &["ab", ""];
    let b: &[&str] = &["a", "b"];
    let c: &[&str] = &["", "ab"];
    let d: &[&str] = &["abcdefgh", "i"];
    let e: &[&str] = &["abcdefghi"];
    let hashes = [h.hash(&a), h.hash(&b), h.hash(&c), h.hash(&d), h.hash(&e)];
    for i in 0..hashes.len() {
        for j in i + 1..hashes.len() {
            assert_ne!(hashes[i], hashes[j], "{i} and {j} collide");
        }
    }
    // Same values, same hash.
    let a2: &[&str] = &["ab", ""];
    assert_eq!(h.hash(&a), h.hash(&a2));
    // Many distinct label sets spread over many distinct hashes.
    let mut seen = std::collections::HashSet::new();
    for i in 0..10_000 {
        let v = i.to_string();
        let p: &[&str] = &["GET", &v];
        seen.insert(h.hash(&p));
    }
    assert_eq!(seen.len(), 10_000);
}
