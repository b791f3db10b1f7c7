//! Issue 9, items 4–8 and the bearer statuses, end to end against the
//! in-process DevProvider: algorithms that fit the provider (advertised
//! ones by default, HMAC ID tokens only when listed), userinfo enrichment
//! of bearer tokens, tokens of a second issuer (`[[bearer.issuer]]`),
//! bearer-only setups without discovery, the JWKS refetch right after the
//! start-up fetch, 403 `insufficient_scope` and 503 when the provider does
//! not answer. The real npm `oidc-provider` (tests/oidc-provider) serves as
//! a second issuer found by discovery.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use oidc_gateway::devtools::provider::{DevProvider, SigningAlg};
use reqwest::header::AUTHORIZATION;
use serde_json::json;
use support::{Fault, Harness, Options, Resp};

async fn get_with_token(h: &Harness, path: &str, token: &str) -> Resp {
    Resp::of(
        h.api()
            .get(h.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn assert_invalid_token(resp: &Resp, what: &str) {
    assert_eq!(resp.status, 401, "{what}: {resp:?}");
    assert!(
        resp.header("www-authenticate")
            .is_some_and(|v| v.contains(r#"error="invalid_token""#)),
        "{what}: {resp:?}"
    );
}

// ===== statuses =====

#[tokio::test]
async fn bearer_missing_required_scope_is_403_insufficient_scope_naming_the_scopes() {
    let h = Harness::with(Options {
        bearer: "required_scopes = [\"api:read\", \"api:write\"]\nintrospection = true".into(),
        ..Options::default()
    })
    .await;
    for (what, token) in [
        (
            "jwt",
            h.op.mint_access_token(json!({"scope": "openid api:read"})),
        ),
        (
            "opaque",
            h.op.mint_opaque_token(json!({"scope": "api:read"})),
        ),
    ] {
        let resp = get_with_token(&h, "/api", &token).await;
        assert_eq!(resp.status, 403, "{what}: {resp:?}");
        assert_eq!(
            resp.header("www-authenticate"),
            Some(r#"Bearer error="insufficient_scope", scope="api:read api:write""#),
            "{what}"
        );
        assert_eq!(resp.json()["error"], "insufficient_scope", "{what}");
    }
    let ok =
        h.op.mint_access_token(json!({"scope": "api:write openid api:read"}));
    assert_eq!(get_with_token(&h, "/api", &ok).await.status, 200);
    // Forward-auth answers the same.
    let resp = Resp::of(
        h.api()
            .get(h.url("/oauth2/auth"))
            .header(
                AUTHORIZATION,
                format!("Bearer {}", h.op.mint_access_token(json!({}))),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 403, "{resp:?}");
    assert_eq!(h.echo.request_count(), 1);
}

#[tokio::test]
async fn bearer_introspection_outage_is_503_fail_closed_and_never_cached() {
    let h = Harness::with(Options {
        bearer: "introspection = true".into(),
        provider: "http_timeout = \"1s\"".into(),
        ..Options::default()
    })
    .await;
    let token = h.op.mint_opaque_token(json!({}));
    for fault in [
        Fault::IntrospectionUnavailable,
        Fault::IntrospectionDelay(Duration::from_secs(3)),
    ] {
        h.op.set_fault(fault.clone());
        let resp = get_with_token(&h, "/api", &token).await;
        assert_eq!(resp.status, 503, "{fault:?}: {resp:?}");
        assert_eq!(resp.json()["error"], "temporarily_unavailable");
        assert!(resp.header("www-authenticate").is_none());
        h.op.clear_faults();
    }
    assert_eq!(h.echo.request_count(), 0, "fail closed");
    // The outage was not cached: the provider answers now, and so do we.
    let resp = get_with_token(&h, "/api", &token).await;
    assert_eq!(resp.status, 200, "{resp:?}");
}

// ===== item 4: algorithms =====

#[tokio::test]
async fn default_algorithms_are_what_discovery_advertises() {
    let h = Harness::with(Options {
        faults_before_start: vec![Fault::AdvertisedIdTokenAlgs(Some(vec![
            "RS256".into(),
            "HS256".into(),
        ]))],
        ..Options::default()
    })
    .await;
    let rs = h.op.mint_access_token(json!({}));
    assert_eq!(get_with_token(&h, "/api", &rs).await.status, 200);
    // ES256 is safe, but this provider does not advertise it.
    h.op.set_signing_alg(SigningAlg::Es256);
    let es = h.op.mint_access_token(json!({}));
    assert_invalid_token(&get_with_token(&h, "/api", &es).await, "es256");
    // HS256 advertised is still never taken from discovery.
    h.op.set_signing_alg(SigningAlg::Hs256ClientSecret);
    let hs = h.op.mint_access_token(json!({}));
    assert_invalid_token(&get_with_token(&h, "/api", &hs).await, "hs256");
}

#[tokio::test]
async fn default_algorithm_without_advertised_list_is_rs256() {
    let h = Harness::with(Options {
        faults_before_start: vec![Fault::AdvertisedIdTokenAlgs(None)],
        ..Options::default()
    })
    .await;
    let rs = h.op.mint_access_token(json!({}));
    assert_eq!(get_with_token(&h, "/api", &rs).await.status, 200);
    h.op.set_signing_alg(SigningAlg::Es256);
    let es = h.op.mint_access_token(json!({}));
    assert_invalid_token(&get_with_token(&h, "/api", &es).await, "es256");
}

#[tokio::test]
async fn hs256_id_tokens_with_the_client_secret_log_in_only_when_listed() {
    let h = Harness::with(Options {
        provider: "allowed_algorithms = [\"RS256\", \"HS256\"]".into(),
        ..Options::default()
    })
    .await;
    h.op.set_signing_alg(SigningAlg::Hs256ClientSecret);
    let (client, _jar) = h.browser();
    h.login(&client, "/app").await;
    // The same provider's HS256 access token is refused as a bearer token.
    let hs = h.op.mint_access_token(json!({}));
    assert_invalid_token(&get_with_token(&h, "/api", &hs).await, "hs256 bearer");

    // Not listed: the HS256 ID token fails the login.
    let h = Harness::start().await;
    h.op.set_signing_alg(SigningAlg::Hs256ClientSecret);
    let (client, _jar) = h.browser();
    let flow = h.login_flow(&client, "/app").await;
    assert_eq!(flow.callback.status, 401, "{:?}", flow.callback);
    assert!(!flow.callback.sets_session(h.cookie));
}

// ===== item 5: userinfo for bearer tokens =====

#[tokio::test]
async fn bearer_userinfo_adds_email_and_groups_once_per_token() {
    let h = Harness::with(Options {
        bearer: "userinfo = true\nintrospection = true".into(),
        ..Options::default()
    })
    .await;
    h.op.set_user_claims(
        "carol",
        json!({"email": "carol@example.com", "groups": ["ops"]}),
    );
    let token = h.op.mint_access_token(json!({
        "sub": "carol", "email": null, "groups": null, "preferred_username": null,
    }));
    h.op.reset_counters();
    let resps =
        futures_util::future::join_all((0..8).map(|_| get_with_token(&h, "/api", &token))).await;
    for r in &resps {
        assert_eq!(r.status, 200, "{r:?}");
    }
    let hd = &h.last_upstream()["headers"];
    assert_eq!(hd["x-auth-request-user"], "carol");
    assert_eq!(hd["x-auth-request-email"], "carol@example.com");
    assert_eq!(hd["x-auth-request-groups"], "ops");
    assert_eq!(get_with_token(&h, "/api", &token).await.status, 200);
    assert_eq!(h.op.counters().userinfo, 1, "single flight, then cached");

    // Introspected tokens get it too.
    let opaque =
        h.op.mint_opaque_token(json!({"sub": "carol", "email": null}));
    assert_eq!(get_with_token(&h, "/api", &opaque).await.status, 200);
    assert_eq!(
        h.last_upstream()["headers"]["x-auth-request-email"],
        "carol@example.com"
    );
    assert_eq!(h.op.counters().userinfo, 2);
}

#[tokio::test]
async fn bearer_userinfo_other_sub_is_401_outage_is_503_not_cached() {
    let h = Harness::with(Options {
        bearer: "userinfo = true".into(),
        provider: "http_timeout = \"1s\"".into(),
        ..Options::default()
    })
    .await;
    h.op.set_fault(Fault::UserinfoSubMismatch);
    let t1 = h.op.mint_access_token(json!({}));
    assert_invalid_token(&get_with_token(&h, "/api", &t1).await, "sub mismatch");
    for fault in [
        Fault::UserinfoUnavailable,
        Fault::UserinfoDelay(Duration::from_secs(3)),
    ] {
        h.op.clear_faults();
        h.op.set_fault(fault.clone());
        let t = h.op.mint_access_token(json!({}));
        let resp = get_with_token(&h, "/api", &t).await;
        assert_eq!(resp.status, 503, "{fault:?}: {resp:?}");
        h.op.clear_faults();
        // Well past the short single-flight window: the outage is not kept.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(
            get_with_token(&h, "/api", &t).await.status,
            200,
            "{fault:?}"
        );
    }
    assert_eq!(h.echo.request_count(), 2);
}

// ===== item 6: a second issuer =====

#[tokio::test]
async fn bearer_second_issuer_tokens_accepted_by_their_iss_and_keys_only() {
    support::install_crypto_provider();
    let ci = DevProvider::builder()
        .client_id("ci-runner")
        .start()
        .await
        .unwrap();
    let stranger = DevProvider::builder().start().await.unwrap();
    let h = Harness::with(Options {
        bearer: format!(
            "[[bearer.issuer]]\nissuer = \"{}\"\naudiences = [\"deploy-api\"]\n",
            ci.issuer()
        ),
        ..Options::default()
    })
    .await;
    // The gateway loads the second issuer's keys in the background.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let ci_token = ci.mint_access_token(json!({"sub": "pipeline-7", "aud": "deploy-api"}));
    loop {
        let resp = get_with_token(&h, "/api", &ci_token).await;
        if resp.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{resp:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        h.last_upstream()["headers"]["x-auth-request-user"],
        "pipeline-7"
    );
    // The login provider's tokens still work.
    let own = h.op.mint_access_token(json!({}));
    assert_eq!(get_with_token(&h, "/api", &own).await.status, 200);
    // The second issuer's token for another audience, or for the login
    // provider's client id, is refused: its audiences are its own.
    for aud in ["other", "gateway"] {
        let t = ci.mint_access_token(json!({"aud": aud}));
        assert_invalid_token(&get_with_token(&h, "/api", &t).await, aud);
    }
    // An issuer not configured: 401.
    let t = stranger.mint_access_token(json!({"aud": "deploy-api"}));
    assert_invalid_token(&get_with_token(&h, "/api", &t).await, "unknown iss");
    // Its own JWKS follows its key rotation.
    ci.rotate_keys().unwrap();
    ci.reset_counters();
    let rotated = ci.mint_access_token(json!({"aud": "deploy-api", "sub": "pipeline-8"}));
    assert_eq!(get_with_token(&h, "/api", &rotated).await.status, 200);
    assert_eq!(ci.counters().jwks, 1);
    // The second issuer's iss signed with the login provider's key: only
    // the second issuer's keys count.
    let forged = h.op.sign_claims(&json!({
        "iss": ci.issuer(), "sub": "root", "aud": "deploy-api",
        "exp": support::now_secs() + 60, "iat": support::now_secs(),
    }));
    assert_invalid_token(&get_with_token(&h, "/api", &forged).await, "forged");
    assert_eq!(
        h.op.counters().jwks,
        1,
        "the login provider's JWKS was fetched once, at start"
    );
}

// ===== item 7: bearer-only, no discovery =====

#[tokio::test]
async fn bearer_only_without_discovery_validates_jwts_and_browsers_get_401() {
    let h = Harness::with(Options {
        provider: "discovery = false\njwks_uri = \"@OP_ISSUER@/jwks\"".into(),
        ..Options::default()
    })
    .await;
    assert_eq!(h.op.counters().discovery, 0);
    let token = h.op.mint_access_token(json!({}));
    assert_eq!(get_with_token(&h, "/api", &token).await.status, 200);
    let (client, _jar) = h.browser();
    let nav = h.navigate(&client, "/app").await;
    assert_eq!(nav.status, 401, "{nav:?}");
    assert!(nav.location().is_none());
    assert!(nav.body.contains("bearer tokens only"), "{}", nav.body);
    let start = h.navigate(&client, "/oauth2/start?rd=/app").await;
    assert_eq!(start.status, 401, "{start:?}");
    assert_eq!(h.op.counters().authorize, 0);
}

// ===== item 8: JWKS refetch right after the start-up fetch =====

#[tokio::test]
async fn bearer_unknown_kid_right_after_start_up_fetch_is_followed_at_once() {
    let h = Harness::with(Options {
        provider: "jwks_min_refresh_interval = \"1h\"".into(),
        ..Options::default()
    })
    .await;
    assert_eq!(h.op.counters().jwks, 1, "the start-up fetch");
    h.op.rotate_keys().unwrap();
    let token = h.op.mint_access_token(json!({}));
    assert_eq!(get_with_token(&h, "/api", &token).await.status, 200);
    assert_eq!(h.op.counters().jwks, 2, "the first unknown kid is followed");
    h.op.rotate_keys().unwrap();
    let again = h.op.mint_access_token(json!({}));
    assert_invalid_token(&get_with_token(&h, "/api", &again).await, "repeated miss");
    assert_eq!(
        h.op.counters().jwks,
        2,
        "a repeated miss waits for the window"
    );
}

// ===== a real provider (npm oidc-provider) as a second issuer =====

/// `node tests/oidc-provider/server.mjs` on a free port; killed on drop.
/// Needs Node.js >= 20 (`npm ci --prefix tests/oidc-provider` runs when
/// its modules are missing); fails, never skips, without it.
struct NodeIssuer {
    child: std::process::Child,
    dir: support::TempDir,
    issuer: String,
    secret: String,
}

impl NodeIssuer {
    const RESOURCE: &'static str = "urn:oidc-gateway:api";

    async fn start() -> Self {
        use std::process::{Command, Stdio};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider");
        if !root
            .join("node_modules/oidc-provider/package.json")
            .exists()
        {
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&root)
                .output()
                .expect("npm (Node.js >= 20) is needed: apt-get install nodejs npm");
            assert!(out.status.success(), "npm ci failed: {out:?}");
        }
        let dir = support::TempDir::new("oidc-provider-issuer");
        let secret = support::random_token(24);
        let stdout_path = dir.path().join("op.stdout");
        let child = Command::new("node")
            .arg("server.mjs")
            .args(["--port", "0", &format!("--client-secret={secret}")])
            .args(["--resource", Self::RESOURCE])
            .args(["--redirect-uri", "http://127.0.0.1:9/unused"])
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(dir.path().join("op.stderr")).unwrap())
            .spawn()
            .expect("node (>= 20) is needed: apt-get install nodejs npm");
        // Owned at once, so that a failed start still kills the child.
        let mut node = NodeIssuer {
            child,
            dir,
            issuer: String::new(),
            secret,
        };
        // Generous: node starts slowly on a loaded machine.
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        loop {
            let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(line) = out.lines().find(|l| l.starts_with("listening on ")) {
                let issuer = line["listening on ".len()..].trim().trim_end_matches('/');
                node.issuer = issuer.to_string();
                return node;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "oidc-provider did not start:\n{out}\n{}",
                support::tail_of(&node.dir.path().join("op.stderr"), 4096)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client-credentials JWT access token for [`Self::RESOURCE`]
    /// (`sub` = the client id `gateway`).
    async fn client_credentials_token(&self) -> String {
        let client = support::api_client(None);
        let discovery: serde_json::Value = client
            .get(format!("{}/.well-known/openid-configuration", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let resp = client
            .post(discovery["token_endpoint"].as_str().unwrap())
            .basic_auth("gateway", Some(&self.secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", Self::RESOURCE),
                ("scope", "api:read"),
            ])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }
}

impl Drop for NodeIssuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "{}",
                support::tail_of(&self.dir.path().join("op.stderr"), 4096)
            );
        }
    }
}

#[tokio::test]
async fn bearer_real_oidc_provider_as_second_issuer_by_discovery() {
    let node = NodeIssuer::start().await;
    let h = Harness::with(Options {
        bearer: format!(
            "[[bearer.issuer]]\nissuer = \"{}\"\naudiences = [\"{}\"]\n",
            node.issuer,
            NodeIssuer::RESOURCE
        ),
        ..Options::default()
    })
    .await;
    let token = node.client_credentials_token().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = get_with_token(&h, "/api", &token).await;
        if resp.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{resp:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        h.last_upstream()["headers"]["x-auth-request-user"],
        "gateway"
    );
    // Its token is for its resource; the login provider's audience list
    // does not apply to it, nor its to the login provider's tokens.
    let own = h.op.mint_access_token(json!({"aud": NodeIssuer::RESOURCE}));
    assert_invalid_token(
        &get_with_token(&h, "/api", &own).await,
        "login provider, other aud",
    );
}
