//! `provider.ca_file`: the DevProvider serves HTTPS with the test
//! certificate from `certs/` (signed by `certs/ca.pem`, not a webpki root).
//! With `ca_file` the gateway trusts it, becomes ready and logs users in;
//! without it every TLS handshake to the provider fails and the gateway never
//! becomes ready.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use oidc_gateway::config::{GatewayConfig, ProcessEnv};
use oidc_gateway::gateway::RunningGateway;
use support::{ca_file_line, Harness, Options};

#[tokio::test]
async fn provider_https_with_ca_file_ready_and_login_works() {
    let h = Harness::with(Options {
        provider_tls: true,
        provider: ca_file_line(),
        ..Options::default()
    })
    .await;
    assert!(
        h.op.issuer().starts_with("https://localhost:"),
        "issuer: {}",
        h.op.issuer()
    );
    assert!(h.gw.is_ready());
    let ready = reqwest::get(h.admin_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let counters = h.op.counters();
    assert!(
        counters.discovery >= 1,
        "discovery over https: {counters:?}"
    );
    assert!(counters.jwks >= 1, "JWKS over https: {counters:?}");

    let (client, _jar) = h.browser();
    let flow = h.login_flow(&client, "/private").await;
    assert!(
        flow.authorize.as_str().starts_with("https://localhost:"),
        "authorization URL: {}",
        flow.authorize
    );
    assert_eq!(flow.callback.status, 302, "callback: {:?}", flow.callback);
    assert!(flow.callback.sets_session(h.cookie), "{:?}", flow.callback);
    // The code was redeemed at the https token endpoint.
    assert_eq!(h.op.counters().token, 1);
    let resp = client.get(h.url("/private")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.last_upstream()["headers"]["x-auth-request-user"], "alice");
}

#[tokio::test]
async fn provider_https_without_ca_file_never_ready() {
    let h = Harness::with(Options {
        provider_tls: true,
        wait_ready: false,
        ..Options::default()
    })
    .await;
    // Discovery is retried for a while: the gateway must stay not ready.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        assert!(!h.gw.is_ready(), "ready without trusting the provider CA");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = reqwest::get(h.admin_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    // Every handshake failed: not one HTTP request reached the provider.
    assert_eq!(h.op.counters(), Default::default());
    let (client, _jar) = h.browser();
    let nav = h.navigate(&client, "/private").await;
    assert!(
        (500..600).contains(&nav.status),
        "login without provider metadata: {nav:?}"
    );
    assert!(nav.location().is_none(), "no redirect: {nav:?}");
    assert_eq!(h.gw.session_count(), 0);
    assert_eq!(h.echo.request_count(), 0);

    // Twin: the same config plus `ca_file`, against the same provider.
    let config = h
        .config
        .replacen(
            "[provider]\n",
            &format!("[provider]\n{}", ca_file_line()),
            1,
        )
        .replace(
            &format!("listen = \"{}\"", h.gw.main_addr()),
            "listen = \"127.0.0.1:0\"",
        );
    assert_ne!(config, h.config);
    let parsed = GatewayConfig::from_toml_str(&config, &ProcessEnv).unwrap();
    let twin = RunningGateway::start(parsed).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !twin.is_ready() {
        assert!(
            Instant::now() < deadline,
            "twin with ca_file not ready\n{config}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.op.counters().discovery >= 1);
    assert!(
        !h.gw.is_ready(),
        "the gateway without ca_file is still not ready"
    );
    twin.shutdown().await.unwrap();
}
