//! The console's share of the hot path: fixed-size task events pushed by the hooks into
//! preallocated queues, drained by the console thread.
//!
//! Only exists while the console is on. A hook pushes into its worker's own queue (found
//! through the worker's poll-slot index, so no other worker touches that cache line); threads
//! without a slot (the app's `main` calling `Runtime::spawn`, or a worker in the few
//! milliseconds before the console thread has given it a queue) push into one shared queue.
//! Pushing is lock-free and allocation-free ([`ArrayQueue`]); a full queue drops the event
//! and counts it by kind, so the host never waits for the console.

use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use crossbeam_queue::ArrayQueue;

use crate::slots::SlotTable;

/// Events each worker's queue holds between two drains (every [`DRAIN_INTERVAL`]); about
/// 40 bytes each.
///
/// [`DRAIN_INTERVAL`]: super::DRAIN_INTERVAL
pub(crate) const EVENTS_PER_THREAD: usize = 8192;
/// Events the shared queue (threads without a queue of their own) holds between two drains.
pub(crate) const SHARED_EVENTS: usize = 16384;

/// What the hooks saw, with raw clock readings (`quanta::Clock::raw`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    /// `on_task_spawn`.
    Spawn {
        id: u64,
        at: u64,
        location: &'static Location<'static>,
    },
    /// One completed poll, sent by `on_after_task_poll` with the start the
    /// `on_before_task_poll` hook stored.
    Poll { id: u64, start: u64, end: u64 },
    /// `on_task_terminate`.
    Terminate { id: u64, at: u64 },
}

impl Event {
    /// Index into [`EventKind::ALL`] and the drop counters.
    fn kind(&self) -> EventKind {
        match self {
            Event::Spawn { .. } => EventKind::Spawn,
            Event::Poll { .. } => EventKind::Poll,
            Event::Terminate { .. } => EventKind::Terminate,
        }
    }
}

/// The `kind` label of `pollwatch_console_events_dropped_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    Spawn = 0,
    Poll = 1,
    Terminate = 2,
}

impl EventKind {
    pub(crate) const ALL: [EventKind; 3] =
        [EventKind::Spawn, EventKind::Poll, EventKind::Terminate];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventKind::Spawn => "spawn",
            EventKind::Poll => "poll",
            EventKind::Terminate => "terminate",
        }
    }
}

/// One worker's queue and the start of the poll it is running, on its own cache lines.
#[repr(align(128))]
struct ThreadFeed {
    /// Created by the console thread once the slot is claimed: the hooks never allocate.
    queue: OnceLock<ArrayQueue<Event>>,
    /// Raw clock reading at the start of the current poll (written before the slot's
    /// generation turns odd, so a reader that sees an odd generation sees this poll's start).
    poll_start: AtomicU64,
}

/// The events of one agent, from the hooks to the console thread.
pub(crate) struct Feed {
    threads: Box<[ThreadFeed]>,
    shared: ArrayQueue<Event>,
    dropped: [AtomicU64; 3],
}

impl Feed {
    /// Queues for `max_threads` poll slots (created lazily) and the shared queue.
    pub(crate) fn new(max_threads: usize) -> Self {
        Feed {
            threads: (0..max_threads)
                .map(|_| ThreadFeed {
                    queue: OnceLock::new(),
                    poll_start: AtomicU64::new(0),
                })
                .collect(),
            shared: ArrayQueue::new(SHARED_EVENTS),
            dropped: Default::default(),
        }
    }

    /// Hot path (`on_before_task_poll`, owning thread): remembers when this poll began.
    #[inline]
    pub(crate) fn poll_started(&self, slot: usize, now: u64) {
        if let Some(t) = self.threads.get(slot) {
            t.poll_start.store(now, Relaxed);
        }
    }

    /// Hot path (`on_after_task_poll`, owning thread): one event for the whole poll.
    #[inline]
    pub(crate) fn poll_ended(&self, slot: usize, id: u64, now: u64) {
        let start = match self.threads.get(slot) {
            Some(t) => t.poll_start.load(Relaxed),
            None => now,
        };
        self.push(
            Some(slot),
            Event::Poll {
                id,
                start,
                end: now,
            },
        );
    }

    /// Hot path: queues `event` on the slot's queue, else the shared one; counts it when full.
    #[inline]
    pub(crate) fn push(&self, slot: Option<usize>, event: Event) {
        let queue = slot
            .and_then(|i| self.threads.get(i))
            .and_then(|t| t.queue.get())
            .unwrap_or(&self.shared);
        if let Err(event) = queue.push(event) {
            self.dropped[event.kind() as usize].fetch_add(1, Relaxed);
        }
    }

    /// Events dropped because a queue was full, by kind.
    pub(crate) fn dropped(&self, kind: EventKind) -> u64 {
        self.dropped[kind as usize].load(Relaxed)
    }

    /// Console thread: gives every claimed slot its queue, then hands every queued event to
    /// `f`, shared queue first (spawns from outside the runtime come before their polls). At
    /// most one queue's capacity per queue, so a busy app cannot keep the drain going forever.
    pub(crate) fn drain(&self, slots: &SlotTable, mut f: impl FnMut(Event)) {
        for (i, slot) in slots.iter() {
            if let Some(t) = self.threads.get(i) {
                if slot.is_claimed() && t.queue.get().is_none() {
                    let _ = t.queue.set(ArrayQueue::new(EVENTS_PER_THREAD));
                }
            }
        }
        let queues =
            std::iter::once(&self.shared).chain(self.threads.iter().filter_map(|t| t.queue.get()));
        for q in queues {
            for _ in 0..q.capacity() {
                match q.pop() {
                    Some(e) => f(e),
                    None => break,
                }
            }
        }
    }

    /// Console thread: the start of the poll running on `slot` right now, if the slot's
    /// generation is odd and unchanged across the read.
    pub(crate) fn running(&self, slots: &SlotTable) -> Vec<(u64, u64)> {
        let mut running = Vec::new();
        for (i, slot) in slots.iter() {
            let Some(t) = self.threads.get(i) else {
                continue;
            };
            let Some(before) = slot.view() else { continue };
            if before.generation & 1 == 0 {
                continue;
            }
            let start = t.poll_start.load(Relaxed);
            if slot.view().map(|v| v.generation) == Some(before.generation) && start != 0 {
                running.push((before.task_id, start));
            }
        }
        running
    }
}
