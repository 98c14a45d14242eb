//! Per-worker poll slots: the only memory the poll hooks write.
//!
//! Each worker thread claims one cache-line-aligned [`PollSlot`] the first time it polls a
//! task. The before-poll hook writes the task id and the spawn location's index, then makes
//! the slot's generation odd; the after-poll hook counts the poll and makes the generation
//! even again. Stall detection needs nothing more: the watchdog sees a generation that stays
//! odd. All of it is plain loads and stores by the owning thread: no lock, no allocation, no
//! syscall, no cache line shared with another worker.
//!
//! Reading a clock is the expensive part of a hook (about 20 ns per read on the machines we
//! measured, see `BENCHMARKS.md`), so poll *timing* is sampled: one poll in
//! `Config::poll_time_sample_every` per thread is timed, and recorded with that weight in
//! the slot's histogram shard and callsite poll time. A poll the watchdog is watching as a
//! stall always gets its end time read, so a stall's duration stays exact.
//!
//! The watchdog reads slots like a seqlock: generation, fields, generation again.

use std::cell::{Cell, RefCell};
use std::hash::{Hash, Hasher};
use std::panic::Location;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering::*};
use std::sync::Mutex;

use crate::stats::histogram::HistogramShard;
use crate::thread_info::ThreadInfo;

/// What the watchdog sees in a slot at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PollView {
    pub(crate) generation: u64,
    pub(crate) task_id: u64,
    /// Where the polled task was spawned (also beyond the callsite table's cap, and with
    /// callsite statistics off).
    pub(crate) spawned_at: Option<&'static Location<'static>>,
    /// Raw clock reading at poll start.
    pub(crate) start: u64,
    /// Inside an `allow_blocking` scope.
    pub(crate) exempt: bool,
    /// `allow_blocking` scopes this thread has left: a change means the current poll spent
    /// time in one, which does not count towards a stall.
    pub(crate) exempt_exits: u32,
}

#[repr(align(128))]
pub(crate) struct PollSlot {
    /// Position in its table (fixed): the index of per-thread state kept elsewhere.
    index: usize,
    /// 0 when free, else the claim number (changes on every reuse).
    owner: AtomicU64,
    /// The owning thread's `ThreadId`, hashed, for finding a thread's slot again.
    thread_key: AtomicU64,
    info: Mutex<Option<ThreadInfo>>,
    /// Odd while a poll runs.
    generation: AtomicU64,
    task_id: AtomicU64,
    spawned_at: AtomicPtr<Location<'static>>,
    /// Index into the callsite counters, [`NO_CALLSITE`] when they are off.
    callsite: AtomicU32,
    exempt: AtomicU32,
    exempt_exits: AtomicU32,
    /// Polls left until the next timed one (owning thread only).
    timing_countdown: AtomicU32,
    /// Raw clock reading at the start of the current poll when it is timed, else 0.
    poll_start: AtomicU64,
    /// Set by the watchdog while a stall episode is open on this slot: the after-poll hook
    /// then records `poll_end`, so the episode's duration is exact.
    watched: std::sync::atomic::AtomicBool,
    poll_end: AtomicU64,
    pub(crate) poll_time: HistogramShard,
    callsite_polls: Box<[AtomicU64]>,
    callsite_poll_ns: Box<[AtomicU64]>,
}

