//! With every worker of the app's runtime blocked, `GET /` from a browser (`Accept:
//! text/html`) still answers within 100 ms with the page, showing every worker stalled now and
//! the ongoing stalls; scripts keep the plain index at `/` (no `Accept: text/html`) and at
//! `/index.txt`, and the page is also at `/index.html`.

use crate::support;

use std::time::{Duration, Instant};

use support::scrape;

const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

fn page(addr: std::net::SocketAddr) -> scrape::Response {
    scrape::get_with(
        addr,
        "GET",
        "/",
        &[("Accept", BROWSER_ACCEPT)],
        Duration::from_secs(5),
    )
    .unwrap()
}

#[test]
fn stall_page_answers_while_every_worker_is_blocked() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .stall_threshold(Duration::from_millis(100))
            .http_addr(scrape::any_port()),
    );
    let addr = agent.http_addr().unwrap();

    for (path, accept) in [
        ("/", None),
        ("/", Some("*/*")),
        ("/index.txt", Some(BROWSER_ACCEPT)),
    ] {
        let headers: Vec<_> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let r = scrape::get_with(addr, "GET", path, &headers, Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{path} {accept:?}"
        );
        for listed in ["/metrics", "/stalls", "/stalls/folded", "/flamegraph.svg"] {
            assert!(r.body.contains(listed), "{path} lists {listed}: {}", r.body);
        }
    }
    let quiet = page(addr);
    assert_eq!(
        quiet.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        quiet.body.starts_with("<!doctype html>"),
        "{}",
        &quiet.body[..100]
    );
    assert!(quiet.body.contains("No stall yet"), "{}", quiet.body);
    assert!(
        !quiet.body.contains("src=\"http") && !quiet.body.contains("href=\"http"),
        "no external asset"
    );
    let same = scrape::get(addr, "/index.html").unwrap();
    assert_eq!(
        same.header("content-type"),
        Some("text/html; charset=utf-8")
    );

    let blocker = scrape::Blocker::new(&rt, 2);
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut body = String::new();
    // Bounded: at most 3 s of requests every 20 ms.
    while start.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let r = page(addr);
        let took = t.elapsed();
        slowest = slowest.max(took);
        assert_eq!(r.status, 200);
        assert!(
            took < Duration::from_millis(100),
            "the page took {took:?} while the workers were blocked"
        );
        body = r.body;
        if body.contains("<div class=\"v\">2</div><div class=\"k\">stalled now</div>") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("slowest page while blocked: {slowest:?}");
    assert!(
        body.contains("<div class=\"v\">2</div><div class=\"k\">stalled now</div>"),
        "both workers show as stalled now: {body}"
    );
    assert_eq!(body.matches("badge live\">ongoing").count(), 2, "{body}");
    drop(blocker);
}
