//! `provider.client_auth = "private_key_jwt"` end to end against the
//! in-process development provider, which verifies every assertion
//! (signature, `iss`/`sub`, `aud`, `exp`, single-use `jti`): login, refresh,
//! and a gateway holding the wrong key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use oidc_gateway::devtools::provider::public_key_pem;
use support::{certs_dir, ClientAuth, Harness, Options};

fn key_path(name: &str) -> String {
    certs_dir().join(name).display().to_string()
}

/// The DevProvider's `PrivateKeyJwt` mode registered with the public half
/// of `certs/<name>`.
fn registered(name: &str) -> ClientAuth {
    let pem = std::fs::read_to_string(certs_dir().join(name)).unwrap();
    ClientAuth::PrivateKeyJwt(public_key_pem(&pem).unwrap())
}

fn gateway_key(name: &str, extra: &str) -> String {
    format!(
        "client_auth = \"private_key_jwt\"\nprivate_key_file = {:?}\n{extra}",
        key_path(name)
    )
}

#[tokio::test]
async fn private_key_jwt_rsa_login_reaches_upstream() {
    let h = Harness::with(Options {
        op_client_auth: Some(registered("gateway.key")),
        provider: gateway_key("gateway.key", ""),
        ..Default::default()
    })
    .await;
    let (client, _jar) = h.browser();
    h.login(&client, "/private").await;
    let resp = client.get(h.url("/private")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.last_upstream()["headers"]["x-auth-request-user"], "alice");
    let c = h.op.counters();
    assert_eq!(c.token_private_key_jwt, 1, "{c:?}");
    assert_eq!(c.token_client_secret_basic + c.token_client_secret_post, 0);
}

#[tokio::test]
async fn private_key_jwt_pkcs1_key_logs_in() {
    let h = Harness::with(Options {
        op_client_auth: Some(registered("gateway.pkcs1.key")),
        provider: gateway_key("gateway.pkcs1.key", "private_key_kid = \"gw-rsa\"\n"),
        ..Default::default()
    })
    .await;
    let (client, _jar) = h.browser();
    h.login(&client, "/private").await;
    assert_eq!(h.op.counters().token_private_key_jwt, 1);
}

/// The refresh grant authenticates with a fresh assertion too (a reused
/// `jti` would be refused by the provider).
#[tokio::test]
async fn private_key_jwt_ec_key_authenticates_refresh_too() {
    let h = Harness::with(Options {
        op_client_auth: Some(registered("gateway-ec.key")),
        op_access_token_ttl: Some(Duration::from_secs(4)),
        provider: format!(
            "scopes = [\"openid\", \"email\", \"profile\", \"offline_access\"]\n{}",
            gateway_key("gateway-ec.key", "private_key_kid = \"gw-ec\"\n")
        ),
        ..Default::default()
    })
    .await;
    let (client, _jar) = h.browser();
    h.login(&client, "/private").await;
    // Refreshed at half-life (2 s).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = client.get(h.url("/api")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let c = h.op.counters();
    assert_eq!(c.refresh, 1, "{c:?}");
    assert_eq!(c.token_private_key_jwt, 2, "{c:?}");
    assert_eq!(h.gw.session_count(), 1);
}

/// The twin of the RSA login: the gateway signs with another key, the
/// provider answers `invalid_client`, the browser gets an error page and
/// no session, and nothing reaches the upstream.
#[tokio::test]
async fn private_key_jwt_with_wrong_key_login_refused_cleanly() {
    let h = Harness::with(Options {
        op_client_auth: Some(registered("gateway.key")),
        provider: gateway_key("gateway-ec.key", ""),
        ..Default::default()
    })
    .await;
    let upstream_before = h.echo.request_count();
    let (client, _jar) = h.browser();
    let flow = h.login_flow(&client, "/private").await;
    let cb = &flow.callback;
    assert_eq!(cb.status, 400, "{cb:?}");
    assert!(!cb.sets_session(h.cookie), "{cb:?}");
    assert!(
        cb.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{cb:?}"
    );
    assert!(cb.body.contains("refused"), "{cb:?}");
    for leak in ["BEGIN", "client_assertion", "invalid_client", "panicked"] {
        assert!(!cb.body.contains(leak), "error page shows {leak}: {cb:?}");
    }
    assert_eq!(h.gw.session_count(), 0);
    let resp = client.get(h.url("/private")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(h.echo.request_count(), upstream_before);
    let c = h.op.counters();
    assert_eq!(c.token, 1, "{c:?}");
    assert_eq!(c.token_private_key_jwt, 0, "{c:?}");
}

/// A gateway still configured for a client secret is refused by a
/// provider that only takes `private_key_jwt`.
#[tokio::test]
async fn client_secret_refused_by_private_key_jwt_client() {
    let h = Harness::with(Options {
        op_client_auth: Some(registered("gateway.key")),
        ..Default::default()
    })
    .await;
    let (client, _jar) = h.browser();
    let flow = h.login_flow(&client, "/private").await;
    assert_eq!(flow.callback.status, 400, "{:?}", flow.callback);
    assert_eq!(h.gw.session_count(), 0);
}
