//! The handler has its own hard deadline: if the watchdog stalls while a thread is frozen
//! (descheduled, stopped in a debugger, dead), the thread resumes by itself after ~200 ms
//! (the upper bound checked is loose, for loaded machines),
//! that capture reports `Failed` (what was read may be torn), and the next one works.
//!
//! Linux x86_64 and aarch64 only: the platforms stack capture supports.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pollwatch::capture::{default_signal, CaptureStatus, StackCapturer, ThreadHandle};

static HEARTBEAT: AtomicU64 = AtomicU64::new(0);
static STALL_WATCHDOG: AtomicBool = AtomicBool::new(false);
/// How long after the freeze the target was seen running again, measured in the stall.
static RESUMED_AFTER: Mutex<Option<Duration>> = Mutex::new(None);

fn frozen_window(frozen: bool) {
    if !frozen || !STALL_WATCHDOG.load(Ordering::SeqCst) {
        return;
    }
    let start = Instant::now();
    let beat = HEARTBEAT.load(Ordering::SeqCst);
    while start.elapsed() < Duration::from_secs(2) {
        if HEARTBEAT.load(Ordering::SeqCst) != beat {
            *RESUMED_AFTER.lock().unwrap() = Some(start.elapsed());
            return;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_frozen_thread_resumes_within_the_handler_deadline() {
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
        while !flag.load(Ordering::Relaxed) {
            HEARTBEAT.fetch_add(1, Ordering::SeqCst);
        }
    });
    let handle = rx.recv().unwrap();
    assert!(capturer.capture(&handle).is_ok());

    STALL_WATCHDOG.store(true, Ordering::SeqCst);
    assert_eq!(
        capturer.capture(&handle).unwrap_err(),
        CaptureStatus::Failed
    );
    STALL_WATCHDOG.store(false, Ordering::SeqCst);
    let resumed = RESUMED_AFTER
        .lock()
        .unwrap()
        .expect("the target never resumed");
    assert!(
        (Duration::from_millis(150)..Duration::from_millis(1500)).contains(&resumed),
        "resumed after {resumed:?}"
    );

    assert!(capturer.capture(&handle).is_ok());
    stop.store(true, Ordering::Relaxed);
    target.join().unwrap();
}
