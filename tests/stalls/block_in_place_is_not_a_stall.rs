//! `tokio::task::block_in_place` hands the worker to another thread before blocking: the
//! runtime keeps running, so it is not a stall. The same blocking without it, right after in
//! the same runtime, is.

use crate::support;

use std::time::Duration;

#[test]
fn block_in_place_is_not_a_stall() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime(Duration::from_millis(50));
    rt.block_on(async {
        tokio::spawn(async {
            tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(300)));
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
    support::assert_a_real_stall_is_still_reported(&rt, &agent);
}
