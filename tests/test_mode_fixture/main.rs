//! Test mode through `cargo test` of a small application
//! (`tests/fixtures/test-mode`), as a user's CI runs it: blocking tests fail with their culprit,
//! healthy ones pass under a CPU hog, the threshold variable and warn-only mode work.
//!
//! The tests of this binary run one at a time (`support::serial`): each measures stalls or
//! deadlines against the wall clock, and one test's deliberate stall must not be another's.

#[path = "../support/mod.rs"]
mod support;

mod test_mode_blocking_tests_fail_with_the_culprit_frame;
mod test_mode_healthy_tests_pass_in_parallel_under_a_cpu_hog;
mod test_mode_threshold_variable_sets_every_test_and_a_bad_value_fails_naming_it;
mod test_mode_warn_only_prints_the_report_and_passes;
