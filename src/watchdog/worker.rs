//! Attach-mode detection: no task hooks, so the watchdog reads what tokio publishes on
//! stable (each worker's park/unpark count, park count and busy time), what the kernel says
//! about the runtime's threads (`/proc/self/task/<tid>/schedstat` and `stat`), and the
//! probe.
//!
//! # Rules
//!
//! **Worker stall** (`detection: "worker"`). tokio publishes a worker's counters when it
//! parks, right after it wakes, and every 61 scheduler ticks while it runs (its
//! `event_interval` maintenance; tokio 1.39 and later, 64-bit targets). So the park/unpark
//! count is odd while the worker is parked and even while it runs tasks, and a worker
//! running many short polls changes its busy time at least every 61 of them. Counters that
//! stay the same and even mean the worker is inside one poll (or inside fewer than 61 polls
//! that together take that long: see the README's limits). Each tick, for every worker:
//! 1. counters changed, or the thread known to run the worker polled one of pollwatch's
//!    tasks since the last tick: progress. An open episode closes (measured to now), and
//!    the silence restarts;
//! 2. odd: parked;
//! 3. even and unchanged: silent since the tick that saw them change, minus the time the
//!    watchdog itself lost to lateness. From the first silent tick on, the threads that may
//!    run this worker are sampled every tick: each tick shows a thread *stuck* (wanted the
//!    CPU most of the tick, or runnable at the tick, or asleep in the kernel without
//!    running), *starved* (runnable but not run at all) or *moving* (came and went);
//! 4. a candidate thread is stuck for the threshold when the silence, minus the time it
//!    waited for a CPU (ticks it did not run at all, and the run-queue time the kernel
//!    accounted in ticks where it was at least a quarter of the tick), covers it; a thread
//!    first watched well into the silence counts from then (before, the host may have kept
//!    it off the CPU); a thread that polled one of pollwatch's tasks during the silence was
//!    not stuck then, so its count starts at that poll (on a `current_thread` runtime, see
//!    below). On a tick that was not late, a stall opens for it unless it is inside
//!    `allow_blocking` (and it counts from the end of the last such scope seen), asleep on
//!    anything but a timer while another thread of the process is runnable but not running
//!    (most likely what it waits for), asleep inside an address-space call (`brk`, `mmap`,
//!    `mprotect`, ...: the process's address-space lock or memory reclaim), or its CPU
//!    share says the host starved it. Its stack is captured, `kind` comes from its CPU time
//!    over the silence, `worker` is the index whose counters stopped; `task_id` and
//!    `spawned_at` are unknown.
//!
//! **Which thread.** Under `tokio_unstable` tokio says (`worker_thread_id`). Otherwise the
//! candidates are the registered worker threads (see [`crate::attach`]) that are not
//! parked (when pollwatch's park hooks say so) and are not the latest thread seen running
//! another worker index (if there are none, the registered threads not yet seen acting as
//! workers: a worker that got work before it first parked); if one of them is the latest
//! seen running this index, it alone.
//! One candidate stuck for the threshold is the culprit (the other workers keep polling
//! the probe, so they never are). Several: after one
//! more tick, the one that never came and went during the silence; if still several, the
//! worker is reported without a thread (`tid` 0, `capture: "failed"`; `kind` only if all
//! agree), unless any of them was starved or asleep in an address-space call, or some
//! thread of the process is runnable but not running: the stuck one may be the host's.
//! None (no thread the agent has met, or none stuck): no report, since nothing can show
//! that the host did not simply starve it.
//!
//! **`current_thread` runtimes** are driven by whichever thread calls `block_on`, and one
//! nobody drives (between two `block_on` calls) publishes nothing either, exactly like a
//! stuck one. So the candidate is the thread that drove it last (tokio's
//! `worker_thread_id` under `tokio_unstable`; else the last to poll the probe, park, build
//! the runtime or attach), and it must have looked stuck on every tick for the threshold
//! (time it waited for a CPU aside): a tick where it came and went restarts the count, and
//! the stall counts from there. Before the runtime is first seen running, a stall also needs a task
//! that is not waiting in the injection queue (`num_alive_tasks > global_queue_depth`).
//!
//! **Probe stall** (`detection: "probe"`), one episode per wake-up of the probe: it has
//! waited for the threshold (minus watchdog lateness), on a tick that was not late, some
//! worker is running tasks (if every worker is parked, the probe is only waiting for the
//! host to wake one: a busy host, not a blocked runtime), and no worker explains it: during that wait no worker was silent for the threshold (reported or
//! not: a stall exempted by `allow_blocking` or caused by host starvation is not re-reported
//! as a probe stall) and no worker episode was open. While some worker is silent for less
//! than the threshold, the probe waits up to twice the threshold for it to cross (so one
//! stuck worker gives one report, the worker's, with its stack). It closes when the probe is
//! polled, with the exact delay. No thread, stack or worker: it is the runtime as a whole.
//! With `worker_detection(false)` the probe is the only detector.
//!
//! **Shutdown.** When the runtime shuts down (the probe task is dropped), open episodes
//! close and nothing more is reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeMetrics};

