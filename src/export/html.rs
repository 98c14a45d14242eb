//! `GET /` for a browser: one small self-contained HTML page (no external asset, works
//! offline) for the person who opens it during an incident. From the top: is the runtime
//! stuck now and how often did it stall in the last minute; where it was blocked (the
//! flamegraph of blocked time); which stalls happened, with their spawn location and the
//! stack trimmed to the application's frames (each expandable to the full stack).
//!
//! Everything is read at request time on the `pollwatch-http` thread, from the same state
//! as `/metrics` and `/stalls`, so the page answers while every worker is blocked.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::query::{BadParameter, Selection};
use crate::capture::{fold_runtime_frames, is_runtime_frame, Frame};
use crate::report::{rfc3339_millis, StallReport};
use crate::sampler::Source;
use crate::stats::recent::{RecentView, WINDOW};

/// The `Content-Type` of the page.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// Stalls listed on the page, newest first (`/stalls` has every kept one).
const SHOWN_STALLS: usize = 30;
/// Windows offered above the flamegraph, as `window=` values (`None`: everything kept).
const WINDOWS: [(Option<&str>, &str); 4] = [
    (None, "everything kept"),
    (Some("1h"), "last hour"),
    (Some("15m"), "15 min"),
    (Some("5m"), "5 min"),
];

const STYLE: &str = include_str!("page.css");
/// Sizes the flamegraph's frame to the drawing (the SVG's height depends on stack depth).
const SCRIPT: &str = "for (const f of document.querySelectorAll('iframe.flame')) {\
 const fit = () => { try { const r = f.contentDocument.documentElement.getBoundingClientRect();\
 if (r.height > 0) f.style.height = Math.ceil(r.height) + 'px'; } catch (e) {} };\
 f.addEventListener('load', () => { fit(); setTimeout(fit, 100); }); fit(); }";

/// What the page shows besides the agent's state.
pub(crate) struct Request<'a> {
    pub(crate) selection: &'a Selection,
    /// The raw query string, for links that keep the selection.
    pub(crate) query: Option<&'a str>,
    /// `refresh=N`: reload every N seconds.
    pub(crate) refresh: Option<u32>,
    pub(crate) recent: &'a RecentView,
}

/// `refresh=N` (seconds, 1 to 3600) from the query string.
pub(crate) fn refresh_of(query: Option<&str>) -> Result<Option<u32>, BadParameter> {
    let Some(value) = params(query).find(|(k, _)| *k == "refresh").map(|(_, v)| v) else {
        return Ok(None);
    };
    match value.parse::<u32>() {
        Ok(n) if (1..=3600).contains(&n) => Ok(Some(n)),
        _ => Err(BadParameter {
            name: "refresh",
            value: value.to_owned(),
            expected: "a number of seconds from 1 to 3600",
        }),
    }
}

/// Text for XML and HTML: `&`, `<`, `>`, `"` and `'` escaped.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn params(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
}

/// `?k=v&…` with only the parameters that select blocked time, plus `extra`.
fn link(query: Option<&str>, keep: &[&str], extra: &[(&str, &str)]) -> String {
    let mut parts: Vec<String> = params(query)
        .filter(|(k, _)| keep.contains(k) && !extra.iter().any(|(e, _)| e == k))
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect();
    parts.extend(
        extra
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={v}")),
    );
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&amp;"))
    }
}

