//! One collection as an OTLP `ExportMetricsServiceRequest`: the same families, series and
//! cumulative values as the Prometheus text, under the OpenTelemetry names of
//! [`crate::names`] (DESIGN §5).
//!
//! Counters become monotonic cumulative Sums, gauges Gauges, histograms cumulative
//! explicit-bucket Histograms with the Prometheus `le` bounds. Labels become attributes
//! through [`names::otel_label`]; the line number and the worker index are integers, as the
//! OpenTelemetry conventions type them. An empty label value is left out, as Prometheus
//! treats `label=""` as no label. Families with no series yet are left out (a metric
//! without data points means nothing to a backend).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::names::{self, MetricType};
use crate::sampler::{Collection, Family, Sample, Value};
use crate::stats::histogram::BUCKET_BOUNDS_NS;

/// The instrumentation scope of every metric: pollwatch and its version.
pub(crate) const SCOPE_NAME: &str = "pollwatch";

/// The times of one export, in nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Times {
    /// When the agent started: the start of every cumulative series.
    pub(crate) start_ns: u64,
    /// When this collection was read.
    pub(crate) now_ns: u64,
}

/// A string attribute.
pub(crate) fn attribute(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// The request for `c`, under `resource`.
pub(crate) fn request(
    c: &Collection,
    resource: &Resource,
    times: Times,
) -> ExportMetricsServiceRequest {
    let metrics = c
        .families
        .iter()
        .filter(|f| !f.samples.is_empty())
        .map(|f| metric(f, &c.runtime, times))
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn metric(f: &Family, runtime: &str, times: Times) -> Metric {
    let def = f.def;
    let cumulative = AggregationTemporality::Cumulative as i32;
    let attrs = |s: &Sample| attributes(runtime, def.labels, s);
    let number = |s: &Sample, start_ns: u64| NumberDataPoint {
        attributes: attrs(s),
        start_time_unix_nano: start_ns,
        time_unix_nano: times.now_ns,
        value: Some(match &s.value {
            Value::Int(n) => number_data_point::Value::AsInt(i64::try_from(*n).unwrap_or(i64::MAX)),
            Value::Float(x) => number_data_point::Value::AsDouble(*x),
            // The sampler gives histogram values to histogram families only (a test checks).
            Value::Histogram(h) => number_data_point::Value::AsInt(h.count() as i64),
        }),
        ..NumberDataPoint::default()
    };
    let data = match def.kind {
        MetricType::Counter => metric::Data::Sum(Sum {
            data_points: f
                .samples
                .iter()
                .map(|s| number(s, times.start_ns))
                .collect(),
            aggregation_temporality: cumulative,
            is_monotonic: true,
        }),
        // A gauge is a value at an instant: no start time.
        MetricType::Gauge => metric::Data::Gauge(Gauge {
            data_points: f.samples.iter().map(|s| number(s, 0)).collect(),
        }),
        MetricType::Histogram => metric::Data::Histogram(Histogram {
            data_points: f
                .samples
                .iter()
                .filter_map(|s| match &s.value {
                    Value::Histogram(h) => Some(HistogramDataPoint {
                        attributes: attrs(s),
                        start_time_unix_nano: times.start_ns,
                        time_unix_nano: times.now_ns,
                        count: h.count(),
                        sum: Some(h.sum_seconds()),
                        bucket_counts: h.buckets.to_vec(),
                        explicit_bounds: bounds_seconds(),
                        ..HistogramDataPoint::default()
                    }),
                    _ => None,
                })
                .collect(),
            aggregation_temporality: cumulative,
        }),
    };
    Metric {
        name: def.otel.into(),
        description: def.help.into(),
        unit: def.unit.into(),
        data: Some(data),
        ..Metric::default()
    }
}

/// `tokio.runtime` and the sample's labels under their OpenTelemetry names; empty values
/// left out.
fn attributes(runtime: &str, labels: &'static [&'static str], s: &Sample) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(labels.len() + 1);
    out.push(attribute(names::otel_label(names::RUNTIME_LABEL), runtime));
    for (key, value) in names::otel_attributes(labels, &s.labels) {
        out.push(match value {
            names::OtelValue::Int(n) => KeyValue {
                key: key.into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(n)),
                }),
                ..KeyValue::default()
            },
            names::OtelValue::Str(v) => attribute(key, v),
        });
    }
    out
}

