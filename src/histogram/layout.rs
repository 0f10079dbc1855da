//! HDR bucket math: value → index → value range, identical to HdrHistogram's.
//!
//! A layout is fixed by three numbers: significant digits (1..=5), the lowest discernible value
//! and the highest trackable value. Values are grouped in power-of-two *buckets*, each split into
//! `2 × 10^digits` rounded up to a power of two linear *sub-buckets* (the lower half of every
//! bucket but the first repeats the previous bucket, so only the upper half is stored). The flat
//! index of a value is the same number HdrHistogram uses, which is what lets a weir snapshot
//! convert exactly into an `hdrhistogram::Histogram<u64>`.
#![forbid(unsafe_code)]

use crate::error::HistogramError;

/// The bucket layout of a histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) lowest: u64,
    pub(crate) highest: u64,
    pub(crate) digits: u8,
    unit_magnitude: u8,
    sub_bucket_half_count_magnitude: u8,
    sub_bucket_half_count: u32,
    sub_bucket_mask: u64,
    leading_zero_count_base: u8,
    counts_len: u32,
}

impl Layout {
    /// Validates the parameters and computes the layout.
    pub(crate) fn new(lowest: u64, highest: u64, digits: u8) -> Result<Layout, HistogramError> {
        if !(1..=5).contains(&digits) {
            return Err(HistogramError::SignificantDigits { digits });
        }
        if lowest == 0 {
            return Err(HistogramError::LowestIsZero);
        }
        if lowest > u64::MAX / 2 || highest < 2 * lowest {
            return Err(HistogramError::HighestTooLow { lowest, highest });
        }
        let largest = 2 * 10_u32.pow(u32::from(digits));
        // floor(log2(lowest)) computed through f64, exactly as HdrHistogram does: for `lowest`
        // just below a large power of two the conversion rounds up, and the layouts must agree
        // bucket for bucket (and `to_hdr` must never meet a layout HdrHistogram refuses).
        let unit_magnitude = (lowest as f64).log2().floor() as u8;
        // ceil(log2(largest)), in integers (largest <= 200,000, exact either way).
        let sub_bucket_count_magnitude = (32 - (largest - 1).leading_zeros()) as u8;
        if u32::from(unit_magnitude) + u32::from(sub_bucket_count_magnitude) > 63 {
            return Err(HistogramError::LowestTooHighForDigits { lowest, digits });
        }
        let sub_bucket_half_count_magnitude = sub_bucket_count_magnitude - 1;
        let sub_bucket_count = 1_u32 << sub_bucket_count_magnitude;
        let sub_bucket_half_count = sub_bucket_count / 2;
        let sub_bucket_mask = (u64::from(sub_bucket_count) - 1) << unit_magnitude;

        // How many power-of-two buckets cover `highest`.
        let mut smallest_untrackable = u64::from(sub_bucket_count) << unit_magnitude;
        let mut buckets: u32 = 1;
        while smallest_untrackable <= highest {
            if smallest_untrackable > u64::MAX / 2 {
                buckets += 1;
                break;
            }
            smallest_untrackable <<= 1;
            buckets += 1;
        }
        let counts_len = (buckets + 1) * sub_bucket_half_count;
        Ok(Layout {
            lowest,
            highest,
            digits,
            unit_magnitude,
            sub_bucket_half_count_magnitude,
            sub_bucket_half_count,
            sub_bucket_mask,
            leading_zero_count_base: 64 - unit_magnitude - sub_bucket_count_magnitude,
            counts_len,
        })
    }

