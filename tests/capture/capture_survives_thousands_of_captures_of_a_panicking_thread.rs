//! 5 000 captures in a row of a thread that panics and catches (libgcc's unwinder running),
//! allocates, and takes its own backtraces: the place where unwinding inside the signal
//! handler crashes. Every capture must end `Ok` or `Timeout`, nothing may crash or hang, and
//! the whole run must stay well inside CI's time.
//!
//! Linux x86_64 and aarch64 only: the platforms stack capture supports.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use crate::support;

use std::backtrace::Backtrace;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use pollwatch::capture::{default_signal, CaptureStatus, StackCapturer, ThreadHandle};

const CAPTURES: usize = 5_000;

#[test]
fn thousands_of_captures_of_a_panicking_allocating_backtracing_thread() {
    let _serial = support::serial();
    // Thousands of caught panics would otherwise each print a message.
    std::panic::set_hook(Box::new(|_| {}));
    let mut capturer = StackCapturer::new(default_signal()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel();
    let (flag, counter) = (stop.clone(), rounds.clone());
    let target = thread::spawn(move || {
        tx.send(ThreadHandle::current()).unwrap();
        let mut n = 0usize;
        while !flag.load(Ordering::Relaxed) {
            let caught = std::panic::catch_unwind(|| panic!("boom {n}"));
            assert!(caught.is_err());
            let v: Vec<u64> = vec![n as u64; n % 1024 + 1];
            n = n.wrapping_add(black_box(v).len());
            drop(black_box(Backtrace::force_capture()));
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let handle = rx.recv().unwrap();

    let start = Instant::now();
    let (mut ok, mut timeouts) = (0, 0);
    for i in 0..CAPTURES {
        match capturer.capture(&handle) {
            Ok(stack) => {
                assert!(!stack.ips.is_empty());
                ok += 1;
            }
            Err(CaptureStatus::Timeout) => timeouts += 1,
            Err(other) => panic!("capture {i} ended {other:?}"),
        }
    }
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    target.join().unwrap();
    let _ = std::panic::take_hook();

    let rounds = rounds.load(Ordering::Relaxed);
    println!("{ok} ok, {timeouts} timeouts in {took:?}; the target ran {rounds} rounds");
    assert!(ok >= CAPTURES * 9 / 10, "{ok} ok, {timeouts} timeouts");
    assert!(rounds > 0, "the target never ran");
    assert!(took < Duration::from_secs(45), "took {took:?}");
}
