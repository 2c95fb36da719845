//! Durations (poll times, waits for a worker) as a log-linear histogram: exact
//! below 32 ns, then 32 buckets per power of two, so memory is bounded (at most
//! 64 × 32 buckets) however many values there are, and a percentile is within
//! 1/32 (about 3 %) of the true value: it is reported as the top of its bucket,
//! never above the largest value seen.

use std::collections::BTreeMap;

/// Buckets per power of two (and the values counted exactly below it).
const SUB_BUCKETS: u64 = 32;
/// `log2(SUB_BUCKETS)`.
const SUB_BITS: u32 = 5;

/// Counts of durations by bucket, with their number and maximum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: BTreeMap<u32, u64>,
    total: u64,
    max: u64,
}

/// The bucket of `value`.
fn bucket(value: u64) -> u32 {
    if value < SUB_BUCKETS {
        return value as u32;
    }
    let exponent = 63 - value.leading_zeros();
    let mantissa = (value >> (exponent - SUB_BITS)) & (SUB_BUCKETS - 1);
    ((exponent - SUB_BITS + 1) << SUB_BITS) | mantissa as u32
}

/// The smallest value of bucket `index`.
fn lower(index: u32) -> u64 {
    if u64::from(index) < SUB_BUCKETS {
        return u64::from(index);
    }
    let exponent = (index >> SUB_BITS) + SUB_BITS - 1;
    let mantissa = u64::from(index) & (SUB_BUCKETS - 1);
    (SUB_BUCKETS | mantissa) << (exponent - SUB_BITS)
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&mut self, value: u64) {
        *self.counts.entry(bucket(value)).or_default() += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (index, count) in &other.counts {
            *self.counts.entry(*index).or_default() += count;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The largest duration counted, `None` when none was.
    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// The `q` quantile (0 < q ≤ 1): the top of the bucket holding it, at most
    /// the largest value; `None` when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in &self.counts {
            seen += count;
            if seen >= rank {
                let top = lower(index + 1).saturating_sub(1);
                return Some(top.min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_hold_their_values() {
        for value in (0..5_000u64).chain([1 << 20, (1 << 40) + 12_345, u64::MAX / 3]) {
            let index = bucket(value);
            assert!(lower(index) <= value, "{value}");
            assert!(lower(index + 1) > value, "{value}");
        }
    }

    #[test]
    fn quantiles_are_within_three_percent_and_never_above_the_max() {
        let mut histogram = Histogram::default();
        assert_eq!((histogram.quantile(0.5), histogram.max()), (None, None));
        for value in 1..=10_000u64 {
            histogram.record(value * 1_000);
        }
        assert_eq!(histogram.total, 10_000);
        let p50 = histogram.quantile(0.5).unwrap() as f64;
        assert!((p50 - 5_000_000.0).abs() / 5_000_000.0 < 0.032, "{p50}");
        let p99 = histogram.quantile(0.99).unwrap() as f64;
        assert!((p99 - 9_900_000.0).abs() / 9_900_000.0 < 0.032, "{p99}");
        assert_eq!(histogram.quantile(1.0), Some(10_000_000));
        let mut one = Histogram::default();
        one.record(7);
        assert_eq!(
            (one.quantile(0.5), one.quantile(0.99), one.max()),
            (Some(7), Some(7), Some(7))
        );
    }

    #[test]
    fn merged_histograms_count_both() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.record(10);
        b.record(1_000);
        b.record(2_000);
        a.merge(&b);
        assert_eq!((a.total, a.max()), (3, Some(2_000)));
        let q = a.quantile(0.34).unwrap();
        assert!((1_000..1_032).contains(&q), "{q}");
    }
}
