//! Every metric pollwatch exports, declared once (DESIGN §5).
//!
//! The Prometheus text writer, the `prometheus` crate collector, the dashboards and their
//! tests all read [`METRICS`]; nothing that exports a metric spells its name anywhere else.
//! A test fails if a name in the table is not exported exactly once (with `# HELP` and
//! `# TYPE`) in the build and mode where it applies, or if anything not in the table is.
//!
//! The Prometheus name is what `opentelemetry-prometheus` makes of the OpenTelemetry name
//! (dots become `_`, unit `s` adds `_seconds`, counters add `_total`), so the same metric
//! has the same name whichever way it reaches Prometheus; a unit test checks this. Three
//! gauges are the exception: OpenTelemetry names a count of things `….count`
//! (`tokio.worker.count`), but Prometheus reserves the `_count` suffix for histograms and
//! summaries (`promtool check metrics` rejects `tokio_worker_count`), so their Prometheus
//! names are plural nouns instead: `tokio_workers`, `tokio_tasks_alive`,
//! `tokio_blocking_threads` (the `go_goroutines` / `go_threads` style).
//!
//! Not exported: `tokio_task_schedule_duration_seconds` (DESIGN §5, "where tokio provides
//! it"). tokio records schedule latency only with `--cfg tokio_unstable` *and* its own
//! `schedule-latency` Cargo feature *and* `enable_metrics_schedule_latency_histogram()` on
//! the runtime builder, which adds clock reads on every schedule. pollwatch cannot see from
//! its own code whether the application turned that feature on, and turning it on for
//! everyone would put that cost on the hot path; the probe histogram
//! (`tokio_probe_schedule_duration_seconds`) measures the same thing in both modes.

use crate::state::Mode;

/// A Prometheus metric type (and the OpenTelemetry instrument it corresponds to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// Cumulative, only goes up; read at collection time, never reset (OTel: Counter).
    Counter,
    /// A value at collection time (OTel: UpDownCounter or Gauge).
    Gauge,
    /// Fixed buckets from 10 µs to 10 s, in seconds (OTel: Histogram).
    Histogram,
}

impl MetricType {
    /// The word used on a Prometheus `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// Where a metric can be known, so a build or mode that cannot know it leaves it out
/// instead of faking it (DESIGN §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Every agent, even a disabled one: only `pollwatch_info`, which says it is disabled.
    Always,
    /// Every running agent, either build, either mode.
    Running,
    /// Read from tokio's `RuntimeMetrics` methods that exist only under
    /// `--cfg tokio_unstable` (either mode in that build).
    TokioUnstable,
    /// Fed by pollwatch's poll and spawn hooks: hooked mode only.
    Hooked,
    /// About pollwatch's tokio-console server: its `console` feature, hooked mode (series
    /// appear once `console_addr` is set).
    Console,
}

impl Availability {
    /// Whether a metric with this availability is exported by an agent in `mode`, in this
    /// build of the crate.
    pub fn applies(self, mode: Mode) -> bool {
        match (self, mode) {
            (Availability::Always, _) => true,
            (_, Mode::Disabled) => false,
            (Availability::Running, _) => true,
            (Availability::TokioUnstable, _) => cfg!(tokio_unstable),
            (Availability::Hooked, m) => m == Mode::Hooked,
            (Availability::Console, m) => {
                cfg!(all(feature = "console", tokio_unstable)) && m == Mode::Hooked
            }
        }
    }
}

