//! A `prometheus::core::Collector` for apps that already expose a `prometheus::Registry`:
//! pollwatch's families appear in the app's own `/metrics`, computed at each gather.

use std::collections::HashMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType as ProtoType};

use crate::names::{MetricType, RUNTIME_LABEL};
use crate::sampler::{Sample, Source, Value};
use crate::Error;

/// pollwatch's metrics as a [`prometheus::core::Collector`]; get one from
/// [`Agent::collector`](crate::Agent::collector) or register directly with
/// [`Agent::register`](crate::Agent::register).
///
/// `runtime` is a constant label of every descriptor, so the collectors of several agents
/// (several runtimes) can live in one registry; registering the same runtime twice is an
/// error. It produces the same families, series and values as
/// [`Agent::encode_metrics`](crate::Agent::encode_metrics), except that families with no
/// series yet are left out (the `prometheus` crate rejects empty families).
pub struct PrometheusCollector {
    source: Source,
    descs: Vec<Desc>,
}

impl PrometheusCollector {
    pub(crate) fn new(source: Source) -> Result<Self, Error> {
        let runtime = source.runtime_label();
        let descs = crate::names::METRICS
            .iter()
            .copied()
            .filter(|d| source.exports(d))
            .map(|d| {
                Desc::new(
                    d.prometheus.to_string(),
                    d.help.to_string(),
                    d.labels.iter().map(|l| l.to_string()).collect(),
                    HashMap::from([(RUNTIME_LABEL.to_string(), runtime.clone())]),
                )
            })
            .collect::<Result<_, _>>()
            .map_err(Error::Prometheus)?;
        Ok(PrometheusCollector { source, descs })
    }
}

impl std::fmt::Debug for PrometheusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusCollector")
            .field("runtime", &self.source.runtime_label())
            .field("families", &self.descs.len())
            .finish()
    }
}

fn label(name: &str, value: &str) -> proto::LabelPair {
    let mut l = proto::LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn metric(runtime: &str, names: &[&str], sample: &Sample, kind: MetricType) -> proto::Metric {
    let mut labels = vec![label(RUNTIME_LABEL, runtime)];
    labels.extend(names.iter().zip(&sample.labels).map(|(n, v)| label(n, v)));
    let mut m = proto::Metric::from_label(labels);
    let scalar = match &sample.value {
        Value::Int(n) => *n as f64,
        Value::Float(f) => *f,
        Value::Histogram(h) => h.count() as f64,
    };
    match (kind, &sample.value) {
        (MetricType::Histogram, Value::Histogram(h)) => {
            let mut ph = proto::Histogram::default();
            ph.set_sample_count(h.count());
            ph.set_sample_sum(h.sum_seconds());
            ph.set_bucket(
                h.cumulative()
                    .map(|(bound, cumulative)| {
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(bound);
                        b.set_cumulative_count(cumulative);
                        b
                    })
                    .collect(),
            );
            m.set_histogram(ph);
        }
        (MetricType::Counter, _) => {
            let mut c = proto::Counter::default();
            c.set_value(scalar);
            m.set_counter(c);
        }
        _ => {
            let mut g = proto::Gauge::default();
            g.set_value(scalar);
            m.set_gauge(g);
        }
    }
    m
}

impl Collector for PrometheusCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let c = self.source.collect();
        c.families
            .iter()
            .filter(|f| !f.samples.is_empty())
            .map(|f| {
                let mut mf = MetricFamily::default();
                mf.set_name(f.def.prometheus.to_string());
                mf.set_help(f.def.help.to_string());
                mf.set_field_type(match f.def.kind {
                    MetricType::Counter => ProtoType::COUNTER,
                    MetricType::Gauge => ProtoType::GAUGE,
                    MetricType::Histogram => ProtoType::HISTOGRAM,
                });
                mf.set_metric(
                    f.samples
                        .iter()
                        .map(|s| metric(&c.runtime, f.def.labels, s, f.def.kind))
                        .collect(),
                );
                mf
            })
            .collect()
    }
}
