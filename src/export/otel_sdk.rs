//! pollwatch's metrics as observable instruments on the application's own OpenTelemetry
//! `Meter` (feature `opentelemetry-sdk`): the app's `SdkMeterProvider` then exports them with
//! its own readers, exporters, resource, views and temporality.
//!
//! Every family of [`crate::names`] that the agent exports becomes one observable instrument
//! under its OpenTelemetry name, unit and description, with the attributes of the direct OTLP
//! push ([`crate::export::otel`]): counters are observable counters (reporting the cumulative
//! totals pollwatch reads; the SDK turns them into deltas when the reader asks for delta
//! temporality), gauges observable gauges. `u64` for counts, `f64` for seconds, as the push
//! sends integers and doubles. A histogram becomes two observable counters, its exact count
//! and sum ([`crate::names::HistogramPart`]): the metrics API has no instrument for a
//! histogram aggregated elsewhere, and pollwatch does not fake one.
//!
//! Values come from [`Source::collect`], the collection behind `/metrics`, read inside the
//! callbacks, i.e. on whatever thread the app's reader collects from. The SDK calls one
//! callback per instrument; one collection serves all of them in a cycle: a callback that
//! finds its own instrument already served from the latest collection starts a new one, and
//! so does any callback once that collection is older than [`MAX_AGE`] (so a provider whose
//! views keep only some instruments never reads another provider's old collection).
//!
//! The callbacks hold a [`Weak`] reference to a [`Link`] that the [`Agent`] owns. The
//! OpenTelemetry API cannot unregister a callback, so once the agent is dropped they stay
//! in the provider but find nothing and observe nothing: the SDK then exports no pollwatch
//! metric, and nothing reads the dropped agent's state or runtime.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use opentelemetry::metrics::{AsyncInstrument, Meter, MeterProvider};
use opentelemetry::{InstrumentationScope, KeyValue};

use crate::names::{self, MetricDef, MetricType};
use crate::sampler::{Collection, Sample, Source, Value};
use crate::Agent;

/// The instrumentation scope [`Agent::register_meter_provider`] asks for: the scope of the
/// direct OTLP push, so both paths name their metrics alike.
const SCOPE_NAME: &str = "pollwatch";

/// The oldest collection a callback reuses: far longer than one cycle of callbacks takes
/// (microseconds each), far shorter than any export interval.
const MAX_AGE: Duration = Duration::from_millis(100);

/// What an agent shares with the callbacks it registered; owned by the agent, so dropping
/// the agent ends every callback's access.
pub(crate) struct Link {
    source: Source,
    /// The `tokio.runtime` attribute of every series (shared, not copied per series).
    runtime: Arc<str>,
    latest: Mutex<Latest>,
}

/// The collection the callbacks of the current cycle read, and which instruments have read
/// it already.
#[derive(Default)]
struct Latest {
    collection: Option<(Instant, Arc<Collection>)>,
    served: Vec<bool>,
}

impl Link {
    pub(crate) fn new(source: Source) -> Link {
        let runtime = source.runtime_label().into();
        Link {
            source,
            runtime,
            latest: Mutex::new(Latest::default()),
        }
    }

    /// The collection for instrument `index` in this cycle: the latest one, unless this
    /// instrument has read it already (then a cycle has ended and a new one begins) or it is
    /// older than [`MAX_AGE`]. A collection that panics (it never should) gives none, so a bug
    /// in pollwatch cannot take the app's metric reader thread down with it.
    fn collection_for(&self, index: usize) -> Option<Arc<Collection>> {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if latest.served.len() <= index {
            latest.served.resize(index + 1, false);
        }
        let fresh_enough = latest
            .collection
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < MAX_AGE);
        if latest.served[index] || !fresh_enough {
            let fresh = catch_unwind(AssertUnwindSafe(|| self.source.collect())).ok();
            latest.collection = fresh.map(|c| (Instant::now(), Arc::new(c)));
            latest.served.iter_mut().for_each(|s| *s = false);
        }
        latest.served[index] = true;
        latest.collection.as_ref().map(|(_, c)| c.clone())
    }

    /// `tokio.runtime` and the sample's labels under their OpenTelemetry names, integers
    /// where the conventions say so, empty values left out: the push's attributes.
    fn attributes(&self, def: &MetricDef, s: &Sample) -> Vec<KeyValue> {
        let mut out = Vec::with_capacity(def.labels.len() + 1);
        out.push(KeyValue::new(
            names::otel_label(names::RUNTIME_LABEL),
            self.runtime.clone(),
        ));
        for (key, value) in names::otel_attributes(def.labels, &s.labels) {
            out.push(match value {
                names::OtelValue::Int(n) => KeyValue::new(key, n),
                names::OtelValue::Str(v) => KeyValue::new(key, v.to_string()),
            });
        }
        out
    }
}

