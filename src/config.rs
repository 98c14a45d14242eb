//! Configuration: plain data, defaults, environment parsing and validation.

use std::net::SocketAddr;
use std::time::Duration;

use crate::Error;

/// Default for [`Config::stall_threshold`].
pub const DEFAULT_STALL_THRESHOLD: Duration = Duration::from_millis(100);
/// Default for [`Config::watchdog_tick`].
pub const DEFAULT_WATCHDOG_TICK: Duration = Duration::from_millis(10);
/// Default for [`Config::probe_interval`].
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// Default for [`Config::poll_time_sample_every`].
pub const DEFAULT_POLL_TIME_SAMPLE_EVERY: u32 = 16;
/// Default for [`Config::max_callsites`].
pub const DEFAULT_MAX_CALLSITES: usize = 200;
/// Default for [`Config::max_reports`].
pub const DEFAULT_MAX_REPORTS: usize = 256;
/// Default for [`Config::log_interval`].
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// The address the docs suggest for [`Config::http_addr`].
pub const SUGGESTED_HTTP_ADDR: &str = "127.0.0.1:9464";
/// Default for [`Config::otlp_interval`]: the README's Prometheus `scrape_interval`, so both
/// backends see the same resolution. OpenTelemetry SDKs default to 60 s, which hides a
/// burst of stalls inside one point; an export costs one collection (tens of µs) and one
/// request of a few KiB.
pub const DEFAULT_OTLP_INTERVAL: Duration = Duration::from_secs(15);
/// Default for [`Config::otlp_timeout`]: OpenTelemetry's `OTEL_EXPORTER_OTLP_TIMEOUT`
/// default.
pub const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(10);
/// The collector address the docs suggest for [`Config::otlp_endpoint`] (OTLP/gRPC's port).
pub const SUGGESTED_OTLP_ENDPOINT: &str = "http://127.0.0.1:4317";
/// The address the docs suggest for [`Config::console_addr`]: where `tokio-console`
/// connects when given no address.
pub const SUGGESTED_CONSOLE_ADDR: &str = "127.0.0.1:6669";
/// Default for [`Config::console_max_tasks`].
pub const DEFAULT_CONSOLE_MAX_TASKS: usize = 10_000;
/// Default for [`Config::console_retention`].
pub const DEFAULT_CONSOLE_RETENTION: Duration = Duration::from_secs(60);
/// Default for [`Config::stall_sample_interval`]: 100 samples per second of a stall, which
/// with the 1 % pause budget allows captures that pause the thread up to 100 µs each.
pub const DEFAULT_STALL_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// Everything an [`Agent`](crate::Agent) can be told. Build it with
/// [`Agent::builder`](crate::Agent::builder); every field has a documented default.
#[derive(Clone, Debug)]
pub struct Config {
    /// Off: install nothing, start nothing, cost nothing. Default on.
    pub enabled: bool,
    /// A poll (or a worker) making no progress for this long is a stall. Default 100 ms.
    pub stall_threshold: Duration,
    /// How often the watchdog looks at every worker: a stall is reported within about one
    /// tick after the threshold (hooked mode reads the poll slots twice per tick to get
    /// there). Must be smaller than the threshold. Default 10 ms.
    pub watchdog_tick: Duration,
    /// How often the scheduling-lag probe is woken. Default 10 ms.
    pub probe_interval: Duration,
    /// Capture the stuck thread's stack. Default on where supported.
    pub stacks: bool,
    /// Time one poll in this many on each worker for the poll-time histogram and the
    /// per-callsite poll time (each timed poll counts with this weight). Reading a clock
    /// costs about 20 ns per read on the machines we measured, twice per timed poll; stall
    /// detection needs no clock at all. 1 times every poll; 0 times none (no poll-time
    /// histogram or per-callsite poll time is exported then). Default 16.
    pub poll_time_sample_every: u32,
    /// Hooked mode: count polls, poll time, spawned and alive tasks per spawn location (the
    /// `tokio_callsite_*` families). Off, the hooks skip the spawn-location lookup (a hash
    /// per poll, spawn and exit) and those families are not exported; stall reports still
    /// name the spawn location. With `poll_time_sample_every: 0` too, the hooks do stall
    /// detection alone. Default on.
    pub callsite_stats: bool,
    /// Parse the binary's debug info when the agent starts (about 100 ms and 50 MB once),
    /// so the first stall's stack is ready at once. Default off: done at the first stall.
    pub warm_up_symbols: bool,
    /// The real-time signal used for stack capture; `None` is `SIGRTMIN+3`.
    pub signal: Option<i32>,
    /// Serve `/metrics`, `/stalls`, the stall page and the flamegraph here; off unless set.
    pub http_addr: Option<SocketAddr>,
    /// When set, the endpoint answers 401 unless `Authorization: Bearer <token>` is sent.
    pub http_bearer_token: Option<String>,
    /// Distinct spawn locations tracked before new ones count as `other`. Default 200.
    pub max_callsites: usize,
    /// Stall reports kept in memory (the rest are counted as dropped). Default 256.
    pub max_reports: usize,
    /// One `tracing` warning per stall signature per this interval; repeats are counted.
    /// Default 10 s.
    pub log_interval: Duration,
    /// The `runtime` label; default: the tokio runtime's name, else its id.
    pub runtime_name: Option<String>,
    /// Attach mode: watch each worker's progress counters (`detection: "worker"`), which
    /// finds one stuck worker among several and captures its stack. Off leaves the probe
    /// alone (`detection: "probe"`): it sees only stalls that keep every worker from
    /// polling it, with no thread or stack. Default on.
    pub worker_detection: bool,
    /// Push the metrics over OTLP/gRPC to this collector (`http://host:port`) every
    /// [`Config::otlp_interval`], from the agent's own thread; off unless set. Needs the
    /// `opentelemetry` feature.
    pub otlp_endpoint: Option<String>,
    /// How often the OTLP exporter pushes. Default 15 s ([`DEFAULT_OTLP_INTERVAL`]).
    pub otlp_interval: Duration,
    /// How long one OTLP export may take (connecting included) before it is dropped and
    /// counted as an error. Default 10 s.
    pub otlp_timeout: Duration,
    /// The OpenTelemetry resource's `service.name`; default `OTEL_SERVICE_NAME` (with
    /// [`Builder::from_env`](crate::Builder::from_env)), else `unknown_service:<process>`.
    pub otlp_service_name: Option<String>,
    /// More OpenTelemetry resource attributes (`deployment.environment.name`, …), as
    /// `(key, value)`; later entries win.
    pub otlp_resource_attributes: Vec<(String, String)>,
    /// Serve tokio-console's gRPC protocol here (cargo feature `console`, hooked mode only);
    /// off unless set. Bind loopback, e.g. [`SUGGESTED_CONSOLE_ADDR`].
    pub console_addr: Option<SocketAddr>,
    /// Tasks the console keeps (live, and completed within `console_retention`); beyond it a
    /// new task first frees the oldest completed one, else it is not shown (both counted).
    /// Default 10 000.
    pub console_max_tasks: usize,
    /// How long the console keeps showing a completed task. Default 60 s.
    pub console_retention: Duration,
    /// While a stall lasts, sample the stuck thread's stack this often for the flamegraph
    /// (`/flamegraph.svg`, `/stalls/folded`), within a pause budget of 1 % of the stall, at
    /// most 1 000 samples per stall and 100 per second per agent. Zero takes no extra
    /// samples: the flamegraph then has the captures the report makes (at the start and at
    /// 2×, 4×, 8× the threshold). Default 10 ms.
    pub stall_sample_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            stall_threshold: DEFAULT_STALL_THRESHOLD,
            watchdog_tick: DEFAULT_WATCHDOG_TICK,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            stacks: true,
            poll_time_sample_every: DEFAULT_POLL_TIME_SAMPLE_EVERY,
            callsite_stats: true,
            warm_up_symbols: false,
            signal: None,
            http_addr: None,
            http_bearer_token: None,
            max_callsites: DEFAULT_MAX_CALLSITES,
            max_reports: DEFAULT_MAX_REPORTS,
            log_interval: DEFAULT_LOG_INTERVAL,
            runtime_name: None,
            worker_detection: true,
            otlp_endpoint: None,
            otlp_interval: DEFAULT_OTLP_INTERVAL,
            otlp_timeout: DEFAULT_OTLP_TIMEOUT,
            otlp_service_name: None,
            otlp_resource_attributes: Vec::new(),
            console_addr: None,
            console_max_tasks: DEFAULT_CONSOLE_MAX_TASKS,
            console_retention: DEFAULT_CONSOLE_RETENTION,
            stall_sample_interval: DEFAULT_STALL_SAMPLE_INTERVAL,
        }
    }
}

