//! A task that panics inside `poll` ends its poll like any other: the worker's slot is not
//! left "in a poll", so no stall is reported afterwards, and the agent keeps working.

use crate::support;

use std::time::Duration;

#[test]
fn panicking_tasks_leave_no_false_stall() {
    let _serial = support::serial();
    // The default hook prints (and with RUST_BACKTRACE, symbolizes) inside the poll, which
    // is itself blocking work pollwatch would rightly report; keep panics cheap here.
    std::panic::set_hook(Box::new(|_| {}));
    let (rt, agent) = support::runtime(Duration::from_millis(50));
    rt.block_on(async {
        for i in 0..200 {
            let r = tokio::spawn(async move {
                if i % 2 == 0 {
                    panic!("task {i} panics on purpose");
                }
            })
            .await;
            assert_eq!(r.is_err(), i % 2 == 0);
        }
        // Idle workers after the panics: nothing may look stuck.
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    assert_eq!(
        agent.stall_summary().stalls_total,
        0,
        "{:#?}",
        agent.stalls()
    );
    // Still watching.
    rt.block_on(async {
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(150)) })
            .await
            .unwrap();
    });
    let s = support::wait_for(&agent, Duration::from_secs(3), |s| s.len() == 1);
    assert_eq!(s.len(), 1, "{s:#?}");
}
