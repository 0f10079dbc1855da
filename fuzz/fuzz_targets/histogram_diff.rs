//! Differential fuzzing of weir's histograms against `hdrhistogram`.
//!
//! The input picks one or two bucket layouts and a sequence of operations (record, record_n,
//! snapshot, delta between two stored snapshots, merge of two stored snapshots). Every
//! operation is applied to weir and to a model made of plain `hdrhistogram::Histogram<u64>`s
//! (fed values clamped to the highest trackable value, as weir records them), and every
//! snapshot weir produces must hold exactly what the model holds: bucket counts (through
//! `buckets()` and `to_hdr()`), count, min, max, sum, saturated count and quantiles. Errors must
//! be the predicted ones: invalid layouts give the matching `HistogramError`, deltas give
//! `DeltaError::{Unrelated, BaselineIsNewer, Decreased}` exactly when the model says so, and
//! merges of different layouts give `MergeError::LayoutMismatch`.
//!
//! One deliberate difference: hdrhistogram reports the top of a bucket that ends at 2^64 as
//! `u64::MAX - 1` (in its iterator and quantiles; its `max()` says `u64::MAX`). weir reports
//! `u64::MAX`, the bucket's real top, and the model is corrected for it (`top_fix`).
//! Another: hdrhistogram's `min()` answers `u64::MAX`, its "nothing recorded" sentinel, when the
//! smallest value recorded is `u64::MAX`; weir answers the low of that value's bucket, as it does
//! for any other value (`model_min`).
#![no_main]

use arbitrary::Arbitrary;
use hdrhistogram::{CreationError, Histogram as Hdr};
use libfuzzer_sys::fuzz_target;
use weir::{DeltaError, Histogram, HistogramError, HistogramSnapshot, MergeError};

/// At most this many operations per input (keeps counts far from u64 overflow, even when a
/// snapshot is merged into itself at every step, and keeps each run fast).
const MAX_OPS: usize = 40;
/// At most this many stored snapshots.
const MAX_STORED: usize = 8;
/// Layouts with more counts than this are skipped once their validity has been checked: the
/// model's linear scans would make each run slow.
const MAX_COUNTS: usize = 1 << 18;
const QUANTILES: [f64; 7] = [0.0, 1e-9, 0.25, 0.5, 0.9, 0.999, 1.0];

/// A `u64` from the input, biased towards powers of two and their neighbours (where layout and
/// bucket arithmetic have their edges).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Num {
    Raw(u64),
    Small(u16),
    NearPow2 { shift: u8, offset: i8 },
}

