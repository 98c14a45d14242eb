//! Who a watched thread is: what both detectors record about a runtime thread, once.
//!
//! Its own module so that the poll slots (hooked mode) and the thread registry (attach
//! mode) share it without depending on each other or on the agent's state.

use crate::capture::ThreadHandle;

/// Most threads an agent watches at once (workers, plus the extra threads `block_in_place`
/// starts); threads beyond it are counted, not watched. Bounds the poll slots (hooked
/// mode) and the thread registry (attach mode) alike.
pub(crate) const MAX_THREADS: usize = 64;

/// Who a thread is, recorded once per thread.
#[derive(Clone, Debug)]
pub(crate) struct ThreadInfo {
    pub(crate) handle: ThreadHandle,
    pub(crate) name: String,
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) thread_id: std::thread::ThreadId,
}

impl ThreadInfo {
    /// Describes the calling thread. Allocates and makes a syscall: call it from
    /// `on_thread_start`, or once per thread on first use.
    pub(crate) fn current() -> Self {
        let t = std::thread::current();
        ThreadInfo {
            handle: ThreadHandle::current(),
            name: t.name().unwrap_or("unnamed").to_string(),
            thread_id: t.id(),
        }
    }
}
