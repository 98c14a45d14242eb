//! `enabled(false)` and `POLLWATCH_DISABLED=1` install no hook, start no thread and report
//! nothing, while the user's own hooks still run.
//!
//! Its own test binary: it sets `POLLWATCH_DISABLED`, which every agent of the process reads,
//! and counts the process's pollwatch threads.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn disabled_agent_installs_nothing() {
    let starts = Arc::new(AtomicUsize::new(0));
    let counted = starts.clone();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(2).enable_all();
    let (rt, agent) = pollwatch::Agent::builder()
        .enabled(false)
        .stall_threshold(Duration::from_millis(20))
        .on_thread_start(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .build_runtime(&mut rt)
        .unwrap();
    assert_eq!(agent.mode(), pollwatch::Mode::Disabled);
    rt.block_on(async {
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(100)) })
            .await
            .unwrap();
    });
    assert!(agent.stalls().is_empty());
    assert!(
        starts.load(Ordering::SeqCst) >= 2,
        "the user's hook still runs"
    );
    if cfg!(target_os = "linux") {
        assert_eq!(
            support::pollwatch_threads(),
            0,
            "a disabled agent starts no thread"
        );
    }

    std::env::set_var("POLLWATCH_DISABLED", "1");
    let mut rt2 = tokio::runtime::Builder::new_current_thread();
    let (_rt2, agent2) = pollwatch::Builder::from_env()
        .build_runtime(&mut rt2)
        .unwrap();
    std::env::remove_var("POLLWATCH_DISABLED");
    assert_eq!(agent2.mode(), pollwatch::Mode::Disabled);
    if cfg!(target_os = "linux") {
        assert_eq!(support::pollwatch_threads(), 0);
    }
}
