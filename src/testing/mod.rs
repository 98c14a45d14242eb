//! Test mode: fail a test when its async code blocks the executor.
//!
//! A blocking call inside async code (`std::thread::sleep`, a synchronous read, a
//! `std::sync::Mutex` wait, a long computation) is invisible in a quiet test run and shows up
//! in production as latency. This module turns it into a failing test, with the culprit's
//! stack in the failure message, before it ships.
//!
//! Put a guard at the top of a plain `#[tokio::test]` (stable tokio, either flavor):
//!
//! ```no_run
//! #[tokio::test]
//! async fn handler_does_not_block() {
//!     let _guard = pollwatch::testing::watch();
//!     // ... the test: any poll that blocks its worker for more than 10 ms fails it
//! }
//! ```
//!
//! When the guard is dropped at the end of the body, it stops watching, and if any poll
//! blocked for longer than the test threshold the test fails with a [`Failure`] message:
//! for each stall its duration, its kind (`cpu` or `off_cpu`), where it was spawned (hooked
//! mode), your own frames of the stuck thread's stack first, then the whole stack with the
//! runtime's frames folded. [`TestGuard::finish`] returns the same as a `Result` instead of
//! panicking.
//!
//! Where the watched code runs:
//! - `#[tokio::test]` (`current_thread`): the test body itself is the future the runtime
//!   polls, so blocking in the body is caught, as is blocking in tasks it spawns;
//! - `#[tokio::test(flavor = "multi_thread")]`: the body runs on the test's own thread, not
//!   on a worker, so blocking in the body blocks no worker and is not a stall; blocking in
//!   spawned tasks is caught;
//! - a runtime the test builds: [`TestWatch::build_runtime`] or [`run`] build it through
//!   pollwatch, which under `--cfg tokio_unstable` is hooked mode (exact, and the report
//!   names the task's spawn location).
//!
//! [`crate::allow_blocking`] is honored: blocking inside it is not a stall. Stalls that only
//! the scheduling probe sees (a ready task waited for a worker, with no worker stuck) are
//! queueing, not a blocking poll, and do not fail a test; nor does an attach-mode report
//! whose captured stack shows the thread parked in tokio's scheduler (in no poll at all). Neither does a poll that the host
//! left runnable but did not run (a loaded CI machine): the same host-stall guard as in
//! production, see the README.
//!
//! Settings, most specific first: the [`TestWatch`] methods, then the environment
//! ([`TEST_ENV_VARS`]), then the defaults. A bad value fails the test with an error naming
//! the variable and the value.

mod failure;

pub use failure::Failure;

use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::config::{Config, DEFAULT_WATCHDOG_TICK};
use crate::{Agent, Builder, Detection, Error, Mode, StallReport};

/// Default test threshold: a poll that blocks its worker for longer fails the test. Far
/// below production's 100 ms, because a test's load is small and a blocking call in it is a
/// bug even when it is short.
pub const DEFAULT_TEST_THRESHOLD: Duration = Duration::from_millis(10);

/// The environment variables test mode reads, with what each sets. Other `POLLWATCH_*`
/// variables (the HTTP address, the production threshold) are ignored here: tests run in
/// parallel and must not all bind one port.
pub const TEST_ENV_VARS: &[(&str, &str)] = &[
    (
        "POLLWATCH_TEST_THRESHOLD_MS",
        "test threshold in milliseconds (default 10)",
    ),
    (
        "POLLWATCH_TEST_WARN_ONLY",
        "1/true/yes/on: print the report instead of failing the test",
    ),
    ("POLLWATCH_DISABLED", "1/true/yes/on turns test mode off"),
    (
        "POLLWATCH_STACKS",
        "on/off: capture the blocked thread's stack",
    ),
    ("POLLWATCH_SIGNAL", "capture signal, e.g. SIGRTMIN+3"),
];

/// The production variables that also apply to test mode.
const SHARED_ENV_VARS: [&str; 3] = ["POLLWATCH_DISABLED", "POLLWATCH_STACKS", "POLLWATCH_SIGNAL"];

/// Watches the current test's runtime, from inside it: the guard for the top of a
/// `#[tokio::test]` body, with the settings of [`TestWatch::new`].
///
/// # Panics
///
/// Outside a tokio runtime, or when an environment variable has a bad value (the message
/// names it): either way the test fails at once, saying why.
pub fn watch() -> TestGuard {
    let handle = tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
        panic!(
            "pollwatch::testing::watch() needs a tokio runtime: call it at the top of a #[tokio::test] body, or use pollwatch::testing::run() in a plain #[test]"
        )
    });
    TestWatch::new()
        .attach(&handle)
        .unwrap_or_else(|e| panic!("pollwatch test mode: {e}"))
}

