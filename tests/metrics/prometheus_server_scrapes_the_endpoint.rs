//! A real Prometheus server (the Debian `prometheus` package), started by the test on a free
//! loopback port with a generated configuration, scrapes an app running the agent every
//! second; its HTTP API then returns non-empty results for the queries the dashboards use.
//! The server is killed at the end, also when the test fails.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::prometheus::Prometheus;
use support::scrape;

/// `GET /api/v1/query` until the result vector is non-empty or `deadline` passes.
fn query_until_non_empty(
    prom: std::net::SocketAddr,
    q: &str,
    deadline: Instant,
) -> serde_json::Value {
    let path = format!("/api/v1/query?query={}", scrape::percent_encode(q));
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = scrape::get_with(prom, "GET", &path, &[], Duration::from_secs(5)) {
            if r.status == 200 {
                let v: serde_json::Value =
                    serde_json::from_str(&r.body).expect("JSON from the API");
                assert_eq!(v["status"], "success", "{v}");
                if v["data"]["result"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
                {
                    return v["data"]["result"].clone();
                }
            }
            last = r.body;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("no result for {q} before the deadline; last answer: {last}");
}

#[test]
fn prometheus_server_scrapes_the_endpoint() {
    let _serial = support::serial();
    let binary = scrape::tool("prometheus");
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("promtest")
            .stall_threshold(Duration::from_millis(50))
            .watchdog_tick(Duration::from_millis(5))
            .http_addr(scrape::any_port()),
    );
    let target = agent.http_addr().unwrap();

    // Load for the whole test (bounded: stops when the flag drops, or after 90 s).
    let running = Arc::new(AtomicBool::new(true));
    let flag = running.clone();
    let load = rt.spawn(async move {
        let start = Instant::now();
        while flag.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(90) {
            for _ in 0..20 {
                tokio::spawn(async { tokio::task::yield_now().await });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // One stall.
    rt.block_on(async {
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(200)) })
            .await
            .unwrap();
    });

    let guard = Prometheus::start(binary, target);
    let prom = guard.addr;
    let deadline = Instant::now() + Duration::from_secs(60);

    let r = query_until_non_empty(prom, "tokio_workers", deadline);
    assert_eq!(r[0]["metric"]["runtime"], "promtest", "{r}");
    assert_eq!(r[0]["metric"]["job"], "pollwatch", "{r}");
    assert_eq!(r[0]["value"][1], "2", "{r}");

    let r = query_until_non_empty(
        prom,
        "histogram_quantile(0.99, rate(tokio_probe_schedule_duration_seconds_bucket[1m]))",
        deadline,
    );
    eprintln!("probe p99: {r}");

    let up = query_until_non_empty(prom, "up{job=\"pollwatch\"}", deadline);
    assert_eq!(up[0]["value"][1], "1", "the target is up: {up}");

    if agent.mode() == pollwatch::Mode::Hooked {
        let r = query_until_non_empty(
            prom,
            "rate(tokio_task_poll_duration_seconds_count[1m])",
            deadline,
        );
        let rate: f64 = r[0]["value"][1].as_str().unwrap().parse().unwrap();
        assert!(rate > 0.0, "polls are happening: {r}");
    }
    let r = query_until_non_empty(prom, "tokio_stalls_total", deadline);
    let stalls: f64 = r[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(stalls >= 1.0, "the stall is counted: {r}");

    running.store(false, Ordering::Relaxed);
    drop(guard);
    rt.block_on(load).unwrap();
}
