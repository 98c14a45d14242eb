//! Stall detection, scenario by scenario: what is reported (kind, stack, spawn location,
//! worker) while a poll blocks, and what is not a stall (allowed blocking, `spawn_blocking`,
//! `block_in_place`, healthy load, CPU starvation), in attach and hooked mode.
//!
//! The tests of this binary run one at a time (`support::serial`): each measures stalls or
//! deadlines against the wall clock, and one test's deliberate stall must not be another's.

#[path = "../support/mod.rs"]
mod support;

mod allow_blocking_is_not_a_stall;
mod allow_blocking_time_is_not_added_to_the_rest_of_its_poll;
mod attach_current_thread_runtime_stall_is_reported_on_its_thread;
mod attach_one_stuck_worker_among_two_is_reported_while_the_other_serves;
mod attach_probe_alone_reports_a_runtime_stall_once_per_wait;
mod attach_single_worker_stall_is_one_report_not_two;
mod attach_stall_right_after_attach_is_reported;
mod block_in_place_is_not_a_stall;
mod busy_loop_is_reported_as_cpu_while_it_runs;
mod cpu_starvation_by_other_threads_is_not_a_stall;
mod hanging_poll_is_reported_as_ongoing;
mod healthy_load_produces_no_reports;
mod mutex_wait_is_reported_as_off_cpu;
mod panicking_tasks_leave_no_false_stall;
mod rsa_in_spawn_blocking_is_not_a_stall;
mod rsa_key_generation_is_reported_as_cpu;
mod separate_stalls_are_counted_separately;
mod sleeping_poll_is_reported_with_its_stack;
mod stall_reports_show_the_culprit_in_their_stack;
mod stall_two_async_fns_deep_names_both_in_its_stack;
mod stall_warnings_are_rate_limited_per_signature;
