//! `examples/axum.rs`: the example's router, built in-process and driven
//! with `tower::ServiceExt::oneshot` against the development provider.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/axum.rs"]
mod example;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt as _;
use oidc_gateway::config::{OidcConfig, ProcessEnv};
use oidc_gateway::devtools::provider::DevProvider;
use oidc_gateway::OidcLayer;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tower::ServiceExt as _;

async fn setup() -> (DevProvider, axum::Router) {
    let (op, app, _) = setup_with_store().await;
    (op, app)
}

/// The example's router with its own [`example::AuditedStore`]; the
/// counter is the store's count of sign-ins.
async fn setup_with_store() -> (DevProvider, axum::Router, Arc<AtomicU64>) {
    let op = DevProvider::builder()
        .client_secret("axum-example-secret")
        .auto_login("carol")
        .start()
        .await
        .unwrap();
    let toml = example::config_toml(op.issuer(), op.client_secret(), "http://127.0.0.1:3000");
    let config = OidcConfig::from_toml_str(&toml, &ProcessEnv).unwrap();
    let sign_ins = Arc::new(AtomicU64::new(0));
    let layer = OidcLayer::builder(config)
        .session_store(example::AuditedStore::new(100, sign_ins.clone()))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !layer.is_ready() {
        assert!(Instant::now() < deadline, "layer never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (op, example::router(layer), sign_ins)
}

async fn call(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, bytes)
}

#[tokio::test]
async fn axum_example_without_credentials_is_401() {
    let (_op, app) = setup().await;
    let req = Request::get("/api/me").body(Body::empty()).unwrap();
    let (status, headers, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers
        .get(header::WWW_AUTHENTICATE)
        .is_some_and(|v| v.as_bytes().starts_with(b"Bearer")));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["error"].is_string());
}

#[tokio::test]
async fn axum_example_with_bearer_token_is_200_with_identity() {
    let (op, app) = setup().await;
    let token = op.mint_access_token(json!({"sub": "bob"}));
    let req = Request::get("/api/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["subject"], "bob");
    assert_eq!(v["email"], "bob@example.com");
    // A forged token is refused.
    let forged = oidc_gateway::devtools::provider::corrupt_signature(&token);
    let req = Request::get("/api/me")
        .header(header::AUTHORIZATION, format!("Bearer {forged}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn axum_example_public_route_and_browser_redirect() {
    let (op, app) = setup().await;
    let req = Request::get("/public/hello").body(Body::empty()).unwrap();
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"hello, anyone\n");
    let req = Request::get("/")
        .header(header::ACCEPT, "text/html")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = call(&app, req).await;
    assert_eq!(status, StatusCode::FOUND);
    let loc = headers.get(header::LOCATION).unwrap().to_str().unwrap();
    assert!(loc.starts_with(op.issuer()), "{loc}");
}

/// The cookie pairs (`name=value`) a response sets.
fn set_cookies(headers: &axum::http::HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.contains("Max-Age=0"))
        .filter_map(|v| v.split(';').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn axum_example_browser_login_lands_in_the_applications_own_store() {
    let (op, app, sign_ins) = setup_with_store().await;
    // 1. The browser is sent to the provider, with a login cookie.
    let req = Request::get("/api/me")
        .header(header::ACCEPT, "text/html")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = call(&app, req).await;
    assert_eq!(status, StatusCode::FOUND);
    let authorize = headers
        .get(header::LOCATION)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let login_cookies = set_cookies(&headers);
    assert_eq!(login_cookies.len(), 1, "{login_cookies:?}");
    // 2. The provider (auto-login) answers with the code.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client.get(&authorize).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let back = resp.headers()["location"].to_str().unwrap().to_string();
    let back = url::Url::parse(&back).unwrap();
    assert_eq!(back.path(), "/oauth2/callback");
    // 3. The callback opens the session in the application's store.
    assert_eq!(sign_ins.load(Ordering::Relaxed), 0);
    let req = Request::get(format!("/oauth2/callback?{}", back.query().unwrap()))
        .header(header::COOKIE, login_cookies.join("; "))
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = call(&app, req).await;
    assert_eq!(
        status,
        StatusCode::FOUND,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(headers[header::LOCATION], "/api/me");
    assert_eq!(sign_ins.load(Ordering::Relaxed), 1);
    let session = set_cookies(&headers)
        .into_iter()
        .find(|c| c.starts_with("oidc-gateway="))
        .expect("session cookie");
    // 4. The session identifies the user.
    let req = Request::get("/api/me")
        .header(header::COOKIE, session)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["subject"], "carol");
    drop(op);
}
