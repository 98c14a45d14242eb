//! # A signup service that blocks its own runtime, and pollwatch catching it in the act
//!
//! ```sh
//! RUSTFLAGS="--cfg tokio_unstable" cargo run --release --example demo   # hooked mode: the full picture
//! cargo run --release --example demo                                    # stable tokio: attach mode
//! cargo run --release --example demo -- 8                               # a shorter run (seconds)
//! ```
//!
//! The service is a small axum app on a loopback port, on a two-worker tokio runtime built
//! through pollwatch (stall threshold 100 ms, `/metrics` and `/stalls` on 127.0.0.1:9464):
//!
//! - `POST /signup` creates an account and generates its RSA-2048 key pair *synchronously
//!   inside the async handler*. That is the bug: 50 ms to a second of CPU inside one poll,
//!   during which that worker thread runs nothing else.
//! - `POST /signup-fixed` does the same work in `tokio::task::spawn_blocking`. Correct.
//! - `GET /health` is cheap. A prober on its own OS thread (like a load balancer) calls it
//!   over TCP every 20 ms and measures how long the answer takes.
//!
//! For about 20 seconds the demo drives itself: the first half sends `/signup` traffic, the
//! second half `/signup-fixed` traffic. The load driver plays the clients and hands each
//! request to the app's router in its own task, spawned at one line per endpoint, so a stall
//! report's `spawned_at` names the endpoint's line in this file. (Behind `axum::serve` the
//! handler would run inside hyper's connection task, spawned inside axum: the spawn location
//! would be axum's, and the stack is what names your handler.)
//!
//! What you will see:
//! - which mode runs: `hooked` under `--cfg tokio_unstable` (every poll is watched; reports
//!   carry the task id and its spawn location), `attach` on stable tokio (reports name the
//!   stuck worker thread);
//! - during the `/signup` half, one report per blocked poll, printed as soon as its stack is
//!   in, usually while the poll still blocks (`still blocked after …`): task, spawn
//!   location, worker, thread, duration so far, `cpu`, and the stuck thread's
//!   stack where capture is supported (Linux x86_64/aarch64): the RSA code it is in right
//!   now, down to `generate_account_key` and the `/signup` handler in this file. The first
//!   report of a code path is printed with its stack, later ones on one line; a line follows
//!   when each stall ends, with its total duration;
//! - during the `/signup-fixed` half, nothing: the key generation no longer runs on a worker;
//! - a summary: stalls per spawn location, how many came from `/signup` and how many from
//!   `/signup-fixed` (none), and the `/health` p50/p99 latency in each half. Attach mode
//!   knows no spawn locations; there a stall counts for the half of the run it began in.
//!
//! While it runs, open <http://127.0.0.1:9464/> in a browser: the stall page (stalled now,
//! stalls per minute, scheduling lag, the flamegraph of blocked time with the RSA key
//! generation under the `/signup` handler, and each stall with its stack; pass a longer
//! duration, e.g. `-- 120`, to keep it up). `curl 127.0.0.1:9464/metrics` and
//! `curl 127.0.0.1:9464/stalls` show the same data as Prometheus metrics and JSON. The demo exits 0 when `/signup` caused at least one
//! stall and `/signup-fixed` none, and 1 otherwise, or when 127.0.0.1:9464 is already in use.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use pollwatch::capture::{CaptureStatus, Frame};
use pollwatch::{Agent, Mode, StallReport};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use tokio::task::JoinHandle;
use tower::ServiceExt;

const METRICS_ADDR: &str = "127.0.0.1:9464";
const STALL_THRESHOLD: Duration = Duration::from_millis(100);
const DEFAULT_SECONDS: u64 = 20;
/// A new signup request every this often...
const REQUEST_INTERVAL: Duration = Duration::from_millis(250);
/// ...unless this many are still in flight (an open-loop client with a connection limit).
const MAX_IN_FLIGHT: usize = 2;
const HEALTH_INTERVAL: Duration = Duration::from_millis(20);
/// Frames printed per stack (innermost first); the JSON at `/stalls` keeps them all.
const MAX_FRAMES: usize = 14;

