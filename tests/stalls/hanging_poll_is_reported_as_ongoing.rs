//! A poll that does not return (here: blocked on a channel for seconds) is reported while
//! it hangs, as off-CPU, and its report stays one `ongoing` episode with a growing duration.
//! In both set-ups.

use crate::support::{self, Setup};

use std::sync::mpsc;
use std::time::Duration;

#[test]
fn hanging_poll_is_reported_as_ongoing() {
    let _serial = support::serial();
    for setup in Setup::BOTH {
        eprintln!("--- {setup:?}");
        let (rt, agent) =
            setup.start(pollwatch::Agent::builder().stall_threshold(Duration::from_millis(100)));
        let (release, hang) = mpsc::channel::<()>();
        let task = rt.spawn(async move {
            // Bounded: the test releases it; the timeout only guards against a broken test.
            let _ = hang.recv_timeout(Duration::from_secs(20));
        });
        let first = support::wait_for(&agent, Duration::from_secs(5), |s| !s.is_empty());
        assert_eq!(first.len(), 1, "{first:#?}");
        assert!(first[0].ongoing, "{first:#?}");
        std::thread::sleep(Duration::from_millis(700));
        let later = agent.stalls();
        assert_eq!(later.len(), 1, "still one episode: {later:#?}");
        assert!(later[0].ongoing, "{later:#?}");
        assert!(
            later[0].duration_ms > first[0].duration_ms + 400.0,
            "{later:#?}"
        );
        assert_eq!(later[0].kind, pollwatch::StallKind::OffCpu, "{later:#?}");
        release.send(()).unwrap();
        rt.block_on(task).unwrap();
        support::assert_completed(&agent, 700.0);
    }
}
