//! Another thread's CPU time and run-queue wait, from `/proc/self/task/<tid>/schedstat`.
//!
//! CPU time that advances through a stall means the future computes (`cpu`); CPU time that
//! stands still means it waits in the kernel (`off_cpu`). Run-queue wait that dominates
//! means the thread was runnable but the host gave it no CPU: not the future's fault.

use std::time::Duration;

use crate::report::StallKind;

/// One reading of a thread's scheduler statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CpuSample {
    pub(crate) at: std::time::Instant,
    pub(crate) on_cpu_ns: u64,
    pub(crate) runqueue_ns: u64,
    /// How many times the thread has been put on a CPU: unchanged between two readings
    /// means it did not run at all in between (one uninterrupted wait).
    pub(crate) timeslices: u64,
}

/// Reads `tid`'s counters; `None` where procfs or schedstat is unavailable.
pub(crate) fn sample(tid: i32) -> Option<CpuSample> {
    if tid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let mut fields = text.split_ascii_whitespace().map(|f| f.parse::<u64>().ok());
    Some(CpuSample {
        at: std::time::Instant::now(),
        on_cpu_ns: fields.next()??,
        runqueue_ns: fields.next()??,
        timeslices: fields.next()??,
    })
}

/// What happened on the thread between two readings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CpuShare {
    pub(crate) on_cpu: f64,
    pub(crate) runqueue: f64,
}

impl CpuShare {
    pub(crate) fn between(a: &CpuSample, b: &CpuSample) -> Option<CpuShare> {
        let wall = b.at.saturating_duration_since(a.at);
        if wall < Duration::from_millis(1) {
            return None;
        }
        let wall = wall.as_nanos() as f64;
        Some(CpuShare {
            on_cpu: b.on_cpu_ns.saturating_sub(a.on_cpu_ns) as f64 / wall,
            runqueue: b.runqueue_ns.saturating_sub(a.runqueue_ns) as f64 / wall,
        })
    }

    /// `cpu` when the thread wanted the CPU (ran, or waited to run) at least half the time,
    /// else `off_cpu`. A busy loop sharing a core with other work is still a busy loop.
    pub(crate) fn kind(&self) -> StallKind {
        if self.on_cpu + self.runqueue >= 0.5 {
            StallKind::Cpu
        } else {
            StallKind::OffCpu
        }
    }

    /// The thread hardly ran at all while it waited to run: the host starved it, which is
    /// not its future's fault.
    pub(crate) fn starved(&self) -> bool {
        self.runqueue > 0.5 && self.on_cpu < 0.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, on_cpu_ms: u64, runqueue_ms: u64, base: std::time::Instant) -> CpuSample {
        CpuSample {
            at: base + Duration::from_millis(ms),
            on_cpu_ns: on_cpu_ms * 1_000_000,
            runqueue_ns: runqueue_ms * 1_000_000,
            timeslices: 0,
        }
    }

    #[test]
    fn shares_are_fractions_of_the_wall_time_between_two_readings() {
        let t = std::time::Instant::now();
        let s = CpuShare::between(&at(0, 10, 5, t), &at(100, 60, 35, t)).unwrap();
        assert!(
            (s.on_cpu - 0.5).abs() < 1e-9 && (s.runqueue - 0.3).abs() < 1e-9,
            "{s:?}"
        );
        // Under a millisecond apart, or out of order: too little to tell.
        assert_eq!(CpuShare::between(&at(0, 0, 0, t), &at(0, 0, 0, t)), None);
        assert_eq!(CpuShare::between(&at(5, 0, 0, t), &at(0, 9, 0, t)), None);
        // Counters that went backwards (a reused tid) read as no time, not as a huge share.
        let s = CpuShare::between(&at(0, 50, 50, t), &at(10, 0, 0, t)).unwrap();
        assert_eq!((s.on_cpu, s.runqueue), (0.0, 0.0));
    }

    #[test]
    fn a_thread_that_wanted_the_cpu_half_the_time_is_cpu_bound() {
        let share = |on_cpu, runqueue| CpuShare { on_cpu, runqueue };
        assert_eq!(share(0.9, 0.0).kind(), StallKind::Cpu);
        assert_eq!(
            share(0.2, 0.3).kind(),
            StallKind::Cpu,
            "ran or waited to run"
        );
        assert_eq!(share(0.2, 0.29).kind(), StallKind::OffCpu);
        assert_eq!(share(0.0, 0.0).kind(), StallKind::OffCpu);
    }

    #[test]
    fn starved_means_waiting_to_run_most_of_the_time_and_hardly_running() {
        let share = |on_cpu, runqueue| CpuShare { on_cpu, runqueue };
        assert!(share(0.05, 0.9).starved());
        assert!(!share(0.1, 0.9).starved(), "ran a tenth: not starved");
        assert!(!share(0.0, 0.5).starved(), "waited only half the time");
        assert!(!share(0.0, 0.0).starved(), "asleep is not starved");
    }

    /// Linux has `/proc/self/task/<tid>/schedstat`; without it every `kind` is `unknown`,
    /// which this test must not pass over.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_spinning_thread_reads_as_cpu_and_a_sleeping_one_as_off_cpu() {
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
        let a = sample(tid).expect(
            "/proc/self/task/<tid>/schedstat is readable (a kernel without schedstat \
             classifies every stall as unknown)",
        );
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        let b = sample(tid).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let c = sample(tid).unwrap();
        assert_eq!(CpuShare::between(&b, &c).unwrap().kind(), StallKind::OffCpu);
        // Spinning may be preempted on a busy machine; it still mostly runs or waits to run.
        let spin = CpuShare::between(&a, &b).unwrap();
        assert!(spin.on_cpu + spin.runqueue > 0.5, "{spin:?}");
    }
}