/// Which metric a [`MetricDef`] is: one variant per definition, so code that reads a
/// metric (the sampler) matches on it exhaustively and a new metric without a reader does
/// not compile. Crate-private: it names nothing users need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricId {
    /// [`WORKERS`].
    Workers,
    /// [`TASKS_ALIVE`].
    TasksAlive,
    /// [`GLOBAL_QUEUE_DEPTH`].
    GlobalQueueDepth,
    /// [`WORKER_BUSY_TIME`].
    WorkerBusyTime,
    /// [`WORKER_PARKS`].
    WorkerParks,
    /// [`TASK_SPAWNED`].
    TaskSpawned,
    /// [`WORKER_POLLS`].
    WorkerPolls,
    /// [`WORKER_LOCAL_QUEUE_DEPTH`].
    WorkerLocalQueueDepth,
    /// [`BLOCKING_THREADS`].
    BlockingThreads,
    /// [`BLOCKING_QUEUE_DEPTH`].
    BlockingQueueDepth,
    /// [`TASK_BUDGET_FORCED_YIELDS`].
    TaskBudgetForcedYields,
    /// [`TASK_POLL_DURATION`].
    TaskPollDuration,
    /// [`PROBE_SCHEDULE_DURATION`].
    ProbeScheduleDuration,
    /// [`STALLS`].
    Stalls,
    /// [`STALL_DURATION`].
    StallDuration,
    /// [`WORKER_STALLED`].
    WorkerStalled,
    /// [`CALLSITE_POLLS`].
    CallsitePolls,
    /// [`CALLSITE_POLL_TIME`].
    CallsitePollTime,
    /// [`CALLSITE_TASKS_ALIVE`].
    CallsiteTasksAlive,
    /// [`CALLSITE_TASKS_SPAWNED`].
    CallsiteTasksSpawned,
    /// [`INFO`].
    Info,
    /// [`WATCHDOG_LATE`].
    WatchdogLate,
    /// [`STACK_CAPTURES`].
    StackCaptures,
    /// [`STALL_REPORTS_DROPPED`].
    StallReportsDropped,
    /// [`OTLP_EXPORTS`].
    OtlpExports,
    /// [`CONSOLE_EVENTS_DROPPED`].
    ConsoleEventsDropped,
    /// [`CONSOLE_TASKS`].
    ConsoleTasks,
    /// [`CONSOLE_SPAWNS`].
    ConsoleSpawns,
    /// [`CONSOLE_TASKS_EVICTED`].
    ConsoleTasksEvicted,
}

/// One exported metric: everything an exporter needs to name, type and describe it.
#[derive(Debug)]
pub struct MetricDef {
    /// Which one it is, for exhaustive matching inside pollwatch.
    pub(crate) id: MetricId,
    /// The Prometheus family name. Counters include `_total`; histograms are the base of
    /// `_bucket`, `_sum` and `_count`.
    pub prometheus: &'static str,
    /// The OpenTelemetry instrument name (dotted, no unit, no `_total`).
    pub otel: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricType,
    /// UCUM unit for OpenTelemetry: `s`, or a `{annotation}` for counts, or `""`.
    pub unit: &'static str,
    /// Labels beyond `runtime` (which every metric carries), in the order exported.
    pub labels: &'static [&'static str],
    /// The `# HELP` text: what it means and why one would look at it.
    pub help: &'static str,
    /// Which builds and modes can know it.
    pub availability: Availability,
}

impl MetricDef {
    /// Whether an agent in `mode` exports this metric in this build.
    pub fn applies(&self, mode: Mode) -> bool {
        self.availability.applies(mode)
    }
}

/// The label every metric carries: the runtime's name, else its id.
pub const RUNTIME_LABEL: &str = "runtime";

/// The OpenTelemetry attribute name of a Prometheus label (`code_file_path` is
/// `code.file.path`, the stable OTel code attributes); other labels keep their name.
pub fn otel_label(prometheus_label: &str) -> &str {
    match prometheus_label {
        "code_file_path" => "code.file.path",
        "code_line_number" => "code.line.number",
        "runtime" => "tokio.runtime",
        "worker" => "tokio.worker.index",
        other => other,
    }
}

/// OpenTelemetry attributes whose values are integers in the OpenTelemetry conventions
/// (every other attribute is a string).
#[cfg(any(feature = "opentelemetry", feature = "opentelemetry-sdk"))]
const OTEL_INT_ATTRIBUTES: [&str; 2] = ["code.line.number", "tokio.worker.index"];

