//! What pollwatch's hooks add to every poll: the same yield-heavy workload (2 workers, 1 000
//! tasks × 300 `yield_now`, 301 000 polls; DESIGN §6) on a plain tokio runtime and on
//! runtimes built through pollwatch.
//!
//! ```sh
//! RUSTFLAGS="--cfg tokio_unstable" cargo bench --bench hooks
//! ```
//!
//! Under `--cfg tokio_unstable` the pollwatch runtimes are hooked mode: poll, spawn and
//! terminate hooks on every task, plus the watchdog thread. On stable tokio those hooks do
//! not exist, so the same rows measure attach mode (thread hooks, watchdog and probe); the
//! bench says which one it measured. The pollwatch rows: the defaults, detection alone
//! (`poll_time_sample_every(0)` and `callsite_stats(false)`: no poll timing, no per-callsite
//! statistics, DESIGN §6's ≤ 5 ns bar), `stacks(false)`, `poll_time_sample_every(1)` (every
//! poll timed, instead of 1 in 16) and `enabled(false)`;
//! with `--features console` under `tokio_unstable`, also `console_addr` set (the console's
//! events and clock reads, no client connected).
//!
//! Under `--cfg tokio_unstable` two more rows split the cost: tokio with empty
//! before/after-poll hooks (what tokio's hook dispatch costs by itself), and the same hooks
//! reading the TSC (`quanta::Clock::raw`, what pollwatch uses) once each.
//!
//! Two measurements:
//! 1. criterion, one group with a row per runtime (throughput in polls per second);
//! 2. then a table of interleaved runs (every round runs every runtime once, in a rotating
//!    order, so drift on a shared machine hits all of them alike): wall-clock ns/poll
//!    medians (the two workers run in parallel, as in DESIGN §6), the median of the
//!    per-round differences to the plain runtime, the throughput ratio, and the same in
//!    process CPU time per poll (all threads; robust to other load on the machine).
//!
//! `POLLWATCH_BENCH_PROFILE=<seconds>` skips all that and runs only the workload on the
//! default pollwatch runtime (or the row whose name contains `POLLWATCH_BENCH_PROFILE_ROW`)
//! for that long, for a profiler:
//! `perf record -e cpu-clock -g <bench binary> --bench` (the binary is the
//! `Executable` line of `cargo bench --bench hooks --no-run`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use pollwatch::{Agent, Mode};
use tokio::runtime::Runtime;

const WORKERS: usize = 2;
const TASKS: usize = 1_000;
const YIELDS: usize = 300;
/// Each task is polled once per `yield_now` (which returns `Pending` once) plus once to finish.
const POLLS: u64 = (TASKS * (YIELDS + 1)) as u64;
/// Interleaved rounds in a `cargo bench` run (one in `cargo test --benches`).
const ROUNDS: usize = 60;

struct Subject {
    name: &'static str,
    runtime: Runtime,
    _agent: Option<Agent>,
}

fn tokio_builder() -> tokio::runtime::Builder {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(WORKERS).enable_all();
    b
}

fn plain(name: &'static str, builder: &mut tokio::runtime::Builder) -> Subject {
    Subject {
        name,
        runtime: builder.build().expect("runtime"),
        _agent: None,
    }
}

fn subjects() -> (Vec<Subject>, Mode) {
    let plain_row = plain("tokio, no pollwatch", &mut tokio_builder());
    let with = |name, builder: pollwatch::Builder| {
        let (runtime, agent) = builder
            .build_runtime(&mut tokio_builder())
            .expect("pollwatch starts");
        (
            agent.mode(),
            Subject {
                name,
                runtime,
                _agent: Some(agent),
            },
        )
    };
    let (mode, full) = with("pollwatch (defaults)", Agent::builder());
    let (_, detection_alone) = with(
        "pollwatch, detection alone",
        Agent::builder()
            .poll_time_sample_every(0)
            .callsite_stats(false),
    );
    let (_, no_stacks) = with("pollwatch, stacks(false)", Agent::builder().stacks(false));
    let (_, every_poll) = with(
        "pollwatch, poll_time_sample_every(1)",
        Agent::builder().poll_time_sample_every(1),
    );
    let (_, disabled) = with("pollwatch, enabled(false)", Agent::builder().enabled(false));
    #[cfg_attr(not(tokio_unstable), allow(unused_mut))]
    let mut all = vec![
        plain_row,
        full,
        detection_alone,
        no_stacks,
        every_poll,
        disabled,
    ];
    // The console's share of the hooks (an event per spawn, poll and end, two clock reads
    // per poll), with no console client connected.
    #[cfg(all(feature = "console", tokio_unstable))]
    all.push(
        with(
            "pollwatch, console_addr set",
            Agent::builder().console_addr("127.0.0.1:0".parse().expect("address")),
        )
        .1,
    );
    #[cfg(tokio_unstable)]
    {
        let mut b = tokio_builder();
        b.on_before_task_poll(|m| {
            black_box(m);
        })
        .on_after_task_poll(|m| {
            black_box(m);
        });
        all.push(plain("tokio + empty poll hooks", &mut b));
        let clock = quanta::Clock::new();
        let after = clock.clone();
        let mut b = tokio_builder();
        b.on_before_task_poll(move |_| {
            black_box(clock.raw());
        })
        .on_after_task_poll(move |_| {
            black_box(after.raw());
        });
        all.push(plain("tokio + poll hooks reading the TSC", &mut b));
    }
    (all, mode)
}

