//! Helpers shared by the integration tests: a runtime with an agent, and bounded waits.
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub mod browser;
pub mod console;
pub mod dashboards;
pub mod fixture;
pub mod flame;
#[cfg(feature = "opentelemetry-sdk")]
pub mod otel_sdk;
#[cfg(feature = "opentelemetry")]
pub mod otlp;
pub mod prometheus;
pub mod scrape;

use pollwatch::{Agent, StallReport};

/// Held for the whole of a test that must not share the machine with the other tests of
/// its binary: the topic binaries (`tests/<topic>/main.rs`) group tests that measure stalls
/// and deadlines against the wall clock, which one test's deliberate stall on another core
/// would skew. A test that failed while holding it does not poison the rest.
pub struct Serial(#[allow(dead_code)] MutexGuard<'static, ()>);

/// Waits until no other test of this binary holds [`Serial`].
pub fn serial() -> Serial {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    Serial(
        ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
}

/// A two-worker runtime built through pollwatch: hooked mode under `tokio_unstable`,
/// attach mode on stable tokio.
#[track_caller]
pub fn runtime(threshold: Duration) -> (tokio::runtime::Runtime, Agent) {
    runtime_with(Agent::builder().stall_threshold(threshold))
}

#[track_caller]
pub fn runtime_with(builder: pollwatch::Builder) -> (tokio::runtime::Runtime, Agent) {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(2).enable_all();
    builder.build_runtime(&mut rt).expect("agent starts")
}

/// Waits (bounded) until `pred` holds for the agent's reports; returns them.
pub fn wait_for(
    agent: &Agent,
    limit: Duration,
    pred: impl Fn(&[StallReport]) -> bool,
) -> Vec<StallReport> {
    let start = Instant::now();
    loop {
        let stalls = agent.stalls();
        if pred(&stalls) || start.elapsed() > limit {
            return stalls;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `file:line:` of the line after `line`, to compare with `spawned_at` (which adds a
/// column). Tests write `let spawn_line = support::next_line(file!(), line!());` right
/// above their `spawn`.
pub fn next_line(file: &str, line: u32) -> String {
    format!("{}:{}:", file, line + 1)
}

/// True in the hooked build, where reports carry task ids and spawn locations.
pub const HOOKED: bool = cfg!(tokio_unstable);

/// Checks what every "stall caught while it runs" test checks: exactly one report, seen from
/// inside the blocking poll (`during`), of the expected kind. In hooked mode it was seen by
/// the poll hook, with a task id and the test's spawn line; in attach mode by the worker's
/// counters, naming the worker.
#[track_caller]
pub fn assert_one_ongoing_report(
    mode: pollwatch::Mode,
    during: &[StallReport],
    kind: pollwatch::StallKind,
    spawn_line: &str,
) {
    assert_eq!(
        during.len(),
        1,
        "exactly one report while running: {during:#?}"
    );
    let r = &during[0];
    assert!(
        r.ongoing,
        "the report exists while the poll still runs: {r:#?}"
    );
    assert_eq!(r.kind, kind, "{r:#?}");
    match mode {
        pollwatch::Mode::Hooked => {
            assert_eq!(r.detection, pollwatch::Detection::PollHook, "{r:#?}");
            let at = r.spawned_at.as_deref().expect("spawn location");
            assert!(
                at.starts_with(spawn_line),
                "spawned at {at}, expected {spawn_line}"
            );
            assert!(r.task_id.is_some(), "{r:#?}");
        }
        pollwatch::Mode::Attach => {
            assert_eq!(r.detection, pollwatch::Detection::Worker, "{r:#?}");
            assert!(r.worker.is_some(), "{r:#?}");
            assert!(r.task_id.is_none() && r.spawned_at.is_none(), "{r:#?}");
        }
        pollwatch::Mode::Disabled => panic!("a disabled agent reported {r:#?}"),
    }
}

/// After the poll returned: still exactly one report, now complete.
#[track_caller]
pub fn assert_completed(agent: &Agent, min_ms: f64) -> StallReport {
    let after = wait_for(agent, Duration::from_secs(3), |s| {
        s.iter().all(|r| !r.ongoing)
    });
    assert_eq!(after.len(), 1, "one report per episode: {after:#?}");
    let r = after[0].clone();
    assert!(!r.ongoing, "{r:#?}");
    assert!(r.duration_ms >= min_ms, "{r:#?}");
    r
}

/// Spins on the CPU for `d` (bounded).
#[inline(never)]
pub fn busy_for(d: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    x
}

/// Stack capture exists on this platform (elsewhere reports say `unsupported`).
pub const CAPTURE_SUPPORTED: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

/// A plain multi-thread runtime with `workers` workers, built without pollwatch: what an
/// app using `#[tokio::main]` has.
#[track_caller]
pub fn plain_runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Attaches `builder` from inside `rt` (attach mode in both builds), then lets the service
/// "start up" for a moment, as an app does, so the agent has met the workers.
#[track_caller]
pub fn attach(rt: &tokio::runtime::Runtime, builder: pollwatch::Builder) -> Agent {
    rt.block_on(async {
        let agent = builder
            .attach(&tokio::runtime::Handle::current())
            .expect("attach");
        assert_eq!(agent.mode(), pollwatch::Mode::Attach);
        tokio::time::sleep(Duration::from_millis(200)).await;
        agent
    })
}

/// Waits (bounded) until the single report has symbolized frames and is complete.
#[track_caller]
pub fn symbolized(agent: &Agent) -> StallReport {
    let s = wait_for(agent, Duration::from_secs(20), |s| {
        s.len() == 1 && !s[0].frames.is_empty() && !s[0].ongoing
    });
    assert_eq!(s.len(), 1, "{s:#?}");
    s[0].clone()
}

/// How many of pollwatch's own threads run in this process (Linux; 0 elsewhere).
pub fn pollwatch_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
                .filter(|name| name.starts_with("pollwatch"))
                .count()
        })
        .unwrap_or(0)
}

/// Heavy but healthy load on the current runtime: rounds of 200 tasks, each 50 polls of
/// 5–25 µs of CPU, for at least 3 s and 100 000 polls (bounded by 20 s and 5 million
/// polls). Returns the number of polls.
pub async fn healthy_load() -> u64 {
    let start = Instant::now();
    let mut total = 0u64;
    while (total < 100_000 || start.elapsed() < Duration::from_secs(3))
        && start.elapsed() < Duration::from_secs(20)
        && total < 5_000_000
    {
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                tokio::spawn(async move {
                    let mut n = 0u64;
                    for _ in 0..50 {
                        busy_for(Duration::from_micros(5 + (i % 5) * 5));
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
}

/// The positive control of a "this is not a stall" test: in the same runtime, under the same
/// agent, a plain `std::thread::sleep` of 250 ms in a task (no exemption) is reported, exactly
/// once. Call it after the test's own assertion of zero reports, so that zero came from a
/// detector that works, not from one that never looked.
#[track_caller]
pub fn assert_a_real_stall_is_still_reported(rt: &tokio::runtime::Runtime, agent: &Agent) {
    let before = agent.stall_summary().stalls_total;
    assert_eq!(
        before,
        0,
        "the control expects no earlier report: {:#?}",
        agent.stalls()
    );
    rt.block_on(rt.spawn(async { std::thread::sleep(Duration::from_millis(250)) }))
        .expect("the blocking task ran");
    let after = wait_for(agent, Duration::from_secs(3), |s| {
        !s.is_empty() && s.iter().all(|r| !r.ongoing)
    });
    assert_eq!(
        after.len(),
        1,
        "positive control: the same runtime's real stall must be reported once: {after:#?}"
    );
    assert!(after[0].duration_ms >= 100.0, "{:#?}", after[0]);
}

/// The two ways a user sets pollwatch up, for tests that must hold in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// `attach()` from inside a plain two-worker runtime, as `#[tokio::main]` would, with
    /// no warm-up: attach mode in both builds.
    Attach,
    /// `build_runtime` on a two-worker builder: hooked mode under `tokio_unstable`, attach
    /// mode with pollwatch's thread hooks on stable tokio.
    BuildRuntime,
}

impl Setup {
    pub const BOTH: [Setup; 2] = [Setup::Attach, Setup::BuildRuntime];

    pub fn start(self, builder: pollwatch::Builder) -> (tokio::runtime::Runtime, Agent) {
        match self {
            Setup::Attach => {
                let rt = plain_runtime(2);
                let agent = rt.block_on(async {
                    builder
                        .attach(&tokio::runtime::Handle::current())
                        .expect("attach")
                });
                (rt, agent)
            }
            Setup::BuildRuntime => runtime_with(builder),
        }
    }
}

/// The value of an unlabelled counter or gauge in `agent`'s Prometheus text, or the sum of
/// a labelled family's series (`None` if the family has no series).
#[track_caller]
pub fn metric_sum(agent: &Agent, family: &str) -> Option<f64> {
    let text = agent.encode_metrics();
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        if name == family {
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("unparsable sample: {line}"));
            *sum.get_or_insert(0.0) += value;
        }
    }
    sum
}
