//! A 300 ms busy loop inside `poll` is reported once, while it spins, as a CPU stall (at the
//! test's spawn line in hooked mode, of its worker in attach mode). In both set-ups.

use crate::support::{self, Setup};

use std::sync::Arc;
use std::time::Duration;

use pollwatch::StallKind;

#[test]
fn busy_loop_is_reported_as_cpu_while_it_runs() {
    let _serial = support::serial();
    for setup in Setup::BOTH {
        eprintln!("--- {setup:?}");
        let (rt, agent) =
            setup.start(pollwatch::Agent::builder().stall_threshold(Duration::from_millis(100)));
        let agent = Arc::new(agent);
        let inside = agent.clone();
        let spawn_line = support::next_line(file!(), line!());
        let task = rt.spawn(async move {
            support::busy_for(Duration::from_millis(300));
            inside.stalls()
        });
        let during = rt.block_on(task).unwrap();
        support::assert_one_ongoing_report(agent.mode(), &during, StallKind::Cpu, &spawn_line);
        support::assert_completed(&agent, 290.0);
    }
}
