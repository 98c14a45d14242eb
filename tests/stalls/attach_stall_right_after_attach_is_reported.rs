//! Attach mode as a new user meets it: `attach()` at the top of `main`, and a task that
//! blocks at once, before the service has "warmed up". Every blocking kind (sleep, busy
//! loop, `std::sync::Mutex` wait, blocking read on a socket, RSA key generation) is reported
//! while it runs, with its thread, a stack that shows the culprit, its kind and its
//! duration, on `multi_thread` runtimes of 1, 2 and 4 workers and on a `current_thread`
//! runtime. So is a task on a runtime whose workers have been idle since it started.
//!
//! The scenarios run one after another in one test: each blocks a thread for hundreds of
//! milliseconds, and running them in parallel on a small machine would measure the host.

use crate::support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pollwatch::capture::CaptureStatus;
use pollwatch::{Agent, StallKind, StallReport};

/// The tests of this file run one at a time (see the module docs).
static SERIAL: Mutex<()> = Mutex::new(());

const THRESHOLD: Duration = Duration::from_millis(50);
/// How long each blocking call lasts (RSA: at least this long, in whole keys).
const BLOCK: Duration = Duration::from_millis(400);

#[derive(Clone, Copy, Debug)]
enum Blocking {
    Sleep,
    BusyLoop,
    MutexWait,
    SocketRead,
    Rsa,
}

impl Blocking {
    const ALL: [Blocking; 5] = [
        Blocking::Sleep,
        Blocking::BusyLoop,
        Blocking::MutexWait,
        Blocking::SocketRead,
        Blocking::Rsa,
    ];

    fn kind(self) -> StallKind {
        match self {
            Blocking::BusyLoop | Blocking::Rsa => StallKind::Cpu,
            _ => StallKind::OffCpu,
        }
    }

    /// A function name the stack must show (one of them).
    fn culprit(self) -> &'static [&'static str] {
        match self {
            Blocking::Sleep => &["sleep"],
            Blocking::BusyLoop => &["busy_for"],
            Blocking::MutexWait => &["Mutex", "futex", "lock"],
            Blocking::SocketRead => &["read"],
            Blocking::Rsa => &["rsa::", "num_bigint"],
        }
    }
}

/// What the blocking task needs from outside: a held mutex, a socket that answers late.
struct Prepared {
    what: Blocking,
    mutex: Arc<Mutex<()>>,
    socket: Option<UnixStream>,
}

impl Prepared {
    /// Sets up what `what` waits for; the other end lets go `BLOCK` after `go` is sent.
    fn new(
        what: Blocking,
    ) -> (
        Prepared,
        std::sync::mpsc::Sender<()>,
        std::thread::JoinHandle<()>,
    ) {
        let mutex = Arc::new(Mutex::new(()));
        let (go, started) = std::sync::mpsc::channel::<()>();
        let (mine, mut theirs) = UnixStream::pair().expect("socket pair");
        let (held, locked) = (mutex.clone(), std::sync::mpsc::channel::<()>());
        let helper = std::thread::spawn(move || {
            let guard = held.lock().unwrap();
            locked.0.send(()).unwrap();
            // Waits (bounded) for the task to start, then keeps the lock and the socket
            // silent for BLOCK.
            let _ = started.recv_timeout(Duration::from_secs(10));
            std::thread::sleep(BLOCK);
            drop(guard);
            let _ = theirs.write_all(b"x");
        });
        locked.1.recv().unwrap();
        (
            Prepared {
                what,
                mutex,
                socket: Some(mine),
            },
            go,
            helper,
        )
    }

    /// The blocking call, on the polling thread.
    fn block(mut self) {
        match self.what {
            Blocking::Sleep => std::thread::sleep(BLOCK),
            Blocking::BusyLoop => {
                support::busy_for(BLOCK);
            }
            Blocking::MutexWait => drop(self.mutex.lock().unwrap()),
            Blocking::SocketRead => {
                let mut byte = [0u8; 1];
                self.socket.take().unwrap().read_exact(&mut byte).unwrap();
            }
            Blocking::Rsa => {
                let start = Instant::now();
                let mut rng = rand::thread_rng();
                while start.elapsed() < BLOCK {
                    std::hint::black_box(rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap());
                }
            }
        }
    }
}

/// What one scenario saw.
struct Seen {
    /// From inside the blocking task, right after the blocking call returned.
    during: Vec<StallReport>,
    /// From `attach()` returning to the task starting to block.
    gap: Duration,
    /// How long `attach()` itself took (the roll call of the workers included).
    attach_took: Duration,
    blocked_for: Duration,
    /// When the blocking call began, to compare with the report's `started_at`.
    began: std::time::SystemTime,
    thread: String,
}

