//! The assembled gateway: identity-header spoofing, path normalization and
//! route policies, forward-auth, the admin listener and upstream failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, COOKIE};
use serde_json::{json, Value};
use support::{free_port, raw_http, Fault, Harness, Options, Resp};

const IDENTITY: [&str; 4] = [
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
];

fn upstream_headers(h: &Harness) -> Value {
    h.last_upstream()["headers"].clone()
}

/// No identity header, nor an underscore look-alike, reached the upstream.
fn assert_no_identity(headers: &Value, what: &str) {
    let map = headers.as_object().unwrap();
    for name in map.keys() {
        let n = name.replace('_', "-");
        assert!(
            !IDENTITY.contains(&n.as_str()),
            "{what}: upstream got {name}: {:?}",
            map[name]
        );
    }
}

fn spoofed(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("X-Auth-Request-User", "admin")
        .header("X_Auth_Request_User", "admin")
        .header("x-auth-request-email", "admin@evil.example")
        .header("X-AUTH-REQUEST-GROUPS", "admins")
        .header("x_auth_request_preferred_username", "root")
}

fn bearer(h: &Harness, claims: Value) -> String {
    format!("Bearer {}", h.op.mint_access_token(claims))
}

// ===== identity header spoofing =====

#[tokio::test]
async fn spoofed_identity_headers_never_reach_public_route() {
    let h = Harness::start().await;
    let resp = spoofed(h.api().get(h.url("/public/page")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let hd = upstream_headers(&h);
    assert_no_identity(&hd, "public route");
    // Twin: other headers pass.
    let resp = h
        .api()
        .get(h.url("/public/page"))
        .header("X-Custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream_headers(&h)["x-custom"], "kept");
}

#[tokio::test]
async fn spoofed_identity_headers_replaced_on_protected_route() {
    let h = Harness::start().await;
    // Bearer.
    let resp = spoofed(h.api().get(h.url("/private")))
        .header(AUTHORIZATION, bearer(&h, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let hd = upstream_headers(&h);
    assert_eq!(hd["x-auth-request-user"], "alice");
    assert_eq!(hd["x-auth-request-email"], "alice@example.com");
    assert_eq!(hd["x-auth-request-groups"], "users");
    assert_eq!(hd["x-auth-request-preferred-username"], "alice");
    for n in ["x_auth_request_user", "x_auth_request_preferred_username"] {
        assert!(hd.get(n).is_none(), "{n} passed: {hd}");
    }
    // Session.
    let (client, _jar) = h.browser();
    h.login(&client, "/").await;
    let resp = spoofed(client.get(h.url("/private"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let hd = upstream_headers(&h);
    assert_eq!(hd["x-auth-request-user"], "alice");
    assert!(hd.get("x_auth_request_user").is_none(), "{hd}");
    // Unauthenticated spoofing reaches nothing.
    let before = h.echo.request_count();
    let resp = spoofed(h.api().get(h.url("/private")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(h.echo.request_count(), before);
}

/// A client over TLS that offers only ALPN `h2` (so every request is
/// HTTP/2), trusting the test CA, with a cookie jar and no redirects.
fn h2_client() -> reqwest::Client {
    let mut tls =
        oidc_gateway::server::tls::client_config(Some(&support::certs_dir().join("ca.pem")))
            .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .no_proxy()
        .build()
        .unwrap()
}

#[tokio::test]
async fn spoofed_identity_headers_over_http2_never_reach_upstream() {
    let h = Harness::with(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    let client = h2_client();
    let twice = |req: reqwest::RequestBuilder| spoofed(req).header("x-auth-request-user", "root");

    // Public route: no identity header at all.
    let resp = twice(client.get(h.url("/public/page")))
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "ALPN h2");
    assert_eq!(resp.status(), 200);
    let hd = upstream_headers(&h);
    assert_no_identity(&hd, "public route over HTTP/2");
    assert_eq!(hd["x-custom"], "kept", "twin: other headers pass: {hd}");

    // Unauthenticated protected route: refused, nothing upstream.
    let before = h.echo.request_count();
    let resp = twice(client.get(h.url("/private"))).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 401);
    assert_eq!(h.echo.request_count(), before);

    // Bearer: only the gateway's values.
    let resp = twice(client.get(h.url("/private")))
        .header(AUTHORIZATION, bearer(&h, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let hd = upstream_headers(&h);
    assert_eq!(hd["x-auth-request-user"], "alice", "{hd}");
    assert_eq!(hd["x-auth-request-email"], "alice@example.com", "{hd}");
    assert_eq!(hd["x-auth-request-groups"], "users", "{hd}");
    assert_eq!(hd["x-auth-request-preferred-username"], "alice", "{hd}");
    for n in ["x_auth_request_user", "x_auth_request_preferred_username"] {
        assert!(hd.get(n).is_none(), "{n} passed: {hd}");
    }

    // Session (logged in over HTTP/2 too): only the gateway's values.
    h.login(&client, "/").await;
    let resp = twice(client.get(h.url("/private"))).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let hd = upstream_headers(&h);
    assert_eq!(hd["x-auth-request-user"], "alice", "{hd}");
    assert_eq!(hd["x-auth-request-email"], "alice@example.com", "{hd}");
    assert!(hd.get("x_auth_request_user").is_none(), "{hd}");
}

#[tokio::test]
async fn connection_header_cannot_remove_gateway_identity_header() {
    let h = Harness::start().await;
    let token = h.op.mint_access_token(json!({}));
    let addr = h.gw.main_addr();
    let head = format!(
        "GET /private HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         X-Auth-Request-User: admin\r\nConnection: X-Auth-Request-User, X-Auth-Request-Email"
    );
    // raw_http appends its own `Connection: close`.
    let (status, text) = raw_http(addr, &head).await;
    assert_eq!(status, 200, "{text}");
    let hd = upstream_headers(&h);
    assert_eq!(hd["x-auth-request-user"], "alice", "{hd}");
    assert_eq!(hd["x-auth-request-email"], "alice@example.com", "{hd}");
}

#[tokio::test]
async fn claim_with_crlf_never_injects_a_header() {
    let h = Harness::start().await;
    h.op.set_user_claims(
        "alice",
        json!({"preferred_username": "a\r\nX-Admin: 1", "groups": ["x\r\nX-Group-Admin: 1"]}),
    );
    let (client, _jar) = h.browser();
    h.login(&client, "/").await;
    let resp = client.get(h.url("/private")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let via_session = upstream_headers(&h);
    let bearer_resp = h
        .api()
        .get(h.url("/private"))
        .header(AUTHORIZATION, bearer(&h, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer_resp.status(), 200);
    for hd in [via_session, upstream_headers(&h)] {
        let map = hd.as_object().unwrap();
        assert!(map.get("x-admin").is_none(), "{hd}");
        assert!(map.get("x-group-admin").is_none(), "{hd}");
        for (name, v) in map {
            let v = v.as_str().unwrap();
            assert!(!v.contains('\r') && !v.contains('\n'), "{name}: {v:?}");
        }
        let pu = map["x-auth-request-preferred-username"].as_str().unwrap();
        assert!(pu.starts_with('a'), "{pu}");
        assert_eq!(map["x-auth-request-user"], "alice");
    }
}

// ===== routes and paths =====

fn routes_options() -> Options {
    Options {
        routes: r#"
[[route]]
path = "/admin/"
allowed_groups = ["admins"]

[[route]]
path = "/corp/"
allowed_email_domains = ["corp.example"]
"#
        .into(),
        ..Options::default()
    }
}

#[tokio::test]
async fn public_route_reachable_without_login() {
    let h = Harness::start().await;
    let (client, _jar) = h.browser();
    let nav = h.navigate(&client, "/public/index.html").await;
    assert_eq!(nav.status, 200, "{nav:?}");
    assert_eq!(h.echo.request_count(), 1);
    assert_eq!(h.last_upstream()["path"], "/public/index.html");
    // Twin: outside the prefix, login is required.
    let nav = h.navigate(&client, "/publicity").await;
    assert_eq!(nav.status, 302);
    assert_eq!(h.echo.request_count(), 1);
}

#[tokio::test]
async fn encoded_dot_segments_escape_public_route_are_normalized() {
    let h = Harness::start().await;
    let addr = h.gw.main_addr();
    // Without credentials: /public/%2e%2e/private is /private → 401.
    let (status, text) = raw_http(
        addr,
        &format!("GET /public/%2e%2e/private HTTP/1.1\r\nHost: {addr}"),
    )
    .await;
    assert_eq!(status, 401, "{text}");
    let (status, _) = raw_http(
        addr,
        &format!("GET /public/%2E%2E/%2e%2E/private?q=1 HTTP/1.1\r\nHost: {addr}"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = raw_http(
        addr,
        &format!("GET /public/./../private HTTP/1.1\r\nHost: {addr}"),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(h.echo.request_count(), 0);
    // With credentials the upstream sees the normalized path.
    let token = h.op.mint_access_token(json!({}));
    let (status, text) = raw_http(
        addr,
        &format!(
            "GET /public/%2e%2e/private?q=1 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}"
        ),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let seen = h.last_upstream();
    assert_eq!(seen["path"], "/private");
    assert_eq!(seen["query"], "q=1");
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice");
}

#[tokio::test]
async fn ambiguous_paths_are_400() {
    let h = Harness::start().await;
    let addr = h.gw.main_addr();
    let token = h.op.mint_access_token(json!({}));
    for path in [
        "/public/..%2fprivate",
        "/public/..%2Fprivate",
        "/a%5cb",
        "/public/..%5cprivate",
        "/a%00b",
        "/a%0d%0ab",
        "/public/..;/private",
    ] {
        for auth in [String::new(), format!("\r\nAuthorization: Bearer {token}")] {
            let (status, text) =
                raw_http(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}{auth}")).await;
            assert_eq!(status, 400, "{path}: {text}");
        }
    }
    assert_eq!(h.echo.request_count(), 0);
    // Twin: a plain public path passes.
    let (status, _) = raw_http(addr, &format!("GET /public/a%20b HTTP/1.1\r\nHost: {addr}")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn allowed_groups_403_when_not_member_200_when_member() {
    let h = Harness::with(routes_options()).await;
    let resp = Resp::of(
        h.api()
            .get(h.url("/admin/panel"))
            .header(AUTHORIZATION, bearer(&h, json!({})))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 403, "{resp:?}");
    assert_eq!(h.echo.request_count(), 0);
    let resp = h
        .api()
        .get(h.url("/admin/panel"))
        .header(
            AUTHORIZATION,
            bearer(&h, json!({"groups": ["users", "admins"]})),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.echo.request_count(), 1);

    // Browser session: 403 page, then a member logs in and passes.
    let (client, _jar) = h.browser();
    h.login(&client, "/").await;
    let nav = h.navigate(&client, "/admin/panel").await;
    assert_eq!(nav.status, 403);
    h.op.set_user_claims("carol", json!({"groups": ["admins"]}));
    h.op.set_auto_login(Some("carol"));
    let (admin, _jar) = h.browser();
    h.login(&admin, "/").await;
    let nav = h.navigate(&admin, "/admin/panel").await;
    assert_eq!(nav.status, 200, "{nav:?}");
    assert_eq!(h.last_upstream()["headers"]["x-auth-request-user"], "carol");
}

#[tokio::test]
async fn allowed_email_domains_403_when_other_domain_200_when_matching() {
    let h = Harness::with(routes_options()).await;
    let resp = h
        .api()
        .get(h.url("/corp/wiki"))
        .header(AUTHORIZATION, bearer(&h, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    for evil in [
        "bob@corp.example.evil.com",
        "bob@evilcorp.example",
        "corp.example",
    ] {
        let resp = h
            .api()
            .get(h.url("/corp/wiki"))
            .header(AUTHORIZATION, bearer(&h, json!({"email": evil})))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{evil}");
    }
    assert_eq!(h.echo.request_count(), 0);
    let resp = h
        .api()
        .get(h.url("/corp/wiki"))
        .header(
            AUTHORIZATION,
            bearer(&h, json!({"sub": "bob", "email": "bob@corp.example"})),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.last_upstream()["headers"]["x-auth-request-user"], "bob");
}

// ===== forward-auth =====

#[tokio::test]
async fn forward_auth_202_with_session_or_bearer_401_without_403_by_policy() {
    let h = Harness::with(routes_options()).await;
    // Without credentials.
    for accept in ["*/*", "text/html"] {
        let resp = Resp::of(
            h.api()
                .get(h.url("/oauth2/auth"))
                .header(ACCEPT, accept)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status, 401, "{resp:?}");
        assert!(resp.header("location").is_none());
    }
    // Bearer.
    let resp = Resp::of(
        h.api()
            .get(h.url("/oauth2/auth"))
            .header(AUTHORIZATION, bearer(&h, json!({})))
            .header("X-Forwarded-Uri", "/app/x?y=1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 202, "{resp:?}");
    assert_eq!(resp.header("x-auth-request-user"), Some("alice"));
    assert_eq!(
        resp.header("x-auth-request-email"),
        Some("alice@example.com")
    );
    // Session.
    let (client, _jar) = h.browser();
    let session = h.login(&client, "/").await;
    let resp = Resp::of(
        h.api()
            .get(h.url("/oauth2/auth"))
            .header(COOKIE, format!("oidc-gateway={session}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 202, "{resp:?}");
    assert_eq!(resp.header("x-auth-request-user"), Some("alice"));
    // Policy refuses: alice is not in admins.
    for header in ["X-Forwarded-Uri", "X-Original-URI"] {
        let resp = h
            .api()
            .get(h.url("/oauth2/auth"))
            .header(COOKIE, format!("oidc-gateway={session}"))
            .header(header, "/admin/panel?x=1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{header}");
    }
    // Normalization applies to the forwarded URI too.
    let resp = h
        .api()
        .get(h.url("/oauth2/auth"))
        .header(COOKIE, format!("oidc-gateway={session}"))
        .header("X-Forwarded-Uri", "/public/%2e%2e/admin/panel")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Twin: an admin passes.
    let resp = h
        .api()
        .get(h.url("/oauth2/auth"))
        .header(AUTHORIZATION, bearer(&h, json!({"groups": ["admins"]})))
        .header("X-Forwarded-Uri", "/admin/panel")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // Forward-auth never proxies.
    assert_eq!(h.echo.request_count(), 0);
}

// ===== admin listener =====

#[tokio::test]
async fn admin_healthz_readyz_metrics() {
    let h = Harness::start().await;
    let get = |p: &str| reqwest::get(h.admin_url(p));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let _ = h.api().get(h.url("/public/x")).send().await.unwrap();
    let _ = h.api().get(h.url("/private")).send().await.unwrap();
    let metrics = h.metrics().await;
    assert!(metrics.contains("oidc_gateway_requests_total"), "{metrics}");
    assert!(
        metrics.contains(r#"oidc_gateway_requests_total{route="public",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"oidc_gateway_auth_outcomes_total{outcome="unauthenticated"} 1"#),
        "{metrics}"
    );
    // Admin paths are not served (nor proxied unauthenticated) on the main listener.
    let resp = h.api().get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(h.echo.request_count(), 1);
}

#[tokio::test]
async fn admin_readyz_503_until_provider_reachable_then_200() {
    let h = Harness::with(Options {
        faults_before_start: vec![Fault::DiscoveryUnavailable],
        wait_ready: false,
        ..Options::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let readyz = h.admin_url("/readyz");
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 503);
    assert_eq!(
        reqwest::get(h.admin_url("/healthz"))
            .await
            .unwrap()
            .status(),
        200,
        "alive while not ready"
    );
    // Login is impossible meanwhile: 502 page, no redirect, no session.
    let (client, _jar) = h.browser();
    let nav = h.navigate(&client, "/private").await;
    assert_eq!(nav.status, 502, "{nav:?}");
    assert!(!nav.sets_session(h.cookie));
    h.op.clear_faults();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if reqwest::get(&readyz).await.unwrap().status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(h.gw.is_ready());
}

// ===== upstream failures =====

#[tokio::test]
async fn upstream_down_is_502() {
    let h = Harness::with(Options {
        upstream_url: Some(format!("http://127.0.0.1:{}", free_port())),
        ..Options::default()
    })
    .await;
    let resp = h
        .api()
        .get(h.url("/private"))
        .header(AUTHORIZATION, bearer(&h, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let resp = h.api().get(h.url("/public/x")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
}

#[tokio::test]
async fn upstream_slow_is_504() {
    let h = Harness::with(Options {
        upstream: "timeout = \"300ms\"".into(),
        ..Options::default()
    })
    .await;
    let started = std::time::Instant::now();
    let resp = h
        .api()
        .get(h.url("/_echo/sleep/3000"))
        .header(AUTHORIZATION, bearer(&h, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    // Twin: a fast request through the same gateway is fine.
    let resp = h
        .api()
        .get(h.url("/_echo/sleep/10"))
        .header(AUTHORIZATION, bearer(&h, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
