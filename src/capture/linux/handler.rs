//! The signal half of "freeze and walk": one process-wide slot, the handler that parks the
//! target thread in it, and the handler's installation.
//!
//! Everything the handler touches is a static atomic or a raw system call, because it runs in
//! the middle of arbitrary code of the target thread (possibly inside `malloc`, a panic or
//! another unwinder): it must not allocate, lock or unwind.

use std::ffi::c_void;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// No request outstanding; the watchdog may start one.
pub(super) const IDLE: u32 = 0;
/// The watchdog sent the signal; no handler has claimed it yet.
pub(super) const REQUESTED: u32 = 1;
/// A handler claimed the request and is copying the registers.
pub(super) const CAPTURING: u32 = 2;
/// The registers are published and the target waits to be released.
pub(super) const FROZEN: u32 = 3;
/// The handler has returned (or is about to); the slot is free again.
pub(super) const DONE: u32 = 4;

/// The handler was released by the watchdog.
const OUTCOME_RELEASED: u32 = 0;
/// The handler gave up waiting: the watchdog was too slow and whatever it read is suspect.
const OUTCOME_DEADLINE: u32 = 1;
/// The signal reached a thread that is not the one the request was made for (its tid was
/// reused after the original thread exited).
pub(super) const OUTCOME_WRONG_THREAD: u32 = 2;

/// Generations live in the upper 24 bits of the state word, so that a claim (one CAS) checks
/// the request's generation and state together: a stale signal can never claim a newer
/// request.
const GEN_MASK: u32 = 0x00ff_ffff;

/// The longest a target thread is ever parked, whatever the watchdog does (even if it dies).
const HANDLER_DEADLINE_NS: u64 = 200_000_000;

/// Marks `si_value` of our own deliveries, so that the handler tells them apart from the
/// application's signals on the same number (the low 32 bits carry the generation).
const COOKIE_MAGIC: u64 = 0x706f_6c6c; // "poll"

// FUTEX_WAIT / FUTEX_WAKE with FUTEX_PRIVATE_FLAG (linux/futex.h); spelled out because the
// names moved between libc releases.
const FUTEX_WAIT_PRIVATE: libc::c_int = 128;
const FUTEX_WAKE_PRIVATE: libc::c_int = 129;

/// The single request/answer slot shared by every capturer of the process. Captures are
/// serialized by the watchdog-side lock, so one slot is enough.
pub(super) struct Slot {
    /// `generation << 8 | state`; also a futex word, so that both sides sleep instead of spin.
    pub(super) word: AtomicU32,
    /// The generation the watchdog has released; the frozen handler waits on it (futex word).
    pub(super) release: AtomicU32,
    /// The thread the current request is for.
    pub(super) target_tid: AtomicI32,
    /// `pthread_self()` of that thread, to notice a reused tid.
    pub(super) target_pthread: AtomicUsize,
    /// pc, sp, fp and lr (aarch64; 0 on x86_64) of the interrupted context.
    pub(super) regs: [AtomicUsize; 4],
    /// How long the handler kept the thread parked, measured by the handler itself.
    pub(super) paused_ns: AtomicU64,
    /// One of the `OUTCOME_*` codes, valid once the state is `DONE`.
    pub(super) outcome: AtomicU32,
}

pub(super) static SLOT: Slot = Slot {
    word: AtomicU32::new(IDLE),
    release: AtomicU32::new(0),
    target_tid: AtomicI32::new(0),
    target_pthread: AtomicUsize::new(0),
    regs: [const { AtomicUsize::new(0) }; 4],
    paused_ns: AtomicU64::new(0),
    outcome: AtomicU32::new(OUTCOME_RELEASED),
};

/// The state word for a generation and a state.
pub(super) fn word(generation: u32, state: u32) -> u32 {
    ((generation & GEN_MASK) << 8) | state
}

/// The next request generation (1..=2^24-1, never 0 so that `release` starts unreleased).
pub(super) fn next_generation(previous: u32) -> u32 {
    let next = previous.wrapping_add(1) & GEN_MASK;
    if next == 0 {
        1
    } else {
        next
    }
}

/// The handler that was installed before ours, called for deliveries that are not captures.
struct Chained {
    recorded: AtomicBool,
    handler: AtomicUsize,
    siginfo: AtomicBool,
}

/// Indexed by signal number; real-time signals on Linux are at most 64.
const MAX_SIGNAL: usize = 64;
static CHAINED: [Chained; MAX_SIGNAL + 1] = [const {
    Chained {
        recorded: AtomicBool::new(false),
        handler: AtomicUsize::new(0),
        siginfo: AtomicBool::new(false),
    }
}; MAX_SIGNAL + 1];

/// Serializes installation (two agents starting at once, same or different signals).
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

