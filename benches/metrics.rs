//! What a scrape costs: `Agent::encode_metrics()` with 200 spawn locations tracked (the
//! default cap), and a real `GET /metrics` over loopback to the built-in endpoint while
//! every worker of the runtime is blocked (DESIGN §6: `/metrics` answers in ≤ 5 ms p99 with
//! 200 callsites, also while every worker is blocked).
//!
//! ```sh
//! RUSTFLAGS="--cfg tokio_unstable" CARGO_TARGET_DIR=target/unstable cargo bench --bench metrics
//! ```
//!
//! Per-callsite families exist in hooked mode only, so the 200-callsite numbers need
//! `--cfg tokio_unstable`; on stable tokio the same bench measures attach mode (no callsite
//! series) and says so.
//!
//! Two measurements: criterion rows (mean with confidence interval), then a table of
//! percentiles (p50, p99, max) over individually timed calls, which is what the bar is
//! about. In `cargo test --benches` (no `--bench` argument) everything runs a few times
//! only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use pollwatch::Agent;

macro_rules! s {
    ($h:ident) => {
        drop($h.spawn(std::future::ready(())));
    };
}

/// One task from each of 200 spawn locations, one per line (series are per file and line).
#[rustfmt::skip]
fn spawn_from_200_places(h: &tokio::runtime::Handle) {
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
    s!(h);
}

fn get_metrics(addr: SocketAddr) -> usize {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = Vec::with_capacity(64 * 1024);
    s.read_to_end(&mut body).unwrap();
    assert!(body.starts_with(b"HTTP/1.1 200"), "scrape failed");
    body.len()
}

/// Blocks every worker in `std::thread::sleep` until dropped (bounded to 10 minutes).
struct Blocked(Arc<AtomicBool>);

impl Blocked {
    fn new(rt: &tokio::runtime::Runtime, workers: usize) -> Blocked {
        let release = Arc::new(AtomicBool::new(false));
        let entered = Arc::new(AtomicUsize::new(0));
        for _ in 0..workers {
            let (r, e) = (release.clone(), entered.clone());
            rt.spawn(async move {
                e.fetch_add(1, Ordering::SeqCst);
                let start = Instant::now();
                while !r.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(600) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
        let start = Instant::now();
        while entered.load(Ordering::SeqCst) < workers && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(entered.load(Ordering::SeqCst), workers, "workers blocked");
        Blocked(release)
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Percentiles {
    p50: Duration,
    p99: Duration,
    max: Duration,
    n: usize,
}

fn timed(n: usize, mut f: impl FnMut()) -> Percentiles {
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort();
    let at = |q: f64| t[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        max: t[n - 1],
        n,
    }
}

fn series(text: &str, family: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .count()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2).enable_all();
    let (rt, agent) = Agent::builder()
        .runtime_name("bench")
        .http_addr("127.0.0.1:0".parse().unwrap())
        .build_runtime(&mut b)
        .expect("agent");
    let addr = agent.http_addr().unwrap();
    // The agent's probe task is spawned first; then 200 more locations fill the cap.
    std::thread::sleep(Duration::from_millis(50));
    spawn_from_200_places(rt.handle());
    rt.block_on(async {
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(150)) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    let text = agent.encode_metrics();
    let callsite_series = series(&text, "tokio_callsite_polls_total");
    let all_series = text.lines().filter(|l| !l.starts_with('#')).count();
    println!(
        "mode {:?}: {callsite_series} callsite series per family, {all_series} series, {} bytes",
        agent.mode(),
        text.len()
    );

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("encode_metrics/200_callsites", |b| {
        b.iter(|| agent.encode_metrics())
    });
    c.bench_function("http_get_metrics/idle", |b| b.iter(|| get_metrics(addr)));
    {
        let _blocked = Blocked::new(&rt, 2);
        c.bench_function("http_get_metrics/every_worker_blocked", |b| {
            b.iter(|| get_metrics(addr))
        });
    }

    let (n_encode, n_http) = if full { (5_000, 2_000) } else { (10, 10) };
    let encode = timed(n_encode, || {
        std::hint::black_box(agent.encode_metrics());
    });
    let idle = timed(n_http, || {
        get_metrics(addr);
    });
    let blocked = {
        let _blocked = Blocked::new(&rt, 2);
        timed(n_http, || {
            get_metrics(addr);
        })
    };
    println!("\n| what | calls | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    for (what, p) in [
        ("encode_metrics()", &encode),
        ("GET /metrics, loopback, workers idle", &idle),
        ("GET /metrics, loopback, every worker blocked", &blocked),
    ] {
        println!(
            "| {what} | {} | {:.1} µs | {:.1} µs | {:.1} µs |",
            p.n,
            p.p50.as_secs_f64() * 1e6,
            p.p99.as_secs_f64() * 1e6,
            p.max.as_secs_f64() * 1e6
        );
    }
    c.final_summary();
}
