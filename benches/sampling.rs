//! What sampling a stall for the flamegraph costs the stuck thread.
//!
//! Each injected stall is a task that spins for 1 s on a worker and, while it spins, adds up
//! every gap of more than 20 µs between two of its clock reads: time it did not run (a
//! capture's pause, or the OS running something else). The same stalls run under three
//! agents, interleaved round by round:
//! - `stacks(false)`: no capture at all, the baseline (the OS's own interruptions);
//! - `stall_sample_interval(0)`: the report's captures only (start, 2×, 4×, 8× threshold);
//! - the default, a sample every 10 ms within the 1 % pause budget.
//!
//! The lost time above the baseline is the pause pollwatch added, measured by the victim
//! itself. On a busy host the OS's own preemptions dominate the total, so the table also
//! gives the time lost in gaps under 2 ms (a capture's pause is far shorter; a time slice
//! given to another process is mostly longer), and the pause the signal handler measured
//! (pollwatch's own account, `paused`), with the number of samples.
//!
//! Run: `cargo bench --bench sampling` (attach mode), or with
//! `RUSTFLAGS="--cfg tokio_unstable"` (hooked mode).

use std::time::{Duration, Instant};

const ROUNDS: usize = 5;
const STALLS_PER_RUN: usize = 3;
const STALL: Duration = Duration::from_secs(1);
const THRESHOLD: Duration = Duration::from_millis(50);
const GAP: Duration = Duration::from_micros(20);

/// Gaps longer than this are the OS running something else for a time slice, not a capture.
const SHORT: Duration = Duration::from_millis(2);

/// Spins for `d`; returns the time lost to gaps longer than [`GAP`], and to those of them
/// shorter than [`SHORT`] (where a capture's pause falls; a loaded host's preemptions are
/// mostly longer).
#[inline(never)]
fn spin_and_count_gaps(d: Duration) -> (Duration, Duration) {
    let start = Instant::now();
    let mut prev = start;
    let mut lost = Duration::ZERO;
    let mut short = Duration::ZERO;
    while prev.duration_since(start) < d {
        let now = Instant::now();
        let gap = now.duration_since(prev);
        if gap > GAP {
            lost += gap;
            if gap < SHORT {
                short += gap;
            }
        }
        prev = now;
    }
    (lost, short)
}

#[derive(Default, Clone, Copy)]
struct Totals {
    stalled: Duration,
    lost: Duration,
    short: Duration,
    samples: u64,
    paused: Duration,
}

fn run(config: &str) -> Totals {
    let mut builder = pollwatch::Agent::builder().stall_threshold(THRESHOLD);
    builder = match config {
        "stacks(false)" => builder.stacks(false),
        "report captures only" => builder.stall_sample_interval(Duration::ZERO),
        _ => builder,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(2).enable_all();
    let (rt, agent) = builder.build_runtime(&mut rt).expect("agent");
    // Warm up the symbolizer, so that its first parse does not compete with the stalls.
    rt.block_on(async { tokio::spawn(async { spin_and_count_gaps(THRESHOLD * 3) }).await })
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let before = agent.__flame_totals();
    let mut t = Totals::default();
    for _ in 0..STALLS_PER_RUN {
        let (lost, short) = rt
            .block_on(async { tokio::spawn(async { spin_and_count_gaps(STALL) }).await })
            .unwrap();
        t.stalled += STALL;
        t.lost += lost;
        t.short += short;
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = agent.__flame_totals();
    t.samples = after.0 - before.0;
    t.paused = after.2.saturating_sub(before.2);
    t
}

fn main() {
    let configs = ["stacks(false)", "report captures only", "default (10 ms)"];
    let mut totals = [Totals::default(); 3];
    let mut mode = String::new();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    for round in 0..ROUNDS {
        for k in 0..configs.len() {
            let i = (k + round) % configs.len();
            let t = run(configs[i]);
            let acc = &mut totals[i];
            acc.stalled += t.stalled;
            acc.lost += t.lost;
            acc.short += t.short;
            acc.samples += t.samples;
            acc.paused += t.paused;
        }
        if mode.is_empty() {
            mode = if cfg!(tokio_unstable) {
                "hooked"
            } else {
                "attach"
            }
            .to_owned();
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average before/after: {} / {}",
        load_before.trim(),
        load.trim()
    );
    let base_short = totals[0].short.as_secs_f64() / totals[0].stalled.as_secs_f64();
    println!(
        "sampling cost ({mode} mode, threshold {THRESHOLD:?}, {} stalls of {STALL:?} per agent, {ROUNDS} interleaved rounds)",
        ROUNDS * STALLS_PER_RUN
    );
    println!("| agent | lost by the stuck thread | in gaps < 2 ms | added vs stacks(false), gaps < 2 ms | samples per stall | paused (handler) per stall | paused / stall | pause per sample |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, t) in configs.iter().zip(&totals) {
        let stalls = (ROUNDS * STALLS_PER_RUN) as f64;
        let lost = t.lost.as_secs_f64() / t.stalled.as_secs_f64();
        let short = t.short.as_secs_f64() / t.stalled.as_secs_f64();
        let paused = t.paused.as_secs_f64() / t.stalled.as_secs_f64();
        let per_sample = if t.samples > 0 {
            t.paused.as_secs_f64() / t.samples as f64 * 1e6
        } else {
            0.0
        };
        println!(
            "| {name} | {:.3} % | {:.3} % | {:+.3} % | {:.1} | {:.2} ms | {:.3} % | {per_sample:.0} µs |",
            lost * 100.0,
            short * 100.0,
            (short - base_short) * 100.0,
            t.samples as f64 / stalls,
            t.paused.as_secs_f64() * 1e3 / stalls,
            paused * 100.0,
        );
    }
}
