//! Dropping the agent while a console client holds an open update stream stops the
//! `pollwatch-console` thread promptly (long-lived streams do not hold a graceful shutdown
//! open), and the client sees its stream end.
#![cfg(all(feature = "console", tokio_unstable))]

use crate::support;

use std::time::Duration;

use support::console;

#[test]
fn console_stops_with_the_agent_while_a_client_watches() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder().console_addr("127.0.0.1:0".parse().unwrap()),
    );
    let addr = agent.console_addr().unwrap();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut stream = client_rt.block_on(async {
        let mut c = console::connect(addr, Duration::from_secs(10)).await;
        let mut stream = console::updates(&mut c).await;
        let first = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
        assert!(
            matches!(first, Ok(Ok(Some(_)))),
            "a first update: {first:?}"
        );
        stream
    });

    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(agent);
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the agent's threads stop within the deadline");
    assert!(
        !std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .any(|name| name.trim() == "pollwatch-conso"),
        "no pollwatch-console thread left"
    );

    let ended = client_rt.block_on(async {
        // Updates already in flight may arrive first; a bounded number of them.
        for _ in 0..1_000 {
            match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) | Ok(Err(_)) => return true,
                Err(_) => return false,
            }
        }
        false
    });
    assert!(ended, "the client's stream ends when the agent stops");
    drop(rt);
}
