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

/// The CPU time of thread `tid` of this process, exact to now: the kernel's per-thread CPU
/// clock includes the slice the thread is running right now, whereas `schedstat` is brought
/// up to date only at scheduler ticks (milliseconds) and context switches. `None` where
/// there is no such clock (not Linux) or the thread is gone.
pub(crate) fn thread_cpu_ns(tid: i32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        if tid <= 0 {
            return None;
        }
        // MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED) of the kernel's posix-timers.h: the
        // scheduler's exact run time of one thread of the calling process.
        let clock: libc::clockid_t = ((!tid) << 3) | 6;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; a bad clock id is an error, not UB.
        let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
        (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        None
    }
}

/// The scheduler state letter of `/proc/self/task/<tid>/stat`: `R` running or runnable, `S`
/// asleep, `D` in uninterruptible sleep, ...
pub(crate) fn scheduler_state(tid: i32) -> Option<u8> {
    let stat = std::fs::read(format!("/proc/self/task/{tid}/stat")).ok()?;
    // "tid (comm) S ...": the name may hold spaces and parentheses; the state follows the
    // last ')'.
    let close = stat.iter().rposition(|&c| c == b')')?;
    stat.get(close + 2).copied()
}

/// The system call thread `tid` is in right now, from `/proc/self/task/<tid>/syscall`
/// (`None`: not in one, or unreadable).
fn current_syscall(tid: i32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    text.split_ascii_whitespace().next()?.parse::<i64>().ok()
}

/// What a thread is doing in the kernel, as far as a wait can be blamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Running or runnable, or its state is unknown: not a wait.
    None,
    /// Asleep on a timer (`nanosleep`, `clock_nanosleep`): always its own code's doing.
    Timer,
    /// Asleep inside a call that changes the address space (`brk`, `mmap`, `mprotect`, ...:
    /// the allocator growing or trimming its heap). The only sleeps there are the process's
    /// address-space lock, held by another of its threads, and memory reclaim: the host's.
    AddressSpace,
    /// Asleep on anything else: a futex (`std::sync::Mutex`, the allocator's lock), I/O.
    Other,
}

/// The system calls whose only sleeps are the address-space lock and memory reclaim.
#[cfg(target_os = "linux")]
const ADDRESS_SPACE_CALLS: [i64; 6] = [
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
];

/// Classifies a thread from its scheduler state letter and its current system call.
fn wait_of(state: Option<u8>, syscall: Option<i64>) -> Wait {
    if !matches!(state, Some(b'S' | b'D')) {
        return Wait::None;
    }
    #[cfg(target_os = "linux")]
    {
        let timers = [libc::SYS_nanosleep, libc::SYS_clock_nanosleep];
        match syscall {
            Some(n) if timers.contains(&n) => Wait::Timer,
            Some(n) if ADDRESS_SPACE_CALLS.contains(&n) => Wait::AddressSpace,
            _ => Wait::Other,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = syscall;
        Wait::None
    }
}

/// What thread `tid` waits on right now.
fn wait_of_thread(tid: i32) -> Wait {
    wait_of(scheduler_state(tid), current_syscall(tid))
}

/// Whether thread `tid` is asleep inside an address-space call (see [`Wait::AddressSpace`]).
pub(crate) fn asleep_in_an_address_space_call(tid: i32) -> bool {
    wait_of_thread(tid) == Wait::AddressSpace
}

/// Host-stall guard for waits: thread `tid` waits for the host, not for its own code. It is
/// asleep inside an address-space call (the allocator growing its heap waits for the
/// process's address-space lock, which page faults and `/proc/self/maps` readers in other
/// threads hold, and on a busy host those holders are descheduled with it), or asleep on
/// something other than a timer while another thread of this process is runnable but not
/// running, most likely what it waits for (the holder of its lock). Not a blocking future.
/// Called only when such a wait is about to become a stall, never per tick; it may sleep
/// 1 ms on the caller's thread.
pub(crate) fn waits_for_the_host(tid: i32) -> bool {
    match wait_of_thread(tid) {
        Wait::None | Wait::Timer => false,
        Wait::AddressSpace => true,
        Wait::Other => another_thread_is_starved(tid),
    }
}

/// Threads looked at, at most, by [`another_thread_is_starved`].
const MAX_THREADS_LOOKED_AT: usize = 512;
/// How long [`another_thread_is_starved`] watches the runnable threads.
const STARVED_LOOK: Duration = Duration::from_millis(1);

/// Whether some thread of this process other than `except` (and the caller) is runnable but
/// kept off the CPU: runnable, and its exact CPU clock moved for less than half of a short
/// look (1 ms, spent sleeping on the caller's thread).
///
/// A thread waiting for a lock whose holder is such a thread waits for the host, not for its
/// own code: on a loaded machine a lock held for microseconds can keep its waiters asleep for
/// as long as the scheduler keeps the holder off the CPU. Called only when a lock wait is
/// about to become a stall, never per tick.
pub(crate) fn another_thread_is_starved(except: i32) -> bool {
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    let runnable: Vec<(i32, u64)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&t| t != except && t != me)
        .take(MAX_THREADS_LOOKED_AT)
        .filter(|&t| scheduler_state(t) == Some(b'R'))
        .filter_map(|t| Some((t, thread_cpu_ns(t)?)))
        .collect();
    if runnable.is_empty() {
        return false;
    }
    let start = std::time::Instant::now();
    std::thread::sleep(STARVED_LOOK);
    let half = start.elapsed().as_nanos() as u64 / 2;
    // Ran less than half the look: a thread that shares its CPU with others is kept off it
    // for as long as it runs, and a lock it holds stays held meanwhile.
    runnable.iter().any(|&(t, before)| {
        thread_cpu_ns(t).is_some_and(|after| after.saturating_sub(before) < half)
    })
}

