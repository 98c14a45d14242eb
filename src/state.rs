//! The state one agent shares between the hooks, the watchdog and the exporters: what both
//! detectors use in [`Shared`], what only one uses in its [`ModeState`] variant.
//!
//! The mode modules (`slots`, `attach`, `console`) do not import this one: they get the
//! piece they need (a slot table, a thread registry, the clock), so the module graph stays
//! a tree below `state`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use crate::attach::Threads;
use crate::capture::CaptureStatus;
use crate::config::Config;
use crate::slots::{SlotLease, SlotTable};
use crate::stats::callsites::CallsiteTable;
use crate::stats::flame::FlameTable;
use crate::stats::histogram::HistogramShard;
use crate::stats::stall_log::StallLog;
use crate::thread_info::MAX_THREADS;

/// Which detector runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Built through pollwatch under `--cfg tokio_unstable`: exact per-poll detection.
    Hooked,
    /// Attached to a running runtime: probe and per-worker detection.
    Attach,
    /// Turned off: nothing installed, nothing running.
    Disabled,
}

impl Mode {
    /// The `mode` label of `pollwatch_info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Hooked => "hooked",
            Mode::Attach => "attach",
            Mode::Disabled => "disabled",
        }
    }
}

/// Counters the agent keeps about itself.
#[derive(Default)]
pub(crate) struct SelfCounters {
    pub(crate) watchdog_late: AtomicU64,
    captures: [AtomicU64; 5],
    pub(crate) log_suppressed: AtomicU64,
    /// OTLP pushes that the collector accepted.
    pub(crate) otlp_exports_ok: AtomicU64,
    /// OTLP pushes that failed (unreachable, timed out, rejected).
    pub(crate) otlp_exports_error: AtomicU64,
}

impl SelfCounters {
    pub(crate) fn capture_done(&self, status: CaptureStatus) {
        self.captures[status as usize].fetch_add(1, Relaxed);
    }

    /// `(result label, count)` for every capture result.
    pub(crate) fn captures(&self) -> [(CaptureStatus, u64); 5] {
        [
            CaptureStatus::Ok,
            CaptureStatus::Timeout,
            CaptureStatus::Unsupported,
            CaptureStatus::Disabled,
            CaptureStatus::Failed,
        ]
        .map(|s| (s, self.captures[s as usize].load(Relaxed)))
    }
}

/// What one agent shares between the hooks, the watchdog and the exporters: what both
/// detectors use, plus the state of the one that runs ([`ModeState`]).
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) clock: quanta::Clock,
    pub(crate) stalls: StallLog,
    /// Blocked time by stack, for the flamegraph.
    pub(crate) flame: FlameTable,
    /// The `runtime` label, set once the runtime exists.
    pub(crate) runtime_label: OnceLock<String>,
    pub(crate) counters: SelfCounters,
    /// Delay between waking the probe task and its poll (the probe runs in both modes).
    pub(crate) probe_delay: HistogramShard,
    pub(crate) mode: ModeState,
}

/// The state only one detector uses. A disabled agent has no `Shared` at all, so there is
/// no variant for it.
pub(crate) enum ModeState {
    /// Written by the task hooks, read by the watchdog, the sampler and the console.
    Hooked(Arc<HookedState>),
    /// The runtime's threads, as registered by themselves (attach mode has no poll slots:
    /// nothing writes them without task hooks).
    Attach(Arc<Threads>),
}

/// Hooked mode's state. Its own `Arc` so the task hooks hold it (and copy the slot table's
/// pointer) without going through [`Shared`] on every poll.
pub(crate) struct HookedState {
    /// The per-worker poll slots; the table goes back to the pool with the last holder.
    pub(crate) slots: Arc<SlotLease>,
    pub(crate) callsites: CallsiteTable,
    /// The tokio-console feed, when `console_addr` is set; `None` keeps the hooks to one
    /// untaken branch.
    #[cfg(all(feature = "console", tokio_unstable))]
    pub(crate) console: Option<Arc<crate::export::console::ConsoleState>>,
}

impl HookedState {
    fn new(config: &Config) -> Self {
        let callsites = CallsiteTable::new(config.max_callsites);
        HookedState {
            slots: Arc::new(SlotTable::acquire(MAX_THREADS, callsites.slots())),
            callsites,
            #[cfg(all(feature = "console", tokio_unstable))]
            console: config
                .console_addr
                .is_some()
                .then(|| Arc::new(crate::export::console::ConsoleState::new(MAX_THREADS))),
        }
    }
}

impl Shared {
    /// The state of a hooked-mode agent.
    pub(crate) fn new_hooked(config: Config) -> Self {
        let hooked = ModeState::Hooked(Arc::new(HookedState::new(&config)));
        Shared::with(config, hooked)
    }

    /// The state of an attach-mode agent. (A disabled agent has none.)
    pub(crate) fn new_attach(config: Config) -> Self {
        Shared::with(config, ModeState::Attach(Arc::default()))
    }

    /// Default settings in `mode`, for unit tests that run over both modes.
    #[cfg(test)]
    pub(crate) fn for_test(mode: Mode) -> Self {
        match mode {
            Mode::Hooked => Shared::new_hooked(Config::default()),
            Mode::Attach => Shared::new_attach(Config::default()),
            Mode::Disabled => panic!("a disabled agent has no shared state"),
        }
    }

    fn with(config: Config, mode: ModeState) -> Self {
        Shared {
            stalls: StallLog::new(config.max_reports, config.max_callsites + 1),
            flame: FlameTable::new(),
            config,
            clock: quanta::Clock::new(),
            runtime_label: OnceLock::new(),
            counters: SelfCounters::default(),
            probe_delay: HistogramShard::new(),
            mode,
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        match self.mode {
            ModeState::Hooked(_) => Mode::Hooked,
            ModeState::Attach(_) => Mode::Attach,
        }
    }

    /// Hooked mode's state; `None` in attach mode.
    pub(crate) fn hooked(&self) -> Option<&Arc<HookedState>> {
        match &self.mode {
            ModeState::Hooked(h) => Some(h),
            ModeState::Attach(_) => None,
        }
    }

    /// Attach mode's thread registry; `None` in hooked mode.
    pub(crate) fn threads(&self) -> Option<&Arc<Threads>> {
        match &self.mode {
            ModeState::Attach(t) => Some(t),
            ModeState::Hooked(_) => None,
        }
    }

    pub(crate) fn runtime_label(&self) -> &str {
        self.runtime_label
            .get()
            .map(String::as_str)
            .unwrap_or("unknown")
    }
}

/// The `runtime` label: the runtime's name, else its id.
pub(crate) fn runtime_label(handle: &tokio::runtime::Handle) -> String {
    match handle.name() {
        Some(name) => name.to_string(),
        None => handle.id().to_string(),
    }
}
