//! Integration tests for `Histogram` and `HistogramSnapshot`, checked against a plain
//! `hdrhistogram::Histogram<u64>` fed the same values (clamped to the highest trackable value,
//! which is what weir records for larger values).
//!
//! Every test does a fixed amount of work; none asserts on timing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use hdrhistogram::Histogram as Hdr;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::{
    Bucket, DeltaError, Histogram, HistogramError, HistogramSnapshot, MergeError, QuantileError,
};

// === helpers ===

/// (lowest, highest) pairs; each is tried with significant digits 1..=5.
const BOUNDS: &[(u64, u64)] = &[
    (1, 2),
    (1, 255),
    (1, 1_000),
    (3, 10),
    (7, 1 << 40),
    (1_000, 60_000_000_000),
    (1, 3_600_000_000_000),
    (12_345, u64::MAX / 3),
    (1 << 20, 1 << 50),
    (1 << 40, u64::MAX),
    (1, u64::MAX),
];

fn build(lowest: u64, highest: u64, digits: u8) -> Result<Histogram, HistogramError> {
    Histogram::builder()
        .lowest(lowest)
        .highest(highest)
        .significant_digits(digits)
        .build()
}

fn model_for(h: &Histogram) -> Hdr<u64> {
    Hdr::new_with_bounds(h.lowest(), h.highest(), h.significant_digits())
        .expect("hdrhistogram accepts every layout weir accepts")
}

/// A value biased towards the interesting places of a layout: 0, 1, the bounds, just above the
/// highest trackable value, `u64::MAX`, and values spread over every power of two.
fn gen_value(rng: &mut StdRng, lowest: u64, highest: u64) -> u64 {
    match rng.gen_range(0..12) {
        0 => 0,
        1 => 1,
        2 => highest,
        3 => highest.saturating_add(rng.gen_range(1..1_000)),
        4 => u64::MAX,
        5 => lowest,
        6 => lowest - 1,
        7..=9 => {
            // Log-uniform up to (and a little past) `highest`.
            let bits = rng.gen_range(0..=(64 - highest.leading_zeros()).min(64));
            if bits == 0 {
                0
            } else {
                rng.r#gen::<u64>() >> (64 - bits)
            }
        }
        _ => rng.gen_range(0..=highest),
    }
}

