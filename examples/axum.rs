//! An axum application protected by [`OidcLayer`], against the built-in
//! development OpenID Provider (any user name signs in).
//!
//! ```sh
//! cargo run --example axum            # then open the printed URL
//! PORT=3001 cargo run --example axum  # another port
//! ```
//!
//! Handlers read the caller from `Extension<Arc<Identity>>`: the layer puts
//! it there for every authenticated request (browser session or
//! `Authorization: Bearer <JWT>`). Routes with `auth = "none"` get no
//! identity. The layer also serves `/oauth2/*` (callback, sign-out, …).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use oidc_gateway::auth::{Identity, OidcLayer};
use oidc_gateway::config::{GatewayConfig, ProcessEnv};
use oidc_gateway::devtools::provider::DevProvider;

/// The application: `/` greets the signed-in user, `/api/me` returns the
/// identity as JSON, `/public/hello` needs no login.
pub fn router(layer: OidcLayer) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/api/me", get(me))
        .route("/public/hello", get(|| async { "hello, anyone\n" }))
        .layer(layer)
}

async fn home(Extension(who): Extension<Arc<Identity>>) -> impl IntoResponse {
    let name = who.preferred_username.as_deref().unwrap_or(&who.subject);
    (
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><p>Hello, {}!</p><p><a href=\"/api/me\">/api/me</a> · \
             <a href=\"/oauth2/sign_out\">sign out</a></p>",
            escape(name)
        ),
    )
}

async fn me(Extension(who): Extension<Arc<Identity>>) -> impl IntoResponse {
    let body = serde_json::to_string_pretty(&*who).unwrap_or_default();
    ([(CONTENT_TYPE, "application/json")], body)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The gateway configuration for the layer: `public_url` is where this app
/// listens; `[upstream]` is required by the file format but unused by a
/// layer mounted in the application itself.
pub fn config_toml(issuer: &str, client_secret: &str, public_url: &str) -> String {
    use base64::Engine as _;
    let secret: [u8; 32] = rand::random();
    format!(
        r#"
[server]
public_url = "{public_url}"
[upstream]
url = "http://127.0.0.1:9"
[provider]
issuer = "{issuer}"
client_id = "gateway"
client_secret = "{client_secret}"
[session]
secret = "{session_secret}"
[[route]]
path = "/public/"
auth = "none"
"#,
        session_secret = base64::engine::general_purpose::STANDARD.encode(secret),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let client_secret = format!("example-{}", rand::random::<u64>());
    let provider = DevProvider::builder()
        .client_secret(client_secret.clone())
        .start()
        .await?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let public_url = format!("http://{}", listener.local_addr()?);
    let config = GatewayConfig::from_toml_str(
        &config_toml(provider.issuer(), &client_secret, &public_url),
        &ProcessEnv,
    )?;
    let layer = OidcLayer::from_config(&config, Default::default())?;
    println!("axum + OidcLayer example");
    println!("  Open        {public_url}/   (any user name signs in)");
    println!("  API         curl -i {public_url}/api/me   (401 without credentials)");
    println!("  Public      {public_url}/public/hello");
    println!("  Provider    {}", provider.issuer());
    println!("Stop with Ctrl-C.");
    axum::serve(listener, router(layer))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    drop(provider);
    Ok(())
}
