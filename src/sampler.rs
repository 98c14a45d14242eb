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
                samples: reader.samples(def),
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
    use names::MetricId::*;
    let timed = matches!(def.id, TaskPollDuration | CallsitePollTime);
    let per_callsite = matches!(
        def.id,
        CallsitePolls | CallsitePollTime | CallsiteTasksAlive | CallsiteTasksSpawned
    );
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

    /// The series of `def`: one arm per metric, so a metric added to [`names`] without
    /// being read here does not compile.
    fn samples(&mut self, def: &'static MetricDef) -> Vec<Sample> {
        use names::MetricId::*;
        use std::sync::atomic::Ordering::Relaxed;
        let int = |n: usize| Value::Int(n as u64);
        match def.id {
            Workers => self.runtime(|m| int(m.num_workers())),
            TasksAlive => self.runtime(|m| int(m.num_alive_tasks())),
            GlobalQueueDepth => self.runtime(|m| int(m.global_queue_depth())),
            WorkerBusyTime => {
                self.per_worker(|m, w| Value::Float(m.worker_total_busy_duration(w).as_secs_f64()))
            }
            WorkerParks => self.per_worker(|m, w| Value::Int(m.worker_park_count(w))),
            // tokio's `tokio_unstable` set.
            #[cfg(tokio_unstable)]
            TaskSpawned => self.runtime(|m| Value::Int(m.spawned_tasks_count())),
            #[cfg(tokio_unstable)]
            WorkerPolls => self.per_worker(|m, w| Value::Int(m.worker_poll_count(w))),
            #[cfg(tokio_unstable)]
            WorkerLocalQueueDepth => self.per_worker(|m, w| int(m.worker_local_queue_depth(w))),
            #[cfg(tokio_unstable)]
            BlockingThreads => match self.metrics {
                Some(m) => {
                    let (all, idle) = (m.num_blocking_threads(), m.num_idle_blocking_threads());
                    vec![
                        Sample::new(vec!["idle".into()], int(idle)),
                        Sample::new(vec!["active".into()], int(all.saturating_sub(idle))),
                    ]
                }
                None => Vec::new(),
            },
            #[cfg(tokio_unstable)]
            BlockingQueueDepth => self.runtime(|m| int(m.blocking_queue_depth())),
            #[cfg(tokio_unstable)]
            TaskBudgetForcedYields => self.runtime(|m| Value::Int(m.budget_forced_yield_count())),
            // Without `tokio_unstable` these do not apply (see [`names::Availability`]).
            #[cfg(not(tokio_unstable))]
            TaskSpawned
            | WorkerPolls
            | WorkerLocalQueueDepth
            | BlockingThreads
            | BlockingQueueDepth
            | TaskBudgetForcedYields => Vec::new(),
            // What pollwatch computes itself (histograms, stalls, self-counters).
            TaskPollDuration => self.own(|s| {
                let mut h = HistogramSnapshot::default();
                for (_, slot) in s.hooked().iter().flat_map(|hooked| hooked.slots.iter()) {
                    slot.poll_time.add_to(&mut h);
                }
                one(Value::Histogram(h))
            }),
            ProbeScheduleDuration => self.own(|s| one(Value::Histogram(s.probe_delay.snapshot()))),
            Stalls => self.own(|s| {
                s.stalls
                    .counts()
                    .into_iter()
                    .map(|((kind, file, line), n)| {
                        Sample::new(
                            vec![kind.as_str().into(), file.into(), line.into()],
                            Value::Int(n),
                        )
                    })
                    .collect()
            }),
            StallDuration => self.own(|s| one(Value::Histogram(s.stalls.durations()))),
            WorkerStalled => self.own(|s| one(Value::Int(s.stalls.ongoing() as u64))),
            WatchdogLate => self.own(|s| one(Value::Int(s.counters.watchdog_late.load(Relaxed)))),
            StackCaptures => self.own(|s| {
                s.counters
                    .captures()
                    .into_iter()
                    .map(|(status, n)| Sample::new(vec![status.as_str().into()], Value::Int(n)))
                    .collect()
            }),
            StallReportsDropped => self.own(|s| one(Value::Int(s.stalls.dropped()))),
            OtlpExports => self.own(|s| {
                // An agent with an endpoint runs only in a build that can push (else start
                // fails).
                if s.config.otlp_endpoint.is_none() {
                    return Vec::new();
                }
                let count = |result: &'static str, n: &std::sync::atomic::AtomicU64| {
                    Sample::new(vec![result.into()], Value::Int(n.load(Relaxed)))
                };
                vec![
                    count("ok", &s.counters.otlp_exports_ok),
                    count("error", &s.counters.otlp_exports_error),
                ]
            }),
            // The tokio-console server's own counters; no series while it is not running.
            #[cfg(all(feature = "console", tokio_unstable))]
            ConsoleEventsDropped => self.console(|c| {
                use crate::export::console::events::EventKind;
                EventKind::ALL
                    .iter()
                    .map(|&k| Sample::new(vec![k.as_str().into()], Value::Int(c.feed.dropped(k))))
                    .collect()
            }),
            #[cfg(all(feature = "console", tokio_unstable))]
            ConsoleTasks => self.console(|c| one(Value::Int(c.map.tasks.load(Relaxed)))),
            #[cfg(all(feature = "console", tokio_unstable))]
            ConsoleSpawns => self.console(|c| {
                vec![
                    Sample::new(
                        vec!["tracked".into()],
                        Value::Int(c.map.tracked.load(Relaxed)),
                    ),
                    Sample::new(
                        vec!["untracked".into()],
                        Value::Int(c.map.untracked.load(Relaxed)),
                    ),
                ]
            }),
            #[cfg(all(feature = "console", tokio_unstable))]
            ConsoleTasksEvicted => self.console(|c| one(Value::Int(c.map.evicted.load(Relaxed)))),
            #[cfg(not(all(feature = "console", tokio_unstable)))]
            ConsoleEventsDropped | ConsoleTasks | ConsoleSpawns | ConsoleTasksEvicted => Vec::new(),
            CallsitePolls => self.callsites(|t| Value::Int(t.polls)),
            CallsitePollTime => self.callsites(|t| Value::Float(t.poll_ns as f64 / 1e9)),
            CallsiteTasksAlive => self.callsites(|t| Value::Int(t.alive)),
            CallsiteTasksSpawned => self.callsites(|t| Value::Int(t.spawned)),
            Info => {
                let labels = vec![
                    Cow::Borrowed(env!("CARGO_PKG_VERSION")),
                    Cow::Borrowed(self.mode.as_str()),
                ];
                vec![Sample::new(labels, Value::Int(1))]
            }
        }
    }

    /// A metric pollwatch computes from its own state; no series for a disabled agent.
    fn own(&self, f: impl FnOnce(&Shared) -> Vec<Sample>) -> Vec<Sample> {
        self.shared.map(f).unwrap_or_default()
    }

    cfg_console! {
        /// A console counter; no series while the console is not running.
        fn console(
            &self,
            f: impl FnOnce(&crate::export::console::ConsoleState) -> Vec<Sample>,
        ) -> Vec<Sample> {
            self.shared
                .and_then(Shared::hooked)
                .and_then(|h| h.console.as_deref())
                .map(f)
                .unwrap_or_default()
        }
    }
}

/// One unlabeled series.
fn one(value: Value) -> Vec<Sample> {
    vec![Sample::unlabeled(value)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(mode: Mode) -> Arc<Shared> {
        let s = Arc::new(Shared::for_test(mode));
        let _ = s.runtime_label.set("test".into());
        s
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
