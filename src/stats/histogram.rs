//! Fixed-bucket duration histograms, 10 µs to 10 s (DESIGN §5).
//!
//! [`HistogramShard`] is written by exactly one thread (a worker's poll slot, or the watchdog)
//! with plain loads and stores, so recording costs no locked instruction and no cache line
//! bounces between workers. Readers sum shards into a [`HistogramSnapshot`] at collection time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the finite buckets, in nanoseconds (Prometheus `le`, inclusive).
pub(crate) const BUCKET_BOUNDS_NS: [u64; 19] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Finite buckets plus the `+Inf` bucket.
pub(crate) const NUM_BUCKETS: usize = BUCKET_BOUNDS_NS.len() + 1;

/// The bucket a duration of `ns` nanoseconds falls in. Most polls are shorter than the first
/// bound, so the common case is one comparison.
#[inline]
pub(crate) fn bucket_index(ns: u64) -> usize {
    let mut i = 0;
    while i < BUCKET_BOUNDS_NS.len() && ns > BUCKET_BOUNDS_NS[i] {
        i += 1;
    }
    i
}

/// One writer's share of a histogram: non-cumulative bucket counts and the sum.
pub(crate) struct HistogramShard {
    buckets: [AtomicU64; NUM_BUCKETS],
    sum_ns: AtomicU64,
}

impl HistogramShard {
    pub(crate) const fn new() -> Self {
        HistogramShard {
            buckets: [const { AtomicU64::new(0) }; NUM_BUCKETS],
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one sampled observation that stands for `weight` polls. Single writer only.
    #[inline]
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) fn record_weighted_single_writer(&self, ns: u64, weight: u64) {
        let b = &self.buckets[bucket_index(ns)];
        b.store(b.load(Relaxed) + weight, Relaxed);
        self.sum_ns.store(
            self.sum_ns
                .load(Relaxed)
                .wrapping_add(ns.wrapping_mul(weight)),
            Relaxed,
        );
    }

    /// Records one observation from any thread (for rarely written histograms).
    pub(crate) fn record_shared(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_index(ns)].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    pub(crate) fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
        self.sum_ns.store(0, Relaxed);
    }

    /// Adds this shard's counts into `snap`.
    pub(crate) fn add_to(&self, snap: &mut HistogramSnapshot) {
        for (total, b) in snap.buckets.iter_mut().zip(&self.buckets) {
            *total += b.load(Relaxed);
        }
        snap.sum_ns = snap.sum_ns.wrapping_add(self.sum_ns.load(Relaxed));
    }

    /// A snapshot of this shard alone.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut s = HistogramSnapshot::default();
        self.add_to(&mut s);
        s
    }
}

/// A histogram read at collection time: per-bucket (non-cumulative) counts and the sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Count per bucket; the last bucket is `+Inf`.
    pub buckets: [u64; NUM_BUCKETS],
    /// Sum of all observations, in nanoseconds.
    pub sum_ns: u64,
}

impl HistogramSnapshot {
    /// Total number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Sum of all observations in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }

    /// `(upper bound in seconds, cumulative count)` for each finite bucket, as Prometheus
    /// and OpenTelemetry want them. The `+Inf` bucket's cumulative count is [`Self::count`].
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let mut running = 0;
        BUCKET_BOUNDS_NS
            .iter()
            .zip(self.buckets.iter())
            .map(move |(bound, n)| {
                running += n;
                (*bound as f64 / 1e9, running)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_overflow_goes_to_inf() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(10_000), 0);
        assert_eq!(bucket_index(10_001), 1);
        assert_eq!(bucket_index(10_000_000_000), NUM_BUCKETS - 2);
        assert_eq!(bucket_index(u64::MAX), NUM_BUCKETS - 1);
    }

    #[test]
    fn snapshot_sums_shards_and_cumulates() {
        let a = HistogramShard::new();
        let b = HistogramShard::new();
        a.record_weighted_single_writer(5_000, 1);
        a.record_weighted_single_writer(200_000_000, 1);
        b.record_shared(Duration::from_secs(60));
        let mut s = HistogramSnapshot::default();
        a.add_to(&mut s);
        b.add_to(&mut s);
        assert_eq!(s.count(), 3);
        let cum: Vec<_> = s.cumulative().collect();
        assert_eq!(cum[0], (1e-5, 1));
        assert_eq!(cum.last().unwrap().1, 2);
        assert!((s.sum_seconds() - 60.200005).abs() < 1e-9);
    }
}
