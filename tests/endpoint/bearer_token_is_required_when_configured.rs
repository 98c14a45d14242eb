//! With `http_bearer_token` set, every endpoint (the page and the flamegraph too) answers
//! 401 (with `WWW-Authenticate`) without the token or with a wrong one, and 200 with
//! `Authorization: Bearer <token>`.

use crate::support;

use std::time::Duration;

use support::scrape;

#[test]
fn bearer_token_is_required_when_configured() {
    let _serial = support::serial();
    let (_rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .http_addr(scrape::any_port())
            .http_bearer_token("s3cret-token"),
    );
    let addr = agent.http_addr().unwrap();
    let t = Duration::from_secs(5);
    for path in [
        "/metrics",
        "/stalls",
        "/",
        "/index.html",
        "/index.txt",
        "/stalls/folded",
        "/flamegraph.svg",
    ] {
        let r = scrape::get_with(addr, "GET", path, &[], t).unwrap();
        assert_eq!(r.status, 401, "{path} without a token");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        assert!(!r.body.contains("tokio_"), "nothing leaks: {}", r.body);
        assert!(
            !r.body.contains("<svg") && !r.body.contains("<html"),
            "{}",
            r.body
        );
        for wrong in [
            "Bearer s3cret-tokeN",
            "Bearer s3cret-token2",
            "Basic s3cret-token",
            "s3cret-token",
            "Bearer",
        ] {
            let r = scrape::get_with(addr, "GET", path, &[("Authorization", wrong)], t).unwrap();
            assert_eq!(r.status, 401, "{path} with {wrong:?}");
        }
        let r = scrape::get_with(
            addr,
            "GET",
            path,
            &[("Authorization", "Bearer s3cret-token")],
            t,
        )
        .unwrap();
        assert_eq!(r.status, 200, "{path} with the token");
        let r = scrape::get_with(
            addr,
            "GET",
            path,
            &[("authorization", "bearer s3cret-token")],
            t,
        )
        .unwrap();
        assert_eq!(r.status, 200, "{path}: the scheme is case-insensitive");
    }
}
