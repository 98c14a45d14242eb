//! What a stall report says: the `/stalls` JSON object of DESIGN §5, as a Rust type.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::capture::{CaptureStatus, Frame};

/// Whether the stuck thread burned CPU through the stall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StallKind {
    /// The thread's CPU time advanced: a busy loop, RSA key generation, heavy parsing.
    Cpu,
    /// The thread sat off the CPU: `thread::sleep`, a blocking read, a lock wait.
    OffCpu,
    /// The thread's CPU time could not be read.
    Unknown,
}

impl StallKind {
    /// The name used in JSON and in the `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            StallKind::Cpu => "cpu",
            StallKind::OffCpu => "off_cpu",
            StallKind::Unknown => "unknown",
        }
    }
}

/// How the stall was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    /// Hooked mode: one task's poll ran past the threshold.
    PollHook,
    /// Attach mode: the scheduling probe was not polled within the threshold.
    Probe,
    /// Attach mode: one worker made no progress for longer than the threshold.
    Worker,
}

/// An extra look at a long stall's stack, taken at 2×, 4× and 8× the threshold, so a report
/// shows where a long stall spent its time and not only where it was first seen.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StackSample {
    /// Milliseconds since the stall began when this sample was taken.
    pub at_ms: f64,
    /// How this capture ended.
    pub capture: CaptureStatus,
    /// Innermost first.
    pub frames: Vec<Frame>,
}

/// One stall episode: a poll (or a worker) that made no progress for longer than the
/// threshold. Serializes to exactly the object of the `/stalls` JSON (DESIGN §5), plus
/// `samples`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StallReport {
    /// Increases by one per episode in this process, starting at 1.
    pub id: u64,
    /// The runtime's name, else its id.
    pub runtime: String,
    /// The worker index, when known.
    pub worker: Option<usize>,
    /// The stuck thread's name.
    pub thread: String,
    /// The stuck thread's kernel thread id.
    pub tid: i32,
    /// The tokio task id (hooked mode).
    pub task_id: Option<u64>,
    /// Where the task was spawned, `file:line:column` (hooked mode).
    pub spawned_at: Option<String>,
    /// When the poll began, RFC 3339 UTC with milliseconds.
    pub started_at: String,
    /// How long the stall lasted, or has lasted so far when `ongoing`.
    pub duration_ms: f64,
    /// True while the poll is still running.
    pub ongoing: bool,
    /// Whether the thread was on the CPU.
    pub kind: StallKind,
    /// How the stall was seen.
    pub detection: Detection,
    /// How the stack capture ended.
    pub capture: CaptureStatus,
    /// The stuck thread's stack at detection time, innermost first.
    pub frames: Vec<Frame>,
    /// Later stack samples of a long stall (at most 3, at 2×, 4× and 8× the threshold).
    pub samples: Vec<StackSample>,
}

impl StallReport {
    /// The file and line of `spawned_at`, split for metric labels.
    pub fn spawn_file_line(&self) -> Option<(&str, &str)> {
        let s = self.spawned_at.as_deref()?;
        let mut parts = s.rsplitn(3, ':');
        let _column = parts.next()?;
        let line = parts.next()?;
        let file = parts.next()?;
        Some((file, line))
    }
}

impl std::fmt::Display for StallReport {
    /// The way a person wants to read it in a log or a terminal.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.ongoing {
            "still blocked after"
        } else {
            "blocked for"
        };
        write!(
            f,
            "stall #{}: {} {} {:.1} ms ({}) on runtime {:?}, thread {:?} (tid {}",
            self.id,
            match (self.task_id, &self.spawned_at) {
                (Some(id), Some(at)) => format!("task {id} spawned at {at}"),
                (None, Some(at)) => format!("a task spawned at {at}"),
                _ => "a worker".to_string(),
            },
            state,
            self.duration_ms,
            self.kind.as_str(),
            self.runtime,
            self.thread,
            self.tid,
        )?;
        if let Some(w) = self.worker {
            write!(f, ", worker {w}")?;
        }
        write!(f, ")")?;
        if self.frames.is_empty() {
            return write!(f, "; stack: {}", self.capture.as_str());
        }
        for frame in crate::capture::fold_runtime_frames(&self.frames) {
            write!(f, "\n    {}", frame.function)?;
            if let (Some(file), Some(line)) = (&frame.file, frame.line) {
                write!(f, " at {file}:{line}")?;
            }
        }
        Ok(())
    }
}

/// RFC 3339 UTC with milliseconds, without a date-time dependency.
pub(crate) fn rfc3339_millis(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_314_600_123);
        assert_eq!(rfc3339_millis(t), "2026-11-22T02:30:00.123Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_millis(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn spawn_location_splits_into_file_and_line() {
        let r = StallReport {
            id: 1,
            runtime: "main".into(),
            worker: None,
            thread: "t".into(),
            tid: 1,
            task_id: None,
            spawned_at: Some("examples/demo.rs:57:13".into()),
            started_at: String::new(),
            duration_ms: 1.0,
            ongoing: false,
            kind: StallKind::Cpu,
            detection: Detection::PollHook,
            capture: CaptureStatus::Disabled,
            frames: vec![],
            samples: vec![],
        };
        assert_eq!(r.spawn_file_line(), Some(("examples/demo.rs", "57")));
    }
}
