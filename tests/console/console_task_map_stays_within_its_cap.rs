//! With the console on, 200 000 short tasks and then more long-lived tasks than the cap
//! keep the console's task map within `console_max_tasks`: completed tasks are evicted to
//! make room, live tasks beyond the cap are not tracked, and every spawn is accounted for
//! (tracked + untracked + spawn events dropped = tokio's own spawn count). A console client
//! connected throughout never gets an update about more tasks than the cap.
#![cfg(all(feature = "console", tokio_unstable))]

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::console::{self, View};
use support::scrape::Exposition;

const CAP: usize = 1_000;
const BATCHES: usize = 200;
const BATCH: usize = 1_000;
const LIVE: usize = 1_200;

fn value(e: &Exposition, name: &str, labels: &[(&str, &str)]) -> u64 {
    e.value(name, labels)
        .unwrap_or_else(|| panic!("{name}{labels:?} is exported")) as u64
}

struct Counts {
    tasks: u64,
    tracked: u64,
    untracked: u64,
    evicted: u64,
    dropped_spawns: u64,
    spawned: u64,
}

fn counts(agent: &pollwatch::Agent) -> Counts {
    let e = Exposition::parse(&agent.encode_metrics());
    Counts {
        tasks: value(&e, "pollwatch_console_tasks", &[]),
        tracked: value(
            &e,
            "pollwatch_console_spawns_total",
            &[("result", "tracked")],
        ),
        untracked: value(
            &e,
            "pollwatch_console_spawns_total",
            &[("result", "untracked")],
        ),
        evicted: value(&e, "pollwatch_console_tasks_evicted_total", &[]),
        dropped_spawns: value(
            &e,
            "pollwatch_console_events_dropped_total",
            &[("kind", "spawn")],
        ),
        spawned: value(&e, "tokio_task_spawned_total", &[]),
    }
}

/// Samples the gauge until `done` (bounded); returns the largest value seen.
fn watch_gauge(agent: &pollwatch::Agent, limit: Duration, done: impl Fn() -> bool) -> u64 {
    let start = Instant::now();
    let mut largest = 0;
    while !done() && start.elapsed() < limit {
        largest = largest.max(counts(agent).tasks);
        std::thread::sleep(Duration::from_millis(5));
    }
    largest
}

#[test]
fn console_task_map_stays_within_its_cap() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .console_addr("127.0.0.1:0".parse().unwrap())
            .console_max_tasks(CAP),
    );
    let addr = agent.console_addr().unwrap();

    // A console connected throughout, on its own thread.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut c = console::connect(addr, Duration::from_secs(10)).await;
                let mut stream = console::updates(&mut c).await;
                let mut view = View::default();
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    console::watch_until(
                        &mut stream,
                        &mut view,
                        Duration::from_millis(200),
                        |_| false,
                    )
                    .await;
                }
                view
            })
        })
    };

    // 200 000 short tasks, spawned from a task in batches, as a busy service would.
    let storm = rt.spawn(async {
        for _ in 0..BATCHES {
            let batch: Vec<_> = (0..BATCH).map(|_| tokio::spawn(async {})).collect();
            for t in batch {
                t.await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let largest = watch_gauge(&agent, Duration::from_secs(120), || storm.is_finished());
    rt.block_on(storm).unwrap();
    assert!(largest <= CAP as u64, "task map held {largest} > {CAP}");

    // More live tasks than the cap.
    let release = Arc::new(tokio::sync::Notify::new());
    let live: Vec<_> = (0..LIVE)
        .map(|_| {
            let r = release.clone();
            rt.spawn(async move { r.notified().await })
        })
        .collect();
    // Every spawn is accounted for, eventually (the console drains every 10 ms).
    let settled = || {
        let c = counts(&agent);
        c.tracked + c.untracked + c.dropped_spawns == c.spawned
    };
    let start = Instant::now();
    while !settled() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = counts(&agent);
    eprintln!(
        "largest map {largest}, map now {}, tracked {}, untracked {}, evicted {}, spawn events dropped {}, spawned {}",
        c.tasks, c.tracked, c.untracked, c.evicted, c.dropped_spawns, c.spawned
    );
    assert_eq!(
        c.tracked + c.untracked + c.dropped_spawns,
        c.spawned,
        "tracked {} + untracked {} + dropped {} vs spawned {}",
        c.tracked,
        c.untracked,
        c.dropped_spawns,
        c.spawned
    );
    assert!(c.spawned >= (BATCHES * BATCH + LIVE) as u64);
    assert!(c.tasks <= CAP as u64, "{}", c.tasks);
    assert!(c.evicted > 0, "completed tasks made room");
    assert!(
        c.untracked + c.dropped_spawns >= (LIVE - CAP) as u64,
        "live tasks beyond the cap are not tracked: untracked {}",
        c.untracked
    );

    release.notify_waiters();
    for t in live {
        rt.block_on(t).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let view = client.join().unwrap();
    assert!(view.updates > 10, "the console kept receiving updates");
    assert!(view.largest_update <= CAP, "{}", view.largest_update);
    assert!(view.largest_stats <= CAP, "{}", view.largest_stats);
    drop(agent);
}
