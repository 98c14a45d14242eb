//! While every worker of the app's runtime is blocked, the direct OTLP push (its own thread,
//! its own runtime) keeps arriving at a real receiver. Beside it, the same agent's instruments on an app `SdkMeterProvider` with
//! opentelemetry-otlp's gRPC exporter, built in the app's runtime as apps do: how many of its
//! exports arrive during the block is printed, not asserted (it is that exporter's behaviour,
//! quoted in the README: its connection is driven by a task on the blocked runtime), and it
//! must deliver again once the workers are released.
#![cfg(all(feature = "opentelemetry-sdk", feature = "opentelemetry"))]

use crate::support;

use std::time::{Duration, Instant};

use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use support::otlp::Receiver;

fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[test]
fn otlp_push_keeps_arriving_while_every_worker_is_blocked() {
    let _serial = support::serial();
    let push = Receiver::start();
    let sdk = Receiver::start();
    let interval = Duration::from_millis(200);
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("blocked")
            .stall_threshold(Duration::from_millis(100))
            .otlp_endpoint(push.endpoint())
            .otlp_interval(interval),
    );
    let provider = {
        let _in_runtime = rt.enter();
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(sdk.endpoint())
            .with_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let reader = PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build();
        SdkMeterProvider::builder().with_reader(reader).build()
    };
    agent.register_meter_provider(&provider);
    // Both paths deliver before the block.
    assert!(wait_until(Duration::from_secs(10), || push.count() >= 2
        && sdk.count() >= 2));

    let blocker = support::scrape::Blocker::new(&rt, 2);
    let (push_before, sdk_before) = (push.count(), sdk.count());
    let block = Duration::from_secs(2);
    std::thread::sleep(block);
    let (push_during, sdk_during) = (push.count() - push_before, sdk.count() - sdk_before);
    drop(blocker);
    eprintln!(
        "during a {block:?} block of every worker (exports every {interval:?}): direct push {push_during}, app SDK with opentelemetry-otlp gRPC {sdk_during}"
    );
    // At least half of the pushes due (a loaded host may delay some).
    let due = (block.as_millis() / interval.as_millis()) as usize;
    assert!(
        push_during >= due / 2,
        "{push_during} direct pushes during the block, {due} due"
    );
    let sdk_after = sdk.count();
    assert!(
        wait_until(Duration::from_secs(10), || sdk.count() > sdk_after),
        "the SDK path delivers again after the block"
    );
    drop(agent);
    provider.shutdown().ok();
    drop(rt);
}
