//! The last minute at a glance: stalls per minute and the scheduling-lag p99 over the last
//! minute, for the page. The counters and the probe histogram are cumulative, so a rate over
//! a window is the difference to a snapshot taken a minute ago: the HTTP thread takes one
//! every [`SNAPSHOT_EVERY`] and keeps the last [`KEPT`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::histogram::{HistogramShard, HistogramSnapshot, BUCKET_BOUNDS_NS};
use super::stall_log::StallLog;

/// How often a snapshot is taken.
pub(crate) const SNAPSHOT_EVERY: Duration = Duration::from_secs(5);
/// The window the page shows.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Snapshots kept: one window and one more.
const KEPT: usize = (WINDOW.as_secs() / SNAPSHOT_EVERY.as_secs()) as usize + 2;

struct Snapshot {
    at: Instant,
    stalls_total: u64,
    lag: HistogramSnapshot,
}

/// Snapshots of one agent's cumulative counters.
pub(crate) struct Recent {
    ring: Mutex<VecDeque<Snapshot>>,
}

/// What changed over the last minute (or since the first snapshot, if younger).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RecentView {
    /// How long the window really is.
    pub(crate) over: Duration,
    pub(crate) stalls: u64,
    /// Probe wake-ups answered in the window.
    pub(crate) lag_count: u64,
    /// p99 of the probe's scheduling delay in the window; `None` without wake-ups.
    pub(crate) lag_p99: Option<Duration>,
}

impl Recent {
    pub(crate) fn new() -> Self {
        Recent {
            ring: Mutex::new(VecDeque::with_capacity(KEPT)),
        }
    }

    fn take(stalls: &StallLog, probe_delay: &HistogramShard, at: Instant) -> Snapshot {
        Snapshot {
            at,
            stalls_total: stalls.total(),
            lag: probe_delay.snapshot(),
        }
    }

    /// Takes a snapshot now (called every [`SNAPSHOT_EVERY`]).
    /// `stalls` and `probe_delay` are the agent's cumulative stall log and probe histogram.
    pub(crate) fn record(&self, stalls: &StallLog, probe_delay: &HistogramShard) {
        let snap = Recent::take(stalls, probe_delay, Instant::now());
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() >= KEPT {
            ring.pop_front();
        }
        ring.push_back(snap);
    }

    /// The change from the newest snapshot at least [`WINDOW`] old (else the oldest) to now.
    pub(crate) fn view(&self, stalls: &StallLog, probe_delay: &HistogramShard) -> RecentView {
        let now = Recent::take(stalls, probe_delay, Instant::now());
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let base = ring
            .iter()
            .rev()
            .find(|s| now.at.duration_since(s.at) >= WINDOW)
            .or(ring.front());
        let (over, stalls, lag) = match base {
            Some(b) => (
                now.at.duration_since(b.at),
                now.stalls_total.saturating_sub(b.stalls_total),
                difference(&now.lag, &b.lag),
            ),
            None => (Duration::ZERO, 0, HistogramSnapshot::default()),
        };
        RecentView {
            over,
            stalls,
            lag_count: lag.count(),
            lag_p99: quantile(&lag, 0.99),
        }
    }
}

fn difference(now: &HistogramSnapshot, then: &HistogramSnapshot) -> HistogramSnapshot {
    let mut d = HistogramSnapshot::default();
    for (i, b) in d.buckets.iter_mut().enumerate() {
        *b = now.buckets[i].saturating_sub(then.buckets[i]);
    }
    d.sum_ns = now.sum_ns.saturating_sub(then.sum_ns);
    d
}

/// The `q` quantile, interpolated linearly inside its bucket as Prometheus'
/// `histogram_quantile` does; a quantile in the `+Inf` bucket is the largest finite bound.
pub(crate) fn quantile(h: &HistogramSnapshot, q: f64) -> Option<Duration> {
    let count = h.count();
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let mut below = 0u64;
    for (i, &n) in h.buckets.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&upper) = BUCKET_BOUNDS_NS.get(i) else {
                return Some(Duration::from_nanos(*BUCKET_BOUNDS_NS.last()?));
            };
            let lower = if i == 0 { 0 } else { BUCKET_BOUNDS_NS[i - 1] };
            let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return Some(Duration::from_nanos(
                lower + ((upper - lower) as f64 * within) as u64,
            ));
        }
        below += n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let mut h = HistogramSnapshot::default();
        assert_eq!(quantile(&h, 0.99), None);
        h.buckets[0] = 99; // <= 10 µs
        h.buckets[3] = 1; // 50..100 µs
        let p99 = quantile(&h, 0.99).unwrap();
        assert_eq!(p99, Duration::from_micros(10));
        let p100 = quantile(&h, 1.0).unwrap();
        assert_eq!(p100, Duration::from_micros(100));
        let mut inf = HistogramSnapshot::default();
        inf.buckets[BUCKET_BOUNDS_NS.len()] = 5;
        assert_eq!(quantile(&inf, 0.5), Some(Duration::from_secs(10)));
    }
}
