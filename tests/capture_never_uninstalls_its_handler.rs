//! Once installed, the capture handler stays: dropping every capturer leaves it in place
//! (a late capture signal must not meet the default action, which kills the process), a
//! stray signal on that number is harmless, and a new capturer can use it again.
//!
//! Linux x86_64 and aarch64 only: the platforms stack capture supports.
//!
//! Its own test binary: it starts from the default disposition of the capture signal, which
//! any earlier capture in the process would have replaced.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use pollwatch::capture::{default_signal, StackCapturer, ThreadHandle};

fn current_action(signal: libc::c_int) -> libc::sigaction {
    // SAFETY: queries the action without changing it; zeroed is a valid out value.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signal, std::ptr::null(), &mut action), 0);
        action
    }
}

#[test]
fn the_handler_stays_installed_after_every_capturer_is_dropped() {
    let signal = default_signal();
    assert_eq!(current_action(signal).sa_sigaction, libc::SIG_DFL);

    let first = StackCapturer::new(signal).unwrap();
    let installed = current_action(signal);
    assert_ne!(installed.sa_sigaction, libc::SIG_DFL);
    let flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
    assert_eq!(installed.sa_flags & flags, flags);
    let second = StackCapturer::new(signal).unwrap();
    drop(first);
    drop(second);

    let after = current_action(signal);
    assert_eq!(after.sa_sigaction, installed.sa_sigaction);
    assert_eq!(after.sa_flags & flags, flags);

    // A stray delivery on the number finds our handler, not the default action (which
    // would end this test process).
    // SAFETY: signals our own process; the handler swallows it.
    assert_eq!(unsafe { libc::kill(libc::getpid(), signal) }, 0);
    thread::sleep(Duration::from_millis(50));

    // And it still works for a new capturer.
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = stop.clone();
    let target = thread::spawn(move || {
        tx.send(ThreadHandle::current()).unwrap();
        while !flag.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
    });
    let handle = rx.recv().unwrap();
    let mut again = StackCapturer::new(signal).unwrap();
    // Generous: a loaded CI machine may take a while to schedule the target.
    again.set_timeout(Duration::from_secs(1));
    assert!(again.capture(&handle).is_ok());
    stop.store(true, Ordering::Relaxed);
    target.join().unwrap();
}
