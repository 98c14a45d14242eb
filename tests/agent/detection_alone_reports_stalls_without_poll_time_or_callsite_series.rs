//! `poll_time_sample_every(0)` and `callsite_stats(false)` leave stall detection alone on
//! the hot path: a stall is still reported while it runs, at its spawn line (hooked mode),
//! and the poll-time histogram and the `tokio_callsite_*` families are not exported, since
//! nothing records them. The same settings with the defaults' counterpart exported them
//! (checked below too, so the test cannot pass by exporting nothing in any case).

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use pollwatch::StallKind;
use support::scrape::Exposition;

const RECORDED_BY_HOOKS: [&str; 5] = [
    "tokio_task_poll_duration_seconds",
    "tokio_callsite_polls_total",
    "tokio_callsite_poll_time_seconds_total",
    "tokio_callsite_tasks_alive",
    "tokio_callsite_tasks_spawned_total",
];

fn exported(e: &Exposition, family: &str) -> bool {
    e.types.iter().any(|(n, _)| n == family)
}

/// 50 tasks × 20 polls on the runtime.
fn some_load(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                tokio::spawn(async {
                    for _ in 0..19 {
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn detection_alone_reports_stalls_without_poll_time_or_callsite_series() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .stall_threshold(Duration::from_millis(100))
            .poll_time_sample_every(0)
            .callsite_stats(false),
    );
    some_load(&rt);
    let agent = Arc::new(agent);
    let inside = agent.clone();
    let spawn_line = support::next_line(file!(), line!());
    let task = rt.spawn(async move {
        std::thread::sleep(Duration::from_millis(300));
        inside.stalls()
    });
    let during = rt.block_on(task).unwrap();
    support::assert_one_ongoing_report(agent.mode(), &during, StallKind::OffCpu, &spawn_line);
    support::assert_completed(&agent, 290.0);

    let e = Exposition::parse(&agent.encode_metrics());
    for family in RECORDED_BY_HOOKS {
        assert!(
            !exported(&e, family),
            "{family} exported with detection alone"
        );
    }
    assert!(exported(&e, "tokio_stalls_total"), "stalls still exported");

    // Control: the defaults export those families in hooked mode (attach mode has none).
    let (rt, agent) = support::runtime(Duration::from_millis(100));
    some_load(&rt);
    let e = Exposition::parse(&agent.encode_metrics());
    for family in RECORDED_BY_HOOKS {
        assert_eq!(
            exported(&e, family),
            support::HOOKED,
            "{family} with the defaults"
        );
    }
}

#[test]
fn poll_time_sample_every_above_a_million_is_rejected() {
    let _serial = support::serial();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(1);
    let e = pollwatch::Agent::builder()
        .poll_time_sample_every(2_000_000)
        .build_runtime(&mut rt)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("poll_time_sample_every") && e.contains("2000000"),
        "{e}"
    );
}
