//! Hooked-mode detection: read every worker's poll slot each tick; a slot whose generation
//! has stayed odd (inside one poll) for longer than the threshold is a stall.
//!
//! The hooks read no clock for this: the watchdog sees the unchanged generation. The watchdog
//! reads the slots twice per tick. A poll's start is the moment the watchdog first saw its
//! generation (it began at most half a tick earlier), or the exact start when the hooks
//! happened to time that poll. So a stall is raised at most an eighth of a tick early (the
//! allowance for the watchdog's wake-up jitter). It is raised no later than threshold +
//! half a tick + the watchdog's wake-up delay, plus one more reading when that delay made the
//! watchdog miss every reading between the poll's first sight and the threshold (it then has
//! no CPU-time interval to classify the stall with). Once an episode is
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
//! a poll asleep on anything but a timer (a mutex, the allocator's lock) while another
//! thread of the process is runnable but not running, which is most likely the holder: it
//! opens only on a later look at which no thread of the process is starved. Nor is a poll
//! asleep inside an address-space call (`brk`, `mmap`, `mprotect`, ...: the allocator
//! growing its heap), whose only sleeps are the process's address-space lock, held by its
//! other threads' page faults, and memory reclaim. A `thread::sleep` needs no other thread
//! and is never excused.

use std::time::Duration;

use super::cpu::{self, CpuSample, CpuShare, RunQueueGuard};
use super::episode::{Episode, Episodes, Suspect};
use super::Tick;
use crate::report::{Detection, StallKind};
use crate::slots::{PollView, SlotLease};
use crate::state::Shared;
use crate::thread_info::ThreadInfo;

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
    cpu_base: Option<CpuSample>,
    /// How long the thread has waited for a CPU during this poll (the host-stall guard).
    run_queue: Option<RunQueueGuard>,
    /// The slot's count of `allow_blocking` exits, as last seen.
    exempt_exits: u32,
    thread: Option<ThreadInfo>,
    episode: Option<Episode>,
}

pub(crate) struct PollHookDetector {
    /// The poll slots the task hooks write.
    slots: std::sync::Arc<SlotLease>,
    watched: Vec<Watched>,
    handle: Option<tokio::runtime::Handle>,
}

impl PollHookDetector {
    pub(crate) fn new(
        slots: std::sync::Arc<SlotLease>,
        handle: Option<tokio::runtime::Handle>,
    ) -> Self {
        PollHookDetector {
            slots,
            watched: Vec::new(),
            handle,
        }
    }