/// The finite bucket bounds in seconds: the Prometheus `le` values.
fn bounds_seconds() -> Vec<f64> {
    BUCKET_BOUNDS_NS.iter().map(|ns| *ns as f64 / 1e9).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::histogram::{HistogramSnapshot, NUM_BUCKETS};

    fn collection() -> Collection {
        let mut h = HistogramSnapshot::default();
        h.buckets[0] = 2;
        h.buckets[NUM_BUCKETS - 1] = 1;
        h.sum_ns = 11_000_000_000;
        Collection {
            runtime: "rt".into(),
            families: vec![
                Family {
                    def: &names::STALLS,
                    samples: vec![
                        Sample {
                            labels: vec!["cpu".into(), "src/a.rs".into(), "7".into()],
                            value: Value::Int(3),
                        },
                        Sample {
                            labels: vec!["off_cpu".into(), "".into(), "".into()],
                            value: Value::Int(1),
                        },
                    ],
                },
                Family {
                    def: &names::WORKER_BUSY_TIME,
                    samples: vec![Sample {
                        labels: vec!["1".into()],
                        value: Value::Float(0.5),
                    }],
                },
                Family {
                    def: &names::WORKERS,
                    samples: vec![Sample {
                        labels: vec![],
                        value: Value::Int(2),
                    }],
                },
                Family {
                    def: &names::STALL_DURATION,
                    samples: vec![Sample {
                        labels: vec![],
                        value: Value::Histogram(h),
                    }],
                },
                Family {
                    def: &names::WORKER_STALLED,
                    samples: vec![],
                },
            ],
        }
    }

    fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn families_map_to_their_otlp_types_names_and_attributes() {
        let times = Times {
            start_ns: 10,
            now_ns: 20,
        };
        let req = request(&collection(), &Resource::default(), times);
        let scope = &req.resource_metrics[0].scope_metrics[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "pollwatch");
        let names: Vec<_> = scope.metrics.iter().map(|m| m.name.as_str()).collect();
        // The family without series is left out.
        assert_eq!(
            names,
            [
                "tokio.stalls",
                "tokio.worker.busy.time",
                "tokio.worker.count",
                "tokio.stall.duration"
            ]
        );
        let Some(metric::Data::Sum(stalls)) = &scope.metrics[0].data else {
            panic!("{:?}", scope.metrics[0]);
        };
        assert!(stalls.is_monotonic);
        assert_eq!(
            stalls.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let p = &stalls.data_points[0];
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (10, 20));
        assert_eq!(p.value, Some(number_data_point::Value::AsInt(3)));
        assert_eq!(
            find(&p.attributes, "tokio.runtime"),
            Some(&any_value::Value::StringValue("rt".into()))
        );
        assert_eq!(
            find(&p.attributes, "code.file.path"),
            Some(&any_value::Value::StringValue("src/a.rs".into()))
        );
        assert_eq!(
            find(&p.attributes, "code.line.number"),
            Some(&any_value::Value::IntValue(7))
        );
        // Empty label values are not attributes.
        let keys: Vec<_> = stalls.data_points[1]
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert_eq!(keys, ["tokio.runtime", "kind"]);
        let Some(metric::Data::Sum(busy)) = &scope.metrics[1].data else {
            panic!()
        };
        assert_eq!(scope.metrics[1].unit, "s");
        assert_eq!(
            find(&busy.data_points[0].attributes, "tokio.worker.index"),
            Some(&any_value::Value::IntValue(1))
        );
        assert_eq!(
            busy.data_points[0].value,
            Some(number_data_point::Value::AsDouble(0.5))
        );
        let Some(metric::Data::Gauge(workers)) = &scope.metrics[2].data else {
            panic!()
        };
        assert_eq!(workers.data_points[0].start_time_unix_nano, 0);
        let Some(metric::Data::Histogram(h)) = &scope.metrics[3].data else {
            panic!()
        };
        let p = &h.data_points[0];
        assert_eq!(p.count, 3);
        assert_eq!(p.sum, Some(11.0));
        assert_eq!(p.explicit_bounds.len() + 1, p.bucket_counts.len());
        assert_eq!(p.explicit_bounds[0], 0.00001);
        assert_eq!(*p.explicit_bounds.last().unwrap(), 10.0);
        assert_eq!(
            (p.bucket_counts[0], p.bucket_counts[NUM_BUCKETS - 1]),
            (2, 1)
        );
    }
}
