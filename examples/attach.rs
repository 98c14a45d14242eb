//! # Attach mode: pollwatch on stable tokio, one line in `#[tokio::main]`
//!
//! ```sh
//! cargo run --release --example attach         # about 10 s
//! cargo run --release --example attach -- 30   # longer (seconds)
//! ```
//!
//! A small quote service, `#[tokio::main]` unchanged, stable tokio (no `tokio_unstable`),
//! with pollwatch added in one line:
//!
//! ```ignore
//! let agent = pollwatch::Agent::builder().http_addr(addr).attach(&Handle::current())?;
//! ```
//!
//! - `GET /quote` is what the service is for: a short async lookup (a 2 ms "database" call)
//!   and a small answer. A client thread asks every 10 ms and measures how long it waits.
//! - `GET /export` has the bug: it renders a report (sorting a few million prices)
//!   synchronously inside the async handler, blocking its worker for a few hundred
//!   milliseconds, during which every `/quote` queued on that worker waits. A second client
//!   asks for it once a second.
//!
//! pollwatch sees each `/export` while it blocks (attach mode has no task hooks, so it
//! watches each worker's progress instead), prints the report with the stuck thread's stack
//! (which shows `render_export` inside the `/export` handler), and serves the same data at
//! `http://127.0.0.1:9465/metrics` and `/stalls` while the example runs. At the end it
//! prints a summary and the stall lines of `/metrics`. Exits 0 when the stalls were caught.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tokio::runtime::Handle;

const METRICS_ADDR: &str = "127.0.0.1:9465";
const DEFAULT_SECONDS: u64 = 10;
/// Frames printed per stack (innermost first); `/stalls` keeps them all.
const MAX_FRAMES: usize = 12;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(DEFAULT_SECONDS);

    // The one line: attach to the runtime `#[tokio::main]` built, serve /metrics and /stalls.
    let agent = pollwatch::Agent::builder()
        .http_addr(METRICS_ADDR.parse()?)
        .attach(&Handle::current())?;

    println!(
        "pollwatch {:?} mode, runtime {:?}; metrics at http://{}/metrics, stalls at /stalls",
        agent.mode(),
        agent.runtime_label().unwrap_or("?"),
        agent
            .http_addr()
            .map_or(METRICS_ADDR.to_string(), |a| a.to_string()),
    );

    let app = Router::new()
        .route("/quote", get(quote))
        .route("/export", get(export));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("service on http://{addr}: /quote (async), /export (blocks its worker)\n");

    // Clients, on their own OS threads like real ones, and a printer for stall reports.
    let agent = Arc::new(agent);
    let stop = Arc::new(AtomicBool::new(false));
    let quote_waits = Arc::new(Mutex::new(Vec::new()));
    let clients = vec![
        client(
            addr,
            "/quote",
            Duration::from_millis(10),
            &stop,
            Some(quote_waits.clone()),
        ),
        client(addr, "/export", Duration::from_secs(1), &stop, None),
        printer(agent.clone(), &stop),
    ];
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = tokio::task::spawn_blocking(move || c.join()).await;
    }

    // The summary, and what a Prometheus scrape sees.
    let summary = agent.stall_summary();
    let mut waits = quote_waits.lock().unwrap().clone();
    waits.sort();
    let pct = |p: f64| {
        waits
            .get(((waits.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "\n{} stalls in {seconds} s ({} with the culprit on the stack); /quote waited p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} requests",
        summary.stalls_total,
        summary
            .stalls
            .iter()
            .filter(|r| r.frames.iter().any(|f| f.function.contains("render_export")))
            .count(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        waits.len(),
    );
    if let Some(addr) = agent.http_addr() {
        let metrics = http_get(addr, "/metrics").unwrap_or_default();
        println!("\nfrom http://{addr}/metrics:");
        for line in metrics.lines().filter(|l| {
            l.starts_with("tokio_stalls_total")
                || l.starts_with("pollwatch_info")
                || l.starts_with("tokio_workers")
        }) {
            println!("  {line}");
        }
    }
    std::process::exit(if summary.stalls_total > 0 { 0 } else { 1 });
}

/// The service's real work: a short async lookup.
async fn quote() -> String {
    tokio::time::sleep(Duration::from_millis(2)).await; // the "database"
    "{\"symbol\":\"ACME\",\"price\":42.17}".to_string()
}

/// The bug: CPU-heavy work straight inside an async handler. (The fix is
/// `tokio::task::spawn_blocking(render_export).await`.)
async fn export() -> String {
    render_export()
}

/// Sorts a few million prices and sums a checksum: a few hundred milliseconds of CPU.
#[inline(never)]
fn render_export() -> String {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut prices: Vec<u64> = (0..6_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % 1_000_000
        })
        .collect();
    prices.sort_unstable();
    let checksum = prices
        .iter()
        .fold(0u64, |a, p| a.wrapping_mul(31).wrapping_add(*p));
    format!("{{\"rows\":{},\"checksum\":{checksum}}}", prices.len())
}

/// A client thread asking for `path` every `every` until `stop`; records how long each
/// answer took into `waits`.
fn client(
    addr: SocketAddr,
    path: &'static str,
    every: Duration,
    stop: &Arc<AtomicBool>,
    waits: Option<Arc<Mutex<Vec<Duration>>>>,
) -> std::thread::JoinHandle<()> {
    let stop = stop.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let ok = http_get(addr, path).is_some();
            if let (true, Some(w)) = (ok, &waits) {
                w.lock().unwrap().push(t.elapsed());
            }
            std::thread::sleep(every.saturating_sub(t.elapsed()));
        }
    })
}

