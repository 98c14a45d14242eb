//! Stall episodes: opened once when a detector sees a stall, kept up to date while it
//! lasts, closed with the total duration. Opening captures the stuck thread's stack right
//! away (that is the whole point: the culprit is still on it); long stalls get extra
//! samples at 2×, 4× and 8× the threshold for the report, and every stall is sampled for the
//! flamegraph while it lasts (see [`super::sampling`]).

use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::reporter::Reporter;
use super::sampling::{Sampler, StallSampling, EXTEND_EVERY};
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
    /// The flamegraph's root frame for this stall: its spawn location, when known.
    root: Option<Arc<str>>,
    flame: StallSampling,
}

/// Opens, updates and closes episodes for every detector of one agent.
pub(crate) struct Episodes {
    shared: Arc<Shared>,
    capturer: Option<StackCapturer>,
    reporter: Reporter,
    sampler: Sampler,
}

impl Episodes {
    pub(crate) fn new(
        shared: Arc<Shared>,
        capturer: Option<StackCapturer>,
        reporter: Reporter,
    ) -> Self {
        Episodes {
            sampler: Sampler::new(shared.config.stall_sample_interval),
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
        let root = flame_root(&s);
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
        let mut flame = StallSampling::default();
        flame.captured(s.stuck_for, paused_for(&raw));
        let weight = flame.take_weight(s.stuck_for);
        self.reporter
            .flame_sample(id, root.clone(), weight, status, raw.clone());
        self.reporter.announce(id, raw);
        Episode {
            id,
            thread: s.thread,
            samples_taken: 0,
            root,
            flame,
        }
    }

    /// Called every tick while the episode lasts.
    pub(crate) fn still_stuck(&mut self, ep: &mut Episode, stuck_for: Duration) {
        self.shared
            .stalls
            .update(ep.id, |r| r.duration_ms = millis(stuck_for));
        let report_sample = SAMPLE_AT
            .get(ep.samples_taken)
            .is_some_and(|&m| stuck_for >= self.shared.config.stall_threshold * m);
        let reserved = (SAMPLE_AT.len() - ep.samples_taken.min(SAMPLE_AT.len())) as u32;
        let flame_sample = !report_sample
            && self.reporter.flame_has_room()
            && self.sampler.due(&ep.flame, stuck_for, reserved);
        if report_sample || flame_sample {
            let (status, raw) = self.capture(ep.thread.as_ref());
            ep.flame.captured(stuck_for, paused_for(&raw));
            if raw.is_some() {
                let weight = ep.flame.take_weight(stuck_for);
                self.reporter
                    .flame_sample(ep.id, ep.root.clone(), weight, status, raw.clone());
            }
            if report_sample {
                ep.samples_taken += 1;
                self.reporter.sample(ep.id, millis(stuck_for), status, raw);
            }
        } else if stuck_for >= ep.flame.attributed + EXTEND_EVERY {
            let weight = ep.flame.take_weight(stuck_for);
            self.reporter.flame_more(ep.id, weight, false);
        }
    }

    pub(crate) fn close(&mut self, mut ep: Episode, total: Duration) {
        self.shared.stalls.update(ep.id, |r| {
            r.ongoing = false;
            r.duration_ms = millis(total);
        });
        self.shared.stalls.observe_duration(total);
        self.shared.stalls.ongoing.fetch_sub(1, Relaxed);
        let weight = ep.flame.take_weight(total);
        self.reporter.flame_more(ep.id, weight, true);
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

/// The flamegraph's root frame: the spawn location in hooked mode; the probe's stalls,
/// which have no thread, get a frame that says so.
fn flame_root(s: &Suspect) -> Option<Arc<str>> {
    match (s.spawned_at, s.detection) {
        (Some(at), _) => Some(format!("spawned at {at}").into()),
        (None, Detection::Probe) => Some("[runtime blocked: no worker polled the probe]".into()),
        (None, _) => None,
    }
}

fn paused_for(raw: &Option<crate::capture::RawStack>) -> Duration {
    raw.as_ref().map(|r| r.paused).unwrap_or_default()
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}
