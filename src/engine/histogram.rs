//! A fixed-bucket latency histogram on atomics: the engine thread records,
//! the metrics exporter reads. Resolution is the engine clock's millisecond.

use std::sync::atomic::{AtomicU64, Ordering};

use super::counters::bump;

/// Upper bounds of the buckets, in milliseconds (the last bucket is +Inf).
pub const BUCKET_BOUNDS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10_000];

#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Non-cumulative counts per bucket; index BUCKET_BOUNDS_MS.len() is +Inf.
    buckets: [AtomicU64; BUCKET_BOUNDS_MS.len() + 1],
    sum_ms: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    /// Single writer (the engine thread).
    pub fn record(&self, ms: u64) {
        let i = BUCKET_BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(BUCKET_BOUNDS_MS.len());
        bump(&self.buckets[i]);
        self.sum_ms
            .store(self.sum_ms.load(Ordering::Relaxed) + ms, Ordering::Relaxed);
        bump(&self.count);
    }

    /// (cumulative count per bound, sum in ms, count), Prometheus-style.
    pub fn snapshot(&self) -> (Vec<(u64, u64)>, u64, u64) {
        let mut cumulative = 0;
        let buckets = BUCKET_BOUNDS_MS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, c)| {
                cumulative += c.load(Ordering::Relaxed);
                (bound, cumulative)
            })
            .collect();
        (
            buckets,
            self.sum_ms.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_with_inf_in_count() {
        let h = LatencyHistogram::default();
        for ms in [0, 1, 3, 3, 40, 20_000] {
            h.record(ms);
        }
        let (buckets, sum, count) = h.snapshot();
        assert_eq!(buckets[0], (1, 2));
        assert_eq!(buckets[2], (5, 4));
        assert_eq!(buckets[5], (50, 5));
        assert_eq!(buckets.last(), Some(&(10_000, 5)), "20 s only in +Inf");
        assert_eq!((sum, count), (20_047, 6));
    }
}
