//! `POLLWATCH_TEST_THRESHOLD_MS` through `cargo test` of the fixture application: at 1000 ms
//! its 50 ms blocks pass, except the test that sets its own 20 ms threshold (the per-test
//! setting wins); a value that is not a number fails every watched test with an error naming
//! the variable and the value.

use crate::support;

const OWN_THRESHOLD: &str = "spawned_task_sleeps_in_short_steps_past_a_per_test_threshold";

#[test]
fn a_higher_threshold_for_every_test_lets_50_ms_blocks_pass_but_not_a_per_test_threshold() {
    let _serial = support::serial();
    let fixture = support::fixture::fixture();
    let mut runs = Vec::new();
    // A block missed on a loaded machine is run again (see the blocking-tests test).
    for _ in 0..3 {
        let run = fixture.cargo_test(
            &["--test", "blocking"],
            &[("POLLWATCH_TEST_THRESHOLD_MS", "1000")],
        );
        let done = run.failed(OWN_THRESHOLD);
        runs.push(run);
        if done {
            break;
        }
    }
    let run = runs.last().unwrap();
    assert!(
        run.output
            .contains("test result: FAILED. 7 passed; 1 failed"),
        "only the test with its own threshold fails: {runs:?}"
    );
    let message = run.failure_of(OWN_THRESHOLD).unwrap();
    assert!(
        message.contains("for longer than 20 ms"),
        "its own threshold: {message}"
    );
}

#[test]
fn a_bad_threshold_variable_fails_every_watched_test_naming_it_and_its_value() {
    let _serial = support::serial();
    let fixture = support::fixture::fixture();
    let run = fixture.cargo_test(
        &["--test", "healthy"],
        &[("POLLWATCH_TEST_THRESHOLD_MS", "soon")],
    );
    assert_eq!(run.status.code(), Some(101), "{run:?}");
    assert!(
        run.output
            .contains("test result: FAILED. 0 passed; 8 failed"),
        "{run:?}"
    );
    for test in [
        "channel_ping_pong_on_a_current_thread_runtime",
        "checksum_tasks_on_a_multi_thread_runtime",
        "run_helper_on_healthy_tasks",
        "runtime_the_test_builds_finishes_clean",
    ] {
        let message = run.failure_of(test).unwrap();
        assert!(
            message.contains("POLLWATCH_TEST_THRESHOLD_MS") && message.contains("soon"),
            "{test}: {message}"
        );
    }
    assert!(
        run.output
            .contains(r#"invalid pollwatch setting POLLWATCH_TEST_THRESHOLD_MS="soon": expected a number of milliseconds"#),
        "{run:?}"
    );
}
