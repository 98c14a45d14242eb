//! The state one agent shares between the hooks, the watchdog and the exporters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use crate::capture::CaptureStatus;
use crate::config::Config;
use crate::slots::SlotTable;
use crate::stats::callsites::CallsiteTable;
use crate::stats::flame::FlameTable;
use crate::stats::histogram::HistogramShard;
use crate::stats::stall_log::StallLog;

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

/// Most poll-hook threads an agent watches at once (workers, plus the extra threads
/// `block_in_place` starts); threads beyond it are counted, not watched.
pub(crate) const MAX_THREADS: usize = 64;

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

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) mode: Mode,
    pub(crate) clock: quanta::Clock,
    pub(crate) slots: &'static SlotTable,
    pub(crate) callsites: CallsiteTable,
    pub(crate) stalls: StallLog,
    /// Blocked time by stack, for the flamegraph.
    pub(crate) flame: FlameTable,
    /// The `runtime` label, set once the runtime exists.
    pub(crate) runtime_label: OnceLock<String>,
    pub(crate) counters: SelfCounters,
    /// Delay between waking the probe task and its poll.
    pub(crate) probe_delay: HistogramShard,
    /// Attach mode: the runtime's threads, as registered by themselves.
    pub(crate) threads: crate::attach::Threads,
    /// The tokio-console feed, when `console_addr` is set in hooked mode; `None` keeps the
    /// hooks to one untaken branch.
    #[cfg(all(feature = "console", tokio_unstable))]
    pub(crate) console: Option<std::sync::Arc<crate::console::ConsoleState>>,
}

impl Shared {
    pub(crate) fn new(config: Config, mode: Mode) -> Self {
        let callsites = CallsiteTable::new(config.max_callsites);
        let slots = SlotTable::acquire(MAX_THREADS, callsites.slots());
        #[cfg(all(feature = "console", tokio_unstable))]
        let console = (config.console_addr.is_some() && mode == Mode::Hooked)
            .then(|| std::sync::Arc::new(crate::console::ConsoleState::new(MAX_THREADS)));
        Shared {
            stalls: StallLog::new(config.max_reports, config.max_callsites + 1),
            flame: FlameTable::new(),
            config,
            mode,
            clock: quanta::Clock::new(),
            slots,
            callsites,
            runtime_label: OnceLock::new(),
            counters: SelfCounters::default(),
            probe_delay: HistogramShard::new(),
            threads: crate::attach::Threads::default(),
            #[cfg(all(feature = "console", tokio_unstable))]
            console,
        }
    }

    pub(crate) fn runtime_label(&self) -> &str {
        self.runtime_label
            .get()
            .map(String::as_str)
            .unwrap_or("unknown")
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Every hook closure held an `Arc<Shared>`: none can write to the slots any more.
        self.slots.release();
    }
}

/// The `runtime` label: the runtime's name, else its id.
pub(crate) fn runtime_label(handle: &tokio::runtime::Handle) -> String {
    match handle.name() {
        Some(name) => name.to_string(),
        None => handle.id().to_string(),
    }
}