pub(crate) fn render(source: &Source, req: &Request<'_>) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let runtime = source.runtime_label();
    let mode = source.mode().as_str();
    let now = rfc3339_millis(SystemTime::now());
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    );
    if let Some(n) = req.refresh {
        let _ = write!(h, "<meta http-equiv=\"refresh\" content=\"{n}\">");
    }
    let _ = write!(
        h,
        "<title>pollwatch · {rt}</title><style>{STYLE}</style></head><body>\
         <header><h1>pollwatch</h1><span class=\"meta\">runtime <b>{rt}</b> · {mode} mode · \
         v{version}</span><nav><a href=\"metrics\">/metrics</a><a href=\"stalls\">/stalls</a>\
         <a href=\"stalls/folded\">/stalls/folded</a><a href=\"flamegraph.svg\">/flamegraph.svg</a>\
         <a href=\"index.txt\">index.txt</a></nav></header><main>",
        rt = escape(&runtime),
        version = env!("CARGO_PKG_VERSION"),
    );
    let Some(shared) = source.shared.as_deref() else {
        h.push_str("<p>pollwatch is disabled.</p></main></body></html>\n");
        return h;
    };
    let view = shared.stalls.view();
    let workers = source.handle.as_ref().map(|r| r.metrics().num_workers());
    tiles(
        &mut h,
        shared.stalls.ongoing(),
        workers,
        view.stalls_total,
        req.recent,
        shared.config.stall_threshold,
    );
    flame_section(&mut h, shared, req);
    stalls_section(
        &mut h,
        &view.stalls,
        view.stalls_total,
        shared.config.stall_threshold,
    );
    let refresh_link = match req.refresh {
        Some(_) => format!(
            "<a href=\"./{}\">stop refreshing</a>",
            link(req.query, &["window", "since", "stall"], &[])
        ),
        None => format!(
            "<a href=\"./{}\">refresh every 5 s</a>",
            link(
                req.query,
                &["window", "since", "stall"],
                &[("refresh", "5")]
            )
        ),
    };
    let _ = writeln!(
        h,
        "</main><footer>Read at {now} · stall threshold {threshold} · <a href=\"./{again}\">reload</a> · \
         {refresh_link}</footer><script>{SCRIPT}</script></body></html>",
        threshold = fmt_ms(shared.config.stall_threshold.as_secs_f64() * 1e3),
        again = link(req.query, &["window", "since", "stall", "refresh"], &[]),
    );
    h
}

fn tiles(
    h: &mut String,
    stalled: usize,
    workers: Option<usize>,
    total: u64,
    recent: &RecentView,
    threshold: std::time::Duration,
) {
    let over = if recent.over + std::time::Duration::from_secs(1) >= WINDOW {
        "last minute".to_owned()
    } else {
        format!(
            "last {} s (since the page server started)",
            recent.over.as_secs().max(1)
        )
    };
    h.push_str("<section class=\"tiles\">");
    let workers_text = workers.map_or("?".to_owned(), |w| w.to_string());
    tile(
        h,
        if stalled > 0 { "bad" } else { "ok" },
        &stalled.to_string(),
        "stalled now",
        &format!(
            "of {workers_text} workers are stuck in one poll for over {}",
            fmt_ms(threshold.as_secs_f64() * 1e3)
        ),
    );
    tile(h, "ok", &workers_text, "workers", "in the runtime");
    tile(
        h,
        if recent.stalls > 0 { "warn" } else { "ok" },
        &recent.stalls.to_string(),
        "stalls per minute",
        &format!("{over}; {total} since start"),
    );
    let (class, lag, sub) = match recent.lag_p99 {
        Some(p99) => (
            if p99.as_millis() >= 10 { "warn" } else { "ok" },
            fmt_ms(p99.as_secs_f64() * 1e3),
            format!(
                "how long a ready task waits for a worker ({over}, {} probe wake-ups)",
                recent.lag_count
            ),
        ),
        None => (
            if stalled > 0 { "bad" } else { "ok" },
            "–".to_owned(),
            format!("the probe was not polled in the {over}"),
        ),
    };
    tile(h, class, &lag, "scheduling lag p99", &sub);
    h.push_str("</section>");
}

fn tile(h: &mut String, class: &str, value: &str, name: &str, sub: &str) {
    let _ = write!(
        h,
        "<div class=\"tile {class}\"><div class=\"v\">{}</div><div class=\"k\">{}</div>\
         <div class=\"s\">{}</div></div>",
        escape(value),
        escape(name),
        escape(sub)
    );
}

