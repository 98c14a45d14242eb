//! Attach mode: watching a runtime that pollwatch did not build (stable tokio, any runtime,
//! `#[tokio::main]` unchanged).
//!
//! Without task hooks nothing tells the watchdog which thread polls what, so attach mode
//! learns the runtime's threads itself, in this registry:
//! - a thread that polls one of pollwatch's own tasks (the scheduling probe, and the roll
//!   call's tasks that `attach()` runs before it returns: [`roll_call`]) is a worker, and
//!   registers itself from inside that poll:
//!   only the thread itself can read its stack bounds and `pthread_self`, which a stack
//!   capture needs (a thread found in `/proc` by name gives neither, and a name does not
//!   tell a worker from a `spawn_blocking` thread: tokio gives both the same one);
//! - when the runtime was built through [`Builder::build_runtime`](crate::Builder) on
//!   stable tokio, `on_thread_start` registers every runtime thread at once and
//!   `on_thread_park` / `on_thread_unpark` say which are workers and whether they are
//!   parked right now.
//!
//! A poll also teaches the registry which worker index the thread runs, when that is
//! certain: tokio publishes a worker's park/unpark count when it parks and again right after
//! it wakes, so the count is even while the worker runs tasks and odd while it is parked. A
//! thread polling a task while exactly one worker's count is even is that worker.
//! Under `--cfg tokio_unstable` tokio names each worker's thread itself
//! (`worker_thread_id`), and the watchdog uses that instead.
//!
//! The registry holds at most [`MAX_THREADS`] threads; further ones are counted, not
//! watched. Nothing here runs in a poll hook: registration allocates once per thread, and
//! the per-poll path is a thread-local lookup and two stores.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};

pub(crate) mod roll_call;

use crate::thread_info::{ThreadInfo, MAX_THREADS};

/// `park_state` values.
const PARK_UNKNOWN: u8 = 0;
const PARKED: u8 = 1;
const RUNNING: u8 = 2;

/// No worker index learnt.
const NO_INDEX: usize = usize::MAX;

/// Registrar tasks yield at most this many times each while looking for the other workers.
const REGISTRAR_YIELDS: usize = 64;

static NEXT_REGISTRY_ID: AtomicU64 = AtomicU64::new(1);

/// One thread of the watched runtime, as far as the agent knows it.
#[derive(Debug)]
pub(crate) struct ThreadEntry {
    pub(crate) info: ThreadInfo,
    /// Raw clock reading of this thread's last poll of a pollwatch task; 0 if never.
    last_poll: AtomicU64,
    /// Raw clock reading of the last sign that this thread drives the runtime (a poll, a
    /// park, registration as the `current_thread` driver); 0 if never.
    last_drive: AtomicU64,
    /// Seen acting as a worker (polled a task, or parked as one).
    worker: AtomicBool,
    /// From the park hooks, when the runtime was built through pollwatch.
    park_state: AtomicU8,
    /// The worker index learnt while this thread polled, and when ([`NO_INDEX`]: none).
    index: AtomicUsize,
    index_at: AtomicU64,
    /// Depth of `allow_blocking` scopes the thread is in.
    exempt: AtomicU32,
    /// `allow_blocking` scopes the thread has left: time up to a change is allowed.
    exempt_exits: AtomicU32,
    /// The registry is gone: thread-local caches let go of this entry.
    orphaned: AtomicBool,
}

impl ThreadEntry {
    fn new(info: ThreadInfo) -> Self {
        ThreadEntry {
            info,
            last_poll: AtomicU64::new(0),
            last_drive: AtomicU64::new(0),
            worker: AtomicBool::new(false),
            park_state: AtomicU8::new(PARK_UNKNOWN),
            index: AtomicUsize::new(NO_INDEX),
            index_at: AtomicU64::new(0),
            exempt: AtomicU32::new(0),
            exempt_exits: AtomicU32::new(0),
            orphaned: AtomicBool::new(false),
        }
    }

    pub(crate) fn tid(&self) -> i32 {
        self.info.handle.tid()
    }

