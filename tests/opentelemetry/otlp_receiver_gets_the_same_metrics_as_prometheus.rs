//! Over the wire, real protocol: an OTLP/gRPC receiver (opentelemetry-proto's
//! `MetricsService` on tonic, on loopback) gets, from an app with one real stall, every family
//! of `encode_metrics()` under its OpenTelemetry name, with the table's type, temporality,
//! monotonicity and unit; labels as attributes; the Prometheus `le` bounds; counters that only
//! go up; the resource and the scope; values that cannot move equal to the Prometheus ones.
//! Hooked mode in the `tokio_unstable` build, attach mode (`build_runtime`) in the stable one.
#![cfg(feature = "opentelemetry")]

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{number_data_point, AggregationTemporality, Metric};
use pollwatch::names::{self, MetricType};
use support::otlp::{self, Data};
use support::scrape::Exposition;

type Attrs = BTreeMap<String, String>;

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn attrs(kvs: &[KeyValue]) -> Attrs {
    let map: Attrs = kvs
        .iter()
        .map(|kv| (kv.key.clone(), otlp::text(kv)))
        .collect();
    assert_eq!(map.len(), kvs.len(), "duplicate attribute keys in {kvs:?}");
    map
}

fn number(v: &Option<number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsInt(n)) => *n as f64,
        Some(number_data_point::Value::AsDouble(x)) => *x,
        None => panic!("a data point without a value"),
    }
}

/// `(attributes, value)` of every point: the value, or a histogram's count.
fn points(m: &Metric) -> Vec<(Attrs, f64)> {
    match m.data.as_ref().expect("data") {
        Data::Sum(s) => s
            .data_points
            .iter()
            .map(|p| (attrs(&p.attributes), number(&p.value)))
            .collect(),
        Data::Gauge(g) => g
            .data_points
            .iter()
            .map(|p| (attrs(&p.attributes), number(&p.value)))
            .collect(),
        Data::Histogram(h) => h
            .data_points
            .iter()
            .map(|p| (attrs(&p.attributes), p.count as f64))
            .collect(),
        other => panic!("unexpected data type {other:?}"),
    }
}

/// What the OTLP attributes of a Prometheus series must be.
fn expected_attrs(labels: &BTreeMap<String, String>) -> Attrs {
    labels
        .iter()
        .filter(|(k, v)| *k != "le" && !v.is_empty())
        .map(|(k, v)| (names::otel_label(k).to_string(), v.clone()))
        .collect()
}

/// Every start time of a cumulative point (Sums and Histograms).
fn start_times(r: &ExportMetricsServiceRequest) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for m in otlp::metrics(r) {
        match m.data.as_ref().unwrap() {
            Data::Sum(s) => out.extend(s.data_points.iter().map(|p| p.start_time_unix_nano)),
            Data::Histogram(h) => out.extend(h.data_points.iter().map(|p| p.start_time_unix_nano)),
            _ => {}
        }
    }
    out
}

