//! `GET /flamegraph.svg` is an SVG document an XML parser accepts, drawn by inferno (with its
//! script, so it zooms and searches by itself), and a frame of it names the function an
//! injected stall was stuck in; in hooked mode the frame below it is the spawn location.
//! A selection with no blocked time is still a valid SVG that says so.

#![cfg(feature = "flamegraph")]

use crate::support;

use std::time::Duration;

use support::scrape;

#[inline(never)]
fn rebuild_the_search_index() {
    std::thread::sleep(Duration::from_millis(400));
}

/// Parses an SVG as XML. inferno writes SVG 1.1's `<!DOCTYPE svg PUBLIC …>`, which the
/// parser rejects unless told to allow a DTD (it loads nothing external either way).
fn parse(text: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(text, options)
        .unwrap_or_else(|e| panic!("not XML: {e}\n{text}"))
}

/// Every `<title>` of the document: inferno gives each frame one, "name (N µs, P%)".
fn titles_of(doc: &roxmltree::Document<'_>) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text().map(str::to_owned))
        .collect()
}

#[test]
fn flamegraph_svg_parses_and_names_the_culprit() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("search")
            .stall_threshold(Duration::from_millis(100))
            .http_addr(scrape::any_port()),
    );
    let addr = agent.http_addr().unwrap();

    let empty = scrape::get(addr, "/flamegraph.svg").unwrap();
    assert_eq!(empty.status, 200);
    let doc = parse(&empty.body);
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert!(
        empty.body.contains("No blocked time recorded"),
        "{}",
        empty.body
    );

    let spawn_line = support::next_line(file!(), line!());
    rt.block_on(rt.spawn(async { rebuild_the_search_index() }))
        .unwrap();
    let stall = support::symbolized(&agent);
    // The last samples reach the table a moment after the report is complete.
    support::flame::folded_when(addr, "", (stall.duration_ms * 1000.0) as u64 - 200);

    let r = scrape::get(addr, "/flamegraph.svg").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("image/svg+xml"));
    let doc = parse(&r.body);
    let svg = doc.root_element();
    assert_eq!(svg.tag_name().name(), "svg");
    assert_eq!(
        svg.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    assert!(
        doc.descendants().any(|n| n.has_tag_name("script")),
        "inferno's script (zoom, search) is inline"
    );
    assert!(
        !r.body.contains("href=\"http"),
        "nothing external is loaded"
    );
    let titles = titles_of(&doc);
    let culprit = titles
        .iter()
        .find(|t| t.contains("rebuild_the_search_index"))
        .unwrap_or_else(|| panic!("no frame names the culprit: {titles:#?}"));
    eprintln!(
        "culprit frame: {culprit}; the stall: {} ms",
        stall.duration_ms
    );
    // "name (431,759 µs, 100.00%)": the whole stall was spent in the culprit.
    let us: f64 = culprit
        .rsplit_once(" (")
        .and_then(|(_, rest)| rest.split_once(" µs"))
        .map(|(n, _)| n.replace(',', ""))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no µs in {culprit}"));
    assert!(
        (us / 1000.0 - stall.duration_ms).abs() <= 0.2,
        "{culprit}: the stall lasted {} ms",
        stall.duration_ms
    );
    let heading = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("title"))
        .and_then(|n| n.text())
        .unwrap_or_default();
    assert_eq!(heading, "Blocked time, runtime search");
    if support::HOOKED {
        let root = titles
            .iter()
            .find(|t| t.starts_with("spawned at "))
            .unwrap_or_else(|| panic!("no spawn-location frame: {titles:#?}"));
        assert!(
            root.starts_with(&format!("spawned at {spawn_line}")),
            "{root}"
        );
    }
    assert!(
        String::from_utf8(agent.encode_flamegraph_svg())
            .unwrap()
            .contains("rebuild_the_search_index"),
        "Agent::encode_flamegraph_svg draws the same"
    );

    // Another stall's flamegraph: none there.
    let r = scrape::get(addr, &format!("/flamegraph.svg?stall={}", stall.id + 1000)).unwrap();
    let doc = parse(&r.body);
    assert!(!titles_of(&doc)
        .iter()
        .any(|t| t.contains("rebuild_the_search_index")));
    assert!(
        r.body.contains("No blocked time recorded in stall #"),
        "{}",
        r.body
    );
    let r = scrape::get(addr, "/flamegraph.svg?window=-3").unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("window=\"-3\""), "{}", r.body);
}
