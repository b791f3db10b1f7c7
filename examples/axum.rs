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
//!
//! The layer is built from an [`OidcConfig`] alone (no listener or
//! upstream settings: the application serves itself) with a session store
//! of the application's own: [`AuditedStore`] keeps sessions in the
//! built-in memory store and counts each sign-in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::future::BoxFuture;
use oidc_gateway::config::{OidcConfig, ProcessEnv};
use oidc_gateway::devtools::provider::DevProvider;
use oidc_gateway::session::{
    MemoryStore, Session, SessionKey, SessionLookup, SessionStore, StoreError,
};
use oidc_gateway::{Identity, OidcLayer};

/// The application's session store: the built-in memory store, plus a
/// count of sign-ins (each sign-in saves a new session) and a log line.
pub struct AuditedStore {
    inner: MemoryStore,
    sign_ins: Arc<AtomicU64>,
}

impl AuditedStore {
    /// A store of at most `capacity` sessions; `sign_ins` counts saves.
    pub fn new(capacity: u64, sign_ins: Arc<AtomicU64>) -> Self {
        AuditedStore {
            inner: MemoryStore::new(capacity, std::time::Duration::from_secs(8 * 3600)),
            sign_ins,
        }
    }
}

impl SessionStore for AuditedStore {
    fn load(&self, key: &SessionKey) -> SessionLookup {
        self.inner.load(key)
    }

    fn save(
        &self,
        key: SessionKey,
        session: Arc<Session>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.sign_ins.fetch_add(1, Ordering::Relaxed);
        println!("session saved for {}", session.identity.subject);
        self.inner.save(key, session)
    }

    fn remove(&self, key: &SessionKey) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner.remove(key)
    }

    fn remove_where(
        &self,
        sid: Option<&str>,
        subject: Option<&str>,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        self.inner.remove_where(sid, subject)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }
}

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

/// The layer's configuration: `public_url` is where this app listens.
pub fn config_toml(issuer: &str, client_secret: &str, public_url: &str) -> String {
    use base64::Engine as _;
    let secret: [u8; 32] = rand::random();
    format!(
        r#"
public_url = "{public_url}"
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
    let config = OidcConfig::from_toml_str(
        &config_toml(provider.issuer(), &client_secret, &public_url),
        &ProcessEnv,
    )?;
    let sign_ins = Arc::new(AtomicU64::new(0));
    let layer = OidcLayer::builder(config)
        .session_store(AuditedStore::new(10_000, sign_ins))
        .build()?;
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
