//! The `pollwatch-symbolizer` thread: turns captured addresses into frames, announces each
//! stall through `tracing` (rate-limited per signature), and folds stack samples into the
//! flamegraph table.
//!
//! Symbolizing is slow the first time (it parses the binary's debug info), so it happens
//! here, never on the watchdog (which must keep ticking) and never on the app's runtime.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::capture::{fold_runtime_frames, CaptureStatus, RawStack, Symbolizer};
use crate::report::{StackSample, StallReport};
use crate::state::Shared;
use crate::stats::flame::{fold_stack, Weight};
use crate::Error;

/// Report jobs (announcements, report samples) waiting beyond this are dropped (and
/// counted): the watchdog never blocks on us.
const QUEUE: usize = 64;
/// Flamegraph samples waiting beyond this: the watchdog takes no new extra sample (the time
/// goes to the next one), so a slow symbolizer costs resolution, not blocked time.
const FLAME_QUEUE: usize = 256;
/// Flamegraph jobs waiting beyond this are dropped, their time counted as dropped.
const FLAME_HARD_CAP: usize = 1024;
/// Distinct stall signatures remembered by the log limiter.
const MAX_SIGNATURES: usize = 512;
/// Open stalls whose last folded stack is remembered (far more than can be open at once).
const MAX_OPEN_STALLS: usize = 1024;

enum Job {
    Announce {
        id: u64,
        raw: Option<RawStack>,
    },
    Sample {
        id: u64,
        at_ms: f64,
        status: CaptureStatus,
        raw: Option<RawStack>,
    },
    /// A stack sample for the flamegraph; `weight` is the blocked time since the stall's
    /// previous sample (or since it began).
    Flame {
        id: u64,
        root: Option<Arc<str>>,
        at: SystemTime,
        weight: Duration,
        status: CaptureStatus,
        raw: Option<RawStack>,
    },
    /// More blocked time for the stall's last sampled stack; `end` when the stall is over.
    FlameMore {
        id: u64,
        at: SystemTime,
        weight: Duration,
        end: bool,
    },
}

impl Job {
    fn is_flame(&self) -> bool {
        matches!(self, Job::Flame { .. } | Job::FlameMore { .. })
    }
}

/// Jobs sent and not yet taken by the symbolizer, per kind.
#[derive(Default)]
struct Pending {
    reports: AtomicUsize,
    flame: AtomicUsize,
}

/// The watchdog's end of the queue.
pub(crate) struct Reporter {
    tx: Sender<Job>,
    pending: Arc<Pending>,
    shared: Arc<Shared>,
}

impl Reporter {
    pub(crate) fn spawn(
        shared: Arc<Shared>,
        warm_up: bool,
    ) -> Result<(Reporter, JoinHandle<()>), Error> {
        let (tx, rx) = channel();
        let pending = Arc::new(Pending::default());
        let (s, p) = (shared.clone(), pending.clone());
        let thread =
            crate::os_thread::spawn_named("pollwatch-symbolizer", move || run(s, rx, &p, warm_up))?;
        Ok((
            Reporter {
                tx,
                pending,
                shared,
            },
            thread,
        ))
    }

    pub(crate) fn announce(&self, id: u64, raw: Option<RawStack>) {
        self.send_report(Job::Announce { id, raw });
    }

    pub(crate) fn sample(&self, id: u64, at_ms: f64, status: CaptureStatus, raw: Option<RawStack>) {
        self.send_report(Job::Sample {
            id,
            at_ms,
            status,
            raw,
        });
    }

    /// Whether the symbolizer keeps up well enough to take one more flamegraph sample.
    pub(crate) fn flame_has_room(&self) -> bool {
        self.pending.flame.load(Relaxed) < FLAME_QUEUE
    }

