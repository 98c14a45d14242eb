//! The OTLP push thread: every `otlp_interval` it collects the metrics (the same collection
//! as `/metrics`) and sends them to the collector over OTLP/gRPC.
//!
//! It runs on its own OS thread, `pollwatch-otlp`, with its own single-threaded tokio
//! runtime (see `service_thread`), never on the app's runtime: a slow or absent collector costs the app nothing.
//! One export is in flight at a time, bounded by `otlp_timeout`; a failed one is dropped, not
//! queued (the next export carries the same cumulative totals), so an unreachable collector
//! cannot grow memory. Results are counted in `pollwatch_otlp_exports_total` and failures
//! logged at most once per `log_interval`. Stopping makes one last export, bounded by
//! [`SHUTDOWN_EXPORT_TIMEOUT`], so the final counts arrive.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::resource::v1::Resource;
use tonic::transport::{Channel, Endpoint};

use super::service_thread::{ServiceThread, StopSignal};
use crate::config::Config;
use crate::export::otel::{self, attribute, Times};
use crate::sampler::Source;
use crate::Error;

/// The most the last export at shutdown may take (less if `otlp_timeout` is smaller), so
/// dropping the agent never waits long for an absent collector.
pub const SHUTDOWN_EXPORT_TIMEOUT: Duration = Duration::from_secs(2);

const THREAD_NAME: &str = "pollwatch-otlp";

/// The running exporter; stopping it (or dropping it) makes the last export and ends its
/// thread.
pub(crate) struct Pusher {
    thread: ServiceThread,
}

/// What the thread needs, prepared on the caller's thread so that a bad value is an error
/// of the start-up call.
struct Plan {
    endpoint: Endpoint,
    source: Source,
    resource: Resource,
    start_ns: u64,
    interval: Duration,
    timeout: Duration,
    log_interval: Duration,
}

impl Pusher {
    /// Starts pushing the metrics of `source` to its configured `otlp_endpoint`;
    /// `started_at` is the start time of every cumulative series.
    pub(crate) fn start(
        endpoint: &str,
        source: Source,
        started_at: SystemTime,
    ) -> Result<Pusher, Error> {
        let shared = source
            .shared
            .clone()
            .ok_or_else(|| Error::invalid("otlp_endpoint", endpoint, "the agent is disabled"))?;
        let config = &shared.config;
        let bad = |e: tonic::transport::Error| {
            Error::invalid(
                "otlp_endpoint",
                endpoint,
                format!("not a valid gRPC endpoint ({e}): expected http://host:port"),
            )
        };
        let endpoint = Endpoint::from_shared(endpoint.to_string())
            .map_err(bad)?
            .connect_timeout(config.otlp_timeout)
            .timeout(config.otlp_timeout)
            // One export in flight at a time: the channel never needs to queue more.
            .buffer_size(Some(4));
        let plan = Plan {
            endpoint,
            resource: resource(config),
            start_ns: unix_nanos(started_at),
            interval: config.otlp_interval,
            timeout: config.otlp_timeout,
            log_interval: config.log_interval,
            source,
        };
        let thread = ServiceThread::start(THREAD_NAME, move |stop| Ok(run(plan, stop)))?;
        Ok(Pusher { thread })
    }

    /// Makes the last export (bounded by [`SHUTDOWN_EXPORT_TIMEOUT`]) and waits for the
    /// thread. Idempotent.
    pub(crate) fn stop(&mut self) {
        self.thread.stop();
    }
}

/// The export loop: until stopped, one export per interval; then the last one.
async fn run(plan: Plan, mut stop: StopSignal) {
    // Lazy: connects at the first export, and again after a failure, so a collector that
    // starts after the app is found without any special case.
    let mut client = MetricsServiceClient::new(plan.endpoint.connect_lazy());
    let mut failures = FailureLog::new(plan.log_interval);
    let mut next = tokio::time::Instant::now() + plan.interval;
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = tokio::time::sleep_until(next) => {}
        }
        let stopped = tokio::select! {
            biased;
            _ = &mut stop => true,
            _ = export(&mut client, &plan, plan.timeout, &mut failures) => false,
        };
        if stopped {
            break;
        }
        // A push that overran its interval (a collector timing out) is followed by a whole
        // interval, not by pushes sent back to back to catch up.
        next += plan.interval;
        let now = tokio::time::Instant::now();
        if next < now {
            next = now + plan.interval;
        }
    }
    let last = plan.timeout.min(SHUTDOWN_EXPORT_TIMEOUT);
    export(&mut client, &plan, last, &mut failures).await;
}

/// Collects now and sends it; counts and logs the result. Never returns an error: the
/// next export carries the same cumulative totals.
async fn export(
    client: &mut MetricsServiceClient<Channel>,
    plan: &Plan,
    timeout: Duration,
    failures: &mut FailureLog,
) {
    let times = Times {
        start_ns: plan.start_ns,
        now_ns: unix_nanos(SystemTime::now()),
    };
    let request = otel::request(&plan.source.collect(), &plan.resource, times);
    let mut request = tonic::Request::new(request);
    request.set_timeout(timeout);
    let outcome = match tokio::time::timeout(timeout, client.export(request)).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Err(status)) => Err(status.to_string()),
        Ok(Ok(response)) => match response.into_inner().partial_success {
            Some(p) if p.rejected_data_points > 0 => Err(format!(
                "the collector rejected {} data points: {}",
                p.rejected_data_points, p.error_message
            )),
            _ => Ok(()),
        },
    };
    let Some(shared) = plan.source.shared.as_deref() else {
        return;
    };
    match outcome {
        Ok(()) => {
            shared.counters.otlp_exports_ok.fetch_add(1, Relaxed);
            failures.succeeded(plan.endpoint.uri());
        }
        Err(why) => {
            shared.counters.otlp_exports_error.fetch_add(1, Relaxed);
            failures.failed(plan.endpoint.uri(), &why);
        }
    }
}

