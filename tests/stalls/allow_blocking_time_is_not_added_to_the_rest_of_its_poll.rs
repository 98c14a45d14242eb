//! A poll that blocks 100 ms inside `allow_blocking` and then goes on for a few milliseconds
//! before it returns is not a stall: the allowed time does not add up with what follows it
//! in the same poll (the count starts again where the scope ends). The same poll without
//! `allow_blocking` fails, so the check can fail. In both tokio builds: the `#[tokio::test]`
//! body on `current_thread` (attach mode) and a task on a runtime built through pollwatch
//! (hooked mode under `--cfg tokio_unstable`).

use crate::support;

use std::time::Duration;

use pollwatch::testing::TestWatch;

/// Allowed blocking, then a little more work in the same poll, well under the 10 ms
/// threshold.
fn allowed_then_short(allow: bool) {
    let block = || std::thread::sleep(Duration::from_millis(100));
    if allow {
        pollwatch::allow_blocking(block);
    } else {
        block();
    }
    std::thread::sleep(Duration::from_millis(2));
}

async fn in_body(allow: bool) -> Result<(), pollwatch::testing::Failure> {
    let guard = TestWatch::new()
        .attach(&tokio::runtime::Handle::current())
        .unwrap();
    tokio::task::yield_now().await;
    allowed_then_short(allow);
    guard.finish()
}

fn on_a_built_runtime(allow: bool) -> Result<(), pollwatch::testing::Failure> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let (runtime, guard) = TestWatch::new().build_runtime(&mut builder).unwrap();
    runtime.block_on(async {
        tokio::spawn(async move { allowed_then_short(allow) })
            .await
            .unwrap()
    });
    guard.finish()
}

#[tokio::test]
async fn allow_blocking_in_a_current_thread_body_then_more_work_passes() {
    let _serial = support::serial();
    in_body(true).await.unwrap();
}

#[tokio::test]
async fn the_same_body_without_allow_blocking_fails() {
    let _serial = support::serial();
    let failure = in_body(false).await.unwrap_err();
    assert!(
        failure.to_string().contains("allowed_then_short"),
        "{failure}"
    );
}

#[test]
fn allow_blocking_in_a_task_then_more_work_passes() {
    let _serial = support::serial();
    on_a_built_runtime(true).unwrap();
}

#[test]
fn the_same_task_without_allow_blocking_fails() {
    let _serial = support::serial();
    let failure = on_a_built_runtime(false).unwrap_err();
    assert!(
        failure.to_string().contains("allowed_then_short"),
        "{failure}"
    );
}
