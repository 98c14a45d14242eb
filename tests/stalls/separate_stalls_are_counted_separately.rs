//! Counting: twelve separate 120 ms stalls with 60 ms idle gaps between them, at a 50 ms
//! threshold, are twelve reports and `tokio_stalls_total` = 12, none merged, in both
//! set-ups (see `support::Setup`).

use crate::support;

use std::time::Duration;

use support::Setup;

fn twelve_stalls_are_twelve_reports(setup: Setup) {
    let (rt, agent) =
        setup.start(pollwatch::Agent::builder().stall_threshold(Duration::from_millis(50)));
    rt.block_on(async {
        tokio::spawn(async {
            for _ in 0..12 {
                std::thread::sleep(Duration::from_millis(120));
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        })
        .await
        .unwrap()
    });
    let reports = support::wait_for(&agent, Duration::from_secs(5), |s| {
        s.len() >= 12 && s.iter().all(|r| !r.ongoing)
    });
    assert_eq!(reports.len(), 12, "{setup:?}: {reports:#?}");
    for r in &reports {
        assert!(
            (100.0..=250.0).contains(&r.duration_ms),
            "{setup:?}: each report is one 120 ms stall: {r:#?}"
        );
    }
    assert_eq!(
        support::metric_sum(&agent, "tokio_stalls_total"),
        Some(12.0),
        "{setup:?}"
    );
}

#[test]
fn separate_stalls_are_counted_separately() {
    let _serial = support::serial();
    for setup in Setup::BOTH {
        twelve_stalls_are_twelve_reports(setup);
    }
}
