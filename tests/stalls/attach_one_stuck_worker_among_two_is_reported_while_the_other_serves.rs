//! Attach mode: a 500 ms busy loop on one of two workers is reported as that worker's stall
//! (`detection: "worker"`, with its thread and stack) while the other worker keeps serving
//! short tasks, so the probe alone could not see it.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollwatch::capture::CaptureStatus;
use pollwatch::{Detection, StallKind};

#[test]
fn attach_one_stuck_worker_among_two_is_reported_while_the_other_serves() {
    let _serial = support::serial();
    let rt = support::plain_runtime(2);
    let agent = Arc::new(support::attach(
        &rt,
        pollwatch::Agent::builder().stall_threshold(Duration::from_millis(100)),
    ));
    let served = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicBool::new(false));
    let (inside, counted, running) = (agent.clone(), served.clone(), started.clone());
    let (during, served_meanwhile) = rt.block_on(async move {
        let stuck = tokio::spawn(async move {
            running.store(true, Relaxed);
            let before = counted.load(Relaxed);
            support::busy_for(Duration::from_millis(500));
            (inside.stalls(), counted.load(Relaxed) - before)
        });
        // The first short task is spawned only once the loop runs: spawned together, both
        // can sit in the inject queue and one worker takes them as one batch, leaving the
        // short task queued behind the busy loop (CI saw 0 tasks served).
        let start = Instant::now();
        while !started.load(Relaxed) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The other worker serves short tasks meanwhile (bounded in count and time).
        while !stuck.is_finished() && start.elapsed() < Duration::from_secs(5) {
            let served = served.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                served.fetch_add(1, Relaxed);
            })
            .await
            .unwrap();
        }
        stuck.await.unwrap()
    });
    assert!(
        served_meanwhile >= 50,
        "the other worker kept serving: {served_meanwhile} tasks"
    );
    assert_eq!(during.len(), 1, "{during:#?}");
    let r = &during[0];
    assert!(r.ongoing, "reported while it runs: {r:#?}");
    assert_eq!(r.detection, Detection::Worker, "{r:#?}");
    assert_eq!(r.kind, StallKind::Cpu, "{r:#?}");
    assert!(r.worker.is_some(), "{r:#?}");
    assert!(r.task_id.is_none() && r.spawned_at.is_none(), "{r:#?}");
    if support::CAPTURE_SUPPORTED {
        assert!(r.tid > 0, "{r:#?}");
        assert_eq!(r.capture, CaptureStatus::Ok, "{r:#?}");
        let r = support::symbolized(&agent);
        assert!(
            r.frames.iter().any(|f| f.function.contains("busy_for")),
            "{:#?}",
            r.frames
        );
    }
    let r = support::assert_completed(&agent, 490.0);
    assert_eq!(r.detection, Detection::Worker);
}
