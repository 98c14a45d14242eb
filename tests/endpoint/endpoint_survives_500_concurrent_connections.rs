//! 500 connections at once, over the cap of `MAX_CONNECTIONS` (256): each is answered or
//! closed, none hangs, nothing panics. With 500 idle connections held open, a real client
//! is served again once the idle ones time out (within `HEADER_READ_TIMEOUT`), and after
//! the flood at once.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pollwatch::server::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
use support::scrape;

const CLIENTS: usize = 500;

fn connect_all(addr: std::net::SocketAddr) -> Vec<TcpStream> {
    let conns: Vec<TcpStream> = (0..CLIENTS)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
        .collect();
    assert!(conns.len() >= CLIENTS * 9 / 10, "connected {}", conns.len());
    conns
}

/// Client and server ends of every connection live in this one process: make sure the
/// descriptor limit is not what the test measures (a common default soft limit is 1024).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct passed by pointer, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < 4096 {
            lim.rlim_cur = lim.rlim_max.min(4096);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[test]
fn endpoint_survives_500_concurrent_connections() {
    let _serial = support::serial();
    raise_fd_limit();
    let (_rt, agent) =
        support::runtime_with(pollwatch::Agent::builder().http_addr(scrape::any_port()));
    let addr = agent.http_addr().unwrap();

    // 1. A burst: 500 connections, then a request on every one.
    let mut conns = connect_all(addr);
    let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for c in &mut conns {
        let _ = c.write_all(req);
    }
    let total = conns.len();
    let (mut ok, mut closed) = (0, 0);
    let start = Instant::now();
    for mut c in conns {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = Vec::new();
        let _ = c.read_to_end(&mut raw);
        if raw.is_empty() {
            closed += 1; // over the cap: closed without an answer
        } else {
            assert_eq!(
                scrape::status_of(&raw),
                Some(200),
                "{:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            );
            ok += 1;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "bounded");
    }
    eprintln!("burst: {ok} answered, {closed} closed of {total}");
    assert_eq!(ok + closed, total);
    assert!(ok >= 1 && ok <= total, "{ok} answered");

    // 2. 500 idle connections hold every slot; a real client gets through once they time out.
    let idle = connect_all(addr);
    let start = Instant::now();
    let served_after = loop {
        let elapsed = start.elapsed();
        assert!(
            elapsed < HEADER_READ_TIMEOUT + Duration::from_secs(3),
            "not served within the header timeout while {} idle connections were open",
            idle.len()
        );
        match scrape::get_with(addr, "GET", "/metrics", &[], Duration::from_secs(2)) {
            Ok(r) if r.status == 200 => break elapsed,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    eprintln!(
        "with {} idle connections (cap {MAX_CONNECTIONS}), served after {served_after:?}",
        idle.len()
    );
    drop(idle);

    // 3. Afterwards: served at once.
    let r = scrape::get(addr, "/metrics").unwrap();
    assert_eq!(r.status, 200);
}
