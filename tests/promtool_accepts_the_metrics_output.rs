//! `promtool check metrics` (Prometheus' own parser and linter) accepts `/metrics`, with
//! stalls, spawn locations and a runtime name that needs escaping in it.
//!
//! promtool 2.42 has no switch for its lint rules. One rule ("non-histogram and
//! non-summary metrics should not have _count suffix") fires on three gauge names that
//! DESIGN §5 fixes (`tokio_worker_count`, `tokio_task_alive_count`,
//! `tokio_blocking_thread_count`, the OpenTelemetry-bridge form of `tokio.worker.count`
//! etc.). The test accepts exactly those findings, derived from the name table, and fails
//! on a parse error or on any other lint finding.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use pollwatch::names::{self, MetricType};
use support::scrape;

#[test]
fn promtool_accepts_the_metrics_output() {
    let Some(promtool) = scrape::tool("promtool") else {
        return;
    };
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("we\"ird\\run\ntime")
            .stall_threshold(Duration::from_millis(50))
            .watchdog_tick(Duration::from_millis(5))
            .http_addr(scrape::any_port()),
    );
    rt.block_on(async {
        for _ in 0..20 {
            tokio::spawn(async { tokio::task::yield_now().await })
                .await
                .unwrap();
        }
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(150)) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    let body = scrape::get(agent.http_addr().unwrap(), "/metrics")
        .unwrap()
        .body;
    assert!(
        body.contains("runtime=\"we\\\"ird\\\\run\\ntime\""),
        "{body}"
    );

    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // 0: clean; 3: lint findings only (checked below); anything else: a parse error.
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(3)),
        "promtool failed ({code:?}):\n{report}\n---\n{body}"
    );
    let tolerated: Vec<String> = names::METRICS
        .iter()
        .filter(|m| m.kind != MetricType::Histogram && m.prometheus.ends_with("_count"))
        .map(|m| {
            format!(
                "{} non-histogram and non-summary metrics should not have \"_count\" suffix",
                m.prometheus
            )
        })
        .collect();
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            tolerated.iter().any(|t| t == line.trim()),
            "promtool finding not explained by DESIGN §5 names: {line}\n{report}"
        );
    }
}