use super::cpu::{self, CpuSample, CpuShare};
use super::episode::{Episode, Episodes, Suspect};
use super::probe::{Probe, ProbeWait};
use super::Tick;
use crate::attach::{self, ThreadEntry, Threads};
use crate::report::{Detection, StallKind};
use crate::state::Shared;

/// How often dead threads are forgotten and missing workers looked for.
const UPKEEP: Duration = Duration::from_secs(1);

/// Rounds of registrar tasks at most; after that the probe's own polls still register
/// whichever worker runs it.
const REGISTRAR_ROUNDS: u32 = 10;

/// What tokio has published of one worker's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Progress {
    park_unpark: u64,
    parks: u64,
    busy: Duration,
}

impl Progress {
    /// `None` where tokio has no per-worker counters (targets without 64-bit atomics).
    fn read(metrics: &RuntimeMetrics, worker: usize) -> Option<Progress> {
        #[cfg(target_has_atomic = "64")]
        {
            Some(Progress {
                park_unpark: metrics.worker_park_unpark_count(worker),
                parks: metrics.worker_park_count(worker),
                busy: metrics.worker_total_busy_duration(worker),
            })
        }
        #[cfg(not(target_has_atomic = "64"))]
        {
            let _ = (metrics, worker);
            None
        }
    }

    fn parked(&self) -> bool {
        self.park_unpark % 2 == 1
    }
}

/// One worker between ticks.
struct WorkerWatch {
    progress: Progress,
    /// The tick that saw the counters change last; the silence is counted from it.
    since: Instant,
    /// The tick before it: the change happened after this, so a stall's duration is
    /// counted from here (an upper bound, never shorter than the stall).
    changed_after: Instant,
    since_raw: u64,
    /// Watchdog lateness so far at `since`.
    lost_base: Duration,
    /// The open episode, the instant its duration counts from, and its thread.
    episode: Option<(Episode, Instant)>,
    episode_thread: Option<Arc<ThreadEntry>>,
    /// The thread known to run this worker and its last poll of a pollwatch task, as seen
    /// on the previous tick: a newer poll is progress tokio did not publish (two long polls
    /// back to back, with the probe polled between them, are two stalls, not one).
    runner_poll: Option<(i32, u64)>,
}

impl WorkerWatch {
    fn new(
        progress: Progress,
        now: Instant,
        changed_after: Instant,
        now_raw: u64,
        lost: Duration,
    ) -> Self {
        WorkerWatch {
            progress,
            since: now,
            changed_after,
            since_raw: now_raw,
            lost_base: lost,
            episode: None,
            episode_thread: None,
            runner_poll: None,
        }
    }
}

/// A thread that may be a silent worker, sampled every tick while it may.
struct Track {
    tid: i32,
    /// The detector's tick count when last sampled (stale tracks are dropped).
    seen: u64,
    first: Option<CpuSample>,
    last: Option<CpuSample>,
    /// Since when no tick has shown the thread come and go, and the sample then; the
    /// stretch began after `stuck_after` (the sample before).
    stuck_since: Instant,
    stuck_after: Instant,
    stuck_base: Option<CpuSample>,
    /// Some tick showed the thread come and go (else the stretch is the whole track, and
    /// a track that began after the silence did tells nothing of the ticks before it).
    moved: bool,
    /// Time in that stretch (and since the track began) the thread waited for a CPU: the
    /// host's, not the future's, so it does not count towards a stall.
    host: HostWait,
    host_total: HostWait,
    /// Ticks that wanted the CPU (stuck on it, or starved of it) and ticks asleep, since the
    /// track began and in the current stretch: the stall's `kind` by majority, which unlike
    /// CPU time does not miss run-queue time the kernel has not accounted yet.
    votes: Votes,
    stretch_votes: Votes,
    /// The thread's count of `allow_blocking` exits as last seen, and the last tick that saw
    /// it inside a scope or past a new exit: blocking up to then was allowed.
    exempt_exits: u32,
    allowed_until: Option<Instant>,
}

/// Ticks that wanted the CPU and ticks asleep.
#[derive(Clone, Copy, Debug, Default)]
struct Votes {
    cpu: u32,
    asleep: u32,
}

impl Votes {
    fn add(&mut self, kind: StallKind) {
        match kind {
            StallKind::Cpu => self.cpu += 1,
            StallKind::OffCpu => self.asleep += 1,
            StallKind::Unknown => {}
        }
    }

