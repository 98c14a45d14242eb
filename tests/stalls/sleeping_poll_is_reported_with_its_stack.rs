//! A task that calls `std::thread::sleep` inside `poll` is reported once, while it still
//! sleeps, as an off-CPU stall (at the test's own `spawn` line in hooked mode, of its worker
//! in attach mode), with a stack that shows the sleep. In both set-ups.

use crate::support::{self, Setup};

use std::sync::Arc;
use std::time::Duration;

use pollwatch::capture::CaptureStatus;
use pollwatch::StallKind;

#[test]
fn sleeping_poll_is_reported_with_its_stack() {
    let _serial = support::serial();
    for setup in Setup::BOTH {
        eprintln!("--- {setup:?}");
        let (rt, agent) =
            setup.start(pollwatch::Agent::builder().stall_threshold(Duration::from_millis(100)));
        let agent = Arc::new(agent);
        let inside = agent.clone();
        let spawn_line = support::next_line(file!(), line!());
        let task = rt.spawn(async move {
            std::thread::sleep(Duration::from_millis(300));
            // Still inside the same poll: the report must exist already.
            inside.stalls()
        });
        let during = rt.block_on(task).unwrap();
        support::assert_one_ongoing_report(agent.mode(), &during, StallKind::OffCpu, &spawn_line);
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
}
