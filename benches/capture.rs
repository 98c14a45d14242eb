//! What a stack capture costs: how long the target thread is paused (p50/p99 over 2 000
//! captures of a busy and of a sleeping thread), the watchdog's round trip, and the
//! symbolizer's first call (time and RSS growth) and steady-state cost per stack.
//!
//! Run: `cargo bench --bench capture` (prints a table; no criterion harness, because the
//! numbers that matter are distributions of the target's pause, not of a closure).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use pollwatch::capture::{
    default_signal, fold_runtime_frames, RawStack, StackCapturer, Symbolizer, ThreadHandle,
};

const CAPTURES: usize = 2_000;

#[inline(never)]
fn busy(stop: &AtomicBool) -> u64 {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1000 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    x
}

#[inline(never)]
fn sleepy(stop: &AtomicBool) -> u64 {
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(5));
    }
    0
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

struct Run {
    stacks: Vec<RawStack>,
    timeouts: usize,
    failures: usize,
    round_trips: Vec<Duration>,
}

fn run(capturer: &mut StackCapturer, work: fn(&AtomicBool) -> u64) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = stop.clone();
    let target = thread::spawn(move || {
        tx.send(ThreadHandle::current()).unwrap();
        black_box(work(&flag));
    });
    let handle = rx.recv().unwrap();
    thread::sleep(Duration::from_millis(20));
    let mut out = Run {
        stacks: Vec::with_capacity(CAPTURES),
        timeouts: 0,
        failures: 0,
        round_trips: Vec::with_capacity(CAPTURES),
    };
    for _ in 0..CAPTURES {
        let start = Instant::now();
        match capturer.capture(&handle) {
            Ok(stack) => {
                out.round_trips.push(start.elapsed());
                out.stacks.push(stack);
            }
            Err(pollwatch::capture::CaptureStatus::Timeout) => out.timeouts += 1,
            Err(_) => out.failures += 1,
        }
        // Let the target run between captures, as a watchdog would.
        thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    target.join().unwrap();
    out
}

fn report(name: &str, run: &Run) {
    let mut paused: Vec<Duration> = run.stacks.iter().map(|s| s.paused).collect();
    paused.sort();
    let mut trips = run.round_trips.clone();
    trips.sort();
    let mut depth: Vec<usize> = run.stacks.iter().map(|s| s.ips.len()).collect();
    depth.sort();
    println!(
        "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        run.stacks.len(),
        run.timeouts,
        run.failures,
        us(percentile(&paused, 0.5)),
        us(percentile(&paused, 0.99)),
        us(*paused.last().unwrap()),
        us(percentile(&trips, 0.5)),
        us(percentile(&trips, 0.99)),
        depth[depth.len() / 2],
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` passes nothing and must
    // stay fast, so it only gets this hint.
    if !std::env::args().any(|a| a == "--bench") {
        println!("capture bench: run with `cargo bench --bench capture`");
        return;
    }
    let rss_start = rss_kib();
    let start = Instant::now();
    let mut capturer = StackCapturer::new(default_signal()).expect("install the handler");
    let new_time = start.elapsed();
    println!(
        "StackCapturer::new: {:.1} ms, RSS {} -> {} KiB",
        new_time.as_secs_f64() * 1e3,
        rss_start,
        rss_kib()
    );
    println!();
    println!("| target | ok | timeout | failed | paused p50 µs | paused p99 µs | paused max µs | round trip p50 µs | round trip p99 µs | frames (median) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let busy_run = run(&mut capturer, busy);
    report("busy loop", &busy_run);
    let sleep_run = run(&mut capturer, sleepy);
    report("thread::sleep", &sleep_run);

    let mut symbolizer = Symbolizer::new();
    let rss_before = rss_kib();
    let start = Instant::now();
    let frames = symbolizer.symbolize(&busy_run.stacks[0]);
    let first = start.elapsed();
    let rss_after = rss_kib();

    let start = Instant::now();
    for _ in 0..1000 {
        black_box(symbolizer.symbolize(&busy_run.stacks[0]));
    }
    let cached = start.elapsed() / 1000;

    let all: Vec<&RawStack> = busy_run.stacks.iter().chain(&sleep_run.stacks).collect();
    let start = Instant::now();
    for stack in &all {
        black_box(symbolizer.symbolize(stack));
    }
    let mixed = start.elapsed() / all.len() as u32;

    println!();
    println!("| symbolizer | value |");
    println!("|---|---|");
    println!(
        "| first call (cold) | {:.1} ms |",
        first.as_secs_f64() * 1e3
    );
    println!(
        "| RSS growth on first call | {} KiB ({} -> {} KiB) |",
        rss_after.saturating_sub(rss_before),
        rss_before,
        rss_after
    );
    println!("| same stack again (cached) | {} µs/stack |", us(cached));
    println!(
        "| all {} captured stacks (mostly cached) | {} µs/stack |",
        all.len(),
        us(mixed)
    );
    println!("| RSS at end | {} KiB |", rss_kib());
    println!();
    println!("busy-loop stack, folded for humans:");
    for frame in fold_runtime_frames(&frames) {
        let place = match (&frame.file, frame.line) {
            (Some(file), Some(line)) => format!(" at {file}:{line}"),
            _ => String::new(),
        };
        println!("  {}{place}", frame.function);
    }
}
