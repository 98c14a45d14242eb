//! The poll-time histogram counts polls: exactly when every poll is timed, and within one
//! sampling period per worker when one poll in N is timed (each counting N times).

use crate::support;

use std::time::Duration;

fn histogram_count(agent: &pollwatch::Agent) -> f64 {
    let text = agent.encode_metrics();
    text.lines()
        .find(|l| l.starts_with("tokio_task_poll_duration_seconds_count"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no poll-time count in:\n{text}"))
}

fn run(every: u32) -> (f64, f64) {
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .stall_threshold(Duration::from_secs(5))
            .poll_time_sample_every(every),
    );
    rt.block_on(async {
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                tokio::spawn(async {
                    for _ in 0..99 {
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    // 200 tasks × 100 polls, plus a few polls of pollwatch's own probe.
    (histogram_count(&agent), 20_000.0)
}

#[test]
fn poll_time_histogram_counts_every_poll_when_sampled() {
    let _serial = support::serial();
    if !support::HOOKED {
        return; // attach mode has no poll-time histogram
    }
    let (exact, polls) = run(1);
    assert!(
        (polls..polls + 500.0).contains(&exact),
        "every poll timed: {exact} vs {polls}"
    );
    let (sampled, polls) = run(16);
    // Each worker (2) is off by less than one period of 16, plus the probe's polls.
    assert!(
        (polls - 32.0..polls + 532.0).contains(&sampled),
        "sampled 1 in 16: {sampled} vs {polls}"
    );
    assert_eq!(sampled % 16.0, 0.0, "each timed poll counts 16 times");
}
