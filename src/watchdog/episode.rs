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
        let started = started_at(SystemTime::now(), s.stuck_for);
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
        let report_sample = sample_due(
            ep.samples_taken,
            stuck_for,
            self.shared.config.stall_threshold,
        );
        let reserved = (SAMPLE_AT.len() - ep.samples_taken.min(SAMPLE_AT.len())) as u32;
        // Only where a capture can succeed: no attempts (counted as `disabled` or `failed`)
        // without a capturer or a thread.
        let flame_sample = !report_sample
            && self.capturer.is_some()
            && ep.thread.is_some()
            && self.reporter.flame_has_room()
            && self.sampler.due(&ep.flame, stuck_for, reserved);
        if report_sample || flame_sample {
            let (status, raw) = self.capture(ep.thread.as_ref());
            ep.flame.captured(stuck_for, paused_for(&raw));
            if raw.is_none() {
                // A thread that did not answer (masked signal, timeout) costs the watchdog
                // the capture timeout each time: no more extra samples of this stall.
                ep.flame.give_up();
            } else {
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
            (Some(c), Some(t)) => c.capture(t),
            (c, _) => Err(no_capture(c.is_some(), self.shared.config.stacks)),
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

/// A long stall's next extra sample is due once it has lasted the next multiple of the
/// threshold in [`SAMPLE_AT`]; after the last one, none.
fn sample_due(samples_taken: usize, stuck_for: Duration, threshold: Duration) -> bool {
    SAMPLE_AT
        .get(samples_taken)
        .is_some_and(|&multiple| stuck_for >= threshold * multiple)
}

/// Why no stack is taken when the capturer or the thread is missing: no capturer because
/// stacks are off (`disabled`) or this platform has none (`unsupported`); a capturer but no
/// thread to send the signal to (`failed`).
fn no_capture(has_capturer: bool, stacks_on: bool) -> CaptureStatus {
    match (has_capturer, stacks_on) {
        (false, true) => CaptureStatus::Unsupported,
        (false, false) => CaptureStatus::Disabled,
        (true, _) => CaptureStatus::Failed,
    }
}

/// When a stall that has lasted `stuck_for` by `now` began (the epoch, if that would be
/// before it: a clock set far back must not panic).
fn started_at(now: SystemTime, stuck_for: Duration) -> SystemTime {
    now.checked_sub(stuck_for)
        .filter(|t| *t >= SystemTime::UNIX_EPOCH)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Milliseconds, rounded to a tenth: what `/stalls` shows.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Instant;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn extra_samples_fall_due_at_2_4_and_8_times_the_threshold_then_never() {
        let t = 100 * MS;
        assert!(!sample_due(0, 199 * MS, t));
        assert!(sample_due(0, 200 * MS, t));
        assert!(!sample_due(1, 399 * MS, t), "the second waits for 4×");
        assert!(sample_due(1, 400 * MS, t));
        assert!(sample_due(2, 800 * MS, t));
        assert!(!sample_due(3, 100_000 * MS, t), "three at most");
    }

    #[test]
    fn a_missing_stack_says_why() {
        assert_eq!(no_capture(false, true), CaptureStatus::Unsupported);
        assert_eq!(no_capture(false, false), CaptureStatus::Disabled);
        assert_eq!(no_capture(true, true), CaptureStatus::Failed);
    }

    #[test]
    fn the_start_is_now_minus_the_stuck_time_and_never_before_the_epoch() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            started_at(now, 250 * MS),
            now.checked_sub(250 * MS).unwrap()
        );
        assert_eq!(
            started_at(now, Duration::from_secs(5_000)),
            SystemTime::UNIX_EPOCH
        );
    }

    #[test]
    fn durations_are_milliseconds_to_a_tenth() {
        assert_eq!(millis(Duration::from_micros(812_449)), 812.4);
        assert_eq!(millis(Duration::from_micros(812_450)), 812.5);
        assert_eq!(millis(Duration::ZERO), 0.0);
    }

    /// One episode through the real stall log and symbolizer thread, from a synthetic
    /// suspect (no thread, stacks off): counted once when opened, kept up to date, sampled
    /// at 2× and 4× the threshold, closed with its total.
    #[test]
    fn an_episode_is_counted_once_updated_sampled_and_closed() {
        let config = Config {
            stacks: false,
            stall_threshold: 100 * MS,
            ..Config::default()
        };
        let shared = Arc::new(Shared::new_hooked(config));
        let (reporter, symbolizer) = Reporter::spawn(shared.clone(), false).unwrap();
        let mut episodes = Episodes::new(shared.clone(), None, reporter);
        let mut ep = episodes.open(Suspect {
            detection: Detection::PollHook,
            thread: None,
            thread_name: "worker-0".to_string(),
            worker: Some(0),
            task_id: Some(42),
            spawned_at: Some(Location::caller()),
            stuck_for: 120 * MS,
            kind: StallKind::Cpu,
        });
        let view = shared.stalls.view();
        assert_eq!(view.stalls_total, 1);
        let r = &view.stalls[0];
        assert!(r.ongoing, "{r:#?}");
        assert_eq!(
            (r.duration_ms, r.task_id, r.worker),
            (120.0, Some(42), Some(0))
        );
        assert_eq!(r.capture, CaptureStatus::Disabled);
        assert!(
            r.spawned_at.as_deref().unwrap().contains("episode.rs"),
            "{r:#?}"
        );
        assert_eq!(shared.stalls.ongoing(), 1);

        for ms in [150, 210, 300, 420] {
            episodes.still_stuck(&mut ep, ms * MS);
        }
        assert_eq!(shared.stalls.get(r.id).unwrap().duration_ms, 420.0);
        let deadline = Instant::now() + Duration::from_secs(5);
        let samples = loop {
            let samples = shared.stalls.get(r.id).unwrap().samples;
            if samples.len() >= 2 || Instant::now() > deadline {
                break samples;
            }
            std::thread::sleep(MS);
        };
        let at: Vec<f64> = samples.iter().map(|s| s.at_ms).collect();
        assert_eq!(at, [210.0, 420.0], "first tick past 2×, first past 4×");
        assert!(samples.iter().all(|s| s.capture == CaptureStatus::Disabled));

        episodes.close(ep, 450 * MS);
        let done = shared.stalls.get(r.id).unwrap();
        assert!(!done.ongoing && done.duration_ms == 450.0, "{done:#?}");
        assert_eq!(shared.stalls.ongoing(), 0);
        assert_eq!(shared.stalls.view().stalls_total, 1, "counted once");
        let durations = shared.stalls.durations();
        assert_eq!(durations.count(), 1);
        assert!((durations.sum_seconds() - 0.45).abs() < 1e-6);
        let disabled = shared.counters.captures()[CaptureStatus::Disabled as usize].1;
        assert_eq!(
            disabled, 3,
            "one capture attempt at the start, one per sample"
        );

        drop(episodes); // closes the symbolizer's queue: its thread ends
        symbolizer.join().unwrap();
    }
}