fn flame_section(h: &mut String, shared: &crate::state::Shared, req: &Request<'_>) {
    let sel = req.selection;
    let totals = shared.flame.totals(&sel.filter);
    let _ = write!(
        h,
        "<section class=\"card\" id=\"flamegraph\"><div class=\"head\"><h2>Where the runtime was blocked</h2>\
         <span class=\"windows\">"
    );
    for (window, name) in WINDOWS {
        let current = sel.window.as_deref() == window && sel.filter.stall.is_none();
        let href = link(req.query, &["refresh"], &[("window", window.unwrap_or(""))]);
        let class = if current { " class=\"on\"" } else { "" };
        let _ = write!(h, "<a{class} href=\"./{href}\">{name}</a>");
    }
    let paused_pct = if totals.weight_ns > 0 {
        100.0 * totals.paused_ns as f64 / totals.weight_ns as f64
    } else {
        0.0
    };
    let _ = write!(
        h,
        "</span></div><p class=\"sub\">Blocked time in {label}: <b>{blocked}</b> in {stalls} stall{s}, \
         {samples} stack samples (sampling paused the stuck threads for {paused}, {paused_pct:.2} %). \
         Each box is a function; its width is the time a worker was stuck in it, its children are \
         what it called; the bottom frame is the task's spawn location in hooked mode. Click to zoom, \
         Ctrl-F to search.</p>",
        label = escape(&sel.label),
        blocked = fmt_ms(totals.weight_ns as f64 / 1e6),
        stalls = totals.stalls,
        s = if totals.stalls == 1 { "" } else { "s" },
        samples = totals.samples,
        paused = fmt_ms(totals.paused_ns as f64 / 1e6),
    );
    let lost = shared.flame.lifetime();
    if lost.evicted_ns > 0 || lost.dropped_ns > 0 {
        let _ = write!(
            h,
            "<p class=\"sub\">Not shown: {} of older blocked time that fell out of the table, \
             {} the symbolizer could not keep up with.</p>",
            fmt_ms(lost.evicted_ns as f64 / 1e6),
            fmt_ms(lost.dropped_ns as f64 / 1e6),
        );
    }
    let src = format!(
        "flamegraph.svg{}",
        link(req.query, &["window", "since", "stall"], &[])
    );
    if totals.weight_ns == 0 {
        let _ = write!(
            h,
            "<p class=\"empty\">No blocked time recorded in {}. A poll that runs longer than the \
             threshold shows up here while it runs.</p>",
            escape(&sel.label)
        );
    } else if cfg!(feature = "flamegraph") {
        let _ = write!(
            h,
            "<iframe class=\"flame\" title=\"flamegraph of blocked time\" src=\"{src}\"></iframe>\
             <p class=\"links\"><a href=\"{src}\">open the SVG</a> · <a href=\"stalls/folded{q}\">\
             folded stacks</a> (for speedscope, inferno, flamegraph.pl)</p>",
            q = link(req.query, &["window", "since", "stall"], &[]),
        );
    } else {
        let _ = write!(
            h,
            "<p class=\"empty\">pollwatch was built without its <code>flamegraph</code> feature: \
             <a href=\"stalls/folded\">/stalls/folded</a> has the same data as folded stacks.</p>"
        );
    }
    h.push_str("</section>");
}

fn stalls_section(
    h: &mut String,
    stalls: &[StallReport],
    total: u64,
    threshold: std::time::Duration,
) {
    let shown = stalls.len().min(SHOWN_STALLS);
    let _ = write!(
        h,
        "<section class=\"card\" id=\"stalls\"><div class=\"head\"><h2>Recent stalls</h2>\
         <span class=\"sub\">newest first; {shown} shown of {total} since start (<a href=\"stalls\">all kept, JSON</a>)</span></div>"
    );
    if stalls.is_empty() {
        let _ = write!(
            h,
            "<p class=\"empty\">No stall yet: no poll has run longer than {threshold:?}.</p></section>"
        );
        return;
    }
    h.push_str(
        "<div class=\"row th\"><span>#</span><span>kind</span><span>duration</span>\
         <span>spawned at / thread</span><span>blocked in</span><span>started (UTC)</span></div>",
    );
    for r in stalls.iter().rev().take(SHOWN_STALLS) {
        stall(h, r);
    }
    h.push_str("</section>");
}

