//! The `pollwatch-symbolizer` thread: turns captured addresses into frames and announces
//! each stall through `tracing`, rate-limited per signature.
//!
//! Symbolizing is slow the first time (it parses the binary's debug info), so it happens
//! here, never on the watchdog (which must keep ticking) and never on the app's runtime.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::capture::{fold_runtime_frames, CaptureStatus, RawStack, Symbolizer};
use crate::report::{StackSample, StallReport};
use crate::state::Shared;
use crate::Error;

/// Jobs waiting beyond this are dropped (and counted): the watchdog never blocks on us.
const QUEUE: usize = 64;
/// Distinct stall signatures remembered by the log limiter.
const MAX_SIGNATURES: usize = 512;

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
}

/// The watchdog's end of the queue.
pub(crate) struct Reporter {
    tx: SyncSender<Job>,
    shared: Arc<Shared>,
}

impl Reporter {
    pub(crate) fn spawn(
        shared: Arc<Shared>,
        warm_up: bool,
    ) -> Result<(Reporter, JoinHandle<()>), Error> {
        let (tx, rx) = sync_channel(QUEUE);
        let s = shared.clone();
        let thread =
            crate::os_thread::spawn_named("pollwatch-symbolizer", move || run(s, rx, warm_up))?;
        Ok((Reporter { tx, shared }, thread))
    }

    pub(crate) fn announce(&self, id: u64, raw: Option<RawStack>) {
        self.send(Job::Announce { id, raw });
    }

    pub(crate) fn sample(&self, id: u64, at_ms: f64, status: CaptureStatus, raw: Option<RawStack>) {
        self.send(Job::Sample {
            id,
            at_ms,
            status,
            raw,
        });
    }

    fn send(&self, job: Job) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(job) {
            self.shared.counters.log_suppressed.fetch_add(1, Relaxed);
        }
    }
}

fn run(shared: Arc<Shared>, rx: Receiver<Job>, warm_up: bool) {
    let mut symbolizer = Symbolizer::new();
    if warm_up {
        symbolizer.warm_up();
    }
    let mut limiter = LogLimiter::new(shared.config.log_interval);
    for job in rx {
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
        }
    }
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
