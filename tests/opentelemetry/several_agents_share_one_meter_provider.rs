//! Agents of two runtimes registered on one OpenTelemetry `SdkMeterProvider` share its
//! instruments: each metric is exported once, with one series per runtime
//! (`tokio.runtime`), and dropping one agent removes only its series.
#![cfg(feature = "opentelemetry-sdk")]

use crate::support;

use std::collections::BTreeSet;

use opentelemetry_sdk::metrics::Temporality;
use pollwatch::Agent;
use support::otel_sdk;

fn runtimes(m: &otel_sdk::Metric) -> BTreeSet<String> {
    m.points
        .keys()
        .map(|a| a["tokio.runtime"].clone())
        .collect()
}

#[test]
fn several_agents_share_one_meter_provider() {
    let _serial = support::serial();
    let (provider, out) = otel_sdk::in_memory_provider(Temporality::Cumulative);
    let (rt_a, a) = support::runtime_with(Agent::builder().runtime_name("a"));
    let (rt_b, b) = support::runtime_with(Agent::builder().runtime_name("b"));
    a.register_meter_provider(&provider);
    b.register_meter_provider(&provider);

    // `metrics` asserts that every name appears once.
    let both = otel_sdk::metrics(&otel_sdk::collect(&provider, &out));
    let workers = &both["tokio.worker.count"];
    assert_eq!(runtimes(workers), BTreeSet::from(["a".into(), "b".into()]));
    assert!(workers.points.values().all(|v| *v == 2.0), "{workers:?}");
    for name in ["pollwatch.info", "tokio.probe.schedule.duration.count"] {
        assert_eq!(runtimes(&both[name]).len(), 2, "{name}: {:?}", both[name]);
    }

    drop(b);
    let one = otel_sdk::metrics(&otel_sdk::collect(&provider, &out));
    assert_eq!(
        runtimes(&one["tokio.worker.count"]),
        BTreeSet::from(["a".into()])
    );
    drop(a);
    provider.shutdown().unwrap();
    drop((rt_a, rt_b));
}