/// Which number of a sample an instrument reports.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Part {
    /// A counter's or gauge's value.
    Value,
    /// A histogram's count.
    Count,
    /// A histogram's sum, in seconds.
    Sum,
}

/// A sample's number for an integer instrument.
fn as_u64(part: Part, v: &Value) -> Option<u64> {
    match (part, v) {
        (Part::Value, Value::Int(n)) => Some(*n),
        (Part::Count, Value::Histogram(h)) => Some(h.count()),
        _ => None,
    }
}

/// A sample's number for a floating-point instrument.
fn as_f64(part: Part, v: &Value) -> Option<f64> {
    match (part, v) {
        (Part::Value, Value::Float(x)) => Some(*x),
        (Part::Value, Value::Int(n)) => Some(*n as f64),
        (Part::Sum, Value::Histogram(h)) => Some(h.sum_seconds()),
        _ => None,
    }
}

/// Seconds are reals (`f64` instruments); everything else pollwatch exports is a count.
fn is_real(def: &MetricDef) -> bool {
    def.unit == "s"
}

/// The callback of instrument `index`: observe every series of `def` from this cycle's
/// collection, or nothing once the agent is gone.
fn callback<T: 'static>(
    link: Weak<Link>,
    index: usize,
    def: &'static MetricDef,
    part: Part,
    read: fn(Part, &Value) -> Option<T>,
) -> impl Fn(&dyn AsyncInstrument<T>) + Send + Sync + 'static {
    move |observer| {
        let Some(link) = link.upgrade() else {
            return;
        };
        let Some(c) = link.collection_for(index) else {
            return;
        };
        let Some(family) = c.families.iter().find(|f| f.def.id == def.id) else {
            return;
        };
        for s in &family.samples {
            if let Some(v) = read(part, &s.value) {
                observer.observe(v, &link.attributes(def, s));
            }
        }
    }
}

/// Creates the instruments of every family `link` exports on `meter`.
fn register(link: &Arc<Link>, meter: &Meter) {
    let mut index = 0;
    let mut next = || {
        index += 1;
        index - 1
    };
    let defs = names::METRICS
        .iter()
        .copied()
        .filter(|d| link.source.exports(d));
    for def in defs {
        let weak = Arc::downgrade(link);
        match def.kind {
            MetricType::Counter if is_real(def) => {
                meter
                    .f64_observable_counter(def.otel)
                    .with_unit(def.unit)
                    .with_description(def.help)
                    .with_callback(callback(weak, next(), def, Part::Value, as_f64))
                    .build();
            }
            MetricType::Counter => {
                meter
                    .u64_observable_counter(def.otel)
                    .with_unit(def.unit)
                    .with_description(def.help)
                    .with_callback(callback(weak, next(), def, Part::Value, as_u64))
                    .build();
            }
            MetricType::Gauge if is_real(def) => {
                meter
                    .f64_observable_gauge(def.otel)
                    .with_unit(def.unit)
                    .with_description(def.help)
                    .with_callback(callback(weak, next(), def, Part::Value, as_f64))
                    .build();
            }
            MetricType::Gauge => {
                meter
                    .u64_observable_gauge(def.otel)
                    .with_unit(def.unit)
                    .with_description(def.help)
                    .with_callback(callback(weak, next(), def, Part::Value, as_u64))
                    .build();
            }
            MetricType::Histogram => {
                if let Some(count) = def.otel_histogram_count() {
                    meter
                        .u64_observable_counter(count.otel)
                        .with_unit(count.unit)
                        .with_description(count.description)
                        .with_callback(callback(weak.clone(), next(), def, Part::Count, as_u64))
                        .build();
                }
                if let Some(sum) = def.otel_histogram_sum() {
                    meter
                        .f64_observable_counter(sum.otel)
                        .with_unit(sum.unit)
                        .with_description(sum.description)
                        .with_callback(callback(weak, next(), def, Part::Sum, as_f64))
                        .build();
                }
            }
        }
    }
}

impl Agent {
    /// Registers pollwatch's metrics as observable instruments on `meter`, so the
    /// application's own OpenTelemetry `SdkMeterProvider` exports them with its exporter,
    /// resource, views and temporality (feature `opentelemetry-sdk`, `opentelemetry` 0.33).
    ///
    /// Every counter and gauge that `/metrics` has in this build and mode, under its
    /// OpenTelemetry name, unit and description ([`crate::names::METRICS`]), with the
    /// attributes of the direct OTLP push (`tokio.runtime`, `tokio.worker.index`,
    /// `code.file.path`, …). Values are read when the provider collects, from the same
    /// collection as `/metrics`; counters report cumulative totals (the SDK converts them
    /// under delta temporality). Histograms go as their exact count and sum,
    /// `<name>.count` and `<name>.sum` ([`crate::names::HistogramPart`]): the OpenTelemetry
    /// API cannot carry pre-aggregated buckets; use the direct push
    /// ([`Builder::otlp_endpoint`](crate::Builder::otlp_endpoint)) or Prometheus for those.
    ///
    /// Register once per provider. Agents of several runtimes can share a meter (their
    /// series differ by `tokio.runtime`). When the agent is dropped, its callbacks observe
    /// nothing more (the OpenTelemetry API has no way to remove them), so the provider stops
    /// exporting pollwatch's metrics and never reads the dropped agent's state.
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry-sdk")))]
    pub fn register_meter(&self, meter: &Meter) {
        let link = self
            .otel_sdk_link()
            .get_or_init(|| Arc::new(Link::new(self.source())));
        register(link, meter);
    }

