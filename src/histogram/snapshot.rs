//! Immutable histogram snapshots: quantiles, intervals, merging, and conversion to HdrHistogram.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;

use super::Layout;
use crate::error::{DeltaError, MergeError, QuantileError};

/// Sums the shards of a histogram while a snapshot is taken.
///
/// While only one shard has buckets (the common case: one thread records into the histogram),
/// its non-zero buckets are kept as read, in index order: nothing is zeroed or scanned twice.
/// When a second shard with buckets arrives, the buckets move into zeroed pages that every
/// later shard is added into, and [`finish`](Accumulator::finish) collects their non-zero
/// buckets.
pub(super) struct Accumulator {
    page_len: usize,
    /// Shards added with at least one bucket.
    shards: usize,
    /// One shard so far: its non-zero buckets, by increasing index.
    sparse: Vec<(u32, u64)>,
    /// Several shards: their sums, page by page.
    dense: BTreeMap<usize, Box<[u64]>>,
    sum: u64,
    saturated: u64,
}

impl Accumulator {
    pub(super) fn new(page_len: usize) -> Accumulator {
        Accumulator {
            page_len,
            shards: 0,
            sparse: Vec::new(),
            dense: BTreeMap::new(),
            sum: 0,
            saturated: 0,
        }
    }

    /// Adds one shard: its sum, saturated count and non-zero buckets (flat index, count) in
    /// increasing index order.
    pub(super) fn add_shard(&mut self, sum: u64, saturated: u64, buckets: &[(u32, u64)]) {
        self.sum = self.sum.saturating_add(sum);
        self.saturated = self.saturated.wrapping_add(saturated);
        if buckets.is_empty() {
            return;
        }
        self.shards += 1;
        if self.shards == 1 {
            self.sparse.extend_from_slice(buckets);
            return;
        }
        if self.shards == 2 {
            let first = std::mem::take(&mut self.sparse);
            self.add_dense(&first);
        }
        self.add_dense(buckets);
    }

    fn add_dense(&mut self, buckets: &[(u32, u64)]) {
        let len = self.page_len;
        for &(index, c) in buckets {
            let index = index as usize;
            let page = self
                .dense
                .entry(index / len)
                .or_insert_with(|| vec![0; len].into_boxed_slice());
            page[index % len] = page[index % len].wrapping_add(c);
        }
    }

    pub(super) fn finish(self, layout: Layout, source: u64, seq: u64) -> HistogramSnapshot {
        let counts = if self.shards <= 1 {
            self.sparse
        } else {
            let mut counts = Vec::new();
            for (p, page) in &self.dense {
                for (i, &c) in page.iter().enumerate() {
                    if c != 0 {
                        counts.push(((p * self.page_len + i) as u32, c));
                    }
                }
            }
            counts
        };
        let count = counts
            .iter()
            .fold(0u64, |total, &(_, c)| total.wrapping_add(c));
        HistogramSnapshot {
            layout,
            source,
            seq,
            counts,
            count,
            sum: self.sum,
            saturated: self.saturated,
        }
    }
}

/// An immutable copy of a [`Histogram`](crate::Histogram) at one moment (or an interval between
/// two moments, from [`delta_since`](HistogramSnapshot::delta_since)).
///
/// Only non-empty buckets are stored. Count, min and max are derived from the buckets, so they
/// always agree with them; quantiles follow HdrHistogram's definition exactly.
#[derive(Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    layout: Layout,
    /// The histogram it came from; 0 after merging snapshots of different histograms.
    source: u64,
    seq: u64,
    /// (flat index, count), sorted by index, counts non-zero.
    counts: Vec<(u32, u64)>,
    count: u64,
    sum: u64,
    saturated: u64,
}

/// One non-empty bucket of a [`HistogramSnapshot`]: the inclusive value range it covers and how
/// many values fell in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Lowest value in the bucket.
    pub low: u64,
    /// Highest value in the bucket (inclusive).
    pub high: u64,
    /// Number of values recorded in the bucket.
    pub count: u64,
}

/// Iterator over the non-empty buckets of a snapshot, lowest first.
#[derive(Clone, Debug)]
pub struct Buckets<'a> {
    layout: &'a Layout,
    inner: std::slice::Iter<'a, (u32, u64)>,
}

