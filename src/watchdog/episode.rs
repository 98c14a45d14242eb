//! Stall episodes: opened once when a detector sees a stall, kept up to date while it
//! lasts, closed with the total duration. Opening captures the stuck thread's stack right
//! away (that is the whole point: the culprit is still on it); long stalls get extra
//! samples at 2×, 4× and 8× the threshold.

use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::reporter::Reporter;
use crate::capture::{CaptureStatus, StackCapturer, ThreadHandle};
use crate::report::{rfc3339_millis, Detection, StallKind, StallReport};
use crate::state::Shared;

/// Stall ids increase by one per episode in the whole process.
static NEXT_STALL_ID: AtomicU64 = AtomicU64::new(1);

/// Extra samples of a long stall, as multiples of the threshold.
const SAMPLE_AT: [u32; 3] = [2, 4, 8];

/// What a detector knows when it decides a stall has begun.
pub(crate) struct Suspect {
    pub(crate) detection: Detection,
    pub(crate) thread: Option<ThreadHandle>,
    pub(crate) thread_name: String,
    pub(crate) worker: Option<usize>,
    pub(crate) task_id: Option<u64>,
    pub(crate) spawned_at: Option<&'static Location<'static>>,
    /// How long the thread has made no progress so far.
    pub(crate) stuck_for: Duration,
    pub(crate) kind: StallKind,
}

/// An open episode, owned by the detector that opened it.
pub(crate) struct Episode {
    id: u64,
    thread: Option<ThreadHandle>,
    samples_taken: usize,
}

/// Opens, updates and closes episodes for every detector of one agent.
pub(crate) struct Episodes {
    shared: Arc<Shared>,
    capturer: Option<StackCapturer>,
    reporter: Reporter,
}

impl Episodes {
    pub(crate) fn new(
        shared: Arc<Shared>,
        capturer: Option<StackCapturer>,
        reporter: Reporter,
    ) -> Self {
        Episodes {
            shared,
            capturer,
            reporter,
        }
    }

    pub(crate) fn open(&mut self, s: Suspect) -> Episode {
        let id = NEXT_STALL_ID.fetch_add(1, Relaxed);
        let started = SystemTime::now()
            .checked_sub(s.stuck_for)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        // Capture first (tens of microseconds): the culprit is on the stack right now, and
        // the report is published with its final capture status.
        let (status, raw) = self.capture(s.thread.as_ref());
        let report = StallReport {
            id,
            runtime: self.shared.runtime_label().to_string(),
            worker: s.worker,
            thread: s.thread_name,
            tid: s.thread.map(|t| t.tid()).unwrap_or(0),
            task_id: s.task_id,
            spawned_at: s.spawned_at.map(|l| l.to_string()),
            started_at: rfc3339_millis(started),
            duration_ms: millis(s.stuck_for),
            ongoing: true,
            kind: s.kind,
            detection: s.detection,
            capture: status,
            frames: Vec::new(),
            samples: Vec::new(),
        };
        self.shared.stalls.open(report);
        self.shared.stalls.ongoing.fetch_add(1, Relaxed);
        self.reporter.announce(id, raw);
        Episode {
            id,
            thread: s.thread,
            samples_taken: 0,
        }
    }

    /// Called every tick while the episode lasts.
    pub(crate) fn still_stuck(&mut self, ep: &mut Episode, stuck_for: Duration) {
        self.shared
            .stalls
            .update(ep.id, |r| r.duration_ms = millis(stuck_for));
        let Some(&multiple) = SAMPLE_AT.get(ep.samples_taken) else {
            return;
        };
        if stuck_for < self.shared.config.stall_threshold * multiple {
            return;
        }
        ep.samples_taken += 1;
        let (status, raw) = self.capture(ep.thread.as_ref());
        self.reporter.sample(ep.id, millis(stuck_for), status, raw);
    }

    pub(crate) fn close(&mut self, ep: Episode, total: Duration) {
        self.shared.stalls.update(ep.id, |r| {
            r.ongoing = false;
            r.duration_ms = millis(total);
        });
        self.shared.stalls.observe_duration(total);
        self.shared.stalls.ongoing.fetch_sub(1, Relaxed);
    }

    fn capture(
        &mut self,
        thread: Option<&ThreadHandle>,
    ) -> (CaptureStatus, Option<crate::capture::RawStack>) {
        let result = match (&mut self.capturer, thread) {
            (None, _) => Err(if self.shared.config.stacks {
                CaptureStatus::Unsupported
            } else {
                CaptureStatus::Disabled
            }),
            (Some(_), None) => Err(CaptureStatus::Failed),
            (Some(c), Some(t)) => c.capture(t),
        };
        let status = match &result {
            Ok(_) => CaptureStatus::Ok,
            Err(s) => *s,
        };
        self.shared.counters.capture_done(status);
        (status, result.ok())
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}
