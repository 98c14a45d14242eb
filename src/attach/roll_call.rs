//! The roll call: before `attach()` returns, every worker of a `multi_thread` runtime
//! registers its thread and, where it can be told for certain, its worker index.
//!
//! Attach mode can only watch a thread that registered itself (only the thread can read
//! what a stack capture needs), and a worker registers by polling one of pollwatch's tasks.
//! Left to chance, a worker that blocks right after `attach()` has never polled one, and
//! its stall goes unseen. So `attach()` calls the roll: it spawns one registrar task at a
//! time, each from a thread outside the runtime (so it lands in the injection queue, where
//! any idle worker takes it; a worker's own spawn would sit in its LIFO slot, which no other
//! worker may take). A registrar registers the worker it runs on, learns that worker's
//! index, and then keeps the worker until the roll is complete, so that the next registrar
//! has to go to a worker that has not answered yet. If `attach()` runs inside a task, its
//! own worker answers first, from `attach()` itself.
//!
//! **The index.** A worker publishes its park/unpark count when it parks (odd) and right
//! after it wakes (even), so the count of a worker that is running a task is even. A thread
//! running a task sees its own worker's count even; if exactly one worker not yet claimed
//! by another registered thread has an even count, that one is its own (the read need not
//! be atomic across workers: its own stays even throughout). Under `tokio_unstable` tokio
//! says which thread runs which worker, and that is used instead.
//!
//! **Cost.** The roll holds each answering worker until every worker has answered, at most
//! [`LIMIT`] (the whole `attach()` took 1.4–25 ms in the tests on a loaded machine). A
//! worker busy in a long poll cannot answer; the roll then ends at the limit, and that
//! worker registers later, when it first polls the probe.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeMetrics};

use super::{ThreadEntry, Threads};
use crate::thread_info::MAX_THREADS;

/// The longest `attach()` waits for the workers to answer.
pub(crate) const LIMIT: Duration = Duration::from_millis(100);

/// How long one registrar keeps re-reading the counts to learn its index, when another
/// worker is waking or parking at the same moment (tokio wakes a second worker whenever a
/// searching one finds a task; it parks again within microseconds on an idle host).
const INDEX_PATIENCE: Duration = Duration::from_millis(20);

/// What the roll call found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Roll {
    /// Workers of the runtime.
    pub(crate) workers: usize,
    /// Workers registered when the roll ended.
    pub(crate) answered: usize,
    /// Of those, the ones whose index is known.
    pub(crate) indexed: usize,
    pub(crate) took: Duration,
}

