//! Generating an RSA-2048 key synchronously inside an async task is reported while the key
//! is being generated, as a CPU stall (at the test's own spawn line in hooked mode, of its
//! worker in attach mode). In both set-ups.

use crate::support::{self, Setup};

use std::sync::Arc;
use std::time::{Duration, Instant};

use pollwatch::StallKind;

#[test]
fn rsa_key_generation_is_reported_as_cpu() {
    let _serial = support::serial();
    for setup in Setup::BOTH {
        eprintln!("--- {setup:?}");
        // Key generation takes tens to hundreds of milliseconds; a low threshold makes one
        // generation enough, and the loop (bounded) covers an unusually quick one.
        let (rt, agent) =
            setup.start(pollwatch::Agent::builder().stall_threshold(Duration::from_millis(30)));
        let agent = Arc::new(agent);
        let inside = agent.clone();
        let spawn_line = support::next_line(file!(), line!());
        let task = rt.spawn(async move {
            let start = Instant::now();
            let mut rng = rand::thread_rng();
            loop {
                let key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("key");
                std::hint::black_box(&key);
                let seen = inside.stalls();
                if !seen.is_empty() || start.elapsed() > Duration::from_secs(20) {
                    return seen;
                }
            }
        });
        let during = rt.block_on(task).unwrap();
        support::assert_one_ongoing_report(agent.mode(), &during, StallKind::Cpu, &spawn_line);
        support::assert_completed(&agent, 30.0);
    }
}
