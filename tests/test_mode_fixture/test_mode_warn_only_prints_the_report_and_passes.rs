//! Warn-only mode for adopting test mode in a suite that is not clean yet: with
//! `POLLWATCH_TEST_WARN_ONLY=1` the fixture's eight blocking tests all pass through
//! `cargo test`, and the reports still reach the output, although libtest hides what
//! passing tests print: each names its culprit function.

use crate::support;

#[test]
fn test_mode_warn_only_prints_the_report_and_passes() {
    let _serial = support::serial();
    let fixture = support::fixture::fixture();
    let run = fixture.cargo_test(
        &["--test", "blocking"],
        &[("POLLWATCH_TEST_WARN_ONLY", "1")],
    );
    println!("{}", run.output);
    assert!(run.status.success(), "cargo test passes: {run:?}");
    assert!(
        run.output.contains("test result: ok. 8 passed"),
        "all eight pass: {run:?}"
    );
    let warnings: Vec<&str> = run
        .output
        .split("pollwatch (warn only): ")
        .skip(1)
        .collect();
    // A block the watchdog missed on a loaded machine prints nothing: most, not all.
    assert!(
        warnings.len() >= 4,
        "the blocking tests' reports are printed: {run:?}"
    );
    for w in warnings {
        let report = w.split("\n\nA blocked poll stops").next().unwrap_or(w);
        assert!(
            report.contains("blocked the tokio executor for longer than 10 ms")
                || report.contains("for longer than 20 ms"),
            "{report}"
        );
        assert!(
            report.contains("your code, innermost first:\n      test_mode_fixture::"),
            "each names its culprit first: {report}"
        );
    }
}