/// Process CPU time, all threads.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs the workload once; returns its wall time (spawning included, runtime start not).
fn workload(rt: &Runtime) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                tokio::spawn(async {
                    for _ in 0..YIELDS {
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task completes");
        }
        black_box(start.elapsed())
    })
}

fn ns_per_poll(d: Duration) -> f64 {
    d.as_nanos() as f64 / POLLS as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (subjects, mode) = subjects();
    if let Ok(secs) = std::env::var("POLLWATCH_BENCH_PROFILE") {
        let secs: u64 = secs.parse().expect("POLLWATCH_BENCH_PROFILE=<seconds>");
        // `POLLWATCH_BENCH_PROFILE_ROW=<part of a row name>` picks another row.
        let row = std::env::var("POLLWATCH_BENCH_PROFILE_ROW")
            .ok()
            .and_then(|part| subjects.iter().position(|s| s.name.contains(&part)))
            .unwrap_or(1);
        let start = Instant::now();
        let mut runs = 0u64;
        while start.elapsed() < Duration::from_secs(secs) {
            workload(&subjects[row].runtime);
            runs += 1;
        }
        println!("profiled {}: {runs} runs", subjects[row].name);
        return;
    }
    match mode {
        Mode::Hooked => println!(
            "pollwatch rows: hooked mode (--cfg tokio_unstable): poll/spawn/terminate hooks on \
             every task + watchdog"
        ),
        _ => println!(
            "pollwatch rows: {} mode. This build has no tokio task hooks (build with \
             RUSTFLAGS=\"--cfg tokio_unstable\" to measure them); the comparison below measures \
             attach mode's overhead: thread hooks, watchdog and probe.",
            mode.as_str()
        ),
    }
    println!(
        "workload: {WORKERS} workers, {TASKS} tasks x {YIELDS} yield_now = {POLLS} polls per run"
    );

    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    {
        let mut group = c.benchmark_group("hooks/yield_heavy");
        group.throughput(Throughput::Elements(POLLS));
        for s in &subjects {
            group.bench_function(s.name, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| workload(&s.runtime)).sum())
            });
        }
        group.finish();
    }
    c.final_summary();

    interleaved(&subjects, if benching { ROUNDS } else { 1 }, mode);
}

fn interleaved(subjects: &[Subject], rounds: usize, mode: Mode) {
    for s in subjects {
        workload(&s.runtime); // warm every runtime's threads and allocator caches
    }
    // [subject] -> per-round (wall ns/poll, CPU ns/poll)
    let mut wall: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); subjects.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); subjects.len()];
    for round in 0..rounds {
        for k in 0..subjects.len() {
            let i = (round + k) % subjects.len();
            let cpu_before = cpu_time();
            let took = workload(&subjects[i].runtime);
            wall[i].push(ns_per_poll(took));
            cpu[i].push(ns_per_poll(cpu_time().saturating_sub(cpu_before)));
        }
    }
    println!(
        "\ninterleaved: {rounds} rounds, pollwatch rows in {} mode, medians",
        mode.as_str()
    );
    println!("| runtime | wall ns/poll | added | throughput vs plain | CPU ns/poll | added CPU |");
    println!("|---|---:|---:|---:|---:|---:|");
    let added = |v: &[f64], base: &[f64]| median(v.iter().zip(base).map(|(a, b)| a - b).collect());
    let base = median(wall[0].clone());
    for (i, s) in subjects.iter().enumerate() {
        let med = median(wall[i].clone());
        println!(
            "| {} | {med:.1} | {:+.1} | {:.3} | {:.1} | {:+.1} |",
            s.name,
            added(&wall[i], &wall[0]),
            base / med,
            median(cpu[i].clone()),
            added(&cpu[i], &cpu[0]),
        );
    }
    println!(
        "(added: median over rounds of the difference to the plain runtime in the same round)"
    );
}
