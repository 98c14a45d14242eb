//! What the agent exports and to whom: every metric of the name table, bounded series,
//! the Prometheus registry, promtool and a real Prometheus server, the Grafana dashboards'
//! queries, and the flamegraph and folded stacks.
//!
//! The tests of this binary run one at a time (`support::serial`): each measures stalls or
//! deadlines against the wall clock, and one test's deliberate stall must not be another's.

#[path = "../support/mod.rs"]
mod support;

mod callsite_series_stay_within_the_cap;
mod dashboard_queries_return_data_from_prometheus;
mod dashboards_use_only_exported_names;
mod every_metric_in_the_name_table_is_exported_exactly_once;
mod flamegraph_svg_parses_and_names_the_culprit;
mod folded_stacks_sum_to_the_sampled_time;
mod poll_time_histogram_counts_every_poll_when_sampled;
mod prometheus_registry_gets_the_same_series_as_encode_metrics;
mod prometheus_server_scrapes_the_endpoint;
mod promtool_accepts_the_metrics_output;
