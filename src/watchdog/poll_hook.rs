//! Hooked-mode detection: read every worker's poll slot each tick; a slot whose generation
//! has stayed odd (inside one poll) for longer than the threshold is a stall.
//!
//! The hooks read no clock for this: the watchdog sees the unchanged generation. The watchdog
//! reads the slots twice per tick. A poll's start is the moment the watchdog first saw its
//! generation (it began at most half a tick earlier), or the exact start when the hooks
//! happened to time that poll. So a stall is raised at most an eighth of a tick early (the
//! allowance for the watchdog's wake-up jitter). It is raised no later than threshold +
//! half a tick + the watchdog's wake-up delay. Once an episode is
//! open the slot is marked watched and the after-poll hook records the exact end.
//!
//! `allow_blocking`: a poll is counted from the end of its last `allow_blocking` scope (as
//! first seen by the watchdog), so blocking that was allowed never adds up with what follows
//! it in the same poll.
//!
//! Host-stall guard: time the poll's thread spent runnable but not running (the kernel's
//! run-queue time, plus the wait going on right now, seen from its exact CPU clock) does not
//! count towards the threshold. On a loaded machine (parallel tests on two cores) a short
//! poll can be descheduled for tens of milliseconds: that is not a blocking future. Nor is
//! a poll asleep on anything but a timer (a mutex, the allocator's lock, the kernel's memory
//! map lock in `brk`) while another thread of the process is runnable but not running,
//! which is most likely the holder: it opens only on a later look at which no thread of the
//! process is starved. A `thread::sleep` needs no other thread and is never excused.

use std::time::Duration;

use super::cpu::{self, CpuSample, CpuShare, RunQueueGuard};
use super::episode::{Episode, Episodes, Suspect};
use super::Tick;
use crate::report::{Detection, StallKind};
use crate::slots::ThreadInfo;
use crate::state::Shared;

/// What the watchdog remembers about one slot between ticks.
#[derive(Default)]
struct Watched {
    claim: u64,
    generation: u64,
    /// Watchdog time lost to its own lateness when this poll was first seen.
    lost_base: Duration,
    /// Raw clock reading at the start of the watched poll: exact when the hooks timed it,
    /// else when the watchdog first saw it.
    poll_start: u64,
    /// `poll_start` came from the hooks' clock, not from the watchdog's first sight.
    start_exact: bool,
    /// The slot's count of `allow_blocking` exits, as last seen.
    exempt_exits: u32,
    cpu_base: Option<CpuSample>,
    /// How long the thread has waited for a CPU during this poll (the host-stall guard).
    run_queue: Option<RunQueueGuard>,
    thread: Option<ThreadInfo>,
    episode: Option<Episode>,
}

pub(crate) struct PollHookDetector {
    watched: Vec<Watched>,
    handle: Option<tokio::runtime::Handle>,
}

impl PollHookDetector {
    pub(crate) fn new(handle: Option<tokio::runtime::Handle>) -> Self {
        PollHookDetector {
            watched: Vec::new(),
            handle,
        }
    }

