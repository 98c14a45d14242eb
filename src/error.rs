//! The one error type of the crate. Every message says what was wrong, with the value,
//! and what to do about it.

use std::fmt;
use std::net::SocketAddr;

/// Everything that can go wrong while configuring or starting pollwatch.
///
/// Once an [`Agent`](crate::Agent) runs, nothing it does returns an error to the host: problems
/// are counted in metrics and reported through `tracing` instead.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A builder setting or an environment variable has a value pollwatch cannot use.
    InvalidConfig {
        /// The builder method or environment variable, e.g. `stall_threshold` or
        /// `POLLWATCH_STALL_THRESHOLD_MS`.
        field: &'static str,
        /// The rejected value as given.
        value: String,
        /// Why it was rejected and what would be accepted.
        reason: String,
    },
    /// The HTTP endpoint or the tokio-console server could not bind its address (most often:
    /// the port is in use).
    Bind {
        /// The setting that asked for the address: `http_addr` or `console_addr`.
        setting: &'static str,
        /// The address that could not be bound.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The signal handler used for stack capture could not be installed.
    Signal {
        /// The signal number.
        signal: i32,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An operating-system thread for the agent (watchdog, HTTP server) could not be started.
    Thread {
        /// The thread's name.
        name: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The tokio runtime could not be built.
    Runtime(std::io::Error),
    /// Registering pollwatch's collector into a `prometheus::Registry` failed.
    #[cfg(feature = "prometheus")]
    Prometheus(prometheus::Error),
}

impl Error {
    pub(crate) fn invalid(
        field: &'static str,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidConfig {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig {
                field,
                value,
                reason,
            } => write!(f, "invalid pollwatch setting {field}={value:?}: {reason}"),
            Error::Bind {
                setting,
                addr,
                source,
            } => write!(
                f,
                "pollwatch could not listen on {addr} ({setting}): {source} (is another process using that port? choose another {setting} or POLLWATCH_{})",
                setting.to_ascii_uppercase()
            ),
            Error::Signal { signal, source } => write!(
                f,
                "pollwatch could not install its stack-capture handler for signal {signal}: {source} (choose another signal with POLLWATCH_SIGNAL, or turn stacks off with POLLWATCH_STACKS=off)"
            ),
            Error::Thread { name, source } => {
                write!(f, "pollwatch could not start its thread {name:?}: {source}")
            }
            Error::Runtime(source) => write!(f, "the tokio runtime could not be built: {source}"),
            #[cfg(feature = "prometheus")]
            Error::Prometheus(source) => write!(
                f,
                "pollwatch's collector could not be registered: {source} (is it registered twice?)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind { source, .. } | Error::Signal { source, .. } => Some(source),
            Error::Thread { source, .. } | Error::Runtime(source) => Some(source),
            #[cfg(feature = "prometheus")]
            Error::Prometheus(source) => Some(source),
            Error::InvalidConfig { .. } => None,
        }
    }
}