impl PollSlot {
    fn new(index: usize, callsites: usize) -> Self {
        PollSlot {
            index,
            owner: AtomicU64::new(0),
            thread_key: AtomicU64::new(0),
            info: Mutex::new(None),
            generation: AtomicU64::new(0),
            task_id: AtomicU64::new(0),
            spawned_at: AtomicPtr::new(std::ptr::null_mut()),
            callsite: AtomicU32::new(0),
            exempt: AtomicU32::new(0),
            exempt_exits: AtomicU32::new(0),
            timing_countdown: AtomicU32::new(0),
            poll_start: AtomicU64::new(0),
            watched: std::sync::atomic::AtomicBool::new(false),
            poll_end: AtomicU64::new(0),
            poll_time: HistogramShard::new(),
            callsite_polls: (0..callsites).map(|_| AtomicU64::new(0)).collect(),
            callsite_poll_ns: (0..callsites).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn reset(&self) {
        self.owner.store(0, Relaxed);
        self.thread_key.store(0, Relaxed);
        *self.info.lock().unwrap_or_else(|e| e.into_inner()) = None;
        for a in [
            &self.generation,
            &self.task_id,
            &self.poll_start,
            &self.poll_end,
        ] {
            a.store(0, Relaxed);
        }
        self.spawned_at.store(std::ptr::null_mut(), Relaxed);
        self.callsite.store(0, Relaxed);
        self.exempt.store(0, Relaxed);
        self.exempt_exits.store(0, Relaxed);
        self.timing_countdown.store(0, Relaxed);
        self.watched.store(false, Relaxed);
        self.poll_time.reset();
        for a in self
            .callsite_polls
            .iter()
            .chain(self.callsite_poll_ns.iter())
        {
            a.store(0, Relaxed);
        }
    }

    /// Hot path, owning thread only: is this poll the one in `every` to be timed?
    #[inline]
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) fn timing_turn(&self, every: u32) -> bool {
        let left = self.timing_countdown.load(Relaxed);
        if left <= 1 {
            self.timing_countdown.store(every, Relaxed);
            true
        } else {
            self.timing_countdown.store(left - 1, Relaxed);
            false
        }
    }

    /// Hot path, owning thread only. `callsite` is the index of the per-callsite counters
    /// to count this poll in, [`NO_CALLSITE`] for none; `start` is the raw clock reading for
    /// a timed poll, 0 for an untimed one.
    #[inline]
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) fn begin_poll(
        &self,
        task_id: u64,
        spawned_at: &'static Location<'static>,
        callsite: u32,
        start: u64,
    ) {
        // The seqlock's writer side: a reader that sees any field of this poll must also see
        // the previous poll's end (the even generation), so that its second generation read
        // rejects a view mixing two polls. No instruction on x86-64 (a compiler barrier);
        // on aarch64 a barrier, since a release store alone lets later stores pass it.
        std::sync::atomic::fence(Release);
        self.task_id.store(task_id, Relaxed);
        self.spawned_at
            .store(spawned_at as *const Location<'static> as *mut _, Relaxed);
        self.callsite.store(callsite, Relaxed);
        self.poll_start.store(start, Relaxed);
        let g = self.generation.load(Relaxed);
        self.generation.store(g | 1, Release);
    }

    /// Hot path, owning thread only: does the after-poll hook need a clock reading?
    #[inline]
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) fn needs_end_time(&self) -> bool {
        self.poll_start.load(Relaxed) != 0 || self.watched.load(Relaxed)
    }

