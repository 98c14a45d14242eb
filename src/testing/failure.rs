//! The message of a test that blocked its executor: what a developer needs to fix it without
//! re-running anything.

use std::fmt;
use std::time::Duration;

use crate::capture::{fold_runtime_frames, is_own_code, Frame};
use crate::{Mode, StallKind, StallReport};

/// Stack lines shown per stall after folding; the rest is counted.
const MAX_STACK_LINES: usize = 40;

/// Why a watched test failed: every poll that blocked its executor for longer than the
/// threshold. Its `Display` is the failure message: per stall its duration, kind, spawn
/// location (hooked mode), the test's own frames first, then the stack with the runtime's
/// frames folded, and what to do about it. `Debug` prints the same message, so that
/// `guard.finish().unwrap()` and a test returning `Result<(), Failure>` show it as it is.
#[derive(Clone)]
pub struct Failure {
    test: String,
    threshold: Duration,
    mode: Mode,
    warn_only: bool,
    stalls: Vec<StallReport>,
}

impl Failure {
    pub(crate) fn new(
        test: String,
        threshold: Duration,
        mode: Mode,
        warn_only: bool,
        stalls: Vec<StallReport>,
    ) -> Self {
        Failure {
            test,
            threshold,
            mode,
            warn_only,
            stalls,
        }
    }

    /// The stall reports, oldest first (the same objects as [`Agent::stalls`](crate::Agent::stalls)).
    pub fn stalls(&self) -> &[StallReport] {
        &self.stalls
    }

    /// The threshold the test ran with.
    pub fn threshold(&self) -> Duration {
        self.threshold
    }
}

impl std::error::Error for Failure {}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.stalls.len();
        writeln!(
            f,
            "pollwatch{}: {n} poll{} blocked the tokio executor for longer than {} in test `{}` ({} mode)",
            if self.warn_only { " (warn only)" } else { "" },
            if n == 1 { "" } else { "s" },
            ms(self.threshold),
            self.test,
            self.mode.as_str(),
        )?;
        for (i, r) in self.stalls.iter().enumerate() {
            writeln!(f)?;
            stall(f, i + 1, r)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "A blocked poll stops every other task of its worker. How to fix: move the blocking call\n\
             off the executor (tokio::task::spawn_blocking, or the async version of the call:\n\
             tokio::time::sleep, tokio::fs, tokio::sync::Mutex); if it is deliberate and short, wrap\n\
             it in pollwatch::allow_blocking(|| ...)."
        )?;
        write!(
            f,
            "Threshold: TestWatch::threshold per test, POLLWATCH_TEST_THRESHOLD_MS for every test;\n\
             POLLWATCH_TEST_WARN_ONLY=1 prints this instead of failing."
        )
    }
}

fn stall(f: &mut fmt::Formatter<'_>, n: usize, r: &StallReport) -> fmt::Result {
    let how_long = if r.ongoing {
        "blocked for at least"
    } else {
        "blocked for"
    };
    write!(
        f,
        "{n}. {how_long} {:.1} ms ({}: {})",
        r.duration_ms,
        r.kind.as_str(),
        match r.kind {
            StallKind::Cpu => "on the CPU: a busy loop or a heavy computation",
            StallKind::OffCpu => "waiting in the kernel: sleep, blocking I/O or a lock",
            StallKind::Unknown => "CPU time not readable",
        }
    )?;
    if r.ongoing {
        write!(f, ", still in that poll when the test ended")?;
    }
    writeln!(f)?;
    match (&r.spawned_at, r.task_id) {
        (Some(at), Some(id)) => writeln!(f, "   task {id} spawned at {at}")?,
        (Some(at), None) => writeln!(f, "   a task spawned at {at}")?,
        _ => {}
    }
    write!(f, "   thread {:?}", r.thread)?;
    if r.tid != 0 {
        write!(f, " (tid {})", r.tid)?;
    }
    if let Some(w) = r.worker {
        write!(f, ", worker {w}")?;
    }
    writeln!(f)?;
    if r.frames.is_empty() {
        return writeln!(f, "   no stack: capture {}", r.capture.as_str());
    }
    let own: Vec<&Frame> = r.frames.iter().filter(|fr| is_own_code(fr)).collect();
    if own.is_empty() {
        writeln!(f, "   your code: no frame of it in the stack (see below)")?;
    } else {
        writeln!(f, "   your code, innermost first:")?;
        for fr in own {
            frame(f, fr)?;
        }
    }
    writeln!(f, "   stack, innermost first (runtime frames folded):")?;
    let folded = fold_runtime_frames(&r.frames);
    for fr in folded.iter().take(MAX_STACK_LINES) {
        frame(f, fr)?;
    }
    if folded.len() > MAX_STACK_LINES {
        writeln!(f, "      … {} more", folded.len() - MAX_STACK_LINES)?;
    }
    Ok(())
}

fn frame(f: &mut fmt::Formatter<'_>, fr: &Frame) -> fmt::Result {
    write!(f, "      {}", fr.function)?;
    if let (Some(file), Some(line)) = (&fr.file, fr.line) {
        write!(f, " at {file}:{line}")?;
    }
    writeln!(f)
}

/// `10 ms`, `2.5 ms`.
fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms.fract() == 0.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms} ms")
    }
}