/// The value of one OpenTelemetry attribute.
#[cfg(any(feature = "opentelemetry", feature = "opentelemetry-sdk"))]
pub(crate) enum OtelValue<'a> {
    Int(i64),
    Str(&'a str),
}

/// A series' labels (`labels` in the order of [`MetricDef::labels`], `values` beside them)
/// as OpenTelemetry attributes: their OpenTelemetry names, integers where the conventions
/// say so, empty values left out. The `tokio.runtime` attribute is the caller's. The OTLP
/// push and the SDK path both take their attributes from here, so they send the same ones.
#[cfg(any(feature = "opentelemetry", feature = "opentelemetry-sdk"))]
pub(crate) fn otel_attributes<'a, V: AsRef<str>>(
    labels: &'static [&'static str],
    values: &'a [V],
) -> impl Iterator<Item = (&'static str, OtelValue<'a>)> + 'a {
    labels
        .iter()
        .zip(values)
        .filter(|(_, v)| !v.as_ref().is_empty())
        .map(|(label, v)| {
            let key = otel_label(label);
            let v = v.as_ref();
            let int = OTEL_INT_ATTRIBUTES
                .contains(&key)
                .then(|| v.parse::<i64>().ok())
                .flatten();
            (key, int.map_or(OtelValue::Str(v), OtelValue::Int))
        })
}

const CALLSITE: &[&str] = &["code_file_path", "code_line_number"];

/// `tokio_workers`.
pub static WORKERS: MetricDef = MetricDef {
    id: MetricId::Workers,
    prometheus: "tokio_workers",
    otel: "tokio.worker.count",
    kind: MetricType::Gauge,
    unit: "{worker}",
    labels: &[],
    help:
        "Worker threads of the runtime: the denominator of utilization and of tokio_worker_stalled.",
    availability: Availability::Running,
};

/// `tokio_tasks_alive`.
pub static TASKS_ALIVE: MetricDef = MetricDef {
    id: MetricId::TasksAlive,
    prometheus: "tokio_tasks_alive",
    otel: "tokio.task.alive.count",
    kind: MetricType::Gauge,
    unit: "{task}",
    labels: &[],
    help: "Tasks spawned and not yet finished; steady growth is a task leak.",
    availability: Availability::Running,
};

/// `tokio_global_queue_depth`.
pub static GLOBAL_QUEUE_DEPTH: MetricDef = MetricDef {
    id: MetricId::GlobalQueueDepth,
    prometheus: "tokio_global_queue_depth",
    otel: "tokio.global_queue.depth",
    kind: MetricType::Gauge,
    unit: "{task}",
    labels: &[],
    help: "Ready tasks waiting in the runtime's global queue; sustained > 0 means the workers cannot keep up.",
    availability: Availability::Running,
};

/// `tokio_worker_busy_time_seconds_total`.
pub static WORKER_BUSY_TIME: MetricDef = MetricDef {
    id: MetricId::WorkerBusyTime,
    prometheus: "tokio_worker_busy_time_seconds_total",
    otel: "tokio.worker.busy.time",
    kind: MetricType::Counter,
    unit: "s",
    labels: &["worker"],
    help: "Time each worker spent running tasks; its rate is the worker's utilization (tokio publishes it when the worker parks, so it lags a worker stuck in one poll).",
    availability: Availability::Running,
};

/// `tokio_worker_parks_total`.
pub static WORKER_PARKS: MetricDef = MetricDef {
    id: MetricId::WorkerParks,
    prometheus: "tokio_worker_parks_total",
    otel: "tokio.worker.parks",
    kind: MetricType::Counter,
    unit: "{park}",
    labels: &["worker"],
    help: "Times each worker went to sleep for lack of work.",
    availability: Availability::Running,
};