/// Rate-limits the failure warnings: the first failure at once, then one per interval with
/// the number not logged; one line when exports succeed again.
struct FailureLog {
    interval: Duration,
    last_logged: Option<Instant>,
    since_logged: u64,
    in_a_row: u64,
}

impl FailureLog {
    fn new(interval: Duration) -> Self {
        FailureLog {
            interval,
            last_logged: None,
            since_logged: 0,
            in_a_row: 0,
        }
    }

    fn failed(&mut self, endpoint: &tonic::transport::Uri, why: &str) {
        self.in_a_row += 1;
        let due = self
            .last_logged
            .is_none_or(|at| at.elapsed() >= self.interval);
        if !due {
            self.since_logged += 1;
            return;
        }
        tracing::warn!(
            target: "pollwatch",
            endpoint = %endpoint,
            failures_in_a_row = self.in_a_row,
            not_logged = self.since_logged,
            "pollwatch could not push metrics over OTLP to {endpoint}: {why} (dropped; the next push carries the same totals)"
        );
        self.last_logged = Some(Instant::now());
        self.since_logged = 0;
    }

    fn succeeded(&mut self, endpoint: &tonic::transport::Uri) {
        if self.in_a_row > 0 {
            tracing::info!(
                target: "pollwatch",
                endpoint = %endpoint,
                "pollwatch pushes metrics over OTLP to {endpoint} again, after {} failed pushes",
                self.in_a_row
            );
        }
        self.in_a_row = 0;
        self.since_logged = 0;
        self.last_logged = None;
    }
}

/// The resource: `service.name`, the telemetry SDK (pollwatch), the process, then the
/// configured attributes (which may override all but `service.name`). The runtime is not
/// part of it: every data point carries `tokio.runtime`, so agents of several runtimes in
/// one process share one resource.
fn resource(config: &Config) -> Resource {
    let mut attrs: Vec<(String, String)> = vec![
        ("telemetry.sdk.name".into(), "pollwatch".into()),
        ("telemetry.sdk.language".into(), "rust".into()),
        (
            "telemetry.sdk.version".into(),
            env!("CARGO_PKG_VERSION").into(),
        ),
        ("process.pid".into(), std::process::id().to_string()),
    ];
    for (key, value) in &config.otlp_resource_attributes {
        attrs.retain(|(k, _)| k != key);
        attrs.push((key.clone(), value.clone()));
    }
    // `service.name` from the setting (or OTEL_SERVICE_NAME) wins over one given among the
    // attributes, as the OpenTelemetry specification orders them.
    let service = config
        .otlp_service_name
        .clone()
        .or_else(|| {
            attrs
                .iter()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(default_service_name);
    attrs.retain(|(k, _)| k != "service.name");
    let mut out = vec![attribute("service.name", service)];
    out.extend(attrs.into_iter().map(|(k, v)| attribute(k, v)));
    Resource {
        attributes: out,
        ..Resource::default()
    }
}

/// `unknown_service:<executable name>`, the specification's default.
fn default_service_name() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if exe.is_empty() {
        "unknown_service".into()
    } else {
        format!("unknown_service:{exe}")
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_and_values(r: &Resource) -> Vec<(String, String)> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        r.attributes
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(s)) => s.clone(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    #[test]
    fn service_name_comes_first_and_the_setting_wins() {
        let config = Config {
            otlp_service_name: Some("checkout".into()),
            otlp_resource_attributes: vec![
                ("service.name".into(), "ignored".into()),
                ("telemetry.sdk.language".into(), "rust-tokio".into()),
                ("deployment.environment.name".into(), "prod".into()),
            ],
            ..Config::default()
        };
        let attrs = keys_and_values(&resource(&config));
        assert_eq!(attrs[0], ("service.name".into(), "checkout".into()));
        assert_eq!(attrs.iter().filter(|(k, _)| k == "service.name").count(), 1);
        assert!(attrs.contains(&("telemetry.sdk.language".into(), "rust-tokio".into())));
        assert!(attrs.contains(&("deployment.environment.name".into(), "prod".into())));
        assert!(attrs.contains(&("process.pid".into(), std::process::id().to_string())));

        let config = Config {
            otlp_resource_attributes: vec![("service.name".into(), "from-attrs".into())],
            ..Config::default()
        };
        let attrs = keys_and_values(&resource(&config));
        assert_eq!(attrs[0], ("service.name".into(), "from-attrs".into()));
        let attrs = keys_and_values(&resource(&Config::default()));
        assert!(attrs[0].1.starts_with("unknown_service:"), "{attrs:?}");
    }
}