/// The environment variables [`Config::apply_env`] reads, with what each sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("POLLWATCH_DISABLED", "1/true/yes/on turns the agent off"),
    (
        "POLLWATCH_STALL_THRESHOLD_MS",
        "stall threshold in milliseconds",
    ),
    (
        "POLLWATCH_HTTP_ADDR",
        "serve /metrics and /stalls at this address",
    ),
    (
        "POLLWATCH_HTTP_TOKEN",
        "require this bearer token on the endpoint",
    ),
    (
        "POLLWATCH_STACKS",
        "on/off: capture the blocked thread's stack",
    ),
    ("POLLWATCH_SIGNAL", "capture signal, e.g. SIGRTMIN+3"),
    (
        "POLLWATCH_OTLP_ENDPOINT",
        "push metrics over OTLP/gRPC to this collector, e.g. http://127.0.0.1:4317",
    ),
    (
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "(feature opentelemetry) used when POLLWATCH_OTLP_ENDPOINT is not set",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "(feature opentelemetry) used when neither of the two above is set",
    ),
    (
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "(feature opentelemetry) must be grpc when an OTEL_ endpoint is used",
    ),
    (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "(feature opentelemetry) must be grpc when an OTEL_ endpoint is used",
    ),
    (
        "OTEL_METRIC_EXPORT_INTERVAL",
        "(feature opentelemetry) OTLP push interval in milliseconds",
    ),
    (
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
        "(feature opentelemetry) OTLP export timeout in milliseconds",
    ),
    (
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "(feature opentelemetry) used when the metrics-specific timeout is not set",
    ),
    ("OTEL_SERVICE_NAME", "(feature opentelemetry) service.name"),
    (
        "OTEL_RESOURCE_ATTRIBUTES",
        "(feature opentelemetry) more resource attributes, key1=value1,key2=value2",
    ),
    (
        "POLLWATCH_CONSOLE_ADDR",
        "serve tokio-console at this address (feature `console`, hooked mode)",
    ),
];

