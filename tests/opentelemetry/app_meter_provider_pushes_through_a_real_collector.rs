//! The application's own `SdkMeterProvider` with `opentelemetry-otlp`'s gRPC exporter, given
//! pollwatch's instruments, pushes them through a real OpenTelemetry collector: app →
//! rotel (`rotel-agent`; `.ci/run` installs it) over OTLP/gRPC → rotel's OTLP exporter → the
//! test's receiver. What arrives carries the app's resource, pollwatch's scope, the types,
//! units and attributes of the direct push, and the stall; histograms as their count and sum.
#![cfg(all(feature = "opentelemetry-sdk", feature = "opentelemetry"))]

use crate::support;

use std::time::{Duration, Instant};

use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    number_data_point, AggregationTemporality, Metric, ResourceMetrics,
};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use support::otlp::{self, Data, Receiver, Rotel};

const SERVICE: &str = "app-with-pollwatch";

/// The app's resource in a forwarded request, if it was collected after the stall ended
/// (the stall is counted when it begins, its duration recorded when it ends).
fn with_stall(r: &ExportMetricsServiceRequest) -> Option<&ResourceMetrics> {
    r.resource_metrics.iter().find(|rm| {
        let ours = rm
            .resource
            .as_ref()
            .is_some_and(|r| otlp::attr(&r.attributes, "service.name").as_deref() == Some(SERVICE));
        let ended = |m: &Metric| {
            m.name == "tokio.stall.duration.count"
                && matches!(&m.data, Some(Data::Sum(s)) if s.data_points.iter().any(|p| {
                    p.value == Some(number_data_point::Value::AsInt(1))
                }))
        };
        ours && rm.scope_metrics.iter().flat_map(|s| &s.metrics).any(ended)
    })
}

fn sum(m: &Metric) -> &opentelemetry_proto::tonic::metrics::v1::Sum {
    match &m.data {
        Some(Data::Sum(s)) => s,
        other => panic!("{} is a sum, not {other:?}", m.name),
    }
}

#[test]
fn app_meter_provider_pushes_through_a_real_collector() {
    let _serial = support::serial();
    let downstream = Receiver::start();
    let rotel = Rotel::start(&downstream);
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("app")
            .stall_threshold(Duration::from_millis(50))
            .watchdog_tick(Duration::from_millis(5)),
    );
    // As an app does: the exporter built inside its runtime (tonic's channel runs there).
    let provider = {
        let _in_runtime = rt.enter();
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(rotel.endpoint())
            .with_timeout(Duration::from_secs(5))
            .with_temporality(Temporality::Cumulative)
            .build()
            .expect("the OTLP exporter builds");
        let reader = PeriodicReader::builder(exporter)
            .with_interval(Duration::from_millis(200))
            .build();
        SdkMeterProvider::builder()
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(SERVICE)
                    .build(),
            )
            .with_reader(reader)
            .build()
    };
    agent.register_meter_provider(&provider);

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
        if let Some(rm) = requests.iter().rev().find_map(with_stall) {
            break rm.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no forwarded export with the stall; {} forwarded requests; rotel's log:\n{}",
            requests.len(),
            rotel.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    let scope = forwarded
        .scope_metrics
        .iter()
        .find(|s| s.scope.as_ref().is_some_and(|s| s.name == "pollwatch"))
        .expect("pollwatch's scope after the collector");
    assert_eq!(
        scope.scope.as_ref().unwrap().version,
        env!("CARGO_PKG_VERSION")
    );
    let metric = |name: &str| {
        scope
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} after the collector"))
    };
    let cumulative = AggregationTemporality::Cumulative as i32;

    let Some(Data::Gauge(workers)) = &metric("tokio.worker.count").data else {
        panic!("tokio.worker.count is a gauge")
    };
    assert_eq!(
        workers.data_points[0].value,
        Some(number_data_point::Value::AsInt(2))
    );
    assert_eq!(metric("tokio.worker.count").unit, "{worker}");

    let stalls = sum(metric("tokio.stalls"));
    assert!(stalls.is_monotonic);
    assert_eq!(stalls.aggregation_temporality, cumulative);
    let p = &stalls.data_points[0];
    assert_eq!(p.value, Some(number_data_point::Value::AsInt(1)));
    assert!(otlp::attr(&p.attributes, "kind").is_some(), "{p:?}");
    assert_eq!(
        otlp::attr(&p.attributes, "tokio.runtime").as_deref(),
        Some("app")
    );

    // Seconds are doubles, the worker index an integer attribute.
    let busy = sum(metric("tokio.worker.busy.time"));
    assert_eq!(metric("tokio.worker.busy.time").unit, "s");
    assert_eq!(busy.data_points.len(), 2);
    for p in &busy.data_points {
        assert!(matches!(
            p.value,
            Some(number_data_point::Value::AsDouble(_))
        ));
        let index = p
            .attributes
            .iter()
            .find(|kv| kv.key == "tokio.worker.index");
        let index = index.and_then(|kv| kv.value.as_ref()?.value.as_ref());
        assert!(
            matches!(
                index,
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(0 | 1))
            ),
            "{p:?}"
        );
    }

    // The stall histogram as its count and sum.
    let count = sum(metric("tokio.stall.duration.count"));
    assert_eq!(count.aggregation_temporality, cumulative);
    assert_eq!(
        count.data_points[0].value,
        Some(number_data_point::Value::AsInt(1))
    );
    assert_eq!(metric("tokio.stall.duration.count").unit, "{stall}");
    let seconds = match sum(metric("tokio.stall.duration.sum")).data_points[0].value {
        Some(number_data_point::Value::AsDouble(x)) => x,
        other => panic!("the sum of seconds is a double, not {other:?}"),
    };
    assert!((0.25..5.0).contains(&seconds), "{seconds}");
    assert!(
        scope
            .metrics
            .iter()
            .all(|m| m.name != "tokio.stall.duration"),
        "no histogram through the SDK: pollwatch cannot hand it pre-aggregated buckets"
    );

    drop(agent);
    provider.shutdown().expect("the provider shuts down");
    drop(rt);
}
