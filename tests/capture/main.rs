//! Stack capture of a frozen thread (`pollwatch::capture`): what it shows, and that it
//! leaves the captured thread's `read()`, `errno` and unwinding alone, times out cleanly
//! and survives thousands of captures. (Tests that need the process's signal disposition or
//! allocator to themselves are separate binaries: `capture_never_uninstalls_its_handler`,
//! `capture_keeps_calling_an_earlier_app_handler_for_its_own_signals`,
//! `capture_does_not_allocate_while_a_thread_is_frozen`.)
//!
//! The tests of this binary run one at a time (`support::serial`): each measures stalls or
//! deadlines against the wall clock, and one test's deliberate stall must not be another's.

#[path = "../support/mod.rs"]
mod support;

/// `pollwatch::capture::__set_frozen_window_hook` can be set once per process, and two
/// tests here need their own hook: it is set once to [`frozen_window`], which calls the hook
/// the running test chose (the tests run one at a time).
fn set_frozen_window_hook(hook: fn(bool)) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| assert!(pollwatch::capture::__set_frozen_window_hook(frozen_window)));
    *FROZEN_WINDOW_HOOK.lock().unwrap_or_else(|p| p.into_inner()) = hook;
}

/// The running test's hook. A `Mutex` does not allocate, and the frozen thread never takes it.
static FROZEN_WINDOW_HOOK: std::sync::Mutex<fn(bool)> = std::sync::Mutex::new(|_| {});

fn frozen_window(frozen: bool) {
    let hook = *FROZEN_WINDOW_HOOK.lock().unwrap_or_else(|p| p.into_inner());
    hook(frozen);
}

mod capture_does_not_interrupt_a_blocking_read;
mod capture_folds_runtime_frames_for_humans;
mod capture_lets_the_thread_go_by_itself_when_the_watchdog_stalls;
mod capture_parses_signal_settings;
mod capture_preserves_errno_of_the_interrupted_thread;
mod capture_shows_the_culprit_function;
mod capture_survives_thousands_of_captures_of_a_panicking_thread;
mod capture_times_out_cleanly_on_a_masked_or_exited_thread;
mod capture_works_with_several_capturers_on_several_signals;
