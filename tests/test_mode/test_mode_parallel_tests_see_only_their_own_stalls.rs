//! Several watched tests in one process at once (as `cargo test` runs them): eight threads,
//! each with its own runtime and guard, four of which block for 150 ms in a function of their
//! own. Each blocking one fails with exactly its own stall (its thread, its function), and
//! the healthy ones pass: agents share the process-wide capture signal and handler, and
//! none sees another's runtime.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use pollwatch::testing::TestWatch;

/// Three times what the fixture blocks: caught also on a loaded machine (see
/// `test_mode_blocking_tests_fail_with_the_culprit_frame.rs`).
const BLOCK_MS: u64 = 150;

macro_rules! culprits {
    ($($name:ident),*) => {
        $(fn $name() { std::thread::sleep(Duration::from_millis(BLOCK_MS)); })*
        const CULPRITS: &[(&str, fn())] = &[$((stringify!($name), $name as fn())),*];
    };
}
culprits!(
    blocks_in_test_zero,
    blocks_in_test_two,
    blocks_in_test_four,
    blocks_in_test_six
);

#[test]
fn test_mode_parallel_tests_see_only_their_own_stalls() {
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let start = start.clone();
            std::thread::Builder::new()
                .name(format!("parallel-test-{i}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let guard = TestWatch::new()
                            .attach(&tokio::runtime::Handle::current())
                            .unwrap();
                        // All eight guards are on before any test blocks. Waiting for the
                        // others blocks this runtime too (for tens of ms on a loaded host),
                        // deliberately: the test's own blocking, not the one under test.
                        pollwatch::allow_blocking(|| start.wait());
                        for _ in 0..10 {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        if i % 2 == 0 {
                            CULPRITS[i / 2].1();
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        guard.finish()
                    })
                })
                .unwrap()
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let result = t.join().unwrap();
        if i % 2 == 1 {
            result.unwrap_or_else(|f| panic!("healthy test {i} passes: {f}"));
            continue;
        }
        let failure = result.expect_err("a blocking test fails");
        let [r] = failure.stalls() else {
            panic!("test {i}: exactly its own stall: {failure}");
        };
        assert_eq!(r.thread, format!("parallel-test-{i}"), "{failure}");
        assert_eq!(r.runtime, format!("parallel-test-{i}"), "{failure}");
        let culprit = CULPRITS[i / 2].0;
        assert!(
            r.frames.iter().any(|f| f.function.ends_with(culprit)),
            "test {i}: {culprit} in the stack: {failure}"
        );
        for (other, _) in CULPRITS.iter().filter(|(c, _)| *c != culprit) {
            assert!(!failure.to_string().contains(other), "test {i}: {failure}");
        }
    }
}
