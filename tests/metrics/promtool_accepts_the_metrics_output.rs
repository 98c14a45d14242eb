//! `promtool check metrics` (Prometheus' own parser and linter) accepts `/metrics`, with
//! stalls, spawn locations and a runtime name that needs escaping in it.
//!
//! promtool parses the text and runs its lint rules (`_total` on counters, no `_count`
//! suffix outside histograms, base units, …); the test requires exit 0 and no finding.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::scrape;

#[test]
fn promtool_accepts_the_metrics_output() {
    let _serial = support::serial();
    let promtool = scrape::tool("promtool");
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
    assert_eq!(
        out.status.code(),
        Some(0),
        "promtool rejected /metrics:\n{report}\n---\n{body}"
    );
    assert!(
        report.trim().is_empty(),
        "promtool findings:\n{report}\n---\n{body}"
    );
}
