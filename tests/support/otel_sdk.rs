//! What an OpenTelemetry SDK exporter received, flattened for comparison with the Prometheus
//! text: one [`Metric`] per instrument, its points keyed by their attributes as text.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, InMemoryMetricExporterBuilder};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

pub type Attrs = BTreeMap<String, String>;

/// The number type of an instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Number {
    U64,
    I64,
    F64,
}

/// What kind of data the SDK exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sum {
        monotonic: bool,
        temporality: Temporality,
    },
    Gauge,
    Histogram,
    ExponentialHistogram,
}

#[derive(Clone, Debug)]
pub struct Metric {
    pub scope: String,
    pub scope_version: Option<String>,
    pub name: String,
    pub unit: String,
    pub description: String,
    pub number: Number,
    pub kind: Kind,
    /// Attributes (integers written as decimal text) and value; for a histogram, its count.
    pub points: BTreeMap<Attrs, f64>,
    /// Attribute keys whose values were integers.
    pub int_keys: Vec<String>,
    /// A Sum's start and end times.
    pub interval: Option<(SystemTime, SystemTime)>,
}

fn attrs<'a>(
    kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>,
    int_keys: &mut Vec<String>,
) -> Attrs {
    let mut out = Attrs::new();
    for kv in kvs {
        let text = match &kv.value {
            opentelemetry::Value::I64(n) => {
                if !int_keys.iter().any(|k| k == kv.key.as_str()) {
                    int_keys.push(kv.key.to_string());
                }
                n.to_string()
            }
            opentelemetry::Value::String(s) => s.as_str().to_string(),
            other => panic!("unexpected attribute value {other:?} for {}", kv.key),
        };
        assert!(
            out.insert(kv.key.to_string(), text).is_none(),
            "duplicate attribute {}",
            kv.key
        );
    }
    out
}

/// Every metric of one export, by name (asserting each name appears once).
pub fn metrics(rm: &ResourceMetrics) -> BTreeMap<String, Metric> {
    let mut out = BTreeMap::new();
    for sm in rm.scope_metrics() {
        for m in sm.metrics() {
            let mut int_keys = Vec::new();
            let (number, (kind, points, interval)) = match m.data() {
                // Exact below 2^53, far above any count a test reaches.
                AggregatedMetrics::U64(d) => (Number::U64, flatten(d, &mut int_keys, |v| v as f64)),
                AggregatedMetrics::I64(d) => (Number::I64, flatten(d, &mut int_keys, |v| v as f64)),
                AggregatedMetrics::F64(d) => (Number::F64, flatten(d, &mut int_keys, |v| v)),
            };
            let metric = Metric {
                scope: sm.scope().name().to_string(),
                scope_version: sm.scope().version().map(str::to_string),
                name: m.name().to_string(),
                unit: m.unit().to_string(),
                description: m.description().to_string(),
                number,
                kind,
                points,
                int_keys,
                interval,
            };
            let name = metric.name.clone();
            assert!(out.insert(name.clone(), metric).is_none(), "{name} twice");
        }
    }
    out
}

fn flatten<T: Copy>(
    data: &MetricData<T>,
    int_keys: &mut Vec<String>,
    to_f64: impl Fn(T) -> f64,
) -> (Kind, BTreeMap<Attrs, f64>, Option<(SystemTime, SystemTime)>) {
    let mut points = BTreeMap::new();
    let mut put = |a: Attrs, v: f64| {
        assert!(
            points.insert(a.clone(), v).is_none(),
            "two points for {a:?}"
        );
    };
    match data {
        MetricData::Sum(s) => {
            for p in s.data_points() {
                put(attrs(p.attributes(), int_keys), to_f64(p.value()));
            }
            let kind = Kind::Sum {
                monotonic: s.is_monotonic(),
                temporality: s.temporality(),
            };
            (kind, points, Some((s.start_time(), s.time())))
        }
        MetricData::Gauge(g) => {
            for p in g.data_points() {
                put(attrs(p.attributes(), int_keys), to_f64(p.value()));
            }
            (Kind::Gauge, points, None)
        }
        MetricData::Histogram(h) => {
            for p in h.data_points() {
                put(attrs(p.attributes(), int_keys), p.count() as f64);
            }
            (Kind::Histogram, points, None)
        }
        MetricData::ExponentialHistogram(_) => (Kind::ExponentialHistogram, points, None),
    }
}

/// An SDK provider whose only reader is a periodic one (interval one hour: it exports when
/// flushed) into an in-memory exporter with `temporality`.
pub fn in_memory_provider(temporality: Temporality) -> (SdkMeterProvider, InMemoryMetricExporter) {
    let exporter = InMemoryMetricExporterBuilder::new()
        .with_temporality(temporality)
        .build();
    let reader = PeriodicReader::builder(exporter.clone())
        .with_interval(Duration::from_secs(3600))
        .build();
    let provider = SdkMeterProvider::builder().with_reader(reader).build();
    (provider, exporter)
}

/// Collects now (`force_flush`) and returns that one export.
pub fn collect(provider: &SdkMeterProvider, exporter: &InMemoryMetricExporter) -> ResourceMetrics {
    exporter.reset();
    provider.force_flush().expect("the provider collects");
    let mut got = exporter.get_finished_metrics().expect("exported metrics");
    assert_eq!(got.len(), 1, "one export per flush");
    got.pop().unwrap()
}
