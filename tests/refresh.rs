//! Refresh of sessions with a refresh token: single-flight under
//! concurrency, identity continuity, and failure ending the session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use oidc_gateway::config::GatewayConfig;
use oidc_gateway::devtools::echo::EchoUpstream;
use oidc_gateway::devtools::provider::{DevProvider, Fault};
use oidc_gateway::gateway::RunningGateway;
use std::collections::HashMap;
use std::time::Duration;

struct Setup {
    provider: DevProvider,
    upstream: EchoUpstream,
    gateway: RunningGateway,
    base: String,
}

async fn setup(access_ttl: Duration) -> Setup {
    setup_with(access_ttl, "").await
}

/// [`setup`] with `provider_extra` appended to the `[provider]` section.
async fn setup_with(access_ttl: Duration, provider_extra: &str) -> Setup {
    let provider = DevProvider::builder()
        .access_token_ttl(access_ttl)
        .issue_refresh_tokens(true)
        .auto_login("alice")
        .start()
        .await
        .unwrap();
    let upstream = EchoUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let port = support::free_port();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "http://{up}"
[provider]
issuer = "{iss}"
client_id = "{cid}"
client_secret = "{secret}"
scopes = ["openid", "email", "profile", "offline_access"]
{provider_extra}
[session]
secret = "{ss}"
refresh_margin = "60s"
"#,
        up = upstream.addr(),
        iss = provider.issuer(),
        cid = provider.client_id(),
        secret = provider.client_secret(),
        ss = support::random_base64(32),
    );
    let config = GatewayConfig::from_toml_str(&toml, &HashMap::new()).unwrap();
    let gateway = RunningGateway::start(config).await.unwrap();
    for _ in 0..200 {
        if gateway.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gateway.is_ready(), "provider never loaded");
    let base = format!("http://{}", gateway.main_addr());
    Setup {
        provider,
        upstream,
        gateway,
        base,
    }
}

/// Browser login through the dev provider (auto-login); returns the client
/// holding the session cookie.
async fn login(s: &Setup) -> reqwest::Client {
    let (client, _jar) = support::browser(None);
    let mut url = format!("{}/private", s.base);
    for _ in 0..6 {
        let resp = client
            .get(&url)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            return client;
        }
        assert_eq!(resp.status(), 302, "unexpected status at {url}");
        url = support::location(&resp).unwrap().to_string();
    }
    panic!("login did not complete");
}

async fn api_get(client: &reqwest::Client, url: &str) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn refresh_concurrent_requests_spend_refresh_token_once() {
    // Access tokens live 4 s, so they are refreshed at half-life (2 s).
    let s = setup(Duration::from_secs(4)).await;
    let client = login(&s).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = s.provider.counters().refresh;
    let url = format!("{}/api", s.base);
    let calls = (0..50).map(|_| {
        let c = client.clone();
        let u = url.clone();
        tokio::spawn(async move { api_get(&c, &u).await })
    });
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(
        s.provider.counters().refresh - before,
        1,
        "exactly one refresh"
    );
    assert!(s.upstream.request_count() >= 50);
    drop(s.gateway);
}

#[tokio::test]
async fn refresh_failure_ends_session() {
    let s = setup(Duration::from_secs(2)).await;
    let client = login(&s).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.provider.set_fault(Fault::TokenEndpointError {
        status: 400,
        body: r#"{"error":"invalid_grant"}"#.into(),
    });
    let url = format!("{}/api", s.base);
    assert_eq!(api_get(&client, &url).await, 401);
    // The session is gone, also once the provider behaves again.
    s.provider.clear_faults();
    assert_eq!(api_get(&client, &url).await, 401);
    assert_eq!(s.gateway.session_count(), 0);
}

#[tokio::test]
async fn refresh_with_other_subject_ends_session() {
    let s = setup(Duration::from_secs(2)).await;
    let client = login(&s).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.provider.set_fault(Fault::MissingSub);
    let url = format!("{}/api", s.base);
    assert_eq!(api_get(&client, &url).await, 401);
}

#[tokio::test]
async fn refresh_not_needed_for_long_lived_tokens() {
    let s = setup(Duration::from_secs(3600)).await;
    let client = login(&s).await;
    let url = format!("{}/api", s.base);
    for _ in 0..5 {
        assert_eq!(api_get(&client, &url).await, 200);
    }
    assert_eq!(s.provider.counters().refresh, 0);
}

#[tokio::test]
async fn refresh_after_provider_key_rotation_without_old_keys_continues_session() {
    // The provider "restarts" with new keys: the refreshed ID token is
    // signed with a kid the gateway has never seen, and the old keys are
    // gone from the JWKS. The gateway must refetch the JWKS and keep the
    // session.
    let s = setup_with(
        Duration::from_secs(2),
        "jwks_min_refresh_interval = \"200ms\"",
    )
    .await;
    let client = login(&s).await;
    let url = format!("{}/api", s.base);
    assert_eq!(api_get(&client, &url).await, 200);
    let old_kid = s.provider.rsa_kid();
    s.provider.rotate_keys_keep_old(false);
    s.provider.rotate_keys().unwrap();
    assert_ne!(s.provider.rsa_kid(), old_kid);
    let jwks = s.provider.jwks().to_string();
    assert!(!jwks.contains(&old_kid), "old key still published: {jwks}");
    let before = s.provider.counters();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    assert_eq!(api_get(&client, &url).await, 200, "refreshed session");
    let after = s.provider.counters();
    assert_eq!(after.refresh - before.refresh, 1, "one refresh");
    assert!(after.jwks > before.jwks, "JWKS refetched for the new kid");
    let seen = s.upstream.last_request().unwrap();
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice", "{seen}");
    assert_eq!(s.gateway.session_count(), 1);
    // And it stays usable.
    assert_eq!(api_get(&client, &url).await, 200);
}