/// Installs the capture handler for `signal` once; later calls for the same signal are no-ops.
///
/// The handler is never uninstalled: the default action of a real-time signal kills the
/// process, and a queued capture signal may still arrive after the last capturer is gone.
pub(super) fn install(signal: libc::c_int) -> io::Result<()> {
    let index = usize::try_from(signal)
        .ok()
        .filter(|&i| (1..=MAX_SIGNAL).contains(&i))
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    // SAFETY: an all-zero sigaction is a valid value to be filled by the kernel.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: querying the current action with a null new action changes nothing.
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if current.sa_sigaction == handler as *const () as usize {
        return Ok(());
    }
    let chained = &CHAINED[index];
    if chained.recorded.load(Ordering::Acquire) {
        // We installed it once and someone replaced it since; taking it back would silently
        // break them, and chaining them would need a second slot that a running handler
        // may be reading. Refuse instead, so the user picks another signal.
        return Err(io::Error::other(
            "the signal's handler was replaced after pollwatch installed its own",
        ));
    }
    if current.sa_sigaction != libc::SIG_DFL && current.sa_sigaction != libc::SIG_IGN {
        tracing::warn!(
            target: "pollwatch",
            signal,
            "signal already has a handler; pollwatch keeps calling it for signals that are not its stack captures"
        );
    }
    chained
        .handler
        .store(current.sa_sigaction, Ordering::Relaxed);
    chained
        .siginfo
        .store(current.sa_flags & libc::SA_SIGINFO != 0, Ordering::Relaxed);
    chained.recorded.store(true, Ordering::Release);

    // SAFETY: as above, zero is a valid starting point; every field we rely on is set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler as *const () as usize;
    // SA_RESTART: the interrupted read()/futex wait resumes instead of failing with EINTR.
    // SA_ONSTACK: run on the thread's alternate stack when it has one (std installs one).
    action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
    // SAFETY: sa_mask is a valid sigset_t owned by `action`.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `handler` has the SA_SIGINFO signature and is async-signal-safe.
    if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
        let error = io::Error::last_os_error();
        // Not installed, so no handler reads the record: a later attempt may start over.
        chained.recorded.store(false, Ordering::Release);
        return Err(error);
    }
    Ok(())
}

/// Sends the capture request for `generation` to thread `tid` of this process.
///
/// `rt_tgsigqueueinfo` is `tgkill` with a payload: it is directed at one thread, and the
/// cookie in `si_value` lets the handler recognise our own deliveries, even late ones.
pub(super) fn send(tid: i32, signal: libc::c_int, generation: u32) -> io::Result<()> {
    // SAFETY: getpid and getuid cannot fail.
    let (pid, uid) = unsafe { (libc::getpid(), libc::getuid()) };
    let info = RtSigInfo {
        signo: signal,
        errno: 0,
        code: libc::SI_QUEUE,
        _pad: 0,
        pid,
        uid,
        value: cookie(generation),
        _rest: [0; 12],
    };
    // SAFETY: `info` is a fully initialised 128-byte siginfo_t in the kernel's layout; the
    // kernel only reads it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid,
            signal,
            &info as *const RtSigInfo,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Wakes every thread sleeping on a futex word.
pub(super) fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; `word` is a live static.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), FUTEX_WAKE_PRIVATE, i32::MAX) };
}

/// Sleeps while `word` still holds `expected`, at most `timeout`. Spurious returns are fine:
/// every caller re-checks in a loop. Async-signal-safe (one system call).
pub(super) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live static; `ts` outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            FUTEX_WAIT_PRIVATE,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

/// The payload identifying a capture request of this process.
fn cookie(generation: u32) -> usize {
    ((COOKIE_MAGIC << 32) | u64::from(generation & GEN_MASK)) as usize
}

/// The prefix of the kernel's `siginfo_t` for `SI_QUEUE` signals (the `_rt` member), on the
/// 64-bit targets this module is built for. Declared here because libc exposes no setters.
#[repr(C)]
struct RtSigInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    pid: libc::pid_t,
    uid: libc::uid_t,
    value: usize,
    _rest: [u64; 12],
}

const _: () = assert!(std::mem::size_of::<RtSigInfo>() == std::mem::size_of::<libc::siginfo_t>());

/// The capture generation carried by a delivery, if it is one of ours.
///
/// # Safety
/// `info` is null or the handler's `siginfo_t` argument.
unsafe fn capture_generation(info: *const libc::siginfo_t) -> Option<u32> {
    if info.is_null() {
        return None;
    }
    // SAFETY: the kernel passes a full siginfo_t; RtSigInfo has its size and layout.
    let info = unsafe { &*info.cast::<RtSigInfo>() };
    let value = info.value as u64;
    // SAFETY: getpid is async-signal-safe.
    let ours = info.code == libc::SI_QUEUE
        && value >> 32 == COOKIE_MAGIC
        && info.pid == unsafe { libc::getpid() };
    ours.then_some(value as u32 & GEN_MASK)
}