    /// Number of counts (flat indexes) in the layout.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.counts_len as usize
    }

    #[inline(always)]
    fn bucket_of(&self, value: u64) -> u8 {
        self.leading_zero_count_base - (value | self.sub_bucket_mask).leading_zeros() as u8
    }

    /// The flat index of `value`, which must be `<= highest` (callers clamp first).
    #[inline(always)]
    pub(crate) fn index_of(&self, value: u64) -> usize {
        let bucket = self.bucket_of(value);
        let sub_bucket = (value >> (bucket + self.unit_magnitude)) as u32;
        let base = (u32::from(bucket) + 1) << self.sub_bucket_half_count_magnitude;
        // For bucket 0, sub_bucket may be below half count; base is then >= half count, so the
        // sum never goes negative. Computed in u32 with wrapping to keep the hot path branch-free.
        base.wrapping_add(sub_bucket)
            .wrapping_sub(self.sub_bucket_half_count) as usize
    }

    /// The lowest value that lands at `index`.
    pub(crate) fn value_at_index(&self, index: usize) -> u64 {
        let index = index as u32;
        let mut bucket = (index >> self.sub_bucket_half_count_magnitude) as i32 - 1;
        let mut sub_bucket =
            (index & (self.sub_bucket_half_count - 1)) + self.sub_bucket_half_count;
        if bucket < 0 {
            sub_bucket -= self.sub_bucket_half_count;
            bucket = 0;
        }
        u64::from(sub_bucket) << (bucket as u32 + u32::from(self.unit_magnitude))
    }

    /// The width of the range of values that share `value`'s index.
    pub(crate) fn range_width(&self, value: u64) -> u64 {
        1_u64 << (self.unit_magnitude + self.bucket_of(value))
    }

    /// The lowest value equivalent to `value`.
    pub(crate) fn lowest_equivalent(&self, value: u64) -> u64 {
        let bucket = self.bucket_of(value);
        let sub_bucket = value >> (bucket + self.unit_magnitude);
        sub_bucket << (bucket + self.unit_magnitude)
    }

    /// The highest value equivalent to `value`. The top bucket of a layout that reaches 2^64
    /// ends at `u64::MAX`.
    pub(crate) fn highest_equivalent(&self, value: u64) -> u64 {
        match self
            .lowest_equivalent(value)
            .checked_add(self.range_width(value))
        {
            Some(next) => next - 1,
            None => u64::MAX,
        }
    }

    /// The midpoint of `value`'s range (HdrHistogram's "median equivalent").
    pub(crate) fn median_equivalent(&self, value: u64) -> u64 {
        self.lowest_equivalent(value)
            .saturating_add(self.range_width(value) >> 1)
    }

    /// The inclusive value range of `index`.
    pub(crate) fn range_of_index(&self, index: usize) -> (u64, u64) {
        let low = self.value_at_index(index);
        (low, self.highest_equivalent(low))
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hdr(l: &Layout) -> hdrhistogram::Histogram<u64> {
        hdrhistogram::Histogram::new_with_bounds(l.lowest, l.highest, l.digits).unwrap()
    }

    #[test]
    fn lengths_match_hdrhistogram() {
        for digits in 1..=5 {
            for &(lo, hi) in &[
                (1, 2),
                (1, 3_600_000_000_000),
                (1000, 60_000_000_000),
                (1, u64::MAX),
                (7, 1 << 40),
            ] {
                let l = Layout::new(lo, hi, digits).unwrap();
                assert_eq!(l.len(), hdr(&l).distinct_values(), "{lo} {hi} {digits}");
            }
        }
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert_eq!(
            Layout::new(1, 100, 0),
            Err(HistogramError::SignificantDigits { digits: 0 })
        );
        assert_eq!(
            Layout::new(1, 100, 6),
            Err(HistogramError::SignificantDigits { digits: 6 })
        );
        assert_eq!(Layout::new(0, 100, 3), Err(HistogramError::LowestIsZero));
        assert_eq!(
            Layout::new(10, 19, 3),
            Err(HistogramError::HighestTooLow {
                lowest: 10,
                highest: 19
            })
        );
        assert!(matches!(
            Layout::new(1 << 60, u64::MAX, 5),
            Err(HistogramError::LowestTooHighForDigits { .. })
        ));
        assert!(Layout::new(u64::MAX, u64::MAX, 3).is_err());
    }

    proptest! {
        #[test]
        fn index_round_trips(digits in 1u8..=5, lo_exp in 0u32..20, span in 1u32..40, v in any::<u64>()) {
            let lowest = 1u64 << lo_exp;
            let highest = lowest.saturating_mul(1u64 << span.min(63 - lo_exp)).max(2 * lowest);
            let l = match Layout::new(lowest, highest, digits) { Ok(l) => l, Err(_) => return Ok(()) };
            let v = v % (highest + 1);
            let i = l.index_of(v);
            prop_assert!(i < l.len());
            let (low, high) = l.range_of_index(i);
            prop_assert!(low <= v && v <= high, "{} not in [{}, {}]", v, low, high);
            prop_assert_eq!(l.index_of(low), i);
            prop_assert_eq!(l.index_of(high.min(highest)), if high <= highest { i } else { l.index_of(highest) });
            let h = hdr(&l);
            prop_assert_eq!(low, h.lowest_equivalent(v));
            prop_assert_eq!(high, h.highest_equivalent(v));
            prop_assert_eq!(l.median_equivalent(v), h.median_equivalent(v));
        }
    }
}
