//! Exporters: the Prometheus text format, the `prometheus` crate collector and the
//! `/stalls` JSON. All of them read [`crate::names`] for names and help, and
//! [`crate::sampler`] for values, at the moment they are asked.

#[cfg(feature = "prometheus")]
pub(crate) mod collector;
pub(crate) mod json;
pub(crate) mod prometheus;

use crate::sampler::Source;
use crate::Agent;

impl Agent {
    pub(crate) fn source(&self) -> Source {
        Source {
            shared: self.shared().cloned(),
            handle: self.runtime_handle().cloned(),
        }
    }

    /// Every pollwatch metric in the Prometheus text format (version 0.0.4), read now.
    ///
    /// For apps that already run a web server: serve this string at your own `/metrics`
    /// with the `Content-Type` `text/plain; version=0.0.4; charset=utf-8`. It is what the
    /// built-in endpoint ([`Builder::http_addr`](crate::Builder::http_addr)) serves. Safe to
    /// call from any thread, including while every worker of the runtime is blocked; costs
    /// the caller tens of microseconds and the runtime nothing.
    pub fn encode_metrics(&self) -> String {
        prometheus::encode(&self.source().collect())
    }

    /// The `/stalls` JSON (DESIGN §5): the exact stall total, the reports that fell out of
    /// the ring, and the recent reports, newest last. For apps that serve it themselves.
    pub fn encode_stalls_json(&self) -> String {
        json::encode(&self.stall_summary())
    }

    /// pollwatch's metrics as a `prometheus::core::Collector`, to register into a registry
    /// you already expose (see also [`Agent::register`]). The collector keeps reading this
    /// agent's state after the `Agent` itself is dropped (values then stop moving).
    #[cfg(feature = "prometheus")]
    #[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
    pub fn collector(&self) -> Result<collector::PrometheusCollector, crate::Error> {
        collector::PrometheusCollector::new(self.source())
    }

    /// Registers [`Agent::collector`] into `registry`, so pollwatch's families appear in the
    /// app's own `prometheus::gather()` output. Registering the same runtime twice fails
    /// with [`Error::Prometheus`](crate::Error::Prometheus).
    #[cfg(feature = "prometheus")]
    #[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
    pub fn register(&self, registry: &::prometheus::Registry) -> Result<(), crate::Error> {
        registry
            .register(Box::new(self.collector()?))
            .map_err(crate::Error::Prometheus)
    }
}

#[cfg(all(test, feature = "prometheus"))]
mod tests {
    use std::time::Duration;

    #[test]
    fn registry_output_has_the_same_series_as_encode_metrics() {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2).enable_all();
        let (rt, agent) = crate::Agent::builder()
            .runtime_name("reg")
            .stacks(false)
            .build_runtime(&mut b)
            .unwrap();
        rt.block_on(async {
            for _ in 0..10 {
                tokio::spawn(async { tokio::task::yield_now().await }).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        let registry = ::prometheus::Registry::new();
        agent.register(&registry).unwrap();
        assert!(matches!(
            agent.register(&registry),
            Err(crate::Error::Prometheus(_))
        ));
        let families = registry.gather();
        let text = ::prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap();
        let ours = agent.encode_metrics();
        // Series names and label sets agree (values of counters may have moved between).
        let keys = |t: &str| {
            let mut k: Vec<String> = t
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
                .map(|s| normalize(&s))
                .collect();
            k.sort();
            k
        };
        assert_eq!(keys(&text), keys(&ours), "{text}\n---\n{ours}");
        assert!(text.contains("# TYPE tokio_worker_count gauge"));
        assert!(text.contains("tokio_worker_count{runtime=\"reg\"} 2"), "{text}");
    }

    /// The prometheus crate writes `le="0.00001"` as `le="0.00001"` too but orders labels
    /// as given; sort the labels of a series so the comparison ignores order.
    fn normalize(series: &str) -> String {
        let Some((name, rest)) = series.split_once('{') else {
            return series.to_string();
        };
        let mut labels: Vec<&str> = rest.trim_end_matches('}').split("\",").collect();
        labels.iter_mut().for_each(|l| *l = l.trim_end_matches('"'));
        labels.sort();
        format!("{name}{{{}}}", labels.join(","))
    }
}
