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
        handle.spawn(async move {
            let guard = CloseOnDrop(task_state);
            let state = &guard.0;
            loop {
                state.notify.notified().await;
                let woken = state.woken_at.load(Acquire);
                let now = s.clock.raw();
                if woken != 0 && now >= woken {
                    s.probe_delay
                        .record_shared(Duration::from_nanos(s.clock.delta_as_nanos(woken, now)));
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
    /// not still waiting. Returns how long a pending wake-up has waited so far.
    pub(crate) fn tick(&mut self, shared: &Shared) -> Option<Duration> {
        if self.state.closed.load(Acquire) {
            return None;
        }
        let now = shared.clock.raw();
        let pending = self.state.woken_at.load(Acquire);
        if pending != 0 {
            return Some(Duration::from_nanos(if now >= pending {
                shared.clock.delta_as_nanos(pending, now)
            } else {
                0
            }));
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

    /// The runtime the probe ran on has shut down.
    pub(crate) fn closed(&self) -> bool {
        self.state.closed.load(Acquire)
    }
}
