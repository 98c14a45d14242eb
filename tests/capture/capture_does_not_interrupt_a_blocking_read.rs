//! A thread blocked in `read()` on a pipe is captured while it waits, and its read then
//! completes normally with the byte written later: the handler's `SA_RESTART` keeps the
//! capture from turning into `EINTR` in the application.
//!
//! Linux x86_64 and aarch64 only: the platforms stack capture supports.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use crate::support;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pollwatch::capture::{default_signal, StackCapturer, Symbolizer, ThreadHandle};

#[test]
fn a_blocking_read_returns_its_byte_after_being_captured() {
    let _serial = support::serial();
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let [read_end, write_end] = fds;

    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        tx.send(ThreadHandle::current()).unwrap();
        let mut byte = 0u8;
        // SAFETY: reads one byte into a live local.
        let n = unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) };
        let error = std::io::Error::last_os_error();
        (n, byte, error)
    });
    let handle = rx.recv().unwrap();
    thread::sleep(Duration::from_millis(100));

    let mut capturer = StackCapturer::new(default_signal()).unwrap();
    // Generous: a loaded CI machine may take a while to schedule the target.
    capturer.set_timeout(Duration::from_secs(1));
    let mut symbolizer = Symbolizer::new();
    for _ in 0..3 {
        let stack = capturer
            .capture(&handle)
            .expect("capture the blocked reader");
        let frames = symbolizer.symbolize(&stack);
        assert!(
            frames.iter().any(|f| f.function.contains("read")),
            "no read frame in {frames:#?}"
        );
        thread::sleep(Duration::from_millis(20));
        // Without SA_RESTART the read would have failed with EINTR by now.
        assert!(
            !reader.is_finished(),
            "read returned before anything was written"
        );
    }

    // SAFETY: writes one byte from a live local.
    assert_eq!(
        unsafe { libc::write(write_end, b"x".as_ptr().cast(), 1) },
        1
    );
    let (n, byte, error) = reader.join().unwrap();
    assert_eq!(n, 1, "read failed: {error}");
    assert_eq!(byte, b'x');
    // SAFETY: closes descriptors we own.
    unsafe {
        libc::close(read_end);
        libc::close(write_end);
    }
}
