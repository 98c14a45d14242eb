//! The host-stall guard, for CPU starvation: six OS threads outside the runtime spin on
//! the machine's cores while healthy short polls run at a 50 ms threshold. A poll whose
//! thread is runnable but not running is not a blocking future (DESIGN §3): nothing is
//! reported. Once the spinners stop, a real stall is reported in the same runtime (the
//! guard did not just switch detection off). In both set-ups (see `support::Setup`).

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::Setup;

/// Spinning threads, each bounded to 30 s, stopped when dropped.
struct Spinners {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Spinners {
    fn start(n: usize) -> Spinners {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let start = Instant::now();
                    let mut spins = 0u64;
                    while !stop.load(Relaxed) && start.elapsed() < Duration::from_secs(30) {
                        support::busy_for(Duration::from_millis(1));
                        spins += 1;
                    }
                    spins
                })
            })
            .collect();
        Spinners { stop, threads }
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn starvation_is_not_a_stall(setup: Setup) {
    let (rt, agent) =
        setup.start(pollwatch::Agent::builder().stall_threshold(Duration::from_millis(50)));
    let spinners = Spinners::start(6);
    let polls = rt.block_on(support::healthy_load());
    drop(spinners);
    assert!(polls >= 100_000, "{setup:?}: only {polls} polls");
    let stalls = agent.stall_summary();
    assert_eq!(
        stalls.stalls_total, 0,
        "{setup:?}: a starved thread is not a blocking future: {:#?}",
        stalls.stalls
    );

    // Positive control: detection is alive in the same runtime.
    rt.block_on(async {
        tokio::spawn(async { support::busy_for(Duration::from_millis(200)) })
            .await
            .unwrap()
    });
    let after = support::wait_for(&agent, Duration::from_secs(5), |s| {
        s.len() == 1 && !s[0].ongoing
    });
    assert_eq!(
        after.len(),
        1,
        "{setup:?}: the real stall is reported: {after:#?}"
    );
    assert_eq!(
        after[0].kind,
        pollwatch::StallKind::Cpu,
        "{setup:?}: {:#?}",
        after[0]
    );
}

#[test]
fn cpu_starvation_by_other_threads_is_not_a_stall() {
    let _serial = support::serial();
    // One set-up after the other: two would starve each other as well.
    for setup in Setup::BOTH {
        starvation_is_not_a_stall(setup);
    }
}
