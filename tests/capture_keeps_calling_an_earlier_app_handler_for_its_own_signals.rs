//! An application that already handled the capture signal keeps receiving its own signals,
//! process- and thread-directed, and is never called for a capture, not even for a capture
//! signal that arrives late (after its request timed out on a masked thread).
//!
//! Linux x86_64 and aarch64 only: the platforms stack capture supports.
//!
//! Its own test binary: it installs the application's handler before pollwatch's, which only a
//! fresh process allows.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use pollwatch::capture::{default_signal, CaptureStatus, StackCapturer, ThreadHandle};

static APP_CALLS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn app_handler(_signal: libc::c_int) {
    APP_CALLS.fetch_add(1, Ordering::SeqCst);
}

fn wait_for_calls(expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    while APP_CALLS.load(Ordering::SeqCst) < expected && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    // Give a wrongly chained extra call the chance to show up too.
    thread::sleep(Duration::from_millis(50));
    APP_CALLS.load(Ordering::SeqCst)
}

fn block_signal(how: libc::c_int, signal: libc::c_int) {
    // SAFETY: a zeroed sigset_t is initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        assert_eq!(libc::pthread_sigmask(how, &set, std::ptr::null_mut()), 0);
    }
}

#[test]
fn the_app_handler_gets_its_own_signals_and_never_a_capture() {
    let signal = default_signal();
    // SAFETY: installs a plain, async-signal-safe handler before pollwatch does.
    let previous = unsafe { libc::signal(signal, app_handler as *const () as libc::sighandler_t) };
    assert_ne!(previous, libc::SIG_ERR);
    let mut capturer = StackCapturer::new(signal).unwrap();
    // Generous: a loaded CI machine may take a while to schedule the target.
    capturer.set_timeout(Duration::from_secs(1));

    // Process-directed and thread-directed signals of the application still arrive.
    for _ in 0..3 {
        // SAFETY: sends a signal that has a handler to our own process.
        assert_eq!(unsafe { libc::kill(libc::getpid(), signal) }, 0);
    }
    assert_eq!(wait_for_calls(3), 3);
    // SAFETY: pthread_self is this live thread.
    assert_eq!(
        unsafe { libc::pthread_kill(libc::pthread_self(), signal) },
        0
    );
    assert_eq!(wait_for_calls(4), 4);

    // Captures of a busy thread do not reach it.
    let stop = Arc::new(AtomicBool::new(false));
    let masked = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let (flag, mask_flag) = (stop.clone(), masked.clone());
    let target = thread::spawn(move || {
        tx.send(ThreadHandle::current()).unwrap();
        let mut is_masked = false;
        while !flag.load(Ordering::Relaxed) {
            let want = mask_flag.load(Ordering::Relaxed);
            if want != is_masked {
                block_signal(
                    if want {
                        libc::SIG_BLOCK
                    } else {
                        libc::SIG_UNBLOCK
                    },
                    signal,
                );
                is_masked = want;
            }
            std::hint::spin_loop();
        }
    });
    let handle = rx.recv().unwrap();
    for _ in 0..50 {
        assert!(capturer.capture(&handle).is_ok());
    }
    assert_eq!(wait_for_calls(4), 4, "a capture reached the app handler");

    // A capture that timed out on the masked thread is delivered when it unmasks: still ours.
    masked.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_millis(50));
    capturer.set_timeout(Duration::from_millis(50));
    assert_eq!(
        capturer.capture(&handle).unwrap_err(),
        CaptureStatus::Timeout
    );
    masked.store(false, Ordering::Relaxed);
    thread::sleep(Duration::from_millis(50));
    assert_eq!(
        wait_for_calls(4),
        4,
        "a late capture signal reached the app handler"
    );
    assert!(capturer.capture(&handle).is_ok());

    stop.store(true, Ordering::Relaxed);
    target.join().unwrap();
}

static SIGINFO_VALUE: AtomicUsize = AtomicUsize::new(0);

extern "C" fn app_siginfo_handler(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo_t for an SA_SIGINFO handler.
    let value = unsafe { (*info).si_value().sival_ptr } as usize;
    SIGINFO_VALUE.store(value, Ordering::SeqCst);
}

#[test]
fn an_sa_siginfo_app_handler_gets_its_own_payload() {
    let signal = default_signal() + 1;
    // SAFETY: zeroed sigaction filled in below; the handler is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = app_siginfo_handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
    }
    let _capturer = StackCapturer::new(signal).unwrap();
    let value = libc::sigval {
        sival_ptr: 0xC0FFEE as *mut libc::c_void,
    };
    // SAFETY: queues a signal with a payload to our own process.
    assert_eq!(unsafe { libc::sigqueue(libc::getpid(), signal, value) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while SIGINFO_VALUE.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(SIGINFO_VALUE.load(Ordering::SeqCst), 0xC0FFEE);
}
