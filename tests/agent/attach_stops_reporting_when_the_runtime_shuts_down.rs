//! Attach mode: after the runtime shuts down, its workers publish nothing and its probe is
//! never polled again. That is not a stall: the agent reports nothing, and closes what was
//! open.

use crate::support;

use std::time::Duration;

#[test]
fn attach_stops_reporting_when_the_runtime_shuts_down() {
    let _serial = support::serial();
    let rt = support::plain_runtime(2);
    let agent = support::attach(
        &rt,
        pollwatch::Agent::builder().stall_threshold(Duration::from_millis(50)),
    );
    // A stall still open when the runtime goes away (bounded: the task ends by itself).
    rt.spawn(async { std::thread::sleep(Duration::from_millis(200)) });
    let open = support::wait_for(&agent, Duration::from_secs(2), |s| !s.is_empty());
    assert_eq!(open.len(), 1, "{open:#?}");
    rt.shutdown_timeout(Duration::from_secs(2));
    let s = support::wait_for(&agent, Duration::from_secs(1), |s| {
        s.iter().all(|r| !r.ongoing)
    });
    assert!(s.iter().all(|r| !r.ongoing), "closed at shutdown: {s:#?}");
    std::thread::sleep(Duration::from_millis(400));
    let s = agent.stall_summary();
    assert_eq!(s.stalls_total, 1, "nothing after shutdown: {:#?}", s.stalls);
}
