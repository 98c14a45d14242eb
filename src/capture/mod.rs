//! Capturing the stack of another thread of this process while it is stuck.
//!
//! The watchdog calls [`StackCapturer::capture`] for a thread that has been inside one poll
//! for longer than the stall threshold. On Linux (x86_64, aarch64) this is "freeze and walk"
//! (DESIGN §4): a real-time signal parks the target inside a tiny handler that only publishes
//! its registers; the watchdog unwinds the frozen stack without allocating, releases the
//! thread, and only then symbolizes. Elsewhere every capture is [`CaptureStatus::Unsupported`].

use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;

use crate::Error;

mod fold;
mod symbolize;

// The back-end: `linux` where stacks can be captured, else `unsupported`, with the same
// functions (`current_thread`, `vdso_symbols`, `Backend::{new, capture}`).
cfg_capture! {
    mod linux;
    use linux as backend;
}
cfg_not_capture! {
    mod unsupported;
    use unsupported as backend;
}

pub use fold::fold_runtime_frames;
pub(crate) use fold::is_runtime as is_runtime_frame;
pub(crate) use fold::{is_own_code, parked_in_scheduler};
pub use symbolize::Symbolizer;

/// How a stack capture ended; the `capture` field of a stall report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureStatus {
    /// The stack was captured while the thread was stuck.
    Ok,
    /// The thread did not answer the signal in time (signal masked, thread exited or
    /// in uninterruptible sleep). Nothing was disturbed.
    Timeout,
    /// This platform has no stack capture; everything else works.
    Unsupported,
    /// Stack capture is turned off (`stacks(false)`, `POLLWATCH_STACKS=off`).
    Disabled,
    /// The capture was attempted and failed for another reason (see the logs).
    Failed,
}

impl CaptureStatus {
    /// The lowercase name used in JSON and in the `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureStatus::Ok => "ok",
            CaptureStatus::Timeout => "timeout",
            CaptureStatus::Unsupported => "unsupported",
            CaptureStatus::Disabled => "disabled",
            CaptureStatus::Failed => "failed",
        }
    }
}

/// One symbolized frame of a captured stack, innermost first in a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// The demangled function name, without the hash; `"??"` when unknown.
    pub function: String,
    /// The source file, when the binary has line tables.
    pub file: Option<String>,
    /// The source line, when the binary has line tables.
    pub line: Option<u32>,
}

/// Identity of a thread that may be captured later: its kernel thread id and stack bounds.
///
/// Made once on the thread itself (tokio's `on_thread_start`, or its first poll), because the
/// stack bounds can only be asked for from there, and asking allocates. Cheap to copy.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(
    not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )),
    allow(dead_code) // only the Linux back-end reads the stack bounds
)]
pub struct ThreadHandle {
    tid: i32,
    /// `pthread_self()`: tells the thread apart from a later one that reuses the tid.
    pthread: usize,
    /// `[stack_lo, stack_hi)`: the only memory of the target the walk may read.
    stack_lo: usize,
    stack_hi: usize,
}

impl ThreadHandle {
    /// The calling thread. Call it once per thread and keep the handle.
    pub fn current() -> ThreadHandle {
        backend::current_thread()
    }

    /// The kernel thread id (the `tid` of a stall report); 0 where capture is unsupported.
    pub fn tid(&self) -> i32 {
        self.tid
    }
}

/// The real-time signals of this platform, if it has them.
fn realtime_signals() -> Option<(i32, i32)> {
    #[cfg(target_os = "linux")]
    return Some((libc::SIGRTMIN(), libc::SIGRTMAX()));
    #[cfg(not(target_os = "linux"))]
    return None;
}

/// The signal used when none is configured: `SIGRTMIN+3`.
///
/// Computed at run time because the C library reserves the first real-time signals for
/// itself and moves `SIGRTMIN` accordingly; `+3` keeps clear of the common `SIGRTMIN+0..2`.
/// 0 where the platform has no real-time signals (capture is unsupported there anyway).
pub fn default_signal() -> i32 {
    realtime_signals().map_or(0, |(min, _)| min + 3)
}

