//! Helpers shared by the integration tests: a runtime with an agent, and bounded waits.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use pollwatch::{Agent, StallReport};

/// A two-worker runtime built through pollwatch: hooked mode under `tokio_unstable`,
/// attach mode on stable tokio.
pub fn runtime(threshold: Duration) -> (tokio::runtime::Runtime, Agent) {
    runtime_with(Agent::builder().stall_threshold(threshold))
}

pub fn runtime_with(builder: pollwatch::Builder) -> (tokio::runtime::Runtime, Agent) {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(2).enable_all();
    builder.build_runtime(&mut rt).expect("agent starts")
}

/// Waits (bounded) until `pred` holds for the agent's reports; returns them.
pub fn wait_for(
    agent: &Agent,
    limit: Duration,
    pred: impl Fn(&[StallReport]) -> bool,
) -> Vec<StallReport> {
    let start = Instant::now();
    loop {
        let stalls = agent.stalls();
        if pred(&stalls) || start.elapsed() > limit {
            return stalls;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `file:line` of the caller, to compare with `spawned_at` (which adds a column).
#[track_caller]
pub fn here() -> String {
    let l = std::panic::Location::caller();
    format!("{}:{}:", l.file(), l.line())
}

/// True in the hooked build, where reports carry task ids and spawn locations.
pub const HOOKED: bool = cfg!(tokio_unstable);
