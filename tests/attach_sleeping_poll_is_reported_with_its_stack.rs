//! Attach mode: a task in `std::thread::sleep` is reported once while it sleeps, as an
//! off-CPU stall of its worker, with a stack that shows the sleep.

mod support;

use std::sync::Arc;
use std::time::Duration;

use pollwatch::capture::CaptureStatus;
use pollwatch::{Detection, StallKind};

#[test]
fn attach_sleeping_poll_is_reported_with_its_stack() {
    let rt = support::plain_runtime(2);
    let agent = Arc::new(support::attach(
        &rt,
        pollwatch::Agent::builder().stall_threshold(Duration::from_millis(100)),
    ));
    let inside = agent.clone();
    let during = rt
        .block_on(rt.spawn(async move {
            std::thread::sleep(Duration::from_millis(300));
            inside.stalls()
        }))
        .unwrap();
    assert_eq!(during.len(), 1, "{during:#?}");
    let r = &during[0];
    assert!(r.ongoing, "{r:#?}");
    assert_eq!(r.detection, Detection::Worker, "{r:#?}");
    assert_eq!(r.kind, StallKind::OffCpu, "{r:#?}");
    let r = support::assert_completed(&agent, 290.0);
    if support::CAPTURE_SUPPORTED {
        assert_eq!(r.capture, CaptureStatus::Ok, "{r:#?}");
        let r = support::symbolized(&agent);
        assert!(
            r.frames.iter().any(|f| f.function.contains("sleep")),
            "{:#?}",
            r.frames
        );
    }
}