/// Host-stall guard for one long poll: how much of it the thread spent waiting for a CPU
/// (runnable, not running), which is the host's doing and not the poll's.
///
/// The kernel adds a wait to the thread's run-queue time (`schedstat`) only when the wait
/// ends, so the wait going on right now is found from the exact CPU clock instead: a thread
/// that is runnable (`R`) and whose CPU time has not moved since a sample is waiting since
/// it last moved.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunQueueGuard {
    base: CpuSample,
    cpu_ns: u64,
    sampled_at: std::time::Instant,
    last_ran: std::time::Instant,
    waiting: bool,
}

impl RunQueueGuard {
    /// Starts watching `tid` (inside a poll that has already lasted a sampling period).
    pub(crate) fn start(tid: i32) -> Option<RunQueueGuard> {
        let base = sample(tid)?;
        let cpu_ns = thread_cpu_ns(tid)?;
        Some(RunQueueGuard {
            base,
            cpu_ns,
            sampled_at: base.at,
            last_ran: base.at,
            waiting: false,
        })
    }

    /// One more look at the thread (every sampling period while the poll lasts).
    pub(crate) fn update(&mut self, tid: i32) {
        let (Some(cpu_ns), now) = (thread_cpu_ns(tid), std::time::Instant::now()) else {
            return;
        };
        if cpu_ns > self.cpu_ns {
            self.last_ran = now;
            self.waiting = false;
        } else {
            self.waiting = scheduler_state(tid) == Some(b'R');
        }
        self.cpu_ns = cpu_ns;
        self.sampled_at = now;
    }

    /// Time since the guard started that the thread waited for a CPU: the waits the kernel
    /// has accounted, plus the current one if it is waiting now. May count a wait that began
    /// a little before the guard started: it errs towards the host, never towards a false
    /// stall.
    pub(crate) fn queued(&self, tid: i32) -> Duration {
        let accounted =
            sample(tid).map_or(0, |s| s.runqueue_ns.saturating_sub(self.base.runqueue_ns));
        let current = if self.waiting {
            self.sampled_at.saturating_duration_since(self.last_ran)
        } else {
            Duration::ZERO
        };
        Duration::from_nanos(accounted) + current
    }
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

