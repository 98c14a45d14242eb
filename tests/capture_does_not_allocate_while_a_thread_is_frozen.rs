//! While a thread is frozen it may hold the allocator's lock, so nothing may allocate until
//! it is released: a counting allocator counts every allocation of any thread inside the
//! frozen window (reported by a hidden hook), and every allocation the capturing thread makes
//! during `capture()` (only the returned `Vec` is allowed).
//!
//! The target allocates in a tight loop, so it would be counted too if it were not frozen.
//!
//! Linux x86_64 and aarch64 only: the platforms stack capture supports.
//!
//! Its own test binary: it replaces the process's global allocator and sets the once-per-process
//! frozen-window hook.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use pollwatch::capture::{default_signal, StackCapturer, ThreadHandle};

static FROZEN: AtomicBool = AtomicBool::new(false);
static IN_FROZEN_WINDOW: AtomicUsize = AtomicUsize::new(0);
static WINDOWS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNT_THIS_THREAD: Cell<bool> = const { Cell::new(false) };
    static BY_THIS_THREAD: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: forwards to the system allocator; the counting uses only atomics and const
// thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note() {
    if FROZEN.load(Ordering::SeqCst) {
        IN_FROZEN_WINDOW.fetch_add(1, Ordering::SeqCst);
    }
    let _ = COUNT_THIS_THREAD.try_with(|on| {
        if on.get() {
            BY_THIS_THREAD.with(|n| n.set(n.get() + 1));
        }
    });
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn frozen_window(frozen: bool) {
    if frozen {
        WINDOWS.fetch_add(1, Ordering::SeqCst);
    }
    FROZEN.store(frozen, Ordering::SeqCst);
}

#[test]
fn nothing_allocates_while_a_thread_is_frozen() {
    assert!(pollwatch::capture::__set_frozen_window_hook(frozen_window));
    // The counter itself works: an allocation inside a window is seen.
    FROZEN.store(true, Ordering::SeqCst);
    black_box(Box::new(1u64));
    FROZEN.store(false, Ordering::SeqCst);
    assert_eq!(IN_FROZEN_WINDOW.swap(0, Ordering::SeqCst), 1);

    let mut capturer = StackCapturer::new(default_signal()).unwrap();
    // Generous: a loaded CI machine may take a while to schedule the target.
    capturer.set_timeout(Duration::from_secs(1));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = stop.clone();
    let target = thread::spawn(move || {
        tx.send(ThreadHandle::current()).unwrap();
        let mut n = 0usize;
        while !flag.load(Ordering::Relaxed) {
            let v: Vec<u8> = vec![1; n % 512 + 1];
            n = n.wrapping_add(black_box(v).len());
        }
    });
    let handle = rx.recv().unwrap();
    thread::sleep(Duration::from_millis(20));

    let mut ok = 0;
    let mut allocations_in_capture = 0;
    for _ in 0..300 {
        COUNT_THIS_THREAD.with(|c| c.set(true));
        BY_THIS_THREAD.with(|n| n.set(0));
        let result = capturer.capture(&handle);
        COUNT_THIS_THREAD.with(|c| c.set(false));
        let mine = BY_THIS_THREAD.with(|n| n.get());
        if let Ok(stack) = result {
            ok += 1;
            assert!(!stack.ips.is_empty());
            // The returned Vec, made after the release, is the only allocation allowed.
            allocations_in_capture += mine.saturating_sub(1);
        } else {
            allocations_in_capture += mine;
        }
    }
    stop.store(true, Ordering::Relaxed);
    target.join().unwrap();

    assert!(ok >= 290, "only {ok} of 300 captures succeeded");
    assert_eq!(
        WINDOWS.load(Ordering::SeqCst),
        ok,
        "one frozen window per capture"
    );
    assert_eq!(
        IN_FROZEN_WINDOW.load(Ordering::SeqCst),
        0,
        "allocations while frozen"
    );
    assert_eq!(allocations_in_capture, 0, "extra allocations by capture()");
}
