//! Attach mode on a `current_thread` runtime (`#[tokio::main(flavor = "current_thread")]`):
//! a blocking task is reported once, as worker 0 on the thread that drives the runtime, and
//! idle time afterwards is not a stall.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use pollwatch::{Detection, StallKind};

#[test]
fn attach_current_thread_runtime_stall_is_reported_on_its_thread() {
    let _serial = support::serial();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let me = std::thread::current()
        .name()
        .unwrap_or_default()
        .to_string();
    let (during, after) = rt.block_on(async {
        let agent = Arc::new(
            pollwatch::Agent::builder()
                .stall_threshold(Duration::from_millis(50))
                .attach(&tokio::runtime::Handle::current())
                .expect("attach"),
        );
        assert_eq!(agent.mode(), pollwatch::Mode::Attach);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let idle = agent.stalls();
        assert!(idle.is_empty(), "an idle runtime has no stall: {idle:#?}");
        let inside = agent.clone();
        let during = tokio::spawn(async move {
            std::thread::sleep(Duration::from_millis(250));
            inside.stalls()
        })
        .await
        .unwrap();
        // Idle again, driven: the episode closes and nothing else is reported.
        tokio::time::sleep(Duration::from_millis(300)).await;
        (during, agent.stalls())
    });
    assert_eq!(during.len(), 1, "{during:#?}");
    let r = &during[0];
    assert!(r.ongoing, "{r:#?}");
    assert_eq!(r.detection, Detection::Worker, "{r:#?}");
    assert_eq!(r.worker, Some(0), "{r:#?}");
    assert_eq!(r.kind, StallKind::OffCpu, "{r:#?}");
    assert_eq!(r.thread, me, "the driving thread: {r:#?}");
    assert_eq!(after.len(), 1, "one report per episode: {after:#?}");
    assert!(!after[0].ongoing, "{after:#?}");
    assert!(after[0].duration_ms >= 240.0, "{after:#?}");
}