    /// The majority, if there is one.
    fn kind(&self) -> Option<StallKind> {
        match self.cpu.cmp(&self.asleep) {
            std::cmp::Ordering::Greater => Some(StallKind::Cpu),
            std::cmp::Ordering::Less => Some(StallKind::OffCpu),
            std::cmp::Ordering::Equal => None,
        }
    }
}

/// A tick's run-queue time counts when it is at least this fraction (inverted) of the tick.
const HOST_SHARE: u32 = 4;

/// The time a thread waited for a CPU, from two sources that overlap: a tick where it did
/// not run at all counts whole at once (the kernel accounts a wait only when it ends), and
/// the run-queue time the kernel has accounted counts once the part of it already counted
/// that way is used up. A tick with less than [`HOST_SHARE`]⁻¹ of run-queue time counts
/// none of it: that much is the ordinary latency of waking up and sharing a core, which
/// every poll pays, and not the host holding the thread back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct HostWait {
    waited: Duration,
    /// Starved ticks' time that the kernel's run-queue time has not accounted yet.
    unaccounted: Duration,
}

impl HostWait {
    /// One tick of `wall` time, `starved` (not run at all) or not, over which the kernel's
    /// run-queue time grew by `queued`.
    fn add(&mut self, starved: bool, wall: Duration, queued: Duration) {
        let fresh = queued.saturating_sub(self.unaccounted);
        self.unaccounted = self.unaccounted.saturating_sub(queued);
        if queued * HOST_SHARE >= wall {
            self.waited += fresh;
        }
        if starved {
            self.waited += wall;
            self.unaccounted += wall;
        }
    }
}

/// What one tick shows of a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Look {
    /// Wanted the CPU most of the tick (`cpu`), or did not run at all while asleep in the
    /// kernel (`off_cpu`): what one stuck poll looks like.
    Stuck(StallKind),
    /// Runnable, but the host did not run it.
    Starved,
    /// Short runs between waits: a thread that comes and goes.
    Moving,
}

impl Track {
    fn new(e: &ThreadEntry, seen: u64, now: Instant) -> Track {
        let tid = e.tid();
        let s = cpu::sample(tid);
        Track {
            tid,
            seen,
            first: s,
            last: s,
            stuck_since: now,
            stuck_after: now,
            stuck_base: s,
            moved: false,
            host: HostWait::default(),
            host_total: HostWait::default(),
            votes: Votes::default(),
            stretch_votes: Votes::default(),
            exempt_exits: e.exempt_exits(),
            allowed_until: e.exempt().then_some(now),
        }
    }

    /// Notes whether the thread is in, or has left, an `allow_blocking` scope since the
    /// last tick.
    fn note_exempt(&mut self, e: &ThreadEntry, now: Instant) {
        let exits = e.exempt_exits();
        if e.exempt() || exits != self.exempt_exits {
            self.exempt_exits = exits;
            self.allowed_until = Some(now);
        }
    }

    fn update(&mut self, seen: u64, now: Instant) {
        if self.seen == seen {
            return;
        }
        self.seen = seen;
        let s = cpu::sample(self.tid);
        let look = match (&self.last, &s) {
            (Some(a), Some(b)) => look(a, b, cpu::scheduler_state(self.tid)),
            _ => Look::Moving,
        };
        let vote = match look {
            Look::Stuck(kind) => Some(kind),
            Look::Starved => Some(StallKind::Cpu),
            Look::Moving => None,
        };
        if let (Some(a), Some(b)) = (&self.last, &s) {
            let wall = b.at.saturating_duration_since(a.at);
            let queued = Duration::from_nanos(b.runqueue_ns.saturating_sub(a.runqueue_ns));
            for host in [&mut self.host, &mut self.host_total] {
                host.add(look == Look::Starved, wall, queued);
            }
        }
        if look == Look::Moving {
            self.moved = true;
            self.stuck_after = self.last.map_or(now, |l| l.at);
            self.stuck_since = now;
            self.stuck_base = s;
            self.host = HostWait::default();
            self.stretch_votes = Votes::default();
        }
        if let Some(kind) = vote {
            self.votes.add(kind);
            self.stretch_votes.add(kind);
        }
        self.last = s;
    }

    /// CPU share from `from` (or the first sample) to the last sample.
    fn share(&self, from: Option<&CpuSample>) -> Option<CpuShare> {
        let a = from.or(self.first.as_ref())?;
        CpuShare::between(a, self.last.as_ref()?)
    }
}

/// What the thread did between two samples, given its scheduler state at the second. The
/// kernel accounts run-queue time only once a thread runs again, hence the state: a thread
/// that is runnable (`R`) at a tick wants the CPU, whatever the counters say yet.
fn look(a: &CpuSample, b: &CpuSample, state: Option<u8>) -> Look {
    let wall = b.at.saturating_duration_since(a.at).as_nanos() as u64;
    let ran = b.on_cpu_ns.saturating_sub(a.on_cpu_ns);
    let queued = b.runqueue_ns.saturating_sub(a.runqueue_ns);
    let asleep = matches!(state, Some(b'S' | b'D' | b'I'));
    if ran == 0 && b.timeslices == a.timeslices {
        return if asleep {
            Look::Stuck(StallKind::OffCpu)
        } else {
            Look::Starved
        };
    }
    if state == Some(b'R') || (ran + queued).saturating_mul(2) >= wall {
        Look::Stuck(StallKind::Cpu)
    } else {
        Look::Moving
    }
}