fn stall(h: &mut String, r: &StallReport) {
    let place = match (&r.spawned_at, r.worker) {
        (Some(at), _) => at.clone(),
        (None, Some(w)) => format!("{} (worker {w})", r.thread),
        (None, None) if r.thread.is_empty() => "the whole runtime (probe)".to_owned(),
        (None, None) => r.thread.clone(),
    };
    let blocked_in = culprit(&r.frames).map_or_else(
        || format!("no stack ({})", r.capture.as_str()),
        |f| f.function.clone(),
    );
    let ongoing = if r.ongoing {
        " <span class=\"badge live\">ongoing</span>"
    } else {
        ""
    };
    let time = r.started_at.split('T').nth(1).unwrap_or(&r.started_at);
    let _ = write!(
        h,
        "<details class=\"stall\" id=\"stall-{id}\"><summary class=\"row\"><span class=\"id\">#{id}</span>\
         <span><span class=\"badge {kind}\">{kind_text}</span></span><span class=\"dur\">{dur}{ongoing}</span>\
         <span class=\"ell\" title=\"{place_full}\">{place}</span><span class=\"ell mono culprit\" title=\"{culprit_full}\">{culprit}</span>\
         <span class=\"mono\">{time}</span></summary><div class=\"body\">",
        id = r.id,
        kind = r.kind.as_str(),
        kind_text = r.kind.as_str().replace('_', "-"),
        dur = fmt_ms(r.duration_ms),
        place = escape(&elide_left(&place, 34)),
        place_full = escape(&place),
        culprit = escape(short_function(&blocked_in)),
        culprit_full = escape(&blocked_in),
        time = escape(time.trim_end_matches('Z')),
    );
    let mut meta = Vec::new();
    if let Some(t) = r.task_id {
        meta.push(format!("task {t}"));
    }
    if let Some(w) = r.worker {
        meta.push(format!("worker {w}"));
    }
    if !r.thread.is_empty() {
        meta.push(format!("thread {} (tid {})", escape(&r.thread), r.tid));
    }
    let detection = match r.detection {
        crate::report::Detection::PollHook => "poll_hook",
        crate::report::Detection::Probe => "probe",
        crate::report::Detection::Worker => "worker",
    };
    meta.push(format!("detection {detection}"));
    meta.push(format!("capture {}", r.capture.as_str()));
    let _ = write!(
        h,
        "<p class=\"meta\">{} · <a href=\"flamegraph.svg?stall={}\">flamegraph of this stall</a></p>",
        meta.join(" · "),
        r.id
    );
    stack(h, &r.frames);
    for s in &r.samples {
        let top = culprit(&s.frames).map_or_else(
            || format!("no stack ({})", s.capture.as_str()),
            |f| f.function.clone(),
        );
        let _ = write!(
            h,
            "<p class=\"meta\">sampled again at {}: in <code>{}</code></p>",
            fmt_ms(s.at_ms),
            escape(&top)
        );
    }
    h.push_str("</div></details>");
}

