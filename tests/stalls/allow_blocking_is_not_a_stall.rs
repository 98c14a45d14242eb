//! Blocking inside `pollwatch::allow_blocking` is deliberate, and not reported.

use crate::support;

use std::time::Duration;

#[test]
fn allow_blocking_is_not_a_stall() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime(Duration::from_millis(50));
    rt.block_on(async {
        tokio::spawn(async {
            pollwatch::allow_blocking(|| std::thread::sleep(Duration::from_millis(250)));
        })
        .await
        .unwrap();
    });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        agent.stall_summary().stalls_total,
        0,
        "{:#?}",
        agent.stalls()
    );
    // Outside the scope the same blocking is reported (the exemption is scoped, not sticky).
    rt.block_on(async {
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(250)) })
            .await
            .unwrap();
    });
    let after = support::wait_for(&agent, Duration::from_secs(2), |s| !s.is_empty());
    assert_eq!(after.len(), 1, "{after:#?}");
}