// ---------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Accounts {
    next_id: AtomicU64,
}

fn app() -> Router {
    Router::new()
        .route("/signup", post(signup))
        .route("/signup-fixed", post(signup_fixed))
        .route("/health", get(health))
        .with_state(Arc::new(Accounts::default()))
}

/// The bug: CPU-heavy work straight inside an async handler.
async fn signup(State(accounts): State<Arc<Accounts>>, email: String) -> Response {
    if !email.contains('@') {
        return (StatusCode::BAD_REQUEST, "expected an e-mail address\n").into_response();
    }
    let key = generate_account_key(); // blocks this worker thread for the whole generation
    created(&accounts, &email, &key)
}

/// The fix: the same work on tokio's blocking pool; the worker keeps polling other tasks.
async fn signup_fixed(State(accounts): State<Arc<Accounts>>, email: String) -> Response {
    if !email.contains('@') {
        return (StatusCode::BAD_REQUEST, "expected an e-mail address\n").into_response();
    }
    match tokio::task::spawn_blocking(generate_account_key).await {
        Ok(key) => created(&accounts, &email, &key),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn health() -> &'static str {
    "ok\n"
}

#[inline(never)]
fn generate_account_key() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA-2048 key generation")
}

fn created(accounts: &Accounts, email: &str, key: &RsaPrivateKey) -> Response {
    let id = accounts.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let body = serde_json::json!({"id": id, "email": email, "public_key_bits": key.size() * 8});
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// The load driver
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Signup,
    SignupFixed,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Signup => "/signup",
            Endpoint::SignupFixed => "/signup-fixed",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Endpoint::Signup => "RSA in the async handler",
            Endpoint::SignupFixed => "RSA in spawn_blocking",
        }
    }
}

#[derive(Default)]
struct LoadResult {
    /// The line whose `tokio::spawn` started this endpoint's request tasks.
    spawned_at: Option<String>,
    ok: usize,
    failed: usize,
}

