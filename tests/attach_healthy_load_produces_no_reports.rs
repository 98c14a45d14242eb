//! Attach mode: heavy healthy load (many short polls on both workers for seconds, both cores
//! busy) produces zero reports at a 50 ms threshold, although tokio publishes a busy
//! worker's counters only every 61 scheduler ticks. A real stall right after, in the same
//! runtime, is reported.

mod support;

use std::time::Duration;

#[test]
fn attach_healthy_load_produces_no_reports() {
    let rt = support::plain_runtime(2);
    let agent = support::attach(
        &rt,
        pollwatch::Agent::builder().stall_threshold(Duration::from_millis(50)),
    );
    let polls = rt.block_on(support::healthy_load());
    assert!(polls >= 100_000, "only {polls} polls");
    let summary = agent.stall_summary();
    assert_eq!(summary.stalls_total, 0, "{:#?}", summary.stalls);
    support::assert_a_real_stall_is_still_reported(&rt, &agent);
}
