//! Shutting the agent down pushes the metrics one last time, so the final counts arrive even
//! with a long interval; and a receiver that accepts connections but never answers cannot
//! hold the shutdown (nor the pushes: each one times out and is counted as an error).
#![cfg(feature = "opentelemetry")]

use crate::support;

use std::time::{Duration, Instant};

use support::otlp::{self, Receiver};
use support::scrape::Exposition;

#[test]
fn shutdown_pushes_the_final_metrics_once() {
    let _serial = support::serial();
    let receiver = Receiver::start();
    let (rt, mut agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("last")
            .otlp_endpoint(receiver.endpoint())
            .otlp_interval(Duration::from_secs(3600)),
    );
    rt.block_on(async {
        tokio::spawn(async { tokio::task::yield_now().await })
            .await
            .unwrap();
    });
    assert_eq!(receiver.count(), 0, "nothing before the first interval");
    agent.shutdown();
    let requests = receiver.wait_for(1, Duration::from_secs(10));
    assert_eq!(requests.len(), 1, "exactly the last push");
    let workers = otlp::metric(&requests[0], "tokio.worker.count").expect("workers");
    let Some(otlp::Data::Gauge(g)) = &workers.data else {
        panic!("{workers:?}")
    };
    assert_eq!(
        g.data_points[0].value,
        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(2))
    );
    agent.shutdown(); // idempotent: no second push
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(receiver.count(), 1);
}

#[test]
fn a_receiver_that_never_answers_times_out_and_cannot_hold_the_shutdown() {
    let _serial = support::serial();
    // The kernel completes the TCP handshake for the listen backlog; nobody ever reads.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());

    let (_rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("silent")
            .otlp_endpoint(endpoint.clone())
            .otlp_interval(Duration::from_millis(20))
            .otlp_timeout(Duration::from_millis(200)),
    );
    let errors = || {
        Exposition::parse(&agent.encode_metrics())
            .value("pollwatch_otlp_exports_total", &[("result", "error")])
            .unwrap()
    };
    let start = Instant::now();
    while errors() < 3.0 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(errors() >= 3.0, "timed-out pushes are counted");
    drop(agent);

    // A push stuck far longer than the shutdown bound (2 s) when the agent is dropped.
    let (_rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("silent")
            .otlp_endpoint(endpoint)
            .otlp_interval(Duration::from_millis(20))
            .otlp_timeout(Duration::from_secs(120)),
    );
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    drop(agent);
    // Generous: the bound is 2 s; this only proves the drop does not wait for the 120 s.
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "drop took {:?}",
        start.elapsed()
    );
    drop(silent);
}
