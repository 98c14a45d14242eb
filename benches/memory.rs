//! Memory after 1 million spawned tasks from 10 000 spawn locations (DESIGN §6: "flat"),
//! with the agent and without it.
//!
//! ```sh
//! RUSTFLAGS="--cfg tokio_unstable" cargo bench --bench memory   # hooked mode (+ attach row)
//! cargo bench --bench memory                                    # stable tokio: attach mode
//! ```
//!
//! Each run of a runtime is its own child process (this binary re-executed with
//! `--subject <name>`), so one run's freed-but-kept allocator memory does not show up in the
//! next one's RSS. Runs are interleaved (every round runs every subject once), 3 rounds.
//!
//! A run builds a 2-worker runtime, then spawns 100 batches of 10 000 short tasks (two polls
//! each), one task from each of 10 000 distinct spawn locations per batch, waits until each
//! batch has finished, and (agent rows) calls `encode_metrics()` after every batch. It
//! reports live heap bytes (a counting `#[global_allocator]`: bytes allocated and not yet
//! freed, all threads) and RSS (`VmRSS` of `/proc/self/status`) after 10k, 100k, 500k and 1M
//! tasks, relative to the moment the runtime and agent were built. The figure of merit is
//! the growth from 100k to 1M tasks.
//!
//! Subjects: plain tokio; `build_runtime` (hooked mode under `--cfg tokio_unstable`, attach
//! mode with thread hooks on stable tokio); `attach(&handle)` on a plain runtime.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use pollwatch::Agent;

#[path = "support/spawn_sites.rs"]
mod spawn_sites;

/// Bytes allocated and not yet freed, all threads.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct CountingAllocator;

// SAFETY: every call is forwarded to `System` unchanged; only a counter is updated beside.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const WORKERS: usize = 2;
/// Batches of 10 000 tasks: 1 million in all (10 in a quick `cargo test --benches` run).
const BATCHES: usize = 100;
/// After how many batches memory is read: 10k, 100k, 500k, 1M tasks.
const CHECKPOINTS: [usize; 4] = [1, 10, 50, 100];
const ROUNDS: usize = 3;
const SUBJECTS: [&str; 3] = [
    "tokio, no pollwatch",
    "pollwatch build_runtime",
    "pollwatch attach",
];

/// Resident set size in KiB, from `/proc/self/status` (0 where unreadable).
fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn tokio_builder() -> tokio::runtime::Builder {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(WORKERS).enable_all();
    b
}

/// Runs one subject in this process; prints `mode <mode>`, `start <heap bytes> <RSS KiB>`
/// (absolute, once built) and one `row <tasks> <heap bytes added> <RSS KiB added>` line per
/// checkpoint.
fn run_subject(name: &str, batches: usize) {
    let (runtime, agent) = match name {
        "tokio, no pollwatch" => (tokio_builder().build().expect("runtime"), None),
        "pollwatch build_runtime" => {
            let (rt, agent) = Agent::builder()
                .build_runtime(&mut tokio_builder())
                .expect("pollwatch starts");
            (rt, Some(agent))
        }
        "pollwatch attach" => {
            let rt = tokio_builder().build().expect("runtime");
            let agent = rt.block_on(async {
                Agent::builder()
                    .attach(&tokio::runtime::Handle::current())
                    .expect("attach")
            });
            (rt, Some(agent))
        }
        other => panic!("unknown subject {other:?}"),
    };
    println!(
        "mode {}",
        agent.as_ref().map_or("none", |a| a.mode().as_str())
    );
    // Let the agent's threads and the runtime's workers settle before the reference reading.
    std::thread::sleep(Duration::from_millis(200));
    let handle = runtime.handle().clone();
    let base_tasks = handle.metrics().num_alive_tasks();
    let (heap0, rss0) = (LIVE.load(Relaxed), rss_kib());
    println!("start {heap0} {rss0}");
    for batch in 1..=batches {
        spawn_sites::spawn_from_10_000_places(&handle);
        wait_for_tasks(&runtime, base_tasks);
        if let Some(agent) = &agent {
            std::hint::black_box(agent.encode_metrics());
        }
        if CHECKPOINTS.contains(&batch) {
            println!(
                "row {} {} {}",
                batch * spawn_sites::SITES,
                LIVE.load(Relaxed) - heap0,
                rss_kib() - rss0
            );
        }
    }
    drop(agent);
}

