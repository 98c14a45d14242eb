//! With every worker of the app's runtime blocked in a poll, `GET /metrics` still answers
//! within 100 ms (the endpoint has its own thread and runtime), and shows
//! `tokio_worker_stalled` equal to the number of workers.
//!
//! The stalled count comes from per-worker stall detection: the poll hooks in hooked mode,
//! the attach-mode worker detector on stable tokio.

use crate::support;

use std::time::{Duration, Instant};

use support::scrape;

#[test]
fn scrape_answers_while_every_worker_is_blocked() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("blocked")
            .stall_threshold(Duration::from_millis(100))
            .http_addr(scrape::any_port()),
    );
    let addr = agent.http_addr().unwrap();
    let workers = scrape::scrape(addr).value("tokio_workers", &[]).unwrap();
    assert_eq!(workers, 2.0);

    let blocker = scrape::Blocker::new(&rt, 2);
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut stalled = None;
    let mut scrapes = 0;
    // Bounded: at most 3 s of scraping every 20 ms.
    while start.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let e = scrape::scrape(addr);
        let took = t.elapsed();
        scrapes += 1;
        slowest = slowest.max(took);
        assert!(
            took < Duration::from_millis(100),
            "scrape {scrapes} took {took:?} while the workers were blocked"
        );
        stalled = e.value("tokio_worker_stalled", &[]);
        assert!(stalled.is_some(), "tokio_worker_stalled is exported");
        if stalled == Some(workers) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{scrapes} scrapes while blocked, slowest {slowest:?}, stalled={stalled:?}");
    assert_eq!(stalled, Some(workers), "every worker shows as stalled");
    assert!(agent.stalls().len() >= 2, "{:#?}", agent.stalls());
    drop(blocker);
    // Once released, the gauge goes back to zero (bounded wait).
    let start = Instant::now();
    loop {
        let now = scrape::scrape(addr).value("tokio_worker_stalled", &[]);
        if now == Some(0.0) || start.elapsed() > Duration::from_secs(3) {
            assert_eq!(now, Some(0.0));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
