//! tokio-console: a real gRPC client of the console protocol attaches and sees tasks; the
//! task map stays bounded; the server stops with the agent; where tasks cannot be seen the
//! setting is an error.
//!
//! The tests of this binary run one at a time (`support::serial`): each measures stalls or
//! deadlines against the wall clock, and one test's deliberate stall must not be another's.

#[path = "../support/mod.rs"]
mod support;

mod console_addr_needs_hooked_mode;
mod console_shows_tasks_to_a_real_client;
mod console_stops_with_the_agent_while_a_client_watches;
mod console_task_map_stays_within_its_cap;