    pub(crate) fn last_poll(&self) -> u64 {
        self.last_poll.load(Acquire)
    }

    pub(crate) fn last_drive(&self) -> u64 {
        self.last_drive.load(Acquire)
    }

    pub(crate) fn is_worker(&self) -> bool {
        self.worker.load(Acquire)
    }

    /// `Some(true)` parked, `Some(false)` running, `None` unknown (no park hooks).
    pub(crate) fn parked(&self) -> Option<bool> {
        match self.park_state.load(Acquire) {
            PARKED => Some(true),
            RUNNING => Some(false),
            _ => None,
        }
    }

    /// The worker index this thread was last seen running, and when (raw clock).
    pub(crate) fn index(&self) -> Option<(usize, u64)> {
        let i = self.index.load(Acquire);
        (i != NO_INDEX).then(|| (i, self.index_at.load(Acquire)))
    }

    /// Records that this thread runs worker `index` (learnt for certain by the caller).
    pub(crate) fn set_index(&self, index: usize, now: u64) {
        self.index.store(index, Relaxed);
        self.index_at.store(now, Release);
    }

    pub(crate) fn exempt(&self) -> bool {
        self.exempt.load(Acquire) > 0
    }

    /// How many `allow_blocking` scopes the thread has left so far.
    pub(crate) fn exempt_exits(&self) -> u32 {
        self.exempt_exits.load(Acquire)
    }
}

thread_local! {
    /// The entries of the calling thread, one per registry it is in.
    static MINE: RefCell<Vec<(u64, Arc<ThreadEntry>)>> = const { RefCell::new(Vec::new()) };
}

/// The threads of one watched runtime.
pub(crate) struct Threads {
    id: u64,
    entries: Mutex<Vec<Arc<ThreadEntry>>>,
    /// Threads not registered because the registry was full.
    pub(crate) refused: AtomicU64,
    /// The runtime has been seen running tasks since the agent started.
    driven: AtomicBool,
    /// pollwatch's thread hooks run on this runtime (it was built through pollwatch).
    pub(crate) hooks_installed: AtomicBool,
}

impl Default for Threads {
    fn default() -> Self {
        Threads {
            id: NEXT_REGISTRY_ID.fetch_add(1, Relaxed),
            entries: Mutex::new(Vec::new()),
            refused: AtomicU64::new(0),
            driven: AtomicBool::new(false),
            hooks_installed: AtomicBool::new(false),
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        for e in self.lock().iter() {
            e.orphaned.store(true, Release);
        }
    }
}

impl Threads {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ThreadEntry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The calling thread's entry, if it is registered.
    fn mine(&self) -> Option<Arc<ThreadEntry>> {
        MINE.with(|m| {
            m.borrow()
                .iter()
                .find(|(id, _)| *id == self.id)
                .map(|(_, e)| e.clone())
        })
    }

    /// Registers the calling thread (once; later calls return the same entry). Allocates
    /// the first time: never call it from a poll hook.
    pub(crate) fn register_current(&self) -> Option<Arc<ThreadEntry>> {
        if let Some(e) = self.mine() {
            return Some(e);
        }
        let entry = Arc::new(ThreadEntry::new(ThreadInfo::current()));
        {
            let mut entries = self.lock();
            if entries.len() >= MAX_THREADS {
                self.refused.fetch_add(1, Relaxed);
                return None;
            }
            entries.push(entry.clone());
        }
        MINE.with(|m| {
            let mut m = m.borrow_mut();
            m.retain(|(_, e)| !e.orphaned.load(Acquire));
            m.push((self.id, entry.clone()));
        });
        Some(entry)
    }

    /// Forgets the calling thread (it is stopping).
    pub(crate) fn unregister_current(&self) {
        let Some(mine) = self.mine() else { return };
        self.lock().retain(|e| !Arc::ptr_eq(e, &mine));
        MINE.with(|m| m.borrow_mut().retain(|(id, _)| *id != self.id));
    }

