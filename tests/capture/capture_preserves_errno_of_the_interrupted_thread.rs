//! The handler makes system calls (futex, clock_gettime, gettid) that may set `errno`; the
//! interrupted code must find its own `errno` unchanged after every capture. A few rounds
//! stall the watchdog inside the frozen window, so the handler also takes its deadline path,
//! where its futex wait always ends in `ETIMEDOUT`.
//!
//! Linux x86_64 and aarch64 only: the platforms stack capture supports.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use pollwatch::capture::{default_signal, StackCapturer, ThreadHandle};

const MARKER: libc::c_int = 4242;
const ROUNDS: usize = 300;

/// Rounds the watchdog has finished (a capture each).
static ROUND: AtomicUsize = AtomicUsize::new(0);
/// Rounds the target is ready for: errno set to the marker, spinning without system calls.
static ARMED: AtomicUsize = AtomicUsize::new(0);
/// Makes the watchdog sleep past the handler's deadline inside the frozen window.
static STALL_WATCHDOG: AtomicBool = AtomicBool::new(false);

fn frozen_window(frozen: bool) {
    if frozen && STALL_WATCHDOG.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn errno_is_the_same_after_a_capture() {
    let _serial = support::serial();
    crate::set_frozen_window_hook(frozen_window);
    let mut capturer = StackCapturer::new(default_signal()).unwrap();
    // Generous: a loaded CI machine may take a while to schedule the target.
    capturer.set_timeout(Duration::from_secs(1));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = stop.clone();
    let target = thread::spawn(move || {
        tx.send(ThreadHandle::current()).unwrap();
        let (mut checked, mut clobbered) = (0, 0);
        while !flag.load(Ordering::Relaxed) {
            let round = ROUND.load(Ordering::SeqCst);
            // SAFETY: __errno_location is this thread's errno.
            unsafe { *libc::__errno_location() = MARKER };
            ARMED.store(round + 1, Ordering::SeqCst);
            // No system call in here: only the capture can touch errno.
            while ROUND.load(Ordering::SeqCst) == round && !flag.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            // SAFETY: as above.
            if unsafe { *libc::__errno_location() } != MARKER {
                clobbered += 1;
            }
            checked += 1;
        }
        (checked, clobbered)
    });
    let handle = rx.recv().unwrap();
    let mut ok = 0;
    for round in 0..ROUNDS {
        let deadline = Instant::now() + Duration::from_secs(5);
        while ARMED.load(Ordering::SeqCst) != round + 1 {
            assert!(Instant::now() < deadline, "target stopped arming");
            thread::yield_now();
        }
        let stall = round % 100 == 50;
        STALL_WATCHDOG.store(stall, Ordering::SeqCst);
        match capturer.capture(&handle) {
            Ok(_) => ok += 1,
            Err(status) => assert!(stall, "round {round}: {status:?}"),
        }
        STALL_WATCHDOG.store(false, Ordering::SeqCst);
        ROUND.store(round + 1, Ordering::SeqCst);
    }
    stop.store(true, Ordering::Relaxed);
    let (checked, clobbered) = target.join().unwrap();
    assert!(ok >= ROUNDS - 10, "{ok} of {ROUNDS} captures succeeded");
    assert!(checked >= ROUNDS, "only {checked} captures were checked");
    assert_eq!(
        clobbered, 0,
        "errno changed by {clobbered} of {checked} captures"
    );
}