impl Num {
    fn get(self) -> u64 {
        match self {
            Num::Raw(v) => v,
            Num::Small(v) => u64::from(v),
            Num::NearPow2 { shift, offset } => {
                (1u64 << (shift % 64)).wrapping_add(i64::from(offset) as u64)
            }
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct LayoutSpec {
    digits: u8,
    lowest: Num,
    highest: Num,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Value {
    Num(Num),
    Zero,
    Lowest(i8),
    Highest,
    AboveHighest(u16),
    Max,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Record { second: bool, value: Value },
    RecordN { second: bool, value: Value, n: u8 },
    Snapshot { second: bool },
    Delta { later: u8, earlier: u8 },
    Merge { into: u8, from: u8 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    first: LayoutSpec,
    /// `None`: a second histogram with the first one's layout (a different histogram all the
    /// same, so deltas across them are `Unrelated`).
    second: Option<LayoutSpec>,
    ops: Vec<Op>,
}

/// What weir's builder must answer for these parameters, or `Ok` with the hdrhistogram model.
fn expected_build(spec: &LayoutSpec) -> Result<Hdr<u64>, HistogramError> {
    let (lowest, highest, digits) = (spec.lowest.get(), spec.highest.get(), spec.digits);
    if !(1..=5).contains(&digits) {
        return Err(HistogramError::SignificantDigits { digits });
    }
    if lowest == 0 {
        return Err(HistogramError::LowestIsZero);
    }
    if lowest > u64::MAX / 2 || highest < 2 * lowest {
        return Err(HistogramError::HighestTooLow { lowest, highest });
    }
    match Hdr::new_with_bounds(lowest, highest, digits) {
        Ok(h) => Ok(h),
        Err(CreationError::CannotRepresentSigFigBeyondLow) => {
            Err(HistogramError::LowestTooHighForDigits { lowest, digits })
        }
        Err(e) => panic!("hdrhistogram refused {spec:?} unexpectedly: {e:?}"),
    }
}

/// Builds weir's histogram and the model, checking the builder's verdict. `None`: stop here.
fn build(spec: &LayoutSpec) -> Option<(Histogram, Hdr<u64>)> {
    let got = Histogram::builder()
        .lowest(spec.lowest.get())
        .highest(spec.highest.get())
        .significant_digits(spec.digits)
        .build();
    match (got, expected_build(spec)) {
        (Ok(h), Ok(model)) => {
            assert_eq!(
                (h.lowest(), h.highest(), h.significant_digits()),
                (model.low(), model.high(), model.sigfig())
            );
            if model.distinct_values() > MAX_COUNTS {
                return None;
            }
            Some((h, model))
        }
        (Err(got), Err(want)) => {
            assert_eq!(got, want, "{spec:?}");
            assert!(!got.to_string().is_empty());
            None
        }
        (Ok(_), Err(want)) => panic!("{spec:?}: weir built a histogram, expected {want:?}"),
        (Err(got), Ok(_)) => panic!("{spec:?}: weir refused ({got:?}) a valid layout"),
    }
}

/// One histogram under test and its model.
struct Subject {
    weir: Histogram,
    model: Hdr<u64>,
    sum: u64,
    saturated: u64,
    last_seq: u64,
}

impl Subject {
    fn record(&mut self, value: Value, n: u64) {
        let highest = self.weir.highest();
        let v = match value {
            Value::Num(x) => x.get(),
            Value::Zero => 0,
            Value::Lowest(offset) => self.weir.lowest().wrapping_add(i64::from(offset) as u64),
            Value::Highest => highest,
            Value::AboveHighest(d) => highest.saturating_add(1 + u64::from(d)),
            Value::Max => u64::MAX,
        };
        if n == 1 {
            self.weir.record(v);
        } else {
            self.weir.record_n(v, n);
        }
        if n == 0 {
            // hdrhistogram moves its min/max even for a count of zero; weir records nothing.
            return;
        }
        let clamped = v.min(highest);
        self.model
            .record_n(clamped, n)
            .expect("clamped values are trackable");
        if v > highest {
            self.saturated += n;
        }
        self.sum = self.sum.saturating_add(clamped.saturating_mul(n));
    }
}

/// A stored snapshot and what the model says it holds.
struct Stored {
    weir: HistogramSnapshot,
    model: Hdr<u64>,
    sum: u64,
    saturated: u64,
    /// Which histogram it is a reading of; `None` after a merge.
    source: Option<usize>,
    seq: u64,
}

/// `v` (a bucket top or quantile from hdrhistogram), corrected to `u64::MAX` when its bucket
/// ends at 2^64.
fn top_fix(h: &Hdr<u64>, v: u64) -> u64 {
    let low = h.lowest_equivalent(v);
    if v != low && low.checked_add(h.equivalent_range(low)).is_none() {
        u64::MAX
    } else {
        v
    }
}

fn hdr_buckets(h: &Hdr<u64>) -> Vec<(u64, u64, u64)> {
    h.iter_recorded()
        .map(|v| {
            let high = v.value_iterated_to();
            (
                h.lowest_equivalent(high),
                top_fix(h, high),
                v.count_at_value(),
            )
        })
        .collect()
}

/// `a` minus `b`, bucket by bucket (`b` holds no more than `a` in any bucket). Built by
/// recording rather than with hdrhistogram's `subtract`, which refuses a subtrahend whose max is
/// `u64::MAX` in a layout whose top bucket ends at 2^64.
fn model_minus(a: &Hdr<u64>, b: &Hdr<u64>) -> Hdr<u64> {
    let mut out = Hdr::new_with_bounds(a.low(), a.high(), a.sigfig()).expect("a valid layout");
    for v in a.iter_recorded() {
        let value = v.value_iterated_to();
        let n = v.count_at_value() - b.count_at(value);
        if n > 0 {
            out.record_n(value, n).expect("a trackable value");
        }
    }
    out
}

/// `a` plus `b` (same layout), by recording, for the same reason as `model_minus`.
fn model_plus(a: &mut Hdr<u64>, b: &Hdr<u64>) {
    for v in b.iter_recorded() {
        a.record_n(v.value_iterated_to(), v.count_at_value())
            .expect("a trackable value");
    }
}

/// hdrhistogram's `max()`, except that recording 0 never moves hdrhistogram's tracked max (it
/// compares `0 > 0`), so a histogram holding only zeros reports 0 rather than the top of the
/// first bucket, which is what weir reports (and hdrhistogram itself does for 1).
fn model_max(model: &Hdr<u64>) -> u64 {
    match model.max() {
        0 => model.highest_equivalent(0),
        max => top_fix(model, max),
    }
}

/// hdrhistogram's `min()`, except when the smallest value recorded is `u64::MAX`: hdrhistogram
/// keeps `u64::MAX` as its "no non-zero value yet" sentinel and so reports `u64::MAX` itself,
/// where weir reports the low of that bucket (the same rule as for every other value).
fn model_min(model: &Hdr<u64>) -> u64 {
    match model.min() {
        u64::MAX => model.lowest_equivalent(u64::MAX),
        min => min,
    }
}

fn check(s: &HistogramSnapshot, model: &Hdr<u64>, sum: u64, saturated: u64) {
    assert_eq!(s.count(), model.len(), "count");
    let expected = hdr_buckets(model);
    let buckets: Vec<_> = s.buckets().map(|b| (b.low, b.high, b.count)).collect();
    assert_eq!(buckets, expected, "buckets()");
    let converted = s.to_hdr();
    assert_eq!(converted.len(), model.len(), "to_hdr().len()");
    assert_eq!(hdr_buckets(&converted), expected, "to_hdr() buckets");
    assert_eq!(s.sum(), sum, "sum");
    assert_eq!(s.saturated(), saturated, "saturated");
    if model.is_empty() {
        assert_eq!((s.min(), s.max()), (0, 0), "empty min/max");
        assert_eq!(s.value_at_quantile(0.5), 0);
        return;
    }
    assert_eq!(s.min(), model_min(model), "min");
    assert_eq!(s.max(), model_max(model), "max");
    for q in QUANTILES {
        assert_eq!(
            s.value_at_quantile(q),
            if q == 0.0 {
                model.value_at_quantile(q)
            } else {
                top_fix(model, model.value_at_quantile(q))
            },
            "value_at_quantile({q})"
        );
    }
}

fn run(input: Input) {
    let Some((h0, m0)) = build(&input.first) else {
        return;
    };
    let second = match &input.second {
        Some(spec) => build(spec),
        None => {
            let h = Histogram::builder()
                .lowest(h0.lowest())
                .highest(h0.highest())
                .significant_digits(h0.significant_digits())
                .build()
                .expect("the first layout is valid");
            Some((h, m0.clone()))
        }
    };
    let Some((h1, m1)) = second else {
        return;
    };
    let mut subjects = [(h0, m0), (h1, m1)].map(|(weir, model)| Subject {
        weir,
        model,
        sum: 0,
        saturated: 0,
        last_seq: 0,
    });
    let mut stored: Vec<Stored> = Vec::new();
    let mut next_slot = 0usize;
    let mut store = |stored: &mut Vec<Stored>, s: Stored| {
        if stored.len() < MAX_STORED {
            stored.push(s);
        } else {
            stored[next_slot % MAX_STORED] = s;
            next_slot += 1;
        }
    };

    for op in input.ops.into_iter().take(MAX_OPS) {
        match op {
            Op::Record { second, value } => subjects[usize::from(second)].record(value, 1),
            Op::RecordN { second, value, n } => {
                subjects[usize::from(second)].record(value, u64::from(n))
            }
            Op::Snapshot { second } => {
                let i = usize::from(second);
                let subject = &mut subjects[i];
                let s = subject.weir.snapshot();
                assert!(s.sequence() > subject.last_seq, "sequence must increase");
                subject.last_seq = s.sequence();
                check(&s, &subject.model, subject.sum, subject.saturated);
                let entry = Stored {
                    seq: s.sequence(),
                    weir: s,
                    model: subject.model.clone(),
                    sum: subject.sum,
                    saturated: subject.saturated,
                    source: Some(i),
                };
                store(&mut stored, entry);
            }
            Op::Delta { later, earlier } => {
                if stored.is_empty() {
                    continue;
                }
                let a = &stored[usize::from(later) % stored.len()];
                let b = &stored[usize::from(earlier) % stored.len()];
                let got = a.weir.delta_since(&b.weir);
                let related = a.source.is_some() && a.source == b.source;
                if !related {
                    assert_eq!(got, Err(DeltaError::Unrelated));
                    continue;
                }
                if b.seq > a.seq {
                    assert_eq!(
                        got,
                        Err(DeltaError::BaselineIsNewer {
                            baseline: b.seq,
                            this: a.seq
                        })
                    );
                    continue;
                }
                let decreased = a.sum < b.sum
                    || a.saturated < b.saturated
                    || b.model
                        .iter_recorded()
                        .any(|v| a.model.count_at(v.value_iterated_to()) < v.count_at_value());
                if decreased {
                    assert_eq!(got, Err(DeltaError::Decreased));
                    continue;
                }
                let d = got.expect("delta between ordered readings of one histogram");
                let model = model_minus(&a.model, &b.model);
                let (sum, saturated) = (a.sum - b.sum, a.saturated - b.saturated);
                check(&d, &model, sum, saturated);
                assert_eq!(d.sequence(), a.seq);
                let entry = Stored {
                    weir: d,
                    model,
                    sum,
                    saturated,
                    source: a.source,
                    seq: a.seq,
                };
                store(&mut stored, entry);
            }
            Op::Merge { into, from } => {
                if stored.is_empty() {
                    continue;
                }
                let into = usize::from(into) % stored.len();
                let from = usize::from(from) % stored.len();
                let other = stored[from].weir.clone();
                let (other_model, other_sum, other_saturated, other_seq) = (
                    stored[from].model.clone(),
                    stored[from].sum,
                    stored[from].saturated,
                    stored[from].seq,
                );
                let target = &mut stored[into];
                let same_layout =
                    (
                        target.model.low(),
                        target.model.high(),
                        target.model.sigfig(),
                    ) == (other_model.low(), other_model.high(), other_model.sigfig());
                let before = target.weir.clone();
                let got = target.weir.merge(&other);
                if !same_layout {
                    assert_eq!(got, Err(MergeError::LayoutMismatch));
                    assert!(target.weir == before, "a failed merge changes nothing");
                    continue;
                }
                got.expect("merge of equal layouts");
                model_plus(&mut target.model, &other_model);
                target.sum = target.sum.saturating_add(other_sum);
                target.saturated += other_saturated;
                target.source = None;
                target.seq = target.seq.max(other_seq);
                check(&target.weir, &target.model, target.sum, target.saturated);
                assert_eq!(target.weir.sequence(), target.seq);
            }
        }
    }

    for subject in &subjects {
        let s = subject.weir.snapshot();
        check(&s, &subject.model, subject.sum, subject.saturated);
    }
}

fuzz_target!(|input: Input| run(input));
