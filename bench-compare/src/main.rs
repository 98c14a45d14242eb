//! A hyper hello-world HTTP/1.1 server on loopback whose instrumentation is its first
//! argument, for comparing what each costs under the same `wrk` load (`run.sh`).
//!
//! ```text
//! pollwatch-bench-compare <none|pollwatch|pollwatch-attach|tokio-metrics|console> \
//!     [--workers 2] [--max-seconds 120]
//! ```
//!
//! It binds `127.0.0.1:0`, prints `listening on <addr> mode=<what runs>` on stdout, and
//! serves until killed or `--max-seconds` have passed (so a forgotten server always ends).
//! Every connection is one spawned task, which is what each instrumentation sees:
//!
//! - `none`: plain tokio.
//! - `pollwatch`: `Agent::builder().build_runtime(…)` with defaults: hooked mode when built
//!   with `--cfg tokio_unstable` (as `run.sh` does; the printed mode says which).
//! - `pollwatch-attach`: a plain runtime, `Agent::builder().attach(&Handle::current())`.
//! - `tokio-metrics`: every connection task wrapped in one shared `TaskMonitor`, whose
//!   cumulative metrics are read once a second (as an exporter would).
//! - `console`: console-subscriber's layer installed as the global `tracing` subscriber, its
//!   gRPC server on `127.0.0.1:0` (needs tokio's `tracing` feature and `tokio_unstable`).

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Instrumentation {
    None,
    Pollwatch,
    PollwatchAttach,
    TokioMetrics,
    Console,
}

impl Instrumentation {
    const ALL: [(&'static str, Instrumentation); 5] = [
        ("none", Instrumentation::None),
        ("pollwatch", Instrumentation::Pollwatch),
        ("pollwatch-attach", Instrumentation::PollwatchAttach),
        ("tokio-metrics", Instrumentation::TokioMetrics),
        ("console", Instrumentation::Console),
    ];

    fn parse(s: &str) -> Result<Self, BoxError> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, i)| *i)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|(n, _)| *n).collect();
                format!("unknown instrumentation {s:?}: expected one of {names:?}").into()
            })
    }
}

struct Args {
    instrumentation: Instrumentation,
    workers: usize,
    max_seconds: u64,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = std::env::args().skip(1);
    let instrumentation = Instrumentation::parse(&args.next().ok_or("missing instrumentation")?)?;
    let mut parsed = Args {
        instrumentation,
        workers: 2,
        max_seconds: 120,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--workers" => parsed.workers = value.parse()?,
            "--max-seconds" => parsed.max_seconds = value.parse()?,
            other => return Err(format!("unknown flag {other:?}").into()),
        }
    }
    Ok(parsed)
}

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!\n",
    ))))
}

/// Accepts connections until `max` has passed; each connection is served by its own task,
/// wrapped by `instrument`.
async fn serve<F>(
    listener: TcpListener,
    max: Duration,
    instrument: impl Fn(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> F,
) where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let deadline = tokio::time::sleep(max);
    tokio::pin!(deadline);
    loop {
        let accepted = tokio::select! {
            _ = &mut deadline => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = Box::pin(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
        tokio::spawn(instrument(connection));
    }
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    if args.instrumentation == Instrumentation::Console {
        use tracing_subscriber::prelude::*;
        let layer = console_subscriber::ConsoleLayer::builder()
            .server_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .spawn();
        tracing_subscriber::registry().with(layer).try_init()?;
    }
    let mut tokio_builder = tokio::runtime::Builder::new_multi_thread();
    tokio_builder.worker_threads(args.workers).enable_all();
    let (runtime, mut agent) = match args.instrumentation {
        Instrumentation::Pollwatch => {
            let (rt, agent) = pollwatch::Agent::builder().build_runtime(&mut tokio_builder)?;
            (rt, Some(agent))
        }
        _ => (tokio_builder.build()?, None),
    };
    let max = Duration::from_secs(args.max_seconds);
    runtime.block_on(async {
        if args.instrumentation == Instrumentation::PollwatchAttach {
            agent = Some(pollwatch::Agent::builder().attach(&tokio::runtime::Handle::current())?);
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let mode = agent.as_ref().map_or("-", |a| a.mode().as_str());
        println!(
            "listening on {} instrumentation={:?} pollwatch_mode={mode} tokio_unstable={}",
            listener.local_addr()?,
            args.instrumentation,
            cfg!(tokio_unstable)
        );
        use std::io::Write;
        std::io::stdout().flush()?;
        if args.instrumentation == Instrumentation::TokioMetrics {
            let monitor = tokio_metrics::TaskMonitor::new();
            let reader = monitor.clone();
            // Read the monitor as an exporter would, so its totals are really consumed.
            tokio::spawn(async move {
                let mut total_polls = 0u64;
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    total_polls = reader.cumulative().total_poll_count.max(total_polls);
                    std::hint::black_box(total_polls);
                }
            });
            serve(listener, max, move |conn| monitor.instrument(conn)).await;
        } else {
            serve(listener, max, |conn| conn).await;
        }
        Ok::<_, BoxError>(())
    })?;
    drop(agent);
    Ok(())
}