    /// The calling thread is about to drive a `current_thread` runtime (it built the runtime
    /// or attached from inside it).
    pub(crate) fn register_driver(&self, now: u64, inside_runtime: bool) {
        if let Some(e) = self.register_current() {
            e.last_drive.store(now, Release);
        }
        if inside_runtime {
            self.driven.store(true, Release);
        }
    }

    /// The calling thread polls a pollwatch task of the runtime `metrics` describes.
    pub(crate) fn note_poll(&self, now: u64, metrics: &tokio::runtime::RuntimeMetrics) {
        let Some(e) = self.register_current() else {
            return;
        };
        self.driven.store(true, Relaxed);
        e.worker.store(true, Relaxed);
        e.last_drive.store(now, Relaxed);
        if let Some(index) = running_worker(metrics) {
            e.index.store(index, Relaxed);
            e.index_at.store(now, Relaxed);
        }
        e.last_poll.store(now, Release);
    }

    /// From `on_thread_park` (`true`) and `on_thread_unpark` (`false`).
    pub(crate) fn note_park(&self, parked: bool, now: u64) {
        let Some(e) = self.register_current() else {
            return;
        };
        self.driven.store(true, Relaxed);
        e.worker.store(true, Relaxed);
        e.last_drive.store(now, Relaxed);
        e.park_state
            .store(if parked { PARKED } else { RUNNING }, Release);
    }

    /// Whether the runtime has been seen running since the agent started.
    pub(crate) fn driven(&self) -> bool {
        self.driven.load(Acquire)
    }

    /// The entries as they stand now.
    pub(crate) fn snapshot(&self) -> Vec<Arc<ThreadEntry>> {
        self.lock().clone()
    }

    /// Registered threads seen acting as workers (that still exist, if `check_alive`).
    pub(crate) fn known_workers(&self, check_alive: bool) -> usize {
        self.lock()
            .iter()
            .filter(|e| e.is_worker() && (!check_alive || thread_exists(e.tid())))
            .count()
    }

