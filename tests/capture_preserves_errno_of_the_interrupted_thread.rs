//! The handler makes system calls (futex, clock_gettime, gettid) that may set `errno`; the
//! interrupted code must find its own `errno` unchanged after every capture.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use pollwatch::capture::{default_signal, StackCapturer, ThreadHandle};

const MARKER: libc::c_int = 4242;

static CAPTURES: AtomicUsize = AtomicUsize::new(0);

#[test]
fn errno_is_the_same_after_a_capture() {
    let mut capturer = StackCapturer::new(default_signal()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = stop.clone();
    let target = thread::spawn(move || {
        tx.send(ThreadHandle::current()).unwrap();
        let (mut checked, mut clobbered) = (0, 0);
        while !flag.load(Ordering::Relaxed) {
            // SAFETY: __errno_location is this thread's errno.
            unsafe { *libc::__errno_location() = MARKER };
            let seen = CAPTURES.load(Ordering::SeqCst);
            // No system call in here: only a capture can change errno.
            while CAPTURES.load(Ordering::SeqCst) == seen && !flag.load(Ordering::Relaxed) {
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
    for _ in 0..300 {
        if capturer.capture(&handle).is_ok() {
            ok += 1;
        }
        CAPTURES.fetch_add(1, Ordering::SeqCst);
    }
    stop.store(true, Ordering::Relaxed);
    let (checked, clobbered) = target.join().unwrap();
    assert!(ok >= 290, "{ok} of 300 captures succeeded");
    assert!(checked >= 250, "only {checked} captures were checked");
    assert_eq!(
        clobbered, 0,
        "errno changed by {clobbered} of {checked} captures"
    );
}