impl Config {
    /// Overrides fields from the `POLLWATCH_*` environment variables that are set.
    pub fn apply_env(&mut self) -> Result<(), Error> {
        self.apply_vars(|name| std::env::var(name).ok())
    }

    /// Same as [`Config::apply_env`] with the variables looked up by `get` (testable without
    /// touching the process environment).
    pub fn apply_vars(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
        if let Some(v) = get("POLLWATCH_DISABLED") {
            self.enabled = !parse_bool("POLLWATCH_DISABLED", &v)?;
        }
        if let Some(v) = get("POLLWATCH_STALL_THRESHOLD_MS") {
            let ms: f64 = v.trim().parse().map_err(|_| {
                Error::invalid(
                    "POLLWATCH_STALL_THRESHOLD_MS",
                    &v,
                    "expected a number of milliseconds, e.g. 100",
                )
            })?;
            if !(ms.is_finite() && ms > 0.0) {
                return Err(Error::invalid(
                    "POLLWATCH_STALL_THRESHOLD_MS",
                    &v,
                    "must be greater than zero",
                ));
            }
            self.stall_threshold = Duration::from_secs_f64(ms / 1000.0);
        }
        if let Some(v) = get("POLLWATCH_HTTP_ADDR") {
            let addr = v.trim().parse().map_err(|_| {
                Error::invalid(
                    "POLLWATCH_HTTP_ADDR",
                    &v,
                    format!("expected ip:port, e.g. {SUGGESTED_HTTP_ADDR}"),
                )
            })?;
            self.http_addr = Some(addr);
        }
        if let Some(v) = get("POLLWATCH_CONSOLE_ADDR") {
            let addr = v.trim().parse().map_err(|_| {
                Error::invalid(
                    "POLLWATCH_CONSOLE_ADDR",
                    &v,
                    format!("expected ip:port, e.g. {SUGGESTED_CONSOLE_ADDR}"),
                )
            })?;
            self.console_addr = Some(addr);
        }
        if let Some(v) = get("POLLWATCH_HTTP_TOKEN") {
            self.http_bearer_token = Some(v);
        }
        if let Some(v) = get("POLLWATCH_STACKS") {
            self.stacks = parse_bool("POLLWATCH_STACKS", &v)?;
        }
        if let Some(v) = get("POLLWATCH_SIGNAL") {
            self.signal = Some(crate::capture::parse_signal("POLLWATCH_SIGNAL", &v)?);
        }
        if let Some(v) = get("POLLWATCH_OTLP_ENDPOINT") {
            self.otlp_endpoint = Some(parse_otlp_endpoint("POLLWATCH_OTLP_ENDPOINT", &v)?);
        }
        // The standard OpenTelemetry variables configure the app's own SDK too: read them
        // only when this build can export OTLP, so they never fail a build that cannot.
        if cfg!(feature = "opentelemetry") {
            self.apply_otel_vars(&get)?;
        }
        Ok(())
    }

