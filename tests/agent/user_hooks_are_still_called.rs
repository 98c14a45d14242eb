//! tokio keeps one callback per hook; pollwatch installs its own and still calls the ones
//! the user gives to the builder.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

#[test]
fn user_hooks_are_still_called() {
    let _serial = support::serial();
    let counts: Arc<[AtomicUsize; 6]> = Arc::new(Default::default());
    let c = |i: usize| {
        let counts = counts.clone();
        move || {
            counts[i].fetch_add(1, SeqCst);
        }
    };
    let builder = pollwatch::Agent::builder()
        .on_thread_start(c(0))
        .on_thread_park(c(1));
    #[cfg(tokio_unstable)]
    let builder = {
        let (before, after, spawn, end) = (c(2), c(3), c(4), c(5));
        builder
            .on_before_task_poll(move |_| before())
            .on_after_task_poll(move |_| after())
            .on_task_spawn(move |_| spawn())
            .on_task_terminate(move |_| end())
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(2).enable_all();
    let (rt, agent) = builder.build_runtime(&mut rt).unwrap();
    rt.block_on(async {
        for _ in 0..10 {
            tokio::spawn(async { tokio::task::yield_now().await })
                .await
                .unwrap();
        }
    });
    drop(rt);
    drop(agent);
    assert!(counts[0].load(SeqCst) >= 2, "thread start");
    assert!(counts[1].load(SeqCst) >= 1, "thread park");
    if cfg!(tokio_unstable) {
        // The probe task adds a few polls of its own.
        assert!(counts[2].load(SeqCst) >= 20, "before poll");
        assert_eq!(counts[2].load(SeqCst), counts[3].load(SeqCst), "after poll");
        assert!(counts[4].load(SeqCst) >= 10, "spawn");
        assert!(counts[5].load(SeqCst) >= 10, "terminate");
    }
}