    /// A stack sample (or a failed capture, `raw: None`) standing for `weight`.
    pub(crate) fn flame_sample(
        &self,
        id: u64,
        root: Option<Arc<str>>,
        weight: Duration,
        status: CaptureStatus,
        raw: Option<RawStack>,
    ) {
        let at = SystemTime::now();
        self.send_flame(
            Job::Flame {
                id,
                root,
                at,
                weight,
                status,
                raw,
            },
            weight,
        );
    }

    /// More time for the stall's last sampled stack (`end`: the stall is over).
    pub(crate) fn flame_more(&self, id: u64, weight: Duration, end: bool) {
        if weight.is_zero() && !end {
            return;
        }
        let at = SystemTime::now();
        self.send_flame(
            Job::FlameMore {
                id,
                at,
                weight,
                end,
            },
            weight,
        );
    }

    fn send_report(&self, job: Job) {
        if self.pending.reports.load(Relaxed) >= QUEUE {
            self.shared.counters.log_suppressed.fetch_add(1, Relaxed);
            return;
        }
        self.pending.reports.fetch_add(1, Relaxed);
        if self.tx.send(job).is_err() {
            self.pending.reports.fetch_sub(1, Relaxed);
        }
    }

    fn send_flame(&self, job: Job, weight: Duration) {
        if self.pending.flame.load(Relaxed) >= FLAME_HARD_CAP {
            self.shared.flame.dropped(weight);
            return;
        }
        self.pending.flame.fetch_add(1, Relaxed);
        if self.tx.send(job).is_err() {
            self.pending.flame.fetch_sub(1, Relaxed);
        }
    }
}

fn run(shared: Arc<Shared>, rx: Receiver<Job>, pending: &Pending, warm_up: bool) {
    let mut symbolizer = Symbolizer::new();
    if warm_up {
        symbolizer.warm_up();
    }
    let mut limiter = LogLimiter::new(shared.config.log_interval);
    let mut flame = Folder::default();
    for job in rx {
        let counter = if job.is_flame() {
            &pending.flame
        } else {
            &pending.reports
        };
        counter.fetch_sub(1, Relaxed);
        match job {
            Job::Announce { id, raw } => {
                if let Some(raw) = raw {
                    let frames = symbolizer.symbolize(&raw);
                    shared.stalls.update(id, |r| r.frames = frames);
                }
                if let Some(report) = shared.stalls.get(id) {
                    limiter.announce(&report, &shared);
                }
            }
            Job::Sample {
                id,
                at_ms,
                status,
                raw,
            } => {
                let frames = raw.map(|r| symbolizer.symbolize(&r)).unwrap_or_default();
                shared.stalls.update(id, |r| {
                    r.samples.push(StackSample {
                        at_ms,
                        capture: status,
                        frames,
                    })
                });
            }
            Job::Flame {
                id,
                root,
                at,
                weight,
                status,
                raw,
            } => {
                let paused = raw.as_ref().map(|r| r.paused).unwrap_or_default();
                let folded: Arc<str> = match raw {
                    Some(raw) => fold_stack(root.as_deref(), &symbolizer.symbolize(&raw)).into(),
                    None => {
                        let mut s = root.as_deref().map(|r| format!("{r};")).unwrap_or_default();
                        s.push_str(&format!("[no stack: {}]", status.as_str()));
                        s.into()
                    }
                };
                // The time since the previous sample is split between the two stacks: each
                // stands for the time nearest to it. The first sample of a stall (no
                // previous one) takes the time since the stall began.
                let previous = flame.last.get(&id).cloned();
                let before = previous.as_ref().map_or(Duration::ZERO, |_| weight / 2);
                if let Some(previous) = previous {
                    shared.flame.add(Weight {
                        stall: id,
                        at_unix_ms: unix_ms(at),
                        folded: &previous,
                        weight: before,
                        sample: false,
                        paused: Duration::ZERO,
                    });
                }
                shared.flame.add(Weight {
                    stall: id,
                    at_unix_ms: unix_ms(at),
                    folded: &folded,
                    weight: weight - before,
                    sample: true,
                    paused,
                });
                flame.remember(id, folded);
            }
            Job::FlameMore {
                id,
                at,
                weight,
                end,
            } => {
                let folded = if end {
                    flame.last.remove(&id)
                } else {
                    flame.last.get(&id).cloned()
                };
                match folded {
                    Some(folded) if !weight.is_zero() => shared.flame.add(Weight {
                        stall: id,
                        at_unix_ms: unix_ms(at),
                        folded: &folded,
                        weight,
                        sample: false,
                        paused: Duration::ZERO,
                    }),
                    Some(_) => {}
                    // Its first sample never arrived (dropped): the time is lost, and counted.
                    None => shared.flame.dropped(weight),
                }
            }
        }
    }
}