    /// The `OTEL_*` variables of the OpenTelemetry specification that apply to a metrics
    /// exporter speaking OTLP/gRPC.
    fn apply_otel_vars(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<(), Error> {
        let first = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|n| get(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
        };
        if self.otlp_endpoint.is_none() {
            let endpoint = first([
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ]);
            if let Some((var, v)) = endpoint {
                let protocol = first([
                    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                    "OTEL_EXPORTER_OTLP_PROTOCOL",
                ]);
                if let Some((pvar, p)) = protocol {
                    if p.trim() != "grpc" {
                        return Err(Error::invalid(
                            pvar,
                            &p,
                            format!("pollwatch exports OTLP over gRPC only, and {var} is set: set POLLWATCH_OTLP_ENDPOINT to the collector's gRPC endpoint (e.g. {SUGGESTED_OTLP_ENDPOINT}), which takes precedence"),
                        ));
                    }
                }
                self.otlp_endpoint = Some(parse_otlp_endpoint(var, &v)?);
            }
        }
        if let Some(v) = get("OTEL_METRIC_EXPORT_INTERVAL") {
            self.otlp_interval = parse_millis("OTEL_METRIC_EXPORT_INTERVAL", &v)?;
        }
        if let Some((var, v)) = first([
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]) {
            self.otlp_timeout = parse_millis(var, &v)?;
        }
        if let Some(v) = get("OTEL_SERVICE_NAME").filter(|v| !v.trim().is_empty()) {
            self.otlp_service_name = Some(v.trim().to_string());
        }
        if let Some(v) = get("OTEL_RESOURCE_ATTRIBUTES") {
            let attributes = parse_resource_attributes("OTEL_RESOURCE_ATTRIBUTES", &v)?;
            self.otlp_resource_attributes.extend(attributes);
        }
        Ok(())
    }

    /// Checks the combination of values; the error names the offending field and value.
    pub fn validate(&self) -> Result<(), Error> {
        if self.stall_threshold.is_zero() {
            return Err(Error::invalid(
                "stall_threshold",
                format!("{:?}", self.stall_threshold),
                "must be greater than zero",
            ));
        }
        if self.watchdog_tick.is_zero() || self.watchdog_tick >= self.stall_threshold {
            return Err(Error::invalid(
                "watchdog_tick",
                format!("{:?}", self.watchdog_tick),
                format!(
                    "must be greater than zero and smaller than stall_threshold ({:?})",
                    self.stall_threshold
                ),
            ));
        }
        if self.probe_interval.is_zero() {
            return Err(Error::invalid(
                "probe_interval",
                format!("{:?}", self.probe_interval),
                "must be greater than zero",
            ));
        }
        if self.poll_time_sample_every > 1_000_000 {
            return Err(Error::invalid(
                "poll_time_sample_every",
                self.poll_time_sample_every,
                "must be between 0 (time no poll) and 1000000 (1 times every poll)",
            ));
        }
        if self.max_callsites == 0 || self.max_callsites > 100_000 {
            return Err(Error::invalid(
                "max_callsites",
                self.max_callsites,
                "must be between 1 and 100000",
            ));
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            parse_otlp_endpoint("otlp_endpoint", endpoint)?;
        }
        for (field, d) in [
            ("otlp_interval", self.otlp_interval),
            ("otlp_timeout", self.otlp_timeout),
        ] {
            if d < Duration::from_millis(1) {
                return Err(Error::invalid(
                    field,
                    format!("{d:?}"),
                    "must be at least 1ms",
                ));
            }
        }
        if let Some(name) = &self.otlp_service_name {
            if name.trim().is_empty() {
                return Err(Error::invalid(
                    "otlp_service_name",
                    name,
                    "must not be empty",
                ));
            }
        }
        for (key, _) in &self.otlp_resource_attributes {
            if key.trim().is_empty() {
                return Err(Error::invalid(
                    "otlp_resource_attribute",
                    key,
                    "the key must not be empty",
                ));
            }
        }
        if self.console_max_tasks == 0 || self.console_max_tasks > 100_000 {
            return Err(Error::invalid(
                "console_max_tasks",
                self.console_max_tasks,
                "must be between 1 and 100000",
            ));
        }
        if let Some(token) = &self.http_bearer_token {
            if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid(
                    "http_bearer_token",
                    "<hidden>",
                    "must be non-empty and contain no whitespace",
                ));
            }
        }
        Ok(())
    }
}

