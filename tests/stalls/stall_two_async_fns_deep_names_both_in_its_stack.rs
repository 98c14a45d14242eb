//! A stall two async fns deep (`handler().await` -> `hash().await` -> a blocking call)
//! shows both async fns in the captured stack (their `{{closure}}` frames), in both
//! set-ups (see `support::Setup`). Stacks are captured on Linux x86_64 and aarch64 only.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use crate::support;

use std::time::Duration;

use support::Setup;

async fn handler(input: u64) -> u64 {
    let h = hash(input).await;
    tokio::task::yield_now().await;
    h
}

async fn hash(input: u64) -> u64 {
    tokio::task::yield_now().await;
    // The blocking call: 300 ms of CPU inside this poll.
    support::busy_for(Duration::from_millis(300)) ^ input
}

fn both_async_fns_in_the_stack(setup: Setup) {
    let (rt, agent) =
        setup.start(pollwatch::Agent::builder().stall_threshold(Duration::from_millis(50)));
    rt.block_on(async { tokio::spawn(handler(7)).await.unwrap() });
    let r = support::symbolized(&agent);
    let has = |name: &str| r.frames.iter().any(|f| f.function.contains(name));
    assert!(
        has("busy_for") && has("::hash::{{closure}}") && has("::handler::{{closure}}"),
        "{setup:?}: busy_for <- hash <- handler in {:#?}",
        r.frames.iter().map(|f| &f.function).collect::<Vec<_>>()
    );
}

#[test]
fn stall_two_async_fns_deep_names_both_in_its_stack() {
    let _serial = support::serial();
    for setup in Setup::BOTH {
        both_async_fns_in_the_stack(setup);
    }
}
