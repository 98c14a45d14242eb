//! A 300 ms busy loop inside `poll` is reported once, while it spins, as a CPU stall.

mod support;

use std::sync::Arc;
use std::time::Duration;

use pollwatch::StallKind;

#[test]
fn busy_loop_is_reported_as_cpu_while_it_runs() {
    let (rt, agent) = support::runtime(Duration::from_millis(100));
    let agent = Arc::new(agent);
    let inside = agent.clone();
    let spawn_line = support::next_line(file!(), line!());
    let task = rt.spawn(async move {
        support::busy_for(Duration::from_millis(300));
        inside.stalls()
    });
    let during = rt.block_on(task).unwrap();
    support::assert_one_ongoing_report(&during, StallKind::Cpu, &spawn_line);
    support::assert_completed(&agent, 290.0);
}
