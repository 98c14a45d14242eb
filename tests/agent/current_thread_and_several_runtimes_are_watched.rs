//! A `current_thread` runtime is watched like a multi-thread one, and several runtimes in one
//! process each get their own agent, labelled with the runtime's name.

use crate::support;

use std::time::Duration;

fn stall_once(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(200)) })
            .await
            .unwrap();
        // An idle gap, so attach mode (stable build) sees two stalls as two.
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
}

#[test]
fn current_thread_runtime_is_watched() {
    let _serial = support::serial();
    let mut b = tokio::runtime::Builder::new_current_thread();
    b.enable_all();
    let (rt, agent) = pollwatch::Agent::builder()
        .stall_threshold(Duration::from_millis(50))
        .build_runtime(&mut b)
        .unwrap();
    stall_once(&rt);
    let s = support::wait_for(&agent, Duration::from_secs(3), |s| {
        s.len() == 1 && !s[0].ongoing
    });
    assert_eq!(s.len(), 1, "{s:#?}");
}

#[test]
fn several_runtimes_each_report_their_own_stalls() {
    let _serial = support::serial();
    let make = |name: &str| {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(1).enable_all().name(name);
        pollwatch::Agent::builder()
            .stall_threshold(Duration::from_millis(50))
            .build_runtime(&mut b)
            .unwrap()
    };
    let (rt_a, agent_a) = make("alpha");
    let (rt_b, agent_b) = make("beta");
    assert_eq!(agent_a.runtime_label(), Some("alpha"));
    stall_once(&rt_a);
    stall_once(&rt_b);
    stall_once(&rt_b);
    let a = support::wait_for(&agent_a, Duration::from_secs(3), |s| {
        s.len() == 1 && !s[0].ongoing
    });
    let b = support::wait_for(&agent_b, Duration::from_secs(3), |s| {
        s.len() == 2 && !s[1].ongoing
    });
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(b.len(), 2, "{b:#?}");
    assert!(a.iter().all(|r| r.runtime == "alpha"));
    assert!(b.iter().all(|r| r.runtime == "beta"));
    // Shutting one runtime down leaves the other watched.
    drop(rt_a);
    drop(agent_a);
    stall_once(&rt_b);
    let b = support::wait_for(&agent_b, Duration::from_secs(3), |s| {
        s.len() == 3 && !s[2].ongoing
    });
    assert_eq!(b.len(), 3, "{b:#?}");
}
