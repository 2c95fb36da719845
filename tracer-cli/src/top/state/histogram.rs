//! Durations counted in power-of-two buckets: a fixed 41 counters a task, whatever
//! it runs, so `tracer top` can keep a poll-time histogram for every task it
//! shows without its memory growing with the polls.

/// Buckets: bucket `k` holds durations in `[2^(k-1), 2^k)` ns (bucket 0 holds 0),
/// the last one everything from about 9 minutes up.
const BUCKETS: usize = 41;

/// A histogram of durations in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    counts: [u32; BUCKETS],
    total: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
            total: 0,
            max_ns: 0,
        }
    }
}

/// One bucket, for drawing: its upper bound and how many durations fell in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Durations in the bucket are below this (ns).
    pub below_ns: u64,
    /// How many.
    pub count: u32,
}

fn bucket_of(ns: u64) -> usize {
    ((u64::BITS - ns.leading_zeros()) as usize).min(BUCKETS - 1)
}

fn upper_bound(bucket: usize) -> u64 {
    1u64 << bucket.min(63)
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&mut self, ns: u64) {
        let count = &mut self.counts[bucket_of(ns)];
        *count = count.saturating_add(1);
        self.total += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// How many durations were counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The duration below which `percent` % of the counted ones fall, as the
    /// upper bound of its bucket (never above the longest seen); `None` when
    /// nothing was counted.
    pub fn percentile(&self, percent: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let wanted = ((self.total as f64 * percent / 100.0).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= wanted {
                return Some(upper_bound(bucket).min(self.max_ns));
            }
        }
        Some(self.max_ns)
    }

    /// The buckets from the first to the last non-empty one.
    pub fn buckets(&self) -> Vec<Bucket> {
        let first = self.counts.iter().position(|count| *count > 0);
        let last = self.counts.iter().rposition(|count| *count > 0);
        let (Some(first), Some(last)) = (first, last) else {
            return Vec::new();
        };
        (first..=last)
            .map(|bucket| Bucket {
                below_ns: upper_bound(bucket),
                count: self.counts[bucket],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_bounds_capped_by_the_longest() {
        let mut histogram = Histogram::default();
        assert_eq!(histogram.percentile(99.0), None);
        for ns in [100, 120, 130, 1_000_000] {
            histogram.record(ns);
        }
        assert_eq!(histogram.total(), 4);
        assert_eq!(histogram.percentile(50.0), Some(128));
        assert_eq!(histogram.percentile(99.0), Some(1_000_000));
    }

    #[test]
    fn buckets_span_the_non_empty_range_only() {
        let mut histogram = Histogram::default();
        histogram.record(3);
        histogram.record(20);
        let buckets = histogram.buckets();
        assert_eq!(buckets.first().map(|b| (b.below_ns, b.count)), Some((4, 1)));
        assert_eq!(buckets.last().map(|b| (b.below_ns, b.count)), Some((32, 1)));
        assert_eq!(buckets.len(), 4);
        histogram.record(u64::MAX);
        assert_eq!(histogram.buckets().last().map(|b| b.count), Some(1));
    }
}
