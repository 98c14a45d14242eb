//! The stack captured while the thread was stuck names the culprit: RSA/bignum frames for a
//! key generation, `sleep` for `std::thread::sleep`, the test's own function for a busy
//! loop. Long stalls carry extra samples at 2×, 4× and 8× the threshold.
//!
//! Linux x86_64 and aarch64 only: the platforms stack capture supports.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use crate::support;

use std::time::Duration;

use pollwatch::capture::CaptureStatus;
use pollwatch::{Agent, StallReport};

/// Waits until the report's frames are symbolized (that happens off the runtime).
fn symbolized(agent: &Agent) -> StallReport {
    let s = support::wait_for(agent, Duration::from_secs(20), |s| {
        s.len() == 1 && !s[0].frames.is_empty() && !s[0].ongoing
    });
    assert_eq!(s.len(), 1, "{s:#?}");
    s[0].clone()
}

fn functions(r: &StallReport) -> Vec<&str> {
    r.frames.iter().map(|f| f.function.as_str()).collect()
}

#[test]
fn rsa_stall_shows_bignum_frames_under_the_caller() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime(Duration::from_millis(30));
    rt.block_on(async {
        tokio::spawn(async {
            let mut rng = rand::thread_rng();
            rsa::RsaPrivateKey::new(&mut rng, 2048).expect("key")
        })
        .await
        .unwrap();
    });
    let r = symbolized(&agent);
    assert_eq!(r.capture, CaptureStatus::Ok, "{r:#?}");
    let f = functions(&r);
    let rsa_or_bignum = f
        .iter()
        .position(|n| n.contains("rsa") || n.contains("num_bigint") || n.contains("prime"));
    assert!(rsa_or_bignum.is_some(), "no rsa/bignum frame in {f:#?}");
    let caller = f
        .iter()
        .position(|n| n.contains("stall_reports_show_the_culprit_in_their_stack"));
    assert!(caller.is_some(), "the test's own frame is missing: {f:#?}");
    assert!(rsa_or_bignum < caller, "callee above caller: {f:#?}");
}

#[test]
fn sleep_stall_shows_thread_sleep() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime(Duration::from_millis(50));
    rt.block_on(async {
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(200)) })
            .await
            .unwrap();
    });
    let r = symbolized(&agent);
    assert_eq!(r.capture, CaptureStatus::Ok, "{r:#?}");
    assert!(
        functions(&r).iter().any(|n| n.contains("sleep")),
        "{:#?}",
        functions(&r)
    );
}

#[test]
fn busy_loop_stall_shows_the_looping_function() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime(Duration::from_millis(50));
    rt.block_on(async {
        tokio::spawn(async { support::busy_for(Duration::from_millis(200)) })
            .await
            .unwrap();
    });
    let r = symbolized(&agent);
    assert!(
        functions(&r).iter().any(|n| n.contains("busy_for")),
        "{:#?}",
        functions(&r)
    );
}

#[test]
fn long_stall_gets_samples_at_2_4_and_8_times_the_threshold() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime(Duration::from_millis(50));
    rt.block_on(async {
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(600)) })
            .await
            .unwrap();
    });
    let s = support::wait_for(&agent, Duration::from_secs(20), |s| {
        s.len() == 1 && s[0].samples.len() == 3 && !s[0].ongoing
    });
    let r = &s[0];
    let at: Vec<f64> = r.samples.iter().map(|s| s.at_ms).collect();
    assert_eq!(at.len(), 3, "{r:#?}");
    for (sample_at, multiple) in at.iter().zip([2.0, 4.0, 8.0]) {
        assert!(*sample_at >= 50.0 * multiple, "{at:?}");
    }
    assert!(
        r.samples.iter().all(|s| s.capture == CaptureStatus::Ok),
        "{r:#?}"
    );
    assert!(r
        .samples
        .iter()
        .all(|s| s.frames.iter().any(|f| f.function.contains("sleep"))));
}
