//! Asking for an address another socket already listens on makes the start-up call fail
//! with `Error::Bind`, whose message names the address.

use crate::support;

#[test]
fn port_in_use_is_an_error_naming_the_address() {
    let _serial = support::serial();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(1).enable_all();
    let err = pollwatch::Agent::builder()
        .http_addr(addr)
        .build_runtime(&mut rt)
        .expect_err("the port is taken");
    match &err {
        pollwatch::Error::Bind { addr: a, .. } => assert_eq!(*a, addr),
        other => panic!("expected Error::Bind, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert!(msg.contains("http_addr"), "says what to change: {msg}");
    // The first listener is untouched.
    assert_eq!(taken.local_addr().unwrap(), addr);
}