/// Builds a multi-thread runtime through pollwatch, runs `future` on it as a task, and
/// fails the test (after `future` completes) if any poll blocked for longer than the
/// threshold: for a plain `#[test]`. Returns the future's output; a panic inside it is
/// passed on. Under `--cfg tokio_unstable` this is hooked mode, and reports name the line
/// that spawned the blocking task (for `future` itself, the line calling `run`).
///
/// # Panics
///
/// When an environment variable has a bad value (the message names it), when the runtime
/// cannot be built, or, after `future` completes, with the [`Failure`] message.
#[track_caller]
pub fn run<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    TestWatch::new().run(future)
}

/// Test-mode settings for one test; finish with [`TestWatch::attach`],
/// [`TestWatch::build_runtime`] or [`TestWatch::run`].
#[derive(Clone, Debug, Default)]
#[must_use = "TestWatch does nothing until attach(), build_runtime() or run() is called"]
pub struct TestWatch {
    threshold: Option<Duration>,
    warn_only: Option<bool>,
}

/// Settings resolved against the environment.
struct Settings {
    builder: Builder,
    threshold: Duration,
    warn_only: bool,
    test: String,
}

impl TestWatch {
    /// The defaults, overridden by [`TEST_ENV_VARS`] when the guard starts.
    pub fn new() -> Self {
        TestWatch::default()
    }

    /// This test's threshold (default [`DEFAULT_TEST_THRESHOLD`], or
    /// `POLLWATCH_TEST_THRESHOLD_MS`): for a test that blocks a little on purpose, prefer
    /// [`crate::allow_blocking`] around that call, which keeps the rest of the test strict.
    pub fn threshold(mut self, threshold: Duration) -> Self {
        self.threshold = Some(threshold);
        self
    }

    /// `true`: print the report and let the test pass, for adopting test mode in a suite
    /// that is not clean yet (default `false`, or `POLLWATCH_TEST_WARN_ONLY`). The report is
    /// written straight to the process's stderr, so `cargo test` shows it for passing tests
    /// too.
    pub fn warn_only(mut self, warn_only: bool) -> Self {
        self.warn_only = Some(warn_only);
        self
    }

    /// Watches the running runtime `handle` (attach mode): call it inside the test, e.g.
    /// `TestWatch::new().attach(&Handle::current())?` at the top of a `#[tokio::test]` body.
    pub fn attach(self, handle: &tokio::runtime::Handle) -> Result<TestGuard, Error> {
        let s = self.settings(|name| std::env::var(name).ok())?;
        let agent = s.builder.attach(handle)?;
        Ok(TestGuard::new(agent, s.threshold, s.warn_only, s.test))
    }

    /// Builds `builder` into a watched runtime (hooked mode under `--cfg tokio_unstable`,
    /// else attach mode with pollwatch's thread hooks), for a test that builds its own
    /// runtime. The future given to `Runtime::block_on` is not a task, which tokio's hooks
    /// do not see: spawn the code under test, or use [`TestWatch::run`].
    pub fn build_runtime(
        self,
        builder: &mut tokio::runtime::Builder,
    ) -> Result<(tokio::runtime::Runtime, TestGuard), Error> {
        let s = self.settings(|name| std::env::var(name).ok())?;
        let (runtime, agent) = s.builder.build_runtime(builder)?;
        Ok((
            runtime,
            TestGuard::new(agent, s.threshold, s.warn_only, s.test),
        ))
    }

    /// [`run`] with these settings.
    ///
    /// # Panics
    ///
    /// As [`run`].
    #[track_caller]
    pub fn run<F>(self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all();
        let (runtime, guard) = match self.build_runtime(&mut builder) {
            Ok(pair) => pair,
            Err(e) => panic!("pollwatch test mode: {e}"),
        };
        // Spawned, not given to `block_on`: tokio's hooks see tasks only. `Runtime::spawn`
        // tracks its caller, so the spawn location is the test's call of `run`.
        let task = runtime.spawn(future);
        let output = runtime.block_on(task);
        match output {
            Ok(output) => {
                drop(guard);
                output
            }
            Err(e) => match e.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(e) => panic!("the test's future did not complete: {e}"),
            },
        }
    }

    /// The agent's configuration for this test, with the variables looked up by `get`.
    fn settings(self, get: impl Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        let env_threshold = match get("POLLWATCH_TEST_THRESHOLD_MS") {
            Some(v) => Some(parse_threshold(&v)?),
            None => None,
        };
        let env_warn_only = match get("POLLWATCH_TEST_WARN_ONLY") {
            Some(v) => Some(crate::config::parse_bool("POLLWATCH_TEST_WARN_ONLY", &v)?),
            None => None,
        };
        let threshold = self
            .threshold
            .or(env_threshold)
            .unwrap_or(DEFAULT_TEST_THRESHOLD);
        let warn_only = self.warn_only.or(env_warn_only).unwrap_or(false);
        let mut config = Config::default();
        config.apply_vars(|name| SHARED_ENV_VARS.contains(&name).then(|| get(name)).flatten())?;
        config.stall_threshold = threshold;
        config.watchdog_tick = tick_for(threshold);
        config.probe_interval = config.watchdog_tick;
        let test = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        config.runtime_name = Some(test.clone());
        if config.enabled {
            config.validate()?;
        }
        Ok(Settings {
            builder: Builder::with_config(config),
            threshold,
            warn_only,
            test,
        })
    }
}