/// Quantiles to compare: fixed ones (including both ends) and, for layouts with few enough
/// counts, many more, random ones included. hdrhistogram's quantile scan is linear in its
/// counts (millions for the widest layouts), so the list shrinks as layouts grow to keep debug
/// builds fast.
fn quantiles(rng: &mut StdRng, counts_len: usize) -> Vec<f64> {
    let mut qs = vec![0.0, 1.0, 0.5, 0.99];
    if counts_len <= 1 << 20 {
        qs.extend([0.9, 0.999, 0.9999, 1e-12, 0.25, 0.75, 0.1, 0.333_333]);
    }
    if counts_len <= 1 << 16 {
        qs.extend((0..=100).map(|i| f64::from(i) / 100.0));
        qs.extend((0..40).map(|_| rng.r#gen::<f64>()));
    }
    qs
}

/// (low, high, count) of every non-empty bucket of an hdrhistogram, lowest first.
///
/// hdrhistogram's iterator reports the top of a bucket that ends at 2^64 as `u64::MAX - 1`
/// (it computes `low + width - 1` saturating); the bucket really ends at `u64::MAX`, which is
/// what weir reports (and what hdrhistogram's own `max()` says), so the model is corrected here.
fn hdr_buckets(h: &Hdr<u64>) -> Vec<(u64, u64, u64)> {
    h.iter_recorded()
        .map(|v| {
            let mut high = v.value_iterated_to();
            let low = h.lowest_equivalent(high);
            if low.checked_add(h.equivalent_range(low)).is_none() {
                high = u64::MAX;
            }
            (low, high, v.count_at_value())
        })
        .collect()
}

/// hdrhistogram's `value_at_quantile`, with the top-of-u64 correction of [`hdr_buckets`]: a
/// quantile that lands in a bucket ending at 2^64 is that bucket's top, `u64::MAX`.
fn hdr_quantile(h: &Hdr<u64>, q: f64) -> u64 {
    let v = h.value_at_quantile(q);
    let low = h.lowest_equivalent(v);
    if q != 0.0 && low.checked_add(h.equivalent_range(low)).is_none() {
        u64::MAX
    } else {
        v
    }
}

fn weir_buckets(s: &HistogramSnapshot) -> Vec<(u64, u64, u64)> {
    s.buckets()
        .map(|Bucket { low, high, count }| (low, high, count))
        .collect()
}

/// Asserts that `s` holds exactly what `model` holds, by every read-out weir offers.
fn assert_matches_model(s: &HistogramSnapshot, model: &Hdr<u64>, rng: &mut StdRng, what: &str) {
    assert_eq!(s.count(), model.len(), "{what}: count");
    let expected = hdr_buckets(model);
    assert_eq!(weir_buckets(s), expected, "{what}: buckets()");
    assert_eq!(s.buckets().len(), expected.len(), "{what}: buckets().len()");

    let converted = s.to_hdr();
    assert_eq!(converted.len(), model.len(), "{what}: to_hdr().len()");
    assert_eq!(
        hdr_buckets(&converted),
        expected,
        "{what}: to_hdr() buckets"
    );
    assert_eq!(
        (converted.low(), converted.high(), converted.sigfig()),
        (s.lowest(), s.highest(), s.significant_digits()),
        "{what}: to_hdr() layout"
    );

    if model.is_empty() {
        assert_eq!((s.min(), s.max()), (0, 0), "{what}: empty min/max");
        assert_eq!(s.value_at_quantile(0.5), 0, "{what}: empty quantile");
        assert_eq!(s.stddev(), 0.0, "{what}: empty stddev");
        assert_eq!(s.mean(), 0.0, "{what}: empty mean");
        return;
    }
    assert_eq!(s.min(), model_min(model), "{what}: min");
    // Recording 0 never moves hdrhistogram's tracked max (it compares `0 > 0`), so for a
    // histogram of zeros alone it says 0 where weir says the top of the first bucket.
    // (and hdrhistogram's max is one short of the top in a bucket ending at 2^64 unless
    // u64::MAX itself was recorded: see `hdr_quantile`).
    let model_max = match model.max() {
        0 => model.highest_equivalent(0),
        max => hdr_quantile(model, 1.0).max(max),
    };
    assert_eq!(s.max(), model_max, "{what}: max");
    assert_eq!(
        s.min(),
        expected[0].0,
        "{what}: min is the first bucket's low"
    );
    assert_eq!(
        s.max(),
        expected[expected.len() - 1].1,
        "{what}: max is the last bucket's high"
    );

    let counts_len = model.distinct_values();
    for (i, q) in quantiles(rng, counts_len).into_iter().enumerate() {
        let want = hdr_quantile(model, q);
        assert_eq!(
            s.value_at_quantile(q),
            want,
            "{what}: value_at_quantile({q})"
        );
        assert_eq!(
            s.try_value_at_quantile(q),
            Ok(want),
            "{what}: try_value_at_quantile({q})"
        );
        if i < 4 || counts_len <= 1 << 16 {
            assert_eq!(
                hdr_quantile(&converted, q),
                want,
                "{what}: to_hdr().value_at_quantile({q})"
            );
        }
    }

    let (ours, theirs) = (s.stddev(), model.stdev());
    assert!(
        (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0),
        "{what}: stddev {ours} vs hdrhistogram {theirs}"
    );
    // count_at_or_below is exact at bucket boundaries.
    for &(_, high, _) in expected.iter().take(16) {
        assert_eq!(
            s.count_at_or_below(high),
            model.count_between(0, high),
            "{what}: count_at_or_below({high})"
        );
    }
}

/// Records `values` into `h` and `model` (clamped), returning (saturated, saturating sum).
fn feed(h: &Histogram, model: &mut Hdr<u64>, values: &[(u64, u64)]) -> (u64, u64) {
    let mut saturated = 0u64;
    let mut sum = 0u64;
    for &(v, n) in values {
        if n == 1 {
            h.record(v);
        } else {
            h.record_n(v, n);
        }
        let clamped = v.min(h.highest());
        model.record_n(clamped, n).expect("clamped value fits");
        if v > h.highest() {
            saturated += n;
        }
        sum = sum.saturating_add(clamped.saturating_mul(n));
    }
    (saturated, sum)
}

fn gen_values(rng: &mut StdRng, lowest: u64, highest: u64, len: usize) -> Vec<(u64, u64)> {
    (0..len)
        .map(|_| {
            let v = gen_value(rng, lowest, highest);
            let n = if rng.gen_bool(0.1) {
                rng.gen_range(2..50)
            } else {
                1
            };
            (v, n)
        })
        .collect()
}

// === single-threaded equality with hdrhistogram ===

/// Every layout of `BOUNDS` with `digits` significant digits: empty, after a batch, after a
/// second batch, and the interval between the two, each against hdrhistogram.
fn check_layouts(digits: u8) {
    let mut rng = StdRng::seed_from_u64(0x5EED_0000 + u64::from(digits));
    let mut built = 0;
    for &(lowest, highest) in BOUNDS {
        let what = format!("lowest {lowest}, highest {highest}, digits {digits}");
        let h = match build(lowest, highest, digits) {
            Ok(h) => h,
            Err(e) => {
                assert!(
                    Hdr::<u64>::new_with_bounds(lowest, highest, digits).is_err(),
                    "{what}: weir refused ({e}) a layout hdrhistogram accepts"
                );
                continue;
            }
        };
        built += 1;
        let mut model = model_for(&h);
        // Layouts with millions of counts make every hdrhistogram scan slow in debug builds:
        // check them fully once per snapshot kind that matters, and cheaply otherwise.
        let heavy = model.distinct_values() > 1 << 20;
        let empty = h.snapshot();
        if heavy {
            assert_eq!(
                (empty.count(), empty.buckets().len()),
                (0, 0),
                "{what}: empty"
            );
        } else {
            assert_matches_model(&empty, &model, &mut rng, &format!("{what}, empty"));
        }

        let values = gen_values(&mut rng, lowest, highest, 3_000);
        let (saturated, sum) = feed(&h, &mut model, &values);
        let s = h.snapshot();
        assert_matches_model(&s, &model, &mut rng, &what);
        assert_eq!(s.saturated(), saturated, "{what}: saturated");
        assert_eq!(s.sum(), sum, "{what}: sum");

        // A second batch on top: cumulative snapshots keep matching.
        let more = gen_values(&mut rng, lowest, highest, 500);
        let (saturated2, sum2) = feed(&h, &mut model, &more);
        let s2 = h.snapshot();
        if heavy {
            assert_eq!(s2.count(), model.len(), "{what}, second batch: count");
            assert_eq!(
                weir_buckets(&s2),
                hdr_buckets(&model),
                "{what}, second batch"
            );
        } else {
            assert_matches_model(&s2, &model, &mut rng, &format!("{what}, second batch"));
        }
        assert_eq!(s2.saturated(), saturated + saturated2, "{what}: saturated");
        assert_eq!(s2.sum(), sum.saturating_add(sum2), "{what}: sum");

        // The interval between the two equals hdrhistogram fed only the second batch.
        let mut interval_model = model_for(&h);
        feed(
            &build(lowest, highest, digits).unwrap(),
            &mut interval_model,
            &more,
        );
        let d = s2.delta_since(&s).expect("delta of two ordered snapshots");
        assert_matches_model(&d, &interval_model, &mut rng, &format!("{what}, delta"));
        assert_eq!(d.saturated(), saturated2, "{what}: delta saturated");
        if sum.saturating_add(sum2) < u64::MAX {
            assert_eq!(d.sum(), sum2, "{what}: delta sum");
        }
    }
    assert!(built >= 9, "only {built} layouts built for digits {digits}");
}

#[test]
fn snapshots_equal_hdrhistogram_1_digit() {
    check_layouts(1);
}

#[test]
fn snapshots_equal_hdrhistogram_2_digits() {
    check_layouts(2);
}

#[test]
fn snapshots_equal_hdrhistogram_3_digits() {
    check_layouts(3);
}

#[test]
fn snapshots_equal_hdrhistogram_4_digits() {
    check_layouts(4);
}

#[test]
fn snapshots_equal_hdrhistogram_5_digits() {
    check_layouts(5);
}

#[test]
fn edge_values_and_saturation() {
    let mut rng = StdRng::seed_from_u64(7);
    let h = build(1, 1_000, 3).unwrap();
    let mut model = model_for(&h);
    let values: Vec<(u64, u64)> = [0, 1, 999, 1_000, 1_001, 5_000, u64::MAX]
        .iter()
        .map(|&v| (v, 1))
        .collect();
    let (saturated, sum) = feed(&h, &mut model, &values);
    assert_eq!(saturated, 3);
    let s = h.snapshot();
    assert_eq!(s.saturated(), 3);
    assert_eq!(s.sum(), sum);
    assert_eq!(s.count(), 7);
    assert_eq!(s.min(), 0);
    assert!(s.max() >= 1_000);
    assert_matches_model(&s, &model, &mut rng, "edges");
}

#[test]
fn zeros_alone_have_the_first_bucket_as_max() {
    // lowest 8192: the first bucket is [0, 8191].
    let h = build(8_192, 1 << 20, 2).unwrap();
    h.record(0);
    let s = h.snapshot();
    assert_eq!((s.min(), s.max()), (0, 8_191));
    assert_eq!(s.value_at_quantile(1.0), 8_191);
    assert_eq!(s.value_at_quantile(0.0), 0);
}

#[test]
fn record_n_of_zero_records_nothing() {
    let h = build(1, 1_000, 3).unwrap();
    h.record_n(500, 0);
    h.record_n(5_000, 0);
    let s = h.snapshot();
    assert_eq!(
        (s.count(), s.buckets().len(), s.min(), s.max()),
        (0, 0, 0, 0)
    );
    assert_eq!((s.sum(), s.saturated()), (0, 0));
    h.record_n(500, 3);
    let s = h.snapshot();
    assert_eq!((s.count(), s.sum(), s.min()), (3, 1_500, 500));
}

#[test]
fn record_duration_is_nanoseconds() {
    let h = Histogram::new();
    let mut model = model_for(&h);
    h.record_duration(std::time::Duration::from_micros(20));
    h.record_duration(std::time::Duration::from_secs(3 * 3_600));
    model.record(20_000).unwrap();
    model.record(h.highest()).unwrap();
    let s = h.snapshot();
    assert_eq!(s.saturated(), 1);
    assert_matches_model(&s, &model, &mut StdRng::seed_from_u64(1), "durations");
}

/// weir must lay out buckets exactly as hdrhistogram does, including where hdrhistogram
/// computes the unit magnitude as `floor(log2(lowest as f64))`: for `lowest = 2^k - 1` with
/// k >= 49 the conversion to f64 rounds up to `2^k`, so hdrhistogram uses k where an exact
/// integer log2 gives k - 1.
#[test]
fn layout_matches_hdrhistogram_for_lowest_just_below_a_power_of_two() {
    let mut rng = StdRng::seed_from_u64(49);
    for k in 45..=62u32 {
        let lowest = (1u64 << k) - 1;
        for digits in 1..=5u8 {
            let what = format!("lowest 2^{k} - 1, highest u64::MAX, digits {digits}");
            let theirs = Hdr::<u64>::new_with_bounds(lowest, u64::MAX, digits);
            let h = match build(lowest, u64::MAX, digits) {
                Ok(h) => h,
                Err(_) => {
                    assert!(
                        theirs.is_err(),
                        "{what}: weir refused, hdrhistogram accepts"
                    );
                    continue;
                }
            };
            // A layout weir accepts must be one hdrhistogram accepts (to_hdr relies on it).
            let mut model = theirs
                .unwrap_or_else(|e| panic!("{what}: weir accepts, hdrhistogram refuses: {e:?}"));
            let values: Vec<(u64, u64)> = [0, 1, lowest, lowest + 1, 3 << (k - 1), u64::MAX / 3]
                .iter()
                .map(|&v| (v, 1))
                .collect();
            feed(&h, &mut model, &values);
            assert_matches_model(&h.snapshot(), &model, &mut rng, &what);
        }
    }
}

/// A snapshot's max is "the top of its bucket, as HdrHistogram's `max`", so it is never below a
/// recorded value. In a layout whose top bucket ends at 2^64 (highest trackable value near
/// `u64::MAX`), recording `u64::MAX` must give a max of `u64::MAX` (a regression test: the top
/// of the bucket was once computed as `low.saturating_add(width) - 1`, one short of 2^64 - 1).
#[test]
fn max_covers_u64_max_in_the_top_bucket() {
    for (lowest, digits) in [(1, 3), (1, 1), (1 << 40, 1), (12_345, 2)] {
        let h = build(lowest, u64::MAX, digits).unwrap();
        let mut model = model_for(&h);
        h.record(u64::MAX);
        model.record(u64::MAX).unwrap();
        let s = h.snapshot();
        let what = format!("lowest {lowest}, highest u64::MAX, digits {digits}");
        // Recording 0 never moves hdrhistogram's tracked max (it compares `0 > 0`), so for a
        // histogram of zeros alone it says 0 where weir says the top of the first bucket.
        let model_max = match model.max() {
            0 => model.highest_equivalent(0),
            max => max,
        };
        assert_eq!(s.max(), model_max, "{what}: max");
        assert_eq!(s.max(), u64::MAX, "{what}: max below the recorded value");
        let top = s.buckets().last().unwrap();
        assert_eq!(top.high, u64::MAX, "{what}: {top:?}");
    }
}

/// hdrhistogram's `min()`, except when the smallest value recorded is `u64::MAX`: hdrhistogram
/// keeps `u64::MAX` as its "no non-zero value yet" sentinel and reports it as is, where weir
/// reports the low of that value's bucket, as for every other value.
fn model_min(model: &Hdr<u64>) -> u64 {
    match model.min() {
        u64::MAX => model.lowest_equivalent(u64::MAX),
        min => min,
    }
}

/// Regression test (found by the `histogram_diff` fuzz target): when the only values recorded
/// are `u64::MAX`, in a layout that tracks it, the min is the low of the top bucket, not
/// `u64::MAX`, and merging such a snapshot keeps it so.
#[test]
fn min_of_u64_max_alone_is_its_bucket_low() {
    for (lowest, digits) in [(64_255, 2), (1, 3), (1, 1), (1 << 40, 1), (12_345, 5)] {
        let h = build(lowest, u64::MAX, digits).unwrap();
        let mut model = model_for(&h);
        h.record_n(u64::MAX, 255);
        model.record_n(u64::MAX, 255).unwrap();
        let what = format!("lowest {lowest}, highest u64::MAX, digits {digits}");
        let low = model.lowest_equivalent(u64::MAX);
        assert!(
            low < u64::MAX,
            "{what}: the top bucket is wider than one value"
        );
        let mut s = h.snapshot();
        assert_eq!(s.min(), low, "{what}: min");
        assert_eq!(s.min(), model_min(&model), "{what}: min against the model");
        assert_eq!(s.max(), u64::MAX, "{what}: max");
        assert_eq!(s.value_at_quantile(0.0), low, "{what}: quantile 0");
        let copy = s.clone();
        s.merge(&copy).unwrap();
        assert_eq!(
            (s.min(), s.max(), s.count()),
            (low, u64::MAX, 510),
            "{what}: merged"
        );
    }
}

// === multi-threaded ===

fn thread_values(t: u64, len: usize) -> Vec<(u64, u64)> {
    let mut rng = StdRng::seed_from_u64(0xAB_0000 + t);
    gen_values(&mut rng, 1, 1 << 30, len)
}

#[test]
fn eight_threads_equal_hdrhistogram_fed_the_union() {
    const THREADS: u64 = 8;
    const LEN: usize = 20_000;
    let h = build(1, 1 << 30, 3).unwrap();
    thread::scope(|s| {
        for t in 0..THREADS {
            let h = &h;
            s.spawn(move || {
                for (v, n) in thread_values(t, LEN) {
                    h.record_n(v, n);
                }
            });
        }
    });
    let mut model = model_for(&h);
    let (mut saturated, mut sum) = (0, 0u64);
    for t in 0..THREADS {
        let (sat, s) = feed(
            &build(1, 1 << 30, 3).unwrap(),
            &mut model,
            &thread_values(t, LEN),
        );
        saturated += sat;
        sum = sum.saturating_add(s);
    }
    let s = h.snapshot();
    assert_matches_model(&s, &model, &mut StdRng::seed_from_u64(2), "union");
    assert_eq!(s.saturated(), saturated);
    assert_eq!(s.sum(), sum);
}

#[test]
fn threads_that_exit_keep_their_values_and_slots_are_reused() {
    let h = build(1, 1 << 30, 2).unwrap();
    let mut model = model_for(&h);
    for wave in 0..5u64 {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let h = h.clone();
                thread::spawn(move || {
                    for (v, n) in thread_values(wave * 10 + t, 2_000) {
                        h.record_n(v, n);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        for t in 0..4u64 {
            feed(
                &build(1, 1 << 30, 2).unwrap(),
                &mut model,
                &thread_values(wave * 10 + t, 2_000),
            );
        }
        let what = format!("after wave {wave}");
        assert_matches_model(
            &h.snapshot(),
            &model,
            &mut StdRng::seed_from_u64(wave),
            &what,
        );
    }
}

/// Checks one snapshot's internal consistency.
fn assert_self_consistent(s: &HistogramSnapshot) {
    let buckets: Vec<Bucket> = s.buckets().collect();
    let total: u64 = buckets.iter().map(|b| b.count).sum();
    assert_eq!(s.count(), total, "count is the sum of the buckets");
    assert!(buckets.iter().all(|b| b.count > 0 && b.low <= b.high));
    assert!(
        buckets.windows(2).all(|w| w[0].high < w[1].low),
        "buckets sorted and disjoint"
    );
    if let (Some(first), Some(last)) = (buckets.first(), buckets.last()) {
        assert!(s.min() <= s.max());
        assert_eq!(s.min(), first.low);
        assert_eq!(s.max(), last.high);
    } else {
        assert_eq!((s.count(), s.min(), s.max()), (0, 0, 0));
    }
    assert!(
        u128::from(s.sum()) <= u128::from(s.count()) * u128::from(s.max()),
        "sum {} > count {} x max {}",
        s.sum(),
        s.count(),
        s.max()
    );
}

#[test]
fn snapshots_are_never_torn_under_concurrent_writers() {
    const WRITERS: u64 = 8;
    const LEN: usize = 40_000;
    let h = build(1, 1 << 30, 3).unwrap();
    let finished = AtomicUsize::new(0);
    let mut snapshots = 0usize;
    thread::scope(|scope| {
        for t in 0..WRITERS {
            let (h, finished) = (&h, &finished);
            scope.spawn(move || {
                for (v, n) in thread_values(100 + t, LEN) {
                    h.record_n(v, n);
                }
                finished.fetch_add(1, Ordering::Release);
            });
        }
        // The reader: snapshots in a loop (bounded by the writers' fixed amount of work).
        let mut earlier = h.snapshot();
        assert_self_consistent(&earlier);
        let mut accumulated = earlier.clone();
        loop {
            let done = finished.load(Ordering::Acquire) == WRITERS as usize;
            let later = h.snapshot();
            snapshots += 1;
            assert_self_consistent(&later);
            assert!(later.count() >= earlier.count(), "count went backwards");
            assert!(later.sequence() > earlier.sequence());
            let d = later
                .delta_since(&earlier)
                .expect("successive snapshots from one reader");
            assert_self_consistent(&d);
            assert_eq!(d.count(), later.count() - earlier.count());
            assert_eq!(d.sum(), later.sum() - earlier.sum());
            assert_eq!(d.saturated(), later.saturated() - earlier.saturated());
            accumulated.merge(&d).unwrap();
            assert_eq!(weir_buckets(&accumulated), weir_buckets(&later));
            earlier = later;
            if done {
                break;
            }
            thread::yield_now();
        }
        assert_eq!(accumulated.count(), earlier.count());
    });
    assert!(snapshots >= 1);
    // Everything is in once the writers are done.
    let mut model = model_for(&h);
    for t in 0..WRITERS {
        feed(
            &build(1, 1 << 30, 3).unwrap(),
            &mut model,
            &thread_values(100 + t, LEN),
        );
    }
    assert_matches_model(
        &h.snapshot(),
        &model,
        &mut StdRng::seed_from_u64(3),
        "after writers",
    );
}

// === errors ===

#[test]
fn delta_since_errors() {
    let a = Histogram::new();
    let b = Histogram::new();
    a.record(10);
    b.record(10);
    let a1 = a.snapshot();
    let b1 = b.snapshot();
    assert_eq!(a1.delta_since(&b1), Err(DeltaError::Unrelated));
    assert_eq!(b1.delta_since(&a1), Err(DeltaError::Unrelated));

    a.record(20);
    let a2 = a.snapshot();
    assert_eq!(
        a1.delta_since(&a2),
        Err(DeltaError::BaselineIsNewer {
            baseline: a2.sequence(),
            this: a1.sequence(),
        })
    );
    let d = a2.delta_since(&a1).unwrap();
    assert_eq!(d.count(), 1);
    assert_eq!(d.sum(), 20);
    // A snapshot minus itself is empty.
    assert_eq!(a2.delta_since(&a2).unwrap().count(), 0);

    // A merged snapshot no longer belongs to one histogram.
    let mut merged = a2.clone();
    merged.merge(&a1).unwrap();
    assert_eq!(merged.delta_since(&a1), Err(DeltaError::Unrelated));
    assert_eq!(a2.delta_since(&merged), Err(DeltaError::Unrelated));

    // An interval is smaller than the cumulative snapshot it started from.
    assert_eq!(d.delta_since(&a1), Err(DeltaError::Decreased));

    // Same layout, different histogram: still unrelated.
    let c = build(1, 1_000, 2).unwrap();
    let e = build(1, 1_000, 2).unwrap();
    assert_eq!(
        c.snapshot().delta_since(&e.snapshot()),
        Err(DeltaError::Unrelated)
    );
}

#[test]
fn merge_errors_and_merge_of_matching_layouts() {
    let a = build(1, 1_000, 2).unwrap();
    let b = build(1, 1_000, 3).unwrap();
    let c = build(1, 2_000, 2).unwrap();
    let d = build(2, 1_000, 2).unwrap();
    let mut sa = a.snapshot();
    for other in [&b, &c, &d] {
        assert_eq!(sa.merge(&other.snapshot()), Err(MergeError::LayoutMismatch));
    }

    let e = build(1, 1_000, 2).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let mut model = model_for(&a);
    let va = gen_values(&mut rng, 1, 1_000, 1_000);
    let ve = gen_values(&mut rng, 1, 1_000, 1_000);
    let (sat_a, _) = feed(&a, &mut model, &va);
    let (sat_e, _) = feed(&e, &mut model, &ve);
    sa = a.snapshot();
    sa.merge(&e.snapshot()).unwrap();
    assert_matches_model(&sa, &model, &mut rng, "merge");
    assert_eq!(sa.saturated(), sat_a + sat_e);
}

#[test]
fn quantile_argument_errors_and_clamping() {
    let h = Histogram::new();
    for v in [5, 50, 500, 5_000] {
        h.record(v);
    }
    let s = h.snapshot();
    for bad in [f64::NAN, -0.1, 1.1, f64::INFINITY, f64::NEG_INFINITY] {
        match s.try_value_at_quantile(bad) {
            Err(QuantileError::OutOfRange(q)) => {
                assert!(q.is_nan() && bad.is_nan() || q == bad, "{q} vs {bad}");
            }
            other => panic!("try_value_at_quantile({bad}) = {other:?}"),
        }
    }
    assert_eq!(s.value_at_quantile(1.1), s.value_at_quantile(1.0));
    assert_eq!(s.value_at_quantile(f64::INFINITY), s.value_at_quantile(1.0));
    assert_eq!(s.value_at_quantile(-0.1), s.value_at_quantile(0.0));
    assert_eq!(s.value_at_quantile(f64::NAN), s.value_at_quantile(0.0));
    assert_eq!(s.value_at_quantile(0.0), 5);
    assert_eq!(s.value_at_quantile(1.0), s.max());
    assert_eq!(s.try_value_at_quantile(0.0), Ok(5));
    assert_eq!(s.try_value_at_quantile(-0.0), Ok(5));
}

#[test]
fn builder_errors() {
    let e = |r: Result<Histogram, HistogramError>| r.err();
    assert_eq!(
        e(Histogram::builder().significant_digits(0).build()),
        Some(HistogramError::SignificantDigits { digits: 0 })
    );
    assert_eq!(
        e(Histogram::builder().significant_digits(6).build()),
        Some(HistogramError::SignificantDigits { digits: 6 })
    );
    assert_eq!(
        e(Histogram::builder().lowest(0).build()),
        Some(HistogramError::LowestIsZero)
    );
    assert_eq!(
        e(build(100, 199, 3)),
        Some(HistogramError::HighestTooLow {
            lowest: 100,
            highest: 199
        })
    );
    assert_eq!(
        e(build(1, 1, 3)),
        Some(HistogramError::HighestTooLow {
            lowest: 1,
            highest: 1
        })
    );
    assert!(matches!(
        build(u64::MAX / 2 + 1, u64::MAX, 3),
        Err(HistogramError::HighestTooLow { .. })
    ));
    assert!(matches!(
        build(1 << 50, u64::MAX, 5),
        Err(HistogramError::LowestTooHighForDigits { .. })
    ));
    // The boundary itself is fine.
    let h = build(100, 200, 3).unwrap();
    assert_eq!(
        (h.lowest(), h.highest(), h.significant_digits()),
        (100, 200, 3)
    );
    // Every error explains itself.
    for err in [
        HistogramError::SignificantDigits { digits: 6 },
        HistogramError::LowestIsZero,
        HistogramError::HighestTooLow {
            lowest: 10,
            highest: 15,
        },
    ] {
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn empty_snapshot() {
    let h = Histogram::new();
    let s = h.snapshot();
    assert_eq!(s.count(), 0);
    assert_eq!(s.buckets().len(), 0);
    assert_eq!((s.min(), s.max(), s.sum(), s.saturated()), (0, 0, 0, 0));
    assert_eq!(s.value_at_quantile(0.99), 0);
    assert_eq!(s.to_hdr().len(), 0);
    assert!(format!("{s:?}").contains("count: 0"));
}