/// `tokio_task_spawned_total`.
pub static TASK_SPAWNED: MetricDef = MetricDef {
    id: MetricId::TaskSpawned,
    prometheus: "tokio_task_spawned_total",
    otel: "tokio.task.spawned",
    kind: MetricType::Counter,
    unit: "{task}",
    labels: &[],
    help: "Tasks spawned since the runtime started.",
    availability: Availability::TokioUnstable,
};

/// `tokio_worker_polls_total`.
pub static WORKER_POLLS: MetricDef = MetricDef {
    id: MetricId::WorkerPolls,
    prometheus: "tokio_worker_polls_total",
    otel: "tokio.worker.polls",
    kind: MetricType::Counter,
    unit: "{poll}",
    labels: &["worker"],
    help: "Task polls per worker.",
    availability: Availability::TokioUnstable,
};

/// `tokio_worker_local_queue_depth`.
pub static WORKER_LOCAL_QUEUE_DEPTH: MetricDef = MetricDef {
    id: MetricId::WorkerLocalQueueDepth,
    prometheus: "tokio_worker_local_queue_depth",
    otel: "tokio.worker.local_queue.depth",
    kind: MetricType::Gauge,
    unit: "{task}",
    labels: &["worker"],
    help: "Ready tasks in each worker's local queue; tasks queued behind a stuck worker wait here.",
    availability: Availability::TokioUnstable,
};

/// `tokio_blocking_threads`.
pub static BLOCKING_THREADS: MetricDef = MetricDef {
    id: MetricId::BlockingThreads,
    prometheus: "tokio_blocking_threads",
    otel: "tokio.blocking.thread.count",
    kind: MetricType::Gauge,
    unit: "{thread}",
    labels: &["state"],
    help: "Threads of the blocking pool (spawn_blocking), by state idle or active; their sum is the pool size.",
    availability: Availability::TokioUnstable,
};

/// `tokio_blocking_queue_depth`.
pub static BLOCKING_QUEUE_DEPTH: MetricDef = MetricDef {
    id: MetricId::BlockingQueueDepth,
    prometheus: "tokio_blocking_queue_depth",
    otel: "tokio.blocking_queue.depth",
    kind: MetricType::Gauge,
    unit: "{task}",
    labels: &[],
    help: "spawn_blocking jobs waiting for a blocking-pool thread.",
    availability: Availability::TokioUnstable,
};

/// `tokio_task_budget_forced_yields_total`.
pub static TASK_BUDGET_FORCED_YIELDS: MetricDef = MetricDef {
    id: MetricId::TaskBudgetForcedYields,
    prometheus: "tokio_task_budget_forced_yields_total",
    otel: "tokio.task.budget_forced_yields",
    kind: MetricType::Counter,
    unit: "{yield}",
    labels: &[],
    help: "Times tokio made a task yield because it used up its cooperative budget: tasks that would otherwise hog a worker.",
    availability: Availability::TokioUnstable,
};

/// `tokio_task_poll_duration_seconds`.
pub static TASK_POLL_DURATION: MetricDef = MetricDef {
    id: MetricId::TaskPollDuration,
    prometheus: "tokio_task_poll_duration_seconds",
    otel: "tokio.task.poll.duration",
    kind: MetricType::Histogram,
    unit: "s",
    labels: &[],
    help: "How long each task poll ran, measured by pollwatch's poll hooks; polls in the upper buckets block their worker.",
    availability: Availability::Hooked,
};

/// `tokio_probe_schedule_duration_seconds`.
pub static PROBE_SCHEDULE_DURATION: MetricDef = MetricDef {
    id: MetricId::ProbeScheduleDuration,
    prometheus: "tokio_probe_schedule_duration_seconds",
    otel: "tokio.probe.schedule.duration",
    kind: MetricType::Histogram,
    unit: "s",
    labels: &[],
    help: "Delay between waking pollwatch's probe task and its poll: how long any ready task waits for a worker right now.",
    availability: Availability::Running,
};