/// One wake-up of the probe.
struct ProbeWatch {
    woken_at: u64,
    lost_base: Duration,
    waited: Duration,
    /// A worker explained (part of) this wait: it is never a probe stall.
    explained: bool,
    episode: Option<Episode>,
}

/// Attach mode's detectors: per worker, and the probe.
pub(crate) struct AttachDetector {
    /// The runtime's threads, as they registered themselves.
    threads: Arc<Threads>,
    handle: Handle,
    current_thread: bool,
    workers: Vec<Option<WorkerWatch>>,
    tracks: Vec<Track>,
    ticks: u64,
    probe: Option<ProbeWatch>,
    next_upkeep: Instant,
    /// When the previous tick ran.
    last_tick: Instant,
    registrar_rounds: u32,
    finished: bool,
}

/// Who is stuck, as far as can be told.
enum Culprit {
    /// Nothing to report this tick.
    Wait,
    /// This thread; the stall counts from the instant given.
    Thread(Arc<ThreadEntry>, Instant),
    /// A worker whose thread cannot be told apart from these (possibly none).
    Unresolved(Vec<Arc<ThreadEntry>>),
}

/// What one silent worker tells the probe rule.
#[derive(Default)]
struct Silence {
    /// Silent for the threshold: explains a late probe.
    explains: bool,
    /// Silent for a tick: may explain it soon.
    suspect: bool,
}

impl AttachDetector {
    /// `started`: when the agent started, before which nothing it reports can have begun.
    pub(crate) fn new(threads: Arc<Threads>, handle: Handle, started: Instant) -> Self {
        AttachDetector {
            threads,
            current_thread: handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread,
            handle,
            workers: Vec::new(),
            tracks: Vec::new(),
            ticks: 0,
            probe: None,
            next_upkeep: Instant::now(),
            last_tick: started,
            registrar_rounds: 0,
            finished: false,
        }
    }

    pub(crate) fn tick(
        &mut self,
        shared: &Arc<Shared>,
        tick: &Tick,
        probe: &Probe,
        wait: Option<ProbeWait>,
        episodes: &mut Episodes,
    ) {
        if self.finished {
            return;
        }
        let now = Instant::now();
        if probe.closed() {
            // The runtime shut down: what was open ends now, and nothing more is reported.
            for w in self.workers.iter_mut().flatten() {
                if let Some((ep, from)) = w.episode.take() {
                    episodes.close(ep, now.saturating_duration_since(from));
                }
            }
            self.close_probe(probe, episodes);
            self.finished = true;
            return;
        }
        if now >= self.next_upkeep {
            self.upkeep(shared);
            self.next_upkeep = now + UPKEEP;
        }
        self.ticks += 1;
        let silence = if shared.config.worker_detection {
            self.watch_workers(shared, tick, now, episodes)
        } else {
            Silence::default()
        };
        let ticks = self.ticks;
        self.tracks.retain(|t| t.seen == ticks);
        self.watch_probe(shared, tick, probe, wait, &silence, episodes);
        self.last_tick = now;
    }

    /// Forgets threads that exited; looks for workers no registered thread runs yet.
    fn upkeep(&mut self, shared: &Arc<Shared>) {
        self.threads.prune();
        let hooks = self
            .threads
            .hooks_installed
            .load(std::sync::atomic::Ordering::Relaxed);
        if !hooks
            && !self.current_thread
            && shared.config.worker_detection
            && self.registrar_rounds < REGISTRAR_ROUNDS
        {
            let workers = self.handle.metrics().num_workers();
            if self.threads.known_workers(true) < workers {
                self.registrar_rounds += 1;
                attach::spawn_registrars(&self.threads, &shared.clock, &self.handle);
            }
        }
    }

