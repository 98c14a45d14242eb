//! The `pollwatch-watchdog` thread: wakes every tick (every half tick in hooked mode), runs
//! the detectors, opens and closes stall episodes. It never runs on the app's runtime, so it sees the runtime even when every
//! worker is stuck.

mod cpu;
mod episode;
mod poll_hook;
mod probe;
mod reporter;
mod sampling;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use self::episode::Episodes;
use self::poll_hook::PollHookDetector;
use self::probe::Probe;
use self::reporter::Reporter;
use self::worker::AttachDetector;
use crate::capture::StackCapturer;
use crate::state::{Mode, Shared};
use crate::Error;

/// The longest [`Watchdog::start`] waits for the watchdog thread to take its first look.
const STARTUP_WAIT: Duration = Duration::from_secs(1);

/// One wake-up of the watchdog, as the detectors see it.
pub(crate) struct Tick {
    /// The watchdog woke much later than asked (VM pause, debugger, CPU starvation): this
    /// tick opens no episode.
    pub(crate) late: bool,
    /// Total time the watchdog has lost to lateness since it started, after this tick...
    pub(crate) lost: Duration,
    /// ...and before it. A poll first seen on a late tick may have begun during the gap.
    pub(crate) lost_before: Duration,
}

/// The running watchdog and its helper thread.
pub(crate) struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub(crate) fn start(
        shared: Arc<Shared>,
        handle: tokio::runtime::Handle,
    ) -> Result<Self, Error> {
        let capturer = if shared.config.stacks {
            let signal = shared
                .config
                .signal
                .unwrap_or_else(crate::capture::default_signal);
            Some(StackCapturer::new(signal)?)
        } else {
            None
        };
        let (reporter, reporter_thread) =
            Reporter::spawn(shared.clone(), shared.config.warm_up_symbols)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // Everything the watchdog sees happened after this instant; its thread may start
        // later (a busy host), and a stall that began in between is counted from here.
        let started = Instant::now();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread = crate::os_thread::spawn_named("pollwatch-watchdog", move || {
            let episodes = Episodes::new(shared.clone(), capturer, reporter);
            run(&shared, handle, episodes, &flag, started, ready_tx);
            // `episodes` (and with it the reporter's queue) is gone: the symbolizer ends.
            let _ = reporter_thread.join();
        })?;
        // ... and hooked mode sees a poll only from its first look: return once the thread
        // watches (bounded), so that a stall right after start-up is seen from its start.
        let _ = ready_rx.recv_timeout(STARTUP_WAIT);
        Ok(Watchdog {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the threads; returns once they have ended (within about one tick, plus a
    /// capture or a symbolization in progress).
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    shared: &Arc<Shared>,
    handle: tokio::runtime::Handle,
    mut episodes: Episodes,
    stop: &AtomicBool,
    started: Instant,
    ready: std::sync::mpsc::SyncSender<()>,
) {
    let tick_len = shared.config.watchdog_tick;
    // A poll that begins just after the watchdog looked is first seen one sampling period
    // later, so the report comes up to a period plus the watchdog's own wake-up delay after
    // the threshold. Sampling the poll slots twice per tick keeps that within one tick
    // (DESIGN §6) at the cost of one more wake-up per tick that reads a few atomics. Attach
    // mode reads tokio's counters, which move only every 61 scheduler ticks: no gain there.
    let period = if shared.mode() == Mode::Hooked {
        tick_len / 2
    } else {
        tick_len
    };
    let mut poll_hook = shared
        .hooked()
        .map(|h| PollHookDetector::new(h.slots.clone(), Some(handle.clone())));
    let mut attach = shared
        .threads()
        .map(|t| AttachDetector::new(t.clone(), handle.clone(), started));
    let mut lag_probe = Probe::start(shared, &handle);
    let mut last = started;
    let mut lost = Duration::ZERO;
    let _ = ready.try_send(());
    while !stop.load(Acquire) {
        std::thread::park_timeout(period.saturating_sub(last.elapsed()));
        let now = Instant::now();
        if now.duration_since(last) < period && !stop.load(Acquire) {
            continue; // woken early (spurious unpark)
        }
        // Ordinary scheduling jitter up to one extra tick is not lateness.
        let excess = now.duration_since(last).saturating_sub(tick_len * 2);
        last = now;
        let lost_before = lost;
        lost += excess;
        let tick = Tick {
            late: !excess.is_zero(),
            lost,
            lost_before,
        };
        if tick.late {
            shared.counters.watchdog_late.fetch_add(1, Relaxed);
        }
        if let Some(d) = &mut poll_hook {
            d.tick(shared, &tick, &mut episodes);
        }
        // In hooked mode the poll slots already name the stuck task; the probe only measures.
        let probe_waiting = lag_probe.tick(shared);
        if let Some(d) = &mut attach {
            d.tick(shared, &tick, &lag_probe, probe_waiting, &mut episodes);
        }
    }
}
