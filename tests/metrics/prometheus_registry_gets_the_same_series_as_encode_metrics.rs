//! `Agent::register` puts pollwatch's families into an app's own `prometheus::Registry`:
//! `TextEncoder` output of `registry.gather()` has the same series (names and label sets)
//! as `encode_metrics()`. Agents of two runtimes share one registry; registering the same
//! runtime twice is an error.
#![cfg(feature = "prometheus")]

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::scrape::Exposition;

/// `name{sorted labels}` of every series, with the value left out (counters move).
fn series(text: &str) -> BTreeSet<String> {
    Exposition::parse(text)
        .series
        .into_iter()
        .map(|s| format!("{}{:?}", s.name, s.labels))
        .collect()
}

fn agent(name: &str) -> (tokio::runtime::Runtime, pollwatch::Agent) {
    support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name(name)
            .stall_threshold(Duration::from_millis(50))
            .watchdog_tick(Duration::from_millis(5)),
    )
}

#[test]
fn prometheus_registry_gets_the_same_series_as_encode_metrics() {
    let _serial = support::serial();
    let (rt, a) = agent("one");
    rt.block_on(async {
        for _ in 0..10 {
            tokio::spawn(async { tokio::task::yield_now().await })
                .await
                .unwrap();
        }
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(120)) })
            .await
            .unwrap();
    });
    support::wait_for(&a, Duration::from_secs(2), |s| {
        !s.is_empty() && s.iter().all(|r| !r.ongoing)
    });
    let registry = prometheus::Registry::new();
    a.register(&registry).unwrap();
    assert!(matches!(
        a.register(&registry),
        Err(pollwatch::Error::Prometheus(_))
    ));

    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    let ours = a.encode_metrics();
    assert_eq!(series(&text), series(&ours), "{text}\n---\n{ours}");
    assert!(text.contains("# TYPE tokio_stalls_total counter"), "{text}");
    assert!(
        text.contains("tokio_workers{runtime=\"one\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP tokio_probe_schedule_duration_seconds Delay"),
        "{text}"
    );

    // A second runtime's agent in the same registry.
    let (_rt2, b) = agent("two");
    b.register(&registry).unwrap();
    let both = Exposition::parse(
        &prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap(),
    );
    let runtimes: BTreeSet<_> = both
        .series
        .iter()
        .filter(|s| s.name == "tokio_workers")
        .map(|s| s.labels["runtime"].clone())
        .collect();
    assert_eq!(runtimes, BTreeSet::from(["one".into(), "two".into()]));
}
