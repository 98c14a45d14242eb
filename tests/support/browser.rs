//! A real browser for the page tests: Debian's headless Chromium driven by `chromedriver`
//! over WebDriver on loopback (a few JSON requests, no client crate). `.ci/run` installs
//! both; a missing one fails the test with what to install.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// `chromedriver` and the Chromium binary it drives. Missing ones fail the test with what
/// to install, like every external tool the tests run.
#[track_caller]
pub fn installed() -> (PathBuf, PathBuf) {
    let driver = super::scrape::tool("chromedriver");
    // Debian's /usr/bin/chromium is a shell wrapper; chromedriver wants the binary itself.
    let browser = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "Chromium is not installed, and this test runs it. Install Debian's `chromium` \
                 and `chromium-driver` packages, or run `bash .ci/run`."
            )
        });
    (driver, browser)
}

/// A running chromedriver with one headless Chromium session.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session with a fresh profile
    /// under `dir`, a window of `width` × `height` CSS pixels.
    pub fn start(driver: &Path, browser: &Path, dir: &Path, width: u32, height: u32) -> Browser {
        let port = super::scrape::free_port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut b = Browser {
            driver: child,
            addr,
            session: String::new(),
        };
        let start = Instant::now();
        while b.call("GET", "/status", None).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = dir.join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},{height}"),
                ]
            }
        }}});
        let v = b
            .call("POST", "/session", Some(&caps))
            .expect("a Chromium session starts");
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        b
    }

    /// One WebDriver command; its `value`, or the error it answered.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        // chromedriver keeps the connection open despite `Connection: close`: read the
        // head, then `Content-Length` bytes.
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let json = loop {
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed before the response was complete".into());
            }
            raw.extend_from_slice(&buf[..n]);
            let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("no Content-Length in {head}"))?;
            if raw.len() >= end + 4 + length {
                break String::from_utf8_lossy(&raw[end + 4..end + 4 + length]).into_owned();
            }
        };
        let v: Value = serde_json::from_str(&json).map_err(|e| format!("{e}: {json}"))?;
        if v["value"].get("error").is_some() {
            return Err(v["value"].to_string());
        }
        Ok(v["value"].clone())
    }

    fn session_call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        self.call(method, &full, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// Opens `url` and waits for its load event.
    pub fn open(&self, url: &str) {
        self.session_call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    /// Evaluates `script` until it returns something other than `null` or `false`, for at
    /// most `limit`; returns the last value.
    pub fn wait_for(&self, script: &str, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let v = self.eval(script);
            if !(v.is_null() || v == Value::Bool(false)) || start.elapsed() > limit {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG of the window as it is now.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self.session_call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("valid base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Width and height of a PNG, from its header.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&png[16..20]), be(&png[20..24])))
}