    /// [`Agent::register_meter`] on a meter of `provider` with the instrumentation scope
    /// `pollwatch` and pollwatch's version: the scope the direct OTLP push uses, so both
    /// paths deliver the same metric identities.
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry-sdk")))]
    pub fn register_meter_provider<P: MeterProvider + ?Sized>(&self, provider: &P) {
        let scope = InstrumentationScope::builder(SCOPE_NAME)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        self.register_meter(&provider.meter_with_scope(scope));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::state::{Mode, Shared};

    fn link() -> Link {
        let shared = Arc::new(Shared::new_attach(Config::default()));
        let _ = shared.runtime_label.set("rt".into());
        Link::new(Source {
            shared: Some(shared),
            handle: None,
        })
    }

    #[test]
    fn one_collection_serves_each_instrument_once_per_cycle() {
        let link = link();
        let a = link.collection_for(0).unwrap();
        let b = link.collection_for(1).unwrap();
        let c = link.collection_for(2).unwrap();
        assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&b, &c));
        // Instrument 0 again: the next cycle, a new collection, then shared again.
        let d = link.collection_for(0).unwrap();
        assert!(!Arc::ptr_eq(&a, &d));
        assert!(Arc::ptr_eq(&d, &link.collection_for(2).unwrap()));
        // An instrument the first cycle did not have (a view dropped it, or it came later).
        assert!(Arc::ptr_eq(&d, &link.collection_for(7).unwrap()));
        let e = link.collection_for(7).unwrap();
        assert!(!Arc::ptr_eq(&d, &e));
        // Too old to reuse, even for an instrument that has not read it.
        std::thread::sleep(MAX_AGE);
        assert!(!Arc::ptr_eq(&e, &link.collection_for(3).unwrap()));
    }

    #[test]
    fn attributes_are_the_pushs() {
        let link = link();
        let s = Sample {
            labels: vec!["cpu".into(), "src/a.rs".into(), "7".into()],
            value: Value::Int(1),
        };
        let attrs = link.attributes(&names::STALLS, &s);
        let want = [
            KeyValue::new("tokio.runtime", "rt"),
            KeyValue::new("kind", "cpu"),
            KeyValue::new("code.file.path", "src/a.rs"),
            KeyValue::new("code.line.number", 7_i64),
        ];
        assert_eq!(attrs, want);
        let s = Sample {
            labels: vec!["off_cpu".into(), "".into(), "".into()],
            value: Value::Int(1),
        };
        let keys: Vec<_> = link
            .attributes(&names::STALLS, &s)
            .into_iter()
            .map(|kv| kv.key.to_string())
            .collect();
        assert_eq!(keys, ["tokio.runtime", "kind"]);
    }

    #[test]
    fn every_value_of_a_live_collection_fits_its_instrument() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        for mode in [Mode::Hooked, Mode::Attach] {
            let shared = Arc::new(Shared::for_test(mode));
            let c = Source {
                shared: Some(shared),
                handle: Some(rt.handle().clone()),
            }
            .collect();
            let mut checked = 0;
            for f in &c.families {
                for s in &f.samples {
                    let fits = match f.def.kind {
                        MetricType::Histogram => {
                            as_u64(Part::Count, &s.value).is_some()
                                && as_f64(Part::Sum, &s.value).is_some()
                        }
                        _ if is_real(f.def) => as_f64(Part::Value, &s.value).is_some(),
                        _ => as_u64(Part::Value, &s.value).is_some(),
                    };
                    assert!(fits, "{} {:?}", f.def.otel, s.value);
                    checked += 1;
                }
            }
            assert!(checked >= 8, "{checked} samples");
        }
        let mut h = crate::stats::histogram::HistogramSnapshot::default();
        h.buckets[0] = 2;
        h.sum_ns = 1_500_000_000;
        let h = Value::Histogram(h);
        assert_eq!(as_u64(Part::Count, &h), Some(2));
        assert_eq!(as_f64(Part::Sum, &h), Some(1.5));
        assert_eq!(as_u64(Part::Value, &h), None);
        assert_eq!(as_u64(Part::Value, &Value::Float(0.5)), None);
    }
}
