//! Attach mode: blocking inside `pollwatch::allow_blocking` is deliberate and not reported;
//! the same blocking outside the scope is.

mod support;

use std::time::Duration;

#[test]
fn attach_allow_blocking_is_not_a_stall() {
    let rt = support::plain_runtime(2);
    let agent = support::attach(
        &rt,
        pollwatch::Agent::builder().stall_threshold(Duration::from_millis(50)),
    );
    rt.block_on(rt.spawn(async {
        pollwatch::allow_blocking(|| std::thread::sleep(Duration::from_millis(250)));
    }))
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        agent.stall_summary().stalls_total,
        0,
        "{:#?}",
        agent.stalls()
    );
    rt.block_on(rt.spawn(async { std::thread::sleep(Duration::from_millis(250)) }))
        .unwrap();
    let after = support::wait_for(&agent, Duration::from_secs(2), |s| !s.is_empty());
    assert_eq!(after.len(), 1, "{after:#?}");
}
