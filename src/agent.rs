//! [`Agent`] and its [`Builder`]: how pollwatch is switched on, and its lifecycle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::hooks::{self, UserHooks};
use crate::report::StallReport;
use crate::state::{runtime_label, Mode, Shared};
use crate::stats::stall_log::StallsView;
use crate::watchdog::Watchdog;
use crate::Error;

/// Configures an [`Agent`]. Start with [`Agent::builder`] or [`Builder::from_env`].
#[derive(Clone, Default)]
#[must_use = "a builder does nothing until build_runtime() or attach() is called"]
pub struct Builder {
    config: Config,
    user_hooks: UserHooks,
    env_error: Option<Arc<Error>>,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    };
}

impl Builder {
    /// Defaults overridden by the `POLLWATCH_*` environment variables (see
    /// [`ENV_VARS`](crate::config::ENV_VARS)). A bad value is returned as an error by the
    /// finishing call (`build_runtime`, `attach`), naming the variable and the value.
    pub fn from_env() -> Self {
        let mut b = Builder::default();
        if let Err(e) = b.config.apply_env() {
            b.env_error = Some(Arc::new(e));
        }
        b
    }

    /// Starts from a complete [`Config`].
    pub fn with_config(config: Config) -> Self {
        Builder {
            config,
            ..Builder::default()
        }
    }

    setter!(
        /// Turns the agent off: nothing is installed or started. Default on.
        enabled: bool
    );
    setter!(
        /// A poll running longer than this is a stall. Default 100 ms.
        stall_threshold: Duration
    );
    setter!(
        /// How often the watchdog looks. Must be smaller than the threshold. Default 10 ms.
        watchdog_tick: Duration
    );
    setter!(
        /// How often the scheduling-lag probe runs. Default 10 ms.
        probe_interval: Duration
    );
    setter!(
        /// Capture the stuck thread's stack (default on where supported).
        stacks: bool
    );
    setter!(
        /// Time one poll in this many per worker for the poll-time histogram (default 16;
        /// 1 times every poll, 0 none: no poll-time histogram). Stall detection needs no
        /// timing either way.
        poll_time_sample_every: u32
    );
    setter!(
        /// Hooked mode: per-spawn-location polls, poll time and task counts (default on).
        /// Off saves the hooks a hash per poll; with `poll_time_sample_every(0)` the hooks
        /// do stall detection alone (see [`Config::callsite_stats`]).
        callsite_stats: bool
    );
    setter!(
        /// Parse debug info at start so the first stack is ready at once (default off).
        warm_up_symbols: bool
    );
    setter!(
        /// Distinct spawn locations tracked before the rest count as `other` (default 200).
        max_callsites: usize
    );
    setter!(
        /// Stall reports kept in memory (default 256).
        max_reports: usize
    );
    setter!(
        /// One `tracing` warning per stall signature per this interval (default 10 s).
        log_interval: Duration
    );
    setter!(
        /// While a stall lasts, sample the stuck thread's stack this often for the
        /// flamegraph (default 10 ms; zero: only the report's own captures). Bounded by a
        /// pause budget of 1 % of the stall; see [`Config::stall_sample_interval`].
        stall_sample_interval: Duration
    );
    setter!(
        /// Attach mode: watch each worker's progress (default on). Off leaves the probe
        /// alone, which sees only stalls that keep every worker busy (see
        /// [`Config::worker_detection`]).
        worker_detection: bool
    );

    /// The real-time signal used to capture stacks (default `SIGRTMIN+3`).
    pub fn signal(mut self, signal: i32) -> Self {
        self.config.signal = Some(signal);
        self
    }

    /// Serves `/metrics`, `/stalls`, `/stalls/folded`, `/flamegraph.svg` and the stall page
    /// (`/` in a browser) at `addr` from the agent's own thread.
    pub fn http_addr(mut self, addr: SocketAddr) -> Self {
        self.config.http_addr = Some(addr);
        self
    }

    /// Serves tokio-console's protocol at `addr` (suggested: `127.0.0.1:6669`, where
    /// `tokio-console` looks by default) from the agent's own thread. Needs the cargo feature
    /// `console` and hooked mode (`--cfg tokio_unstable` and [`Builder::build_runtime`]):
    /// anything else is an error naming this setting. See the README's tokio-console section.
    pub fn console_addr(mut self, addr: SocketAddr) -> Self {
        self.config.console_addr = Some(addr);
        self
    }

