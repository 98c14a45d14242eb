//! A request head larger than the limit, or with too many headers, gets `431` or a closed
//! connection; the server's memory for it is bounded by the limit, and the next client is
//! served.

use crate::support;

use std::time::Duration;

use support::scrape;

#[test]
fn endpoint_answers_oversized_headers_with_431_or_close() {
    let _serial = support::serial();
    let (_rt, agent) =
        support::runtime_with(pollwatch::Agent::builder().http_addr(scrape::any_port()));
    let addr = agent.http_addr().unwrap();
    let one_huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(pollwatch::server::MAX_HEADER_BYTES * 4)
    );
    let mut many = String::from("GET /metrics HTTP/1.1\r\nHost: x\r\n");
    for i in 0..(pollwatch::server::MAX_HEADERS * 2) {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    // Far beyond any buffer: 4 MiB of header bytes that never end.
    let endless = format!(
        "GET /metrics HTTP/1.1\r\nX-Endless: {}",
        "e".repeat(4 << 20)
    );
    for (what, raw) in [
        ("one huge", one_huge),
        ("too many", many),
        ("endless", endless),
    ] {
        let (reply, closed) = scrape::exchange(addr, raw.as_bytes(), Duration::from_secs(5));
        match scrape::status_of(&reply) {
            Some(s) => assert_eq!(s, 431, "{what}"),
            None => assert!(closed, "{what}: neither a response nor a close"),
        }
    }
    let r = scrape::get(addr, "/metrics").unwrap();
    assert_eq!(r.status, 200);
}
