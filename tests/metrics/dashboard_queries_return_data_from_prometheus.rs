//! Every query of the Grafana dashboards in `dashboards/`, run against a real Prometheus (the
//! Debian `prometheus` package) that scrapes an app running the agent every second: hooked
//! mode (`build_runtime`) in the `--cfg tokio_unstable` build, attach mode (`attach`) on
//! stable tokio. The app stalls its workers (a sleep and a busy loop, from two spawn
//! locations), churns short tasks from a third, leaks tasks from a fourth and uses the
//! blocking pool.
//!
//! Queries are sent the way Grafana sends them: template variables first (each must list
//! this app's values; `runtime` must list the runtime), then every panel target with the
//! variables at "All" and `$__interval`, `$__rate_interval`, `$__range` as Grafana computes
//! them for the panel's width, the dashboard's time range and a 1 s scrape interval; to
//! `/api/v1/query`, and to `/api/v1/query_range` for time-series panels. Each must succeed
//! without warnings. A panel whose metrics all apply to the running mode must return data
//! (a range query: at least one finite value); a panel that needs another mode or build
//! must return nothing, as its description says. And the stalls dashboard shows what the app
//! did: stalls of both kinds; in hooked mode, the two stalling spawn locations, and the
//! leaking location on top of live tasks and of live-task growth.

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::dashboards::{self, Dashboard};
use support::prometheus::{Prometheus, SCRAPE_INTERVAL};
use support::scrape;

const RUNTIME: &str = "dashtest";

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `data` of a successful API answer with no warnings, or why not.
fn api(prom: &Prometheus, path: &str) -> Result<Value, String> {
    let v = prom.get(path)?;
    if v["status"] != "success" {
        return Err(format!("not a success: {v}"));
    }
    if v["warnings"].as_array().is_some_and(|w| !w.is_empty()) {
        return Err(format!("warnings: {}", v["warnings"]));
    }
    Ok(v["data"].clone())
}

/// Where the workload spawns its leaking tasks and its two kinds of stall: (file, line).
#[derive(Clone, Debug, Default)]
struct SpawnLines {
    leak: (String, String),
    sleep: (String, String),
    busy: (String, String),
}

/// `support::next_line` ("file:line:") as label values.
fn file_line(next_line: String) -> (String, String) {
    let (file, line) = next_line.trim_end_matches(':').rsplit_once(':').unwrap();
    (file.to_string(), line.to_string())
}

/// A task that lives until `release` is notified; returns its spawn location.
fn spawn_leak(release: Arc<tokio::sync::Notify>) -> (String, String) {
    let at = support::next_line(file!(), line!());
    tokio::spawn(async move { release.notified().await });
    file_line(at)
}

/// A task that blocks its worker off the CPU; returns its spawn location.
fn spawn_sleep() -> (String, String) {
    let at = support::next_line(file!(), line!());
    tokio::spawn(async { std::thread::sleep(Duration::from_millis(150)) });
    file_line(at)
}

/// A task that blocks its worker on the CPU; returns its spawn location.
fn spawn_busy() -> (String, String) {
    let at = support::next_line(file!(), line!());
    tokio::spawn(async { support::busy_for(Duration::from_millis(150)) });
    file_line(at)
}

/// The app's load, until `running` drops (and 90 s at most). Each kind of task has its own
/// spawn location, recorded in `lines`.
async fn workload(running: Arc<AtomicBool>, lines: Arc<std::sync::Mutex<SpawnLines>>) {
    let start = Instant::now();
    let leak_release = Arc::new(tokio::sync::Notify::new());
    let mut round = 0u64;
    while running.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(90) {
        round += 1;
        // Churn: short tasks that finish.
        for _ in 0..20 {
            tokio::spawn(async {
                tokio::task::yield_now().await;
            });
        }
        // A leak: one task every 200 ms that waits until the end of the test.
        if round % 10 == 0 {
            lines.lock().unwrap().leak = spawn_leak(leak_release.clone());
        }
        // Stalls, about one a second, alternating off-CPU and CPU.
        if round % 50 == 0 {
            lines.lock().unwrap().sleep = spawn_sleep();
        }
        if round % 50 == 25 {
            lines.lock().unwrap().busy = spawn_busy();
        }
        // The blocking pool.
        if round % 25 == 0 {
            tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(50)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    leak_release.notify_waiters();
}

/// Runs the variable queries in order, as Grafana does: each with the earlier variables
/// substituted, over the dashboard's time range. Returns each variable's "All" value.
fn variables(
    prom: &Prometheus,
    d: &Dashboard,
    iv: dashboards::Intervals,
) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    let end = now_secs();
    let start = end - iv.range.as_secs_f64();
    for v in d.variables().iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().unwrap().to_string();
        let q = dashboards::variable_query(v).ok_or(format!("variable {name} has no query"))?;
        let (selector, label) = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|r| r.rsplit_once(','))
            .ok_or_else(|| format!("variable {name}: {q}"))?;
        let selector = dashboards::substitute(selector.trim(), &vars, iv);
        let path = format!(
            "/api/v1/label/{}/values?match[]={}&start={start}&end={end}",
            label.trim(),
            scrape::percent_encode(&selector)
        );
        let values: Vec<String> = api(prom, &path)?
            .as_array()
            .ok_or("label values are a list")?
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect();
        if values.is_empty() {
            return Err(format!("variable {name} ({selector}) has no values"));
        }
        if name == "runtime" && !values.iter().any(|r| r == RUNTIME) {
            return Err(format!("variable runtime lists {values:?}, not {RUNTIME}"));
        }
        vars.insert(name, dashboards::all_values(&values));
    }
    Ok(vars)
}