    setter!(
        /// Tasks the console keeps, live and recently completed (default 10 000).
        console_max_tasks: usize
    );
    setter!(
        /// How long the console keeps showing a completed task (default 60 s).
        console_retention: Duration
    );

    /// Requires `Authorization: Bearer <token>` on the endpoint.
    pub fn http_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.config.http_bearer_token = Some(token.into());
        self
    }

    /// Pushes the metrics over OTLP/gRPC to the collector at `endpoint` (`http://host:port`,
    /// e.g. `http://127.0.0.1:4317`) every [`Builder::otlp_interval`], from the agent's own
    /// thread `pollwatch-otlp`: the same families and cumulative values as `/metrics`, under
    /// their OpenTelemetry names. Needs the `opentelemetry` feature; a malformed endpoint is
    /// an [`Error::InvalidConfig`] naming `otlp_endpoint`. An unreachable collector is
    /// counted in `pollwatch_otlp_exports_total{result="error"}` and logged, never an error
    /// to the app.
    pub fn otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.config.otlp_endpoint = Some(endpoint.into());
        self
    }

    setter!(
        /// How often the OTLP exporter pushes (default 15 s, see
        /// [`DEFAULT_OTLP_INTERVAL`](crate::config::DEFAULT_OTLP_INTERVAL)).
        otlp_interval: Duration
    );
    setter!(
        /// How long one OTLP push may take, connecting included, before it is dropped and
        /// counted as an error (default 10 s).
        otlp_timeout: Duration
    );

    /// The OpenTelemetry resource's `service.name` (default `OTEL_SERVICE_NAME` with
    /// [`Builder::from_env`], else `unknown_service:<executable>`).
    pub fn otlp_service_name(mut self, name: impl Into<String>) -> Self {
        self.config.otlp_service_name = Some(name.into());
        self
    }

    /// Adds one attribute to the OpenTelemetry resource (e.g.
    /// `deployment.environment.name`); a later value for the same key wins.
    pub fn otlp_resource_attribute(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.config
            .otlp_resource_attributes
            .push((key.into(), value.into()));
        self
    }

    /// The `runtime` label (default: the tokio runtime's name, else its id).
    pub fn runtime_name(mut self, name: impl Into<String>) -> Self {
        self.config.runtime_name = Some(name.into());
        self
    }

    /// Your own `on_thread_start` hook: tokio keeps one per runtime, pollwatch needs it too,
    /// so give yours here and both run.
    pub fn on_thread_start(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.user_hooks.thread_start = Some(Arc::new(f));
        self
    }

    /// Your own `on_thread_stop` hook (see [`Builder::on_thread_start`]).
    pub fn on_thread_stop(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.user_hooks.thread_stop = Some(Arc::new(f));
        self
    }

    /// Your own `on_thread_park` hook (see [`Builder::on_thread_start`]).
    pub fn on_thread_park(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.user_hooks.thread_park = Some(Arc::new(f));
        self
    }

    /// Your own `on_thread_unpark` hook (see [`Builder::on_thread_start`]).
    pub fn on_thread_unpark(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.user_hooks.thread_unpark = Some(Arc::new(f));
        self
    }

    /// The configuration this builder holds.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn checked_config(&self) -> Result<&Config, Error> {
        if let Some(e) = &self.env_error {
            return Err(match &**e {
                Error::InvalidConfig {
                    field,
                    value,
                    reason,
                } => Error::InvalidConfig {
                    field,
                    value: value.clone(),
                    reason: reason.clone(),
                },
                other => Error::invalid("environment", other, "unreadable"),
            });
        }
        if self.config.enabled {
            self.config.validate()?;
        }
        Ok(&self.config)
    }

    /// Builds `builder` into a runtime with pollwatch's hooks installed, and starts the agent.
    ///
    /// Under `--cfg tokio_unstable` this is hooked mode: every poll is watched. On stable
    /// tokio the runtime gets pollwatch's thread hooks and the agent runs in attach mode.
    pub fn build_runtime(
        self,
        builder: &mut tokio::runtime::Builder,
    ) -> Result<(tokio::runtime::Runtime, Agent), Error> {
        let config = self.checked_config()?.clone();
        if !config.enabled {
            self.user_hooks.install_plain(builder);
            let runtime = builder.build().map_err(Error::Runtime)?;
            return Ok((runtime, Agent::disabled()));
        }
        let shared = Arc::new(if cfg!(tokio_unstable) {
            Shared::new_hooked(config)
        } else {
            Shared::new_attach(config)
        });
        hooks::install(builder, &shared, self.user_hooks);
        let runtime = builder.build().map_err(Error::Runtime)?;
        if let Some(threads) = shared.threads() {
            crate::attach::runtime_built(threads, &shared.clock, runtime.handle());
        }
        let agent = Agent::start(shared, runtime.handle().clone())?;
        Ok((runtime, agent))
    }

    /// Attaches to a runtime that is already running, on stable tokio: attach mode.
    ///
    /// One line in `#[tokio::main]`:
    /// ```no_run
    /// # async fn f() -> Result<(), pollwatch::Error> {
    /// let _agent = pollwatch::Agent::builder().attach(&tokio::runtime::Handle::current())?;
    /// # Ok(()) }
    /// ```
    /// Works for `multi_thread` and `current_thread` runtimes and needs no `tokio_unstable`.
    /// Stalls are found by a probe task and by each worker's progress counters, the stuck
    /// worker's stack is captured, and the exporters work as in hooked mode; task ids and
    /// spawn locations are unknown (`null`). See the README's attach-mode section for
    /// exactly what this mode sees. Hooks given to this builder cannot be installed into a
    /// running runtime: that is an error.
    ///
    /// Before it returns, every worker of a `multi_thread` runtime registers its thread (a
    /// roll call of small tasks, each holding its worker until all have answered), so a
    /// stall that begins right after `attach()` is watched. `attach()` took 1.4–25 ms in
    /// the project's tests on a loaded 2-core machine; a worker busy in a long poll cannot answer,
    /// and the roll call gives up after 100 ms at most (that worker is watched once it
    /// polls pollwatch's probe). Call it from `main` or from a task of the runtime.
    pub fn attach(self, handle: &tokio::runtime::Handle) -> Result<Agent, Error> {
        let config = self.checked_config()?.clone();
        if let Some(hook) = self.user_hooks.first_set() {
            return Err(Error::invalid(
                hook,
                "set",
                "attach() cannot install hooks into a running runtime: install it on your tokio::runtime::Builder, or use build_runtime()",
            ));
        }
        if !config.enabled {
            return Ok(Agent::disabled());
        }
        let shared = Arc::new(Shared::new_attach(config));
        if let Some(threads) = shared.threads() {
            crate::attach::attached(threads, &shared.clock, handle);
        }
        Agent::start(shared, handle.clone())
    }

    /// Like [`Builder::attach`], but any error gives a disabled agent (and a `tracing`
    /// error) instead: for a one-line set-up that must never stop the service.
    pub fn attach_or_disabled(self, handle: &tokio::runtime::Handle) -> Agent {
        self.attach(handle).unwrap_or_else(|e| {
            tracing::error!(target: "pollwatch", "pollwatch disabled: {e}");
            Agent::disabled()
        })
    }

    /// Like [`Builder::build_runtime`], but a configuration or start-up error gives a
    /// runtime with a disabled agent (and a `tracing` error) instead of no runtime.
    pub fn build_runtime_or_disabled(
        self,
        builder: &mut tokio::runtime::Builder,
    ) -> Result<(tokio::runtime::Runtime, Agent), Error> {
        let hooks = self.user_hooks.clone();
        match self.build_runtime(builder) {
            Ok(pair) => Ok(pair),
            Err(Error::Runtime(e)) => Err(Error::Runtime(e)),
            Err(e) => {
                tracing::error!(target: "pollwatch", "pollwatch disabled: {e}");
                hooks.install_plain(builder);
                let runtime = builder.build().map_err(Error::Runtime)?;
                Ok((runtime, Agent::disabled()))
            }
        }
    }
}