    /// The per-worker rules, for every worker.
    fn watch_workers(
        &mut self,
        shared: &Arc<Shared>,
        tick: &Tick,
        now: Instant,
        episodes: &mut Episodes,
    ) -> Silence {
        let metrics = self.handle.metrics();
        let n = metrics.num_workers();
        if self.workers.len() != n {
            self.workers.resize_with(n, || None);
        }
        let mut silence = Silence::default();
        let mut entries = None;
        for i in 0..n {
            let Some(progress) = Progress::read(&metrics, i) else {
                continue;
            };
            match self.workers[i].take() {
                Some(mut w) if w.progress == progress => {
                    if !progress.parked() {
                        silence.suspect = true;
                        silence.explains |= self.watch_silent(
                            shared,
                            tick,
                            now,
                            &metrics,
                            i,
                            &mut w,
                            &mut entries,
                            episodes,
                        );
                    }
                    self.workers[i] = Some(w);
                }
                old => {
                    // Progress: whatever was stuck is not any more.
                    if let Some((ep, from)) = old.and_then(|w| w.episode) {
                        episodes.close(ep, now.saturating_duration_since(from));
                    }
                    self.workers[i] = Some(WorkerWatch::new(
                        progress,
                        now,
                        self.last_tick.min(now),
                        shared.clock.raw(),
                        tick.lost,
                    ));
                }
            }
        }
        silence
    }

    /// One worker whose counters are even and unchanged since the last tick. Returns
    /// whether it has been silent for the threshold.
    #[allow(clippy::too_many_arguments)]
    fn watch_silent(
        &mut self,
        shared: &Arc<Shared>,
        tick: &Tick,
        now: Instant,
        metrics: &RuntimeMetrics,
        i: usize,
        w: &mut WorkerWatch,
        entries: &mut Option<Vec<Arc<ThreadEntry>>>,
        episodes: &mut Episodes,
    ) -> bool {
        let threshold = shared.config.stall_threshold;
        let lost = tick.lost.saturating_sub(w.lost_base);
        let silent = now.saturating_duration_since(w.since).saturating_sub(lost);
        let entries = entries.get_or_insert_with(|| self.threads.snapshot());
        let runner = w
            .episode_thread
            .clone()
            .or_else(|| runner_of(metrics, self.current_thread, i, entries));
        let runner_poll = runner.as_ref().map(|r| (r.tid(), r.last_poll()));
        if let (Some((tid, before)), Some((now_tid, poll))) = (w.runner_poll, runner_poll) {
            if tid == now_tid && poll != before {
                // Its thread polled another task: the stuck poll (if any) is over.
                if let Some((ep, from)) = w.episode.take() {
                    episodes.close(ep, now.saturating_duration_since(from));
                }
                let now_raw = shared.clock.raw();
                let ago =
                    Duration::from_nanos(shared.clock.delta_as_nanos(poll.min(now_raw), now_raw));
                let polled_at = now.checked_sub(ago).unwrap_or(now);
                *w = WorkerWatch::new(w.progress, now, polled_at, now_raw, tick.lost);
                w.runner_poll = runner_poll;
                return false;
            }
        }
        w.runner_poll = runner_poll;
        if let Some((ep, from)) = &mut w.episode {
            episodes.still_stuck(ep, now.saturating_duration_since(*from));
            return silent >= threshold;
        }
        let candidates = candidates(metrics, self.current_thread, i, entries);
        for c in &candidates {
            let tid = c.tid();
            match self.tracks.iter_mut().find(|t| t.tid == tid) {
                Some(t) => {
                    t.update(self.ticks, now);
                    t.note_exempt(c, now);
                }
                None => self.tracks.push(Track::new(c, self.ticks, now)),
            }
        }
        if tick.late || silent < threshold {
            return silent >= threshold;
        }
        let culprit = self.culprit(shared, metrics, w, candidates, now, silent, lost);
        let (thread, kind, from) = match culprit {
            Culprit::Wait => return true,
            Culprit::Thread(e, from) => {
                if e.exempt() {
                    return true;
                }
                let stretch = from > w.changed_after;
                let share = self.share_of(&e, stretch.then_some(from));
                if share.is_some_and(|s| s.starved()) {
                    return true;
                }
                // Asleep on a lock whose holder is most likely descheduled: the host's.
                if cpu::waits_for_the_host(e.tid()) {
                    return true;
                }
                let kind = self.kind_of(&e, stretch);
                (Some(e), kind, from)
            }
            Culprit::Unresolved(cands) => {
                // The stuck thread is one of these and nothing tells which: if any of them
                // was kept off the CPU by the host, or waits for it, it may be that one, and
                // a report would blame a future for the host's doing.
                let starved = cands
                    .iter()
                    .any(|e| self.share_of(e, None).is_some_and(|s| s.starved()));
                let allocating = cands
                    .iter()
                    .any(|e| cpu::asleep_in_an_address_space_call(e.tid()));
                // While some thread of the process waits for a CPU, a worker that cannot be
                // told apart may be waiting for it.
                if starved || allocating || cpu::another_thread_is_starved(0) {
                    return true;
                }
                // The stuck thread is one of these: if they all agree, so does it.
                let kinds: Vec<Option<StallKind>> =
                    cands.iter().map(|e| self.kind_of(e, false)).collect();
                let agreed = match kinds.first() {
                    Some(Some(k)) if kinds.iter().all(|x| *x == Some(*k)) => Some(*k),
                    _ => None,
                };
                (None, agreed, w.changed_after)
            }
        };
        let ep = episodes.open(Suspect {
            detection: Detection::Worker,
            thread: thread.as_ref().map(|e| e.info.handle),
            thread_name: thread
                .as_ref()
                .map(|e| e.info.name.clone())
                .unwrap_or_default(),
            worker: Some(i),
            task_id: None,
            spawned_at: None,
            stuck_for: now.saturating_duration_since(from),
            kind: kind.unwrap_or(StallKind::Unknown),
        });
        w.episode = Some((ep, from));
        w.runner_poll = thread.as_ref().map(|e| (e.tid(), e.last_poll()));
        w.episode_thread = thread;
        true
    }

