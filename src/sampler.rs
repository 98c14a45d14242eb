//! Reads the runtime's health at collection time: tokio's `RuntimeMetrics` and pollwatch's
//! own state (hook-fed histograms, spawn locations, stalls, self-counters).
//!
//! Everything is read cumulative, as it stands at this instant, and never reset: two
//! scrapers (an HA Prometheus pair, a debugging `curl`) see the same numbers, and a missed
//! scrape loses nothing. Reading costs the caller (the scrape) only: the hooks on the
//! workers are untouched, and no lock is taken that a worker ever takes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::runtime::{Handle, RuntimeMetrics};

use crate::names::{self, MetricDef};
use crate::state::{HookedState, Mode, Shared};
use crate::stats::histogram::HistogramSnapshot;

/// One sample's value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// A count (written without a decimal point).
    Int(u64),
    /// Seconds or another real value.
    Float(f64),
    /// Per-bucket counts and the sum.
    Histogram(HistogramSnapshot),
}

/// A label value; borrowed when it is static (spawn-location files, kinds, results), so a
/// scrape with hundreds of callsites does not allocate a string per series.
pub(crate) type Label = Cow<'static, str>;

/// One series: its label values (in the order of [`MetricDef::labels`], after `runtime`)
/// and its value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    pub(crate) labels: Vec<Label>,
    pub(crate) value: Value,
}

impl Sample {
    fn new(labels: Vec<Label>, value: Value) -> Self {
        Sample { labels, value }
    }

    fn unlabeled(value: Value) -> Self {
        Sample::new(Vec::new(), value)
    }
}

/// All series of one metric.
#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) def: &'static MetricDef,
    pub(crate) samples: Vec<Sample>,
}

/// One collection: every family that applies to the agent's build and mode, in the order
/// of [`names::METRICS`], each exactly once (possibly with no series yet).
#[derive(Debug)]
pub(crate) struct Collection {
    /// The `runtime` label of every series.
    pub(crate) runtime: String,
    pub(crate) families: Vec<Family>,
}

/// What the exporters read from: an agent's shared state and its runtime's handle.
///
/// The handle is held here (by the agent, the HTTP thread and a registered collector), not in
/// [`Shared`]: the runtime's hooks own an `Arc<Shared>`, so a handle inside it would keep the
/// runtime's internals and the agent's state alive forever.
#[derive(Clone)]
pub(crate) struct Source {
    pub(crate) shared: Option<Arc<Shared>>,
    pub(crate) handle: Option<Handle>,
}

impl Source {
    pub(crate) fn mode(&self) -> Mode {
        self.shared
            .as_ref()
            .map(|s| s.mode())
            .unwrap_or(Mode::Disabled)
    }

    pub(crate) fn runtime_label(&self) -> String {
        self.shared
            .as_ref()
            .map(|s| s.runtime_label().to_string())
            .unwrap_or_default()
    }

    /// Whether `def` is exported: it applies to the agent's mode, and the agent records it
    /// (poll timing and callsite statistics can be switched off; a family that is never
    /// recorded is absent, not zero).
    pub(crate) fn exports(&self, def: &'static MetricDef) -> bool {
        def.applies(self.mode()) && self.shared.as_ref().is_none_or(|s| records(&s.config, def))
    }

    pub(crate) fn collect(&self) -> Collection {
        let mode = self.mode();
        let metrics = self.handle.as_ref().map(Handle::metrics);
        let mut reader = Reader {
            shared: self.shared.as_deref(),
            metrics: metrics.as_ref(),
            mode,
            callsites: None,
        };
        let families = names::METRICS
            .iter()
            .copied()
            .filter(|def| self.exports(def))
            .map(|def| Family {
                def,
                samples: reader.samples(def).unwrap_or_default(),
            })
            .collect();
        Collection {
            runtime: self.runtime_label(),
            families,
        }
    }
}

/// Whether the agent's settings let the hooks record `def` at all.
fn records(config: &crate::config::Config, def: &'static MetricDef) -> bool {
    use names::*;
    let is = |d: &'static MetricDef| std::ptr::eq(def, d);
    let timed = is(&TASK_POLL_DURATION) || is(&CALLSITE_POLL_TIME);
    let per_callsite = [
        &CALLSITE_POLLS,
        &CALLSITE_POLL_TIME,
        &CALLSITE_TASKS_ALIVE,
        &CALLSITE_TASKS_SPAWNED,
    ]
    .into_iter()
    .any(is);
    !(timed && config.poll_time_sample_every == 0 || per_callsite && !config.callsite_stats)
}

