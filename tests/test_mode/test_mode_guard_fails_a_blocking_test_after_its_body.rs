//! `pollwatch::testing::watch()` at the top of a plain `#[tokio::test]`: a poll that blocks
//! past the 10 ms threshold fails the test when the guard drops at the end of the body, with
//! the culprit's frame in the panic message; `finish()` returns the same as an `Err` with the
//! report (duration, kind, stack); a healthy body passes. Both flavors, both tokio builds.

use std::time::Duration;

use pollwatch::testing::Failure;
use pollwatch::{Detection, StallKind};

/// Three times what the fixture blocks: caught also on a loaded machine (see
/// `test_mode_blocking_tests_fail_with_the_culprit_frame.rs`).
const BLOCK_MS: u64 = 150;

fn reads_the_config_file_synchronously() {
    std::thread::sleep(Duration::from_millis(BLOCK_MS));
}

#[tokio::test]
#[should_panic(expected = "::reads_the_config_file_synchronously at ")]
async fn a_current_thread_body_that_blocks_fails_at_the_end_of_the_body() {
    let _guard = pollwatch::testing::watch();
    reads_the_config_file_synchronously();
}

#[tokio::test(flavor = "multi_thread")]
#[should_panic(expected = "::reads_the_config_file_synchronously at ")]
async fn a_task_that_blocks_on_a_multi_thread_runtime_fails_the_test() {
    let _guard = pollwatch::testing::watch();
    tokio::spawn(async { reads_the_config_file_synchronously() })
        .await
        .unwrap();
}

fn check(failure: &Failure) {
    assert_eq!(failure.threshold(), Duration::from_millis(10));
    let [r] = failure.stalls() else {
        panic!("one stall: {failure}");
    };
    assert_eq!(r.detection, Detection::Worker, "{r:#?}");
    assert_eq!(r.kind, StallKind::OffCpu, "{r:#?}");
    assert!(r.duration_ms >= 10.0, "{r:#?}");
    assert!(
        r.frames.iter().any(|f| f
            .function
            .ends_with("::reads_the_config_file_synchronously")),
        "{r:#?}"
    );
    let text = failure.to_string();
    assert!(text.contains("your code, innermost first:"), "{text}");
    assert_eq!(format!("{failure:?}"), text, "Debug is the message");
}

#[tokio::test]
async fn finish_returns_the_stall_of_a_current_thread_body() {
    let guard = pollwatch::testing::watch();
    assert_eq!(guard.mode(), pollwatch::Mode::Attach);
    reads_the_config_file_synchronously();
    check(&guard.finish().unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_returns_the_stall_of_a_task_on_a_multi_thread_runtime() {
    let guard = pollwatch::testing::watch();
    tokio::spawn(async { reads_the_config_file_synchronously() })
        .await
        .unwrap();
    check(&guard.finish().unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_in_a_multi_thread_body_is_not_on_a_worker_and_passes() {
    // The body runs on the test's thread, which `block_on` drives: no worker waits for it.
    let guard = pollwatch::testing::watch();
    reads_the_config_file_synchronously();
    let other = tokio::spawn(async { tokio::time::sleep(Duration::from_millis(5)).await });
    other.await.unwrap();
    guard.finish().unwrap();
}

#[tokio::test]
async fn a_healthy_body_passes() {
    let guard = pollwatch::testing::watch();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::task::spawn_blocking(reads_the_config_file_synchronously)
        .await
        .unwrap();
    guard.finish().unwrap();
}

#[test]
#[should_panic(expected = "needs a tokio runtime")]
fn watch_outside_a_runtime_says_what_to_use_instead() {
    let _guard = pollwatch::testing::watch();
}
