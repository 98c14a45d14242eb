//! Bad settings, from the builder and from the environment, are errors that name the
//! field and the value. These tests set process environment variables (`POLLWATCH_*`,
//! `OTEL_*`) that every agent reads, so they live in their own binary.
//!
//! The tests of this binary run one at a time (`support::serial`): each measures stalls or
//! deadlines against the wall clock, and one test's deliberate stall must not be another's.

#[path = "../support/mod.rs"]
mod support;

mod bad_configuration_names_the_field_and_the_value;
mod otlp_bad_endpoint_is_an_error_naming_the_field_and_the_value;