/// An OTLP/gRPC endpoint: `http://host:port`, optionally with a trailing `/`. Returned
/// trimmed. TLS (`https://`) is not built in: the usual set-up is a collector next to the
/// app, which forwards over TLS.
pub(crate) fn parse_otlp_endpoint(field: &'static str, v: &str) -> Result<String, Error> {
    let trimmed = v.trim();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(Error::invalid(
            field,
            v,
            format!("pollwatch's OTLP exporter speaks plaintext gRPC (no TLS built in): send to a collector next to the app, e.g. {SUGGESTED_OTLP_ENDPOINT}, and let it forward over TLS"),
        ));
    }
    let expected = format!("expected http://host:port, e.g. {SUGGESTED_OTLP_ENDPOINT}");
    let Some(rest) = lower.starts_with("http://").then(|| &trimmed[7..]) else {
        return Err(Error::invalid(field, v, expected));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || authority
            .chars()
            .any(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(
            field,
            v,
            format!("{expected} (no path, query or user: OTLP/gRPC needs only the address)"),
        ));
    }
    let port_ok = authority
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty() && (!host.starts_with('[') || host.ends_with(']')))
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .is_some_and(|port| port != 0);
    if !port_ok {
        return Err(Error::invalid(
            field,
            v,
            format!("{expected} (a host and a port are required; OTLP/gRPC listens on 4317)"),
        ));
    }
    Ok(trimmed.to_string())
}

/// A whole number of milliseconds, greater than zero, as the OpenTelemetry variables give.
fn parse_millis(field: &'static str, v: &str) -> Result<Duration, Error> {
    match v.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(Error::invalid(
            field,
            v,
            "expected a whole number of milliseconds greater than zero, e.g. 15000",
        )),
    }
}

/// `key1=value1,key2=value2` with `%XX` escapes in keys and values (the W3C Baggage form
/// the OpenTelemetry specification gives `OTEL_RESOURCE_ATTRIBUTES`).
pub(crate) fn parse_resource_attributes(
    field: &'static str,
    v: &str,
) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |why: &str| {
            Error::invalid(
                field,
                v,
                format!("{why} in {pair:?}: expected key1=value1,key2=value2 with %XX escapes"),
            )
        };
        let (key, value) = pair.split_once('=').ok_or_else(|| bad("no '='"))?;
        let key = percent_decode(key.trim()).ok_or_else(|| bad("a bad %-escape"))?;
        let value = percent_decode(value.trim()).ok_or_else(|| bad("a bad %-escape"))?;
        if key.is_empty() {
            return Err(bad("an empty key"));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(crate) fn parse_bool(field: &'static str, v: &str) -> Result<bool, Error> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(Error::invalid(field, v, "expected on/off, true/false, 1/0")),
    }
}