/// `POLLWATCH_TEST_THRESHOLD_MS`: milliseconds, greater than zero (fractions allowed).
fn parse_threshold(v: &str) -> Result<Duration, Error> {
    const VAR: &str = "POLLWATCH_TEST_THRESHOLD_MS";
    let ms: f64 = v
        .trim()
        .parse()
        .map_err(|_| Error::invalid(VAR, v, "expected a number of milliseconds, e.g. 10"))?;
    if !(ms.is_finite() && ms > 0.0 && ms <= 3_600_000.0) {
        return Err(Error::invalid(
            VAR,
            v,
            "must be greater than zero and at most an hour (3600000)",
        ));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// The watchdog looks five times per threshold (at most every 10 ms, at least every 0.5 ms
/// unless the threshold is below 1 ms): a stall is caught within a fifth of the threshold
/// after it crosses, so a block just over the threshold is not missed for being short.
fn tick_for(threshold: Duration) -> Duration {
    let floor = Duration::from_micros(500).min(threshold / 2);
    (threshold / 5).clamp(floor, DEFAULT_WATCHDOG_TICK)
}

/// Watches one test; checks it when dropped (or at [`TestGuard::finish`]).
///
/// Dropped at the end of the test body, it stops the watchdog (which first finishes the
/// stack of every stall it has seen) and, if any poll blocked for longer than the threshold,
/// panics with the [`Failure`] message, failing the test. If the test is already panicking
/// it only prints the stalls (the test fails anyway, and a second panic would abort). In
/// warn-only mode it prints them and the test passes.
#[must_use = "the test is checked when the guard is dropped: bind it with `let _guard = ...`, not `let _ = ...`"]
pub struct TestGuard {
    agent: Option<Agent>,
    threshold: Duration,
    warn_only: bool,
    test: String,
}

impl TestGuard {
    fn new(agent: Agent, threshold: Duration, warn_only: bool, test: String) -> Self {
        TestGuard {
            agent: Some(agent),
            threshold,
            warn_only,
            test,
        }
    }

    /// The stalls that would fail the test, so far (a stack may still be on its way).
    pub fn stalls(&self) -> Vec<StallReport> {
        self.agent.as_ref().map(failing_stalls).unwrap_or_default()
    }

    /// Which detector watches this test: `Hooked` for a runtime built through pollwatch
    /// under `--cfg tokio_unstable`, `Attach` otherwise, `Disabled` with
    /// `POLLWATCH_DISABLED`.
    pub fn mode(&self) -> Mode {
        self.agent.as_ref().map_or(Mode::Disabled, Agent::mode)
    }

    /// The threshold this test runs with.
    pub fn threshold(&self) -> Duration {
        self.threshold
    }

    /// Stops watching and says whether the test passes: `Err` with every stall when a
    /// poll blocked for longer than the threshold (in warn-only mode the report is printed
    /// and this is `Ok`). For tests that prefer a `Result` to a panicking drop.
    pub fn finish(mut self) -> Result<(), Failure> {
        match self.collect() {
            Some(failure) if self.warn_only => {
                warn(&failure);
                Ok(())
            }
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    /// Stops the agent and returns the failure, if any; `None` once already collected.
    fn collect(&mut self) -> Option<Failure> {
        let mut agent = self.agent.take()?;
        // The test thread may be the runtime's only worker: these waits are not its stall.
        crate::allow_blocking(|| {
            // A poll that ended just before the test did is seen to end at the watchdog's
            // next look: give it a few (bounded), so its report has its final duration.
            let tick = tick_for(self.threshold);
            let deadline = Instant::now() + tick * 3;
            while Instant::now() < deadline && failing_stalls(&agent).iter().any(|r| r.ongoing) {
                std::thread::sleep(tick / 2);
            }
            // Stopping waits for the symbolizer to finish the stacks already captured.
            agent.shutdown();
        });
        let stalls = failing_stalls(&agent);
        (!stalls.is_empty()).then(|| {
            Failure::new(
                self.test.clone(),
                self.threshold,
                agent.mode(),
                self.warn_only,
                stalls,
            )
        })
    }
}

impl Drop for TestGuard {
    fn drop(&mut self) {
        let Some(failure) = self.collect() else {
            return;
        };
        if std::thread::panicking() {
            // Captured with the test's output and shown with its failure.
            eprintln!("{failure}");
        } else if self.warn_only {
            warn(&failure);
        } else {
            panic!("{failure}");
        }
    }
}

impl std::fmt::Debug for TestGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestGuard")
            .field("test", &self.test)
            .field("mode", &self.mode())
            .field("threshold", &self.threshold)
            .field("warn_only", &self.warn_only)
            .finish()
    }
}

/// The agent's reports that are blocking polls: not probe-only stalls, which say a ready
/// task waited for a worker with no worker stuck (queueing, not blocking), and not a
/// worker whose captured stack shows tokio's scheduler parking its thread (attach mode reads
/// threads, not polls, and a thread parked in its scheduler is in no poll).
fn failing_stalls(agent: &Agent) -> Vec<StallReport> {
    agent
        .stalls()
        .into_iter()
        .filter(|r| r.detection != Detection::Probe)
        .filter(|r| !crate::capture::parked_in_scheduler(&r.frames))
        .collect()
}

/// Warn-only output, written to the process's stderr itself: the test harness captures
/// what `eprintln!` prints and shows it only for failing tests.
fn warn(failure: &Failure) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{failure}");
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::fake_env as env;

    #[test]
    fn the_threshold_comes_from_the_test_then_the_environment_then_the_default() {
        let s = TestWatch::new().settings(env(&[])).unwrap();
        assert_eq!(s.threshold, DEFAULT_TEST_THRESHOLD);
        assert!(!s.warn_only);
        let vars = [
            ("POLLWATCH_TEST_THRESHOLD_MS", "25"),
            ("POLLWATCH_TEST_WARN_ONLY", "1"),
        ];
        let s = TestWatch::new().settings(env(&vars)).unwrap();
        assert_eq!(s.threshold, Duration::from_millis(25));
        assert!(s.warn_only);
        assert_eq!(s.builder.config().stall_threshold, s.threshold);
        let s = TestWatch::new()
            .threshold(Duration::from_millis(40))
            .warn_only(false)
            .settings(env(&vars))
            .unwrap();
        assert_eq!(s.threshold, Duration::from_millis(40));
        assert!(!s.warn_only);
    }

    #[test]
    fn a_bad_variable_is_an_error_naming_it_and_its_value() {
        for (var, value) in [
            ("POLLWATCH_TEST_THRESHOLD_MS", "soon"),
            ("POLLWATCH_TEST_THRESHOLD_MS", "0"),
            ("POLLWATCH_TEST_THRESHOLD_MS", "-5"),
            ("POLLWATCH_TEST_THRESHOLD_MS", "NaN"),
            ("POLLWATCH_TEST_WARN_ONLY", "maybe"),
            ("POLLWATCH_STACKS", "sometimes"),
        ] {
            let pairs = [(var, value)];
            // A per-test setting does not hide a bad variable.
            let err = TestWatch::new()
                .threshold(Duration::from_millis(10))
                .warn_only(true)
                .settings(env(&pairs))
                .err()
                .unwrap_or_else(|| panic!("{var}={value} accepted"));
            let text = err.to_string();
            assert!(
                text.contains(var) && text.contains(&format!("{value:?}")),
                "{text}"
            );
        }
    }

    #[test]
    fn production_settings_that_would_collide_across_parallel_tests_are_ignored() {
        let vars = [
            ("POLLWATCH_HTTP_ADDR", "127.0.0.1:9464"),
            ("POLLWATCH_STALL_THRESHOLD_MS", "500"),
            ("POLLWATCH_STACKS", "off"),
        ];
        let s = TestWatch::new().settings(env(&vars)).unwrap();
        let c = s.builder.config();
        assert_eq!(c.http_addr, None);
        assert_eq!(c.stall_threshold, DEFAULT_TEST_THRESHOLD);
        assert!(!c.stacks, "POLLWATCH_STACKS applies");
    }

    #[test]
    fn the_watchdog_looks_five_times_per_threshold() {
        assert_eq!(
            tick_for(Duration::from_millis(10)),
            Duration::from_millis(2)
        );
        assert_eq!(tick_for(Duration::from_secs(1)), DEFAULT_WATCHDOG_TICK);
        assert_eq!(
            tick_for(Duration::from_millis(1)),
            Duration::from_micros(500)
        );
        let tiny = Duration::from_micros(100);
        assert!(tick_for(tiny) < tiny && !tick_for(tiny).is_zero());
    }
}
