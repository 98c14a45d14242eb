//! The Grafana dashboards in `dashboards/`, read as data: their panels, targets and template
//! variables; the metric names and labels their PromQL uses; and their queries with the
//! variables substituted the way Grafana substitutes them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use pollwatch::names::{self, MetricDef, MetricType};

/// Labels every series may carry besides its own: pollwatch's `runtime` and the target
/// labels Prometheus adds.
pub const SERIES_LABELS: &[&str] = &[names::RUNTIME_LABEL, "job", "instance"];

/// What every panel and target names as its datasource: the dashboard's datasource variable.
pub const DATASOURCE_UID: &str = "${datasource}";

/// One dashboard file.
pub struct Dashboard {
    /// File name, for messages.
    pub file: String,
    pub json: Value,
}

/// Every `*.json` under `dashboards/`, parsed (panics with the file and the error if one is
/// not JSON). At least the two this crate ships.
#[track_caller]
pub fn load_all() -> Vec<Dashboard> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let all: Vec<_> = files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            Dashboard {
                file: p.file_name().unwrap().to_string_lossy().into_owned(),
                json,
            }
        })
        .collect();
    let names: Vec<_> = all.iter().map(|d| d.file.as_str()).collect();
    for shipped in ["pollwatch-runtime.json", "pollwatch-stalls.json"] {
        assert!(names.contains(&shipped), "{shipped} missing: {names:?}");
    }
    all
}

impl Dashboard {
    /// Every panel, rows included, with the panels of collapsed rows.
    #[track_caller]
    pub fn panels(&self) -> Vec<&Value> {
        let mut out = Vec::new();
        for p in self.json["panels"].as_array().expect("panels") {
            out.push(p);
            if let Some(inner) = p["panels"].as_array() {
                out.extend(inner);
            }
        }
        out
    }

    /// The template variables, in order.
    pub fn variables(&self) -> &[Value] {
        self.json["templating"]["list"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The dashboard's default time range, in seconds (`now-1h` → 3600).
    #[track_caller]
    pub fn range(&self) -> Duration {
        let from = self.json["time"]["from"].as_str().expect("time.from");
        assert_eq!(self.json["time"]["to"], "now", "{}", self.file);
        let ago = from
            .strip_prefix("now-")
            .unwrap_or_else(|| panic!("{}: time.from {from}", self.file));
        parse_duration(ago).unwrap_or_else(|| panic!("{}: time.from {from}", self.file))
    }
}

/// The PromQL query of a query variable (either the plain string form or Grafana 10's
/// object form).
pub fn variable_query(v: &Value) -> Option<&str> {
    v["query"].as_str().or_else(|| v["query"]["query"].as_str())
}

/// A panel's queries.
pub fn exprs(panel: &Value) -> Vec<&str> {
    panel["targets"]
        .as_array()
        .map(|ts| ts.iter().filter_map(|t| t["expr"].as_str()).collect())
        .unwrap_or_default()
}

/// `1h`, `15m`, `30s`, `500ms`, `2d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = s[..digits].parse().ok()?;
    let ms = match &s[digits..] {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(n * ms))
}

/// A duration as PromQL and Grafana write it: whole seconds as `Ns`, else `Nms`.
pub fn format_duration(d: Duration) -> String {
    if d.as_millis() % 1000 == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

// ---- PromQL, read just far enough to know which names and labels a query uses ----

/// A series selector: `metric{label op "value", …}`.
#[derive(Debug, Clone)]
pub struct Selector {
    pub metric: String,
    /// `(label, operator, value)`.
    pub matchers: Vec<(String, String, String)>,
}

/// An aggregation's `by (labels)` and the series selectors inside its argument.
#[derive(Debug)]
pub struct Grouping {
    pub labels: Vec<String>,
    pub metrics: Vec<String>,
}

/// What a query uses.
#[derive(Debug, Default)]
pub struct Query {
    pub selectors: Vec<Selector>,
    pub groupings: Vec<Grouping>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Number,
    /// The inside of `[…]`.
    Range(String),
    Punct(char),
    Op(String),
}

/// Aggregation operators (they take `by (…)`).
const AGGREGATIONS: &[&str] = &[
    "sum", "avg", "min", "max", "count", "topk", "bottomk", "quantile", "stddev", "group",
];
/// Functions the dashboards may call (anything else is a typo or needs a look).
const FUNCTIONS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "deriv",
    "histogram_quantile",
    "clamp_min",
    "clamp_max",
    "max_over_time",
    "min_over_time",
    "avg_over_time",
    "abs",
];
/// Binary-operator keywords.
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset"];

fn tokenize(q: &str) -> Result<Vec<Tok>, String> {
    let b: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(format!("unterminated string in {q}")),
                    Some('\\') => {
                        s.push(*b.get(i + 1).ok_or("dangling escape")?);
                        i += 2;
                    }
                    Some(&e) if e == c => {
                        i += 1;
                        break;
                    }
                    Some(&o) => {
                        s.push(o);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c == '[' {
            let end = b[i..]
                .iter()
                .position(|&x| x == ']')
                .ok_or_else(|| format!("unclosed [ in {q}"))?;
            out.push(Tok::Range(b[i + 1..i + end].iter().collect()));
            i += end + 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == ':') {
                i += 1;
            }
            out.push(Tok::Ident(b[start..i].iter().collect()));
        } else if c.is_ascii_digit() || c == '.' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '.') {
                i += 1;
            }
            out.push(Tok::Number);
        } else if "(){},".contains(c) {
            out.push(Tok::Punct(c));
            i += 1;
        } else if "=!~<>+-*/^%".contains(c) {
            let start = i;
            while i < b.len() && "=!~<>+-*/^%".contains(b[i]) {
                i += 1;
            }
            out.push(Tok::Op(b[start..i].iter().collect()));
        } else {
            return Err(format!("unexpected {c:?} in {q}"));
        }
    }
    Ok(out)
}

