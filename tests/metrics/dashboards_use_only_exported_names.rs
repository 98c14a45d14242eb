//! The Grafana dashboards in `dashboards/` are consistent with what the agent exports and
//! with themselves, read as plain JSON (no server): every metric a query names is in
//! `pollwatch::names::METRICS` and every label it matches or groups by exists on that
//! metric; panels have unique ids and do not overlap; every panel and target uses the
//! datasource variable; every variable used is defined; every panel says what it shows, in
//! which unit, and, when only hooked mode or `tokio_unstable` can fill it, says so.

use crate::support;

use std::collections::BTreeSet;

use pollwatch::names::Availability;
use serde_json::Value;
use support::dashboards::{self, Dashboard, DATASOURCE_UID};

fn non_row_panels(d: &Dashboard) -> Vec<&Value> {
    d.panels()
        .into_iter()
        .filter(|p| p["type"] != "row")
        .collect()
}

#[test]
fn panel_ids_are_unique_and_panels_do_not_overlap() {
    let _serial = support::serial();
    for d in dashboards::load_all() {
        let panels = d.panels();
        assert!(panels.len() >= 10, "{}: {} panels", d.file, panels.len());
        let mut ids = BTreeSet::new();
        let mut rects = Vec::new();
        for p in &panels {
            let id = p["id"].as_u64().expect("numeric id");
            assert!(ids.insert(id), "{}: panel id {id} twice", d.file);
            let g = &p["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
                g[k].as_u64()
                    .unwrap_or_else(|| panic!("{}: panel {id} gridPos.{k}", d.file))
            });
            assert!(w > 0 && h > 0 && x + w <= 24, "{}: panel {id} {g}", d.file);
            rects.push((id, x, y, w, h));
        }
        for (i, a) in rects.iter().enumerate() {
            for b in &rects[i + 1..] {
                let apart =
                    a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1 || a.2 + a.4 <= b.2 || b.2 + b.4 <= a.2;
                assert!(
                    apart,
                    "{}: panels {} and {} overlap: {a:?} {b:?}",
                    d.file, a.0, b.0
                );
            }
        }
    }
}

