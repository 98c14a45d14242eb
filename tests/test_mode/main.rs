//! Test mode in this process: `pollwatch::testing::watch()` guards in plain
//! `#[tokio::test]`s, several watched tests at once. These run in parallel on purpose, as a
//! user's `cargo test` runs them.

#[path = "../support/mod.rs"]
mod support;

mod test_mode_guard_fails_a_blocking_test_after_its_body;
mod test_mode_parallel_tests_see_only_their_own_stalls;