    #[cfg(target_os = "linux")]
    #[test]
    fn an_allocator_asleep_in_an_address_space_call_waits_for_the_host_and_a_sleep_does_not() {
        assert_eq!(wait_of(Some(b'R'), Some(libc::SYS_mprotect)), Wait::None);
        assert_eq!(wait_of(None, Some(libc::SYS_mprotect)), Wait::None);
        for call in ADDRESS_SPACE_CALLS {
            assert_eq!(wait_of(Some(b'D'), Some(call)), Wait::AddressSpace);
            assert_eq!(wait_of(Some(b'S'), Some(call)), Wait::AddressSpace);
        }
        assert_eq!(wait_of(Some(b'S'), Some(libc::SYS_nanosleep)), Wait::Timer);
        assert_eq!(
            wait_of(Some(b'S'), Some(libc::SYS_clock_nanosleep)),
            Wait::Timer
        );
        assert_eq!(wait_of(Some(b'S'), Some(libc::SYS_futex)), Wait::Other);
        assert_eq!(wait_of(Some(b'D'), Some(libc::SYS_read)), Wait::Other);
        // A page fault (no system call) may be a file read from disk: the future's.
        assert_eq!(wait_of(Some(b'D'), Some(-1)), Wait::Other);
        assert_eq!(wait_of(Some(b'S'), None), Wait::Other);
    }

    #[test]
    fn a_lock_wait_can_be_another_thread_s_doing_and_a_sleep_cannot() {
        use std::sync::atomic::{AtomicI32, Ordering::*};
        use std::sync::{Arc, Mutex};
        static SLEEPER: AtomicI32 = AtomicI32::new(0);
        static WAITER: AtomicI32 = AtomicI32::new(0);
        let gettid = || unsafe { libc::syscall(libc::SYS_gettid) } as i32;
        let lock = Arc::new(Mutex::new(()));
        let held = lock.lock().unwrap();
        let sleeper = std::thread::spawn(move || {
            SLEEPER.store(gettid(), Release);
            std::thread::sleep(Duration::from_millis(300));
        });
        let l = lock.clone();
        let waiter = std::thread::spawn(move || {
            WAITER.store(gettid(), Release);
            drop(l.lock().unwrap());
        });
        std::thread::sleep(Duration::from_millis(100));
        let (s, w) = (SLEEPER.load(Acquire), WAITER.load(Acquire));
        if scheduler_state(s).is_some() && current_syscall(s).is_some() {
            assert_eq!(wait_of_thread(s), Wait::Timer, "a sleep");
            assert_eq!(wait_of_thread(w), Wait::Other, "a mutex wait");
            assert!(!waits_for_the_host(s), "a sleep is never excused");
        }
        drop(held);
        waiter.join().unwrap();
        sleeper.join().unwrap();
    }

    #[test]
    fn the_exact_cpu_clock_of_another_thread_moves_while_it_spins_and_not_while_it_sleeps() {
        use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::*};
        static TID: AtomicI32 = AtomicI32::new(0);
        static SPIN: AtomicBool = AtomicBool::new(true);
        static STOP: AtomicBool = AtomicBool::new(false);
        let t = std::thread::spawn(|| {
            TID.store(unsafe { libc::syscall(libc::SYS_gettid) } as i32, Release);
            while !STOP.load(Acquire) {
                if SPIN.load(Acquire) {
                    std::hint::black_box(0u64);
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        while TID.load(Acquire) == 0 {
            std::thread::yield_now();
        }
        let tid = TID.load(Acquire);
        let Some(a) = thread_cpu_ns(tid) else {
            STOP.store(true, Release);
            t.join().unwrap();
            return; // no per-thread CPU clocks here
        };
        std::thread::sleep(Duration::from_millis(30));
        let b = thread_cpu_ns(tid).unwrap();
        assert!(b > a, "a spinning thread's CPU time moves: {a} -> {b}");
        assert_eq!(scheduler_state(tid), Some(b'R'));
        SPIN.store(false, Release);
        std::thread::sleep(Duration::from_millis(10));
        let c = thread_cpu_ns(tid).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let d = thread_cpu_ns(tid).unwrap();
        // Thirty 1 ms sleeps cost microseconds of CPU, not milliseconds.
        assert!(
            d - c < 5_000_000,
            "a sleeping thread's hardly moves: {c} -> {d}"
        );
        STOP.store(true, Release);
        t.join().unwrap();
        assert_eq!(
            thread_cpu_ns(tid),
            None,
            "a thread that is gone has no clock"
        );
    }
}