/// The last folded stack of each open stall, which later time is added to.
#[derive(Default)]
struct Folder {
    last: HashMap<u64, Arc<str>>,
}

impl Folder {
    fn remember(&mut self, id: u64, folded: Arc<str>) {
        if self.last.len() >= MAX_OPEN_STALLS && !self.last.contains_key(&id) {
            // Only if end-of-stall jobs were dropped; forget the oldest stall.
            if let Some(&oldest) = self.last.keys().min() {
                self.last.remove(&oldest);
            }
        }
        self.last.insert(id, folded);
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One `warn!` per signature (spawn location + top frames) per interval; the rest counted
/// and summarised in the next one.
struct LogLimiter {
    interval: Duration,
    last: HashMap<String, (Instant, u64)>,
}

impl LogLimiter {
    fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            last: HashMap::new(),
        }
    }

    fn announce(&mut self, r: &StallReport, shared: &Shared) {
        let Some(suppressed) = self.admit(signature(r), Instant::now()) else {
            shared.counters.log_suppressed.fetch_add(1, Relaxed);
            return;
        };
        tracing::warn!(
            target: "pollwatch",
            stall_id = r.id,
            runtime = %r.runtime,
            task_id = r.task_id,
            spawned_at = r.spawned_at.as_deref(),
            worker = r.worker,
            thread = %r.thread,
            duration_ms = r.duration_ms,
            kind = r.kind.as_str(),
            detection = ?r.detection,
            capture = r.capture.as_str(),
            suppressed_since_last = suppressed,
            "{r}{}",
            if suppressed > 0 {
                format!("\n    ({suppressed} similar stalls not logged since the last report)")
            } else {
                String::new()
            }
        );
    }

    /// The rule, without the clock read or the log: `Some(n)` when a stall of `signature`
    /// seen at `now` is logged, `n` being how many of its repeats were not logged since its
    /// last warning; `None` when it is one of those repeats. At most [`MAX_SIGNATURES`] are
    /// remembered: a new one beyond them forgets the one logged longest ago.
    fn admit(&mut self, signature: String, now: Instant) -> Option<u64> {
        if let Some((at, suppressed)) = self.last.get_mut(&signature) {
            if now.saturating_duration_since(*at) < self.interval {
                *suppressed += 1;
                return None;
            }
        }
        if self.last.len() >= MAX_SIGNATURES && !self.last.contains_key(&signature) {
            if let Some(oldest) = self
                .last
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            {
                self.last.remove(&oldest);
            }
        }
        Some(
            self.last
                .insert(signature, (now, 0))
                .map(|(_, n)| n)
                .unwrap_or(0),
        )
    }
}

