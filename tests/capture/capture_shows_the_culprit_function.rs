//! A captured stack names the function the thread is stuck in: a busy loop shows the looping
//! function (also when it is interrupted inside the vDSO's clock), a sleeping thread shows a
//! `sleep` frame. (Captures from several threads at once, and the process-wide capture lock,
//! are exercised by `capture_works_with_several_capturers_on_several_signals`.)
//!
//! Linux x86_64 and aarch64 only: the platforms stack capture supports.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use crate::support;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use pollwatch::capture::{default_signal, Frame, StackCapturer, Symbolizer, ThreadHandle};

/// Spends most of its time inside the kernel's vDSO (`clock_gettime`), which has no file on
/// disk: the unwinder must still get from there back to this function.
#[inline(never)]
fn read_the_clock_in_the_culprit(stop: &AtomicBool) -> u64 {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1000 {
            black_box(std::time::Instant::now());
        }
        n += 1;
    }
    n
}

#[inline(never)]
fn spin_in_the_culprit(stop: &AtomicBool) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1000 {
            x = black_box(x.rotate_left(7) ^ 0x1234_5678);
        }
    }
    x
}

/// Starts `work` on a new thread and returns its handle once it runs.
fn start(
    work: impl FnOnce(&AtomicBool) + Send + 'static,
) -> (ThreadHandle, Arc<AtomicBool>, thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = stop.clone();
    let join = thread::spawn(move || {
        tx.send(ThreadHandle::current()).unwrap();
        work(&flag);
    });
    (rx.recv().unwrap(), stop, join)
}

/// Captures `thread` a few times and returns the symbolized frames of every success.
fn capture_frames(thread: &ThreadHandle) -> Vec<Vec<Frame>> {
    let mut capturer = StackCapturer::new(default_signal()).unwrap();
    // Generous: a loaded CI machine may take a while to schedule the target.
    capturer.set_timeout(Duration::from_secs(1));
    let mut symbolizer = Symbolizer::new();
    thread::sleep(Duration::from_millis(50));
    (0..20)
        .filter_map(|_| capturer.capture(thread).ok())
        .map(|stack| symbolizer.symbolize(&stack))
        .collect()
}

/// Runs `work` on a thread, captures it repeatedly, and checks that every captured stack
/// has a frame whose function name contains `culprit`.
fn assert_every_stack_names(culprit: &str, work: fn(&AtomicBool)) {
    let (handle, stop, join) = start(work);
    let stacks = capture_frames(&handle);
    stop.store(true, Ordering::Relaxed);
    join.join().unwrap();

    assert!(!stacks.is_empty(), "no capture succeeded");
    for frames in &stacks {
        assert!(
            frames.iter().any(|f| f.function.contains(culprit)),
            "{culprit} missing from {frames:#?}"
        );
    }
}

#[test]
fn a_busy_loop_shows_the_looping_function() {
    let _serial = support::serial();
    assert_every_stack_names("spin_in_the_culprit", |stop| {
        black_box(spin_in_the_culprit(stop));
    });
}

#[test]
fn a_loop_reading_the_clock_shows_the_looping_function() {
    let _serial = support::serial();
    assert_every_stack_names("read_the_clock_in_the_culprit", |stop| {
        black_box(read_the_clock_in_the_culprit(stop));
    });
}

#[test]
fn a_sleeping_thread_shows_a_sleep_frame() {
    let _serial = support::serial();
    let (handle, stop, join) = start(|stop| {
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
        }
    });
    let stacks = capture_frames(&handle);
    stop.store(true, Ordering::Relaxed);
    join.join().unwrap();

    assert!(!stacks.is_empty(), "no capture succeeded");
    let with_sleep = stacks
        .iter()
        .filter(|frames| frames.iter().any(|f| f.function.contains("sleep")))
        .count();
    // The thread is between two sleeps for a few microseconds of every 20 ms.
    assert!(
        with_sleep >= stacks.len() - 1,
        "no sleep frame in {stacks:#?}"
    );
}