/// Runs one panel's targets; `Ok` when every answer is as it must be for `mode`.
fn check_panel(
    prom: &Prometheus,
    d: &Dashboard,
    panel: &Value,
    vars: &BTreeMap<String, String>,
    mode: pollwatch::Mode,
) -> Result<(), String> {
    let width = panel["gridPos"]["w"].as_u64().unwrap();
    let iv = dashboards::intervals(d.range(), width, SCRAPE_INTERVAL);
    let time_series = panel["type"] == "timeseries";
    for expr in dashboards::exprs(panel) {
        let applies = dashboards::parse(expr)?.selectors.iter().all(|s| {
            dashboards::metric_of(&s.metric).is_some_and(|(def, _)| {
                // OTLP pushes have series only when the feature is built in (the test then
                // sets `otlp_endpoint`).
                let configured = cfg!(feature = "opentelemetry")
                    || def.prometheus != pollwatch::names::OTLP_EXPORTS.prometheus;
                def.applies(mode) && configured
            })
        });
        let q = dashboards::substitute(expr, vars, iv);
        let end = now_secs();
        let instant = api(
            prom,
            &format!(
                "/api/v1/query?query={}&time={end}",
                scrape::percent_encode(&q)
            ),
        )
        .map_err(|e| format!("{q}: {e}"))?;
        let n = instant["result"].as_array().map_or(0, Vec::len);
        if applies && n == 0 {
            return Err(format!("no data for {q}"));
        }
        if !applies && n != 0 {
            return Err(format!("data in {mode:?} mode for {q}: {instant}"));
        }
        if !time_series {
            continue;
        }
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={end}&step={}",
            scrape::percent_encode(&q),
            end - iv.range.as_secs_f64(),
            iv.interval.as_secs_f64()
        );
        let range = api(prom, &path).map_err(|e| format!("{q}: {e}"))?;
        let finite = range["result"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["values"].as_array().into_iter().flatten())
            .filter_map(|p| p[1].as_str()?.parse::<f64>().ok())
            .any(f64::is_finite);
        if applies != finite {
            return Err(format!(
                "range query for {q}: {} in {mode:?} mode: {range}",
                if applies { "no finite value" } else { "data" }
            ));
        }
    }
    Ok(())
}

