//! The agent's life and set-up: attaching to a running runtime, building one, several
//! runtimes and flavors, the user's own hooks, settings that turn parts off, and stopping
//! with the runtime.
//!
//! The tests of this binary run one at a time (`support::serial`): each measures stalls or
//! deadlines against the wall clock, and one test's deliberate stall must not be another's.

#[path = "../support/mod.rs"]
mod support;

mod attach_rejects_hooks_it_cannot_install;
mod attach_stops_reporting_when_the_runtime_shuts_down;
mod current_thread_and_several_runtimes_are_watched;
mod detection_alone_reports_stalls_without_poll_time_or_callsite_series;
mod user_hooks_are_still_called;
