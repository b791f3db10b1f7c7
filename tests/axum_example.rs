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
use oidc_gateway::auth::OidcLayer;
use oidc_gateway::config::{GatewayConfig, ProcessEnv};
use oidc_gateway::devtools::provider::DevProvider;
use serde_json::{json, Value};
use tower::ServiceExt as _;

async fn setup() -> (DevProvider, axum::Router) {
    let op = DevProvider::builder()
        .client_secret("axum-example-secret")
        .start()
        .await
        .unwrap();
    let toml = example::config_toml(op.issuer(), op.client_secret(), "http://127.0.0.1:3000");
    let config = GatewayConfig::from_toml_str(&toml, &ProcessEnv).unwrap();
    let layer = OidcLayer::from_config(&config, Default::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !layer.is_ready() {
        assert!(Instant::now() < deadline, "layer never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (op, example::router(layer))
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
