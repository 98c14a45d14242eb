//! Attach mode: RSA key generation in `spawn_blocking` runs on a thread with the same name
//! as the workers, but blocks no worker: nothing is reported. A blocking sleep on a worker right
//! after, in the same runtime, is reported: the nothing came from a detector that works.

mod support;

use std::time::Duration;

#[test]
fn attach_rsa_in_spawn_blocking_is_not_a_stall() {
    let rt = support::plain_runtime(2);
    let agent = support::attach(
        &rt,
        pollwatch::Agent::builder().stall_threshold(Duration::from_millis(30)),
    );
    rt.block_on(async {
        for _ in 0..3 {
            tokio::task::spawn_blocking(|| {
                let mut rng = rand::thread_rng();
                rsa::RsaPrivateKey::new(&mut rng, 2048).expect("key")
            })
            .await
            .unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        agent.stall_summary().stalls_total,
        0,
        "{:#?}",
        agent.stalls()
    );
    support::assert_a_real_stall_is_still_reported(&rt, &agent);
}
