//! Helpers for the flamegraph tests: read `/stalls/folded`, inject a stall in two phases.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::scrape;

/// `(stack, microseconds)` lines of `/stalls/folded` with `query` (e.g. `"?window=5m"`).
pub fn folded(addr: SocketAddr, query: &str) -> Vec<(String, u64)> {
    let r = scrape::get(addr, &format!("/stalls/folded{query}")).expect("GET /stalls/folded");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    r.body
        .lines()
        .map(|line| {
            let (stack, count) = line.rsplit_once(' ').expect("`stack count`");
            let count = count
                .parse()
                .unwrap_or_else(|_| panic!("bad count in {line:?}"));
            assert!(!stack.is_empty() && !stack.contains('\n'), "{line:?}");
            (stack.to_string(), count)
        })
        .collect()
}

/// Microseconds of the lines whose stack contains `frame`.
pub fn time_in(lines: &[(String, u64)], frame: &str) -> u64 {
    lines
        .iter()
        .filter(|(s, _)| s.split(';').any(|f| f.contains(frame)))
        .map(|(_, n)| n)
        .sum()
}

pub fn total(lines: &[(String, u64)]) -> u64 {
    lines.iter().map(|(_, n)| n).sum()
}

/// Waits (bounded) until the folded total is at least `at_least_us`: the symbolizer adds the
/// last samples a moment after the stall ends.
pub fn folded_when(addr: SocketAddr, query: &str, at_least_us: u64) -> Vec<(String, u64)> {
    let start = Instant::now();
    loop {
        let lines = folded(addr, query);
        if total(&lines) >= at_least_us || start.elapsed() > Duration::from_secs(20) {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
