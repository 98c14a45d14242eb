//! A bad OTLP setting, from the builder or from the environment, is an `Error` naming the
//! setting (or variable) and the value, and nothing starts.

use crate::support;

use std::time::Duration;

fn build(b: pollwatch::Builder) -> String {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(1);
    b.build_runtime(&mut rt).unwrap_err().to_string()
}

#[test]
fn bad_builder_values_name_the_setting_and_the_value() {
    let _serial = support::serial();
    for endpoint in [
        "localhost:4317",
        "https://collector:4317",
        "http://collector",
        "http://collector:4318/v1/metrics",
    ] {
        let e = build(pollwatch::Agent::builder().otlp_endpoint(endpoint));
        assert!(
            e.contains("otlp_endpoint") && e.contains(&format!("{endpoint:?}")),
            "{e}"
        );
    }
    let e = build(
        pollwatch::Agent::builder()
            .otlp_endpoint("http://127.0.0.1:4317")
            .otlp_interval(Duration::ZERO),
    );
    assert!(e.contains("otlp_interval") && e.contains("0ns"), "{e}");
    let e = build(pollwatch::Agent::builder().otlp_resource_attribute(" ", "x"));
    assert!(e.contains("otlp_resource_attribute"), "{e}");
}

/// The only test in this binary that touches the environment: one variable at a time.
#[test]
#[cfg(feature = "opentelemetry")]
fn bad_environment_values_name_the_variable_and_the_value() {
    let _serial = support::serial();
    let cases: &[&[(&str, &str)]] = &[
        &[("POLLWATCH_OTLP_ENDPOINT", "collector:4317")],
        &[(
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "https://collector:4317",
        )],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector")],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ],
        &[("OTEL_METRIC_EXPORT_INTERVAL", "soon")],
        &[("OTEL_RESOURCE_ATTRIBUTES", "team")],
    ];
    for vars in cases {
        for (k, v) in *vars {
            std::env::set_var(k, v);
        }
        let e = build(pollwatch::Builder::from_env());
        for (k, _) in *vars {
            std::env::remove_var(k);
        }
        let (var, value) = vars[vars.len() - 1];
        assert!(e.contains(var) && e.contains(value), "{e}");
    }
}