/// Sends requests to one endpoint until `until`, each in its own task.
async fn drive(app: Router, endpoint: Endpoint, until: Instant) -> LoadResult {
    let mut result = LoadResult::default();
    let mut in_flight: Vec<JoinHandle<bool>> = Vec::new();
    let mut ticker = tokio::time::interval(REQUEST_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while Instant::now() < until {
        ticker.tick().await;
        reap(&mut in_flight, &mut result, false).await;
        if in_flight.len() >= MAX_IN_FLIGHT {
            continue;
        }
        n += 1;
        let email = format!("user{n}@example.com");
        // One line per endpoint: the spawn location in a stall report says which one.
        let (task, spawned_at) = match endpoint {
            Endpoint::Signup => spawn_request(&app, "/signup", email),
            Endpoint::SignupFixed => spawn_request(&app, "/signup-fixed", email),
        };
        result
            .spawned_at
            .get_or_insert_with(|| spawned_at.to_string());
        in_flight.push(task);
    }
    reap(&mut in_flight, &mut result, true).await;
    result
}

async fn reap(in_flight: &mut Vec<JoinHandle<bool>>, result: &mut LoadResult, all: bool) {
    let mut i = 0;
    while i < in_flight.len() {
        if all || in_flight[i].is_finished() {
            match in_flight.swap_remove(i).await {
                Ok(true) => result.ok += 1,
                _ => result.failed += 1,
            }
        } else {
            i += 1;
        }
    }
}

/// Spawns one request task and returns where it was spawned. `#[track_caller]` hands the
/// caller's location on to `tokio::spawn`, so the task's spawn location (what pollwatch
/// reports) is the line in [`drive`] that called this.
#[track_caller]
fn spawn_request(
    app: &Router,
    path: &'static str,
    email: String,
) -> (JoinHandle<bool>, &'static Location<'static>) {
    let app = app.clone();
    let task = tokio::spawn(async move {
        let request = Request::post(path)
            .body(Body::from(email))
            .expect("a valid request");
        match app.oneshot(request).await {
            Ok(response) => response.status() == StatusCode::CREATED,
            Err(never) => match never {},
        }
    });
    (task, Location::caller())
}

// ---------------------------------------------------------------------------------------
// The health prober: an OS thread outside the runtime, like a load balancer
// ---------------------------------------------------------------------------------------

/// Which half of the run the prober's samples belong to (0: neither).
static PHASE: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct HealthSamples {
    by_phase: [Vec<Duration>; 3],
    failures: usize,
}

fn probe_health(addr: SocketAddr, stop: &AtomicBool, out: &Mutex<HealthSamples>) {
    while !stop.load(Ordering::Relaxed) {
        let phase = PHASE.load(Ordering::Relaxed);
        let started = Instant::now();
        let ok = http_get(addr, "/health").is_ok_and(|(status, _)| status == 200);
        let took = started.elapsed();
        let mut samples = out.lock().unwrap_or_else(|e| e.into_inner());
        if !ok {
            samples.failures += 1;
        } else if phase == PHASE.load(Ordering::Relaxed) {
            samples.by_phase[phase].push(took);
        }
        drop(samples);
        std::thread::sleep(HEALTH_INTERVAL.saturating_sub(took));
    }
}

/// A minimal blocking HTTP/1.1 GET: `(status, body)`.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

// ---------------------------------------------------------------------------------------
// Printing stall reports as they appear
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Printer {
    first_seen: HashMap<u64, Instant>,
    printed: HashSet<u64>,
    open: HashSet<u64>,
    /// Code path (spawn location and this file's frames) -> the first report printed in full.
    paths: HashMap<String, u64>,
}

impl Printer {
    /// Prints reports that are new (once their stack is in) and stalls that have ended.
    fn poll(&mut self, agent: &Agent) {
        for r in agent.stalls() {
            if !self.printed.contains(&r.id) {
                let seen = *self.first_seen.entry(r.id).or_insert_with(Instant::now);
                // A report is published a moment before its capture finishes (still marked
                // `disabled`), and its frames a moment after (the symbolizer's thread).
                let stack_pending = r.frames.is_empty()
                    && matches!(r.capture, CaptureStatus::Ok | CaptureStatus::Disabled);
                if stack_pending && seen.elapsed() < Duration::from_secs(1) {
                    continue;
                }
                self.print_new(&r);
                self.printed.insert(r.id);
                if r.ongoing {
                    self.open.insert(r.id);
                }
            } else if !r.ongoing && self.open.remove(&r.id) {
                println!(
                    "  stall #{} ended: blocked {:.1} ms in total",
                    r.id, r.duration_ms
                );
            }
        }
    }

    fn print_new(&mut self, r: &StallReport) {
        let frames = readable(&r.frames);
        let ours: Vec<String> = frames
            .iter()
            .filter(|f| is_ours(f))
            .map(|f| format!("{}:{}", f.function, f.line.unwrap_or(0)))
            .collect();
        if !ours.is_empty() {
            let path = format!("{:?} {}", r.spawned_at, ours.join(" "));
            if let Some(first) = self.paths.get(&path) {
                // Same spawn location, same code of ours on the stack: one line is enough.
                let header = StallReport {
                    frames: Vec::new(),
                    ..r.clone()
                }
                .to_string();
                let header = header.rsplit_once("; stack:").map_or(&*header, |(h, _)| h);
                let now_in = frames.first().map(describe_frame).unwrap_or_default();
                println!("{header}; same code path as #{first}, this time in {now_in}");
                return;
            }
            self.paths.insert(path, r.id);
        }
        println!(
            "{}",
            StallReport {
                frames: trimmed(frames),
                ..r.clone()
            }
        );
    }
}

/// Frames of this example: by file (line tables) or by name (symbols only).
fn is_ours(f: &Frame) -> bool {
    f.function.starts_with("demo::")
        || f.file
            .as_deref()
            .is_some_and(|p| p.ends_with("examples/demo.rs"))
}

fn describe_frame(f: &Frame) -> String {
    match (&f.file, f.line) {
        (Some(file), Some(line)) => format!("{} at {file}:{line}", f.function),
        _ => f.function.clone(),
    }
}

/// Runtime machinery folded (as `StallReport`'s `Display` does) and file paths shortened:
/// `num-bigint-dig-0.8.6/src/monty.rs` instead of the full path into cargo's registry.
fn readable(frames: &[Frame]) -> Vec<Frame> {
    let registry = "/registry/src/";
    let here = concat!(env!("CARGO_MANIFEST_DIR"), "/");
    let short = |p: &str| -> String {
        if let Some(i) = p.find(registry) {
            let rest = &p[i + registry.len()..];
            return rest.split_once('/').map_or(rest, |(_, r)| r).to_string();
        }
        if let Some(rest) = p.strip_prefix("/rustc/") {
            return rest.split_once('/').map_or(rest, |(_, r)| r).to_string();
        }
        p.strip_prefix(here).unwrap_or(p).to_string()
    };
    pollwatch::capture::fold_runtime_frames(frames)
        .into_iter()
        .map(|f| Frame {
            file: f.file.as_deref().map(short),
            ..f
        })
        .collect()
}

/// At most [`MAX_FRAMES`]: the innermost few (where the thread is right now), then every
/// frame of this file, with what lies between counted.
fn trimmed(frames: Vec<Frame>) -> Vec<Frame> {
    if frames.len() <= MAX_FRAMES {
        return frames;
    }
    let mut out = Vec::new();
    let mut skipped = 0;
    for (i, f) in frames.into_iter().enumerate() {
        if i < 4 || (is_ours(&f) && out.len() < MAX_FRAMES) {
            if skipped > 0 {
                out.push(omitted(skipped));
                skipped = 0;
            }
            out.push(f);
        } else {
            skipped += 1;
        }
    }
    if skipped > 0 {
        out.push(omitted(skipped));
    }
    out
}

fn omitted(n: usize) -> Frame {
    Frame {
        function: format!("… {n} frames"),
        file: None,
        line: None,
    }
}

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------

fn main() {
    let seconds = match std::env::args().nth(1).map(|s| s.parse::<u64>()) {
        None => DEFAULT_SECONDS,
        Some(Ok(s)) if s >= 2 => s,
        Some(_) => fail("usage: demo [SECONDS]  (the run's length, at least 2; default 20)"),
    };
    let metrics_addr: SocketAddr = METRICS_ADDR.parse().expect("a valid address");
    // Say it clearly, before anything else starts, if the metrics port is taken.
    if let Err(e) = std::net::TcpListener::bind(metrics_addr) {
        fail(&format!(
            "{METRICS_ADDR} is in use ({e}): the demo serves pollwatch's /metrics there. \
             Stop whatever listens on it (`ss -ltnp 'sport = :9464'`) and run again."
        ));
    }

    let mut tokio_builder = tokio::runtime::Builder::new_multi_thread();
    tokio_builder.worker_threads(2).enable_all();
    let (runtime, agent) = match Agent::builder()
        .stall_threshold(STALL_THRESHOLD)
        .http_addr(metrics_addr)
        .warm_up_symbols(true)
        .build_runtime(&mut tokio_builder)
    {
        Ok(pair) => pair,
        Err(e) => fail(&format!("pollwatch could not start: {e}")),
    };
    let mode = agent.mode();
    println!("pollwatch demo: {}", describe(mode));

    let app = app();
    let server_addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| fail(&format!("cannot listen on 127.0.0.1: {e}")));
        let addr = listener.local_addr().expect("a bound address");
        let app = app.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });
    println!("service: http://{server_addr}  (POST /signup, POST /signup-fixed, GET /health)");
    let metrics_served =
        TcpStream::connect_timeout(&metrics_addr, Duration::from_millis(300)).is_ok();
    if metrics_served {
        println!(
            "stall page: open http://{METRICS_ADDR}/ in a browser (flamegraph, stalls, health)"
        );
        println!(
            "metrics: curl {METRICS_ADDR}/metrics   stalls as JSON: curl {METRICS_ADDR}/stalls"
        );
    } else {
        println!(
            "metrics: this build of pollwatch does not serve http_addr {METRICS_ADDR} yet; \
             the reports below come from Agent::stalls()"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let health = Arc::new(Mutex::new(HealthSamples::default()));
    let prober = {
        let (stop, health) = (stop.clone(), health.clone());
        std::thread::Builder::new()
            .name("health-prober".into())
            .spawn(move || probe_health(server_addr, &stop, &health))
            .expect("a thread")
    };

    let started = Instant::now();
    let half = Duration::from_secs(seconds) / 2;
    let mut printer = Printer::default();
    let mut phases = Vec::new();
    for (phase, endpoint) in [(1, Endpoint::Signup), (2, Endpoint::SignupFixed)] {
        println!(
            "\n--- {:.0} s of {} traffic ({}), /health probed every {} ms ---",
            half.as_secs_f64(),
            endpoint.path(),
            endpoint.what(),
            HEALTH_INTERVAL.as_millis()
        );
        let first_id = agent.stall_summary().stalls_total + 1;
        PHASE.store(phase, Ordering::Relaxed);
        let load = runtime.spawn(drive(app.clone(), endpoint, Instant::now() + half));
        // The main thread only watches: it is not one of the runtime's threads.
        let deadline = Instant::now() + half + Duration::from_secs(15);
        while !load.is_finished() && Instant::now() < deadline {
            printer.poll(&agent);
            std::thread::sleep(Duration::from_millis(20));
        }
        PHASE.store(0, Ordering::Relaxed);
        let result = if load.is_finished() {
            runtime.block_on(load).unwrap_or_default()
        } else {
            load.abort();
            println!("(the {} load did not finish in time)", endpoint.path());
            LoadResult::default()
        };
        // Let the last episode close and its stack arrive before the next half starts.
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_secs(3)
            && agent
                .stalls()
                .iter()
                .any(|r| r.ongoing || !printer.printed.contains(&r.id))
        {
            printer.poll(&agent);
            std::thread::sleep(Duration::from_millis(20));
        }
        printer.poll(&agent);
        let last_id = agent.stall_summary().stalls_total;
        phases.push((endpoint, result, first_id..=last_id));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = prober.join();
    let metrics = metrics_served
        .then(|| http_get(metrics_addr, "/metrics").ok())
        .flatten();
    let summary = agent.stall_summary();
    let elapsed = started.elapsed();
    runtime.shutdown_timeout(Duration::from_secs(2));

    let health = health.lock().unwrap_or_else(|e| e.into_inner());
    let ok = print_summary(mode, elapsed, &summary, &phases, &health);
    if let Some((200, body)) = metrics {
        println!("\nfrom {METRICS_ADDR}/metrics:");
        for line in body
            .lines()
            .filter(|l| l.starts_with("tokio_stalls_total") || l.starts_with("pollwatch_info"))
        {
            println!("  {line}");
        }
    }
    drop(agent);
    std::process::exit(if ok { 0 } else { 1 });
}

fn describe(mode: Mode) -> &'static str {
    match mode {
        Mode::Hooked => {
            "hooked mode (built with --cfg tokio_unstable): every poll is watched; \
             reports name the task and the line that spawned it"
        }
        Mode::Attach => {
            "attach mode (stable tokio): reports name the stuck worker thread; build with \
             RUSTFLAGS=\"--cfg tokio_unstable\" for task ids and spawn locations"
        }
        Mode::Disabled => "disabled (POLLWATCH_DISABLED is set): nothing will be reported",
    }
}

type Phase = (Endpoint, LoadResult, std::ops::RangeInclusive<u64>);

/// Prints the summary; true when `/signup` stalled and `/signup-fixed` did not.
fn print_summary(
    mode: Mode,
    elapsed: Duration,
    summary: &pollwatch::StallsView,
    phases: &[Phase],
    health: &HealthSamples,
) -> bool {
    println!(
        "\n=== summary: {} mode, {:.1} s, {} stalls ===",
        mode.as_str(),
        elapsed.as_secs_f64(),
        summary.stalls_total
    );
    if summary.dropped > 0 {
        println!(
            "({} older reports fell out of the ring; counts below cover the rest)",
            summary.dropped
        );
    }

    // Stalls per spawn location, with the endpoint whose requests were spawned there.
    println!("stalls per spawn location:");
    let mut by_location: Vec<(String, Vec<&StallReport>)> = Vec::new();
    for r in &summary.stalls {
        let key = r
            .spawned_at
            .clone()
            .unwrap_or_else(|| "(unknown: attach mode)".to_string());
        match by_location.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r),
            None => by_location.push((key, vec![r])),
        }
    }
    // Where reports carry spawn locations, show the quiet endpoint's line too, with its zero.
    for at in phases
        .iter()
        .filter_map(|(_, res, _)| res.spawned_at.as_ref())
    {
        if mode == Mode::Hooked && !by_location.iter().any(|(k, _)| k == at) {
            by_location.push((at.clone(), Vec::new()));
        }
    }
    for (location, reports) in &by_location {
        let label = phases
            .iter()
            .find(|(_, res, _)| res.spawned_at.as_deref() == Some(location.as_str()))
            .map(|(e, _, _)| format!("{} ({})", e.path(), e.what()))
            .unwrap_or_default();
        let total: f64 = reports
            .iter()
            .map(|r| r.duration_ms)
            .fold(0.0, |a, b| a + b);
        let longest = reports.iter().map(|r| r.duration_ms).fold(0.0, f64::max);
        if reports.is_empty() {
            println!("  {location:<28} {label:<42}   0 stalls");
        } else {
            println!(
                "  {location:<28} {label:<42} {:>3} stalls, {total:.0} ms blocked in total, longest {longest:.0} ms",
                reports.len()
            );
        }
    }

    // Attribution: by spawn location where reports carry one (hooked mode), else by which
    // half of the run the stall began in (only one endpoint had traffic in each half).
    let mut all_ok = true;
    for (endpoint, result, ids) in phases {
        let during: Vec<&StallReport> = summary
            .stalls
            .iter()
            .filter(|r| ids.contains(&r.id))
            .collect();
        let from_spawn = result.spawned_at.as_deref().map(|at| {
            summary
                .stalls
                .iter()
                .filter(|r| r.spawned_at.as_deref() == Some(at))
                .count()
        });
        let count = match (mode, from_spawn) {
            (Mode::Hooked, Some(n)) => n,
            _ => during.len(),
        };
        let how = if mode == Mode::Hooked {
            "by spawn location"
        } else {
            "by when they began"
        };
        println!(
            "{:<14} {:>3} requests ok, {} failed; {count} stalls ({how}); {} stalls began during its half",
            endpoint.path(),
            result.ok,
            result.failed,
            during.len()
        );
        let expected = match endpoint {
            Endpoint::Signup => count > 0,
            Endpoint::SignupFixed => count == 0 && during.is_empty(),
        };
        all_ok &= expected && result.ok > 0;
    }

    println!(
        "/health over TCP, every {} ms:",
        HEALTH_INTERVAL.as_millis()
    );
    for (endpoint, _, _) in phases {
        let phase = match endpoint {
            Endpoint::Signup => 1,
            Endpoint::SignupFixed => 2,
        };
        let mut s = health.by_phase[phase].clone();
        s.sort();
        println!(
            "  during {:<14} {:>4} probes  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
            endpoint.path(),
            s.len(),
            ms(percentile(&s, 0.50)),
            ms(percentile(&s, 0.99)),
            ms(s.last().copied().unwrap_or_default())
        );
    }
    if health.failures > 0 {
        println!("  {} probes failed", health.failures);
    }

    if all_ok {
        println!(
            "OK: /signup blocked the runtime and pollwatch caught it; /signup-fixed never did."
        );
    } else {
        println!(
            "FAILED: expected stalls from /signup and none from /signup-fixed, with requests \
             succeeding on both (see above)."
        );
    }
    all_ok
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
