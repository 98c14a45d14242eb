//! A real OpenTelemetry collector accepts pollwatch's pushes and forwards them intact:
//! pollwatch → rotel (a collector, `rotel-agent`, from PyPI's `rotel` wheel; `.ci/run`
//! installs it) over OTLP/gRPC → rotel's OTLP exporter → the test's receiver. What arrives
//! after the collector's decode, batch and re-encode still has the resource, the scope, the
//! types and the values, including the stall.
#![cfg(feature = "opentelemetry")]

use crate::support;

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{number_data_point, AggregationTemporality};
use support::otlp::{self, Data, Receiver};
use support::scrape::Exposition;

/// The forwarded request that carries the stall, if one has arrived.
fn with_stall(requests: &[ExportMetricsServiceRequest]) -> Option<&ExportMetricsServiceRequest> {
    requests.iter().rev().find(|r| {
        r.resource_metrics.iter().any(|rm| {
            rm.scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .any(|m| m.name == "tokio.stalls")
        })
    })
}

#[test]
fn otlp_push_passes_through_a_real_collector() {
    let _serial = support::serial();
    let downstream = Receiver::start();
    // Killed when the test ends, however it ends.
    let rotel = otlp::Rotel::start(&downstream);
    let grpc = rotel.grpc;
    let rotel_log = || rotel.log();

    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("collector")
            .stall_threshold(Duration::from_millis(50))
            .watchdog_tick(Duration::from_millis(5))
            .otlp_endpoint(format!("http://{grpc}"))
            .otlp_interval(Duration::from_millis(200))
            .otlp_service_name("pollwatch-through-rotel"),
    );
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(300)) })
            .await
            .unwrap();
    });
    support::wait_for(&agent, Duration::from_secs(5), |s| {
        s.len() == 1 && !s[0].ongoing
    });

    let start = Instant::now();
    let forwarded = loop {
        let requests = downstream.requests();
        if let Some(r) = with_stall(&requests) {
            break r.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no forwarded push with the stall; {} forwarded requests; rotel's log:\n{}",
            requests.len(),
            rotel_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    // The collector may merge pushes: look for pollwatch's resource and scope in it.
    let rm = forwarded
        .resource_metrics
        .iter()
        .find(|rm| {
            rm.resource.as_ref().is_some_and(|r| {
                otlp::attr(&r.attributes, "service.name").as_deref()
                    == Some("pollwatch-through-rotel")
            })
        })
        .expect("pollwatch's resource after the collector");
    let scope = rm
        .scope_metrics
        .iter()
        .find(|s| s.scope.as_ref().is_some_and(|s| s.name == "pollwatch"))
        .expect("pollwatch's scope after the collector");
    let metric = |name: &str| {
        scope
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} after the collector"))
    };

    let Some(Data::Gauge(workers)) = &metric("tokio.worker.count").data else {
        panic!("tokio.worker.count is a gauge")
    };
    assert_eq!(
        workers.data_points[0].value,
        Some(number_data_point::Value::AsInt(2))
    );
    let Some(Data::Sum(stalls)) = &metric("tokio.stalls").data else {
        panic!("tokio.stalls is a sum")
    };
    assert!(stalls.is_monotonic);
    assert_eq!(
        stalls.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let p = &stalls.data_points[0];
    assert_eq!(p.value, Some(number_data_point::Value::AsInt(1)));
    assert!(otlp::attr(&p.attributes, "kind").is_some(), "{p:?}");
    assert_eq!(
        otlp::attr(&p.attributes, "tokio.runtime").as_deref(),
        Some("collector")
    );
    let Some(Data::Histogram(h)) = &metric("tokio.probe.schedule.duration").data else {
        panic!("tokio.probe.schedule.duration is a histogram")
    };
    let p = &h.data_points[0];
    assert_eq!(p.explicit_bounds.first(), Some(&0.00001));
    assert_eq!(p.explicit_bounds.last(), Some(&10.0));
    assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
    assert_eq!(metric("tokio.probe.schedule.duration").unit, "s");

    // The collector answered every push with success.
    let e = Exposition::parse(&agent.encode_metrics());
    assert!(e.value("pollwatch_otlp_exports_total", &[("result", "ok")]) >= Some(1.0));
    assert_eq!(
        e.value("pollwatch_otlp_exports_total", &[("result", "error")]),
        Some(0.0)
    );
    drop(agent);
}
