//! The Linux back-end (x86_64, aarch64): signal the stuck thread, let its handler publish the
//! registers and park, walk the frozen stack from here, release, and only then copy out.
//!
//! The rule that shapes this file: between seeing `FROZEN` and releasing, the watchdog may
//! neither allocate nor take a lock, because the frozen thread may hold the allocator's or
//! any other lock. The walk therefore uses prepared module data, a prepared framehop cache
//! and a fixed-size frame buffer.

mod handler;
mod modules;

pub(super) use modules::vdso_symbols;

use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use handler::{
    futex_wait, futex_wake, word, CAPTURING, DONE, FROZEN, IDLE, OUTCOME_WRONG_THREAD, REQUESTED,
    SLOT,
};

use super::{CaptureStatus, RawStack, ThreadHandle};
use crate::Error;

/// The deepest stack we record; deeper ones are cut at the outermost end.
const MAX_FRAMES: usize = 256;

/// One capture at a time in the whole process: there is one slot and one signal handler.
/// Taken only by watchdog threads, never in the handler.
static CAPTURE_LOCK: Mutex<()> = Mutex::new(());

/// The generation of the last request (only changed under `CAPTURE_LOCK`).
static LAST_GENERATION: AtomicU32 = AtomicU32::new(0);

/// Identity of the calling thread: what a later capture needs to signal it and to bound
/// the stack reads.
pub(super) fn current_thread() -> ThreadHandle {
    let (stack_lo, stack_hi) = current_stack_bounds();
    ThreadHandle {
        tid: handler::gettid(),
        // SAFETY: pthread_self has no preconditions.
        pthread: unsafe { libc::pthread_self() } as usize,
        stack_lo,
        stack_hi,
    }
}

/// `[lo, hi)` of the calling thread's stack, or `(0, 0)` if unknown (then only the
/// interrupted pc can be reported).
fn current_stack_bounds() -> (usize, usize) {
    // SAFETY: a zeroed pthread_attr_t is only passed to pthread_getattr_np, which
    // initialises it; it is destroyed only when that succeeded.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return (0, 0);
        }
        let mut addr: *mut c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return (0, 0);
        }
        (addr as usize, addr as usize + size)
    }
}

/// The Linux capturer: framehop data prepared at start-up plus a fixed frame buffer.
pub(super) struct Backend {
    signal: libc::c_int,
    unwinder: modules::Unwinder,
    cache: framehop::CacheNative<framehop::MustNotAllocateDuringUnwind>,
    frames: Box<[usize; MAX_FRAMES]>,
}

