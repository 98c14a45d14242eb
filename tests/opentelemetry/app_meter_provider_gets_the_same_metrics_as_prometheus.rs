//! The application's own OpenTelemetry `SdkMeterProvider` (the SDK's in-memory exporter,
//! behind a periodic reader that exports when flushed), given pollwatch's instruments with
//! `register_meter_provider`, exports the same families and values as `/metrics`, under the
//! OpenTelemetry names, units, descriptions and attributes of the direct push; histograms as
//! their count and sum. With cumulative temporality the values are pollwatch's totals; with
//! delta temporality the SDK turns them into differences between exports that add up to the
//! same totals, while gauges stay values. After the agent is dropped, the providers still
//! collect (no panic, the app's own metric still exported) and carry no pollwatch metric.
//! Hooked mode in the `tokio_unstable` build, attach mode (`build_runtime`) in the stable one.
#![cfg(feature = "opentelemetry-sdk")]

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::Temporality;
use pollwatch::names::{self, MetricDef, MetricType};
use support::otel_sdk::{self, Attrs, Kind, Metric, Number};
use support::scrape::Exposition;

/// What `/metrics` says each OpenTelemetry instrument must carry: the instrument's table
/// entry, description, unit, and its points.
struct Expected {
    def: &'static MetricDef,
    unit: String,
    description: String,
    points: BTreeMap<Attrs, f64>,
}

fn expected_attrs(labels: &BTreeMap<String, String>) -> Attrs {
    labels
        .iter()
        .filter(|(k, v)| *k != "le" && !v.is_empty())
        .map(|(k, v)| (names::otel_label(k).to_string(), v.clone()))
        .collect()
}

/// The instruments `/metrics` (parsed) stands for, by OpenTelemetry name: every family
/// with series; a histogram as its `.count` and `.sum`.
fn expected(e: &Exposition) -> BTreeMap<String, Expected> {
    let mut out = BTreeMap::new();
    for (family, _) in &e.types {
        let series = e.family(family);
        if series.is_empty() {
            continue;
        }
        let def = names::by_prometheus_name(family).expect("in the table");
        let points = |sample: &str| -> BTreeMap<Attrs, f64> {
            series
                .iter()
                .filter(|s| s.name == sample)
                .map(|s| (expected_attrs(&s.labels), s.value))
                .collect()
        };
        if def.kind == MetricType::Histogram {
            let count = def.otel_histogram_count().unwrap();
            let sum = def.otel_histogram_sum().unwrap();
            for (part, sample) in [(count, "_count"), (sum, "_sum")] {
                let expected = Expected {
                    def,
                    unit: part.unit.to_string(),
                    description: part.description,
                    points: points(&format!("{family}{sample}")),
                };
                out.insert(part.otel, expected);
            }
        } else {
            let expected = Expected {
                def,
                unit: def.unit.to_string(),
                description: def.help.to_string(),
                points: points(family),
            };
            out.insert(def.otel.to_string(), expected);
        }
    }
    out
}

/// pollwatch's metrics in one export (its scope only).
fn pollwatch_metrics(
    rm: &opentelemetry_sdk::metrics::data::ResourceMetrics,
) -> BTreeMap<String, Metric> {
    otel_sdk::metrics(rm)
        .into_iter()
        .filter(|(_, m)| m.scope == "pollwatch")
        .collect()
}

