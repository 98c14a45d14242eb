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

/// Everything an [`Agent`](crate::Agent) can be told. Build it with
/// [`Agent::builder`](crate::Agent::builder); every field has a documented default.
#[derive(Clone, Debug)]
pub struct Config {
    /// Off: install nothing, start nothing, cost nothing. Default on.
    pub enabled: bool,
    /// A poll (or a worker) making no progress for this long is a stall. Default 100 ms.
    pub stall_threshold: Duration,
    /// How often the watchdog looks at every worker. Must be smaller than the threshold.
    /// Default 10 ms.
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
    /// Serve `/metrics` and `/stalls` here; off unless set.
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
        if let Some(v) = get("POLLWATCH_HTTP_TOKEN") {
            self.http_bearer_token = Some(v);
        }
        if let Some(v) = get("POLLWATCH_STACKS") {
            self.stacks = parse_bool("POLLWATCH_STACKS", &v)?;
        }
        if let Some(v) = get("POLLWATCH_SIGNAL") {
            self.signal = Some(crate::capture::parse_signal("POLLWATCH_SIGNAL", &v)?);
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

fn parse_bool(field: &'static str, v: &str) -> Result<bool, Error> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(Error::invalid(field, v, "expected on/off, true/false, 1/0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn env_values_apply() {
        let mut c = Config::default();
        c.apply_vars(env(&[
            ("POLLWATCH_STALL_THRESHOLD_MS", "250"),
            ("POLLWATCH_HTTP_ADDR", "127.0.0.1:9464"),
            ("POLLWATCH_STACKS", "off"),
            ("POLLWATCH_DISABLED", "0"),
        ]))
        .unwrap();
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