    /// Hot path, owning thread only. `now` is a raw clock reading when
    /// [`PollSlot::needs_end_time`] said so, else 0; `weight` is the timing sample rate.
    #[inline]
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) fn end_poll(&self, now: u64, elapsed_ns: Option<u64>, weight: u64) {
        let cs = self.callsite.load(Relaxed) as usize;
        if let Some(polls) = self.callsite_polls.get(cs) {
            polls.store(polls.load(Relaxed) + 1, Relaxed);
        }
        if let Some(ns) = elapsed_ns {
            self.poll_time.record_weighted_single_writer(ns, weight);
            if let Some(total) = self.callsite_poll_ns.get(cs) {
                total.store(total.load(Relaxed).wrapping_add(ns * weight), Relaxed);
            }
        }
        if now != 0 {
            // Release: `poll_end_after` that reads this end also sees this poll's odd
            // generation, so a later poll's end is never taken for an earlier poll's.
            self.poll_end.store(now, Release);
        }
        let g = self.generation.load(Relaxed);
        self.generation.store((g | 1) + 1, Release);
    }

    /// The raw clock reading when the current poll began, 0 if it is not timed (owning
    /// thread, after-poll hook).
    #[inline]
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) fn poll_start(&self) -> u64 {
        self.poll_start.load(Relaxed)
    }

    /// The owning thread enters an `allow_blocking` scope.
    pub(crate) fn enter_exempt(&self) {
        self.exempt.fetch_add(1, Release);
    }

    /// The owning thread leaves an `allow_blocking` scope: the exit is counted, so the
    /// watchdog knows the poll spent time in one even if it never saw the scope open.
    pub(crate) fn leave_exempt(&self) {
        self.exempt_exits.fetch_add(1, Release);
        self.exempt.fetch_sub(1, Release);
    }

    /// This slot's position in its table.
    #[inline]
    #[cfg_attr(not(all(tokio_unstable, feature = "console")), allow(dead_code))]
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The watchdog opens or closes a stall episode on this slot.
    pub(crate) fn set_watched(&self, watched: bool) {
        self.watched.store(watched, Release);
    }

    /// A consistent view of the current poll, or `None` if the slot changed while read.
    pub(crate) fn view(&self) -> Option<PollView> {
        let generation = self.generation.load(Acquire);
        let view = PollView {
            generation,
            task_id: self.task_id.load(Relaxed),
            // SAFETY: only `&'static Location` pointers (or null) are ever stored here.
            spawned_at: unsafe { self.spawned_at.load(Relaxed).as_ref() },
            start: self.poll_start.load(Relaxed),
            exempt: self.exempt.load(Relaxed) > 0,
            exempt_exits: self.exempt_exits.load(Relaxed),
        };
        std::sync::atomic::fence(Acquire);
        (self.generation.load(Relaxed) == generation).then_some(view)
    }

    /// The raw clock reading at which the poll of `generation` ended, if it was recorded
    /// (the slot was watched) and no later poll has begun since.
    pub(crate) fn poll_end_after(&self, generation: u64, started: u64) -> Option<u64> {
        let end = self.poll_end.load(Acquire);
        (self.generation.load(Acquire) == generation + 1 && end > started).then_some(end)
    }

    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) fn is_claimed(&self) -> bool {
        self.owner.load(Acquire) != 0
    }

    pub(crate) fn claim_number(&self) -> u64 {
        self.owner.load(Acquire)
    }

    pub(crate) fn thread_info(&self) -> Option<ThreadInfo> {
        self.info.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `(polls, poll time in ns)` for a callsite index, from this slot alone.
    pub(crate) fn callsite_totals(&self, index: u32) -> (u64, u64) {
        let i = index as usize;
        match (self.callsite_polls.get(i), self.callsite_poll_ns.get(i)) {
            (Some(p), Some(n)) => (p.load(Relaxed), n.load(Relaxed)),
            _ => (0, 0),
        }
    }
}

/// The fixed array of slots of one agent.
///
/// Tables are never freed: a dropped agent's table goes back to a pool for the next agent,
/// so a pointer a thread cached in its thread-local always points at valid memory (see
/// [`this_threads_slot`]). Memory is bounded by the number of agents alive at once.
pub(crate) struct SlotTable {
    agent_id: AtomicU64,
    slots: Box<[PollSlot]>,
    claims: AtomicU64,
    /// Polls on threads that found no free slot (not watched; counted).
    pub(crate) untracked_polls: AtomicU64,
}

/// One agent's hold on a [`SlotTable`]: the table goes back to the pool when the last holder
/// (the agent's state, its hooks, the console thread) lets go of it.
pub(crate) struct SlotLease(&'static SlotTable);

impl SlotLease {
    /// The table itself, for code that keeps the lease alive by other means (the hooks hold
    /// the lease and copy this pointer, so the hot path loads no more than it must).
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) fn table(&self) -> &'static SlotTable {
        self.0
    }
}

impl std::ops::Deref for SlotLease {
    type Target = SlotTable;

    fn deref(&self) -> &SlotTable {
        self.0
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        // Every holder is gone: no hook can write to the slots any more.
        self.0.release();
    }
}

/// The callsite index of a poll counted in no callsite's counters (callsite statistics off):
/// out of range of every slot's counter arrays.
#[cfg_attr(not(tokio_unstable), allow(dead_code))]
pub(crate) const NO_CALLSITE: u32 = u32::MAX;

