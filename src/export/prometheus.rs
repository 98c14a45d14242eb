//! The Prometheus text exposition format, version 0.0.4, written by hand: no dependency,
//! one pass, one allocation that grows to the output's size.
//!
//! Every family that applies is written with its `# HELP` and `# TYPE` lines even when it has
//! no series yet (a stall counter before the first stall), so a scraper sees the whole
//! contract from the first scrape.

use std::fmt::Write;
use std::sync::OnceLock;

use crate::names::{MetricType, RUNTIME_LABEL};
use crate::sampler::{Collection, Sample, Value};
use crate::stats::histogram::{HistogramSnapshot, BUCKET_BOUNDS_NS};

/// The `Content-Type` of the output.
#[cfg(feature = "http")]
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes `c` in the text format.
pub(crate) fn encode(c: &Collection) -> String {
    // Sized for the usual output (a histogram is 22 lines) so it is not regrown and copied.
    let lines: usize = c
        .families
        .iter()
        .map(|f| {
            2 + f.samples.len()
                * if f.def.kind == MetricType::Histogram {
                    22
                } else {
                    1
                }
        })
        .sum();
    let mut out = String::with_capacity(lines * 128);
    let runtime = escape_label_value(&c.runtime);
    for family in &c.families {
        let def = family.def;
        let name = def.prometheus;
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        escape_help_into(def.help, &mut out);
        out.push('\n');
        let _ = writeln!(out, "# TYPE {name} {}", def.kind.as_str());
        for sample in &family.samples {
            match (&sample.value, def.kind) {
                (Value::Histogram(h), MetricType::Histogram) => {
                    write_histogram(&mut out, name, &runtime, def.labels, sample, h)
                }
                (v, _) => {
                    write_series(&mut out, name, "", &runtime, def.labels, sample, None);
                    write_value(&mut out, v);
                }
            }
        }
    }
    out
}

fn write_histogram(
    out: &mut String,
    name: &str,
    runtime: &str,
    labels: &[&str],
    sample: &Sample,
    h: &HistogramSnapshot,
) {
    for ((_, cumulative), le) in h.cumulative().zip(le_values()) {
        write_series(out, name, "_bucket", runtime, labels, sample, Some(le));
        let _ = writeln!(out, "{cumulative}");
    }
    let count = h.count();
    write_series(out, name, "_bucket", runtime, labels, sample, Some("+Inf"));
    let _ = writeln!(out, "{count}");
    write_series(out, name, "_sum", runtime, labels, sample, None);
    write_value(out, &Value::Float(h.sum_seconds()));
    write_series(out, name, "_count", runtime, labels, sample, None);
    let _ = writeln!(out, "{count}");
}

/// `name{runtime="…",label="…",le="…"} ` (with the trailing space).
fn write_series(
    out: &mut String,
    name: &str,
    suffix: &str,
    runtime: &str,
    labels: &[&str],
    sample: &Sample,
    le: Option<&str>,
) {
    out.push_str(name);
    out.push_str(suffix);
    out.push('{');
    out.push_str(RUNTIME_LABEL);
    out.push_str("=\"");
    out.push_str(runtime);
    out.push('"');
    for (label, value) in labels.iter().zip(&sample.labels) {
        out.push(',');
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value_into(value, out);
        out.push('"');
    }
    if let Some(le) = le {
        out.push_str(",le=\"");
        out.push_str(le);
        out.push('"');
    }
    out.push_str("} ");
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Int(n) => {
            let _ = writeln!(out, "{n}");
        }
        Value::Float(f) => {
            out.push_str(&format_float(*f));
            out.push('\n');
        }
        // A histogram value on a non-histogram family cannot be built by the sampler (a
        // test checks the kinds); write its count rather than nothing.
        Value::Histogram(h) => {
            let _ = writeln!(out, "{}", h.count());
        }
    }
}

/// A float as Prometheus reads it: `NaN`, `+Inf`, `-Inf`, else Rust's shortest round-trip
/// form (never an exponent).
pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        f.to_string()
    }
}

/// The `le` label values of the finite buckets, in seconds.
fn le_values() -> impl Iterator<Item = &'static str> {
    static LE: OnceLock<Vec<String>> = OnceLock::new();
    LE.get_or_init(|| {
        BUCKET_BOUNDS_NS
            .iter()
            .map(|ns| format_float(*ns as f64 / 1e9))
            .collect()
    })
    .iter()
    .map(String::as_str)
}

/// A label value with `\`, `"` and newlines escaped, as the format requires.
pub(crate) fn escape_label_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    escape_label_value_into(v, &mut s);
    s
}

fn escape_label_value_into(v: &str, out: &mut String) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v); // the common case: nothing to escape
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes `\` and newlines (quotes stay as they are).
fn escape_help_into(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;
    use crate::sampler::Family;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            escape_label_value("C:\\src\\a \"b\"\nc"),
            "C:\\\\src\\\\a \\\"b\\\"\\nc"
        );
        let mut help = String::new();
        escape_help_into("a \\ \"b\"\nc", &mut help);
        assert_eq!(help, "a \\\\ \"b\"\\nc");
    }

    #[test]
    fn floats_are_written_as_prometheus_reads_them() {
        assert_eq!(format_float(0.00001), "0.00001");
        assert_eq!(format_float(2.5), "2.5");
        assert_eq!(format_float(10.0), "10");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        let les: Vec<_> = le_values().collect();
        assert_eq!(les.first(), Some(&"0.00001"));
        assert_eq!(les.last(), Some(&"10"));
        assert_eq!(les.len(), BUCKET_BOUNDS_NS.len());
    }

    #[test]
    fn series_histograms_and_escaping_in_the_output() {
        let mut h = HistogramSnapshot::default();
        h.buckets[0] = 2;
        h.buckets[3] = 1;
        h.buckets[crate::stats::histogram::NUM_BUCKETS - 1] = 1;
        h.sum_ns = 1_500_000_000;
        let c = Collection {
            runtime: "we\"ird\\rt".into(),
            families: vec![
                Family {
                    def: &names::STALLS,
                    samples: vec![Sample {
                        labels: vec!["cpu".into(), "src/a\"b.rs".into(), "7".into()],
                        value: Value::Int(3),
                    }],
                },
                Family {
                    def: &names::STALL_DURATION,
                    samples: vec![Sample {
                        labels: vec![],
                        value: Value::Histogram(h),
                    }],
                },
                Family {
                    def: &names::WORKER_STALLED,
                    samples: vec![],
                },
            ],
        };
        let text = encode(&c);
        let rt = r#"runtime="we\"ird\\rt""#;
        assert!(text.contains(&format!(
            "tokio_stalls_total{{{rt},kind=\"cpu\",code_file_path=\"src/a\\\"b.rs\",code_line_number=\"7\"}} 3\n"
        )), "{text}");
        assert!(
            text.contains(&format!(
                "tokio_stall_duration_seconds_bucket{{{rt},le=\"0.00001\"}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "tokio_stall_duration_seconds_bucket{{{rt},le=\"0.0001\"}} 3\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "tokio_stall_duration_seconds_bucket{{{rt},le=\"10\"}} 3\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "tokio_stall_duration_seconds_bucket{{{rt},le=\"+Inf\"}} 4\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("tokio_stall_duration_seconds_sum{{{rt}}} 1.5\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("tokio_stall_duration_seconds_count{{{rt}}} 4\n")),
            "{text}"
        );
        assert!(
            text.contains("# TYPE tokio_worker_stalled gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP tokio_worker_stalled Workers stuck"),
            "{text}"
        );
        assert!(text.ends_with('\n'));
    }
}
