//! `Agent::shutdown` (and dropping the agent) stops the endpoint: its port stops accepting
//! and the `pollwatch-http` thread ends, even with a client connection still open.

use crate::support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::scrape;

fn http_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "pollwatch-http")
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn endpoint_stops_when_the_agent_shuts_down() {
    let _serial = support::serial();
    let (_rt, mut agent) =
        support::runtime_with(pollwatch::Agent::builder().http_addr(scrape::any_port()));
    let addr = agent.http_addr().unwrap();
    assert_eq!(scrape::get(addr, "/metrics").unwrap().status, 200);
    if cfg!(target_os = "linux") {
        assert_eq!(http_threads(), 1);
    }
    let _open = TcpStream::connect(addr).unwrap(); // an idle client
    let start = Instant::now();
    agent.shutdown();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(agent.http_addr().is_none());
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "still accepting"
    );
    if cfg!(target_os = "linux") {
        assert_eq!(http_threads(), 0);
    }
    // The port is free again: another agent can take it.
    let mut rt = tokio::runtime::Builder::new_current_thread();
    rt.enable_all();
    let (_rt2, again) = pollwatch::Agent::builder()
        .http_addr(addr)
        .build_runtime(&mut rt)
        .expect("port reusable after shutdown");
    assert_eq!(again.http_addr(), Some(addr));
}