    pub(crate) fn tick(&mut self, shared: &Shared, tick: &Tick, episodes: &mut Episodes) {
        let rules = Rules {
            threshold: shared.config.stall_threshold,
            tick: shared.config.watchdog_tick,
        };
        for (i, slot) in self.slots.iter() {
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
                    episodes.close(ep, elapsed(&shared.clock, w.poll_start, now_raw));
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
                    episodes.close(ep, elapsed(&shared.clock, w.poll_start, end));
                }
                w.first_sight(&view, now_raw, tick.lost_before);
                continue;
            }
            if w.episode.is_none() && (view.exempt || view.exempt_exits != w.exempt_exits) {
                // Inside `allow_blocking`, or it has left one since the last look: time up to
                // now is allowed; the poll counts from here.
                w.first_sight(&view, now_raw, tick.lost_before);
                w.start_exact = false;
                w.poll_start = now_raw;
                continue;
            }
            if view.generation % 2 == 0 {
                continue; // idle between polls
            }
            let age = elapsed(&shared.clock, w.poll_start, now_raw);
            let tid = w.thread.as_ref().map(|t| t.handle.tid()).unwrap_or(0);
            let mut baseline_just_taken = false;
            if w.cpu_base.is_none() {
                w.cpu_base = cpu::sample(tid);
                baseline_just_taken = w.cpu_base.is_some();
            }
            match &mut w.run_queue {
                Some(g) => g.update(tid),
                None => w.run_queue = RunQueueGuard::start(tid),
            }
            if let Some(ep) = &mut w.episode {
                episodes.still_stuck(ep, age);
                continue;
            }
            let running = Running {
                age,
                lost_since_seen: tick.lost.saturating_sub(w.lost_base),
                start_exact: w.start_exact,
                exempt: view.exempt,
                late_tick: tick.late,
                baseline_just_taken,
            };
            let cpu_base = w.cpu_base;
            let share = || {
                cpu_base
                    .zip(cpu::sample(tid))
                    .and_then(|(a, b)| CpuShare::between(&a, &b))
            };
            let Verdict::Stall(share) = judge(&running, &rules, share) else {
                continue;
            };
            // A poll whose thread was runnable but not running (a loaded host, parallel
            // tests) did not block for that time: only the rest counts. Asleep on a lock
            // while another thread of the process waits for a CPU: most likely the holder,
            // descheduled. Either way, looked at again on the next reading.
            let queued = w
                .run_queue
                .as_ref()
                .map_or(Duration::ZERO, |g| g.queued(tid));
            let own = Running {
                age: age.saturating_sub(queued),
                ..running
            };
            if !judge(&own, &rules, || share).is_stall() || cpu::waits_for_the_host(tid) {
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

impl Watched {
    /// The slot shows a generation not seen before: a poll began (odd) or ended (even) since
    /// the last reading. Its start is the hooks' own clock reading when they timed it (and it
    /// is not in the future, which a skewed clock could make it), else this reading's time.
    fn first_sight(&mut self, view: &PollView, now_raw: u64, lost_before: Duration) {
        self.generation = view.generation;
        self.start_exact = view.start != 0 && view.start <= now_raw;
        self.poll_start = if self.start_exact {
            view.start
        } else {
            now_raw
        };
        self.lost_base = lost_before;
        self.cpu_base = None;
        self.run_queue = None;
        self.exempt_exits = view.exempt_exits;
    }
}

/// The settings the stall rule uses.
struct Rules {
    threshold: Duration,
    tick: Duration,
}

/// A poll seen running again (same odd generation), as the stall rule sees it.
#[derive(Clone, Copy, Debug)]
struct Running {
    /// Since the poll's start (exact, or the watchdog's first sight of it).
    age: Duration,
    /// Time the watchdog lost to its own lateness since it first saw this poll.
    lost_since_seen: Duration,
    /// The start came from the hooks' clock.
    start_exact: bool,
    /// Inside an `allow_blocking` scope.
    exempt: bool,
    /// This tick itself woke late.
    late_tick: bool,
    /// The thread's CPU counters were first read on this very reading (the watchdog missed
    /// the earlier ones): there is no interval yet to classify the stall from.
    baseline_just_taken: bool,
}

/// What the stall rule concludes about a running poll.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Verdict {
    /// A stall: open an episode, classified from the thread's CPU share when it was read.
    Stall(Option<CpuShare>),
    /// Not past the threshold yet (after discounting the watchdog's own lateness).
    TooYoung,
    /// Inside `allow_blocking`.
    Exempt,
    /// The watchdog woke late on this tick: it attributes nothing.
    LateTick,
    /// The thread was runnable but the host gave it no CPU: not its future's fault.
    HostStarved,
    /// Past the threshold, but the CPU counters were only just first read: decide on the
    /// next reading (half a tick later), so the stall is classified instead of `unknown`.
    AwaitCpuBaseline,
}

impl Verdict {
    fn is_stall(&self) -> bool {
        matches!(self, Verdict::Stall(_))
    }
}

/// The hooked-mode stall rule, with no reads of its own: `share` reads the thread's CPU
/// share (from `/proc`), and is called only for a poll that is past the threshold.
///
/// Time the watchdog lost to its own lateness while it watched the poll does not count: a
/// VM pause must not make every running poll a stall. A watchdog-stamped start is later than
/// the true one (by up to a sampling period, half a tick), so an eighth of a tick of wake-up
/// jitter is allowed instead of holding the stall back a whole extra period.
fn judge(r: &Running, rules: &Rules, share: impl FnOnce() -> Option<CpuShare>) -> Verdict {
    if r.exempt {
        return Verdict::Exempt;
    }
    if r.late_tick {
        return Verdict::LateTick;
    }
    let stuck = r.age.saturating_sub(r.lost_since_seen);
    let slack = if r.start_exact {
        Duration::ZERO
    } else {
        rules.tick / 8
    };
    if stuck + slack < rules.threshold {
        return Verdict::TooYoung;
    }
    if r.baseline_just_taken {
        return Verdict::AwaitCpuBaseline;
    }
    let share = share();
    if share.is_some_and(|s| s.starved()) {
        return Verdict::HostStarved;
    }
    Verdict::Stall(share)
}

/// Time between two raw clock readings; zero if they are out of order (clock skew).
fn elapsed(clock: &quanta::Clock, start: u64, end: u64) -> Duration {
    if start == 0 || end < start {
        return Duration::ZERO;
    }
    Duration::from_nanos(clock.delta_as_nanos(start, end))
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn rules() -> Rules {
        Rules {
            threshold: 100 * MS,
            tick: 8 * MS,
        }
    }

    /// A running poll with an exact start, not exempt, on a punctual tick.
    fn running(age: Duration) -> Running {
        Running {
            age,
            lost_since_seen: Duration::ZERO,
            start_exact: true,
            exempt: false,
            late_tick: false,
            baseline_just_taken: false,
        }
    }

    fn share(on_cpu: f64, runqueue: f64) -> CpuShare {
        CpuShare { on_cpu, runqueue }
    }

    #[track_caller]
    fn judged(r: Running, share: Option<CpuShare>) -> Verdict {
        judge(&r, &rules(), || share)
    }

    #[test]
    fn an_exactly_timed_poll_is_a_stall_at_the_threshold_and_not_a_nanosecond_before() {
        let below = running(100 * MS - Duration::from_nanos(1));
        assert_eq!(judged(below, None), Verdict::TooYoung);
        assert_eq!(judged(running(100 * MS), None), Verdict::Stall(None));
    }

    #[test]
    fn a_watchdog_stamped_start_gets_an_eighth_of_a_tick_of_slack() {
        // tick 8 ms: the slack is 1 ms.
        let stamped = |age| Running {
            start_exact: false,
            ..running(age)
        };
        assert_eq!(judged(stamped(99 * MS), None), Verdict::Stall(None));
        let below = stamped(99 * MS - Duration::from_nanos(1));
        assert_eq!(judged(below, None), Verdict::TooYoung);
    }

    #[test]
    fn time_the_watchdog_lost_while_watching_does_not_count() {
        // 150 ms old, but the watchdog slept through 60 ms of it (a VM pause): 90 ms stuck.
        let paused = Running {
            lost_since_seen: 60 * MS,
            ..running(150 * MS)
        };
        assert_eq!(judged(paused, None), Verdict::TooYoung);
        let longer = Running {
            lost_since_seen: 60 * MS,
            ..running(160 * MS)
        };
        assert_eq!(judged(longer, None), Verdict::Stall(None));
        // More lost than the poll's age (it began during the pause): nothing, no underflow.
        let all_lost = Running {
            lost_since_seen: 500 * MS,
            ..running(150 * MS)
        };
        assert_eq!(judged(all_lost, None), Verdict::TooYoung);
    }

    #[test]
    fn a_late_tick_and_an_allow_blocking_scope_attribute_nothing() {
        let late = Running {
            late_tick: true,
            ..running(10_000 * MS)
        };
        assert_eq!(judged(late, None), Verdict::LateTick);
        let exempt = Running {
            exempt: true,
            ..running(10_000 * MS)
        };
        assert_eq!(judged(exempt, None), Verdict::Exempt);
    }

    #[test]
    fn a_thread_the_host_did_not_run_is_not_a_stall() {
        let old = running(200 * MS);
        assert_eq!(judged(old, Some(share(0.05, 0.9))), Verdict::HostStarved);
        // Runnable most of the time but also ran a fair share: a busy loop on a shared core.
        let busy = share(0.3, 0.6);
        assert_eq!(judged(old, Some(busy)), Verdict::Stall(Some(busy)));
        // Asleep in the kernel: a stall, off the CPU.
        let asleep = share(0.0, 0.0);
        assert_eq!(judged(old, Some(asleep)), Verdict::Stall(Some(asleep)));
        assert_eq!(asleep.kind(), StallKind::OffCpu);
    }

    #[test]
    fn a_stall_first_met_with_no_cpu_baseline_waits_one_reading_to_be_classified() {
        // The watchdog missed the readings in between (a loaded host): the first CPU reading
        // of this poll happens as it crosses the threshold. Two readings microseconds apart
        // cannot classify it, so it waits for the next one instead of reporting `unknown`.
        let fresh = Running {
            baseline_just_taken: true,
            ..running(120 * MS)
        };
        let never = || -> Option<CpuShare> { panic!("no interval to read a share over") };
        assert_eq!(judge(&fresh, &rules(), never), Verdict::AwaitCpuBaseline);
        // Under the threshold it is simply too young; exempt and late ticks still win.
        let young = Running {
            baseline_just_taken: true,
            ..running(10 * MS)
        };
        assert_eq!(judge(&young, &rules(), never), Verdict::TooYoung);
        // On the next reading the baseline is old enough: a stall, classified.
        let busy = share(0.95, 0.0);
        assert_eq!(
            judged(running(125 * MS), Some(busy)),
            Verdict::Stall(Some(busy))
        );
    }

    #[test]
    fn the_cpu_share_is_read_only_for_a_poll_past_the_threshold() {
        let never = || -> Option<CpuShare> { panic!("read /proc for a poll under the threshold") };
        assert_eq!(judge(&running(50 * MS), &rules(), never), Verdict::TooYoung);
        let exempt = Running {
            exempt: true,
            ..running(500 * MS)
        };
        assert_eq!(judge(&exempt, &rules(), never), Verdict::Exempt);
    }

    #[test]
    fn first_sight_takes_the_hooks_start_unless_it_is_missing_or_in_the_future() {
        let view = |generation, start| PollView {
            generation,
            task_id: 7,
            spawned_at: None,
            start,
            exempt: false,
            exempt_exits: 0,
        };
        let mut w = Watched {
            cpu_base: Some(CpuSample {
                at: std::time::Instant::now(),
                on_cpu_ns: 1,
                runqueue_ns: 2,
                timeslices: 3,
            }),
            ..Watched::default()
        };
        w.first_sight(&view(3, 900), 1_000, 5 * MS);
        assert_eq!((w.generation, w.poll_start, w.start_exact), (3, 900, true));
        assert_eq!(w.lost_base, 5 * MS);
        assert!(w.cpu_base.is_none(), "a new poll starts a new CPU baseline");
        // Untimed poll: the watchdog's own reading is the start.
        w.first_sight(&view(5, 0), 2_000, Duration::ZERO);
        assert_eq!((w.poll_start, w.start_exact), (2_000, false));
        // A start after "now" (clock skew between cores): not trusted.
        w.first_sight(&view(7, 3_500), 3_000, Duration::ZERO);
        assert_eq!((w.poll_start, w.start_exact), (3_000, false));
    }

    #[test]
    fn elapsed_is_zero_for_a_missing_start_or_readings_out_of_order() {
        let clock = quanta::Clock::new();
        let a = clock.raw();
        std::thread::sleep(2 * MS);
        let b = clock.raw();
        assert!(
            elapsed(&clock, a, b) >= 2 * MS,
            "{:?}",
            elapsed(&clock, a, b)
        );
        assert_eq!(elapsed(&clock, b, a), Duration::ZERO);
        assert_eq!(elapsed(&clock, 0, b), Duration::ZERO);
    }
}
