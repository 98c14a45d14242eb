//! How soon after a poll passes the threshold is its stall visible in `agent.stalls()`?
//!
//! DESIGN §6 bar: no later than threshold + one watchdog tick, p99 over 100 injected stalls.
//! Each injected stall is a task that blocks its worker and, from inside its own poll,
//! looks at the agent's total every 100 µs until its report appears; the latency is the time from the poll's start to
//! that moment, minus the threshold.
//!
//! Run: `RUSTFLAGS="--cfg tokio_unstable" cargo bench --bench detection` (hooked mode), or
//! without RUSTFLAGS for attach mode.

use std::sync::Arc;
use std::time::{Duration, Instant};

const STALLS: usize = 100;
const THRESHOLD: Duration = Duration::from_millis(50);
const TICK: Duration = Duration::from_millis(10);

fn main() {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(2).enable_all();
    let (rt, agent) = pollwatch::Agent::builder()
        .stall_threshold(THRESHOLD)
        .watchdog_tick(TICK)
        .max_reports(1)
        .build_runtime(&mut rt)
        .expect("agent");
    let agent = Arc::new(agent);
    let mut late_ms = Vec::with_capacity(STALLS);
    let mut missed = 0;
    for i in 0..STALLS {
        let a = agent.clone();
        let seen = rt.block_on(async move {
            tokio::spawn(async move {
                let start = Instant::now();
                let before = a.stall_summary().stalls_total;
                while start.elapsed() < Duration::from_secs(2) {
                    let summary = a.stall_summary();
                    if summary.stalls_total > before {
                        let seen_at = start.elapsed();
                        let reported = summary.stalls.last().map(|r| r.duration_ms);
                        return Some((seen_at, reported.unwrap_or(f64::NAN)));
                    }
                    // Look every 100 µs, not in a tight loop: the summary takes the stall
                    // log's lock, which the watchdog needs to publish the report.
                    std::thread::sleep(Duration::from_micros(100));
                }
                None
            })
            .await
            .unwrap()
        });
        match seen {
            Some((d, reported)) => {
                late_ms.push(d.saturating_sub(THRESHOLD).as_secs_f64() * 1e3);
                if std::env::var_os("POLLWATCH_BENCH_VERBOSE").is_some() {
                    eprintln!(
                        "seen after {:.1} ms, report said {reported:.1} ms",
                        d.as_secs_f64() * 1e3
                    );
                }
            }
            None => missed += 1,
        }
        // Let the episode close, and start the next stall at a different phase of the
        // watchdog's tick (a fixed pause would start every stall right after a tick).
        std::thread::sleep(TICK * 3 + Duration::from_micros((i as u64 * 3_700) % 10_000));
    }
    late_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| late_ms[((late_ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "detection ({:?} mode, threshold {:?}, tick {:?}, {} stalls): after threshold p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; missed {}",
        agent.mode(),
        THRESHOLD,
        TICK,
        late_ms.len(),
        q(0.5),
        q(0.99),
        late_ms.last().copied().unwrap_or(f64::NAN),
        missed
    );
}
