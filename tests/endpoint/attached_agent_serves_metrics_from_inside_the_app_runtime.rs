//! `attach(&Handle::current())` called from inside the app's own runtime (as in
//! `#[tokio::main]`) starts the endpoint too: it answers with `pollwatch_info{mode="attach"}`,
//! and dropping the agent inside the runtime stops it without panicking.

use crate::support;

use support::scrape;

#[test]
fn attached_agent_serves_metrics_from_inside_the_app_runtime() {
    let _serial = support::serial();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let agent = pollwatch::Agent::builder()
            .runtime_name("attached")
            .http_addr(scrape::any_port())
            .attach(&tokio::runtime::Handle::current())
            .expect("attach");
        let addr = agent.http_addr().expect("serving");
        // The test's client is blocking I/O: keep it off the runtime's workers.
        let body = tokio::task::spawn_blocking(move || scrape::get(addr, "/metrics").unwrap())
            .await
            .unwrap();
        assert_eq!(body.status, 200);
        let e = scrape::Exposition::parse(&body.body);
        assert_eq!(
            e.value(
                "pollwatch_info",
                &[("mode", "attach"), ("runtime", "attached")]
            ),
            Some(1.0),
            "{}",
            body.body
        );
        assert_eq!(e.value("tokio_workers", &[]), Some(2.0));
        drop(agent); // inside the runtime: must not panic
        let refused = tokio::task::spawn_blocking(move || {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_err()
        })
        .await
        .unwrap();
        assert!(refused, "endpoint stopped with the agent");
    });
}
