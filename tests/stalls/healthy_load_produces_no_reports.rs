//! Heavy but healthy load — many short polls on both workers for several seconds, both cores
//! busy — produces zero reports at a 50 ms threshold (in attach mode although tokio publishes
//! a busy worker's counters only every 61 scheduler ticks), while a real stall right after,
//! in the same runtime, is reported. In both set-ups.

use crate::support::{self, Setup};

use std::time::Duration;

#[test]
fn healthy_load_produces_no_reports() {
    let _serial = support::serial();
    for setup in Setup::BOTH {
        eprintln!("--- {setup:?}");
        let (rt, agent) =
            setup.start(pollwatch::Agent::builder().stall_threshold(Duration::from_millis(50)));
        let polls = rt.block_on(support::healthy_load());
        assert!(polls >= 100_000, "only {polls} polls");
        let summary = agent.stall_summary();
        assert_eq!(summary.stalls_total, 0, "{:#?}", summary.stalls);
        support::assert_a_real_stall_is_still_reported(&rt, &agent);
    }
}
