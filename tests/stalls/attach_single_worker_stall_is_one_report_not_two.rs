//! Attach mode: when the only worker is stuck, the probe is stuck too. That is one stall,
//! reported once, by the worker rule (which names the thread and captures its stack), not a
//! second time as a probe stall.

use crate::support;

use std::time::Duration;

use pollwatch::Detection;

#[test]
fn attach_single_worker_stall_is_one_report_not_two() {
    let _serial = support::serial();
    let rt = support::plain_runtime(1);
    let agent = support::attach(
        &rt,
        pollwatch::Agent::builder().stall_threshold(Duration::from_millis(50)),
    );
    for _ in 0..3 {
        rt.block_on(rt.spawn(async { std::thread::sleep(Duration::from_millis(200)) }))
            .unwrap();
        rt.block_on(rt.spawn(async { support::busy_for(Duration::from_millis(200)) }))
            .unwrap();
    }
    support::wait_for(&agent, Duration::from_secs(3), |s| {
        s.len() >= 6 && s.iter().all(|r| !r.ongoing)
    });
    std::thread::sleep(Duration::from_millis(200)); // nothing more comes
    let s = agent.stalls();
    assert_eq!(s.len(), 6, "one report per stall: {s:#?}");
    assert!(
        s.iter()
            .all(|r| r.detection == Detection::Worker && r.worker == Some(0)),
        "{s:#?}"
    );
}