thread_local! {
    /// This thread's slot in the agent that last used it (agent id, slot).
    static CURRENT: Cell<(u64, *const PollSlot)> = const { Cell::new((0, std::ptr::null())) };
    /// Filled by `on_thread_start`, where allocating is fine, and taken by the first poll.
    static PREPARED: RefCell<Option<ThreadInfo>> = const { RefCell::new(None) };
}

/// Records who this thread is before it polls anything (called from `on_thread_start`).
pub(crate) fn prepare_current_thread() {
    let info = ThreadInfo::current();
    PREPARED.with(|p| *p.borrow_mut() = Some(info));
}

/// The integer inside an id type (`ThreadId`, tokio's task `Id`) that exposes none, read
/// through its `Hash` impl: no formatting, no unsafe code, and it inlines to a move.
#[inline]
pub(crate) fn id_integer(id: &impl Hash) -> u64 {
    struct Capture(u64);
    impl Hasher for Capture {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(*b);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }
    let mut h = Capture(0);
    id.hash(&mut h);
    h.finish()
}

fn thread_key(id: std::thread::ThreadId) -> u64 {
    id_integer(&id).max(1)
}

static POOL: Mutex<Vec<&'static SlotTable>> = Mutex::new(Vec::new());
static NEXT_AGENT_ID: AtomicU64 = AtomicU64::new(1);

impl SlotTable {
    /// A table with every counter at zero, from the pool when one of the right shape is free.
    pub(crate) fn acquire(max_threads: usize, callsites: usize) -> SlotLease {
        let agent_id = NEXT_AGENT_ID.fetch_add(1, Relaxed);
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let reused = pool
            .iter()
            .position(|t| {
                t.slots.len() == max_threads && t.slots[0].callsite_polls.len() == callsites
            })
            .map(|i| pool.swap_remove(i));
        drop(pool);
        let table = reused.unwrap_or_else(|| {
            Box::leak(Box::new(SlotTable {
                agent_id: AtomicU64::new(0),
                slots: (0..max_threads)
                    .map(|i| PollSlot::new(i, callsites))
                    .collect(),
                claims: AtomicU64::new(0),
                untracked_polls: AtomicU64::new(0),
            }))
        });
        table.agent_id.store(agent_id, Release);
        SlotLease(table)
    }

    /// Returns the table to the pool once no hook can write to it any more, zeroed.
    fn release(&'static self) {
        self.agent_id.store(0, Release);
        for slot in self.slots.iter() {
            slot.reset();
        }
        self.claims.store(0, Relaxed);
        self.untracked_polls.store(0, Relaxed);
        POOL.lock().unwrap_or_else(|e| e.into_inner()).push(self);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &PollSlot)> {
        self.slots.iter().enumerate()
    }

    /// The calling thread's slot, claiming one on first use. Hot path: one thread-local read
    /// and a compare. The first call on a thread is the slow path: once per thread.
    #[inline]
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) fn current(&self) -> Option<&PollSlot> {
        let (agent, ptr) = CURRENT.with(Cell::get);
        if agent == self.agent_id.load(Relaxed) && !ptr.is_null() {
            // SAFETY: slot tables are never freed (see `SlotTable`), and agent ids are
            // never reused, so a pointer cached under this id points into `self.slots`.
            return Some(unsafe { &*ptr });
        }
        self.register_current()
    }

    /// The calling thread's slot if it already has one, without claiming one: for hooks
    /// that also run on threads that never poll (e.g. `Runtime::spawn` from `main`).
    #[inline]
    #[cfg_attr(not(all(tokio_unstable, feature = "console")), allow(dead_code))]
    pub(crate) fn current_if_claimed(&self) -> Option<&PollSlot> {
        let (agent, ptr) = CURRENT.with(Cell::get);
        if agent == self.agent_id.load(Relaxed) && !ptr.is_null() {
            // SAFETY: as in `current`.
            return Some(unsafe { &*ptr });
        }
        None
    }

    #[cold]
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    fn register_current(&self) -> Option<&PollSlot> {
        let info = PREPARED
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(ThreadInfo::current);
        let key = thread_key(info.thread_id);
        // A thread that polls for this agent again (e.g. alternating runtimes) gets its slot back.
        let slot = self
            .slots
            .iter()
            .find(|s| s.is_claimed() && s.thread_key.load(Acquire) == key)
            .or_else(|| {
                self.slots.iter().find(|s| {
                    s.owner
                        .compare_exchange(0, u64::MAX, AcqRel, Acquire)
                        .is_ok()
                })
            });
        let Some(slot) = slot else {
            self.untracked_polls.fetch_add(1, Relaxed);
            return None;
        };
        if slot.owner.load(Acquire) == u64::MAX {
            *slot.info.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
            slot.thread_key.store(key, Release);
            let n = self.claims.fetch_add(1, AcqRel) + 1;
            slot.owner.store(n, Release);
        }
        CURRENT.with(|c| c.set((self.agent_id.load(Relaxed), slot as *const PollSlot)));
        Some(slot)
    }

    /// Gives the calling thread's slot back (from `on_thread_stop`).
    pub(crate) fn release_current(&self) {
        let (agent, ptr) = CURRENT.with(Cell::get);
        if agent != self.agent_id.load(Relaxed) || ptr.is_null() {
            return;
        }
        CURRENT.with(|c| c.set((0, std::ptr::null())));
        // SAFETY: as in `current`.
        let slot = unsafe { &*ptr };
        slot.thread_key.store(0, Release);
        *slot.info.lock().unwrap_or_else(|e| e.into_inner()) = None;
        slot.owner.store(0, Release);
    }
}

