//! Runs the test-mode fixture crate (`tests/fixtures/test-mode`, a small application with
//! its own tests) through `cargo test`, the way a user's CI runs it.
//!
//! The fixture is copied into this build's target directory (`CARGO_TARGET_TMPDIR`), with
//! pollwatch's `Cargo.lock` (the same dependency versions, resolved offline) and pollwatch as a
//! path dependency on this checkout, and built there with its own target directory, in the
//! same tokio build as the test that runs it (`--cfg tokio_unstable` or not). The source tree
//! is only read.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first build compiles tokio and pollwatch's dependencies once for the fixture.
const BUILD_LIMIT: Duration = Duration::from_secs(20 * 60);
/// One run of an already built test binary.
const RUN_LIMIT: Duration = Duration::from_secs(5 * 60);

/// Variables of this process that must not reach the fixture's cargo: cargo's own for this
/// build, pollwatch's settings, and anything that would change what the fixture's tests see.
const REMOVED_VARS: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_TARGET_TMPDIR",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUST_BACKTRACE",
    "RUST_TEST_THREADS",
    "RUST_LOG",
];

/// A copy of the fixture, ready to run.
pub struct Fixture {
    dir: PathBuf,
    target: PathBuf,
    logs: PathBuf,
}

/// What one `cargo test` of the fixture did.
pub struct Outcome {
    pub status: ExitStatus,
    /// stdout and stderr, one after the other.
    pub output: String,
}

impl Outcome {
    /// Whether libtest reported `test <name> ... ok`.
    pub fn passed(&self, name: &str) -> bool {
        self.output.contains(&format!("test {name} ... ok"))
    }

    /// Whether libtest reported `test <name> ... FAILED`.
    pub fn failed(&self, name: &str) -> bool {
        self.output.contains(&format!("test {name} ... FAILED"))
    }

    /// The captured output of a failed test: from `---- <name> stdout ----` to the next
    /// such header or the end of the failures.
    pub fn failure_of(&self, name: &str) -> Option<&str> {
        let header = format!("---- {name} stdout ----");
        let start = self.output.find(&header)? + header.len();
        let rest = &self.output[start..];
        let end = [rest.find("\n---- "), rest.find("\nfailures:\n")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(rest.len());
        Some(&rest[..end])
    }
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{}", self.status, self.output)
    }
}

static PREPARED: Mutex<Option<(PathBuf, PathBuf, PathBuf)>> = Mutex::new(None);

/// The fixture, copied and built (once per test process).
pub fn fixture() -> Fixture {
    let mut prepared = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
    if prepared.is_none() {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-mode-fixture");
        let dir = root.join("src");
        let target = root.join("target");
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        copy_fixture(&dir);
        let f = Fixture {
            dir: dir.clone(),
            target: target.clone(),
            logs: logs.clone(),
        };
        let build = f.cargo(&["test", "--no-run"], &[], BUILD_LIMIT, "build");
        assert!(build.status.success(), "the fixture builds: {build:?}");
        *prepared = Some((dir, target, logs));
    }
    let (dir, target, logs) = prepared.clone().unwrap();
    Fixture { dir, target, logs }
}

impl Fixture {
    /// `cargo test <args>` in the fixture, with `env` set.
    pub fn cargo_test(&self, args: &[&str], env: &[(&str, &str)]) -> Outcome {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        self.cargo(&all, env, RUN_LIMIT, "run")
    }

    fn cargo(&self, args: &[&str], env: &[(&str, &str)], limit: Duration, log: &str) -> Outcome {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let (out_path, err_path) = (
            self.logs.join(format!("{log}.stdout")),
            self.logs.join(format!("{log}.stderr")),
        );
        let (cargo_args, test_args) = match args.iter().position(|a| *a == "--") {
            Some(i) => args.split_at(i),
            None => (args, &[][..]),
        };
        let mut cmd = Command::new(cargo);
        cmd.args(cargo_args)
            .arg("--offline")
            .arg("--target-dir")
            .arg(&self.target)
            .args(test_args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap());
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if REMOVED_VARS.contains(&name.as_str())
                || name.starts_with("CARGO_PKG_")
                || name.starts_with("POLLWATCH_")
            {
                cmd.env_remove(&name);
            }
        }
        cmd.env("CARGO_TERM_COLOR", "never");
        // The same tokio build as this test: hooked mode under `--cfg tokio_unstable`.
        cmd.env(
            "RUSTFLAGS",
            if cfg!(tokio_unstable) {
                "--cfg tokio_unstable"
            } else {
                ""
            },
        );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("cargo starts");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "cargo {args:?} in the fixture did not finish within {limit:?}; output in {}",
                    self.logs.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = std::fs::read_to_string(&out_path).unwrap()
            + &std::fs::read_to_string(&err_path).unwrap();
        Outcome { status, output }
    }
}

/// Copies the fixture into `dir`, writing only files that changed (cargo then rebuilds only
/// what did), with pollwatch's path dependency made absolute and pollwatch's lock file.
fn copy_fixture(dir: &Path) {
    let pollwatch = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = pollwatch.join("tests/fixtures/test-mode");
    copy_tree(&source, dir, &|rel, bytes| {
        if rel == Path::new("Cargo.toml") {
            let text = String::from_utf8(bytes).unwrap();
            let relative = r#"path = "../../..""#;
            assert!(
                text.contains(relative),
                "the fixture depends on pollwatch by path"
            );
            let absolute = format!("path = {:?}", pollwatch.display().to_string());
            return text.replace(relative, &absolute).into_bytes();
        }
        bytes
    });
    write_if_changed(
        &dir.join("Cargo.lock"),
        std::fs::read(pollwatch.join("Cargo.lock")).unwrap(),
    );
}

fn copy_tree(from: &Path, to: &Path, edit: &dyn Fn(&Path, Vec<u8>) -> Vec<u8>) {
    fn walk(root: &Path, from: &Path, to: &Path, edit: &dyn Fn(&Path, Vec<u8>) -> Vec<u8>) {
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, to, edit);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                let bytes = edit(rel, std::fs::read(&path).unwrap());
                let dest = to.join(rel);
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                write_if_changed(&dest, bytes);
            }
        }
    }
    walk(from, from, to, edit);
}

fn write_if_changed(path: &Path, bytes: Vec<u8>) {
    if std::fs::read(path).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(path, bytes).unwrap();
    }
}