/// The index of the `)` that closes the `(` at `open`.
fn closing(toks: &[Tok], open: usize) -> Result<usize, String> {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
    }
    Err("unbalanced parentheses".into())
}

/// Reads `( a, b, … )` starting at `open`; returns the names and the index after `)`.
fn label_list(toks: &[Tok], open: usize) -> Result<(Vec<String>, usize), String> {
    if toks.get(open) != Some(&Tok::Punct('(')) {
        return Err("`by` without a label list".into());
    }
    let close = closing(toks, open)?;
    let mut labels = Vec::new();
    for t in &toks[open + 1..close] {
        match t {
            Tok::Ident(l) => labels.push(l.clone()),
            Tok::Punct(',') => {}
            other => return Err(format!("{other:?} in a label list")),
        }
    }
    Ok((labels, close + 1))
}

/// The series selectors and `by` groupings of `q`. Strict about shape: aggregations must
/// be written `agg by (labels) (expr)`, functions must be known ones, and every series
/// must be selected by metric name.
pub fn parse(q: &str) -> Result<Query, String> {
    let toks = tokenize(q)?;
    let mut query = Query::default();
    // (labels, argument token span) of each grouping; metrics are filled in at the end.
    let mut spans = Vec::new();
    let mut positions = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(w) if KEYWORDS.contains(&w.as_str()) => i += 1,
            Tok::Ident(w) if w == "by" || w == "without" => {
                return Err(format!(
                    "`{w}` must follow an aggregation and come before its argument in {q}"
                ))
            }
            Tok::Ident(w) if AGGREGATIONS.contains(&w.as_str()) => match toks.get(i + 1) {
                Some(Tok::Ident(by)) if by == "by" => {
                    let (labels, arg) = label_list(&toks, i + 2)?;
                    if toks.get(arg) != Some(&Tok::Punct('(')) {
                        return Err(format!("`{w} by (…)` without an argument in {q}"));
                    }
                    let end = closing(&toks, arg)?;
                    if matches!(toks.get(end + 1), Some(Tok::Ident(x)) if x == "by" || x == "without")
                    {
                        return Err(format!("two groupings on one `{w}` in {q}"));
                    }
                    spans.push((labels, arg, end));
                    i = arg;
                }
                Some(Tok::Ident(w2)) if w2 == "without" => {
                    return Err(format!("use `by`, not `without`, in {q}"))
                }
                Some(Tok::Punct('(')) => {
                    let end = closing(&toks, i + 1)?;
                    if matches!(toks.get(end + 1), Some(Tok::Ident(x)) if x == "by" || x == "without")
                    {
                        return Err(format!(
                            "write `{w} by (…) (expr)`, not `{w} (expr) by (…)`, in {q}"
                        ));
                    }
                    i += 1;
                }
                _ => return Err(format!("`{w}` without an argument in {q}")),
            },
            Tok::Ident(w) if toks.get(i + 1) == Some(&Tok::Punct('(')) => {
                if !FUNCTIONS.contains(&w.as_str()) {
                    return Err(format!("unknown function `{w}` in {q}"));
                }
                i += 1;
            }
            Tok::Ident(metric) => {
                let mut matchers = Vec::new();
                i += 1;
                if toks.get(i) == Some(&Tok::Punct('{')) {
                    i += 1;
                    loop {
                        match (toks.get(i), toks.get(i + 1), toks.get(i + 2)) {
                            (Some(Tok::Punct('}')), _, _) => {
                                i += 1;
                                break;
                            }
                            (Some(Tok::Ident(l)), Some(Tok::Op(op)), Some(Tok::Str(v)))
                                if ["=", "!=", "=~", "!~"].contains(&op.as_str()) =>
                            {
                                matchers.push((l.clone(), op.clone(), v.clone()));
                                i += 3;
                                if toks.get(i) == Some(&Tok::Punct(',')) {
                                    i += 1;
                                }
                            }
                            _ => return Err(format!("bad label matcher in {q}")),
                        }
                    }
                }
                positions.push(i);
                query.selectors.push(Selector {
                    metric: metric.clone(),
                    matchers,
                });
            }
            Tok::Punct('{') => return Err(format!("a selector without a metric name in {q}")),
            _ => i += 1,
        }
    }
    for (labels, start, end) in spans {
        let metrics = query
            .selectors
            .iter()
            .zip(&positions)
            .filter(|(_, &p)| p > start && p <= end)
            .map(|(s, _)| s.metric.clone())
            .collect();
        query.groupings.push(Grouping { labels, metrics });
    }
    Ok(query)
}

