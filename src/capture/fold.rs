//! Shortening a stack for people: the scheduler, panic glue and thread start-up around a
//! stuck future are the same in every report and hide the few frames that matter.

use super::Frame;

/// Function-name prefixes of frames that belong to the runtime, std's glue or pollwatch.
/// Matched after any leading `<` (trait impls demangle as `<Type as Trait>::method`).
const RUNTIME_PREFIXES: &[&str] = &[
    "tokio::runtime::",
    "tokio::task::",
    "tokio::loom::",
    "tokio::util::",
    "std::panic::",
    "std::panicking::",
    "core::panic::",
    "std::thread::Builder::",
    "std::thread::local::",
    "std::thread::lifecycle::",
    "std::sys::backtrace::",
    "std::rt::",
    "core::ops::function::",
    "core::pin::",
    "alloc::boxed::",
    "pollwatch::",
];

/// Exact names: C library thread start-up, the signal trampoline, std's short names.
const RUNTIME_NAMES: &[&str] = &[
    "__rust_try",
    "__restore_rt",
    "start_thread",
    "thread_start",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "__GI___clone3",
    "__libc_start_main",
    "__libc_start_call_main",
    "_start",
];

/// Source paths of the same (besides tokio's `src/runtime/`), for binaries built with line
/// tables only, whose names are often just `{closure#0}` or `poll`.
const RUNTIME_FILES: &[&str] = &[
    "/library/std/src/panicking.rs",
    "/library/std/src/panic.rs",
    "/library/core/src/panic/",
    "/library/core/src/ops/function.rs",
    "/library/std/src/sys/backtrace.rs",
    "/library/std/src/thread/local.rs",
    "/library/std/src/thread/lifecycle.rs",
    "/library/std/src/rt.rs",
    "/library/alloc/src/boxed.rs",
    "/library/test/src/",
];

/// pollwatch's own sources, wherever the crate was built from.
const OWN_SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");

/// Whether a frame is runtime machinery rather than the application's code.
pub(crate) fn is_runtime(frame: &Frame) -> bool {
    let name = frame.function.trim_start_matches('<');
    if RUNTIME_PREFIXES.iter().any(|p| name.starts_with(p))
        || RUNTIME_NAMES.contains(&name)
        || name.ends_with("::thread_start")
    {
        return true;
    }
    let Some(file) = frame.file.as_deref() else {
        return false;
    };
    // All of tokio's own sources, not only its runtime: after the first application frame
    // they are the scheduler's machinery (task harness, `loom` cells, coop budget), whose
    // names in binaries built with line tables only have no module path to match.
    let tokio_runtime = file.contains("/tokio-") && file.contains("/src/");
    tokio_runtime || file.starts_with(OWN_SOURCES) || RUNTIME_FILES.iter().any(|p| file.contains(p))
}

/// Path fragments of code that is not the application's own: the standard library (built
/// under `/rustc/<hash>/`) and crates from a registry or a git checkout (`$CARGO_HOME`).
const DEPENDENCY_FILES: &[&str] = &["/rustc/", "/registry/src/", "/git/checkouts/"];

/// Function-name prefixes of the standard library, for frames without a file.
const STD_PREFIXES: &[&str] = &["std::", "core::", "alloc::"];

/// Whether a frame is the application's own code: Rust source (a `.rs` file; the C
/// library's are `.c`, or none) that is not runtime machinery, the standard library or a
/// dependency from a registry. These are the frames a developer edits.
pub(crate) fn is_own_code(frame: &Frame) -> bool {
    let name = frame.function.trim_start_matches('<');
    if is_runtime(frame) || STD_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return false;
    }
    frame.file.as_deref().is_some_and(|file| {
        file.ends_with(".rs") && !DEPENDENCY_FILES.iter().any(|p| file.contains(p))
    })
}

/// Whether the stack shows tokio's scheduler parking its thread (idle, or between two
/// batches of polls): such a thread is not inside a poll. tokio forbids `block_on` inside a
/// runtime, so a scheduler's park frames never sit under a poll of that thread.
pub(crate) fn parked_in_scheduler(frames: &[Frame]) -> bool {
    frames.iter().any(|f| {
        let name = f.function.as_str();
        let in_scheduler = name.contains("tokio::runtime::scheduler::")
            || f.file.as_deref().is_some_and(|file| {
                file.contains("/tokio-") && file.contains("/src/runtime/scheduler/")
            });
        in_scheduler && (name.contains("::park") || name.starts_with("park"))
    })
}

