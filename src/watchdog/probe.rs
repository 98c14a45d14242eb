//! The scheduling-lag probe: a tiny task the watchdog wakes every `probe_interval` from its
//! own thread. The delay between the wake-up and the task's poll is how long any ready task
//! waits for a worker right now; it feeds `tokio_probe_schedule_duration_seconds` in both
//! modes, and in attach mode a probe left unpolled past the threshold is a stall.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::state::Shared;

#[derive(Default)]
struct ProbeState {
    notify: Notify,
    /// Raw clock reading of the pending wake-up; 0 when none is pending.
    woken_at: AtomicU64,
    /// The task is gone (runtime shut down): stop probing, report nothing.
    closed: AtomicBool,
    /// The wake-up the task answered last, and how long it had waited (ns).
    last_woken: AtomicU64,
    last_delay_ns: AtomicU64,
}

/// A wake-up of the probe that has not been answered yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProbeWait {
    /// Raw clock reading of the wake-up: tells one wait from the next.
    pub(crate) woken_at: u64,
    /// How long it has waited so far.
    pub(crate) waited: Duration,
}

/// Sets `closed` when the probe task is dropped with its runtime.
struct CloseOnDrop(Arc<ProbeState>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.closed.store(true, Release);
    }
}

/// The watchdog's side of the probe.
pub(crate) struct Probe {
    state: Arc<ProbeState>,
    last_wake: u64,
}

impl Probe {
    /// Spawns the probe task onto the runtime.
    pub(crate) fn start(shared: &Arc<Shared>, handle: &tokio::runtime::Handle) -> Probe {
        let state = Arc::new(ProbeState::default());
        let task_state = state.clone();
        let s = shared.clone();
        // Attach mode learns the runtime's worker threads from the threads that poll this.
        let threads = shared.threads().cloned();
        handle.spawn(async move {
            let guard = CloseOnDrop(task_state);
            let state = &guard.0;
            let attach = threads.map(|t| (t, tokio::runtime::Handle::current().metrics()));
            loop {
                if let Some((threads, metrics)) = &attach {
                    threads.note_poll(s.clock.raw(), metrics);
                }
                state.notify.notified().await;
                let woken = state.woken_at.load(Acquire);
                let now = s.clock.raw();
                if woken != 0 && now >= woken {
                    let delay = Duration::from_nanos(s.clock.delta_as_nanos(woken, now));
                    s.probe_delay.record_shared(delay);
                    state.last_delay_ns.store(delay.as_nanos() as u64, Relaxed);
                    state.last_woken.store(woken, Release);
                }
                state.woken_at.store(0, Release);
            }
        });
        Probe {
            state,
            last_wake: 0,
        }
    }

    /// Called every watchdog tick: wakes the probe when one interval has passed and it is
    /// not still waiting. Returns the pending wake-up, if any, and how long it has waited.
    pub(crate) fn tick(&mut self, shared: &Shared) -> Option<ProbeWait> {
        if self.state.closed.load(Acquire) {
            return None;
        }
        let now = shared.clock.raw();
        let pending = self.state.woken_at.load(Acquire);
        if pending != 0 {
            return Some(ProbeWait {
                woken_at: pending,
                waited: Duration::from_nanos(if now >= pending {
                    shared.clock.delta_as_nanos(pending, now)
                } else {
                    0
                }),
            });
        }
        let since_last = if self.last_wake == 0 || now < self.last_wake {
            Duration::MAX
        } else {
            Duration::from_nanos(shared.clock.delta_as_nanos(self.last_wake, now))
        };
        if since_last >= shared.config.probe_interval {
            self.last_wake = now;
            self.state.woken_at.store(now, Release);
            self.state.notify.notify_one();
        }
        None
    }

    /// How long the wake-up at `woken_at` waited for its poll, once it has been polled.
    pub(crate) fn answered(&self, woken_at: u64) -> Option<Duration> {
        (self.state.last_woken.load(Acquire) == woken_at)
            .then(|| Duration::from_nanos(self.state.last_delay_ns.load(Relaxed)))
    }

    /// The runtime the probe ran on has shut down.
    pub(crate) fn closed(&self) -> bool {
        self.state.closed.load(Acquire)
    }
}
