//! Heavy but healthy load — many short polls on every worker for several seconds, both
//! cores busy — produces zero reports at a 50 ms threshold.

mod support;

use std::time::{Duration, Instant};

#[test]
fn healthy_load_produces_no_reports() {
    let (rt, agent) = support::runtime(Duration::from_millis(50));
    let polls = rt.block_on(async {
        let start = Instant::now();
        let mut total = 0u64;
        // Several seconds and at least 100 000 polls; bounded in time and in count.
        while (start.elapsed() < Duration::from_secs(3) || total < 100_000)
            && start.elapsed() < Duration::from_secs(15)
            && total < 5_000_000
        {
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        for _ in 0..50 {
                            support::busy_for(Duration::from_micros(5 + (i % 5) * 5));
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
