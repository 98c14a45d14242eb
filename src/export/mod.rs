//! Exporters: the Prometheus text format, the `prometheus` crate collector, the OTLP
//! request, the instruments on an app's OpenTelemetry `Meter` and the `/stalls` JSON. All of them read [`crate::names`] for names and help, and
//! [`crate::sampler`] for values, at the moment they are asked.

#[cfg(feature = "prometheus")]
pub(crate) mod collector;
pub(crate) mod json;
#[cfg(feature = "opentelemetry")]
pub(crate) mod otel;
#[cfg(feature = "opentelemetry-sdk")]
pub(crate) mod otel_sdk;
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
