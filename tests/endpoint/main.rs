//! The HTTP endpoint: what it serves, how it answers bad or hostile clients, that it
//! answers while every worker is blocked, and that it stops with the agent.
//!
//! The tests of this binary run one at a time (`support::serial`): each measures stalls or
//! deadlines against the wall clock, and one test's deliberate stall must not be another's.

#[path = "../support/mod.rs"]
mod support;

mod attached_agent_serves_metrics_from_inside_the_app_runtime;
mod bearer_token_is_required_when_configured;
mod endpoint_answers_malformed_requests_with_4xx_or_close;
mod endpoint_answers_oversized_headers_with_431_or_close;
mod endpoint_closes_a_slow_client_and_serves_others;
mod endpoint_serves_metrics_stalls_and_an_index;
mod endpoint_stops_when_the_agent_shuts_down;
mod endpoint_survives_500_concurrent_connections;
mod port_in_use_is_an_error_naming_the_address;
mod scrape_answers_while_every_worker_is_blocked;
mod stall_page_answers_while_every_worker_is_blocked;
mod stall_page_shows_the_stall_and_the_flamegraph_in_a_browser;
