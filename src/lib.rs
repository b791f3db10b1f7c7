//! # oidc-gateway
//!
//! OpenID Connect / OAuth 2.0 single sign-on in front of applications that
//! have none: a rustls-terminated reverse proxy (the `oidc-gateway` binary), a
//! forward-auth endpoint for nginx and Traefik, and the same logic as a
//! [`tower::Layer`](tower_layer::Layer) — [`OidcLayer`] — for axum,
//! hyper or tonic services.
//!
//! The layer sends browsers through the authorization-code flow (state,
//! nonce, PKCE S256) and keeps a session (in memory, in Redis, or sealed in
//! the cookie); API clients present
//! `Authorization: Bearer <JWT>`, validated against the provider's keys and
//! cached until `exp`. Authenticated requests reach the inner service with an
//! `Arc<`[`Identity`]`>` in their extensions and the identity headers
//! set; identity headers sent by clients are always removed first.
//!
//! ## Example
//!
//! Mount the layer in front of a service, with sessions kept in a store of
//! your own, and call it with a bearer token issued by the built-in
//! development provider (this example runs with the default `devtools`
//! feature):
//!
#![cfg_attr(feature = "devtools", doc = "```")]
#![cfg_attr(not(feature = "devtools"), doc = "```ignore")]
//! use oidc_gateway::config::OidcConfig;
//! use oidc_gateway::session::{Session, SessionKey, SessionLookup, SessionStore, StoreError};
//! use oidc_gateway::{Identity, OidcLayer};
//! use oidc_gateway::devtools::provider::DevProvider;
//! use futures_util::future::BoxFuture;
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! /// Sessions in a plain map (a real store would bound and expire them).
//! #[derive(Default)]
//! struct MapStore(Mutex<HashMap<SessionKey, Arc<Session>>>);
//!
//! impl SessionStore for MapStore {
//!     fn load(&self, key: &SessionKey) -> SessionLookup {
//!         SessionLookup::Ready(self.0.lock().unwrap().get(key).cloned())
//!     }
//!     fn save(&self, key: SessionKey, s: Arc<Session>) -> BoxFuture<'static, Result<(), StoreError>> {
//!         self.0.lock().unwrap().insert(key, s);
//!         Box::pin(async { Ok(()) })
//!     }
//!     fn remove(&self, key: &SessionKey) -> BoxFuture<'static, Result<(), StoreError>> {
//!         self.0.lock().unwrap().remove(key);
//!         Box::pin(async { Ok(()) })
//!     }
//!     fn remove_where(&self, sid: Option<&str>, sub: Option<&str>) -> BoxFuture<'static, Result<u64, StoreError>> {
//!         let mut map = self.0.lock().unwrap();
//!         let before = map.len();
//!         map.retain(|_, s| !(sid.is_some() && s.sid.as_deref() == sid
//!             || sid.is_none() && sub == Some(s.identity.subject.as_str())));
//!         let removed = (before - map.len()) as u64;
//!         Box::pin(async move { Ok(removed) })
//!     }
//!     fn len(&self) -> u64 {
//!         self.0.lock().unwrap().len() as u64
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = DevProvider::builder().start().await?;
//! let env = HashMap::from([("CLIENT_SECRET".to_string(), provider.client_secret().to_string())]);
//! let config = OidcConfig::from_toml_str(
//!     &format!(
//!         r#"
//!         public_url = "https://app.example.com"
//!         [provider]
//!         issuer = "{}"
//!         client_id = "{}"
//!         client_secret = "${{CLIENT_SECRET}}"
//!         [session]
//!         secret = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
//!         "#,
//!         provider.issuer(),
//!         provider.client_id()
//!     ),
//!     &env,
//! )?;
//! let layer = OidcLayer::builder(config)
//!     .session_store(MapStore::default())
//!     .build()?;
//! while !layer.is_ready() {
//!     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
//! }
//!
//! let app = ServiceBuilder::new().layer(layer).service_fn(
//!     |req: http::Request<http_body_util::Empty<bytes::Bytes>>| async move {
//!         let who = req.extensions().get::<Arc<Identity>>().map(|i| i.subject.clone());
//!         Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
//!             bytes::Bytes::from(who.unwrap_or_default()),
//!         )))
//!     },
//! );
//!
//! // No credentials: 401 with `WWW-Authenticate: Bearer`.
//! let anonymous = http::Request::get("/api").body(Default::default())?;
//! assert_eq!(app.clone().oneshot(anonymous).await?.status(), 401);
//!
//! // A valid access token: the inner service sees the identity.
//! let token = provider.mint_access_token(serde_json::json!({ "sub": "alice" }));
//! let request = http::Request::get("/api")
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(Default::default())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(())
//! # }
//! ```
//!
//! ## Modules
//! - [`config`]: `gateway.toml` ([`config::GatewayConfig`]) and the layer's
//!   part of it ([`OidcConfig`]), validated before anything binds.
//! - [`auth`]: the layer ([`OidcLayer`], [`OidcLayerBuilder`]), its service
//!   and future.
//! - [`session`]: the [`SessionStore`] trait, [`session::Session`] and the
//!   stores: in-memory, cookie (sealed in the cookie) and Redis (shared by
//!   replicas).
//! - [`identity`]: the [`Identity`] handed to the inner service.
//! - [`clock`]: the injectable time source.
//! - [`proxy`], [`server`]: the reverse proxy and the rustls/hyper accept
//!   loop with graceful drain; [`gateway`]: all of it assembled, as run by
//!   the binary.
//! - `devtools` (cargo feature, on by default): the development OpenID
//!   Provider (also the tests' hostile fake provider) and an echo upstream,
//!   used by `oidc-gateway demo`. `--no-default-features` builds the
//!   gateway without them.
//!
//! Inside, the layering is: `auth` → `provider` (metadata, keys, dialects,
//! token endpoint) and `token` (JWT verification) → `session`, `identity`
//! → `secret`, `clock`, `metrics`.

pub mod admin;
pub mod auth;
pub mod body;
pub mod clock;
pub mod config;
#[cfg(feature = "devtools")]
pub mod devtools;
pub mod gateway;
mod html;
pub mod identity;
mod io;
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
pub mod probe;
#[cfg(test)]
mod properties;
pub(crate) mod provider;
pub mod proxy;
pub(crate) mod random;
pub mod secret;
pub mod server;
pub mod session;
pub mod telemetry;
pub(crate) mod token;

pub use auth::{LayerError, Oidc, OidcLayer, OidcLayerBuilder};
pub use config::OidcConfig;
pub use identity::Identity;
pub use session::SessionStore;

/// Internals the benchmarks and the memory example measure. Not part of
/// the public API: no stability promise.
#[doc(hidden)]
pub mod bench_internals {
    pub use crate::auth::authn::bearer::{BearerCache, Principal};
    pub use crate::auth::policy::{normalize_path, RouteTable};
    pub use crate::clock::system_now_secs as now_secs;
    pub use crate::identity::IdentityHeaders;
    pub use crate::provider::http::ProviderHttp;
    pub use crate::provider::{Provider, ProviderRules};
    pub use crate::random::{fill_random, random_token};
    pub use crate::token::TokenVerifier;
}