/// The name-table entry a series name belongs to (a histogram's `_bucket`, `_sum` and
/// `_count` belong to the histogram), and whether it is the `_bucket` series.
pub fn metric_of(series: &str) -> Option<(&'static MetricDef, bool)> {
    if let Some(def) = names::by_prometheus_name(series) {
        return Some((def, false));
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(def) = series
            .strip_suffix(suffix)
            .and_then(names::by_prometheus_name)
        {
            if def.kind == MetricType::Histogram {
                return Some((def, suffix == "_bucket"));
            }
        }
    }
    None
}

/// Whether series `series` can carry label `label`.
pub fn has_label(series: &str, label: &str) -> bool {
    let Some((def, bucket)) = metric_of(series) else {
        return false;
    };
    def.labels.contains(&label) || SERIES_LABELS.contains(&label) || (bucket && label == "le")
}

// ---- Substitution, as Grafana does it ----

/// Grafana's `prometheusSpecialRegexEscape`: a value of a multi-value variable inside a
/// regex matcher (the escapes are doubled because they sit in a PromQL string).
pub fn regex_escape(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\\\\\"),
            '$' | '^' | '*' | '{' | '}' | '[' | ']' | '\'' | '+' | '?' | '.' | '(' | ')' | '|' => {
                out.push_str("\\\\");
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// What Grafana puts for a multi-value, include-all variable with every value selected
/// (`All`, no custom all value): one escaped value, or `(a|b|…)`.
pub fn all_values(values: &[String]) -> String {
    let escaped: Vec<_> = values.iter().map(|v| regex_escape(v)).collect();
    if escaped.len() == 1 {
        escaped[0].clone()
    } else {
        format!("({})", escaped.join("|"))
    }
}

/// Grafana's `roundInterval` (below an hour): the `$__interval` a panel gets for a raw
/// interval (range ÷ data points).
pub fn round_interval(raw: Duration) -> Duration {
    let ms = raw.as_millis() as u64;
    const STEPS: &[(u64, u64)] = &[
        (15, 10),
        (35, 20),
        (75, 50),
        (150, 100),
        (350, 200),
        (750, 500),
        (1_500, 1_000),
        (3_500, 2_000),
        (7_500, 5_000),
        (12_500, 10_000),
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (210_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
    ];
    let rounded = STEPS
        .iter()
        .find(|(below, _)| ms < *below)
        .map(|(_, to)| *to)
        .unwrap_or(3_600_000);
    Duration::from_millis(rounded)
}

/// The built-in interval variables Grafana gives one panel.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    pub interval: Duration,
    pub rate_interval: Duration,
    pub range: Duration,
}

/// How Grafana computes them for a panel `width` grid units wide (of 24, on a 1920-pixel
/// screen, so one data point per pixel) over `range`, with the datasource's scrape
/// interval set to `scrape`: `$__interval` is the rounded range per data point, at least the
/// scrape interval; `$__rate_interval` is max(`$__interval` + scrape, 4 × scrape).
pub fn intervals(range: Duration, width: u64, scrape: Duration) -> Intervals {
    let points = (width * 1920 / 24).max(1);
    let interval = round_interval(range / points as u32).max(scrape);
    Intervals {
        interval,
        rate_interval: (interval + scrape).max(scrape * 4),
        range,
    }
}

/// `text` with `$__rate_interval`, `$__interval`, `$__range` and the template variables
/// (`$name`, `${name}`) replaced by `vars`' values (already formatted).
pub fn substitute(text: &str, vars: &BTreeMap<String, String>, iv: Intervals) -> String {
    let mut all: Vec<(String, String)> = vec![
        ("__rate_interval".into(), format_duration(iv.rate_interval)),
        ("__interval".into(), format_duration(iv.interval)),
        ("__range".into(), format_duration(iv.range)),
    ];
    all.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    // Longest names first, so `$__rate_interval` is not read as `$__rate…`.
    all.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    let mut out = text.to_string();
    for (name, value) in &all {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("${name}"), value);
    }
    out
}

/// Every variable reference (`$name`, `${name}`, `${name:format}`, `[[name]]`) in any
/// string of `v`.
pub fn variable_references(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_references(v, &mut out);
    out.sort();
    out.dedup();
    out
}

fn collect_references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let b = s.as_bytes();
            let name_at = |from: usize| -> String {
                s[from..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            };
            for (i, _) in s.match_indices('$') {
                if b.get(i + 1) == Some(&b'{') {
                    out.push(name_at(i + 2));
                } else {
                    out.push(name_at(i + 1));
                }
            }
            for (i, _) in s.match_indices("[[") {
                out.push(name_at(i + 2));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_references(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_references(x, out)),
        _ => {}
    }
}