/// Parses a signal setting: `SIGRTMIN+3`, `RTMIN+3`, `SIGRTMAX-2`, `SIGRTMIN` or a number
/// (case-insensitive).
///
/// Only real-time signals are accepted on Linux: they have no predefined meaning and queue,
/// whereas taking e.g. `SIGUSR1` would steal it from the application. `field` names the
/// builder setting or environment variable in the error.
pub fn parse_signal(field: &'static str, value: &str) -> Result<i32, Error> {
    let range = realtime_signals();
    let expected = match range {
        Some((min, max)) => format!(
            "expected a real-time signal: SIGRTMIN+N, SIGRTMAX-N or a number from {min} to {max}"
        ),
        None => "this platform has no real-time signals; expected a positive number".to_owned(),
    };
    let invalid = || Error::invalid(field, value, expected.clone());
    let text = value.trim().to_ascii_uppercase();
    let name = text.strip_prefix("SIG").unwrap_or(&text);
    let relative = |rest: &str, base: i32| -> Option<i32> {
        let digits = |s: &str| {
            let all_digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            all_digits.then(|| s.parse::<i32>().ok()).flatten()
        };
        match rest.as_bytes().first() {
            None => Some(base),
            Some(b'+') => base.checked_add(digits(&rest[1..])?),
            Some(b'-') => base.checked_sub(digits(&rest[1..])?),
            Some(_) => None,
        }
    };
    let signal = if let Some(rest) = name.strip_prefix("RTMIN") {
        relative(rest, range.ok_or_else(invalid)?.0)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        relative(rest, range.ok_or_else(invalid)?.1)
    } else {
        text.parse::<i32>().ok()
    }
    .ok_or_else(invalid)?;
    let valid = match range {
        Some((min, max)) => (min..=max).contains(&signal),
        None => signal > 0,
    };
    if valid {
        Ok(signal)
    } else {
        Err(invalid())
    }
}

/// The raw result of one capture, before symbolization.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawStack {
    /// Instruction addresses, innermost first. The first is the exact interrupted pc; the
    /// others are return addresses (one past the call).
    pub ips: Vec<usize>,
    /// How long the target thread was parked for this capture (the cost to the application).
    pub paused: Duration,
}

/// How long a capture waits for the target's handler by default: long enough for a loaded
/// machine to schedule the thread, short enough not to delay the watchdog's next tick much.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// Captures the stacks of other threads of this process; owned by one watchdog thread.
///
/// Several may exist (several runtimes or agents, same or different signals): captures are
/// serialized process-wide, because the handler and its slot are process-wide.
pub struct StackCapturer {
    timeout: Duration,
    backend: backend::Backend,
}

impl std::fmt::Debug for StackCapturer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackCapturer")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl StackCapturer {
    /// Installs the process-wide handler for `signal` (once; never uninstalled; a handler the
    /// application had is still called for its own signals) and prepares the unwind tables of
    /// the loaded modules. Allocates and reads files: call it at start-up.
    ///
    /// Where capture is unsupported this succeeds and every capture is
    /// [`CaptureStatus::Unsupported`], so that everything else keeps working.
    pub fn new(signal: i32) -> Result<StackCapturer, Error> {
        Ok(StackCapturer {
            timeout: DEFAULT_TIMEOUT,
            backend: backend::Backend::new(signal)?,
        })
    }

    /// Sets how long a capture waits for the target to answer (default 50 ms). A capture
    /// returns within about twice this, whatever the target does (three times when another
    /// capturer's capture is in progress).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Captures `thread`'s stack while it stays where it is stuck.
    ///
    /// The thread is parked for the walk only (`RawStack::paused`, typically well under a
    /// millisecond) and never longer than 200 ms, even if this caller dies; an interrupted
    /// `read()` or lock wait resumes without `EINTR`. Errors:
    /// - [`CaptureStatus::Timeout`]: the thread did not answer in time (signal masked,
    ///   thread not scheduled) or no longer exists (exited, including a reused thread id);
    /// - [`CaptureStatus::Failed`]: the signal could not be sent, the thread is the caller,
    ///   the watchdog was too slow (the handler's deadline passed), or another capture did
    ///   not finish in time;
    /// - [`CaptureStatus::Unsupported`]: not Linux on x86_64 or aarch64.
    pub fn capture(&mut self, thread: &ThreadHandle) -> Result<RawStack, CaptureStatus> {
        self.backend.capture(thread, self.timeout)
    }
}

/// Test hook, see [`__set_frozen_window_hook`].
static FROZEN_WINDOW_HOOK: OnceLock<fn(bool)> = OnceLock::new();

/// Not part of the API: lets a test observe the window in which a thread is frozen.
///
/// `hook(true)` is called on the capturing thread right after the target is frozen and
/// `hook(false)` right before it is released, so a test can check that nothing allocates in
/// between. Can be set once per process; returns whether this call set it.
#[doc(hidden)]
pub fn __set_frozen_window_hook(hook: fn(bool)) -> bool {
    FROZEN_WINDOW_HOOK.set(hook).is_ok()
}

/// Marks the start (`true`) or end (`false`) of a frozen window for the test hook.
#[cfg_attr(
    not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )),
    allow(dead_code)
)]
fn frozen_window(frozen: bool) {
    if let Some(hook) = FROZEN_WINDOW_HOOK.get() {
        hook(frozen);
    }
}
