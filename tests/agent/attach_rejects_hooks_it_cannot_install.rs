//! `attach` works on a running runtime of either flavor, which already has its hooks: a
//! hook given to the builder is an error that says so (the lenient `attach_or_disabled`
//! gives an inert agent instead), and a disabled builder attaches nothing.

use crate::support;

use pollwatch::{Agent, Error, Mode};

#[test]
fn attach_rejects_hooks_it_cannot_install() {
    let _serial = support::serial();
    for rt in [
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    ] {
        rt.block_on(async {
            let handle = tokio::runtime::Handle::current();
            let agent = Agent::builder().attach(&handle).expect("attach");
            assert_eq!(agent.mode(), Mode::Attach);
            assert!(agent.runtime_label().is_some());
            drop(agent);

            let err = Agent::builder()
                .on_thread_start(|| {})
                .attach(&handle)
                .unwrap_err();
            assert!(matches!(
                err,
                Error::InvalidConfig {
                    field: "on_thread_start",
                    ..
                }
            ));
            let msg = err.to_string();
            assert!(
                msg.contains("on_thread_start") && msg.contains("build_runtime"),
                "{msg}"
            );

            let lenient = Agent::builder()
                .on_thread_park(|| {})
                .attach_or_disabled(&handle);
            assert_eq!(lenient.mode(), Mode::Disabled);

            let off = Agent::builder().enabled(false).attach(&handle).unwrap();
            assert_eq!(off.mode(), Mode::Disabled);
        });
    }
}