/// The checks that hold for every export, whatever moved while it was taken: names, units,
/// descriptions, instrument kinds and number types, temporality, integer attributes, and
/// the same series as `/metrics` (when `/metrics` had the same series before and after).
fn check_shape(
    got: &BTreeMap<String, Metric>,
    before: &BTreeMap<String, Expected>,
    after: &BTreeMap<String, Expected>,
    temporality: Temporality,
) {
    let names_of = |m: &BTreeMap<String, Expected>| m.keys().cloned().collect::<BTreeSet<_>>();
    let got_names: BTreeSet<String> = got.keys().cloned().collect();
    if names_of(before) == names_of(after) {
        assert_eq!(got_names, names_of(before), "the instruments with data");
    }
    for (name, m) in got {
        let want = before
            .get(name)
            .or_else(|| after.get(name))
            .unwrap_or_else(|| panic!("{name} is exported but not in /metrics"));
        assert_eq!(m.scope_version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(m.unit, want.unit, "{name}");
        assert_eq!(m.description, want.description, "{name}");
        let real = want.unit == "s";
        assert_eq!(
            m.number,
            if real { Number::F64 } else { Number::U64 },
            "{name}"
        );
        let counter = want.def.kind != MetricType::Gauge;
        let kind = if counter {
            Kind::Sum {
                monotonic: true,
                temporality,
            }
        } else {
            Kind::Gauge
        };
        assert_eq!(m.kind, kind, "{name}");
        for key in &m.int_keys {
            assert!(
                ["code.line.number", "tokio.worker.index"].contains(&key.as_str()),
                "{name}: {key} is an integer"
            );
        }
        for attrs in m.points.keys() {
            for key in ["code.line.number", "tokio.worker.index"] {
                if attrs.contains_key(key) {
                    assert!(m.int_keys.iter().any(|k| k == key), "{name}: {key} is text");
                }
            }
        }
        let series = |e: &Expected| e.points.keys().cloned().collect::<BTreeSet<_>>();
        if let Some(a) = after.get(name) {
            if series(want) == series(a) {
                let got: BTreeSet<Attrs> = m.points.keys().cloned().collect();
                assert_eq!(got, series(want), "{name}: the same series as /metrics");
            }
        }
    }
}

/// A counter read between two reads of `/metrics` lies between them.
fn check_between(name: &str, attrs: &Attrs, got: f64, before: Option<f64>, after: Option<f64>) {
    if let (Some(lo), Some(hi)) = (before, after) {
        // A delta sum of reals is rounded once per export.
        let slack = 1e-9 * hi.abs().max(1.0);
        assert!(
            lo - slack <= got && got <= hi + slack,
            "{name} {attrs:?}: {got} is not between the /metrics reads {lo} and {hi}"
        );
    }
}

fn value(e: &BTreeMap<String, Expected>, name: &str, attrs: &Attrs) -> Option<f64> {
    e.get(name).and_then(|x| x.points.get(attrs).copied())
}

fn total(m: &BTreeMap<String, Metric>, name: &str) -> f64 {
    m.get(name)
        .unwrap_or_else(|| panic!("{name} exported"))
        .points
        .values()
        .sum()
}

/// One stall of about 300 ms, always from the same spawn location (one series).
fn stall(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(300)) })
            .await
            .unwrap();
    });
}