/// An environment for unit tests: `pairs` are its only variables.
#[cfg(test)]
pub(crate) fn fake_env<'a>(
    pairs: &'a [(&'a str, &'a str)],
) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::fake_env as env;

    #[test]
    fn env_values_apply() {
        let mut c = Config::default();
        c.apply_vars(env(&[
            ("POLLWATCH_STALL_THRESHOLD_MS", "250"),
            ("POLLWATCH_HTTP_ADDR", "127.0.0.1:9464"),
            ("POLLWATCH_STACKS", "off"),
            ("POLLWATCH_DISABLED", "0"),
            ("POLLWATCH_CONSOLE_ADDR", "127.0.0.1:6669"),
        ]))
        .unwrap();
        assert_eq!(c.console_addr, Some("127.0.0.1:6669".parse().unwrap()));
        assert_eq!(c.stall_threshold, Duration::from_millis(250));
        assert_eq!(c.http_addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(!c.stacks);
        assert!(c.enabled);
    }

    #[test]
    fn bad_env_values_name_the_variable_and_the_value() {
        for (var, val) in [
            ("POLLWATCH_STALL_THRESHOLD_MS", "fast"),
            ("POLLWATCH_STALL_THRESHOLD_MS", "0"),
            ("POLLWATCH_HTTP_ADDR", "localhost"),
            ("POLLWATCH_STACKS", "maybe"),
            ("POLLWATCH_DISABLED", "2"),
            ("POLLWATCH_SIGNAL", "SIGFOO"),
            ("POLLWATCH_CONSOLE_ADDR", "localhost:6669"),
        ] {
            let err = Config::default()
                .apply_vars(env(&[(var, val)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(var), "{err}");
            assert!(err.contains(val), "{err}");
        }
    }

    #[test]
    fn otlp_endpoints_are_http_host_and_port() {
        for ok in [
            "http://127.0.0.1:4317",
            "HTTP://collector:4317/",
            "http://[::1]:4317",
        ] {
            assert!(parse_otlp_endpoint("otlp_endpoint", ok).is_ok(), "{ok}");
        }
        for bad in [
            "127.0.0.1:4317",
            "https://collector:4317",
            "http://collector",
            "http://collector:0",
            "http://collector:4318/v1/metrics",
            "http://:4317",
            "http://[::1:4317",
            "grpc://collector:4317",
            "",
        ] {
            let e = parse_otlp_endpoint("otlp_endpoint", bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("otlp_endpoint") && e.contains(&format!("{bad:?}")),
                "{e}"
            );
        }
    }

    #[test]
    #[cfg(feature = "opentelemetry")]
    fn otel_variables_apply_with_pollwatch_first() {
        let mut c = Config::default();
        c.apply_vars(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "2500"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "700"),
            ("OTEL_SERVICE_NAME", "checkout"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=prod, team=a%2Cb",
            ),
        ]))
        .unwrap();
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://metrics:4317"));
        assert_eq!(c.otlp_interval, Duration::from_millis(2500));
        assert_eq!(c.otlp_timeout, Duration::from_millis(700));
        assert_eq!(c.otlp_service_name.as_deref(), Some("checkout"));
        assert_eq!(
            c.otlp_resource_attributes,
            [
                ("deployment.environment.name".into(), "prod".into()),
                ("team".into(), "a,b".into())
            ]
        );
        let mut c = Config::default();
        c.apply_vars(env(&[
            ("POLLWATCH_OTLP_ENDPOINT", "http://pollwatch:4317"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]))
        .unwrap();
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://pollwatch:4317"));
    }

    #[test]
    #[cfg(feature = "opentelemetry")]
    fn bad_otel_values_name_the_variable_and_the_value() {
        for pairs in [
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")][..],
            &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://c:4317")],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ],
            &[("OTEL_METRIC_EXPORT_INTERVAL", "soon")],
            &[("OTEL_EXPORTER_OTLP_TIMEOUT", "0")],
            &[("OTEL_RESOURCE_ATTRIBUTES", "team")],
            &[("OTEL_RESOURCE_ATTRIBUTES", "a=%zz")],
        ] {
            let (var, val) = pairs[pairs.len() - 1];
            let err = Config::default()
                .apply_vars(env(pairs))
                .unwrap_err()
                .to_string();
            assert!(err.contains(var) && err.contains(val), "{err}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let c = Config {
            stall_threshold: Duration::ZERO,
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("stall_threshold"));
        let c = Config {
            watchdog_tick: Duration::from_millis(100),
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("watchdog_tick") && e.contains("100ms"), "{e}");
        assert!(Config::default().validate().is_ok());
        let c = Config {
            poll_time_sample_every: 1_000_001,
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("poll_time_sample_every") && e.contains("1000001"),
            "{e}"
        );
    }

    #[test]
    fn detection_alone_is_a_valid_configuration() {
        let c = Config {
            poll_time_sample_every: 0,
            callsite_stats: false,
            ..Config::default()
        };
        assert!(c.validate().is_ok());
    }
}