/// The frames a person needs: the application's own, plus the innermost ones (where the
/// thread actually is, even inside the runtime). Every other run of runtime frames (tokio's
/// scheduler and task harness, std's panic and thread glue, pollwatch, signal trampolines)
/// becomes one frame named like `… 7 runtime frames`.
///
/// For the demo and the log message; the JSON report keeps all frames.
pub fn fold_runtime_frames(frames: &[Frame]) -> Vec<Frame> {
    // The innermost frames stay as they are up to and including the first application frame.
    let keep = frames
        .iter()
        .position(|f| !is_runtime(f))
        .map_or(frames.len(), |i| i + 1);
    let mut out: Vec<Frame> = frames[..keep].to_vec();
    let mut run = 0;
    for frame in &frames[keep..] {
        if is_runtime(frame) {
            run += 1;
            continue;
        }
        push_fold(&mut out, run);
        run = 0;
        out.push(frame.clone());
    }
    push_fold(&mut out, run);
    out
}

fn push_fold(out: &mut Vec<Frame>, run: usize) {
    if run == 0 {
        return;
    }
    let plural = if run == 1 { "" } else { "s" };
    out.push(Frame {
        function: format!("… {run} runtime frame{plural}"),
        file: None,
        line: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: Option<&str>) -> Frame {
        Frame {
            function: function.to_string(),
            file: file.map(str::to_string),
            line: file.map(|_| 1),
        }
    }

    #[test]
    fn own_code_is_the_application_s_rust_source_only() {
        let own = [
            frame("app::load_config", Some("/home/me/app/src/lib.rs")),
            // Line tables only: short names, the file tells.
            frame("{closure#0}", Some("/home/me/app/tests/blocking.rs")),
            frame("app::handler", Some("src/handler.rs")),
        ];
        for f in &own {
            assert!(is_own_code(f), "{f:?}");
        }
        let not_own = [
            frame(
                "__GI___clock_nanosleep",
                Some("./time/../sysdeps/unix/sysv/linux/clock_nanosleep.c"),
            ),
            frame("clock_nanosleep", None),
            frame(
                "std::thread::functions::sleep",
                Some("/rustc/abc/library/std/src/thread/functions.rs"),
            ),
            frame(
                "fold<u8, u32>",
                Some("/rustc/abc/library/core/src/slice/iter/macros.rs"),
            ),
            frame(
                "with_budget<()>",
                Some("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/task/coop/mod.rs"),
            ),
            frame(
                "serde_json::de::from_str",
                Some("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde_json-1.0.1/src/de.rs"),
            ),
            frame("pollwatch::testing::run", Some(concat!(env!("CARGO_MANIFEST_DIR"), "/src/testing/mod.rs"))),
        ];
        for f in &not_own {
            assert!(!is_own_code(f), "{f:?}");
        }
    }

    #[test]
    fn a_stack_parked_in_the_scheduler_is_not_in_a_poll() {
        let tokio = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1";
        let parked = [
            frame("std::sync::poison::condvar::Condvar::wait_timeout", None),
            frame("tokio::runtime::park::Inner::park_timeout", None),
            frame(
                "tokio::runtime::scheduler::current_thread::Context::park",
                Some(&format!(
                    "{tokio}/src/runtime/scheduler/current_thread/mod.rs"
                )),
            ),
        ];
        assert!(parked_in_scheduler(&parked));
        // Line tables only: the file says where.
        let short = [frame(
            "park_internal",
            Some(&format!(
                "{tokio}/src/runtime/scheduler/multi_thread/worker.rs"
            )),
        )];
        assert!(parked_in_scheduler(&short));
        let polling = [
            frame("std::thread::sleep", None),
            frame("app::load_config", Some("/home/me/app/src/lib.rs")),
            frame(
                "tokio::runtime::scheduler::multi_thread::worker::Context::run_task",
                Some(&format!(
                    "{tokio}/src/runtime/scheduler/multi_thread/worker.rs"
                )),
            ),
        ];
        assert!(!parked_in_scheduler(&polling));
    }

    #[test]
    fn tokio_frames_without_module_paths_are_folded() {
        let tokio_file =
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/loom/std/unsafe_cell.rs";
        let frames = [
            frame("app::work", Some("/home/me/app/src/lib.rs")),
            frame("with_mut<Stage<F>>", Some(tokio_file)),
            frame("budget<()>", Some(tokio_file)),
            frame("app::main", Some("/home/me/app/src/main.rs")),
        ];
        let folded = fold_runtime_frames(&frames);
        let names: Vec<&str> = folded.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(names, ["app::work", "… 2 runtime frames", "app::main"]);
    }
}