/// The instant result of the first query of the panel titled `title`, run as Grafana would.
fn panel_result(
    prom: &Prometheus,
    d: &Dashboard,
    title: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<Value>, String> {
    let panel = d
        .panels()
        .into_iter()
        .find(|p| p["title"] == title)
        .ok_or_else(|| format!("{}: no panel {title:?}", d.file))?;
    let width = panel["gridPos"]["w"].as_u64().unwrap();
    let iv = dashboards::intervals(d.range(), width, SCRAPE_INTERVAL);
    let q = dashboards::substitute(dashboards::exprs(panel)[0], vars, iv);
    let path = format!("/api/v1/query?query={}", scrape::percent_encode(&q));
    let data = api(prom, &path).map_err(|e| format!("{title}: {e}"))?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

/// A series' spawn location labels.
fn location(series: &Value) -> (String, String) {
    let label = |l: &str| series["metric"][l].as_str().unwrap_or("").to_string();
    (label("code_file_path"), label("code_line_number"))
}

/// The spawn location of the series with the largest value.
fn top_location(result: &[Value]) -> Option<(String, String)> {
    let value = |s: &Value| s["value"][1].as_str()?.parse::<f64>().ok();
    result
        .iter()
        .filter(|s| value(s).is_some())
        .max_by(|a, b| value(a).unwrap().total_cmp(&value(b).unwrap()))
        .map(location)
}

/// The stalls dashboard shows what the app did: both kinds of stall; in hooked mode, the
/// two stalling spawn locations, and the leaking location on top of live tasks and of
/// their growth.
fn stall_panels_show_the_workload(
    prom: &Prometheus,
    d: &Dashboard,
    vars: &BTreeMap<String, String>,
    mode: pollwatch::Mode,
    lines: &SpawnLines,
) -> Result<(), String> {
    let by_kind = panel_result(prom, d, "Stalls by kind", vars)?;
    let kinds: Vec<_> = by_kind
        .iter()
        .filter_map(|s| s["metric"]["kind"].as_str())
        .collect();
    if !kinds.contains(&"cpu") || !kinds.contains(&"off_cpu") {
        return Err(format!(
            "Stalls by kind shows {kinds:?}, not cpu and off_cpu"
        ));
    }
    if mode != pollwatch::Mode::Hooked {
        return Ok(());
    }
    let by_location = panel_result(prom, d, "Stalls by spawn location", vars)?;
    let locations: Vec<_> = by_location.iter().map(location).collect();
    for at in [&lines.sleep, &lines.busy] {
        if !locations.contains(at) {
            return Err(format!(
                "Stalls by spawn location lacks {at:?}: {locations:?}"
            ));
        }
    }
    for title in [
        "Top spawn locations by live tasks (hooked mode)",
        "Live-task growth over the range (hooked mode)",
    ] {
        let top = top_location(&panel_result(prom, d, title, vars)?);
        if top.as_ref() != Some(&lines.leak) {
            return Err(format!(
                "{title}: top is {top:?}, not the leak {:?}",
                lines.leak
            ));
        }
    }
    Ok(())
}

#[test]
fn dashboard_queries_return_data_from_prometheus() {
    let _serial = support::serial();
    let binary = scrape::tool("prometheus");
    let builder = pollwatch::Agent::builder()
        .runtime_name(RUNTIME)
        .stall_threshold(Duration::from_millis(50))
        .watchdog_tick(Duration::from_millis(5))
        .http_addr(scrape::any_port());
    // The exporter panels: OTLP pushes to a port where nothing listens (every push is an
    // error, which is what that panel shows), and the console server with no client.
    #[cfg(feature = "opentelemetry")]
    let builder = builder
        .otlp_endpoint(format!("http://127.0.0.1:{}", scrape::free_port()))
        .otlp_interval(Duration::from_millis(500));
    #[cfg(all(feature = "console", tokio_unstable))]
    let builder = builder.console_addr(scrape::any_port());
    // The two ways a user installs pollwatch: hooked where the build allows it.
    let (rt, agent) = if cfg!(tokio_unstable) {
        support::runtime_with(builder)
    } else {
        let rt = support::plain_runtime(2);
        let agent = support::attach(&rt, builder);
        (rt, agent)
    };
    let mode = agent.mode();
    let expected = if cfg!(tokio_unstable) {
        pollwatch::Mode::Hooked
    } else {
        pollwatch::Mode::Attach
    };
    assert_eq!(mode, expected);

    let running = Arc::new(AtomicBool::new(true));
    let lines = Arc::new(std::sync::Mutex::new(SpawnLines::default()));
    let load = rt.spawn(workload(running.clone(), lines.clone()));
    let prom = Prometheus::start(binary, agent.http_addr().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);

    // Enough scrapes for every rate window and at least one of each stall kind.
    let enough = format!("count_over_time(pollwatch_info{{runtime=\"{RUNTIME}\"}}[1m]) >= 12");
    let path = format!("/api/v1/query?query={}", scrape::percent_encode(&enough));
    loop {
        let ready =
            api(&prom, &path).is_ok_and(|d| d["result"].as_array().is_some_and(|r| !r.is_empty()));
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus never had 12 scrapes");
        std::thread::sleep(Duration::from_millis(500));
    }

    let boards = dashboards::load_all();
    let mut checked = 0;
    for d in &boards {
        let iv = dashboards::intervals(d.range(), 24, SCRAPE_INTERVAL);
        let panels: Vec<_> = d
            .panels()
            .into_iter()
            .filter(|p| p["type"] != "row")
            .collect();
        // Retry what is not there yet (a stall that has not ended), until the deadline.
        let mut failures: Vec<String>;
        loop {
            failures = match variables(&prom, d, iv) {
                Err(e) => vec![e],
                Ok(vars) => {
                    let mut f: Vec<_> = panels
                        .iter()
                        .filter_map(|p| {
                            check_panel(&prom, d, p, &vars, mode)
                                .err()
                                .map(|e| format!("panel {} ({}): {e}", p["id"], p["title"]))
                        })
                        .collect();
                    if d.file == "pollwatch-stalls.json" {
                        let lines = lines.lock().unwrap().clone();
                        f.extend(
                            stall_panels_show_the_workload(&prom, d, &vars, mode, &lines).err(),
                        );
                    }
                    f
                }
            };
            if failures.is_empty() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        assert!(
            failures.is_empty(),
            "{} in {mode:?} mode:\n{}",
            d.file,
            failures.join("\n")
        );
        checked += panels.len();
    }
    eprintln!("{checked} panels checked in {mode:?} mode");

    running.store(false, Ordering::Relaxed);
    drop(prom);
    rt.block_on(load).unwrap();
}