    /// Whether `e`'s thread wanted the CPU through the stall: the majority of its ticks
    /// (in the current stretch, or since it was first watched), else its CPU share.
    fn kind_of(&self, e: &ThreadEntry, stretch: bool) -> Option<StallKind> {
        let t = self.tracks.iter().find(|t| t.tid == e.tid())?;
        let votes = if stretch { t.stretch_votes } else { t.votes };
        votes.kind().or_else(|| {
            let base = if stretch { t.stuck_base.as_ref() } else { None };
            t.share(base).map(|s| s.kind())
        })
    }

    /// The CPU share of `e`'s thread since `from`'s sample (else since it was first watched).
    fn share_of(&self, e: &ThreadEntry, from: Option<Instant>) -> Option<CpuShare> {
        let t = self.tracks.iter().find(|t| t.tid == e.tid())?;
        let base = from.and(t.stuck_base.as_ref());
        t.share(base)
    }

    /// How long `e`'s thread has been stuck, if it can tell, and the instant the stall
    /// counts from (an upper bound of its start).
    ///
    /// Multi-thread worker: the silence (from the thread's first sample, if that came well
    /// into it), minus the time the thread waited for a CPU (the host's, not the future's:
    /// on a loaded host 61 short polls, the most tokio runs without publishing, can take
    /// longer than the threshold). `current_thread` runtime: a
    /// runtime nobody drives is as silent as a stuck one, so its last driver must also have
    /// looked stuck on every tick (wanted the CPU most of the tick, or did not run while
    /// asleep in the kernel); a tick where it came and went restarts the count. Either way,
    /// a thread that polled one of pollwatch's tasks during the silence was not stuck then:
    /// its stall can only have begun after that poll.
    ///
    /// A thread whose scheduler statistics cannot be read (no procfs) is taken at the
    /// counters' word.
    #[allow(clippy::too_many_arguments)]
    fn stuck_for(
        &self,
        shared: &Shared,
        e: &ThreadEntry,
        w: &WorkerWatch,
        now: Instant,
        lost: Duration,
        slack: Duration,
    ) -> (Duration, Instant) {
        let (mut since, mut from) = (w.since, w.changed_after);
        let track = self
            .tracks
            .iter()
            .find(|t| t.tid == e.tid())
            .filter(|t| t.last.is_some());
        let mut waited = track.map_or(Duration::ZERO, |t| t.host_total.waited);
        if let Some(t) = track {
            // Watched only from well into the silence: what came before is unknown (the
            // host may have kept it off the CPU then), so the count starts there.
            if let Some(first) = t.first.filter(|f| f.at > w.since + slack) {
                since = since.max(first.at);
            }
        }
        if let Some(t) = track.filter(|_| self.current_thread) {
            if t.moved && t.stuck_since > w.since + slack {
                (since, from) = (t.stuck_since, t.stuck_after);
            }
            waited = t.host.waited;
        }
        // Blocking inside `allow_blocking` was allowed: the stall counts from its end.
        let allowed = self
            .tracks
            .iter()
            .find(|t| t.tid == e.tid())
            .and_then(|t| t.allowed_until);
        if let Some(at) = allowed {
            since = since.max(at);
            from = from.max(at);
        }
        let polled = e.last_poll();
        if polled > w.since_raw {
            let now_raw = shared.clock.raw();
            let ago =
                Duration::from_nanos(shared.clock.delta_as_nanos(polled.min(now_raw), now_raw));
            let at = now.checked_sub(ago).unwrap_or(now);
            since = since.max(at);
            from = from.max(at);
        }
        let stuck = now
            .saturating_duration_since(since)
            .saturating_sub(lost)
            .saturating_sub(waited);
        (stuck, from)
    }

