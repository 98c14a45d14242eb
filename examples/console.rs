//! # tokio-console without console-subscriber
//!
//! ```sh
//! RUSTFLAGS="--cfg tokio_unstable" cargo run --example console --features console        # 60 s
//! RUSTFLAGS="--cfg tokio_unstable" cargo run --example console --features console -- 300 # longer
//! tokio-console        # in another terminal: connects to 127.0.0.1:6669
//! ```
//!
//! A runtime built through pollwatch in hooked mode, serving tokio-console's protocol at
//! `127.0.0.1:6669` (or `POLLWATCH_CONSOLE_ADDR`). In the console you see:
//! - `tick` tasks (spawned in `ticker`): long-lived, woken every 50 ms, polls rising;
//! - `request` tasks: a burst of short tasks every second, shown completed, then freed
//!   after `console_retention` (10 s here);
//! - one `report` task every 5 s that blocks its worker for 300 ms in a single poll
//!   (`std::thread::sleep` in async code): it shows as running while it blocks, and
//!   pollwatch prints the stall report with its stack at the same time.
//!
//! On stable tokio (no `--cfg tokio_unstable`) pollwatch has no task hooks; the example
//! prints the error `console_addr` gives there and exits 1.

use std::time::{Duration, Instant};

fn main() {
    tracing_subscriber::fmt().with_target(false).init();
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let addr = std::env::var("POLLWATCH_CONSOLE_ADDR")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| pollwatch::config::SUGGESTED_CONSOLE_ADDR.parse().unwrap());
    let mut tokio_builder = tokio::runtime::Builder::new_multi_thread();
    tokio_builder.worker_threads(2).enable_all();
    let built = pollwatch::Agent::builder()
        .console_addr(addr)
        .console_retention(Duration::from_secs(10))
        .build_runtime(&mut tokio_builder);
    let (rt, agent) = match built {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    println!(
        "tokio-console protocol at {} for {seconds} s: run `tokio-console http://{}`",
        agent.console_addr().unwrap(),
        agent.console_addr().unwrap()
    );
    rt.block_on(async move {
        for _ in 0..3 {
            tokio::spawn(ticker());
        }
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut second = 0u64;
        while Instant::now() < end {
            for _ in 0..20 {
                tokio::spawn(request());
            }
            if second % 5 == 4 {
                tokio::spawn(report());
            }
            second += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    drop(agent);
}

async fn ticker() {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn request() {
    tokio::time::sleep(Duration::from_millis(20)).await;
    tokio::task::yield_now().await;
}

async fn report() {
    // The bug: blocking sleep inside async code holds the worker for 300 ms.
    std::thread::sleep(Duration::from_millis(300));
}