/// `tokio_stalls_total`.
pub static STALLS: MetricDef = MetricDef {
    id: MetricId::Stalls,
    prometheus: "tokio_stalls_total",
    otel: "tokio.stalls",
    kind: MetricType::Counter,
    unit: "{stall}",
    labels: &["kind", "code_file_path", "code_line_number"],
    help: "Stall episodes (one poll, or one worker, without progress past the threshold) by kind and spawn location; details at /stalls.",
    availability: Availability::Running,
};

/// `tokio_stall_duration_seconds`.
pub static STALL_DURATION: MetricDef = MetricDef {
    id: MetricId::StallDuration,
    prometheus: "tokio_stall_duration_seconds",
    otel: "tokio.stall.duration",
    kind: MetricType::Histogram,
    unit: "s",
    labels: &[],
    help: "Total duration of stall episodes, recorded when each ends.",
    availability: Availability::Running,
};

/// `tokio_worker_stalled`.
pub static WORKER_STALLED: MetricDef = MetricDef {
    id: MetricId::WorkerStalled,
    prometheus: "tokio_worker_stalled",
    otel: "tokio.worker.stalled",
    kind: MetricType::Gauge,
    unit: "{worker}",
    labels: &[],
    help: "Workers stuck in a stall right now; equal to tokio_workers means the runtime is not running anything.",
    availability: Availability::Running,
};

/// `tokio_callsite_polls_total`.
pub static CALLSITE_POLLS: MetricDef = MetricDef {
    id: MetricId::CallsitePolls,
    prometheus: "tokio_callsite_polls_total",
    otel: "tokio.callsite.polls",
    kind: MetricType::Counter,
    unit: "{poll}",
    labels: CALLSITE,
    help: "Polls of tasks spawned at this location (capped set of locations; the rest are code_file_path=\"other\").",
    availability: Availability::Hooked,
};

/// `tokio_callsite_poll_time_seconds_total`.
pub static CALLSITE_POLL_TIME: MetricDef = MetricDef {
    id: MetricId::CallsitePollTime,
    prometheus: "tokio_callsite_poll_time_seconds_total",
    otel: "tokio.callsite.poll_time",
    kind: MetricType::Counter,
    unit: "s",
    labels: CALLSITE,
    help: "Time spent polling tasks spawned at this location: which code uses the workers.",
    availability: Availability::Hooked,
};

/// `tokio_callsite_tasks_alive`.
pub static CALLSITE_TASKS_ALIVE: MetricDef = MetricDef {
    id: MetricId::CallsiteTasksAlive,
    prometheus: "tokio_callsite_tasks_alive",
    otel: "tokio.callsite.tasks_alive",
    kind: MetricType::Gauge,
    unit: "{task}",
    labels: CALLSITE,
    help: "Tasks spawned at this location and not yet finished: where a task leak comes from.",
    availability: Availability::Hooked,
};

/// `tokio_callsite_tasks_spawned_total`.
pub static CALLSITE_TASKS_SPAWNED: MetricDef = MetricDef {
    id: MetricId::CallsiteTasksSpawned,
    prometheus: "tokio_callsite_tasks_spawned_total",
    otel: "tokio.callsite.tasks_spawned",
    kind: MetricType::Counter,
    unit: "{task}",
    labels: CALLSITE,
    help: "Tasks spawned at this location.",
    availability: Availability::Hooked,
};

/// `pollwatch_info`.
pub static INFO: MetricDef = MetricDef {
    id: MetricId::Info,
    prometheus: "pollwatch_info",
    otel: "pollwatch.info",
    kind: MetricType::Gauge,
    unit: "",
    labels: &["version", "mode"],
    help: "Always 1: the pollwatch version and which detector runs (hooked, attach or disabled), so dashboards know which metrics to expect.",
    availability: Availability::Always,
};

/// `pollwatch_watchdog_late_total`.
pub static WATCHDOG_LATE: MetricDef = MetricDef {
    id: MetricId::WatchdogLate,
    prometheus: "pollwatch_watchdog_late_total",
    otel: "pollwatch.watchdog.late",
    kind: MetricType::Counter,
    unit: "{tick}",
    labels: &[],
    help: "Watchdog ticks that woke too late (VM pause, debugger, CPU starvation) and therefore attributed no stall.",
    availability: Availability::Running,
};