    /// Drops the entries of threads that no longer exist (the app's hooks were not told).
    pub(crate) fn prune(&self) {
        self.lock().retain(|e| thread_exists(e.tid()));
    }
}

/// The worker index the calling thread runs, when that is certain: it is polling a task, so
/// its own worker's published park/unpark count is even; if every other worker's is odd
/// (parked), the even one is ours. One worker: index 0.
fn running_worker(metrics: &tokio::runtime::RuntimeMetrics) -> Option<usize> {
    let n = metrics.num_workers();
    if n == 1 {
        return Some(0);
    }
    roll_call::running_unclaimed(metrics, n, &[])
}

/// Whether `/proc/self/task/<tid>` exists (always true where procfs is not available).
pub(crate) fn thread_exists(tid: i32) -> bool {
    if tid <= 0 || !cfg!(target_os = "linux") {
        return true;
    }
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

fn is_current_thread(handle: &tokio::runtime::Handle) -> bool {
    handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread
}

/// `Builder::build_runtime` on stable tokio: the thread that built a `current_thread`
/// runtime is the one most likely to drive it.
pub(crate) fn runtime_built(
    threads: &Threads,
    clock: &quanta::Clock,
    handle: &tokio::runtime::Handle,
) {
    if is_current_thread(handle) {
        threads.register_driver(clock.raw(), false);
    }
}

/// `Builder::attach`: on a `current_thread` runtime, the thread attaching from inside the
/// runtime drives it; the workers of a `multi_thread` runtime answer the roll call.
pub(crate) fn attached(
    threads: &Arc<Threads>,
    clock: &quanta::Clock,
    handle: &tokio::runtime::Handle,
) {
    if is_current_thread(handle) {
        let inside = tokio::runtime::Handle::try_current().is_ok_and(|h| h.id() == handle.id());
        threads.register_driver(clock.raw(), inside);
        return;
    }
    let roll = roll_call::call(threads, clock, handle);
    if roll.answered < roll.workers {
        tracing::debug!(
            target: "pollwatch",
            "attach: {} of {} workers answered within {:?} (the others were busy; they register when they first poll pollwatch's probe)",
            roll.answered, roll.workers, roll.took
        );
    } else {
        tracing::trace!(target: "pollwatch", "attach: roll call of {} workers ({} indexed) took {:?}", roll.workers, roll.indexed, roll.took);
    }
}

/// Spawns a few short tasks that register the workers they run on (attach mode without
/// hooks). Each yields a bounded number of times, so that idle workers wake up and steal
/// the others; they stop as soon as every worker is known.
pub(crate) fn spawn_registrars(
    threads: &Arc<Threads>,
    clock: &quanta::Clock,
    handle: &tokio::runtime::Handle,
) {
    let workers = handle.metrics().num_workers();
    for _ in 0..(workers * 2).min(MAX_THREADS) {
        let (threads, clock) = (threads.clone(), clock.clone());
        handle.spawn(async move {
            let metrics = tokio::runtime::Handle::current().metrics();
            for _ in 0..REGISTRAR_YIELDS {
                threads.note_poll(clock.raw(), &metrics);
                if threads.known_workers(false) >= workers {
                    break;
                }
                tokio::task::yield_now().await;
            }
        });
    }
}

/// Marks the calling thread as inside `allow_blocking` for every agent that knows it, until
/// the guard is dropped.
pub(crate) fn exempt_scope() -> ExemptGuard {
    let entries = MINE
        .try_with(|m| {
            m.borrow()
                .iter()
                .filter(|(_, e)| !e.orphaned.load(Acquire))
                .map(|(_, e)| e.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for e in &entries {
        e.exempt.fetch_add(1, Release);
    }
    ExemptGuard(entries)
}

/// Ends an `allow_blocking` scope for attach mode.
pub(crate) struct ExemptGuard(Vec<Arc<ThreadEntry>>);

impl Drop for ExemptGuard {
    fn drop(&mut self) {
        for e in &self.0 {
            e.exempt_exits.fetch_add(1, Release);
            e.exempt.fetch_sub(1, Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_registers_once_and_leaves_when_it_stops() {
        let threads = Threads::default();
        let a = threads.register_current().unwrap();
        let b = threads.register_current().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(threads.snapshot().len(), 1);
        std::thread::scope(|s| {
            s.spawn(|| {
                threads.register_current().unwrap();
                assert_eq!(threads.snapshot().len(), 2);
                threads.unregister_current();
            });
        });
        assert_eq!(threads.snapshot().len(), 1);
        assert_eq!(a.tid(), threads.snapshot()[0].tid());
    }

    #[test]
    fn park_hooks_mark_a_worker_and_its_state() {
        let threads = Threads::default();
        assert!(!threads.driven());
        threads.note_park(true, 5);
        let e = threads.register_current().unwrap();
        assert!(e.is_worker());
        assert_eq!(e.parked(), Some(true));
        threads.note_park(false, 6);
        assert_eq!(e.parked(), Some(false));
        assert_eq!(e.last_drive(), 6);
        assert!(threads.driven());
    }

    #[test]
    fn allow_blocking_marks_every_registry_of_the_thread() {
        let (one, two) = (Threads::default(), Threads::default());
        let (a, b) = (
            one.register_current().unwrap(),
            two.register_current().unwrap(),
        );
        {
            let _g = exempt_scope();
            assert!(a.exempt() && b.exempt());
        }
        assert!(!a.exempt() && !b.exempt());
        drop(one);
        let _g = exempt_scope();
        assert!(b.exempt());
    }

    #[test]
    fn a_polling_thread_learns_its_worker_index_only_when_certain() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let threads = Threads::default();
        rt.block_on(async { threads.note_poll(7, &tokio::runtime::Handle::current().metrics()) });
        let e = threads.register_current().unwrap();
        assert_eq!(e.index(), Some((0, 7)), "one worker: index 0");
        assert_eq!(e.last_poll(), 7);
        assert!(e.is_worker());
    }
}
