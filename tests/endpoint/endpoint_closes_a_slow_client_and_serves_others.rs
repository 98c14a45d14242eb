//! A client that trickles its request one byte at a time is closed once the header read
//! timeout passes, and meanwhile other clients are served promptly.

use crate::support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pollwatch::server::HEADER_READ_TIMEOUT;
use support::scrape;

#[test]
fn endpoint_closes_a_slow_client_and_serves_others() {
    let _serial = support::serial();
    let (_rt, agent) =
        support::runtime_with(pollwatch::Agent::builder().http_addr(scrape::any_port()));
    let addr = agent.http_addr().unwrap();
    let mut slow = TcpStream::connect(addr).unwrap();
    let request = b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Pad: ".repeat(50);
    let start = Instant::now();
    let mut sent = 0;
    let mut others = 0;
    // Bounded: at most twice the timeout plus slack, one byte every 100 ms.
    let closed_after = loop {
        let elapsed = start.elapsed();
        assert!(
            elapsed < HEADER_READ_TIMEOUT * 2 + Duration::from_secs(2),
            "slow client still connected after {elapsed:?}"
        );
        if slow
            .write_all(&request[sent % request.len()..][..1])
            .is_err()
        {
            break elapsed;
        }
        sent += 1;
        if sent % 5 == 0 {
            let t = Instant::now();
            let r = scrape::get(addr, "/metrics").unwrap();
            assert_eq!(r.status, 200);
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "{:?}",
                t.elapsed()
            );
            others += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // A write can succeed once more after the server closed (the reset arrives later), so
    // "closed" is seen at most a couple of writes after the timeout.
    assert!(closed_after >= HEADER_READ_TIMEOUT, "{closed_after:?}");
    assert!(others >= 5, "other clients were served meanwhile: {others}");
}