/// `pollwatch_stack_captures_total`.
pub static STACK_CAPTURES: MetricDef = MetricDef {
    id: MetricId::StackCaptures,
    prometheus: "pollwatch_stack_captures_total",
    otel: "pollwatch.stack.captures",
    kind: MetricType::Counter,
    unit: "{capture}",
    labels: &["result"],
    help: "Stack captures of stuck threads by result (ok, timeout, unsupported, disabled, failed).",
    availability: Availability::Running,
};

/// `pollwatch_stall_reports_dropped_total`.
pub static STALL_REPORTS_DROPPED: MetricDef = MetricDef {
    id: MetricId::StallReportsDropped,
    prometheus: "pollwatch_stall_reports_dropped_total",
    otel: "pollwatch.stall_reports.dropped",
    kind: MetricType::Counter,
    unit: "{report}",
    labels: &[],
    help: "Stall reports that fell out of the bounded ring behind /stalls (they are still counted in tokio_stalls_total).",
    availability: Availability::Running,
};

/// `pollwatch_otlp_exports_total`.
pub static OTLP_EXPORTS: MetricDef = MetricDef {
    id: MetricId::OtlpExports,
    prometheus: "pollwatch_otlp_exports_total",
    otel: "pollwatch.otlp.exports",
    kind: MetricType::Counter,
    unit: "{export}",
    labels: &["result"],
    help: "OTLP pushes to the collector by result (ok, error); series only when otlp_endpoint is set. A failed push is dropped: the next one carries the same cumulative totals.",
    availability: Availability::Running,
};

/// `pollwatch_console_events_dropped_total`.
pub static CONSOLE_EVENTS_DROPPED: MetricDef = MetricDef {
    id: MetricId::ConsoleEventsDropped,
    prometheus: "pollwatch_console_events_dropped_total",
    otel: "pollwatch.console.events.dropped",
    kind: MetricType::Counter,
    unit: "{event}",
    labels: &["kind"],
    help: "Task events (spawn, poll, terminate) the hooks dropped because the console's queue was full; tokio-console then misses that much.",
    availability: Availability::Console,
};

/// `pollwatch_console_tasks`.
pub static CONSOLE_TASKS: MetricDef = MetricDef {
    id: MetricId::ConsoleTasks,
    prometheus: "pollwatch_console_tasks",
    otel: "pollwatch.console.tasks",
    kind: MetricType::Gauge,
    unit: "{task}",
    labels: &[],
    help: "Tasks the tokio-console server holds now (live, and completed within console_retention); at most console_max_tasks.",
    availability: Availability::Console,
};

/// `pollwatch_console_spawns_total`.
pub static CONSOLE_SPAWNS: MetricDef = MetricDef {
    id: MetricId::ConsoleSpawns,
    prometheus: "pollwatch_console_spawns_total",
    otel: "pollwatch.console.spawns",
    kind: MetricType::Counter,
    unit: "{task}",
    labels: &["result"],
    help: "Spawns the tokio-console server received, by result: tracked, or untracked because console_max_tasks live tasks were already held.",
    availability: Availability::Console,
};

/// `pollwatch_console_tasks_evicted_total`.
pub static CONSOLE_TASKS_EVICTED: MetricDef = MetricDef {
    id: MetricId::ConsoleTasksEvicted,
    prometheus: "pollwatch_console_tasks_evicted_total",
    otel: "pollwatch.console.tasks.evicted",
    kind: MetricType::Counter,
    unit: "{task}",
    labels: &[],
    help: "Completed tasks the tokio-console server freed before console_retention ended, to make room for new tasks.",
    availability: Availability::Console,
};