#[test]
fn app_meter_provider_gets_the_same_metrics_as_prometheus() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("sdk")
            .stall_threshold(Duration::from_millis(50))
            .watchdog_tick(Duration::from_millis(5)),
    );
    let (cumulative, cumulative_out) = otel_sdk::in_memory_provider(Temporality::Cumulative);
    let (delta, delta_out) = otel_sdk::in_memory_provider(Temporality::Delta);
    agent.register_meter_provider(&cumulative);
    agent.register_meter_provider(&delta);
    // The app's own metric on the same providers.
    let app_counters =
        [&cumulative, &delta].map(|p| p.meter("app").u64_counter("app.requests").build());
    let prom = || Exposition::parse(&agent.encode_metrics());

    rt.block_on(async {
        for _ in 0..50 {
            tokio::spawn(async { tokio::task::yield_now().await })
                .await
                .unwrap();
        }
        tokio::task::spawn_blocking(|| ()).await.unwrap();
        // Let attach mode meet the workers before one of them stalls.
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    stall(&rt);
    let done = |n: usize| {
        let s = support::wait_for(&agent, Duration::from_secs(5), |s| {
            s.len() == n && s.iter().all(|r| !r.ongoing)
        });
        assert_eq!(s.len(), n, "{s:#?}");
    };
    done(1);

    // Delta, first export: everything since the start.
    let a1 = expected(&prom());
    let d1 = pollwatch_metrics(&otel_sdk::collect(&delta, &delta_out));
    let c1 = expected(&prom());
    check_shape(&d1, &a1, &c1, Temporality::Delta);

    stall(&rt);
    done(2);
    let a2 = expected(&prom());
    let d2 = pollwatch_metrics(&otel_sdk::collect(&delta, &delta_out));
    let c2 = expected(&prom());
    check_shape(&d2, &a2, &c2, Temporality::Delta);

    // Cumulative: every value as /metrics reads it. Counters only go up, so a value read
    // between two reads of /metrics lies between them, always; when nothing moved between
    // the two reads, every value is exactly what /metrics says. Until that happens (the
    // probe runs every 10 ms), read again, a bounded number of times.
    let mut exact = false;
    let mut families = 0;
    for attempt in 0..100 {
        let a = expected(&prom());
        let b = pollwatch_metrics(&otel_sdk::collect(&cumulative, &cumulative_out));
        let c = expected(&prom());
        check_shape(&b, &a, &c, Temporality::Cumulative);
        for (name, m) in &b {
            if a[name].def.kind == MetricType::Gauge {
                continue;
            }
            for (attrs, v) in &m.points {
                check_between(
                    name,
                    attrs,
                    *v,
                    value(&a, name, attrs),
                    value(&c, name, attrs),
                );
            }
        }
        let same = a
            .iter()
            .all(|(name, x)| c.get(name).is_some_and(|y| x.points == y.points))
            && a.len() == c.len();
        if same {
            for (name, want) in &a {
                assert_eq!(
                    b[name].points, want.points,
                    "{name}: the values of /metrics"
                );
            }
            families = b.len();
            eprintln!(
                "exact after {} reads: {:?}",
                attempt + 1,
                b.keys().collect::<Vec<_>>()
            );
            exact = true;
            break;
        }
    }
    assert!(exact, "/metrics never stood still for two reads in a row");
    assert!(families >= 12, "only {families} instruments compared");

    // Delta: the first export is the total so far, the second the difference, zero for what
    // did not move; together they are the total at the second export.
    for (name, m) in &d2 {
        if a2[name].def.kind == MetricType::Gauge {
            continue;
        }
        let (start, _) = m.interval.expect("a sum has an interval");
        if let Some((_, first_end)) = d1.get(name).and_then(|m| m.interval) {
            assert_eq!(
                start, first_end,
                "{name}: the second delta starts where the first ended"
            );
        }
        for (attrs, v) in &m.points {
            let first = d1.get(name).and_then(|m| m.points.get(attrs)).copied();
            check_between(
                name,
                attrs,
                first.unwrap_or(0.0),
                value(&a1, name, attrs),
                value(&c1, name, attrs),
            );
            let sum = first.unwrap_or(0.0) + v;
            check_between(
                name,
                attrs,
                sum,
                value(&a2, name, attrs),
                value(&c2, name, attrs),
            );
        }
    }
    for d in [&d1, &d2] {
        assert_eq!(total(d, "tokio.stalls"), 1.0, "one stall per delta");
        assert_eq!(total(d, "tokio.stall.duration.count"), 1.0);
        let seconds = total(d, "tokio.stall.duration.sum");
        assert!(
            (0.25..5.0).contains(&seconds),
            "a 300 ms stall lasted {seconds} s"
        );
        // A gauge is a value, not a difference.
        assert_eq!(total(d, "tokio.worker.count"), 2.0);
    }
    assert_eq!(
        d1["tokio.stalls"].points.keys().collect::<Vec<_>>(),
        d2["tokio.stalls"].points.keys().collect::<Vec<_>>(),
        "both stalls are one series"
    );
    let info = &d2["pollwatch.info"].points;
    let (attrs, one) = info.iter().next().unwrap();
    assert_eq!(*one, 1.0);
    assert_eq!(attrs["mode"], agent.mode().as_str());
    assert_eq!(attrs["tokio.runtime"], "sdk");
    if support::HOOKED {
        let stall = d2["tokio.stalls"].points.keys().next().unwrap();
        assert!(stall["code.file.path"].ends_with(file!()), "{stall:?}");
        assert!(d2.contains_key("tokio.task.poll.duration.count"));
        assert!(d2.contains_key("tokio.callsite.polls"));
    }

    // The agent is gone: the providers still collect, without pollwatch's metrics and
    // without calling into the dropped agent.
    drop(agent);
    for ((provider, out), counter) in [(&cumulative, &cumulative_out), (&delta, &delta_out)]
        .into_iter()
        .zip(&app_counters)
    {
        counter.add(1, &[]);
        let after = otel_sdk::metrics(&otel_sdk::collect(provider, out));
        assert!(after.contains_key("app.requests"), "{:?}", after.keys());
        assert!(
            after.values().all(|m| m.scope != "pollwatch"),
            "pollwatch metrics after the agent was dropped: {:?}",
            after.keys()
        );
        provider.shutdown().expect("the provider shuts down");
    }
    drop(rt);
}
