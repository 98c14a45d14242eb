//! Attach mode: a poll that does not return within the test (blocked on a channel with a 3 s
//! timeout) is reported while it hangs, and stays one ongoing report with a growing
//! duration.

mod support;

use std::sync::mpsc;
use std::time::Duration;

#[test]
fn attach_hang_is_reported_as_ongoing() {
    let rt = support::plain_runtime(2);
    let agent = support::attach(
        &rt,
        pollwatch::Agent::builder().stall_threshold(Duration::from_millis(100)),
    );
    let (_keep, hang) = mpsc::channel::<()>();
    rt.spawn(async move {
        // Nobody sends: this poll hangs until the timeout.
        let _ = hang.recv_timeout(Duration::from_secs(3));
    });
    let first = support::wait_for(&agent, Duration::from_secs(2), |s| !s.is_empty());
    assert_eq!(first.len(), 1, "{first:#?}");
    assert!(first[0].ongoing, "{first:#?}");
    std::thread::sleep(Duration::from_millis(600));
    let later = agent.stalls();
    assert_eq!(later.len(), 1, "still one episode: {later:#?}");
    assert!(later[0].ongoing, "{later:#?}");
    assert!(
        later[0].duration_ms > first[0].duration_ms + 400.0,
        "{later:#?}"
    );
    assert_eq!(later[0].kind, pollwatch::StallKind::OffCpu, "{later:#?}");
    drop(rt); // waits for the hung poll's timeout
}
