//! A real Prometheus server (the Debian `prometheus` package) for the tests: started on a free
//! loopback port with a generated configuration that scrapes one target every second, and
//! its HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::scrape;

/// The scrape interval the generated configuration sets (and Grafana's datasource would be
/// told about).
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// A running Prometheus. Dropping it kills and reaps the process and removes its files; on
/// a failing test it prints the end of its log first.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Starts `binary` scraping `target` (job `pollwatch`) every second.
    #[track_caller]
    pub fn start(binary: PathBuf, target: SocketAddr) -> Prometheus {
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("pollwatch-prom-{}-{unique}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: pollwatch\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", scrape::free_port())
            .parse()
            .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Prometheus { child, dir, addr }
    }

    /// `GET path` on the API (path includes the query string): the parsed JSON body, or why
    /// there is none (not up yet, HTTP error, not JSON).
    pub fn get(&self, path: &str) -> Result<serde_json::Value, String> {
        let r = scrape::get_with(self.addr, "GET", path, &[], Duration::from_secs(10))
            .map_err(|e| format!("GET {path}: {e}"))?;
        let v: serde_json::Value = serde_json::from_str(&r.body)
            .map_err(|e| format!("GET {path}: HTTP {} not JSON ({e}): {}", r.status, r.body))?;
        if r.status != 200 {
            return Err(format!("GET {path}: HTTP {}: {v}", r.status));
        }
        Ok(v)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
            let tail: Vec<_> = log.lines().rev().take(30).collect();
            eprintln!("--- prometheus log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