// Your own task hooks: tokio has them only under `--cfg tokio_unstable`.
cfg_hooked! {
    impl Builder {
        /// Your own `on_before_task_poll` hook (see [`Builder::on_thread_start`]).
        pub fn on_before_task_poll(
            mut self,
            f: impl Fn(&tokio::runtime::TaskMeta<'_>) + Send + Sync + 'static,
        ) -> Self {
            self.user_hooks.before_poll = Some(Arc::new(f));
            self
        }

        /// Your own `on_after_task_poll` hook (see [`Builder::on_thread_start`]).
        pub fn on_after_task_poll(
            mut self,
            f: impl Fn(&tokio::runtime::TaskMeta<'_>) + Send + Sync + 'static,
        ) -> Self {
            self.user_hooks.after_poll = Some(Arc::new(f));
            self
        }

        /// Your own `on_task_spawn` hook (see [`Builder::on_thread_start`]).
        pub fn on_task_spawn(
            mut self,
            f: impl Fn(&tokio::runtime::TaskMeta<'_>) + Send + Sync + 'static,
        ) -> Self {
            self.user_hooks.task_spawn = Some(Arc::new(f));
            self
        }

        /// Your own `on_task_terminate` hook (see [`Builder::on_thread_start`]).
        pub fn on_task_terminate(
            mut self,
            f: impl Fn(&tokio::runtime::TaskMeta<'_>) + Send + Sync + 'static,
        ) -> Self {
            self.user_hooks.task_terminate = Some(Arc::new(f));
            self
        }
    }
}

/// A running pollwatch agent for one tokio runtime.
///
/// Dropping it (or calling [`Agent::shutdown`]) stops its threads within about one watchdog
/// tick. Dropping the runtime first is fine.
pub struct Agent {
    shared: Option<Arc<Shared>>,
    watchdog: Option<Watchdog>,
    /// For the exporters; kept here, not in `Shared`, which the runtime's hooks own.
    handle: Option<tokio::runtime::Handle>,
    #[cfg(feature = "http")]
    server: Option<crate::export::server::Server>,
    #[cfg(feature = "opentelemetry")]
    otlp: Option<crate::export::otlp::Pusher>,
    #[cfg(all(feature = "console", tokio_unstable))]
    console: Option<crate::export::console::Console>,
    /// What the callbacks registered on an app's OpenTelemetry meters read through a `Weak`:
    /// dropped with the agent, which ends them.
    #[cfg(feature = "opentelemetry-sdk")]
    otel_sdk: std::sync::OnceLock<Arc<crate::export::otel_sdk::Link>>,
}

impl Agent {
    /// Starts configuring an agent with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn disabled() -> Agent {
        Agent {
            shared: None,
            watchdog: None,
            handle: None,
            #[cfg(feature = "http")]
            server: None,
            #[cfg(feature = "opentelemetry")]
            otlp: None,
            #[cfg(all(feature = "console", tokio_unstable))]
            console: None,
            #[cfg(feature = "opentelemetry-sdk")]
            otel_sdk: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn start(
        shared: Arc<Shared>,
        handle: tokio::runtime::Handle,
    ) -> Result<Agent, Error> {
        let label = shared
            .config
            .runtime_name
            .clone()
            .unwrap_or_else(|| runtime_label(&handle));
        let _ = shared.runtime_label.set(label);
        // The start of every cumulative OTLP series.
        #[cfg(feature = "opentelemetry")]
        let started_at = std::time::SystemTime::now();
        check_console(&shared)?;
        // Bound first: a port in use fails start-up before any thread runs.
        #[cfg(feature = "http")]
        let server = match shared.config.http_addr {
            Some(addr) => Some(crate::export::server::Server::start(
                addr,
                shared.config.http_bearer_token.clone(),
                crate::sampler::Source {
                    shared: Some(shared.clone()),
                    handle: Some(handle.clone()),
                },
            )?),
            None => None,
        };
        #[cfg(not(feature = "http"))]
        if let Some(addr) = shared.config.http_addr {
            return Err(Error::invalid(
                "http_addr",
                addr,
                "pollwatch was built without its `http` feature: enable it, or serve Agent::encode_metrics() from your own server",
            ));
        }
        #[cfg(not(feature = "opentelemetry"))]
        if let Some(endpoint) = &shared.config.otlp_endpoint {
            return Err(Error::invalid(
                "otlp_endpoint",
                endpoint,
                "pollwatch was built without its `opentelemetry` feature: enable it to push over OTLP",
            ));
        }
        #[cfg(all(feature = "console", tokio_unstable))]
        let console = match shared.config.console_addr {
            Some(addr) => Some(crate::export::console::Console::start(
                addr,
                &shared.config,
                shared.clock.clone(),
                shared
                    .hooked()
                    .and_then(|h| Some((h.slots.clone(), h.console.clone()?))),
            )?),
            None => None,
        };
        let watchdog = Watchdog::start(shared.clone(), handle.clone())?;
        // Last: if it cannot start, the threads above stop as this function returns.
        #[cfg(feature = "opentelemetry")]
        let otlp = match &shared.config.otlp_endpoint {
            Some(endpoint) => Some(crate::export::otlp::Pusher::start(
                endpoint,
                crate::sampler::Source {
                    shared: Some(shared.clone()),
                    handle: Some(handle.clone()),
                },
                started_at,
            )?),
            None => None,
        };
        Ok(Agent {
            shared: Some(shared),
            watchdog: Some(watchdog),
            handle: Some(handle),
            #[cfg(feature = "http")]
            server,
            #[cfg(feature = "opentelemetry")]
            otlp,
            #[cfg(all(feature = "console", tokio_unstable))]
            console,
            #[cfg(feature = "opentelemetry-sdk")]
            otel_sdk: std::sync::OnceLock::new(),
        })
    }

    /// The address the tokio-console server listens on (with the real port when
    /// `console_addr` asked for port 0), or `None` when it is not serving.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        #[cfg(all(feature = "console", tokio_unstable))]
        {
            self.console
                .as_ref()
                .map(crate::export::console::Console::addr)
        }
        #[cfg(not(all(feature = "console", tokio_unstable)))]
        {
            None
        }
    }

    /// The address the HTTP endpoint listens on (with the real port when `http_addr` asked
    /// for port 0), or `None` when it is not serving.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "http")]
        {
            self.server
                .as_ref()
                .map(crate::export::server::Server::addr)
        }
        #[cfg(not(feature = "http"))]
        {
            None
        }
    }

    /// Which detector runs.
    pub fn mode(&self) -> Mode {
        self.shared
            .as_ref()
            .map(|s| s.mode())
            .unwrap_or(Mode::Disabled)
    }

    /// The `runtime` label of this agent's metrics and reports.
    pub fn runtime_label(&self) -> Option<&str> {
        self.shared.as_ref().map(|s| s.runtime_label())
    }

    /// Recent stall reports, oldest first (a bounded ring; see [`Agent::stall_summary`]).
    pub fn stalls(&self) -> Vec<StallReport> {
        self.stall_summary().stalls
    }

    /// The `/stalls` view: the exact total, the number that fell out of the ring, and the
    /// recent reports.
    pub fn stall_summary(&self) -> StallsView {
        match &self.shared {
            Some(s) => s.stalls.view(),
            None => StallsView {
                stalls_total: 0,
                dropped: 0,
                stalls: Vec::new(),
            },
        }
    }

    /// Stops the agent's threads and waits for them. Idempotent. With an OTLP endpoint, one
    /// last push is made first, bounded by 2 s (or `otlp_timeout` if smaller).
    pub fn shutdown(&mut self) {
        #[cfg(feature = "opentelemetry")]
        if let Some(mut p) = self.otlp.take() {
            p.stop();
        }
        #[cfg(feature = "http")]
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
        #[cfg(all(feature = "console", tokio_unstable))]
        if let Some(mut c) = self.console.take() {
            c.stop();
        }
        if let Some(mut w) = self.watchdog.take() {
            w.stop();
        }
    }

    pub(crate) fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }

    pub(crate) fn runtime_handle(&self) -> Option<&tokio::runtime::Handle> {
        self.handle.as_ref()
    }

    #[cfg(feature = "opentelemetry-sdk")]
    pub(crate) fn otel_sdk_link(&self) -> &std::sync::OnceLock<Arc<crate::export::otel_sdk::Link>> {
        &self.otel_sdk
    }
}

/// `console_addr` works only where pollwatch sees tasks: its `console` feature, hooked mode.
fn check_console(shared: &Shared) -> Result<(), Error> {
    let Some(addr) = shared.config.console_addr else {
        return Ok(());
    };
    if !cfg!(feature = "console") {
        return Err(Error::invalid(
            "console_addr",
            addr,
            "pollwatch was built without its `console` feature: enable it (features = [\"console\"]), or unset console_addr / POLLWATCH_CONSOLE_ADDR",
        ));
    }
    if shared.mode() != Mode::Hooked {
        return Err(Error::invalid(
            "console_addr",
            addr,
            "tokio-console shows tasks, and pollwatch sees tasks only through tokio's task hooks, which attach mode does not have: build with RUSTFLAGS=\"--cfg tokio_unstable\" and create the runtime with build_runtime() (hooked mode), or unset console_addr / POLLWATCH_CONSOLE_ADDR",
        ));
    }
    Ok(())
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("mode", &self.mode())
            .field("runtime", &self.runtime_label())
            .finish()
    }
}
