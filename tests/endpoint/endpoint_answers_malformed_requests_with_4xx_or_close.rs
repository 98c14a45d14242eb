//! Malformed requests get a 4xx or a closed connection (at the latest after the header read
//! timeout), never a panic or a hang, and the
//! endpoint keeps serving other clients afterwards. Unknown paths are 404, other methods
//! 405 with `Allow`.

use crate::support;

use std::time::Duration;

use support::scrape;

#[test]
fn endpoint_answers_malformed_requests_with_4xx_or_close() {
    let _serial = support::serial();
    let (_rt, agent) =
        support::runtime_with(pollwatch::Agent::builder().http_addr(scrape::any_port()));
    let addr = agent.http_addr().unwrap();
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\x01\x02\xff\xfe garbage\r\n\r\n".to_vec()),
        ("no version", b"GET /metrics\r\n\r\n".to_vec()),
        ("bad version", b"GET /metrics HTTP/9.9\r\n\r\n".to_vec()),
        (
            "bad method token",
            b"G(T /metrics HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "header without colon",
            b"GET /metrics HTTP/1.1\r\nHost x\r\n\r\n".to_vec(),
        ),
        ("bare LF soup", b"\n\n\n\n\n\n".to_vec()),
        (
            "bad content-length",
            b"POST /metrics HTTP/1.1\r\nContent-Length: -5\r\n\r\n".to_vec(),
        ),
        (
            "two content-lengths",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
        ),
        (
            "bad chunked body",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        ),
        (
            "http2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        ("huge uri", long_uri.into_bytes()),
        (
            "absolute-form junk",
            b"GET http://[::1 HTTP/1.1\r\n\r\n".to_vec(),
        ),
    ];
    // An incomplete head (the blank lines a server may skip before a request line) is
    // closed by the header read timeout, so wait a little longer than that.
    let wait = pollwatch::server::HEADER_READ_TIMEOUT + Duration::from_secs(2);
    for (what, raw) in cases {
        let (reply, closed) = scrape::exchange(addr, &raw, wait);
        match scrape::status_of(&reply) {
            Some(s) => assert!((400..500).contains(&s), "{what}: status {s}"),
            None => assert!(closed, "{what}: neither a response nor a close"),
        }
    }

    // Well-formed but wrong: 404 and 405.
    let r = scrape::get(addr, "/nope").unwrap();
    assert_eq!(r.status, 404);
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let r = scrape::get_with(addr, method, "/metrics", &[], Duration::from_secs(3)).unwrap();
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }
    // A POST with a body the server never reads.
    let (reply, _) = scrape::exchange(
        addr,
        b"POST /stalls HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        Duration::from_secs(3),
    );
    assert_eq!(scrape::status_of(&reply), Some(405));

    // Still serving.
    let r = scrape::get(addr, "/metrics").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("tokio_workers"));
}