impl Iterator for Buckets<'_> {
    type Item = Bucket;
    fn next(&mut self) -> Option<Bucket> {
        self.inner.next().map(|&(i, count)| {
            let (low, high) = self.layout.range_of_index(i as usize);
            Bucket { low, high, count }
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for Buckets<'_> {}

impl HistogramSnapshot {
    /// Number of values recorded (the sum of all bucket counts).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values recorded, each as recorded into its bucket (values above the highest
    /// trackable value count as that value). Saturates at `u64::MAX`.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// How many recorded values were above the highest trackable value and were clamped into
    /// the top bucket.
    pub fn saturated(&self) -> u64 {
        self.saturated
    }

    /// The lowest recorded value, to the bucket's precision (HdrHistogram's `min`): 0 when empty.
    pub fn min(&self) -> u64 {
        match self.counts.first() {
            Some(&(i, _)) => self.layout.value_at_index(i as usize),
            None => 0,
        }
    }

    /// The highest recorded value, to the bucket's precision (the top of its bucket, as
    /// HdrHistogram's `max`): 0 when empty.
    pub fn max(&self) -> u64 {
        match self.counts.last() {
            Some(&(i, _)) => self.layout.range_of_index(i as usize).1,
            None => 0,
        }
    }

    /// The exact mean of the recorded values (`sum / count`); 0.0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The standard deviation, computed from bucket midpoints as HdrHistogram does; 0.0 when
    /// empty.
    pub fn stddev(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let total = self.count as f64;
        let mid = |i: u32| {
            self.layout
                .median_equivalent(self.layout.value_at_index(i as usize)) as f64
        };
        let mean = self
            .counts
            .iter()
            .fold(0.0, |acc, &(i, c)| acc + mid(i) * c as f64 / total);
        let var = self.counts.iter().fold(0.0, |acc, &(i, c)| {
            let d = mid(i) - mean;
            acc + d * d * c as f64
        });
        (var / total).sqrt()
    }

    /// The value at quantile `q` (0.99 is the 99th percentile), as HdrHistogram defines it: the
    /// highest value of the bucket in which the cumulative count reaches `ceil(q × count)` (the
    /// lowest value of the first bucket for `q = 0`). `q` is clamped into `[0, 1]`; NaN is
    /// treated as 0. Returns 0 for an empty snapshot. See
    /// [`try_value_at_quantile`](Self::try_value_at_quantile) to reject bad input instead.
    ///
    /// One deliberate difference from HdrHistogram: in a layout whose top bucket ends at 2^64,
    /// a quantile in that bucket is `u64::MAX` (the bucket's real top, and what `max()` says);
    /// HdrHistogram's `value_at_quantile` says `u64::MAX - 1` there.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        if self.count == 0 {
            return 0;
        }
        let target = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen: u64 = 0;
        for &(i, c) in &self.counts {
            seen = seen.saturating_add(c);
            if seen >= target {
                let low = self.layout.value_at_index(i as usize);
                return if q == 0.0 {
                    low
                } else {
                    self.layout.highest_equivalent(low)
                };
            }
        }
        self.max()
    }

    /// Like [`value_at_quantile`](Self::value_at_quantile), but NaN or a quantile outside
    /// `[0, 1]` is an error.
    pub fn try_value_at_quantile(&self, q: f64) -> Result<u64, QuantileError> {
        if (0.0..=1.0).contains(&q) {
            Ok(self.value_at_quantile(q))
        } else {
            Err(QuantileError::OutOfRange(q))
        }
    }

    /// How many recorded values are `<= value` (counting whole buckets: a bucket counts when its
    /// lowest value is `<= value`, which is exact when `value` is a bucket's highest value).
    pub fn count_at_or_below(&self, value: u64) -> u64 {
        let mut total: u64 = 0;
        for &(i, c) in &self.counts {
            if self.layout.value_at_index(i as usize) > value {
                break;
            }
            total = total.wrapping_add(c);
        }
        total
    }

    /// The non-empty buckets, lowest first.
    pub fn buckets(&self) -> Buckets<'_> {
        Buckets {
            layout: &self.layout,
            inner: self.counts.iter(),
        }
    }

    /// The lowest discernible value of the histogram's layout.
    pub fn lowest(&self) -> u64 {
        self.layout.lowest
    }
    /// The highest trackable value of the histogram's layout.
    pub fn highest(&self) -> u64 {
        self.layout.highest
    }
    /// The significant digits of the histogram's layout.
    pub fn significant_digits(&self) -> u8 {
        self.layout.digits
    }
    /// This snapshot's sequence number: increasing, per histogram, in the order snapshots were
    /// started.
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// Converts into an `hdrhistogram::Histogram<u64>` with the same layout and counts, for its
    /// serialization, interval logs and iterators.
    pub fn to_hdr(&self) -> hdrhistogram::Histogram<u64> {
        let l = &self.layout;
        let mut h = match hdrhistogram::Histogram::new_with_bounds(l.lowest, l.highest, l.digits) {
            Ok(h) => h,
            // A Layout is only built from parameters hdrhistogram accepts (checked in tests).
            Err(e) => unreachable!("weir layouts are valid hdrhistogram layouts: {e:?}"),
        };
        for &(i, c) in &self.counts {
            h.saturating_record_n(l.value_at_index(i as usize), c);
        }
        h
    }

    /// The interval between `baseline` (an earlier snapshot of the same histogram) and this
    /// snapshot: what was recorded after `baseline` and up to this one, exactly.
    ///
    /// Errors if `baseline` is of another histogram, newer than this one, or holds more than
    /// this one in some bucket (two snapshots taken concurrently by different threads).
    pub fn delta_since(
        &self,
        baseline: &HistogramSnapshot,
    ) -> Result<HistogramSnapshot, DeltaError> {
        if self.source == 0 || baseline.source != self.source || baseline.layout != self.layout {
            return Err(DeltaError::Unrelated);
        }
        if baseline.seq > self.seq {
            return Err(DeltaError::BaselineIsNewer {
                baseline: baseline.seq,
                this: self.seq,
            });
        }
        let sum = self
            .sum
            .checked_sub(baseline.sum)
            .ok_or(DeltaError::Decreased)?;
        let saturated = self
            .saturated
            .checked_sub(baseline.saturated)
            .ok_or(DeltaError::Decreased)?;
        let mut counts = Vec::with_capacity(self.counts.len());
        let mut base = baseline.counts.iter().peekable();
        for &(i, c) in &self.counts {
            let mut prev = 0;
            if let Some(&&(bi, bc)) = base.peek() {
                if bi < i {
                    // The baseline has a bucket this snapshot lacks: it can only have shrunk.
                    return Err(DeltaError::Decreased);
                }
                if bi == i {
                    prev = bc;
                    base.next();
                }
            }
            let d = c.checked_sub(prev).ok_or(DeltaError::Decreased)?;
            if d != 0 {
                counts.push((i, d));
            }
        }
        if base.next().is_some() {
            return Err(DeltaError::Decreased);
        }
        let count = counts.iter().fold(0u64, |a, &(_, c)| a.wrapping_add(c));
        Ok(HistogramSnapshot {
            layout: self.layout,
            source: self.source,
            seq: self.seq,
            counts,
            count,
            sum,
            saturated,
        })
    }

    /// Adds `other`'s counts into this snapshot (for example, the same metric from several
    /// processes or label sets). The layouts must match. The result no longer belongs to one
    /// histogram, so neither it nor a delta of it can serve in `delta_since` again.
    pub fn merge(&mut self, other: &HistogramSnapshot) -> Result<(), MergeError> {
        if self.layout != other.layout {
            return Err(MergeError::LayoutMismatch);
        }
        let mut out = Vec::with_capacity(self.counts.len().max(other.counts.len()));
        let (mut a, mut b) = (
            self.counts.iter().peekable(),
            other.counts.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&(ai, ac)), Some(&&(bi, bc))) => {
                    if ai == bi {
                        out.push((ai, ac.wrapping_add(bc)));
                        a.next();
                        b.next();
                    } else if ai < bi {
                        out.push((ai, ac));
                        a.next();
                    } else {
                        out.push((bi, bc));
                        b.next();
                    }
                }
                (Some(&&x), None) => {
                    out.push(x);
                    a.next();
                }
                (None, Some(&&x)) => {
                    out.push(x);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.counts = out;
        self.count = self.count.wrapping_add(other.count);
        self.sum = self.sum.saturating_add(other.sum);
        self.saturated = self.saturated.wrapping_add(other.saturated);
        self.source = 0;
        self.seq = self.seq.max(other.seq);
        Ok(())
    }
}

impl fmt::Debug for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramSnapshot")
            .field("count", &self.count)
            .field("sum", &self.sum)
            .field("min", &self.min())
            .field("max", &self.max())
            .field("saturated", &self.saturated)
            .field("buckets", &self.counts.len())
            .finish()
    }
}