/// Prints each stall when it is first seen (while it still blocks) and when it ends.
fn printer(agent: Arc<pollwatch::Agent>, stop: &Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let stop = stop.clone();
    std::thread::spawn(move || {
        let (mut seen, mut ended) = (0u64, 0u64);
        let mut first_stack = true;
        loop {
            let done = stop.load(Ordering::Relaxed);
            for r in agent.stalls() {
                if r.id > seen {
                    seen = r.id;
                    // The stack is symbolized off the runtime, a moment after the report.
                    let r = wait_for_frames(&agent, r.id).unwrap_or_else(|| r.clone());
                    println!("{}", headline(&r));
                    if first_stack && !r.frames.is_empty() {
                        first_stack = false;
                        // The innermost frames, then this program's own (the culprit).
                        let folded = pollwatch::capture::fold_runtime_frames(&r.frames);
                        let mut shown = 0;
                        for (i, f) in folded.iter().enumerate() {
                            let ours = ours(f);
                            if (i < 3 || ours) && shown < MAX_FRAMES {
                                shown += 1;
                                match (&f.file, f.line) {
                                    (Some(file), Some(line)) => {
                                        println!("      {}  ({file}:{line})", f.function)
                                    }
                                    _ => println!("      {}", f.function),
                                }
                            } else if i == 3 {
                                println!("      ...");
                            }
                        }
                    }
                }
                if !r.ongoing && r.id > ended {
                    ended = r.id;
                    println!("  stall #{} ended after {:.0} ms", r.id, r.duration_ms);
                }
            }
            if done {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

fn headline(r: &pollwatch::StallReport) -> String {
    format!(
        "stall #{} ({}, {}): worker {} thread {:?} tid {} blocked {:.0} ms so far{}; in {}",
        r.id,
        r.kind.as_str(),
        match r.detection {
            pollwatch::Detection::Worker => "worker",
            pollwatch::Detection::Probe => "probe",
            pollwatch::Detection::PollHook => "poll hook",
        },
        r.worker.map_or("?".to_string(), |w| w.to_string()),
        r.thread,
        r.tid,
        r.duration_ms,
        if r.ongoing { ", still blocked" } else { "" },
        culprit(r),
    )
}

/// This program's innermost frame on the stack (else the innermost frame, else why none).
fn culprit(r: &pollwatch::StallReport) -> String {
    let folded = pollwatch::capture::fold_runtime_frames(&r.frames);
    folded
        .iter()
        .find(|f| ours(f))
        .or(folded.first())
        .map_or(format!("(stack: {})", r.capture.as_str()), |f| {
            f.function.clone()
        })
}

/// A frame of this file.
fn ours(f: &pollwatch::capture::Frame) -> bool {
    f.file
        .as_deref()
        .is_some_and(|p| p.ends_with(file!()) || p.ends_with("attach.rs"))
}

/// The report `id` once its frames are symbolized (bounded wait).
fn wait_for_frames(agent: &pollwatch::Agent, id: u64) -> Option<pollwatch::StallReport> {
    let start = Instant::now();
    loop {
        let r = agent.stalls().into_iter().find(|r| r.id == id)?;
        if !r.frames.is_empty() || start.elapsed() > Duration::from_secs(3) {
            return Some(r);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A minimal HTTP/1.1 GET; the body, or `None` on any error.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    Some(body.to_string())
}