#[test]
fn otlp_receiver_gets_the_same_metrics_as_prometheus() {
    let _serial = support::serial();
    let receiver = otlp::Receiver::start();
    let before_start = unix_nanos();
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("otlp")
            .stall_threshold(Duration::from_millis(50))
            .watchdog_tick(Duration::from_millis(5))
            .otlp_endpoint(receiver.endpoint())
            .otlp_interval(Duration::from_millis(200))
            .otlp_service_name("pollwatch-otlp-test")
            .otlp_resource_attribute("deployment.environment.name", "test"),
    );
    let after_start = unix_nanos();
    let mode = agent.mode();
    let spawn_line = rt.block_on(async {
        for _ in 0..50 {
            tokio::spawn(async { tokio::task::yield_now().await })
                .await
                .unwrap();
        }
        tokio::task::spawn_blocking(|| ()).await.unwrap();
        // Let attach mode meet the workers before one of them stalls.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let spawn_line = support::next_line(file!(), line!());
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(300)) })
            .await
            .unwrap();
        spawn_line
    });
    let stalls = support::wait_for(&agent, Duration::from_secs(5), |s| {
        s.len() == 1 && !s[0].ongoing
    });
    assert_eq!(stalls.len(), 1, "{stalls:#?}");

    let text = agent.encode_metrics();
    let prom = Exposition::parse(&text);
    // The export in flight now may have been collected before `text`: skip it.
    let n = receiver.count();
    let requests = receiver.wait_for(n + 3, Duration::from_secs(20));
    let (a, b) = (&requests[n + 1], &requests[n + 2]);
    eprintln!(
        "one push: {} metrics, {} bytes of protobuf",
        otlp::metrics(b).len(),
        prost::Message::encoded_len(b)
    );

    // Resource and scope.
    let resource = attrs(
        &b.resource_metrics[0]
            .resource
            .as_ref()
            .expect("resource")
            .attributes,
    );
    assert_eq!(resource["service.name"], "pollwatch-otlp-test");
    assert_eq!(resource["deployment.environment.name"], "test");
    assert_eq!(resource["telemetry.sdk.name"], "pollwatch");
    assert_eq!(resource["process.pid"], std::process::id().to_string());
    let scope = b.resource_metrics[0].scope_metrics[0]
        .scope
        .as_ref()
        .expect("scope");
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("pollwatch", env!("CARGO_PKG_VERSION"))
    );

    // Every family with series in the Prometheus output is there, typed as the table says.
    let mut checked = 0;
    for (family, _) in &prom.types {
        let series = prom.family(family);
        if series.is_empty() {
            continue;
        }
        let def = names::by_prometheus_name(family).expect("in the table");
        let m = otlp::metric(b, def.otel)
            .unwrap_or_else(|| panic!("{} ({family}) is not in the OTLP export", def.otel));
        assert_eq!(m.unit, def.unit, "{}", def.otel);
        assert_eq!(m.description, def.help, "{}", def.otel);
        let cumulative = AggregationTemporality::Cumulative as i32;
        match (def.kind, m.data.as_ref().unwrap()) {
            (MetricType::Counter, Data::Sum(s)) => {
                assert!(s.is_monotonic, "{}", def.otel);
                assert_eq!(s.aggregation_temporality, cumulative, "{}", def.otel);
            }
            (MetricType::Gauge, Data::Gauge(_)) => {}
            (MetricType::Histogram, Data::Histogram(h)) => {
                assert_eq!(h.aggregation_temporality, cumulative, "{}", def.otel);
                let mut le: Vec<f64> = series
                    .iter()
                    .filter(|s| s.name.ends_with("_bucket") && s.labels["le"] != "+Inf")
                    .map(|s| s.labels["le"].parse().unwrap())
                    .collect();
                le.sort_by(f64::total_cmp);
                le.dedup();
                for p in &h.data_points {
                    assert_eq!(p.explicit_bounds, le, "{} bounds", def.otel);
                    assert_eq!(p.bucket_counts.len(), le.len() + 1, "{}", def.otel);
                    assert_eq!(p.count, p.bucket_counts.iter().sum::<u64>(), "{}", def.otel);
                }
            }
            (kind, data) => panic!("{} is a {kind:?} exported as {data:?}", def.otel),
        }
        // Labels as attributes: every Prometheus series is a data point with those
        // attributes, and every data point has the table's attribute names.
        let got: BTreeSet<Attrs> = points(m).into_iter().map(|(a, _)| a).collect();
        let want: BTreeSet<Attrs> = series
            .iter()
            .filter(|s| def.kind != MetricType::Histogram || s.name.ends_with("_count"))
            .map(|s| expected_attrs(&s.labels))
            .collect();
        assert!(
            want.is_subset(&got),
            "{}: Prometheus series {want:?}, OTLP points {got:?}",
            def.otel
        );
        let allowed: BTreeSet<&str> = def
            .labels
            .iter()
            .chain([&names::RUNTIME_LABEL])
            .map(|l| names::otel_label(l))
            .collect();
        for a in &got {
            assert_eq!(a["tokio.runtime"], "otlp");
            assert!(
                a.keys().all(|k| allowed.contains(k.as_str())),
                "{}: {a:?}",
                def.otel
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} families checked:\n{text}");
    // Nothing outside the table, nothing twice.
    for m in otlp::metrics(b) {
        let def = names::METRICS
            .iter()
            .find(|d| d.otel == m.name)
            .unwrap_or_else(|| panic!("{} is not in the name table", m.name));
        assert!(def.applies(mode), "{} does not apply in {mode:?}", m.name);
        otlp::metric(b, &m.name);
    }

    // Cumulative points start when the agent started, and only go up.
    let starts = start_times(a);
    assert_eq!(starts, start_times(b));
    assert_eq!(starts.len(), 1, "one start time: {starts:?}");
    let start = *starts.first().unwrap();
    assert!((before_start..=after_start).contains(&start));
    for ma in otlp::metrics(a) {
        let cumulative = matches!(ma.data, Some(Data::Sum(_)) | Some(Data::Histogram(_)));
        if !cumulative {
            continue;
        }
        let mb = otlp::metric(b, &ma.name).expect("still exported");
        let later: BTreeMap<Attrs, f64> = points(mb).into_iter().collect();
        for (attrs, earlier) in points(ma) {
            let now = later
                .get(&attrs)
                .unwrap_or_else(|| panic!("{attrs:?} gone"));
            assert!(
                *now >= earlier,
                "{} {attrs:?}: {earlier} then {now}",
                ma.name
            );
        }
    }

    // The stall, with its kind and (hooked) where it was spawned.
    let stalls = points(otlp::metric(b, "tokio.stalls").expect("tokio.stalls"));
    let total: f64 = stalls.iter().map(|(_, v)| v).sum();
    assert!(total >= 1.0, "{stalls:?}");
    let (stall, _) = &stalls[0];
    assert!(stall.contains_key("kind"), "{stall:?}");
    if support::HOOKED {
        let want = spawn_line.trim_end_matches(':');
        let (file, line) = want.rsplit_once(':').unwrap();
        assert_eq!(stall.get("code.file.path").map(String::as_str), Some(file));
        assert_eq!(
            stall.get("code.line.number").map(String::as_str),
            Some(line)
        );
    }
    let durations = points(otlp::metric(b, "tokio.stall.duration").expect("durations"));
    assert!(durations[0].1 >= 1.0, "{durations:?}");

    // What cannot move agrees with Prometheus.
    let workers = points(otlp::metric(b, "tokio.worker.count").unwrap());
    assert_eq!(workers[0].1, 2.0);
    assert_eq!(prom.value("tokio_workers", &[]), Some(2.0));
    let info = points(otlp::metric(b, "pollwatch.info").unwrap());
    assert_eq!(info[0].0["mode"], mode.as_str());
    assert_eq!(info[0].0["version"], env!("CARGO_PKG_VERSION"));

    // The exporter counts its own pushes: all of them succeeded so far.
    let exports: BTreeMap<String, f64> = points(otlp::metric(b, "pollwatch.otlp.exports").unwrap())
        .into_iter()
        .map(|(a, v)| (a["result"].clone(), v))
        .collect();
    assert!(exports["ok"] >= (n + 2) as f64, "{exports:?} after {n} + 2");
    assert_eq!(exports["error"], 0.0);
    assert!(prom
        .value("pollwatch_otlp_exports_total", &[("result", "ok")])
        .is_some());
}