/// Spawn location plus the top three user frames: the same bug gives the same signature.
fn signature(r: &StallReport) -> String {
    let mut s = r.spawned_at.clone().unwrap_or_default();
    for f in fold_runtime_frames(&r.frames).iter().take(3) {
        s.push('|');
        s.push_str(&f.function);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Frame;
    use crate::report::{Detection, StallKind};

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn one_warning_per_signature_per_interval_and_the_next_says_how_many_were_not_logged() {
        let mut limiter = LogLimiter::new(10 * S);
        let t = Instant::now();
        assert_eq!(limiter.admit("a".into(), t), Some(0));
        assert_eq!(limiter.admit("a".into(), t + S), None);
        assert_eq!(limiter.admit("a".into(), t + 9 * S), None);
        assert_eq!(
            limiter.admit("b".into(), t + 9 * S),
            Some(0),
            "its own budget"
        );
        assert_eq!(
            limiter.admit("a".into(), t + 10 * S),
            Some(2),
            "an interval after the last warning, with the two not logged"
        );
        assert_eq!(
            limiter.admit("a".into(), t + 11 * S),
            None,
            "a new interval"
        );
        assert_eq!(limiter.admit("a".into(), t + 20 * S), Some(1));
        // A clock reading older than the last warning (another thread's Instant) is within it.
        assert_eq!(limiter.admit("a".into(), t), None);
    }

    #[test]
    fn memory_stays_bounded_by_forgetting_the_signature_logged_longest_ago() {
        let mut limiter = LogLimiter::new(3600 * S);
        let t = Instant::now();
        for i in 0..MAX_SIGNATURES {
            let at = t + Duration::from_millis(i as u64);
            assert_eq!(limiter.admit(format!("sig{i}"), at), Some(0));
        }
        assert_eq!(limiter.admit("sig1".into(), t + S), None, "remembered");
        assert_eq!(limiter.admit("new".into(), t + S), Some(0));
        assert_eq!(limiter.last.len(), MAX_SIGNATURES);
        assert!(
            !limiter.last.contains_key("sig0"),
            "the oldest was forgotten"
        );
        assert_eq!(
            limiter.admit("sig0".into(), t + S),
            Some(0),
            "so it logs again"
        );
        assert_eq!(limiter.last.len(), MAX_SIGNATURES);
        assert!(!limiter.last.contains_key("sig1"), "next oldest out");
    }

    fn report(spawned_at: Option<&str>, functions: &[&str]) -> StallReport {
        StallReport {
            id: 1,
            runtime: "main".into(),
            worker: None,
            thread: "w".into(),
            tid: 1,
            task_id: None,
            spawned_at: spawned_at.map(String::from),
            started_at: String::new(),
            duration_ms: 0.0,
            ongoing: true,
            kind: StallKind::Cpu,
            detection: Detection::PollHook,
            capture: CaptureStatus::Ok,
            frames: functions
                .iter()
                .map(|f| Frame {
                    function: f.to_string(),
                    file: None,
                    line: None,
                })
                .collect(),
            samples: Vec::new(),
        }
    }

    #[test]
    fn the_signature_is_the_spawn_location_and_the_top_three_folded_frames() {
        let app = ["app::hash", "app::verify", "app::handle", "app::serve"];
        let sig = signature(&report(Some("src/main.rs:9:5"), &app));
        assert_eq!(sig, "src/main.rs:9:5|app::hash|app::verify|app::handle");
        // Frames below the third do not change it; the spawn location and top frames do.
        let deeper = ["app::hash", "app::verify", "app::handle", "app::other"];
        assert_eq!(signature(&report(Some("src/main.rs:9:5"), &deeper)), sig);
        assert_ne!(signature(&report(Some("src/main.rs:10:5"), &app)), sig);
        let other_top = ["app::sleep", "app::verify", "app::handle"];
        assert_ne!(signature(&report(Some("src/main.rs:9:5"), &other_top)), sig);
        // Runtime frames between application frames count as one folded frame.
        let scheduled = [
            "app::hash",
            "tokio::runtime::task::harness::poll",
            "tokio::runtime::scheduler::run",
            "app::serve",
        ];
        assert_eq!(
            signature(&report(None, &scheduled)),
            "|app::hash|… 2 runtime frames|app::serve"
        );
        // Attach mode has no spawn location: the frames alone.
        assert_eq!(signature(&report(None, &app[..1])), "|app::hash");
    }
}
