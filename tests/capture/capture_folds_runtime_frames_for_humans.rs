//! The human-readable stack keeps the innermost frames and the application's frames and
//! replaces every run of runtime machinery by one "… N runtime frames" line.

use crate::support;

use pollwatch::capture::{fold_runtime_frames, Frame};

fn frame(function: &str, file: Option<&str>) -> Frame {
    Frame {
        function: function.to_owned(),
        file: file.map(str::to_owned),
        line: file.map(|_| 1),
    }
}

fn names(frames: &[Frame]) -> Vec<&str> {
    frames.iter().map(|f| f.function.as_str()).collect()
}

#[test]
fn runtime_runs_fold_and_application_frames_stay() {
    let _serial = support::serial();
    let frames = [
        frame("clock_nanosleep", None),
        frame("std::thread::sleep", None),
        frame("demo::handler::{{closure}}", None),
        frame(
            "<core::pin::Pin<P> as core::future::future::Future>::poll",
            None,
        ),
        frame("tokio::runtime::task::core::Core<T,S>::poll", None),
        frame(
            "{closure#0}",
            Some("/r/.cargo/registry/src/x/tokio-1.54.1/src/runtime/task/harness.rs"),
        ),
        frame("std::panicking::try", None),
        frame("demo::main", None),
        frame("core::ops::function::FnOnce::call_once", None),
        frame("std::rt::lang_start_internal", None),
        frame("__libc_start_main", None),
        frame("_start", None),
    ];
    let folded = fold_runtime_frames(&frames);
    assert_eq!(
        names(&folded),
        [
            "clock_nanosleep",
            "std::thread::sleep",
            "demo::handler::{{closure}}",
            "… 4 runtime frames",
            "demo::main",
            "… 4 runtime frames",
        ]
    );
}

#[test]
fn a_thread_stuck_inside_the_runtime_keeps_its_innermost_frames() {
    let _serial = support::serial();
    let frames = [
        frame("tokio::runtime::park::Inner::park", None),
        frame(
            "tokio::runtime::scheduler::multi_thread::worker::Context::park",
            None,
        ),
        frame("start_thread", None),
        frame("clone3", None),
    ];
    assert_eq!(names(&fold_runtime_frames(&frames)), names(&frames));
    assert!(fold_runtime_frames(&[]).is_empty());
}
