//! The host-stall guard, for a pause of the whole process (a VM pause, a debugger): the
//! process is stopped with SIGSTOP for 400 ms and resumed while healthy short polls run at
//! a 50 ms threshold. Nothing is reported, the watchdog counts its late tick
//! (`pollwatch_watchdog_late_total`), and afterwards a real stall is still reported (the
//! guard did not just switch detection off). In both set-ups (see `support::Setup`).
//!
//! Its own test binary: SIGSTOP stops every thread of the process, every other test's too.

mod support;

use std::time::{Duration, Instant};

use support::Setup;

fn paused_process_is_not_a_stall(setup: Setup) {
    let (rt, agent) =
        setup.start(pollwatch::Agent::builder().stall_threshold(Duration::from_millis(50)));
    let pid = std::process::id();
    let (polls, paused_for) = rt.block_on(async move {
        let load = tokio::spawn(support::healthy_load());
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Stopped from outside: a child process sends the signals (a stopped process
        // cannot resume itself).
        let start = Instant::now();
        let mut pauser = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("kill -STOP {pid}; sleep 0.4; kill -CONT {pid}"))
            .spawn()
            .expect("sh");
        tokio::task::spawn_blocking(move || pauser.wait().expect("wait"))
            .await
            .unwrap();
        let paused_for = start.elapsed();
        (load.await.unwrap(), paused_for)
    });
    assert!(polls >= 100_000, "{setup:?}: only {polls} polls");
    assert!(
        paused_for >= Duration::from_millis(400),
        "{setup:?}: the process was paused for {paused_for:?}"
    );
    let late = support::metric_sum(&agent, "pollwatch_watchdog_late_total").unwrap_or(0.0);
    assert!(
        late >= 1.0,
        "{setup:?}: the pause is counted as a late tick: {late}"
    );
    let stalls = agent.stall_summary();
    assert_eq!(
        stalls.stalls_total, 0,
        "{setup:?}: a paused process is not a blocking future: {:#?}",
        stalls.stalls
    );

    // Positive control: detection is alive in the same runtime.
    rt.block_on(async {
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(200)) })
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
    assert!(after[0].duration_ms >= 190.0, "{setup:?}: {:#?}", after[0]);
}

#[test]
fn process_paused_by_sigstop_is_not_a_stall() {
    // One set-up after the other: SIGSTOP stops every thread of the process.
    for setup in Setup::BOTH {
        paused_process_is_not_a_stall(setup);
    }
}
