//! OpenTelemetry: the OTLP push to a real collector (rotel), its behaviour when the
//! receiver is down or every worker is blocked, and the metrics on the app's own
//! `MeterProvider`.
//!
//! The tests of this binary run one at a time (`support::serial`): each measures stalls or
//! deadlines against the wall clock, and one test's deliberate stall must not be another's.

#[path = "../support/mod.rs"]
mod support;

mod app_meter_provider_gets_the_same_metrics_as_prometheus;
mod app_meter_provider_pushes_through_a_real_collector;
mod otlp_last_push_on_shutdown_is_bounded_in_time;
mod otlp_push_keeps_arriving_while_every_worker_is_blocked;
mod otlp_push_passes_through_a_real_collector;
mod otlp_receiver_down_is_counted_in_bounded_memory_and_pushes_resume;
mod otlp_receiver_gets_the_same_metrics_as_prometheus;
mod several_agents_share_one_meter_provider;