#[test]
fn every_query_uses_only_exported_metrics_and_their_labels() {
    let _serial = support::serial();
    let mut used = BTreeSet::new();
    for d in dashboards::load_all() {
        // (where, query, whether it must filter by the runtime variable)
        let mut queries: Vec<(String, &str, bool)> = Vec::new();
        for p in d.panels() {
            for e in dashboards::exprs(p) {
                queries.push((format!("panel {} ({})", p["id"], p["title"]), e, true));
            }
        }
        for v in d.variables() {
            if v["type"] == "query" {
                let q = dashboards::variable_query(v).expect("variable query");
                let inner = q
                    .strip_prefix("label_values(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|r| r.rsplit_once(','))
                    .unwrap_or_else(|| panic!("{}: variable query {q}", d.file));
                let (selector, label) = (inner.0.trim(), inner.1.trim());
                let metric = selector.split('{').next().unwrap();
                assert!(
                    dashboards::has_label(metric, label),
                    "{}: variable {} reads label {label} that {metric} does not have",
                    d.file,
                    v["name"]
                );
                queries.push((format!("variable {}", v["name"]), selector, false));
            }
        }
        assert!(queries.len() >= 10, "{}", d.file);
        for (place, q, by_runtime) in queries {
            let parsed =
                dashboards::parse(q).unwrap_or_else(|e| panic!("{}: {place}: {e}", d.file));
            assert!(
                !parsed.selectors.is_empty(),
                "{}: {place}: no metric in {q}",
                d.file
            );
            for s in &parsed.selectors {
                let (def, _) = dashboards::metric_of(&s.metric).unwrap_or_else(|| {
                    panic!(
                        "{}: {place}: `{}` is not in pollwatch::names::METRICS: {q}",
                        d.file, s.metric
                    )
                });
                used.insert(def.prometheus);
                for (label, _, _) in &s.matchers {
                    assert!(
                        dashboards::has_label(&s.metric, label),
                        "{}: {place}: {} has no label `{label}`: {q}",
                        d.file,
                        s.metric
                    );
                }
                let runtime = s
                    .matchers
                    .iter()
                    .any(|(l, op, v)| l == "runtime" && op == "=~" && v == "$runtime");
                assert!(
                    runtime || !by_runtime,
                    "{}: {place}: {} not filtered by runtime=~\"$runtime\": {q}",
                    d.file,
                    s.metric
                );
            }
            for g in &parsed.groupings {
                for label in &g.labels {
                    for m in &g.metrics {
                        assert!(
                            dashboards::has_label(m, label),
                            "{}: {place}: by ({label}) but {m} has no such label: {q}",
                            d.file
                        );
                    }
                }
            }
        }
    }
    // The dashboards together show every metric the agent exports.
    let missing: Vec<_> = pollwatch::names::METRICS
        .iter()
        .map(|m| m.prometheus)
        .filter(|m| !used.contains(m))
        .collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
}

#[test]
fn every_panel_and_target_uses_the_datasource_variable() {
    let _serial = support::serial();
    for d in dashboards::load_all() {
        let list = d.variables();
        let ds = list
            .iter()
            .find(|v| v["type"] == "datasource")
            .unwrap_or_else(|| panic!("{}: no datasource variable", d.file));
        assert_eq!(ds["name"], "datasource", "{}", d.file);
        assert_eq!(ds["query"], "prometheus", "{}", d.file);
        let is_ours = |v: &Value| v["type"] == "prometheus" && v["uid"] == DATASOURCE_UID;
        for p in d.panels() {
            if p["type"] == "row" {
                assert!(
                    p["targets"].is_null(),
                    "{}: row {} has targets",
                    d.file,
                    p["id"]
                );
                continue;
            }
            assert!(
                is_ours(&p["datasource"]),
                "{}: panel {}: {}",
                d.file,
                p["id"],
                p["datasource"]
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(
                !targets.is_empty(),
                "{}: panel {} has no query",
                d.file,
                p["id"]
            );
            for t in targets {
                assert!(
                    is_ours(&t["datasource"]),
                    "{}: panel {} target {t}",
                    d.file,
                    p["id"]
                );
                assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{t}");
            }
        }
        for v in list.iter().filter(|v| v["type"] == "query") {
            assert!(
                is_ours(&v["datasource"]),
                "{}: variable {}",
                d.file,
                v["name"]
            );
        }
    }
}

#[test]
fn the_runtime_variable_lists_runtimes_and_every_used_variable_is_defined() {
    let _serial = support::serial();
    for d in dashboards::load_all() {
        assert_eq!(d.json["schemaVersion"].as_u64(), Some(39), "{}", d.file);
        assert!(
            d.json["uid"].as_str().is_some_and(|u| u.len() <= 40),
            "{}",
            d.file
        );
        let defined: Vec<&str> = d
            .variables()
            .iter()
            .map(|v| v["name"].as_str().expect("variable name"))
            .collect();
        let runtime = d
            .variables()
            .iter()
            .find(|v| v["name"] == "runtime")
            .unwrap_or_else(|| panic!("{}: no runtime variable", d.file));
        let q = dashboards::variable_query(runtime).unwrap();
        assert!(
            q.starts_with("label_values(pollwatch_info") && q.ends_with(", runtime)"),
            "{}: {q}",
            d.file
        );
        assert_eq!(runtime["multi"], true, "{}", d.file);
        assert_eq!(runtime["includeAll"], true, "{}", d.file);
        for name in dashboards::variable_references(&d.json) {
            if name.starts_with("__") {
                continue; // Grafana's built-ins: $__rate_interval, ${__url_time_range}, …
            }
            assert!(
                defined.contains(&name.as_str()),
                "{}: ${name} is used but not defined",
                d.file
            );
        }
        for (i, v) in d.variables().iter().enumerate() {
            let Some(q) = dashboards::variable_query(v) else {
                continue;
            };
            // A variable's query may only use the variables defined before it.
            for name in dashboards::variable_references(&Value::String(q.to_string())) {
                assert!(defined[..i].contains(&name.as_str()), "{}: {q}", d.file);
            }
        }
    }
}

#[test]
fn every_panel_says_what_it_shows_its_unit_and_which_mode_fills_it() {
    let _serial = support::serial();
    for d in dashboards::load_all() {
        for p in non_row_panels(&d) {
            let id = &p["id"];
            let description = p["description"].as_str().unwrap_or("");
            assert!(
                description.len() >= 60,
                "{}: panel {id} needs a description",
                d.file
            );
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            assert!(!unit.is_empty(), "{}: panel {id} has no unit", d.file);
            let mut needs = Vec::new();
            for e in dashboards::exprs(p) {
                for s in dashboards::parse(e).unwrap().selectors {
                    needs.push(
                        dashboards::metric_of(&s.metric)
                            .expect("a name from the table (checked above)")
                            .0
                            .availability,
                    );
                }
            }
            let title = p["title"].as_str().unwrap_or("");
            if needs.contains(&Availability::Hooked) {
                assert!(
                    title.contains("(hooked mode)") && description.contains("Hooked mode only"),
                    "{}: panel {id} ({title}) needs hooked mode and must say so",
                    d.file
                );
            } else if needs.contains(&Availability::TokioUnstable) {
                assert!(
                    title.contains("(tokio_unstable)")
                        && description.contains("--cfg tokio_unstable"),
                    "{}: panel {id} ({title}) needs tokio_unstable and must say so",
                    d.file
                );
            } else {
                assert!(
                    !title.contains("hooked") && !title.contains("tokio_unstable"),
                    "{}: panel {id} ({title}) works in every mode",
                    d.file
                );
            }
        }
    }
}

#[test]
fn the_query_reader_catches_wrong_names_and_labels() {
    let _serial = support::serial();
    // The checks above are only as good as this reader: it must find what a query uses.
    let q = dashboards::parse(
        "topk(10, sum by (runtime, code_file_path) (rate(tokio_stalls_total{runtime=~\"$runtime\", kind=\"cpu\"}[$__rate_interval])))",
    )
    .unwrap();
    assert_eq!(q.selectors.len(), 1);
    assert_eq!(q.selectors[0].metric, "tokio_stalls_total");
    assert_eq!(
        q.selectors[0].matchers[1],
        ("kind".into(), "=".into(), "cpu".into())
    );
    assert_eq!(q.groupings[0].labels, ["runtime", "code_file_path"]);
    assert_eq!(q.groupings[0].metrics, ["tokio_stalls_total"]);
    let h = dashboards::parse(
        "histogram_quantile(0.99, sum by (runtime, le) (rate(tokio_stall_duration_seconds_bucket{runtime=~\"$runtime\"}[4s]))) / tokio_workers",
    )
    .unwrap();
    assert_eq!(h.selectors.len(), 2);
    assert_eq!(
        h.groupings[0].metrics,
        ["tokio_stall_duration_seconds_bucket"]
    );
    assert!(dashboards::has_label(
        "tokio_stall_duration_seconds_bucket",
        "le"
    ));
    assert!(!dashboards::has_label(
        "tokio_stall_duration_seconds_sum",
        "le"
    ));
    assert!(!dashboards::has_label("tokio_workers", "worker"));
    assert!(dashboards::has_label(
        "tokio_worker_busy_time_seconds_total",
        "worker"
    ));
    assert!(
        dashboards::metric_of("tokio_worker_count").is_none(),
        "the old name is gone"
    );
    assert!(
        dashboards::metric_of("tokio_workers_bucket").is_none(),
        "not a histogram"
    );
    for bad in [
        "sum(rate(x[1m])) by (runtime)",
        "sum without (worker) (tokio_workers)",
        "rates(tokio_workers[1m])",
        "{__name__=\"tokio_workers\"}",
        "tokio_workers{runtime=~}",
    ] {
        assert!(dashboards::parse(bad).is_err(), "accepted {bad}");
    }
    let vars = dashboards::variable_references(&Value::String(
        "a{job=~\"$job\", x=\"${instance:regex}\"}[$__range] [[old]]".into(),
    ));
    assert_eq!(vars, ["__range", "instance", "job", "old"]);
    assert_eq!(
        dashboards::regex_escape("127.0.0.1:9"),
        "127\\\\.0\\\\.0\\\\.1:9"
    );
    assert_eq!(
        dashboards::all_values(&["a".into(), "b.c".into()]),
        "(a|b\\\\.c)"
    );
}

#[test]
fn intervals_follow_grafanas_rules_for_a_one_second_scrape() {
    let _serial = support::serial();
    let s = std::time::Duration::from_secs(1);
    let hour = std::time::Duration::from_secs(3600);
    // 3600 s over 960 points = 3.75 s → 5 s; rate interval max(5 + 1, 4) = 6 s.
    let iv = dashboards::intervals(hour, 12, s);
    assert_eq!(dashboards::format_duration(iv.interval), "5s");
    assert_eq!(dashboards::format_duration(iv.rate_interval), "6s");
    // 15 min over 960 points is under a second: the scrape interval is the floor.
    let iv = dashboards::intervals(std::time::Duration::from_secs(900), 12, s);
    assert_eq!(dashboards::format_duration(iv.interval), "1s");
    assert_eq!(dashboards::format_duration(iv.rate_interval), "4s");
}
