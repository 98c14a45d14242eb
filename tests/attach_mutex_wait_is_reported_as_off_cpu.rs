//! Attach mode: a task waiting on a `std::sync::Mutex` that another thread holds for 300 ms
//! is reported once, while it waits, as an off-CPU worker stall.

mod support;

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use pollwatch::{Detection, StallKind};

#[test]
fn attach_mutex_wait_is_reported_as_off_cpu() {
    let rt = support::plain_runtime(2);
    let agent = Arc::new(support::attach(
        &rt,
        pollwatch::Agent::builder().stall_threshold(Duration::from_millis(100)),
    ));
    let lock = Arc::new(Mutex::new(0u32));
    let held = Arc::new(Barrier::new(2));
    let holder = {
        let (lock, held) = (lock.clone(), held.clone());
        std::thread::spawn(move || {
            let mut guard = lock.lock().unwrap();
            held.wait();
            std::thread::sleep(Duration::from_millis(300));
            *guard += 1;
        })
    };
    held.wait();
    let inside = agent.clone();
    let during = rt
        .block_on(rt.spawn(async move {
            *lock.lock().unwrap() += 1;
            inside.stalls()
        }))
        .unwrap();
    holder.join().unwrap();
    assert_eq!(during.len(), 1, "{during:#?}");
    assert!(during[0].ongoing, "{during:#?}");
    assert_eq!(during[0].detection, Detection::Worker, "{during:#?}");
    assert_eq!(during[0].kind, StallKind::OffCpu, "{during:#?}");
    support::assert_completed(&agent, 200.0);
}