/// `attach()` from inside `rt` (as `#[tokio::main]` runs it), then at once a spawned task
/// that blocks; or, with `idle_first`, after the runtime has idled for a while.
fn attach_then_block(
    rt: &tokio::runtime::Runtime,
    what: Blocking,
    idle_first: Option<Duration>,
) -> (Arc<Agent>, Seen) {
    let (prepared, go, helper) = Prepared::new(what);
    let seen = rt.block_on(async move {
        let calling = Instant::now();
        let agent = Arc::new(
            Agent::builder()
                .stall_threshold(THRESHOLD)
                .attach(&tokio::runtime::Handle::current())
                .expect("attach"),
        );
        let attached = Instant::now();
        let attach_took = attached - calling;
        if let Some(idle) = idle_first {
            tokio::time::sleep(idle).await;
        }
        let inside = agent.clone();
        let seen = tokio::spawn(async move {
            let gap = attached.elapsed();
            let (start, began) = (Instant::now(), std::time::SystemTime::now());
            go.send(()).unwrap();
            prepared.block();
            Seen {
                blocked_for: start.elapsed(),
                during: inside.stalls(),
                gap,
                attach_took,
                began,
                thread: std::thread::current()
                    .name()
                    .unwrap_or_default()
                    .to_string(),
            }
        })
        .await
        .unwrap();
        (agent, seen)
    });
    helper.join().unwrap();
    seen
}

#[track_caller]
fn check(label: &str, what: Blocking, agent: &Agent, seen: &Seen, workers: usize) {
    println!(
        "{label} {what:?}: attach() took {:?}; blocked {:?}, began {:?} after attach() returned",
        seen.attach_took, seen.blocked_for, seen.gap
    );
    let during = &seen.during;
    assert_eq!(
        during.len(),
        1,
        "{label} {what:?}: one report while it blocks: {during:#?}"
    );
    let r = &during[0];
    assert!(
        r.ongoing,
        "{label} {what:?}: reported while it runs: {r:#?}"
    );
    assert_eq!(r.kind, what.kind(), "{label} {what:?}: {r:#?}");
    assert_eq!(
        r.detection,
        pollwatch::Detection::Worker,
        "{label} {what:?}: {r:#?}"
    );
    let worker = r.worker.expect("the stuck worker's index");
    assert!(worker < workers, "{label} {what:?}: {r:#?}");
    assert_eq!(
        r.thread, seen.thread,
        "{label} {what:?}: the blocked thread: {r:#?}"
    );
    assert!(r.tid > 0, "{label} {what:?}: {r:#?}");
    // Complete: its duration is the blocking call's, give or take the detector's
    // granularity (a tick, or the publication of progress).
    // On a loaded host one capture can time out (the thread was not scheduled to take the
    // signal in time): the stack is then the first of the later samples that succeeded.
    let stack = |r: &StallReport| -> Option<Vec<pollwatch::capture::Frame>> {
        std::iter::once((r.capture, &r.frames))
            .chain(r.samples.iter().map(|s| (s.capture, &s.frames)))
            .find(|(c, f)| *c == CaptureStatus::Ok && !f.is_empty())
            .map(|(_, f)| f.clone())
    };
    let after = support::wait_for(agent, Duration::from_secs(20), |s| {
        s.len() == 1 && !s[0].ongoing && (!support::CAPTURE_SUPPORTED || stack(&s[0]).is_some())
    });
    let r = &after[0];
    assert!(!r.ongoing, "{label} {what:?}: {r:#?}");
    let blocked_ms = seen.blocked_for.as_secs_f64() * 1e3;
    assert!(
        r.duration_ms >= blocked_ms - 25.0 && r.duration_ms <= blocked_ms + 250.0,
        "{label} {what:?}: duration {} ms for a {blocked_ms:.0} ms stall that began at {}: {r:#?}",
        r.duration_ms,
        humantime(seen.began)
    );
    if support::CAPTURE_SUPPORTED {
        let frames = stack(r).unwrap_or_else(|| panic!("{label} {what:?}: no stack: {r:#?}"));
        let culprit = what.culprit();
        assert!(
            frames
                .iter()
                .any(|f| culprit.iter().any(|c| f.function.contains(c))),
            "{label} {what:?}: a frame of {culprit:?} in {frames:#?}"
        );
    }
}

/// `began` as the reports write `started_at` (UTC, milliseconds).
fn humantime(t: std::time::SystemTime) -> String {
    let ms = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 86_400_000;
    let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
    format!("{h:02}:{m:02}:{s:02}.{:03}Z", ms % 1000)
}

fn multi_thread(workers: usize) -> tokio::runtime::Runtime {
    support::plain_runtime(workers)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_blocking_kind_right_after_attach_is_reported_on_every_flavor() {
    let _serial = support::serial();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut failed = Vec::new();
    for (label, workers) in [
        ("1 worker", 1),
        ("2 workers", 2),
        ("4 workers", 4),
        ("current_thread", 1),
    ] {
        for what in Blocking::ALL {
            // A fresh runtime per scenario: what a service has when it starts.
            let rt = if label == "current_thread" {
                current_thread()
            } else {
                multi_thread(workers)
            };
            let (agent, seen) = attach_then_block(&rt, what, None);
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                check(label, what, &agent, &seen, workers)
            }));
            if let Err(e) = checked {
                failed.push(format!("{label} {what:?}: {}", panic_message(&*e)));
            }
            drop(agent);
            drop(rt);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 20 scenarios failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_worker_idle_since_start_that_then_blocks_is_reported() {
    let _serial = support::serial();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for what in [Blocking::Sleep, Blocking::BusyLoop] {
        let rt = multi_thread(4);
        let (agent, seen) = attach_then_block(&rt, what, Some(Duration::from_millis(300)));
        check("4 workers idle 300 ms", what, &agent, &seen, 4);
    }
}