/// Every metric, in the order exported.
pub static METRICS: [&MetricDef; 29] = [
    &WORKERS,
    &TASKS_ALIVE,
    &GLOBAL_QUEUE_DEPTH,
    &WORKER_BUSY_TIME,
    &WORKER_PARKS,
    &TASK_SPAWNED,
    &WORKER_POLLS,
    &WORKER_LOCAL_QUEUE_DEPTH,
    &BLOCKING_THREADS,
    &BLOCKING_QUEUE_DEPTH,
    &TASK_BUDGET_FORCED_YIELDS,
    &TASK_POLL_DURATION,
    &PROBE_SCHEDULE_DURATION,
    &STALLS,
    &STALL_DURATION,
    &WORKER_STALLED,
    &CALLSITE_POLLS,
    &CALLSITE_POLL_TIME,
    &CALLSITE_TASKS_ALIVE,
    &CALLSITE_TASKS_SPAWNED,
    &INFO,
    &WATCHDOG_LATE,
    &STACK_CAPTURES,
    &STALL_REPORTS_DROPPED,
    &OTLP_EXPORTS,
    &CONSOLE_EVENTS_DROPPED,
    &CONSOLE_TASKS,
    &CONSOLE_SPAWNS,
    &CONSOLE_TASKS_EVICTED,
];

/// One exact part of a histogram (its count or its sum) as an observable counter, which is
/// how a histogram reaches an application's OpenTelemetry SDK through
/// `Agent::register_meter` (feature `opentelemetry-sdk`).
///
/// The OpenTelemetry metrics API (`opentelemetry` 0.33) has no instrument for a histogram
/// that is aggregated elsewhere: its only histogram records single measurements, and
/// re-recording pollwatch's buckets as fake measurements would invent a distribution. A
/// histogram's count and sum are exact cumulative totals, so they go as two counters; the
/// buckets themselves reach a backend only through the direct OTLP push or Prometheus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramPart {
    /// The instrument name: the histogram's OpenTelemetry name plus `.count` or `.sum`.
    pub otel: String,
    /// `s` for the sum; for the count, what one observation is (`{poll}`, `{probe}`,
    /// `{stall}`).
    pub unit: &'static str,
    /// What it is, then the histogram's help text.
    pub description: String,
}

/// What one observation of each histogram is: the unit of its count.
const HISTOGRAM_COUNT_UNITS: &[(&str, &str)] = &[
    ("tokio.task.poll.duration", "{poll}"),
    ("tokio.probe.schedule.duration", "{probe}"),
    ("tokio.stall.duration", "{stall}"),
];

impl MetricDef {
    /// For a histogram, its count as a counter named `<otel>.count` (see [`HistogramPart`]);
    /// `None` for counters and gauges.
    pub fn otel_histogram_count(&self) -> Option<HistogramPart> {
        let unit = HISTOGRAM_COUNT_UNITS
            .iter()
            .find(|(otel, _)| *otel == self.otel)
            .map(|(_, unit)| *unit)
            .filter(|_| self.kind == MetricType::Histogram)?;
        Some(HistogramPart {
            otel: format!("{}.count", self.otel),
            unit,
            description: format!(
                "Number of observations in the {} histogram (its exact count; buckets through the OTLP push or Prometheus): {}",
                self.otel, self.help
            ),
        })
    }

    /// For a histogram, its sum as a counter named `<otel>.sum`, unit `s` (see
    /// [`HistogramPart`]); `None` for counters and gauges.
    pub fn otel_histogram_sum(&self) -> Option<HistogramPart> {
        (self.kind == MetricType::Histogram).then(|| HistogramPart {
            otel: format!("{}.sum", self.otel),
            unit: self.unit,
            description: format!(
                "Sum of the observations in the {} histogram (its exact sum; buckets through the OTLP push or Prometheus): {}",
                self.otel, self.help
            ),
        })
    }
}