    /// The candidates stuck for the threshold, with the instant each stall counts from.
    /// One is the culprit. Several get a tick's patience, then the ones whose threads never
    /// came and went during the silence; if still several, they cannot be told apart.
    #[allow(clippy::too_many_arguments)]
    fn culprit(
        &self,
        shared: &Shared,
        metrics: &RuntimeMetrics,
        w: &WorkerWatch,
        candidates: Vec<Arc<ThreadEntry>>,
        now: Instant,
        silent: Duration,
        lost: Duration,
    ) -> Culprit {
        let threshold = shared.config.stall_threshold;
        let tick_len = shared.config.watchdog_tick;
        if self.current_thread
            && !self.threads.driven()
            && metrics.num_alive_tasks() <= metrics.global_queue_depth()
        {
            return Culprit::Wait; // nothing has been polled yet: nothing can be stuck
        }
        let stuck: Vec<(Arc<ThreadEntry>, Instant)> = candidates
            .into_iter()
            .filter_map(|e| {
                let (stuck, from) = self.stuck_for(shared, &e, w, now, lost, tick_len * 2);
                (stuck >= threshold).then_some((e, from))
            })
            .collect();
        if stuck.len() <= 1 {
            return match stuck.into_iter().next() {
                Some((e, from)) => Culprit::Thread(e, from),
                None => Culprit::Wait,
            };
        }
        let steady: Vec<&(Arc<ThreadEntry>, Instant)> = stuck
            .iter()
            .filter(|(e, _)| {
                self.tracks
                    .iter()
                    .find(|t| t.tid == e.tid())
                    .is_some_and(|t| t.stuck_since <= w.since + tick_len * 2)
            })
            .collect();
        match steady.as_slice() {
            [(e, from)] => Culprit::Thread(e.clone(), *from),
            _ if silent < threshold + tick_len => Culprit::Wait,
            _ => Culprit::Unresolved(stuck.into_iter().map(|(e, _)| e).collect()),
        }
    }

    /// The probe rule (see the module docs).
    fn watch_probe(
        &mut self,
        shared: &Shared,
        tick: &Tick,
        probe: &Probe,
        wait: Option<ProbeWait>,
        silence: &Silence,
        episodes: &mut Episodes,
    ) {
        let Some(wait) = wait else {
            self.close_probe(probe, episodes);
            return;
        };
        if self
            .probe
            .as_ref()
            .is_some_and(|p| p.woken_at != wait.woken_at)
        {
            self.close_probe(probe, episodes);
        }
        let worker_open = self.workers.iter().flatten().any(|w| w.episode.is_some());
        let p = self.probe.get_or_insert(ProbeWatch {
            woken_at: wait.woken_at,
            lost_base: tick.lost_before,
            waited: Duration::ZERO,
            explained: false,
            episode: None,
        });
        p.waited = wait.waited;
        p.explained |= silence.explains || worker_open;
        if let Some(ep) = &mut p.episode {
            episodes.still_stuck(ep, wait.waited);
            return;
        }
        let threshold = shared.config.stall_threshold;
        let waited = wait
            .waited
            .saturating_sub(tick.lost.saturating_sub(p.lost_base));
        if p.explained
            || tick.late
            || waited < threshold
            || (silence.suspect && waited < threshold * 2)
            || !some_worker_runs(&self.handle)
        {
            return;
        }
        p.episode = Some(episodes.open(Suspect {
            detection: Detection::Probe,
            thread: None,
            thread_name: String::new(),
            worker: None,
            task_id: None,
            spawned_at: None,
            stuck_for: wait.waited,
            kind: StallKind::Unknown,
        }));
    }

    /// The probe was polled (or the runtime is gone): its episode, if any, ends with the
    /// exact delay.
    fn close_probe(&mut self, probe: &Probe, episodes: &mut Episodes) {
        if let Some(p) = self.probe.take() {
            if let Some(ep) = p.episode {
                episodes.close(ep, probe.answered(p.woken_at).unwrap_or(p.waited));
            }
        }
    }
}

/// Whether any worker's published count says it is running tasks. When every worker is
/// parked, a late probe only waits for the host to wake one (a timer wake-up delayed by a
/// busy host): nothing blocks the runtime. Unknown (no per-worker counters): yes.
fn some_worker_runs(handle: &Handle) -> bool {
    let metrics = handle.metrics();
    (0..metrics.num_workers()).any(|i| Progress::read(&metrics, i).is_none_or(|p| !p.parked()))
}

/// The thread known to run worker `i` right now, if any: tokio's word under
/// `tokio_unstable`, the driver of a `current_thread` runtime, else the latest thread seen
/// polling while it was certainly worker `i`.
fn runner_of(
    metrics: &RuntimeMetrics,
    current_thread: bool,
    i: usize,
    entries: &[Arc<ThreadEntry>],
) -> Option<Arc<ThreadEntry>> {
    #[cfg(tokio_unstable)]
    if let Some(id) = metrics.worker_thread_id(i) {
        return entries.iter().find(|e| e.info.thread_id == id).cloned();
    }
    #[cfg(not(tokio_unstable))]
    let _ = metrics;
    if current_thread {
        return entries
            .iter()
            .filter(|e| e.last_drive() > 0)
            .max_by_key(|e| e.last_drive())
            .cloned();
    }
    entries
        .iter()
        .filter_map(|e| e.index().filter(|(j, _)| *j == i).map(|(_, at)| (at, e)))
        .max_by_key(|(at, _)| *at)
        .map(|(_, e)| e.clone())
}

