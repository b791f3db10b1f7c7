//! `[server]`, `[admin]` and `[upstream]`: the listeners and where
//! authenticated requests go. Only the binary's [`GatewayConfig`] has them.
//!
//! [`GatewayConfig`]: super::GatewayConfig

use super::duration;
use super::problems::{At, Section};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

// ===== [server] =====

/// `[server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Main listener address. Default `0.0.0.0:8443`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, enables TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// The external origin, e.g. `https://app.example.com`.
    pub public_url: Url,
    /// Path prefix of the gateway's own endpoints. Default `/oauth2`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How long in-flight requests may take to finish on shutdown. Default `30s`.
    #[serde(default = "default_shutdown_timeout", deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
    /// Bound on how long a client may take to send its request headers. Default `10s`.
    #[serde(default = "default_header_read_timeout", deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// A client connection with no request in flight and no byte received
    /// for this long is closed. Default `75s` (longer than load balancers' usual 60 s).
    #[serde(default = "default_keepalive_timeout", deserialize_with = "duration")]
    pub keepalive_timeout: Duration,
    /// Request headers whose name contains `_`: `drop` (default), `reject` (400) or `allow`.
    #[serde(default)]
    pub headers_with_underscores: crate::server::HeadersWithUnderscores,
}

impl Section for ServerConfig {
    fn validate(&self, at: &mut At<'_>) {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            at.add("tls_cert", "tls_cert and tls_key go together");
        }
        validate_public_url(&self.public_url, "public_url", at);
        validate_prefix(&self.prefix, "prefix", at);
    }
}

/// The rules of `public_url`: `[server] public_url` in `gateway.toml`, the
/// top-level `public_url` of an [`OidcConfig`](super::OidcConfig).
pub(super) fn validate_public_url(url: &Url, key: &str, at: &mut At<'_>) {
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        at.add(key, "must be an absolute http(s) URL");
    }
    if url.query().is_some() || url.fragment().is_some() {
        at.add(key, "must not have a query or fragment");
    }
}

/// The rules of `prefix` (see [`validate_public_url`]).
pub(super) fn validate_prefix(prefix: &str, key: &str, at: &mut At<'_>) {
    if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') {
        at.add(key, "must start with `/` and not end with `/`");
    }
}

// ===== [admin] =====

/// `[admin]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Admin listener address. Default `127.0.0.1:9090`.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
        }
    }
}

impl Section for AdminConfig {
    fn validate(&self, _at: &mut At<'_>) {}
}

// ===== [upstream] =====

/// `[upstream]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The protected application, e.g. `http://127.0.0.1:8080`.
    pub url: Url,
    /// Time allowed for the upstream's response headers; then 504. Default `30s`.
    #[serde(default = "default_upstream_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Time allowed to connect; then 502. Default `5s`.
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Send the client's `Host` header upstream (else the upstream's authority). Default `true`.
    #[serde(default = "yes")]
    pub pass_host_header: bool,
    /// A WebSocket tunnel with no byte either way for this long is closed. Default `5m`.
    #[serde(default = "default_tunnel_idle_timeout", deserialize_with = "duration")]
    pub tunnel_idle_timeout: Duration,
}

impl Section for UpstreamConfig {
    fn validate(&self, at: &mut At<'_>) {
        if !matches!(self.url.scheme(), "http" | "https") {
            at.add("url", "must be an http(s) URL");
        }
    }
}

// ===== defaults =====

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
pub(super) fn default_prefix() -> String {
    "/oauth2".into()
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_keepalive_timeout() -> Duration {
    Duration::from_secs(75)
}
fn default_upstream_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_tunnel_idle_timeout() -> Duration {
    Duration::from_secs(300)
}
fn yes() -> bool {
    true
}