/// The application's frames first (innermost first), then the whole stack behind a toggle.
fn stack(h: &mut String, frames: &[Frame]) {
    if frames.is_empty() {
        return;
    }
    let users: Vec<&Frame> = frames.iter().filter(|f| is_user(f)).collect();
    let list = |h: &mut String, frames: &mut dyn Iterator<Item = &Frame>| {
        h.push_str("<ol class=\"stack\">");
        for f in frames {
            let class = if is_user(f) {
                "user"
            } else if f.function.starts_with("… ") || is_runtime_frame(f) {
                "rt"
            } else {
                "lib"
            };
            let _ = write!(
                h,
                "<li class=\"{class}\"><code>{}</code>",
                escape(&f.function)
            );
            if let (Some(file), Some(line)) = (&f.file, f.line) {
                let _ = write!(
                    h,
                    "<span class=\"loc\">{}:{line}</span>",
                    escape(short_path(file))
                );
            }
            h.push_str("</li>");
        }
        h.push_str("</ol>");
    };
    let folded = fold_runtime_frames(frames);
    if users.is_empty() {
        h.push_str("<p class=\"meta\">Stack, runtime frames folded:</p>");
        list(h, &mut folded.iter());
        return;
    }
    h.push_str("<p class=\"meta\">Your code, innermost first:</p>");
    list(h, &mut users.into_iter());
    // The whole stack with the scheduler's runs folded; every frame is in `/stalls`.
    let _ = write!(
        h,
        "<details class=\"all\"><summary>the whole stack: libraries included, {} runtime \
         frames folded (all {} in <a href=\"stalls\">/stalls</a>)</summary>",
        frames.len()
            + folded
                .iter()
                .filter(|f| f.function.starts_with("… "))
                .count()
            - folded.len(),
        frames.len()
    );
    list(h, &mut folded.iter());
    h.push_str("</details>");
}

/// The innermost frame of the application's code, else the innermost non-runtime frame.
fn culprit(frames: &[Frame]) -> Option<&Frame> {
    frames
        .iter()
        .find(|f| is_user(f))
        .or_else(|| frames.iter().find(|f| !is_runtime_frame(f)))
        .or(frames.first())
}

/// Source files that belong to a dependency or the standard library, not the application.
const LIBRARY_PATHS: &[&str] = &["/.cargo/registry/", "/.cargo/git/", "/rustc/", "/.rustup/"];

/// A frame of the application: Rust source outside the registry and std (C libraries, with
/// or without line tables, are not), and not runtime machinery.
fn is_user(f: &Frame) -> bool {
    let Some(file) = f.file.as_deref() else {
        return false;
    };
    file.ends_with(".rs")
        && !is_runtime_frame(f)
        && !LIBRARY_PATHS.iter().any(|p| file.contains(p))
        && !file.starts_with("/cargo/registry/")
        && !file.contains("/library/std/src/")
        && !file.contains("/library/core/src/")
        && !file.contains("/library/alloc/src/")
}

/// `…/registry/src/index.crates.io-…/tokio-1.47.0/src/x.rs` → `tokio-1.47.0/src/x.rs`, and
/// `/rustc/<hash>/library/std/…` → `library/std/…`.
fn short_path(file: &str) -> &str {
    if let Some(i) = file.find("/registry/src/") {
        let rest = &file[i + "/registry/src/".len()..];
        return rest.split_once('/').map_or(rest, |(_, r)| r);
    }
    if let Some(i) = file.find("/rustc/") {
        let rest = &file[i + "/rustc/".len()..];
        return rest.split_once('/').map_or(rest, |(_, r)| r);
    }
    file
}

/// The last `max` characters of `s`, with `…` in front when cut: the end of a spawn
/// location (file and line) is what tells it apart.
fn elide_left(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_owned();
    }
    let tail: String = s.chars().skip(n - (max - 1)).collect();
    format!("…{tail}")
}

