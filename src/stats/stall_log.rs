//! The record of stall episodes: a bounded ring of recent reports, exact totals, per-kind
//! and per-spawn-location counts, and the stall-duration histogram.
//!
//! Only the watchdog writes here and only readers (exporters, `Agent::stalls`) read, so a
//! mutex is fine: the hooks never touch it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::histogram::{HistogramShard, HistogramSnapshot};
use crate::report::{StallKind, StallReport};

/// Label values of `tokio_stalls_total`: kind, code file, code line.
pub(crate) type StallKey = (StallKind, String, String);

pub(crate) struct StallLog {
    inner: Mutex<Inner>,
    durations: HistogramShard,
    /// Episodes currently open (`tokio_worker_stalled`).
    pub(crate) ongoing: AtomicUsize,
    max_keys: usize,
}

struct Inner {
    ring: VecDeque<StallReport>,
    capacity: usize,
    total: u64,
    dropped: u64,
    counts: HashMap<StallKey, u64>,
}

/// What `/stalls` and `Agent::stalls` show.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StallsView {
    /// Every stall since start, exact.
    pub stalls_total: u64,
    /// Reports that fell out of the ring.
    pub dropped: u64,
    /// The most recent reports, newest last.
    pub stalls: Vec<StallReport>,
}

impl StallLog {
    pub(crate) fn new(capacity: usize, max_keys: usize) -> Self {
        StallLog {
            inner: Mutex::new(Inner {
                ring: VecDeque::with_capacity(capacity),
                capacity,
                total: 0,
                dropped: 0,
                counts: HashMap::new(),
            }),
            durations: HistogramShard::new(),
            ongoing: AtomicUsize::new(0),
            max_keys,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock must not take pollwatch down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a newly opened episode: counted now, exactly once.
    pub(crate) fn open(&self, report: StallReport) {
        let mut inner = self.lock();
        inner.total += 1;
        let (file, line) = report
            .spawn_file_line()
            .map(|(f, l)| (f.to_string(), l.to_string()))
            .unwrap_or_default();
        let mut key = (report.kind, file, line);
        if !inner.counts.contains_key(&key) && inner.counts.len() >= self.max_keys {
            key = (report.kind, "other".to_string(), String::new());
        }
        *inner.counts.entry(key).or_insert(0) += 1;
        if inner.ring.len() == inner.capacity {
            inner.ring.pop_front();
            inner.dropped += 1;
        }
        if inner.capacity > 0 {
            inner.ring.push_back(report);
        } else {
            inner.dropped += 1;
        }
    }

    /// Changes the report with `id`, if it is still in the ring.
    pub(crate) fn update(&self, id: u64, change: impl FnOnce(&mut StallReport)) {
        let mut inner = self.lock();
        if let Some(r) = inner.ring.iter_mut().rev().find(|r| r.id == id) {
            change(r);
        }
    }

    /// A copy of the report with `id`, if it is still in the ring.
    pub(crate) fn get(&self, id: u64) -> Option<StallReport> {
        self.lock().ring.iter().rev().find(|r| r.id == id).cloned()
    }

    /// Records the final duration of an episode that ended.
    pub(crate) fn observe_duration(&self, d: Duration) {
        self.durations.record_shared(d);
    }

    pub(crate) fn view(&self) -> StallsView {
        let inner = self.lock();
        StallsView {
            stalls_total: inner.total,
            dropped: inner.dropped,
            stalls: inner.ring.iter().cloned().collect(),
        }
    }

    pub(crate) fn counts(&self) -> Vec<(StallKey, u64)> {
        let inner = self.lock();
        let mut v: Vec<_> = inner.counts.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort();
        v
    }

    /// Every stall since start (`stalls_total`), without copying the ring.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn total(&self) -> u64 {
        self.lock().total
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    pub(crate) fn durations(&self) -> HistogramSnapshot {
        self.durations.snapshot()
    }

    pub(crate) fn ongoing(&self) -> usize {
        self.ongoing.load(Relaxed)
    }
}