impl Backend {
    pub(super) fn new(signal: i32) -> Result<Backend, Error> {
        let in_range = (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&signal);
        if !in_range {
            return Err(Error::Signal {
                signal,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "not a real-time signal ({}..={})",
                        libc::SIGRTMIN(),
                        libc::SIGRTMAX()
                    ),
                ),
            });
        }
        handler::install(signal).map_err(|source| Error::Signal { signal, source })?;
        Ok(Backend {
            signal,
            unwinder: modules::build_unwinder(),
            cache: framehop::CacheNative::new_in(),
            frames: Box::new([0; MAX_FRAMES]),
        })
    }

    /// One capture; see [`StackCapturer::capture`](super::StackCapturer::capture).
    pub(super) fn capture(
        &mut self,
        thread: &ThreadHandle,
        timeout: Duration,
    ) -> Result<RawStack, CaptureStatus> {
        // Freezing ourselves would wait for a release only we could give.
        if thread.tid <= 0 || thread.tid == handler::gettid() {
            return Err(CaptureStatus::Failed);
        }
        let _guard = lock_within(Instant::now() + timeout).ok_or(CaptureStatus::Failed)?;
        let deadline = Instant::now() + timeout;

        // A handler that started earlier and has not returned still owns the slot.
        let current = wait_while(|w| !is_free(w), deadline);
        if !is_free(current) {
            return Err(CaptureStatus::Failed);
        }
        let generation = handler::next_generation(LAST_GENERATION.load(Ordering::Relaxed));
        LAST_GENERATION.store(generation, Ordering::Relaxed);
        SLOT.target_tid.store(thread.tid, Ordering::Relaxed);
        SLOT.target_pthread.store(thread.pthread, Ordering::Relaxed);
        SLOT.word
            .store(word(generation, REQUESTED), Ordering::Release);
        if let Err(e) = handler::send(thread.tid, self.signal, generation) {
            SLOT.word.store(word(generation, IDLE), Ordering::Release);
            // ESRCH: the thread has exited, like a thread that never answers.
            return Err(if e.raw_os_error() == Some(libc::ESRCH) {
                CaptureStatus::Timeout
            } else {
                CaptureStatus::Failed
            });
        }

        let requested = word(generation, REQUESTED);
        if wait_while(|w| w == requested, deadline) == requested
            && SLOT
                .word
                .compare_exchange(
                    requested,
                    word(generation, IDLE),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            // Masked, exited, or never scheduled: withdrawn before any handler claimed it.
            // If the signal is delivered later, the handler sees a stale generation.
            return Err(CaptureStatus::Timeout);
        }

        // A handler claimed it; it publishes the registers within instructions.
        let grace = Instant::now() + timeout;
        let capturing = word(generation, CAPTURING);
        let state = wait_while(|w| w == capturing, grace);
        let frozen_at = Instant::now();
        let walked = if state == word(generation, FROZEN) {
            // Nothing below until `release` may allocate or lock.
            super::frozen_window(true);
            let n = self.walk(thread);
            super::frozen_window(false);
            // Still frozen after the walk: everything read was stable.
            let stable = SLOT.word.load(Ordering::Acquire) == word(generation, FROZEN);
            release(generation);
            stable.then_some(n)
        } else {
            release(generation);
            None
        };

        // Wait for the handler to return, so that the slot is free and the pause known.
        let frozen = word(generation, FROZEN);
        let last = wait_while(|w| w == frozen || w == capturing, grace);
        let done = last == word(generation, DONE);
        let outcome = SLOT.outcome.load(Ordering::Relaxed);
        let Some(n) = walked else {
            return Err(if done && outcome == OUTCOME_WRONG_THREAD {
                CaptureStatus::Timeout
            } else {
                CaptureStatus::Failed
            });
        };
        let paused = if done {
            Duration::from_nanos(SLOT.paused_ns.load(Ordering::Relaxed))
        } else {
            frozen_at.elapsed()
        };
        // Released: allocating is fine again.
        Ok(RawStack {
            ips: self.frames[..n].to_vec(),
            paused,
        })
    }

    /// Unwinds the frozen target into `self.frames`; returns the number of frames.
    /// Runs while the target is parked: no allocation, no lock, reads only `[sp, stack_hi)`.
    fn walk(&mut self, thread: &ThreadHandle) -> usize {
        use framehop::Unwinder as _;
        let [pc, sp, fp, lr] = [0, 1, 2, 3].map(|i| SLOT.regs[i].load(Ordering::Relaxed) as u64);
        let (lo, hi) = (thread.stack_lo as u64, thread.stack_hi as u64);
        // A thread interrupted on another stack (e.g. inside its own signal handler) gets
        // only its pc: we know no safe bounds for that stack.
        let sp_on_stack = lo <= sp && sp < hi;
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let end = addr.checked_add(8).ok_or(())?;
            if !sp_on_stack || addr < sp || end > hi || addr % 8 != 0 {
                return Err(());
            }
            // SAFETY: [sp, hi) is the live, mapped part of the target thread's stack, and
            // the target is parked in the handler (which runs on its alternate stack or
            // below sp), so nothing writes there while we read.
            Ok(unsafe { std::ptr::read_volatile(addr as *const u64) })
        };
        #[cfg(target_arch = "x86_64")]
        let regs = {
            let _ = lr;
            framehop::x86_64::UnwindRegsX86_64::new(pc, sp, fp)
        };
        #[cfg(target_arch = "aarch64")]
        let regs = {
            use framehop::aarch64::{PtrAuthMask, UnwindRegsAarch64};
            // Strips pointer-authentication bits from signed return addresses (the bits
            // above the highest module address).
            let max = self.unwinder.max_known_code_address();
            let mask = if max == 0 {
                PtrAuthMask::new_no_strip()
            } else {
                PtrAuthMask::from_max_known_address(max)
            };
            // The pc is exact; lr holds the caller while the leaf has not saved it yet.
            UnwindRegsAarch64::new_with_ptr_auth_mask(mask, lr, sp, fp)
        };
        let mut frames = self
            .unwinder
            .iter_frames(pc, regs, &mut self.cache, &mut read_stack);
        let mut n = 0;
        while n < MAX_FRAMES {
            match frames.next() {
                Ok(Some(frame)) => {
                    self.frames[n] = frame.address() as usize;
                    n += 1;
                }
                // Err is also how framehop often ends a complete stack: keep what we have.
                Ok(None) | Err(_) => break,
            }
        }
        n
    }
}

/// Takes the process-wide capture lock, waiting at most until `deadline` (another agent's
/// capture holds it for at most a few of its timeouts; a lock inherited locked by a forked
/// child would never be released).
fn lock_within(deadline: Instant) -> Option<MutexGuard<'static, ()>> {
    loop {
        match CAPTURE_LOCK.try_lock() {
            Ok(guard) => return Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(TryLockError::WouldBlock) => return None,
        }
    }
}

/// Whether the slot may take a new request.
fn is_free(w: u32) -> bool {
    matches!(w & 0xff, IDLE | DONE)
}

/// Sleeps on the slot's state word while `waiting(word)` holds, until `deadline`; returns
/// the last word seen.
fn wait_while(waiting: impl Fn(u32) -> bool, deadline: Instant) -> u32 {
    loop {
        let w = SLOT.word.load(Ordering::Acquire);
        let now = Instant::now();
        if !waiting(w) || now >= deadline {
            return w;
        }
        futex_wait(&SLOT.word, w, deadline - now);
    }
}

/// Lets the parked handler of `generation` return.
fn release(generation: u32) {
    SLOT.release.store(generation, Ordering::Release);
    futex_wake(&SLOT.release);
}