/// Nanoseconds on the monotonic clock; `clock_gettime` is async-signal-safe.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The calling thread's kernel id (the raw system call: also present on old glibc and musl).
pub(super) fn gettid() -> i32 {
    // SAFETY: gettid cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// The signal handler. Only our own requests park the thread; everything else goes to the
/// handler that was there before.
extern "C" fn handler(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved_errno = unsafe { *errno };
    // SAFETY: `info` and `context` are the kernel's arguments for this delivery.
    match unsafe { capture_generation(info) } {
        Some(generation) => unsafe { freeze(generation, context) },
        None => unsafe { chain(signal, info, context) },
    }
    // SAFETY: as above.
    unsafe { *errno = saved_errno };
}

/// Publishes the interrupted registers and parks until released or the deadline passes.
///
/// # Safety
/// Only from `handler`, with its `context` argument.
unsafe fn freeze(generation: u32, context: *mut c_void) {
    // A stale delivery (its request timed out, or a newer one is pending) fails this claim
    // and is swallowed: it is ours, so it must never reach the application's handler.
    if SLOT
        .word
        .compare_exchange(
            word(generation, REQUESTED),
            word(generation, CAPTURING),
            Ordering::Acquire,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return;
    }
    let start = now_ns();
    // SAFETY: pthread_self only reads the thread pointer.
    let me = unsafe { libc::pthread_self() } as usize;
    if SLOT.target_tid.load(Ordering::Relaxed) != gettid()
        || SLOT.target_pthread.load(Ordering::Relaxed) != me
    {
        finish(generation, OUTCOME_WRONG_THREAD, 0);
        return;
    }
    // SAFETY: `context` is the ucontext_t of this delivery.
    let regs = unsafe { interrupted_registers(context) };
    for (slot, value) in SLOT.regs.iter().zip(regs) {
        slot.store(value, Ordering::Relaxed);
    }
    SLOT.word.store(word(generation, FROZEN), Ordering::Release);
    futex_wake(&SLOT.word);

    let deadline = start + HANDLER_DEADLINE_NS;
    let outcome = loop {
        let released = SLOT.release.load(Ordering::Acquire);
        if released == generation {
            break OUTCOME_RELEASED;
        }
        let now = now_ns();
        if now >= deadline {
            break OUTCOME_DEADLINE;
        }
        futex_wait(
            &SLOT.release,
            released,
            Duration::from_nanos(deadline - now),
        );
    };
    finish(generation, outcome, now_ns().saturating_sub(start));
}

/// Hands the slot back: the watchdog may reuse it once it sees `DONE`.
fn finish(generation: u32, outcome: u32, paused_ns: u64) {
    SLOT.outcome.store(outcome, Ordering::Relaxed);
    SLOT.paused_ns.store(paused_ns, Ordering::Relaxed);
    SLOT.word.store(word(generation, DONE), Ordering::Release);
    futex_wake(&SLOT.word);
}

/// pc, sp, fp, lr of the interrupted context.
///
/// # Safety
/// `context` is a `ucontext_t` passed to an SA_SIGINFO handler.
#[cfg(target_arch = "x86_64")]
unsafe fn interrupted_registers(context: *mut c_void) -> [usize; 4] {
    // SAFETY: guaranteed by the caller.
    let gregs = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    [
        gregs[libc::REG_RIP as usize] as usize,
        gregs[libc::REG_RSP as usize] as usize,
        gregs[libc::REG_RBP as usize] as usize,
        0,
    ]
}

/// pc, sp, fp (x29), lr (x30) of the interrupted context. The leaf's caller is only in lr
/// until the leaf saves it, so the unwinder needs it for the first frame.
///
/// # Safety
/// `context` is a `ucontext_t` passed to an SA_SIGINFO handler.
#[cfg(target_arch = "aarch64")]
unsafe fn interrupted_registers(context: *mut c_void) -> [usize; 4] {
    // SAFETY: guaranteed by the caller.
    let mc = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext };
    [
        mc.pc as usize,
        mc.sp as usize,
        mc.regs[29] as usize,
        mc.regs[30] as usize,
    ]
}

/// Passes a delivery that is not a capture to the handler installed before ours.
///
/// # Safety
/// Only from `handler`, with its arguments.
unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let Some(chained) = usize::try_from(signal).ok().and_then(|i| CHAINED.get(i)) else {
        return;
    };
    if !chained.recorded.load(Ordering::Acquire) {
        return;
    }
    let previous = chained.handler.load(Ordering::Relaxed);
    // The default action of a real-time signal is to kill the process; a stray one must not.
    if previous == libc::SIG_DFL || previous == libc::SIG_IGN {
        return;
    }
    if chained.siginfo.load(Ordering::Relaxed) {
        // SAFETY: the previous action was installed with SA_SIGINFO, so this is its type.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(previous) };
        f(signal, info, context);
    } else {
        // SAFETY: without SA_SIGINFO the previous handler takes only the signal number.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(previous) };
        f(signal);
    }
}
