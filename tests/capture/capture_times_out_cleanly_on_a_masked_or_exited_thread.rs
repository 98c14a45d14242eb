//! A thread that cannot answer (signal masked, or gone) makes the capture end with a clean
//! `Timeout` (or `Failed`) within its deadline, and the next capture of a healthy thread works.
//!
//! Linux x86_64 and aarch64 only: the platforms stack capture supports.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use pollwatch::capture::{default_signal, CaptureStatus, StackCapturer, ThreadHandle};

/// The two tests share the process-wide capture slot; run them one at a time so a capture
/// in one never makes the other wait past its own deadline (which would read as `Failed`).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A spinning thread, optionally with the capture signal masked for its whole life.
fn spinner(mask: bool) -> (ThreadHandle, Arc<AtomicBool>, thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = stop.clone();
    let join = thread::spawn(move || {
        if mask {
            // SAFETY: a zeroed sigset_t is initialised by sigemptyset before use.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, default_signal());
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
        }
        tx.send(ThreadHandle::current()).unwrap();
        while !flag.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
    });
    (rx.recv().unwrap(), stop, join)
}

#[test]
fn a_masked_thread_times_out_and_a_healthy_one_is_captured_after() {
    let _serial = support::serial();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut capturer = StackCapturer::new(default_signal()).unwrap();
    capturer.set_timeout(Duration::from_millis(30));
    let (masked, stop_masked, masked_join) = spinner(true);
    let (healthy, stop_healthy, healthy_join) = spinner(false);

    for _ in 0..3 {
        let start = Instant::now();
        assert_eq!(
            capturer.capture(&masked).unwrap_err(),
            CaptureStatus::Timeout
        );
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(30), "gave up early: {took:?}");
        assert!(took < Duration::from_millis(500), "not bounded: {took:?}");
        let stack = capturer
            .capture(&healthy)
            .expect("healthy thread after a timeout");
        assert!(!stack.ips.is_empty());
    }

    // The masked thread exits with the stale signals still pending: nothing happens.
    stop_masked.store(true, Ordering::Relaxed);
    masked_join.join().unwrap();
    stop_healthy.store(true, Ordering::Relaxed);
    healthy_join.join().unwrap();
}

#[test]
fn an_exited_thread_gives_a_clean_error() {
    let _serial = support::serial();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut capturer = StackCapturer::new(default_signal()).unwrap();
    let (gone, stop, join) = spinner(false);
    stop.store(true, Ordering::Relaxed);
    join.join().unwrap();

    let start = Instant::now();
    let error = capturer.capture(&gone).unwrap_err();
    assert!(
        matches!(error, CaptureStatus::Timeout | CaptureStatus::Failed),
        "{error:?}"
    );
    assert!(start.elapsed() < Duration::from_millis(500));
}