/// Waits (bounded, 30 s) until only the tasks alive before the batch are left.
fn wait_for_tasks(runtime: &tokio::runtime::Runtime, base: usize) {
    let start = Instant::now();
    runtime.block_on(async {
        while tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            > base
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "a batch of tasks did not finish within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
}

/// One child's checkpoints: (tasks, heap bytes added, RSS KiB added); the first row is the
/// absolute reading at start, with 0 tasks.
type Rows = Vec<(usize, i64, i64)>;

fn run_child(name: &str, benching: bool) -> (String, Rows) {
    let exe = std::env::current_exe().expect("own executable");
    let mut cmd = Command::new(exe);
    cmd.args(["--subject", name]);
    if benching {
        cmd.arg("--bench");
    }
    let out = cmd.output().expect("child runs");
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut mode = String::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("mode") => mode = words.next().unwrap_or("?").to_string(),
            Some(kind @ ("row" | "start")) => {
                let words = (kind == "start").then_some("0").into_iter().chain(words);
                let v: Vec<i64> = words.filter_map(|w| w.parse().ok()).collect();
                if let [tasks, heap, rss] = v[..] {
                    rows.push((tasks as usize, heap, rss));
                }
            }
            _ => {}
        }
    }
    (mode, rows)
}

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn kib(bytes: i64) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench");
    let batches = if benching { BATCHES } else { 10 };
    if let Some(i) = args.iter().position(|a| a == "--subject") {
        run_subject(&args[i + 1], batches);
        return;
    }
    let rounds = if benching { ROUNDS } else { 1 };
    // [subject][round] -> rows
    let mut results: Vec<Vec<Rows>> = vec![Vec::new(); SUBJECTS.len()];
    let mut modes = vec![String::new(); SUBJECTS.len()];
    for round in 0..rounds {
        for k in 0..SUBJECTS.len() {
            let i = (round + k) % SUBJECTS.len();
            let (mode, rows) = run_child(SUBJECTS[i], benching);
            modes[i] = mode;
            results[i].push(rows);
        }
    }
    println!(
        "{WORKERS} workers; {} tasks in batches of {} (one per spawn location); {rounds} \
         interleaved rounds, one process per run; memory added since the runtime was built",
        batches * spawn_sites::SITES,
        spawn_sites::SITES
    );
    println!(
        "(live heap: counting global allocator, KiB; RSS: VmRSS, KiB; at start: absolute, once \
         the runtime and agent are built; +N tasks: added since then; medians over rounds, \
         and each round's growth)\n"
    );
    let checkpoints: Vec<usize> = results[0][0].iter().map(|r| r.0).collect();
    print!("| runtime | mode | measure |");
    for t in &checkpoints {
        match t {
            0 => print!(" at start (absolute) |"),
            t => print!(" +{}k tasks |", t / 1000),
        }
    }
    println!(
        " growth {}k → {}k | per round |",
        checkpoints[2.min(checkpoints.len() - 1)] / 1000,
        checkpoints[checkpoints.len() - 1] / 1000
    );
    print!("|---|---|---|");
    for _ in &checkpoints {
        print!("---:|");
    }
    println!("---:|---|");
    for (i, name) in SUBJECTS.iter().enumerate() {
        for (measure, pick) in [("heap", 1usize), ("RSS", 2)] {
            let value = |rows: &Rows, c: usize| -> i64 {
                let r = rows[c];
                if pick == 1 {
                    r.1
                } else {
                    r.2 * 1024
                }
            };
            print!("| {name} | {} | {measure} |", modes[i]);
            for c in 0..checkpoints.len() {
                let m = median(results[i].iter().map(|rows| value(rows, c)).collect());
                print!(" {} |", kib(m));
            }
            let from = 2.min(checkpoints.len() - 1);
            let to = checkpoints.len() - 1;
            let growth: Vec<i64> = results[i]
                .iter()
                .map(|rows| value(rows, to) - value(rows, from))
                .collect();
            let each: Vec<String> = growth.iter().map(|g| kib(*g)).collect();
            println!(" {} | {} |", kib(median(growth.clone())), each.join(", "));
        }
    }
}