/// Totals of one spawn location (or of several that share a file and line).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct CallsiteTotals {
    pub(crate) polls: u64,
    pub(crate) poll_ns: u64,
    pub(crate) spawned: u64,
    pub(crate) alive: u64,
}

impl CallsiteTotals {
    fn add(&mut self, o: CallsiteTotals) {
        self.polls += o.polls;
        self.poll_ns = self.poll_ns.wrapping_add(o.poll_ns);
        self.spawned += o.spawned;
        self.alive += o.alive;
    }

    fn is_zero(&self) -> bool {
        *self == CallsiteTotals::default()
    }
}

/// `(code_file_path, code_line_number)` label values and totals, merged by file and line
/// (locations differing only in the column share one series), sorted, `other` last.
/// At most `max_callsites + 1` rows.
pub(crate) fn callsite_rows(hooked: &HookedState) -> Vec<((Label, Label), CallsiteTotals)> {
    let table = &hooked.callsites;
    let mut merged: BTreeMap<(&'static str, u32), CallsiteTotals> = BTreeMap::new();
    let mut other = CallsiteTotals::default();
    for index in table.used_indices() {
        let (spawned, terminated) = table.task_counts(index);
        let mut t = CallsiteTotals {
            spawned,
            alive: spawned.saturating_sub(terminated),
            ..CallsiteTotals::default()
        };
        for (_, slot) in hooked.slots.iter() {
            let (polls, ns) = slot.callsite_totals(index);
            t.polls += polls;
            t.poll_ns = t.poll_ns.wrapping_add(ns);
        }
        match table.location(index) {
            Some(loc) => merged.entry((loc.file(), loc.line())).or_default().add(t),
            None => other.add(t),
        }
    }
    let mut rows: Vec<_> = merged
        .into_iter()
        .map(|((file, line), t)| ((Cow::Borrowed(file), Cow::Owned(line.to_string())), t))
        .collect();
    if !other.is_zero() {
        rows.push(((Cow::Borrowed("other"), Cow::Borrowed("")), other));
    }
    rows
}

struct Reader<'a> {
    shared: Option<&'a Shared>,
    metrics: Option<&'a RuntimeMetrics>,
    mode: Mode,
    /// Computed once per collection, shared by the four callsite families.
    callsites: Option<Vec<((Label, Label), CallsiteTotals)>>,
}

