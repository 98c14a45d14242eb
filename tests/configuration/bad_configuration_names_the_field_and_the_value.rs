//! A bad setting is an error that names the setting and the value, and nothing starts.

use crate::support;

use std::time::Duration;

fn build(b: pollwatch::Builder) -> String {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(1);
    b.build_runtime(&mut rt).unwrap_err().to_string()
}

#[test]
fn zero_threshold_is_rejected() {
    let _serial = support::serial();
    let e = build(pollwatch::Agent::builder().stall_threshold(Duration::ZERO));
    assert!(e.contains("stall_threshold") && e.contains("0ns"), "{e}");
}

#[test]
fn a_tick_not_smaller_than_the_threshold_is_rejected() {
    let _serial = support::serial();
    let e = build(
        pollwatch::Agent::builder()
            .stall_threshold(Duration::from_millis(50))
            .watchdog_tick(Duration::from_millis(50)),
    );
    assert!(e.contains("watchdog_tick") && e.contains("50ms"), "{e}");
}

#[test]
fn an_unparsable_environment_value_is_rejected() {
    let _serial = support::serial();
    // The only test in this binary that touches the environment.
    std::env::set_var("POLLWATCH_STALL_THRESHOLD_MS", "soon");
    let e = build(pollwatch::Builder::from_env());
    std::env::remove_var("POLLWATCH_STALL_THRESHOLD_MS");
    assert!(
        e.contains("POLLWATCH_STALL_THRESHOLD_MS") && e.contains("soon"),
        "{e}"
    );
}
