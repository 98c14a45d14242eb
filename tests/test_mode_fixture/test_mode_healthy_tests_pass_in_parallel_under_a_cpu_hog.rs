//! No false failures: the eight healthy tests of the fixture application
//! (`tests/fixtures/test-mode/tests/healthy.rs`: channels, timers, `spawn_blocking`,
//! `allow_blocking`, a tokio mutex, `testing::run`, a runtime the test builds) run all at once
//! (`--test-threads 8`) through `cargo test` while this process keeps every core busy with
//! spinning threads, 20 times in a row, and pass every time. On a 2-core machine their polls
//! are descheduled again and again for longer than the 10 ms threshold: runnable, not
//! running, which is the host's doing and not a blocking poll.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs in a row.
const RUNS: usize = 20;
/// The hog stops by itself after this, whatever happens to the test.
const HOG_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Busy threads, one per core, until dropped.
struct CpuHog {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl CpuHog {
    fn start() -> CpuHog {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let start = Instant::now();
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) && start.elapsed() < HOG_LIMIT {
                        for _ in 0..10_000 {
                            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                        }
                    }
                    x
                })
            })
            .collect();
        CpuHog { stop, threads }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn test_mode_healthy_tests_pass_in_parallel_under_a_cpu_hog() {
    let _serial = support::serial();
    let fixture = support::fixture::fixture();
    let hog = CpuHog::start();
    for run in 1..=RUNS {
        let outcome = fixture.cargo_test(&["--test", "healthy", "--", "--test-threads", "8"], &[]);
        assert!(
            outcome.status.success() && outcome.output.contains("test result: ok. 8 passed"),
            "run {run} of {RUNS}: every healthy test passes: {outcome:?}"
        );
        assert!(
            !outcome.output.contains("blocked the tokio executor"),
            "run {run}: no report at all: {outcome:?}"
        );
    }
    drop(hog);
}
