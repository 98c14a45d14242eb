//! Attach mode: generating an RSA-2048 key inside an async task is reported while the key
//! is being generated, as a CPU stall of its worker.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pollwatch::{Detection, StallKind};

#[test]
fn attach_rsa_key_generation_is_reported_as_cpu() {
    let rt = support::plain_runtime(2);
    let agent = Arc::new(support::attach(
        &rt,
        pollwatch::Agent::builder().stall_threshold(Duration::from_millis(30)),
    ));
    let inside = agent.clone();
    let during = rt
        .block_on(rt.spawn(async move {
            let start = Instant::now();
            let mut rng = rand::thread_rng();
            // Bounded: one key is usually enough; a quick one gets another try.
            loop {
                let key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("key");
                std::hint::black_box(&key);
                let seen = inside.stalls();
                if !seen.is_empty() || start.elapsed() > Duration::from_secs(20) {
                    return seen;
                }
            }
        }))
        .unwrap();
    assert_eq!(during.len(), 1, "{during:#?}");
    assert!(during[0].ongoing, "{during:#?}");
    assert_eq!(during[0].detection, Detection::Worker, "{during:#?}");
    assert_eq!(during[0].kind, StallKind::Cpu, "{during:#?}");
    support::assert_completed(&agent, 30.0);
}
