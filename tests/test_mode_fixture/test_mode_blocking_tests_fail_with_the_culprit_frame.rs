//! Test mode through `cargo test`, as a user's CI runs it: eight tests of a small application
//! (`tests/fixtures/test-mode/tests/blocking.rs`) each block their executor for 50 ms, in
//! parallel, each in a different way (`#[tokio::test]` body on `current_thread`, spawned
//! tasks on both flavors, `std::sync::Mutex` wait, short sleeps past a per-test threshold,
//! `testing::run`, a runtime the test builds and `finish()`). Every one fails, after its body,
//! with its own culprit function in the message, the duration and kind (a test whose block
//! the watchdog missed on a loaded machine is run again alone, at most twice, and the misses
//! are printed); in the hooked build
//! the tests on runtimes built through pollwatch also name the spawn location.

use crate::support;

/// Test name, the fixture function that blocks in it, its stall kind (`""`: not checked,
/// see below).
const CASES: [(&str, &str, &str); 8] = [
    (
        "body_blocks_a_current_thread_runtime",
        "load_config_synchronously",
        "off_cpu",
    ),
    (
        "spawned_task_spins_on_a_current_thread_runtime",
        "hash_password_on_the_executor",
        "cpu",
    ),
    (
        "spawned_task_waits_for_a_std_mutex",
        "wait_for_the_std_mutex",
        "off_cpu",
    ),
    (
        "spawned_task_sleeps_in_short_steps_past_a_per_test_threshold",
        "poll_the_flag_with_short_sleeps",
        // Mostly asleep, but it wakes every 5 ms: attach mode's per-tick votes may go
        // either way, so only the frame and the failure are checked.
        "",
    ),
    (
        "spawned_task_resolves_synchronously",
        "resolve_synchronously",
        "off_cpu",
    ),
    (
        "spawned_task_compresses_on_the_executor",
        "compress_on_the_executor",
        "cpu",
    ),
    (
        "run_helper_catches_a_blocking_task",
        "flush_synchronously",
        "off_cpu",
    ),
    (
        "finish_returns_the_failure_from_a_runtime_the_test_builds",
        "write_audit_log_synchronously",
        "off_cpu",
    ),
];

/// A block the watchdog misses on a loaded machine (the host-stall guard cannot tell a
/// 50 ms block from the host's own stall when the host keeps the watchdog or the blocked
/// thread off the CPU) is run again, alone, at most this many more times.
const RETRIES: usize = 2;

#[test]
fn test_mode_blocking_tests_fail_with_the_culprit_frame() {
    let _serial = support::serial();
    let fixture = support::fixture::fixture();
    let run = fixture.cargo_test(&["--test", "blocking"], &[]);
    println!("{}", run.output);
    assert_eq!(run.status.code(), Some(101), "cargo test fails: {run:?}");
    assert!(
        run.output.contains("test result: FAILED."),
        "the suite fails: {run:?}"
    );
    for (test, culprit, kind) in CASES {
        let mut retried = Vec::new();
        let mut message = run.failure_of(test).map(str::to_string);
        while message.is_none() && retried.len() < RETRIES {
            assert!(
                run.passed(test) || !retried.is_empty(),
                "{test} ran: {run:?}"
            );
            let again = fixture.cargo_test(&["--test", "blocking", "--", "--exact", test], &[]);
            message = again.failure_of(test).map(str::to_string);
            retried.push(again);
        }
        if !retried.is_empty() {
            println!("{test}: missed {} time(s) before it failed", retried.len());
        }
        let message = message.unwrap_or_else(|| {
            panic!(
                "{test} fails (in {} runs): {run:?}\n{retried:?}",
                RETRIES + 1
            )
        });
        // The function itself, or a closure inside it.
        let culprit_frame = format!("test_mode_fixture::{culprit}");
        let own = message
            .split("your code, innermost first:")
            .nth(1)
            .unwrap_or_else(|| panic!("{test}: no frames of its own code: {message}"));
        let first_own = own.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let rest = first_own.trim().strip_prefix(&culprit_frame);
        assert!(
            rest.is_some_and(|r| r.starts_with(" at ") || r.starts_with("::{{closure}}")),
            "{test}: the first frame of the test's own code is {culprit}, got {first_own:?}:\n{message}"
        );
        assert!(
            message.contains("blocked the tokio executor for longer than"),
            "{test}: {message}"
        );
        if !kind.is_empty() {
            assert!(
                message.contains(&format!("ms ({kind}: ")),
                "{test}: kind {kind}: {message}"
            );
        }
        assert!(
            !message.contains("tokio::runtime::scheduler"),
            "{test}: runtime frames are folded: {message}"
        );
        let hooked_case = test.starts_with("run_helper") || test.starts_with("finish_");
        if support::HOOKED && hooked_case {
            assert!(message.contains("(hooked mode)"), "{test}: {message}");
            assert!(
                message.contains("spawned at tests/blocking.rs:"),
                "{test}: {message}"
            );
        }
    }
}
