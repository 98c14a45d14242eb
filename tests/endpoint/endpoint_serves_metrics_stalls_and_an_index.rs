//! `GET /metrics` is the text format with its content type, `GET /stalls` is the JSON of
//! DESIGN §5 (with the stall the test caused), `GET /` lists the endpoints, and `HEAD`
//! answers without a body.

use crate::support;

use std::time::Duration;

use support::scrape;

#[test]
fn endpoint_serves_metrics_stalls_and_an_index() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("web")
            .stall_threshold(Duration::from_millis(50))
            .watchdog_tick(Duration::from_millis(5))
            .http_addr(scrape::any_port()),
    );
    let addr = agent.http_addr().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    let r = scrape::get(addr, "/metrics").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        r.body.contains("tokio_workers{runtime=\"web\"} 2\n"),
        "{}",
        r.body
    );

    rt.block_on(async {
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(200)) })
            .await
            .unwrap();
    });
    support::wait_for(&agent, Duration::from_secs(2), |s| {
        !s.is_empty() && s.iter().all(|r| !r.ongoing)
    });
    let r = scrape::get(addr, "/stalls").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let stalls = v["stalls"].as_array().expect("stalls array");
    assert_eq!(v["stalls_total"].as_u64(), Some(stalls.len() as u64));
    assert_eq!(v["dropped"].as_u64(), Some(0));
    assert_eq!(
        v,
        serde_json::from_str::<serde_json::Value>(&agent.encode_stalls_json()).unwrap()
    );
    assert_eq!(stalls.len(), 1, "{v:#}");
    let s = &stalls[0];
    for key in [
        "id",
        "runtime",
        "worker",
        "thread",
        "tid",
        "task_id",
        "spawned_at",
        "started_at",
        "duration_ms",
        "ongoing",
        "kind",
        "detection",
        "capture",
        "frames",
    ] {
        assert!(s.get(key).is_some(), "{key} missing in {s:#}");
    }
    assert_eq!(s["runtime"], "web");
    assert_eq!(s["ongoing"], false);
    assert!(s["duration_ms"].as_f64().unwrap() >= 190.0, "{s:#}");

    let r = scrape::get(addr, "/").unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("/metrics") && r.body.contains("/stalls"),
        "{}",
        r.body
    );

    let r = scrape::get_with(addr, "HEAD", "/metrics", &[], Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body.is_empty(),
        "HEAD has no body: {:?}",
        &r.body[..r.body.len().min(100)]
    );
}
