//! Attach mode with worker detection off: the probe alone. A task that blocks the only
//! worker keeps the probe from being polled; that is one `detection: "probe"` stall per
//! wait, raised while it lasts and closed with the probe's delay once it is polled.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use pollwatch::{Detection, StallKind};

#[test]
fn attach_probe_alone_reports_a_runtime_stall_once_per_wait() {
    let _serial = support::serial();
    let rt = support::plain_runtime(1);
    let agent = Arc::new(support::attach(
        &rt,
        pollwatch::Agent::builder()
            .stall_threshold(Duration::from_millis(100))
            .worker_detection(false),
    ));
    for round in 1..=2 {
        let inside = agent.clone();
        let during = rt
            .block_on(rt.spawn(async move {
                std::thread::sleep(Duration::from_millis(350));
                inside.stalls()
            }))
            .unwrap();
        assert_eq!(during.len(), round, "{during:#?}");
        let r = &during[round - 1];
        assert!(r.ongoing, "raised while the probe waits: {r:#?}");
        assert_eq!(r.detection, Detection::Probe, "{r:#?}");
        assert_eq!(r.kind, StallKind::Unknown, "{r:#?}");
        assert!(
            r.worker.is_none() && r.tid == 0,
            "no thread is named: {r:#?}"
        );
        let after = support::wait_for(&agent, Duration::from_secs(3), |s| {
            s.len() == round && s.iter().all(|r| !r.ongoing)
        });
        assert_eq!(after.len(), round, "one episode per wait: {after:#?}");
        assert!(!after[round - 1].ongoing, "closed once polled: {after:#?}");
        assert!(
            after[round - 1].duration_ms >= 100.0 && after[round - 1].duration_ms < 2000.0,
            "{after:#?}"
        );
    }
}
