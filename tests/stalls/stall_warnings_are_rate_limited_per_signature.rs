//! Every stall is counted, but the `tracing` warning is rate-limited per signature: three
//! identical stalls give one warning with structured fields, and the repeats are counted.

use crate::support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn stall_warnings_are_rate_limited_per_signature() {
    let _serial = support::serial();
    let out = Captured::default();
    let writer = out.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .stall_threshold(Duration::from_millis(50))
            .log_interval(Duration::from_secs(60)),
    );
    // Idle gaps between the stalls: attach mode (stable build) tells back-to-back long polls
    // apart only when the worker parks or the probe runs in between (see the README).
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        rt.block_on(async {
            tokio::spawn(async { std::thread::sleep(Duration::from_millis(150)) })
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
    }
    let s = support::wait_for(&agent, Duration::from_secs(10), |s| {
        s.len() == 3 && s.iter().all(|r| !r.ongoing)
    });
    assert_eq!(
        agent.stall_summary().stalls_total,
        3,
        "every stall counts: {s:#?}"
    );
    // The symbolizer thread logs after symbolizing (the first time parses debug info):
    // wait for the warning, bounded, then a little longer for any wrongly repeated one.
    let read = || String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let start = std::time::Instant::now();
    while !read().contains("WARN") && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let text = read();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "one warning per signature:\n{text}");
    // The message spans lines (the stack); the structured fields follow it.
    let w = &text[text.find("WARN").unwrap()..];
    for field in [
        "pollwatch",
        "stall_id=",
        "duration_ms=",
        "kind=\"off_cpu\"",
        "runtime=",
    ] {
        assert!(w.contains(field), "{field} missing in {w}");
    }
    if support::HOOKED {
        assert!(w.contains("spawned_at="), "{w}");
    }
}
