//! The layer over an echo service, against the development provider, with
//! a pinned clock: what reaches the inner service, and every rejection.
#![cfg(feature = "devtools")]

use crate::clock::{system_now_secs, Clock, ManualClock};
use crate::config::OidcConfig;
use crate::devtools::provider::DevProvider;
use crate::{Identity, OidcLayer};
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tower::{Service, ServiceExt};

const SECRET: &str = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";

/// What the inner service saw: the headers it got and the identity.
fn echo(
    req: Request<Empty<Bytes>>,
) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    let who = req
        .extensions()
        .get::<Arc<Identity>>()
        .map(|i| i.subject.clone());
    let seen = json!({
        "who": who,
        "user": req.headers().get("x-auth-request-user").and_then(|v| v.to_str().ok()),
        "groups": req.headers().get("x-auth-request-groups").and_then(|v| v.to_str().ok()),
        "cookie": req.headers().get(COOKIE).and_then(|v| v.to_str().ok()),
        "path": req.uri().path(),
    });
    std::future::ready(Ok(Response::new(Full::new(Bytes::from(seen.to_string())))))
}

struct Harness {
    op: DevProvider,
    clock: Arc<ManualClock>,
    layer: OidcLayer,
}

async fn harness(routes: &str) -> Harness {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let op = DevProvider::builder()
        .client_secret("layer-test-secret")
        .auto_login("alice")
        .start()
        .await
        .unwrap();
    let toml = format!(
        r#"
        public_url = "http://app.test"
        [provider]
        issuer = "{}"
        client_id = "{}"
        client_secret = "layer-test-secret"
        [session]
        secret = "{SECRET}"
        lifetime = "1h"
        {routes}
        "#,
        op.issuer(),
        op.client_id()
    );
    let config = OidcConfig::from_toml_str(&toml, &std::collections::HashMap::new()).unwrap();
    let clock = Arc::new(ManualClock::new(system_now_secs()));
    let layer = OidcLayer::builder(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    for _ in 0..500 {
        if layer.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(layer.is_ready());
    Harness { op, clock, layer }
}

impl Harness {
    async fn call(&self, req: Request<Empty<Bytes>>) -> (StatusCode, HeaderMap, serde_json::Value) {
        let mut svc = tower_layer::Layer::layer(&self.layer, tower::service_fn(echo));
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    /// A full browser login (auto-login at the provider): the session cookie.
    async fn login(&self) -> String {
        let (status, headers, _) = self
            .call(
                Request::get("/")
                    .header(ACCEPT, "text/html")
                    .body(Empty::new())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::FOUND);
        let authorize = headers[LOCATION].to_str().unwrap().to_string();
        let login_cookie = first_cookie(&headers);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let back = client.get(&authorize).send().await.unwrap();
        let back = url::Url::parse(back.headers()["location"].to_str().unwrap()).unwrap();
        let (status, headers, _) = self
            .call(
                Request::get(format!("/oauth2/callback?{}", back.query().unwrap()))
                    .header(COOKIE, login_cookie)
                    .body(Empty::new())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::FOUND);
        first_cookie(&headers)
    }
}

/// The first cookie a response sets that is not a deletion.
fn first_cookie(headers: &HeaderMap) -> String {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| !v.contains("Max-Age=0"))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string()
}

fn get(path: &str) -> http::request::Builder {
    Request::get(path)
}

#[tokio::test]
async fn layer_api_request_without_credentials_is_401_with_bearer_challenge() {
    let h = harness("").await;
    let (status, headers, body) = h.call(get("/api").body(Empty::new()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[WWW_AUTHENTICATE], "Bearer");
    assert_eq!(body["error"], "unauthorized");
}

#[tokio::test]
async fn layer_navigation_without_session_redirects_with_state_nonce_and_pkce() {
    let h = harness("").await;
    let req = get("/app?x=1")
        .header(ACCEPT, "text/html")
        .body(Empty::new())
        .unwrap();
    let (status, headers, _) = h.call(req).await;
    assert_eq!(status, StatusCode::FOUND);
    let location = url::Url::parse(headers[LOCATION].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    for key in [
        "state",
        "nonce",
        "code_challenge",
        "redirect_uri",
        "client_id",
    ] {
        assert!(q.contains_key(key), "{key} missing from {location}");
    }
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], "http://app.test/oauth2/callback");
    assert!(first_cookie(&headers).starts_with("oidc-gateway-login-"));
}

#[tokio::test]
async fn layer_strips_client_identity_headers_on_public_routes() {
    let h = harness("[[route]]\npath = \"/public/\"\nauth = \"none\"").await;
    let req = get("/public/x")
        .header("x-auth-request-user", "admin")
        .header("X_Auth_Request_User", "admin")
        .body(Empty::new())
        .unwrap();
    let (status, _, seen) = h.call(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["user"], serde_json::Value::Null);
    assert_eq!(seen["who"], serde_json::Value::Null);
}

#[tokio::test]
async fn layer_bearer_token_sets_identity_and_replaces_forged_headers() {
    let h = harness("").await;
    let token = h.op.mint_access_token(json!({"sub": "bob"}));
    let req = get("/api")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header("x-auth-request-user", "admin")
        .body(Empty::new())
        .unwrap();
    let (status, _, seen) = h.call(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["who"], "bob");
    assert_eq!(seen["user"], "bob");
}

#[tokio::test]
async fn layer_cached_bearer_token_is_refused_once_the_clock_passes_exp() {
    let h = harness("").await;
    let exp = h.clock.now_secs() + 120;
    let token = h.op.mint_access_token(json!({"sub": "bob", "exp": exp}));
    let req = || {
        get("/api")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Empty::new())
            .unwrap()
    };
    assert_eq!(h.call(req()).await.0, StatusCode::OK);
    assert_eq!(h.call(req()).await.0, StatusCode::OK, "from the cache");
    // Past exp and the leeway: neither the cache nor the verifier accepts it.
    h.clock.set(exp + 61);
    let (status, headers, _) = h.call(req()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[WWW_AUTHENTICATE], "Bearer error=\"invalid_token\"");
}

#[tokio::test]
async fn layer_session_works_until_its_lifetime_on_a_pinned_clock() {
    let h = harness("").await;
    let cookie = h.login().await;
    let req = || {
        get("/api")
            .header(COOKIE, cookie.as_str())
            .body(Empty::new())
            .unwrap()
    };
    let (status, _, seen) = h.call(req()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["who"], "alice");
    assert_eq!(
        seen["cookie"],
        serde_json::Value::Null,
        "gateway cookies are removed"
    );
    h.clock.advance(3600 - 1);
    assert_eq!(h.call(req()).await.0, StatusCode::OK);
    h.clock.advance(1);
    assert_eq!(h.call(req()).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn layer_route_policy_refuses_identity_outside_allowed_groups() {
    let h = harness(
        "[[route]]\npath = \"/admin/\"\nallowed_groups = [\"admins\"]\n\
         [[route]]\npath = \"/users/\"\nallowed_groups = [\"users\"]",
    )
    .await;
    let token =
        h.op.mint_access_token(json!({"sub": "bob", "groups": ["users"]}));
    let req = |path: &str| {
        get(path)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Empty::new())
            .unwrap()
    };
    let (status, _, body) = h.call(req("/admin/panel")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "forbidden");
    // Normalized before matching: no way around the policy by spelling.
    assert_eq!(
        h.call(req("/users/../admin/panel")).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _, seen) = h.call(req("/users/list")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["groups"], "users");
}

#[tokio::test]
async fn layer_ambiguous_path_is_400() {
    let h = harness("").await;
    let (status, _, body) = h
        .call(get("/a/%2e%2e%2fb").body(Empty::new()).unwrap())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_path");
}

#[tokio::test]
async fn layer_forward_auth_applies_the_route_of_the_original_uri() {
    let h = harness("[[route]]\npath = \"/admin/\"\nallowed_groups = [\"admins\"]").await;
    let token =
        h.op.mint_access_token(json!({"sub": "bob", "groups": ["users"]}));
    let check = |uri: &str| {
        get("/oauth2/auth")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header("x-forwarded-uri", uri)
            .body(Empty::new())
            .unwrap()
    };
    let (status, headers, _) = h.call(check("/home")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["x-auth-request-user"], "bob");
    assert_eq!(h.call(check("/admin/x")).await.0, StatusCode::FORBIDDEN);
    let anonymous = get("/oauth2/auth").body(Empty::new()).unwrap();
    assert_eq!(h.call(anonymous).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn layer_only_the_bearer_scheme_is_ours() {
    let h = harness("").await;
    let with_auth = |value: &str| {
        get("/api")
            .header(AUTHORIZATION, value)
            .body(Empty::new())
            .unwrap()
    };
    // Basic is the application's: no challenge about a token.
    let (status, headers, _) = h.call(with_auth("Basic YWxpY2U6cHc=")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[WWW_AUTHENTICATE], "Bearer");
    // An empty or glued Bearer credential is an invalid token.
    for value in ["Bearer ", "Bearerabc", "bearer"] {
        let (status, headers, _) = h.call(with_auth(value)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
        assert_eq!(
            headers[WWW_AUTHENTICATE], "Bearer error=\"invalid_token\"",
            "{value}"
        );
    }
    // The scheme is case-insensitive.
    let token = h.op.mint_access_token(json!({"sub": "bob"}));
    let (status, _, seen) = h.call(with_auth(&format!("bEaReR {token}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["who"], "bob");
}

#[tokio::test]
async fn layer_bearer_token_wins_over_a_session_and_a_bad_one_is_401_even_with_a_session() {
    let h = harness("").await;
    let cookie = h.login().await;
    let token = h.op.mint_access_token(json!({"sub": "bob"}));
    let req = |auth: &str| {
        get("/api")
            .header(COOKIE, cookie.as_str())
            .header(AUTHORIZATION, auth)
            .body(Empty::new())
            .unwrap()
    };
    let (status, _, seen) = h.call(req(&format!("Bearer {token}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["who"], "bob");
    let forged = crate::devtools::provider::corrupt_signature(&token);
    assert_eq!(
        h.call(req(&format!("Bearer {forged}"))).await.0,
        StatusCode::UNAUTHORIZED
    );
}
