//! A task that calls `std::thread::sleep` inside `poll` is reported once, while it still
//! sleeps, as an off-CPU stall at the test's own `spawn` line.

mod support;

use std::sync::Arc;
use std::time::Duration;

use pollwatch::{Detection, StallKind};

#[test]
fn sleeping_poll_is_reported_while_it_sleeps() {
    let (rt, agent) = support::runtime(Duration::from_millis(100));
    let agent = Arc::new(agent);
    let inside = agent.clone();
    let spawn_line = support::next_line(file!(), line!());
    let task = rt.spawn(async move {
        std::thread::sleep(Duration::from_millis(300));
        // Still inside the same poll: the report must exist already.
        inside.stalls()
    });
    let during = rt.block_on(task).unwrap();
    assert_eq!(during.len(), 1, "{during:#?}");
    let r = &during[0];
    assert!(r.ongoing, "{r:#?}");
    assert_eq!(r.kind, StallKind::OffCpu, "{r:#?}");
    if support::HOOKED {
        assert_eq!(r.detection, Detection::PollHook);
        assert!(
            r.spawned_at.as_deref().unwrap().starts_with(&spawn_line),
            "{r:#?} vs {spawn_line}"
        );
        assert!(r.task_id.is_some());
    }
    let after = support::wait_for(&agent, Duration::from_secs(2), |s| {
        s.iter().all(|r| !r.ongoing)
    });
    assert_eq!(after.len(), 1, "exactly one report per episode: {after:#?}");
    assert!(!after[0].ongoing);
    assert!(after[0].duration_ms >= 290.0, "{:#?}", after[0]);
}
