//! A task waiting on a `std::sync::Mutex` that another thread holds for 300 ms is reported
//! once, while it waits, as an off-CPU stall (at the test's spawn line in hooked mode, of its
//! worker in attach mode). In both set-ups.

use crate::support::{self, Setup};

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use pollwatch::StallKind;

#[test]
fn mutex_wait_is_reported_as_off_cpu() {
    let _serial = support::serial();
    for setup in Setup::BOTH {
        eprintln!("--- {setup:?}");
        let (rt, agent) =
            setup.start(pollwatch::Agent::builder().stall_threshold(Duration::from_millis(100)));
        let agent = Arc::new(agent);
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
        let spawn_line = support::next_line(file!(), line!());
        let task = rt.spawn(async move {
            *lock.lock().unwrap() += 1;
            inside.stalls()
        });
        let during = rt.block_on(task).unwrap();
        holder.join().unwrap();
        support::assert_one_ongoing_report(agent.mode(), &during, StallKind::OffCpu, &spawn_line);
        support::assert_completed(&agent, 200.0);
    }
}
