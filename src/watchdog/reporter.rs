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
        let signature = signature(r);
        let now = Instant::now();
        if let Some((at, suppressed)) = self.last.get_mut(&signature) {
            if now.duration_since(*at) < self.interval {
                *suppressed += 1;
                shared.counters.log_suppressed.fetch_add(1, Relaxed);
                return;
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
        let suppressed = self
            .last
            .insert(signature, (now, 0))
            .map(|(_, n)| n)
            .unwrap_or(0);
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
