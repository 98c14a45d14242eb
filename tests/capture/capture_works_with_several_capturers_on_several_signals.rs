//! Several agents in one process: capturers on the same and on different signals, used from
//! several watchdog threads at once, all capture their threads (captures are serialized
//! process-wide because the handler's slot is process-wide).
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
use std::time::Duration;

use pollwatch::capture::{default_signal, StackCapturer, ThreadHandle};

#[test]
fn watchdogs_on_the_same_and_different_signals_capture_concurrently() {
    let _serial = support::serial();
    let stop = Arc::new(AtomicBool::new(false));
    let mut targets = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = mpsc::channel();
        let flag = stop.clone();
        let join = thread::spawn(move || {
            tx.send(ThreadHandle::current()).unwrap();
            while !flag.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        targets.push((rx.recv().unwrap(), join));
    }
    let signals = [default_signal(), default_signal(), default_signal() + 2];
    let watchdogs: Vec<_> = signals
        .iter()
        .enumerate()
        .map(|(i, &signal)| {
            let handle = targets[i % 2].0;
            thread::spawn(move || {
                let mut capturer = StackCapturer::new(signal).unwrap();
                capturer.set_timeout(Duration::from_secs(1));
                (0..200)
                    .filter(|_| capturer.capture(&handle).is_ok())
                    .count()
            })
        })
        .collect();
    for watchdog in watchdogs {
        let ok = watchdog.join().unwrap();
        assert!(ok >= 190, "{ok} of 200 captures succeeded");
    }
    stop.store(true, Ordering::Relaxed);
    for (_, join) in targets {
        join.join().unwrap();
    }
}