    pub(crate) fn tick(&mut self, shared: &Shared, tick: &Tick, episodes: &mut Episodes) {
        let threshold = shared.config.stall_threshold;
        for (i, slot) in shared.slots.iter() {
            if self.watched.len() <= i {
                self.watched.resize_with(i + 1, Watched::default);
            }
            let w = &mut self.watched[i];
            let claim = slot.claim_number();
            let now_raw = shared.clock.raw();
            if claim != w.claim {
                // The slot changed hands (or was freed): whatever we watched is over.
                if let Some(ep) = w.episode.take() {
                    slot.set_watched(false);
                    episodes.close(ep, elapsed(shared, w.poll_start, now_raw));
                }
                *w = Watched {
                    claim,
                    thread: slot.thread_info(),
                    ..Watched::default()
                };
            }
            if claim == 0 {
                continue;
            }
            let Some(view) = slot.view() else { continue };
            if view.generation != w.generation {
                if let Some(ep) = w.episode.take() {
                    let end = slot
                        .poll_end_after(w.generation, w.poll_start)
                        .unwrap_or(now_raw);
                    slot.set_watched(false);
                    episodes.close(ep, elapsed(shared, w.poll_start, end));
                }
                w.generation = view.generation;
                w.start_exact = view.start != 0 && view.start <= now_raw;
                w.poll_start = if w.start_exact { view.start } else { now_raw };
                w.lost_base = tick.lost_before;
                w.cpu_base = None;
                w.run_queue = None;
                w.exempt_exits = view.exempt_exits;
                continue;
            }
            if w.episode.is_none() && (view.exempt || view.exempt_exits != w.exempt_exits) {
                // Inside `allow_blocking`, or it has left one since the last look: time up to
                // now is allowed; the poll counts from here.
                w.exempt_exits = view.exempt_exits;
                w.start_exact = false;
                w.poll_start = now_raw;
                w.lost_base = tick.lost_before;
                w.cpu_base = None;
                w.run_queue = None;
                continue;
            }
            let age = elapsed(shared, w.poll_start, now_raw);
            if view.generation % 2 == 0 {
                continue; // idle between polls
            }
            let tid = w.thread.as_ref().map(|t| t.handle.tid()).unwrap_or(0);
            if w.cpu_base.is_none() {
                w.cpu_base = cpu::sample(tid);
            }
            match &mut w.run_queue {
                Some(g) => g.update(tid),
                None => w.run_queue = RunQueueGuard::start(tid),
            }
            let stuck = age.saturating_sub(tick.lost.saturating_sub(w.lost_base));
            if let Some(ep) = &mut w.episode {
                episodes.still_stuck(ep, age);
                continue;
            }
            // A watchdog-stamped start is later than the true one (by up to a sampling
            // period, half a tick): allow an eighth of a tick of wake-up jitter so the stall
            // is not held back a whole extra period.
            let slack = if w.start_exact {
                Duration::ZERO
            } else {
                shared.config.watchdog_tick / 8
            };
            if tick.late || stuck + slack < threshold {
                continue;
            }
            let share = w
                .cpu_base
                .as_ref()
                .zip(cpu::sample(tid))
                .and_then(|(a, b)| CpuShare::between(a, &b));
            if share.is_some_and(|s| s.starved()) {
                continue;
            }
            // A poll whose thread was runnable but not running (a loaded host, parallel
            // tests) did not block for that time: only the rest counts.
            let queued = w
                .run_queue
                .as_ref()
                .map_or(Duration::ZERO, |g| g.queued(tid));
            if stuck.saturating_sub(queued) + slack < threshold {
                continue;
            }
            // Asleep on a lock while another thread of the process waits for a CPU: most
            // likely the holder, descheduled. Looked at again next time.
            if cpu::waits_for_a_starved_thread(tid) {
                continue;
            }
            let thread = w.thread.as_ref();
            let worker = worker_index(self.handle.as_ref(), thread);
            if in_block_in_place(self.handle.as_ref(), worker) {
                continue;
            }
            slot.set_watched(true);
            w.episode = Some(episodes.open(Suspect {
                detection: Detection::PollHook,
                thread: thread.map(|t| t.handle),
                thread_name: thread.map(|t| t.name.clone()).unwrap_or_default(),
                worker,
                task_id: Some(view.task_id),
                spawned_at: view.spawned_at,
                stuck_for: age,
                kind: share.map(|s| s.kind()).unwrap_or(StallKind::Unknown),
            }));
        }
    }
}

/// Time between two raw clock readings; zero if they are out of order (clock skew).
fn elapsed(shared: &Shared, start: u64, end: u64) -> Duration {
    if start == 0 || end < start {
        return Duration::ZERO;
    }
    Duration::from_nanos(shared.clock.delta_as_nanos(start, end))
}

/// `block_in_place` hands the worker's core to a new thread and leaves the caller in its
/// poll, which is allowed blocking. tokio records which thread runs each worker, so a
/// polling thread of a multi-thread runtime that runs no worker (while every worker has a
/// thread) is inside `block_in_place`.
fn in_block_in_place(handle: Option<&tokio::runtime::Handle>, worker: Option<usize>) -> bool {
    #[cfg(tokio_unstable)]
    {
        let Some(handle) = handle else { return false };
        if worker.is_some() || handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread
        {
            return false;
        }
        let metrics = handle.metrics();
        (0..metrics.num_workers()).all(|w| metrics.worker_thread_id(w).is_some())
    }
    #[cfg(not(tokio_unstable))]
    {
        let _ = (handle, worker);
        false
    }
}

/// The runtime's worker index of a thread (tokio exposes the mapping under `tokio_unstable`).
fn worker_index(
    handle: Option<&tokio::runtime::Handle>,
    thread: Option<&ThreadInfo>,
) -> Option<usize> {
    #[cfg(tokio_unstable)]
    {
        let (handle, thread) = (handle?, thread?);
        let metrics = handle.metrics();
        (0..metrics.num_workers()).find(|&w| metrics.worker_thread_id(w) == Some(thread.thread_id))
    }
    #[cfg(not(tokio_unstable))]
    {
        let _ = (handle, thread);
        None
    }
}