/// The entry for a Prometheus family name, if pollwatch exports one by that name.
pub fn by_prometheus_name(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().copied().find(|m| m.prometheus == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `opentelemetry-prometheus` 0.33 names an instrument (research §5.3).
    fn bridged(m: &MetricDef) -> String {
        let mut name = m.otel.replace('.', "_");
        if m.unit == "s" {
            name.push_str("_seconds");
        }
        if m.kind == MetricType::Counter {
            name.push_str("_total");
        }
        name
    }

    /// Gauges whose OpenTelemetry name ends in `.count`: Prometheus reserves `_count` for
    /// histograms and summaries, so these take a plural noun instead of the bridged name.
    const PLURAL_GAUGES: &[(&str, &str)] = &[
        ("tokio.worker.count", "tokio_workers"),
        ("tokio.task.alive.count", "tokio_tasks_alive"),
        ("tokio.blocking.thread.count", "tokio_blocking_threads"),
    ];

    #[test]
    fn every_metric_has_its_own_id() {
        let ids: Vec<MetricId> = METRICS.iter().map(|d| d.id).collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(!ids[..i].contains(id), "{id:?} names two definitions");
        }
    }

    #[test]
    fn prometheus_names_are_what_the_otel_bridge_would_make() {
        for m in METRICS {
            match PLURAL_GAUGES.iter().find(|(otel, _)| *otel == m.otel) {
                Some((_, prometheus)) => {
                    assert_eq!(m.kind, MetricType::Gauge, "{m:?}");
                    assert_eq!(*prometheus, m.prometheus, "{m:?}");
                }
                None => assert_eq!(bridged(m), m.prometheus, "{m:?}"),
            }
        }
    }

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut names: Vec<_> = METRICS.iter().map(|m| m.prometheus).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        for m in METRICS {
            let ok = m
                .prometheus
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            assert!(ok, "{}", m.prometheus);
            assert_eq!(
                m.prometheus.ends_with("_total"),
                m.kind == MetricType::Counter
            );
            // Reserved for the series of a histogram (promtool's lint).
            for suffix in ["_count", "_sum", "_bucket"] {
                assert!(!m.prometheus.ends_with(suffix), "{}", m.prometheus);
            }
            assert!(
                !m.help.is_empty() && !m.help.contains('\n'),
                "{}",
                m.prometheus
            );
            assert!(!m.labels.contains(&RUNTIME_LABEL), "{}", m.prometheus);
            for l in m.labels {
                assert!(!l.starts_with("__") && *l != "le", "{l}");
            }
        }
    }

    #[test]
    fn every_histogram_has_a_count_and_a_sum_part_and_nothing_else_does() {
        let mut all: Vec<String> = METRICS.iter().map(|m| m.otel.to_string()).collect();
        for m in METRICS {
            let (count, sum) = (m.otel_histogram_count(), m.otel_histogram_sum());
            assert_eq!(count.is_some(), m.kind == MetricType::Histogram, "{m:?}");
            assert_eq!(sum.is_some(), m.kind == MetricType::Histogram, "{m:?}");
            if let (Some(count), Some(sum)) = (count, sum) {
                assert!(count.unit.starts_with('{') && count.unit.ends_with('}'));
                assert_eq!(sum.unit, "s");
                all.extend([count.otel, sum.otel]);
            }
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "an OpenTelemetry name is used twice");
    }

    #[test]
    fn a_disabled_agent_exports_only_its_info() {
        let on: Vec<_> = METRICS
            .iter()
            .filter(|m| m.applies(Mode::Disabled))
            .map(|m| m.prometheus)
            .collect();
        assert_eq!(on, ["pollwatch_info"]);
        assert!(!TASK_POLL_DURATION.applies(Mode::Attach));
        assert!(TASK_POLL_DURATION.applies(Mode::Hooked));
        assert_eq!(TASK_SPAWNED.applies(Mode::Attach), cfg!(tokio_unstable));
        assert!(!CONSOLE_TASKS.applies(Mode::Attach));
        assert_eq!(
            CONSOLE_TASKS.applies(Mode::Hooked),
            cfg!(all(feature = "console", tokio_unstable))
        );
    }
}
