//! `console_addr` where pollwatch cannot see tasks (attach mode: stable tokio, or
//! `attach()` to a running runtime) is an `Error` naming the setting, the value and why,
//! rather than a console that silently shows nothing.
#![cfg(feature = "console")]

use crate::support;

fn assert_names_the_setting(err: pollwatch::Error, addr: std::net::SocketAddr) {
    match &err {
        pollwatch::Error::InvalidConfig { field, value, .. } => {
            assert_eq!(*field, "console_addr");
            assert_eq!(value, &addr.to_string());
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("console_addr") && msg.contains(&addr.to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("tokio_unstable") && msg.contains("build_runtime"),
        "says how: {msg}"
    );
}

#[test]
fn attach_with_console_addr_is_an_error_naming_it() {
    let _serial = support::serial();
    let addr: std::net::SocketAddr = "127.0.0.1:6669".parse().unwrap();
    let rt = support::plain_runtime(1);
    let err = rt
        .block_on(async {
            pollwatch::Agent::builder()
                .console_addr(addr)
                .attach(&tokio::runtime::Handle::current())
        })
        .expect_err("attach mode has no tasks to show");
    assert_names_the_setting(err, addr);
    // Nothing was bound: the suggested port stays free for a real console server.
}

/// On stable tokio `build_runtime` gives attach mode too.
#[cfg(not(tokio_unstable))]
#[test]
fn build_runtime_on_stable_tokio_with_console_addr_is_an_error_naming_it() {
    let _serial = support::serial();
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(1).enable_all();
    let err = pollwatch::Agent::builder()
        .console_addr(addr)
        .build_runtime(&mut rt)
        .expect_err("attach mode has no tasks to show");
    assert_names_the_setting(err, addr);
}

/// Hooked mode: a console port in use names the address and the setting.
#[cfg(tokio_unstable)]
#[test]
fn console_port_in_use_is_an_error_naming_the_address() {
    let _serial = support::serial();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(1).enable_all();
    let err = pollwatch::Agent::builder()
        .console_addr(addr)
        .build_runtime(&mut rt)
        .expect_err("the port is taken");
    match &err {
        pollwatch::Error::Bind {
            setting, addr: a, ..
        } => {
            assert_eq!(*setting, "console_addr");
            assert_eq!(*a, addr);
        }
        other => panic!("expected Error::Bind, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&addr.to_string()) && msg.contains("console_addr"),
        "{msg}"
    );
    assert!(msg.contains("POLLWATCH_CONSOLE_ADDR"), "{msg}");
    assert_eq!(taken.local_addr().unwrap(), addr);
}

/// `POLLWATCH_CONSOLE_ADDR` turns the console on from the environment (read through
/// `Config::apply_vars`, so the test does not touch the process environment).
#[cfg(tokio_unstable)]
#[test]
fn console_addr_from_the_environment_serves_the_console() {
    let _serial = support::serial();
    let mut config = pollwatch::Config::default();
    config
        .apply_vars(|k| (k == "POLLWATCH_CONSOLE_ADDR").then(|| "127.0.0.1:0".to_string()))
        .unwrap();
    let (_rt, agent) = support::runtime_with(pollwatch::Builder::with_config(config));
    let addr = agent.console_addr().expect("serving");
    assert!(std::net::TcpStream::connect(addr).is_ok());
}