impl Reader<'_> {
    fn per_worker(&self, f: impl Fn(&RuntimeMetrics, usize) -> Value) -> Vec<Sample> {
        let Some(m) = self.metrics else {
            return Vec::new();
        };
        (0..m.num_workers())
            .map(|w| Sample::new(vec![Cow::Owned(w.to_string())], f(m, w)))
            .collect()
    }

    fn runtime(&self, f: impl Fn(&RuntimeMetrics) -> Value) -> Vec<Sample> {
        self.metrics
            .map(|m| vec![Sample::unlabeled(f(m))])
            .unwrap_or_default()
    }

    fn callsites(&mut self, value: impl Fn(&CallsiteTotals) -> Value) -> Vec<Sample> {
        let Some(hooked) = self.shared.and_then(Shared::hooked) else {
            return Vec::new();
        };
        let rows = self.callsites.get_or_insert_with(|| callsite_rows(hooked));
        rows.iter()
            .map(|((file, line), t)| Sample::new(vec![file.clone(), line.clone()], value(t)))
            .collect()
    }

    /// The series of `def`; `None` for a metric this reader does not know (a test checks
    /// that every entry of the table is known).
    fn samples(&mut self, def: &'static MetricDef) -> Option<Vec<Sample>> {
        use names::*;
        let is = |d: &'static MetricDef| std::ptr::eq(def, d);
        let int = |n: usize| Value::Int(n as u64);
        if is(&WORKERS) {
            return Some(self.runtime(|m| int(m.num_workers())));
        }
        if is(&TASKS_ALIVE) {
            return Some(self.runtime(|m| int(m.num_alive_tasks())));
        }
        if is(&GLOBAL_QUEUE_DEPTH) {
            return Some(self.runtime(|m| int(m.global_queue_depth())));
        }
        if is(&WORKER_BUSY_TIME) {
            return Some(
                self.per_worker(|m, w| Value::Float(m.worker_total_busy_duration(w).as_secs_f64())),
            );
        }
        if is(&WORKER_PARKS) {
            return Some(self.per_worker(|m, w| Value::Int(m.worker_park_count(w))));
        }
        if let Some(samples) = self.unstable(def) {
            return Some(samples);
        }
        if let Some(samples) = self.own(def) {
            return Some(samples);
        }
        if let Some(samples) = self.console(def) {
            return Some(samples);
        }
        if is(&CALLSITE_POLLS) {
            return Some(self.callsites(|t| Value::Int(t.polls)));
        }
        if is(&CALLSITE_POLL_TIME) {
            return Some(self.callsites(|t| Value::Float(t.poll_ns as f64 / 1e9)));
        }
        if is(&CALLSITE_TASKS_ALIVE) {
            return Some(self.callsites(|t| Value::Int(t.alive)));
        }
        if is(&CALLSITE_TASKS_SPAWNED) {
            return Some(self.callsites(|t| Value::Int(t.spawned)));
        }
        if is(&INFO) {
            let labels = vec![
                Cow::Borrowed(env!("CARGO_PKG_VERSION")),
                Cow::Borrowed(self.mode.as_str()),
            ];
            return Some(vec![Sample::new(labels, Value::Int(1))]);
        }
        None
    }

    /// The metrics pollwatch computes itself (histograms, stalls, self-counters).
    fn own(&mut self, def: &'static MetricDef) -> Option<Vec<Sample>> {
        use names::*;
        use std::sync::atomic::Ordering::Relaxed;
        let is = |d: &'static MetricDef| std::ptr::eq(def, d);
        let known = [
            &TASK_POLL_DURATION,
            &PROBE_SCHEDULE_DURATION,
            &STALLS,
            &STALL_DURATION,
            &WORKER_STALLED,
            &WATCHDOG_LATE,
            &STACK_CAPTURES,
            &STALL_REPORTS_DROPPED,
            &OTLP_EXPORTS,
        ];
        if !known.iter().any(|d| is(d)) {
            return None;
        }
        let Some(s) = self.shared else {
            return Some(Vec::new());
        };
        let one = |v: Value| Some(vec![Sample::unlabeled(v)]);
        if is(&TASK_POLL_DURATION) {
            let mut h = HistogramSnapshot::default();
            for (_, slot) in s.hooked().iter().flat_map(|hooked| hooked.slots.iter()) {
                slot.poll_time.add_to(&mut h);
            }
            return one(Value::Histogram(h));
        }
        if is(&PROBE_SCHEDULE_DURATION) {
            return one(Value::Histogram(s.probe_delay.snapshot()));
        }
        if is(&STALLS) {
            let samples = s
                .stalls
                .counts()
                .into_iter()
                .map(|((kind, file, line), n)| {
                    Sample::new(
                        vec![kind.as_str().into(), file.into(), line.into()],
                        Value::Int(n),
                    )
                })
                .collect();
            return Some(samples);
        }
        if is(&STALL_DURATION) {
            return one(Value::Histogram(s.stalls.durations()));
        }
        if is(&WORKER_STALLED) {
            return one(Value::Int(s.stalls.ongoing() as u64));
        }
        if is(&WATCHDOG_LATE) {
            return one(Value::Int(s.counters.watchdog_late.load(Relaxed)));
        }
        if is(&STACK_CAPTURES) {
            let samples = s
                .counters
                .captures()
                .into_iter()
                .map(|(status, n)| Sample::new(vec![status.as_str().into()], Value::Int(n)))
                .collect();
            return Some(samples);
        }
        if is(&OTLP_EXPORTS) {
            // An agent with an endpoint runs only in a build that can push (else start fails).
            if s.config.otlp_endpoint.is_none() {
                return Some(Vec::new());
            }
            let count = |result: &'static str, n: &std::sync::atomic::AtomicU64| {
                Sample::new(vec![result.into()], Value::Int(n.load(Relaxed)))
            };
            return Some(vec![
                count("ok", &s.counters.otlp_exports_ok),
                count("error", &s.counters.otlp_exports_error),
            ]);
        }
        one(Value::Int(s.stalls.dropped()))
    }

    /// The tokio-console server's own counters; no series while it is not running.
    fn console(&mut self, def: &'static MetricDef) -> Option<Vec<Sample>> {
        use names::*;
        let is = |d: &'static MetricDef| std::ptr::eq(def, d);
        let known = [
            &CONSOLE_EVENTS_DROPPED,
            &CONSOLE_TASKS,
            &CONSOLE_SPAWNS,
            &CONSOLE_TASKS_EVICTED,
        ];
        if !known.iter().any(|d| is(d)) {
            return None;
        }
        #[cfg(all(feature = "console", tokio_unstable))]
        if let Some(c) = self
            .shared
            .and_then(Shared::hooked)
            .and_then(|h| h.console.as_deref())
        {
            use crate::console::events::EventKind;
            use std::sync::atomic::Ordering::Relaxed;
            let int = |a: &std::sync::atomic::AtomicU64| Value::Int(a.load(Relaxed));
            let samples = if is(&CONSOLE_EVENTS_DROPPED) {
                EventKind::ALL
                    .iter()
                    .map(|&k| Sample::new(vec![k.as_str().into()], Value::Int(c.feed.dropped(k))))
                    .collect()
            } else if is(&CONSOLE_TASKS) {
                vec![Sample::unlabeled(int(&c.map.tasks))]
            } else if is(&CONSOLE_SPAWNS) {
                vec![
                    Sample::new(vec!["tracked".into()], int(&c.map.tracked)),
                    Sample::new(vec!["untracked".into()], int(&c.map.untracked)),
                ]
            } else {
                vec![Sample::unlabeled(int(&c.map.evicted))]
            };
            return Some(samples);
        }
        Some(Vec::new())
    }

    /// tokio's `tokio_unstable` set.
    #[cfg(tokio_unstable)]
    fn unstable(&mut self, def: &'static MetricDef) -> Option<Vec<Sample>> {
        use names::*;
        let is = |d: &'static MetricDef| std::ptr::eq(def, d);
        let int = |n: usize| Value::Int(n as u64);
        if is(&TASK_SPAWNED) {
            return Some(self.runtime(|m| Value::Int(m.spawned_tasks_count())));
        }
        if is(&WORKER_POLLS) {
            return Some(self.per_worker(|m, w| Value::Int(m.worker_poll_count(w))));
        }
        if is(&WORKER_LOCAL_QUEUE_DEPTH) {
            return Some(self.per_worker(|m, w| int(m.worker_local_queue_depth(w))));
        }
        if is(&BLOCKING_THREADS) {
            let Some(m) = self.metrics else {
                return Some(Vec::new());
            };
            let (all, idle) = (m.num_blocking_threads(), m.num_idle_blocking_threads());
            return Some(vec![
                Sample::new(vec!["idle".into()], int(idle)),
                Sample::new(vec!["active".into()], int(all.saturating_sub(idle))),
            ]);
        }
        if is(&BLOCKING_QUEUE_DEPTH) {
            return Some(self.runtime(|m| int(m.blocking_queue_depth())));
        }
        if is(&TASK_BUDGET_FORCED_YIELDS) {
            return Some(self.runtime(|m| Value::Int(m.budget_forced_yield_count())));
        }
        None
    }

    /// Without `tokio_unstable` these metrics do not apply (see [`names::Availability`]).
    #[cfg(not(tokio_unstable))]
    fn unstable(&mut self, _def: &'static MetricDef) -> Option<Vec<Sample>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn shared(mode: Mode) -> Arc<Shared> {
        let s = Arc::new(Shared::new(Config::default(), mode));
        let _ = s.runtime_label.set("test".into());
        s
    }

    #[test]
    fn every_table_entry_is_known_to_the_reader() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let s = shared(Mode::Hooked);
        let metrics = rt.handle().metrics();
        let mut reader = Reader {
            shared: Some(&s),
            metrics: Some(&metrics),
            mode: Mode::Hooked,
            callsites: None,
        };
        for def in names::METRICS {
            let unstable = def.availability == names::Availability::TokioUnstable;
            let known = reader.samples(def).is_some();
            assert_eq!(
                known,
                !unstable || cfg!(tokio_unstable),
                "{}",
                def.prometheus
            );
        }
    }

    #[test]
    fn collection_follows_the_table_and_labels_match_their_names() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        for mode in [Mode::Hooked, Mode::Attach] {
            let source = Source {
                shared: Some(shared(mode)),
                handle: Some(rt.handle().clone()),
            };
            let c = source.collect();
            assert_eq!(c.runtime, "test");
            let got: Vec<_> = c.families.iter().map(|f| f.def.prometheus).collect();
            let want: Vec<_> = names::METRICS
                .iter()
                .filter(|d| d.applies(mode))
                .map(|d| d.prometheus)
                .collect();
            assert_eq!(got, want);
            for f in &c.families {
                for s in &f.samples {
                    assert_eq!(s.labels.len(), f.def.labels.len(), "{}", f.def.prometheus);
                    let hist = matches!(s.value, Value::Histogram(_));
                    assert_eq!(hist, f.def.kind == names::MetricType::Histogram);
                }
            }
            let workers = c
                .families
                .iter()
                .find(|f| f.def.prometheus == "tokio_workers")
                .unwrap();
            assert_eq!(workers.samples[0].value, Value::Int(2));
        }
    }

    #[test]
    fn a_disabled_source_has_only_its_info() {
        let c = Source {
            shared: None,
            handle: None,
        }
        .collect();
        assert_eq!(c.families.len(), 1);
        assert_eq!(c.families[0].def.prometheus, "pollwatch_info");
        assert_eq!(c.families[0].samples[0].labels[1], "disabled");
    }
}
