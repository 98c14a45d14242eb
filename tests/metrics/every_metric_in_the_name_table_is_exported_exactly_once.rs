//! Every metric of the name table (`pollwatch::names::METRICS`, DESIGN §5) that applies to
//! this build and mode is exported exactly once, with `# HELP` and `# TYPE` lines of the
//! table's type, with exactly the table's labels; nothing else is exported. Checked on
//! `encode_metrics()` and on the HTTP endpoint, after real load and one real stall so that
//! the labelled families have series.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use pollwatch::names::{self, MetricType};
use support::scrape::{self, Exposition};

fn check(text: &str, mode: pollwatch::Mode) {
    let e = Exposition::parse(text);
    let expected: Vec<_> = names::METRICS.iter().filter(|m| m.applies(mode)).collect();
    assert!(!expected.is_empty());
    for m in &expected {
        let helps = e.help.iter().filter(|n| *n == m.prometheus).count();
        assert_eq!(
            helps, 1,
            "# HELP for {} exactly once:\n{text}",
            m.prometheus
        );
        let types: Vec<_> = e.types.iter().filter(|(n, _)| n == m.prometheus).collect();
        assert_eq!(types.len(), 1, "# TYPE for {} exactly once", m.prometheus);
        assert_eq!(types[0].1, m.kind.as_str(), "{}", m.prometheus);
    }
    // Nothing outside the table: every HELP, TYPE and series belongs to an expected family.
    let allowed: BTreeSet<&str> = expected.iter().map(|m| m.prometheus).collect();
    for n in e.help.iter().chain(e.types.iter().map(|(n, _)| n)) {
        assert!(allowed.contains(n.as_str()), "{n} is not in the name table");
    }
    for s in &e.series {
        let family = scrape::family_of(&s.name, &e.types);
        let def = names::by_prometheus_name(family)
            .unwrap_or_else(|| panic!("{} is not in the name table", s.name));
        assert!(
            allowed.contains(family),
            "{} does not apply in {mode:?}",
            s.name
        );
        let mut want: BTreeSet<&str> = def.labels.iter().copied().collect();
        want.insert(names::RUNTIME_LABEL);
        if def.kind == MetricType::Histogram && s.name.ends_with("_bucket") {
            want.insert("le");
        }
        let got: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
        assert_eq!(got, want, "labels of {}", s.name);
        assert_eq!(s.labels["runtime"], "names", "{s:?}");
    }
    // Families without any series yet are allowed (a counter before its first event), but
    // the ones this test exercised must have series.
    let mut must_have = vec![
        "tokio_workers",
        "tokio_worker_busy_time_seconds_total",
        "tokio_probe_schedule_duration_seconds",
        "pollwatch_info",
        "pollwatch_stack_captures_total",
        "tokio_stalls_total",
    ];
    if mode == pollwatch::Mode::Hooked {
        must_have.extend([
            "tokio_task_poll_duration_seconds",
            "tokio_callsite_polls_total",
            "tokio_callsite_tasks_spawned_total",
        ]);
    }
    if cfg!(tokio_unstable) {
        must_have.extend(["tokio_worker_polls_total", "tokio_blocking_threads"]);
    }
    for name in must_have {
        assert!(!e.family(name).is_empty(), "{name} has no series:\n{text}");
    }
    assert_eq!(
        e.value("pollwatch_info", &[("mode", mode.as_str())]),
        Some(1.0)
    );
}

#[test]
fn every_metric_in_the_name_table_is_exported_exactly_once() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("names")
            .stall_threshold(Duration::from_millis(50))
            .watchdog_tick(Duration::from_millis(5))
            .http_addr(scrape::any_port()),
    );
    rt.block_on(async {
        for _ in 0..50 {
            tokio::spawn(async { tokio::task::yield_now().await })
                .await
                .unwrap();
        }
        tokio::task::spawn_blocking(|| ()).await.unwrap();
        // One stall, so the stall families have series.
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(200)) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    support::wait_for(&agent, Duration::from_secs(3), |s| !s.is_empty());
    check(&agent.encode_metrics(), agent.mode());
    let addr = agent.http_addr().expect("serving");
    let r = scrape::get(addr, "/metrics").unwrap();
    assert_eq!(r.status, 200);
    check(&r.body, agent.mode());
}

#[test]
fn a_disabled_agent_exports_only_its_info() {
    let _serial = support::serial();
    let (_rt, agent) = support::runtime_with(pollwatch::Agent::builder().enabled(false));
    let e = Exposition::parse(&agent.encode_metrics());
    assert_eq!(
        e.types,
        [("pollwatch_info".to_string(), "gauge".to_string())]
    );
    assert_eq!(
        e.value("pollwatch_info", &[("mode", "disabled")]),
        Some(1.0)
    );
}

#[test]
fn every_metric_is_exported_exactly_once_in_attach_mode_too() {
    let _serial = support::serial();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let agent = rt.block_on(async {
        let agent = pollwatch::Agent::builder()
            .runtime_name("names")
            .stall_threshold(Duration::from_millis(50))
            .watchdog_tick(Duration::from_millis(5))
            .attach(&tokio::runtime::Handle::current())
            .unwrap();
        tokio::task::spawn_blocking(|| ()).await.unwrap();
        // Let the detector find the workers before one of them stalls.
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(200)) })
            .await
            .unwrap();
        agent
    });
    support::wait_for(&agent, Duration::from_secs(3), |s| !s.is_empty());
    assert_eq!(agent.mode(), pollwatch::Mode::Attach);
    check(&agent.encode_metrics(), pollwatch::Mode::Attach);
}