/// The calling thread's slot in whichever agent it last polled for, if the slot is still
/// its own: for `allow_blocking`, which knows no agent. Not the hot path.
pub(crate) fn this_threads_slot() -> Option<&'static PollSlot> {
    let (_, ptr) = CURRENT.with(Cell::get);
    // SAFETY: slot tables are never freed (see `SlotTable`), so a cached pointer is valid
    // memory; the slot may since have gone to another thread, which the key check rules out.
    unsafe { ptr.as_ref() }
        .filter(|s| s.thread_key.load(Acquire) == thread_key(std::thread::current().id()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// The slot's state in a test where nobody writes to it meanwhile.
    #[track_caller]
    pub(crate) fn view(slot: &PollSlot) -> PollView {
        slot.view().expect("nobody writes: the view is consistent")
    }

    #[test]
    fn a_poll_makes_the_generation_odd_and_its_end_makes_it_even_again() {
        let slot = PollSlot::new(0, 4);
        assert_eq!(view(&slot).generation, 0);
        let here = Location::caller();
        slot.begin_poll(7, here, 1, 0);
        let v = view(&slot);
        assert_eq!((v.generation, v.task_id, v.start), (1, 7, 0));
        assert_eq!(v.spawned_at.map(|l| l.line()), Some(here.line()));
        slot.end_poll(0, None, 1);
        assert_eq!(view(&slot).generation, 2);
        assert_eq!(
            slot.callsite_totals(1),
            (1, 0),
            "the poll counted at its callsite"
        );
        slot.begin_poll(8, here, NO_CALLSITE, 123);
        let v = view(&slot);
        assert_eq!((v.generation, v.task_id, v.start), (3, 8, 123));
        // A timed poll: its time goes into the histogram and the callsite, with its weight.
        slot.end_poll(0, Some(1_000), 16);
        assert_eq!(view(&slot).generation, 4);
        assert_eq!(slot.poll_time.snapshot().count(), 16);
        assert_eq!(
            slot.callsite_totals(1),
            (1, 0),
            "NO_CALLSITE counts nowhere"
        );
        assert_eq!(slot.callsite_totals(u32::MAX), (0, 0));
    }

    #[test]
    fn the_after_poll_hook_reads_the_clock_only_for_a_timed_or_a_watched_poll() {
        let slot = PollSlot::new(0, 1);
        let here = Location::caller();
        slot.begin_poll(1, here, 0, 0);
        assert!(!slot.needs_end_time(), "untimed, unwatched: no clock");
        slot.set_watched(true);
        assert!(slot.needs_end_time(), "a stall episode is open on it");
        slot.set_watched(false);
        slot.end_poll(0, None, 1);
        slot.begin_poll(2, here, 0, 55);
        assert!(slot.needs_end_time(), "timed");
        assert_eq!(slot.poll_start(), 55);
    }

    #[test]
    fn the_end_of_a_watched_poll_is_its_own_and_no_later_polls() {
        let slot = PollSlot::new(0, 1);
        let here = Location::caller();
        slot.begin_poll(1, here, 0, 0);
        let generation = view(&slot).generation;
        slot.set_watched(true);
        assert_eq!(slot.poll_end_after(generation, 100), None, "still running");
        slot.end_poll(500, None, 1);
        assert_eq!(slot.poll_end_after(generation, 100), Some(500));
        assert_eq!(
            slot.poll_end_after(generation, 600),
            None,
            "an end before the start is not this poll's"
        );
        slot.begin_poll(2, here, 0, 0);
        assert_eq!(
            slot.poll_end_after(generation, 100),
            None,
            "a later poll began"
        );
    }

    #[test]
    fn one_poll_in_every_n_is_timed_starting_with_the_first() {
        let slot = PollSlot::new(0, 1);
        let turns: Vec<bool> = (0..48).map(|_| slot.timing_turn(16)).collect();
        let timed: Vec<usize> = (0..48).filter(|&i| turns[i]).collect();
        assert_eq!(timed, [0, 16, 32]);
        assert!((0..10).all(|_| slot.timing_turn(1)), "every poll");
    }

    /// A writer runs polls as fast as it can (each poll's fields derived from its number);
    /// the reader's views, whenever they are `Some` and inside a poll, must be that poll's
    /// fields and never a mix of two. Bounded by 200 000 polls and 5 s.
    #[test]
    fn a_view_never_mixes_two_polls_while_the_owner_writes() {
        let slot = Arc::new(PollSlot::new(0, 1));
        let (even, odd) = (Location::caller(), here_too());
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (slot, done) = (slot.clone(), done.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut n = 1u64;
                while n <= 200_000 && start.elapsed() < Duration::from_secs(5) {
                    let at = if n % 2 == 0 { even } else { odd };
                    slot.begin_poll(n, at, 0, n * 10);
                    for _ in 0..20 {
                        std::hint::spin_loop(); // a short poll
                    }
                    slot.end_poll(0, None, 1);
                    n += 1;
                }
                done.store(true, Release);
                n - 1
            })
        };
        let (mut inside, mut torn) = (0u64, 0u64);
        while !done.load(Acquire) {
            let Some(v) = slot.view() else {
                torn += 1;
                continue;
            };
            if v.generation % 2 == 0 {
                continue;
            }
            inside += 1;
            let n = v.generation.div_ceil(2);
            let at = if n % 2 == 0 { even } else { odd };
            assert_eq!(
                (v.task_id, v.start),
                (n, n * 10),
                "generation {}",
                v.generation
            );
            assert_eq!(v.spawned_at.map(|l| l.line()), Some(at.line()));
        }
        let polls = writer.join().unwrap();
        assert_eq!(view(&slot).generation, polls * 2);
        assert!(
            inside > 0,
            "the reader saw no poll running in {polls} polls ({torn} torn)"
        );
    }

    #[inline(never)]
    #[track_caller]
    fn here_too() -> &'static Location<'static> {
        Location::caller()
    }

    #[test]
    fn a_slot_given_back_and_claimed_again_has_a_new_claim_number() {
        let table = SlotTable::acquire(1, 1);
        let first = std::thread::scope(|s| {
            s.spawn(|| {
                let claim = table.current().expect("a free slot").claim_number();
                table.release_current();
                claim
            })
            .join()
            .unwrap()
        });
        assert_ne!(first, 0);
        let (_, slot) = table.iter().next().unwrap();
        assert_eq!(slot.claim_number(), 0, "free");
        let second = std::thread::scope(|s| {
            s.spawn(|| table.current().expect("the freed slot").claim_number())
                .join()
                .unwrap()
        });
        assert!(second != 0 && second != first, "{first} then {second}");
        // One slot, taken: a third thread polls unwatched, and is counted.
        std::thread::scope(|s| {
            s.spawn(|| assert!(table.current().is_none()));
        });
        assert_eq!(table.untracked_polls.load(Relaxed), 1);
        drop(table);
    }
}