/// The end of a function's path that names it: `app::db::Pool::get` → `Pool::get`,
/// `app::handler::{{closure}}` → `handler::{{closure}}`, `app::checksum` → `checksum`.
fn short_function(name: &str) -> &str {
    // `::` at angle-bracket depth 0, so `<a::B as c::D>::poll` splits once.
    let mut depth = 0i32;
    let mut cuts = Vec::new();
    let b = name.as_bytes();
    for i in 0..b.len() {
        match b[i] {
            b'<' => depth += 1,
            b'>' => depth -= 1,
            b':' if depth == 0 && b.get(i + 1) == Some(&b':') && (i == 0 || b[i - 1] != b':') => {
                cuts.push(i)
            }
            _ => {}
        }
    }
    let last = match cuts.last() {
        Some(&i) => &name[i + 2..],
        None => return name,
    };
    let keep_previous = last.starts_with('{') || {
        let prev_start = cuts.len().checked_sub(2).map_or(0, |j| cuts[j] + 2);
        let prev = &name[prev_start..cuts[cuts.len() - 1]];
        prev.starts_with(|c: char| c.is_ascii_uppercase() || c == '<')
    };
    if keep_previous {
        let from = cuts.len().checked_sub(2).map_or(0, |j| cuts[j] + 2);
        &name[from..]
    } else {
        last
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1e3)
    } else if ms >= 1_000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: Option<&str>) -> Frame {
        Frame {
            function: function.into(),
            file: file.map(Into::into),
            line: file.map(|_| 7),
        }
    }

    #[test]
    fn the_culprit_is_the_innermost_frame_of_the_application() {
        let frames = [
            frame("clock_nanosleep", None),
            frame("std::thread::sleep", Some("/rustc/abc/library/std/src/thread/mod.rs")),
            frame("app::read_config", Some("/home/me/app/src/config.rs")),
            frame("tokio::runtime::task::harness::poll", Some("/home/me/.cargo/registry/src/index.crates.io-1/tokio-1.47.0/src/runtime/task/harness.rs")),
        ];
        assert_eq!(culprit(&frames).unwrap().function, "app::read_config");
        assert_eq!(culprit(&frames[..2]).unwrap().function, "clock_nanosleep");
        assert_eq!(
            short_path(frames[3].file.as_deref().unwrap()),
            "tokio-1.47.0/src/runtime/task/harness.rs"
        );
        assert_eq!(
            short_path(frames[1].file.as_deref().unwrap()),
            "library/std/src/thread/mod.rs"
        );
        let mut h = String::new();
        stack(&mut h, &frames);
        let user = h.find("app::read_config").unwrap();
        assert!(
            user < h.find("clock_nanosleep").unwrap(),
            "user frames first: {h}"
        );
    }

    #[test]
    fn links_keep_the_selection_and_refresh_is_checked() {
        let q = Some("window=5m&refresh=5&x=1");
        assert_eq!(link(q, &["window"], &[]), "?window=5m");
        assert_eq!(
            link(q, &["window", "refresh"], &[("window", "1h")]),
            "?refresh=5&amp;window=1h"
        );
        assert_eq!(link(q, &["refresh"], &[("window", "")]), "?refresh=5");
        assert_eq!(refresh_of(q), Ok(Some(5)));
        assert_eq!(refresh_of(None), Ok(None));
        assert_eq!(refresh_of(Some("refresh=0")).unwrap_err().name, "refresh");
    }

    #[test]
    fn function_names_are_shortened_to_what_names_them() {
        assert_eq!(short_function("app::db::Pool::get"), "Pool::get");
        assert_eq!(
            short_function("app::handler::{{closure}}"),
            "handler::{{closure}}"
        );
        assert_eq!(short_function("app::checksum"), "checksum");
        assert_eq!(short_function("main"), "main");
        assert_eq!(
            short_function("<app::Foo as core::future::Future>::poll"),
            "<app::Foo as core::future::Future>::poll"
        );
        assert_eq!(short_function("std::thread::sleep"), "sleep");
        assert_eq!(
            elide_left("tests/a_long_name.rs:52:9", 14),
            "…_name.rs:52:9"
        );
        assert_eq!(elide_left("src/a.rs:1:1", 14), "src/a.rs:1:1");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_ms(0.42), "0.42 ms");
        assert_eq!(fmt_ms(812.44), "812.4 ms");
        assert_eq!(fmt_ms(3210.0), "3.21 s");
        assert_eq!(fmt_ms(65_000.0), "65.0 s");
    }
}