/// The threads that may be worker `i` (see the module docs).
fn candidates(
    metrics: &RuntimeMetrics,
    current_thread: bool,
    i: usize,
    entries: &[Arc<ThreadEntry>],
) -> Vec<Arc<ThreadEntry>> {
    #[cfg(tokio_unstable)]
    if let Some(id) = metrics.worker_thread_id(i) {
        return entries
            .iter()
            .filter(|e| e.info.thread_id == id)
            .take(1)
            .cloned()
            .collect();
    }
    if current_thread {
        return entries
            .iter()
            .filter(|e| e.last_drive() > 0)
            .max_by_key(|e| e.last_drive())
            .cloned()
            .into_iter()
            .collect();
    }
    // Only the latest thread seen running an index still runs it.
    let runs = |e: &ThreadEntry, j: usize| {
        e.index().is_some_and(|(k, at)| {
            k == j
                && entries
                    .iter()
                    .filter_map(|o| o.index())
                    .all(|(ok, oat)| ok != j || oat <= at)
        })
    };
    let workers = metrics.num_workers();
    let may_be = |e: &&Arc<ThreadEntry>| {
        e.parked() != Some(true) && !(0..workers).any(|j| j != i && runs(e, j))
    };
    let mut possible: Vec<Arc<ThreadEntry>> = entries
        .iter()
        .filter(|e| e.is_worker() && may_be(e))
        .cloned()
        .collect();
    if possible.is_empty() {
        // A runtime built through pollwatch registers its threads as they start: a worker
        // that got work before it ever parked or polled the probe is not marked as one yet.
        possible = entries
            .iter()
            .filter(|e| !e.is_worker() && may_be(e))
            .cloned()
            .collect();
    }
    let known: Vec<Arc<ThreadEntry>> = possible.iter().filter(|e| runs(e, i)).cloned().collect();
    if known.len() == 1 {
        known
    } else {
        possible
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn sample(base: Instant, at_ms: u64, on_cpu_ms: u64, queued_ms: u64, slices: u64) -> CpuSample {
        CpuSample {
            at: base + Duration::from_millis(at_ms),
            on_cpu_ns: on_cpu_ms * 1_000_000,
            runqueue_ns: queued_ms * 1_000_000,
            timeslices: slices,
        }
    }

    #[test]
    fn a_tick_reads_as_stuck_starved_or_moving() {
        let t = Instant::now();
        let a = sample(t, 0, 100, 50, 10);
        // Ran the whole tick: a busy loop.
        assert_eq!(
            look(&a, &sample(t, 2, 102, 50, 10), Some(b'R')),
            Look::Stuck(StallKind::Cpu)
        );
        // Did not run, asleep: a sleep or a lock wait.
        assert_eq!(
            look(&a, &sample(t, 2, 100, 50, 10), Some(b'S')),
            Look::Stuck(StallKind::OffCpu)
        );
        // Did not run, runnable: the host's.
        assert_eq!(
            look(&a, &sample(t, 2, 100, 50, 10), Some(b'R')),
            Look::Starved
        );
        // Ran a little between sleeps: comes and goes.
        assert_eq!(
            look(&a, &sample(t, 10, 101, 50, 14), Some(b'S')),
            Look::Moving
        );
        // Ran a third of the tick and waited for a CPU the rest: wanted the CPU throughout.
        assert_eq!(
            look(&a, &sample(t, 9, 103, 56, 13), Some(b'S')),
            Look::Stuck(StallKind::Cpu)
        );
    }

    #[test]
    fn time_waited_for_a_cpu_is_counted_once_from_either_source() {
        let mut w = HostWait::default();
        // Waking up and sharing a core: 0.4 ms of a 2 ms tick is the poll's own time.
        w.add(false, 2 * MS, Duration::from_micros(400));
        assert_eq!(w.waited, Duration::ZERO);
        // A tick of queueing the kernel accounted: 1 ms of a 2 ms tick.
        w.add(false, 2 * MS, MS);
        assert_eq!(w.waited, MS);
        // Two ticks not run at all: 4 ms at once, before the kernel accounts any of it.
        w.add(true, 2 * MS, Duration::ZERO);
        w.add(true, 2 * MS, Duration::ZERO);
        assert_eq!(w.waited, 5 * MS);
        // The wait ends: the kernel accounts 5 ms, 4 of which were counted already.
        w.add(false, 2 * MS, 5 * MS);
        assert_eq!(w.waited, 6 * MS);
        assert_eq!(w.unaccounted, Duration::ZERO);
        // Later queueing counts in full again.
        w.add(false, 2 * MS, MS);
        assert_eq!(w.waited, 7 * MS);
    }
}