/// Registrars answered so far, and whether the roll is over.
#[derive(Default)]
struct Call {
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Call {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn answer(&self) {
        self.lock().0 += 1;
        self.changed.notify_all();
    }

    fn finish(&self) {
        self.lock().1 = true;
        self.changed.notify_all();
    }

    /// Waits until `ready` holds for the state, or `deadline`.
    fn wait(&self, deadline: Instant, ready: impl Fn(&(usize, bool)) -> bool) {
        let mut state = self.lock();
        while !ready(&state) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Calls the roll of `handle`'s workers (a `multi_thread` runtime; see the module docs).
pub(crate) fn call(threads: &Arc<Threads>, clock: &quanta::Clock, handle: &Handle) -> Roll {
    let start = Instant::now();
    let deadline = start + LIMIT;
    let workers = handle.metrics().num_workers();
    if caller_is_worker(handle) {
        answer(threads, clock, &handle.metrics(), start + INDEX_PATIENCE);
    }
    let call = Arc::new(Call::default());
    let registered = || threads.known_workers(false);
    std::thread::scope(|s| {
        let spawner = std::thread::Builder::new()
            .name("pollwatch-attach".into())
            .spawn_scoped(s, || {
                for _ in 0..(workers * 4).min(MAX_THREADS) {
                    if registered() >= workers || Instant::now() >= deadline {
                        break;
                    }
                    let answered = call.lock().0;
                    let (t, clock, c) = (threads.clone(), clock.clone(), call.clone());
                    handle.spawn(async move {
                        let metrics = Handle::current().metrics();
                        let patience = (Instant::now() + INDEX_PATIENCE).min(deadline);
                        answer(&t, &clock, &metrics, patience);
                        c.answer();
                        // Keep this worker, so the next registrar finds another one.
                        c.wait(deadline, |&(_, done)| done);
                    });
                    call.wait(deadline, |&(n, _)| n > answered);
                }
                // Every answering worker is still held, so none has moved: one thread left
                // without an index runs the one index nobody claimed.
                if registered() >= workers {
                    by_elimination(threads, clock, workers);
                }
                call.finish();
            });
        if spawner.is_err() {
            // No thread for the roll: the workers register later, through the probe.
            call.finish();
        }
    });
    let entries = threads.snapshot();
    Roll {
        workers,
        answered: registered(),
        indexed: entries
            .iter()
            .filter(|e| e.is_worker() && e.index().is_some())
            .count(),
        took: start.elapsed(),
    }
}

/// Gives the one worker thread that has no index the one index that no thread claimed.
fn by_elimination(threads: &Threads, clock: &quanta::Clock, workers: usize) {
    let entries = threads.snapshot();
    let unindexed: Vec<&Arc<ThreadEntry>> = entries
        .iter()
        .filter(|e| e.is_worker() && e.index().is_none())
        .collect();
    let claimed: Vec<usize> = entries
        .iter()
        .filter_map(|e| e.index().map(|(i, _)| i))
        .collect();
    let unclaimed: Vec<usize> = (0..workers).filter(|i| !claimed.contains(i)).collect();
    if let ([e], [i]) = (unindexed.as_slice(), unclaimed.as_slice()) {
        e.set_index(*i, clock.raw());
    }
}

/// Whether the calling thread is one of `handle`'s workers: it is polling a task of that
/// runtime (the future given to `block_on` is not a task, and runs on no worker).
fn caller_is_worker(handle: &Handle) -> bool {
    tokio::task::try_id().is_some()
        && Handle::try_current().is_ok_and(|h| h.id() == handle.id())
        && handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
}

/// The calling thread, which is polling a task on one of the runtime's workers, registers
/// and learns its index (re-reading the counts until `patience` if that is not yet certain).
fn answer(threads: &Threads, clock: &quanta::Clock, metrics: &RuntimeMetrics, patience: Instant) {
    threads.note_poll(clock.raw(), metrics);
    let Some(me) = threads.register_current() else {
        return;
    };
    loop {
        if let Some(index) = own_index(threads, &me, metrics) {
            me.set_index(index, clock.raw());
            return;
        }
        if Instant::now() >= patience {
            return;
        }
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// The index of the worker `me` runs, if it is certain now.
fn own_index(threads: &Threads, me: &Arc<ThreadEntry>, metrics: &RuntimeMetrics) -> Option<usize> {
    let workers = metrics.num_workers();
    #[cfg(tokio_unstable)]
    if let Some(i) = (0..workers).find(|&i| metrics.worker_thread_id(i) == Some(me.info.thread_id))
    {
        return Some(i);
    }
    if workers == 1 {
        return Some(0);
    }
    let claimed: Vec<usize> = threads
        .snapshot()
        .iter()
        .filter(|e| !Arc::ptr_eq(e, me))
        .filter_map(|e| e.index().map(|(i, _)| i))
        .collect();
    running_unclaimed(metrics, workers, &claimed)
}

/// The one worker, not in `claimed`, whose published count says it runs tasks; `None` if
/// there are several, or none.
pub(super) fn running_unclaimed(
    metrics: &RuntimeMetrics,
    workers: usize,
    claimed: &[usize],
) -> Option<usize> {
    #[cfg(target_has_atomic = "64")]
    {
        let counts: Vec<u64> = (0..workers)
            .map(|i| metrics.worker_park_unpark_count(i))
            .collect();
        only_running(&counts, claimed)
    }
    #[cfg(not(target_has_atomic = "64"))]
    {
        let _ = (metrics, workers, claimed);
        None
    }
}

/// Of the workers whose park/unpark `counts` are given, the one that is running (even
/// count) and not `claimed`, if it is the only one.
fn only_running(counts: &[u64], claimed: &[usize]) -> Option<usize> {
    let mut running = (0..counts.len()).filter(|i| counts[*i] % 2 == 0 && !claimed.contains(i));
    let first = running.next()?;
    running.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_only_running_unclaimed_worker_is_ours() {
        // Worker 1 runs (even), 0 and 2 are parked (odd).
        assert_eq!(only_running(&[3, 8, 5], &[]), Some(1));
        // Two run: not certain, unless the other one is claimed by its own thread.
        assert_eq!(only_running(&[4, 8, 5], &[]), None);
        assert_eq!(only_running(&[4, 8, 5], &[0]), Some(1));
        // Every running worker is claimed: not ours to take.
        assert_eq!(only_running(&[4, 7, 5], &[0]), None);
        // A worker that never parked yet counts 0: running.
        assert_eq!(only_running(&[0, 1], &[]), Some(0));
    }
}
