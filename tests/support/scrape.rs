//! Helpers for the endpoint and exporter tests: a raw HTTP/1.1 client over loopback, a
//! parser for the Prometheus text format, a way to block every worker, and finding the
//! external tools the exporter tests run.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` and reads until the server closes or `timeout` passes. Returns what was read
/// (possibly empty) and whether the server closed the connection (EOF or reset).
pub fn exchange(addr: SocketAddr, raw: &[u8], timeout: Duration) -> (Vec<u8>, bool) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return (Vec::new(), true);
    };
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let _ = s.write_all(raw);
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (out, true), // reset: closed
        }
    }
    (out, false)
}

/// The status code at the start of a raw response, if any.
pub fn status_of(raw: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(raw.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// `GET path` with `Connection: close` and extra headers; bounded by `timeout`.
pub fn get_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    get_with(addr, "GET", path, &[], Duration::from_secs(5))
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of head"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("head not utf-8"))?;
    let mut lines = head.split("\r\n");
    let status = status_of(lines.next().unwrap_or("").as_bytes()).ok_or_else(|| bad("status"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// One series of the text format.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The text format, parsed strictly enough to catch a malformed line.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Family names with a `# HELP` line, in order (with repeats, if any).
    pub help: Vec<String>,
    /// `(family, type)` from `# TYPE` lines, in order.
    pub types: Vec<(String, String)>,
    pub series: Vec<Series>,
}

impl Exposition {
    #[track_caller]
    pub fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has text");
                assert!(!help.is_empty(), "empty HELP for {name}");
                e.help.push(name.to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("TYPE has a type");
                e.types.push((name.to_string(), ty.to_string()));
            } else if line.starts_with('#') || line.is_empty() {
                continue;
            } else {
                e.series.push(parse_series(line));
            }
        }
        e
    }

    /// Series of family `name` (for a histogram: its `_bucket`, `_sum`, `_count`).
    pub fn family(&self, name: &str) -> Vec<&Series> {
        self.series
            .iter()
            .filter(|s| family_of(&s.name, &self.types) == name)
            .collect()
    }

    /// The value of the one series called `name` whose labels include `labels`.
    #[track_caller]
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<_> = self
            .series
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(
            found.len() <= 1,
            "several series match {name} {labels:?}: {found:?}"
        );
        found.first().map(|s| s.value)
    }
}

/// The family a sample name belongs to, given the declared types.
pub fn family_of<'a>(sample: &'a str, types: &[(String, String)]) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            if types.iter().any(|(n, t)| n == base && t == "histogram") {
                return base;
            }
        }
    }
    sample
}

#[track_caller]
fn parse_series(line: &str) -> Series {
    let (head, value) = line.rsplit_once(' ').expect("series has a value");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    let (name, labels) = match head.split_once('{') {
        None => (head.to_string(), BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').expect("labels close");
            (name.to_string(), parse_labels(body, line))
        }
    };
    Series {
        name,
        labels,
        value,
    }
}

#[track_caller]
fn parse_labels(mut body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !body.is_empty() {
        let (name, rest) = body
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label in {line:?}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("dangling escape in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(
            labels.insert(name.to_string(), value).is_none(),
            "duplicate label in {line:?}"
        );
        body = rest[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&rest[end + 1..]);
    }
    labels
}

/// Scrapes `/metrics` and parses it.
#[track_caller]
pub fn scrape(addr: SocketAddr) -> Exposition {
    let r = get(addr, "/metrics").expect("scrape");
    assert_eq!(r.status, 200, "{r:?}");
    Exposition::parse(&r.body)
}

/// Blocks one worker per task with `std::thread::sleep` until dropped (or 20 s at most).
pub struct Blocker {
    release: Arc<AtomicBool>,
    pub entered: Arc<AtomicUsize>,
}

impl Blocker {
    /// Spawns `n` blocking tasks from outside the runtime (so they can land on different
    /// workers) and waits (bounded) until all of them run.
    #[track_caller]
    pub fn new(rt: &tokio::runtime::Runtime, n: usize) -> Blocker {
        let release = Arc::new(AtomicBool::new(false));
        let entered = Arc::new(AtomicUsize::new(0));
        for _ in 0..n {
            let (release, entered) = (release.clone(), entered.clone());
            rt.spawn(async move {
                entered.fetch_add(1, Ordering::SeqCst);
                let start = Instant::now();
                while !release.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(20) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
        let start = Instant::now();
        while entered.load(Ordering::SeqCst) < n && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(entered.load(Ordering::SeqCst), n, "every worker blocked");
        Blocker { release, entered }
    }
}

impl Drop for Blocker {
    fn drop(&mut self) {
        self.release.store(true, Ordering::SeqCst);
    }
}

/// The path of an external tool the test runs (`promtool`, `prometheus`, `rotel-agent`).
/// A missing tool fails the test with what to install: a test that cannot run its tool must
/// never pass. `bash .ci/run` installs all of them.
#[track_caller]
pub fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => path,
        None => panic!(
            "`{name}` is not on PATH, and this test runs it. Install it: {}; or run \
             `bash .ci/run`, which installs every tool the tests need.",
            install_hint(name)
        ),
    }
}

/// How to get each external tool the tests run (what `.ci/run` does).
fn install_hint(name: &str) -> &'static str {
    match name {
        "promtool" | "prometheus" => {
            "Debian's `prometheus` package has both `prometheus` and `promtool` \
             (`apt-get install prometheus`)"
        }
        "rotel-agent" => {
            "the `rotel` collector, whose binary ships in PyPI's `rotel` wheel \
             (version 0.0.1a15: download the wheel, unzip it, put `rotel/rotel-agent` on PATH)"
        }
        _ => "see `.ci/run`",
    }
}

/// A loopback port that was free a moment ago.
#[track_caller]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Percent-encodes a query parameter value.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The loopback address for port 0: the agent binds a free port, `Agent::http_addr` says
/// which.
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}
