//! A latency distribution in a few dozen counters: log-linear buckets (each power
//! of two cut into 32), so a percentile is within about 3 % of the value it names,
//! and memory follows the spread of values, not their number.

use std::collections::BTreeMap;

/// Sub-buckets per power of two, as a number of bits.
const SUB_BITS: u32 = 5;

/// Counts of nanosecond values, by bucket; the largest value kept exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latencies {
    buckets: BTreeMap<u16, u64>,
    count: u64,
    max: u64,
}

/// The bucket of `value`: values below 2^SUB_BITS have one each.
fn bucket(value: u64) -> u16 {
    let bits = 64 - value.leading_zeros();
    if bits <= SUB_BITS {
        return value as u16;
    }
    let shift = bits - SUB_BITS - 1;
    let sub = (value >> shift) & ((1 << SUB_BITS) - 1);
    (((shift + 1) << SUB_BITS) as u64 + sub) as u16
}

/// The largest value of bucket `index`.
fn bucket_high(index: u16) -> u64 {
    let index = u64::from(index);
    if index < 1 << SUB_BITS {
        return index;
    }
    let shift = (index >> SUB_BITS) - 1;
    let sub = index & ((1 << SUB_BITS) - 1);
    (((1 << SUB_BITS) | sub) << shift) + (1 << shift) - 1
}

impl Latencies {
    /// Counts one value.
    pub fn record(&mut self, ns: u64) {
        *self.buckets.entry(bucket(ns)).or_default() += 1;
        self.count += 1;
        self.max = self.max.max(ns);
    }

    /// The largest value, `None` when there is none.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// The value below which a fraction `q` (0..=1) of the values lie, as the top
    /// of its bucket (never above the largest value); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (&index, &count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Some(bucket_high(index).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_a_bucket_whose_top_is_within_3_percent() {
        for value in (0..5000).chain([65_535, 1 << 20, 123_456_789, u64::MAX / 3]) {
            let top = bucket_high(bucket(value));
            assert!(top >= value, "{value}: top {top}");
            assert!(
                (top - value) as f64 <= value as f64 / 32.0,
                "{value}: top {top}"
            );
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut latencies = Latencies::default();
        assert_eq!(latencies.quantile(0.5), None);
        for ns in 1..=100u64 {
            latencies.record(ns * 1000);
        }
        let p50 = latencies.quantile(0.5).unwrap();
        let p99 = latencies.quantile(0.99).unwrap();
        assert!((50_000..=51_600).contains(&p50), "{p50}");
        assert!((99_000..=100_000).contains(&p99), "{p99}");
        assert_eq!(latencies.max(), Some(100_000));
        assert_eq!(latencies.quantile(1.0), Some(100_000));
    }
}
