//! Attach mode: heavy healthy load (many short polls on both workers for seconds, both cores
//! busy) produces zero reports at a 50 ms threshold, although tokio publishes a busy
//! worker's counters only every 61 scheduler ticks.

mod support;

use std::time::{Duration, Instant};

#[test]
fn attach_healthy_load_produces_no_reports() {
    let rt = support::plain_runtime(2);
    let agent = support::attach(
        &rt,
        pollwatch::Agent::builder().stall_threshold(Duration::from_millis(50)),
    );
    let polls = rt.block_on(async {
        let start = Instant::now();
        let mut total = 0u64;
        // At least 100 000 polls over at least 3 s; bounded by 20 s and 5 million polls.
        while (total < 100_000 || start.elapsed() < Duration::from_secs(3))
            && start.elapsed() < Duration::from_secs(20)
            && total < 5_000_000
        {
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        for _ in 0..50 {
                            support::busy_for(Duration::from_micros(20 + (i % 5) * 10));
                            tokio::task::yield_now().await;
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            for t in tasks {
                total += t.await.unwrap();
            }
        }
        total
    });
    assert!(polls >= 100_000, "only {polls} polls");
    let summary = agent.stall_summary();
    assert_eq!(summary.stalls_total, 0, "{:#?}", summary.stalls);
}
