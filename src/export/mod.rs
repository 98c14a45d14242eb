//! Exporters, in one place. Encoders: the Prometheus text format, the `prometheus` crate
//! collector, the OTLP request, the instruments on an app's OpenTelemetry `Meter`, the
//! `/stalls` JSON, the page, folded stacks and the flamegraph. Transports, each on its own
//! thread with its own runtime ([`service_thread`]): the HTTP endpoint ([`server`]), the
//! OTLP push (`otlp`) and the tokio-console server (`console`). All of them read
//! [`crate::names`] for names and help, and [`crate::sampler`] for values, at the moment
//! they are asked.

#[cfg(feature = "prometheus")]
pub(crate) mod collector;
cfg_console! {
    pub(crate) mod console;
}
#[cfg(feature = "flamegraph")]
pub(crate) mod flamegraph;
pub(crate) mod folded;
#[cfg(feature = "http")]
pub(crate) mod html;
pub(crate) mod json;
#[cfg(feature = "opentelemetry")]
pub(crate) mod otel;
#[cfg(feature = "opentelemetry-sdk")]
pub(crate) mod otel_sdk;
#[cfg(feature = "opentelemetry")]
pub(crate) mod otlp;
pub(crate) mod prometheus;
#[cfg(feature = "http")]
pub(crate) mod query;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod server;
#[cfg(any(
    feature = "http",
    feature = "opentelemetry",
    all(feature = "console", tokio_unstable)
))]
pub(crate) mod service_thread;

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

    /// Blocked time by stack, every record kept, as folded stacks: the `/stalls/folded`
    /// body, one `frame;frame;… microseconds` line per stack (root first). Feed it to
    /// speedscope, `inferno-flamegraph` or `flamegraph.pl`.
    pub fn encode_folded_stacks(&self) -> String {
        match self.shared() {
            Some(s) => folded::encode(&s.flame, &Default::default()),
            None => String::new(),
        }
    }

    /// The `/flamegraph.svg` body for every record kept: an interactive SVG of blocked time.
    #[cfg(feature = "flamegraph")]
    #[cfg_attr(docsrs, doc(cfg(feature = "flamegraph")))]
    pub fn encode_flamegraph_svg(&self) -> Vec<u8> {
        let empty = crate::stats::flame::FlameTable::new();
        let table = self.shared().map_or(&empty, |s| &s.flame);
        let runtime = self.source().runtime_label();
        let labels = flamegraph::Labels {
            runtime: &runtime,
            selection: "everything kept",
        };
        flamegraph::render(table, &Default::default(), &labels)
    }

    /// Not part of the API: `(stack samples, blocked time, target pause)` over every record of
    /// the flamegraph table, for the sampling benchmark.
    #[doc(hidden)]
    pub fn __flame_totals(&self) -> (u64, std::time::Duration, std::time::Duration) {
        let t = self
            .shared()
            .map(|s| s.flame.totals(&Default::default()))
            .unwrap_or_default();
        (
            t.samples,
            std::time::Duration::from_nanos(t.weight_ns),
            std::time::Duration::from_nanos(t.paused_ns),
        )
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
