//! `[session]`, `[bearer]` and `[headers]`: browser sessions, API clients
//! with bearer tokens, and the names of the identity headers sent upstream.

use super::duration;
use super::problems::{At, Section};
use crate::secret::{Secret, SessionSecret};
use serde::{Deserialize, Deserializer};
use std::time::Duration;

// ===== [session] =====

/// Where sessions are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStoreKind {
    /// In-process (moka), lost on restart.
    Memory,
    /// Redis.
    Redis,
    /// Encrypted in the cookie itself.
    Cookie,
}

/// `[session]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Store. Default `memory`.
    #[serde(default = "default_store")]
    pub store: SessionStoreKind,
    /// The key that seals the login-state cookies: at least 32 random bytes,
    /// written in base64 (standard or URL-safe, padded or not), decoded
    /// when the configuration is loaded.
    #[serde(deserialize_with = "session_secret")]
    pub secret: SessionSecret,
    /// Session lifetime. Default `8h`.
    #[serde(default = "default_lifetime", deserialize_with = "duration")]
    pub lifetime: Duration,
    /// Redis URL for `store = "redis"`.
    pub redis_url: Option<Secret>,
    /// How long a login attempt may take (at most 10 minutes). Default `10m`.
    #[serde(default = "default_login_timeout", deserialize_with = "duration")]
    pub login_timeout: Duration,
    /// Concurrent login attempts kept per browser. Default 5.
    #[serde(default = "default_max_login_attempts")]
    pub max_login_attempts: usize,
    /// Most sessions the memory store keeps (least recently used go first). Default 1000000.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u64,
    /// Refresh the access token this long before it expires (sessions with a
    /// refresh token only). Default `60s`.
    #[serde(default = "default_refresh_margin", deserialize_with = "duration")]
    pub refresh_margin: Duration,
}

/// Decodes `session.secret`; the message never contains the value.
fn session_secret<'de, D: Deserializer<'de>>(d: D) -> Result<SessionSecret, D::Error> {
    let text = Secret::deserialize(d)?;
    SessionSecret::from_base64(text.expose()).map_err(serde::de::Error::custom)
}

impl Section for SessionConfig {
    fn validate(&self, at: &mut At<'_>) {
        match self.store {
            SessionStoreKind::Memory => {}
            SessionStoreKind::Redis | SessionStoreKind::Cookie => {
                at.add("store", "only \"memory\" is supported by this build")
            }
        }
        if self.lifetime < Duration::from_secs(60) {
            at.add("lifetime", "must be at least 1m");
        }
        if self.login_timeout.is_zero() || self.login_timeout > Duration::from_secs(600) {
            at.add("login_timeout", "must be between 1s and 10m");
        }
        if !(1..=20).contains(&self.max_login_attempts) {
            at.add("max_login_attempts", "must be between 1 and 20");
        }
    }
}

// ===== [bearer] =====

/// `[bearer]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerConfig {
    /// Accept `Authorization: Bearer <JWT>`. Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Accepted `aud` values. Default `[client_id]`.
    pub audiences: Option<Vec<String>>,
    /// Most validated tokens kept in the cache. Default 100000.
    #[serde(default = "default_bearer_cache")]
    pub cache_capacity: u64,
}

impl Default for BearerConfig {
    fn default() -> Self {
        BearerConfig {
            enabled: true,
            audiences: None,
            cache_capacity: default_bearer_cache(),
        }
    }
}

impl Section for BearerConfig {
    fn validate(&self, at: &mut At<'_>) {
        if self.audiences.as_ref().is_some_and(Vec::is_empty) {
            at.add("audiences", "must not be empty (omit it for [client_id])");
        }
    }
}

// ===== [headers] =====

/// `[headers]`: names of the identity headers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderNamesConfig {
    /// Subject. Default `X-Auth-Request-User`.
    #[serde(default = "h_user")]
    pub user: String,
    /// Email. Default `X-Auth-Request-Email`.
    #[serde(default = "h_email")]
    pub email: String,
    /// Preferred user name. Default `X-Auth-Request-Preferred-Username`.
    #[serde(default = "h_preferred_username")]
    pub preferred_username: String,
    /// Groups, comma-separated. Default `X-Auth-Request-Groups`.
    #[serde(default = "h_groups")]
    pub groups: String,
}

impl Default for HeaderNamesConfig {
    fn default() -> Self {
        HeaderNamesConfig {
            user: h_user(),
            email: h_email(),
            preferred_username: h_preferred_username(),
            groups: h_groups(),
        }
    }
}

impl Section for HeaderNamesConfig {
    fn validate(&self, at: &mut At<'_>) {
        for (key, name) in [
            ("user", &self.user),
            ("email", &self.email),
            ("preferred_username", &self.preferred_username),
            ("groups", &self.groups),
        ] {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                at.add(key, format!("`{name}` is not a header name"));
            }
        }
    }
}

// ===== defaults =====

fn default_store() -> SessionStoreKind {
    SessionStoreKind::Memory
}
fn default_lifetime() -> Duration {
    Duration::from_secs(8 * 3600)
}
fn default_login_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_max_login_attempts() -> usize {
    5
}
fn default_max_sessions() -> u64 {
    1_000_000
}
fn default_refresh_margin() -> Duration {
    Duration::from_secs(60)
}
fn yes() -> bool {
    true
}
fn default_bearer_cache() -> u64 {
    100_000
}
fn h_user() -> String {
    "X-Auth-Request-User".into()
}
fn h_email() -> String {
    "X-Auth-Request-Email".into()
}
fn h_preferred_username() -> String {
    "X-Auth-Request-Preferred-Username".into()
}
fn h_groups() -> String {
    "X-Auth-Request-Groups".into()
}
