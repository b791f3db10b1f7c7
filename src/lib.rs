//! # oidc-gateway
//!
//! OpenID Connect / OAuth 2.0 single sign-on in front of applications that
//! have none: a rustls-terminated reverse proxy (the `oidc-gateway` binary), a
//! forward-auth endpoint for nginx and Traefik, and the same logic as a
//! [`tower::Layer`](tower_layer::Layer) — [`auth::OidcLayer`] — for axum,
//! hyper or tonic services.
//!
//! The layer sends browsers through the authorization-code flow (state,
//! nonce, PKCE S256) and keeps a server-side session; API clients present
//! `Authorization: Bearer <JWT>`, validated against the provider's keys and
//! cached until `exp`. Authenticated requests reach the inner service with an
//! `Arc<`[`auth::Identity`]`>` in their extensions and the identity headers
//! set; identity headers sent by clients are always removed first.
//!
//! ## Example
//!
//! Mount the layer in front of a service and call it with a bearer token
//! issued by the built-in development provider (`devtools::provider`; this
//! example runs with the default `devtools` feature):
//!
#![cfg_attr(feature = "devtools", doc = "```")]
#![cfg_attr(not(feature = "devtools"), doc = "```ignore")]
//! use oidc_gateway::auth::{Identity, OidcLayer};
//! use oidc_gateway::config::GatewayConfig;
//! use oidc_gateway::devtools::provider::DevProvider;
//! use std::sync::Arc;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = DevProvider::builder().start().await?;
//! let config = GatewayConfig::from_toml_str(
//!     &format!(
//!         r#"
//!         [server]
//!         public_url = "https://app.example.com"
//!         [upstream]
//!         url = "http://127.0.0.1:8080"
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
//!     &std::collections::HashMap::from([(
//!         "CLIENT_SECRET".to_string(),
//!         provider.client_secret().to_string(),
//!     )]),
//! )?;
//! let layer = OidcLayer::from_config(&config, Default::default())?;
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
//! assert_eq!(response.headers().get("cache-control"), None);
//! # Ok(())
//! # }
//! ```
//!
//! ## Modules
//! - [`config`]: `gateway.toml`, validated before anything binds.
//! - [`auth`]: the layer and its parts (provider metadata and keys, token
//!   verification, login state, sessions, bearer cache, routes, identity headers).
//! - [`proxy`], [`server`], [`admin`]: the reverse proxy, the rustls/hyper
//!   accept loop with graceful drain, and the health/readiness/metrics listener.
//! - [`gateway`]: all of it assembled, as run by the binary.
//! - `devtools` (cargo feature `devtools`, on by default): the development
//!   OpenID Provider (also the tests' hostile fake provider) and an echo
//!   upstream, used by `oidc-gateway demo`. `--no-default-features` builds
//!   the gateway without them.

pub mod admin;
pub mod auth;
pub mod body;
pub mod config;
#[cfg(feature = "devtools")]
pub mod devtools;
pub mod gateway;
pub mod metrics;
pub mod proxy;
pub mod secret;
pub mod server;
