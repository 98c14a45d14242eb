//! Dropping the agent stops its threads promptly, in either order with the runtime, and a
//! new runtime with a new agent works after that.
//!
//! Linux only: pollwatch's threads are counted by name in `/proc/self/task`.
//!
//! Its own test binary: it counts every pollwatch thread of the process, so no other test's
//! agent may run beside it.
#![cfg(target_os = "linux")]

mod support;

use std::time::{Duration, Instant};

fn wait_until_no_threads() -> usize {
    let start = Instant::now();
    while support::pollwatch_threads() > 0 && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    support::pollwatch_threads()
}

#[test]
fn agent_threads_stop_when_it_is_dropped() {
    // Agent first, runtime second.
    let (rt, agent) = support::runtime(Duration::from_millis(50));
    // The threads name themselves as they start.
    let start = Instant::now();
    while support::pollwatch_threads() < 2 && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        support::pollwatch_threads() >= 2,
        "watchdog and symbolizer run"
    );
    let start = Instant::now();
    drop(agent);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "drop took {:?}",
        start.elapsed()
    );
    assert_eq!(wait_until_no_threads(), 0);
    drop(rt);

    // Runtime first, agent second: the agent outlives its runtime quietly.
    let (rt, mut agent) = support::runtime(Duration::from_millis(50));
    drop(rt);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        agent.stalls().is_empty(),
        "no stall from a runtime that shut down"
    );
    agent.shutdown();
    agent.shutdown(); // idempotent
    assert_eq!(wait_until_no_threads(), 0);

    // And again: a restart is watched like the first start.
    let (rt, agent) = support::runtime(Duration::from_millis(50));
    rt.block_on(async {
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(150)) })
            .await
            .unwrap();
    });
    let s = support::wait_for(&agent, Duration::from_secs(3), |s| s.len() == 1);
    assert_eq!(s.len(), 1, "{s:#?}");
}
