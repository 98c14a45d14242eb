//! The right way to do it: RSA key generation in `spawn_blocking` blocks no worker (in attach
//! mode it runs on a thread with the same name as the workers), and pollwatch reports
//! nothing. A blocking sleep on a worker right after, in the same runtime, is reported: the
//! nothing came from a detector that works. In both set-ups.

use crate::support::{self, Setup};

use std::time::Duration;

#[test]
fn rsa_in_spawn_blocking_is_not_a_stall() {
    let _serial = support::serial();
    for setup in Setup::BOTH {
        eprintln!("--- {setup:?}");
        let (rt, agent) =
            setup.start(pollwatch::Agent::builder().stall_threshold(Duration::from_millis(30)));
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
}
