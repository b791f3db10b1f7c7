//! `gateway.toml`: the gateway's configuration.
//!
//! Loading goes path → string → [`GatewayConfig::from_toml_str`] → `validate`.
//! Before the typed parse, every string value has `${VAR}` expanded from the
//! environment, and every `<key>_file` key that stands for a secret
//! (`client_secret_file`, `secret_file`, `redis_url_file`) is replaced by the
//! file's content (trailing newline trimmed). Unknown keys are an error.
//! Durations are strings such as `30s`, `15m` or `8h`.
//!
//! Every problem is reported with its key path; secrets are never part of a
//! problem message or of `Debug` output.

use crate::secret::Secret;
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// One thing wrong with a configuration: the key path and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, such as `provider.issuer`.
    pub key: String,
    /// What is wrong with it (never contains a secret).
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// A configuration that could not be loaded: every problem found.
#[derive(Debug)]
pub struct ConfigError {
    problems: Vec<ConfigProblem>,
}

impl ConfigError {
    fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![ConfigProblem {
                key: key.into(),
                message: message.into(),
            }],
        }
    }

    /// Every problem found, in file order where possible.
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where `${VAR}` values come from. The process environment in production,
/// a map in tests.
pub trait Environment {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// `[server]`: the main listener.
    pub server: ServerConfig,
    /// `[admin]`: health, readiness and metrics listener.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[upstream]`: where authenticated requests go.
    pub upstream: UpstreamConfig,
    /// `[provider]`: the identity provider.
    pub provider: ProviderConfig,
    /// `[session]`: browser sessions.
    pub session: SessionConfig,
    /// `[bearer]`: API clients with bearer tokens.
    #[serde(default)]
    pub bearer: BearerConfig,
    /// `[headers]`: names of the identity headers sent upstream.
    #[serde(default)]
    pub headers: HeaderNamesConfig,
    /// `[[route]]`: path rules, first match wins.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
}

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
    /// Request headers whose name contains `_`: `drop` (default), `reject` (400) or `allow`.
    #[serde(default)]
    pub headers_with_underscores: crate::server::HeadersWithUnderscores,
}

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

/// Which dialect the provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// Any OpenID Provider, by discovery.
    Oidc,
    /// Plain OAuth 2.0 with explicit endpoints and userinfo.
    Oauth2,
    /// Akamai Identity Cloud / Janrain Capture.
    JanrainCapture,
    /// Oracle Identity Cloud Service.
    OracleIdcs,
}

/// How the gateway authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with form-encoded id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A JWT signed with the client's private key (RFC 7523 §2.2,
    /// `private_key_file`); see [`crate::provider::client_assertion`].
    PrivateKeyJwt,
    /// Janrain Capture's HMAC-SHA1 signature scheme.
    #[serde(rename = "janrain-signed")]
    JanrainSigned,
}

/// `response_mode` of the authorization request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// Parameters in the callback's query string.
    #[default]
    Query,
    /// Parameters POSTed to the callback as a form.
    FormPost,
}

/// `[provider]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Dialect. Default `oidc`.
    #[serde(default = "default_kind")]
    pub kind: ProviderKind,
    /// Issuer, exactly as the provider spells it; discovery at
    /// `issuer + /.well-known/openid-configuration`.
    pub issuer: Option<String>,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret (or `client_secret_file`).
    pub client_secret: Option<Secret>,
    /// Scopes requested. Default `["openid", "email", "profile"]`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Token endpoint authentication. Default `client_secret_basic`.
    #[serde(default = "default_client_auth")]
    pub client_auth: ClientAuth,
    /// PEM private key for `private_key_jwt`: RSA (PKCS#8 or PKCS#1) or
    /// EC P-256 (SEC1 or PKCS#8).
    pub private_key_file: Option<PathBuf>,
    /// `kid` header of the `private_key_jwt` assertions (the key's id in
    /// the client's registered JWKS). Default: none.
    pub private_key_kid: Option<String>,
    /// Signing algorithm of the `private_key_jwt` assertions. Default
    /// `RS256` for RSA keys, `ES256` for EC keys.
    pub private_key_alg: Option<String>,
    /// Extra trusted roots (PEM) for provider calls.
    pub ca_file: Option<PathBuf>,
    /// Overrides / explicit endpoints.
    pub authorization_endpoint: Option<Url>,
    /// Token endpoint.
    pub token_endpoint: Option<Url>,
    /// Userinfo endpoint.
    pub userinfo_endpoint: Option<Url>,
    /// JWKS URI.
    pub jwks_uri: Option<Url>,
    /// RP-initiated logout endpoint.
    pub end_session_endpoint: Option<Url>,
    /// Signing algorithms accepted for ID and access tokens. Default `["RS256", "ES256"]`.
    #[serde(default = "default_algorithms")]
    pub allowed_algorithms: Vec<String>,
    /// How the provider returns the authorization response: `query` (GET
    /// callback) or `form_post` (POST callback; the login cookie is then
    /// `SameSite=None`, so `public_url` must be https). Default `query`.
    #[serde(default)]
    pub response_mode: ResponseMode,
    /// Fetch userinfo at login and merge it into the identity. Default `false`.
    #[serde(default)]
    pub userinfo: bool,
    /// Timeout of each call to the provider. Default `10s`.
    #[serde(default = "default_http_timeout", deserialize_with = "duration")]
    pub http_timeout: Duration,
    /// Largest response body accepted from the provider. Default 1 MiB.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Minimum time between two JWKS fetches caused by unknown `kid`s. Default `30s`.
    #[serde(default = "default_jwks_min_refresh", deserialize_with = "duration")]
    pub jwks_min_refresh_interval: Duration,
    /// Clock skew tolerated on `exp`, `nbf`, `iat`. Default `60s`.
    #[serde(default = "default_clock_skew", deserialize_with = "duration")]
    pub clock_skew: Duration,
    /// Oracle IDCS: the issuer ID tokens carry. Default `https://identity.oraclecloud.com/`.
    pub expected_issuer: Option<String>,
    /// Janrain Capture: `https://<app>.<region>.janraincapture.com`.
    pub capture_domain: Option<Url>,
    /// Oracle IDCS: `client_credentials` to fetch the JWKS with an access token.
    pub jwks_auth: Option<String>,
}

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
    /// At least 32 random bytes, base64: seals the login-state cookies and
    /// sessions (cookie store, Redis values).
    pub secret: Secret,
    /// Older secrets that still open what they sealed but never seal
    /// (rotation without signing everyone out); at most 8. Default none.
    #[serde(default)]
    pub previous_secrets: Vec<Secret>,
    /// Session lifetime. Default `8h`.
    #[serde(default = "default_lifetime", deserialize_with = "duration")]
    pub lifetime: Duration,
    /// Redis URL for `store = "redis"` (`redis://` or `rediss://` for TLS).
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key (and of the invalidation channel).
    /// Default `oidc-gateway:`.
    #[serde(default = "default_redis_key_prefix")]
    pub redis_key_prefix: String,
    /// Longest time a gateway serves a session from its local cache without
    /// asking Redis (logouts are pushed sooner; `0s` disables the cache).
    /// Default `2s`, at most `60s`.
    #[serde(default = "default_redis_cache_ttl", deserialize_with = "duration")]
    pub redis_cache_ttl: Duration,
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

impl SessionConfig {
    /// The decoded `previous_secrets` (validated to be at least 32 bytes).
    pub fn previous_session_secrets(
        &self,
    ) -> Result<Vec<crate::secret::SessionSecret>, crate::secret::SessionSecretError> {
        self.previous_secrets
            .iter()
            .map(|s| crate::secret::SessionSecret::from_base64(s.expose()))
            .collect()
    }
}

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

/// Authentication a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RouteAuth {
    /// No authentication; identity headers are still stripped.
    None,
    /// A session or bearer token.
    #[default]
    Required,
}

/// `[[route]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix, matched after normalization.
    pub path: String,
    /// Default `required`.
    #[serde(default)]
    pub auth: RouteAuth,
    /// Authenticated users must be in one of these groups, else 403.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Authenticated users' email must be in one of these domains, else 403.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
}

// ===== defaults =====

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn default_prefix() -> String {
    "/oauth2".into()
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
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
fn default_kind() -> ProviderKind {
    ProviderKind::Oidc
}
fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}
fn default_client_auth() -> ClientAuth {
    ClientAuth::ClientSecretBasic
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_response_bytes() -> usize {
    1024 * 1024
}
fn default_jwks_min_refresh() -> Duration {
    Duration::from_secs(30)
}
fn default_clock_skew() -> Duration {
    Duration::from_secs(60)
}
fn default_store() -> SessionStoreKind {
    SessionStoreKind::Memory
}
fn default_redis_key_prefix() -> String {
    "oidc-gateway:".into()
}
fn default_redis_cache_ttl() -> Duration {
    Duration::from_secs(2)
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

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Parses `30s`, `15m`, `8h`, `1h30m`, `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| format!("`{s}` is not a duration (use e.g. \"30s\", \"15m\", \"8h\")"))
}

/// Signing algorithms the gateway can be configured to accept.
pub const SUPPORTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Type and form problems of each section, deserialized on its own so that
/// one bad value does not hide the others; the key path comes from the
/// error's position in the section re-serialized as TOML.
fn section_problems(doc: &toml::Table) -> Vec<ConfigProblem> {
    fn check<T: serde::de::DeserializeOwned>(
        path: &str,
        table: &toml::Table,
        out: &mut Vec<ConfigProblem>,
    ) {
        let Ok(text) = toml::to_string(table) else {
            return;
        };
        let Err(e) = toml::from_str::<T>(&text) else {
            return;
        };
        let key = e.span().and_then(|span| {
            let start = text.get(..span.start)?.rfind('\n').map_or(0, |i| i + 1);
            let line = text.get(start..)?.lines().next()?;
            let (k, _) = line.split_once('=')?;
            let k = k.trim().trim_matches('"');
            (!k.is_empty()).then(|| k.to_string())
        });
        out.push(ConfigProblem {
            key: match key {
                Some(k) => format!("{path}.{k}"),
                None => path.to_string(),
            },
            message: e.message().trim().to_string(),
        });
    }
    let mut out = Vec::new();
    for (name, value) in doc {
        match (name.as_str(), value) {
            ("server", toml::Value::Table(t)) => check::<ServerConfig>(name, t, &mut out),
            ("admin", toml::Value::Table(t)) => check::<AdminConfig>(name, t, &mut out),
            ("upstream", toml::Value::Table(t)) => check::<UpstreamConfig>(name, t, &mut out),
            ("provider", toml::Value::Table(t)) => check::<ProviderConfig>(name, t, &mut out),
            ("session", toml::Value::Table(t)) => check::<SessionConfig>(name, t, &mut out),
            ("bearer", toml::Value::Table(t)) => check::<BearerConfig>(name, t, &mut out),
            ("headers", toml::Value::Table(t)) => check::<HeaderNamesConfig>(name, t, &mut out),
            ("route", toml::Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(t) = item {
                        check::<RouteConfig>(&format!("route[{i}]"), t, &mut out);
                    }
                }
            }
            (
                "server" | "admin" | "upstream" | "provider" | "session" | "bearer" | "headers",
                _,
            ) => out.push(ConfigProblem {
                key: name.clone(),
                message: "must be a table".into(),
            }),
            ("route", _) => out.push(ConfigProblem {
                key: name.clone(),
                message: "must be an array of tables ([[route]])".into(),
            }),
            _ => out.push(ConfigProblem {
                key: name.clone(),
                message: "unknown key".into(),
            }),
        }
    }
    for required in ["server", "upstream", "provider", "session"] {
        if !doc.contains_key(required) {
            out.push(ConfigProblem {
                key: required.into(),
                message: "missing section".into(),
            });
        }
    }
    out
}

/// Keys whose `<key>_file` twin reads the value from a file.
const FILE_KEYS: &[(&str, &str)] = &[
    ("provider", "client_secret"),
    ("session", "secret"),
    ("session", "redis_url"),
];

impl GatewayConfig {
    /// Reads, expands and validates the file at `path` with the process environment.
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one("", format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml_str(&text, &ProcessEnv)
    }

    /// Parses, expands and validates a TOML document.
    pub fn from_toml_str(text: &str, env: &dyn Environment) -> Result<Self, ConfigError> {
        let mut value: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::one("", format!("{e}")))?;
        let mut problems = Vec::new();
        expand_table(&mut value, "", env, &mut problems);
        read_file_keys(&mut value, &mut problems);
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let config: GatewayConfig = match toml::Value::Table(value.clone()).try_into() {
            Ok(c) => c,
            Err(e) => {
                // Report every section's problems with key paths, not just
                // the first error serde stopped at.
                let problems = section_problems(&value);
                if problems.is_empty() {
                    return Err(ConfigError::one("", e.message().to_string()));
                }
                return Err(ConfigError { problems });
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot: every problem is collected.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Vec::new();
        let mut problem = |key: &str, msg: String| {
            p.push(ConfigProblem {
                key: key.into(),
                message: msg,
            })
        };
        let s = &self.server;
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            problem("server.tls_cert", "tls_cert and tls_key go together".into());
        }
        if !matches!(s.public_url.scheme(), "http" | "https") || s.public_url.host().is_none() {
            problem(
                "server.public_url",
                "must be an absolute http(s) URL".into(),
            );
        }
        if s.public_url.query().is_some() || s.public_url.fragment().is_some() {
            problem(
                "server.public_url",
                "must not have a query or fragment".into(),
            );
        }
        if !s.prefix.starts_with('/') || s.prefix.len() < 2 || s.prefix.ends_with('/') {
            problem(
                "server.prefix",
                "must start with `/` and not end with `/`".into(),
            );
        }
        if !matches!(self.upstream.url.scheme(), "http" | "https") {
            problem("upstream.url", "must be an http(s) URL".into());
        }

        let pr = &self.provider;
        let url_check = |key: &str, url: &Option<Url>, problem: &mut dyn FnMut(&str, String)| {
            if let Some(url) = url {
                if let Err(m) = check_provider_url(url) {
                    problem(key, m);
                }
            }
        };
        if let Some(issuer) = &pr.issuer {
            match Url::parse(issuer) {
                Ok(url) if url.query().is_none() && url.fragment().is_none() => {
                    if let Err(m) = check_provider_url(&url) {
                        problem("provider.issuer", m);
                    }
                }
                _ => problem(
                    "provider.issuer",
                    "must be an absolute URL without query or fragment".into(),
                ),
            }
        }
        url_check(
            "provider.authorization_endpoint",
            &pr.authorization_endpoint,
            &mut problem,
        );
        url_check("provider.token_endpoint", &pr.token_endpoint, &mut problem);
        url_check(
            "provider.userinfo_endpoint",
            &pr.userinfo_endpoint,
            &mut problem,
        );
        url_check("provider.jwks_uri", &pr.jwks_uri, &mut problem);
        url_check(
            "provider.end_session_endpoint",
            &pr.end_session_endpoint,
            &mut problem,
        );
        url_check("provider.capture_domain", &pr.capture_domain, &mut problem);
        if pr.client_id.is_empty() {
            problem("provider.client_id", "must not be empty".into());
        }
        match pr.kind {
            ProviderKind::Oidc | ProviderKind::OracleIdcs => {
                if pr.issuer.is_none() {
                    problem("provider.issuer", "required for this provider kind".into());
                }
            }
            ProviderKind::Oauth2 => {
                for (key, v) in [
                    (
                        "provider.authorization_endpoint",
                        &pr.authorization_endpoint,
                    ),
                    ("provider.token_endpoint", &pr.token_endpoint),
                    ("provider.userinfo_endpoint", &pr.userinfo_endpoint),
                ] {
                    if v.is_none() {
                        problem(key, "required for kind = \"oauth2\"".into());
                    }
                }
            }
            ProviderKind::JanrainCapture => {
                if pr.capture_domain.is_none() {
                    problem(
                        "provider.capture_domain",
                        "required for kind = \"janrain-capture\"".into(),
                    );
                }
            }
        }
        if pr.kind == ProviderKind::Oauth2 && pr.jwks_uri.is_some() && pr.issuer.is_none() {
            problem(
                "provider.issuer",
                "required with jwks_uri for kind = \"oauth2\" (the iss ID tokens carry)".into(),
            );
        }
        if let Some(expected) = &pr.expected_issuer {
            if pr.kind != ProviderKind::OracleIdcs {
                problem(
                    "provider.expected_issuer",
                    "only for kind = \"oracle-idcs\"".into(),
                );
            } else if Url::parse(expected).is_err() {
                problem("provider.expected_issuer", "must be an absolute URL".into());
            }
        }
        if let Some(auth) = &pr.jwks_auth {
            if auth != "client_credentials" {
                problem(
                    "provider.jwks_auth",
                    format!("`{auth}` is not supported (use \"client_credentials\")"),
                );
            } else if pr.kind != ProviderKind::OracleIdcs {
                problem(
                    "provider.jwks_auth",
                    "only for kind = \"oracle-idcs\"".into(),
                );
            }
        }
        match pr.client_auth {
            ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost => {
                if pr.client_secret.as_ref().is_none_or(Secret::is_empty) {
                    problem(
                        "provider.client_secret",
                        "required (or client_secret_file) for this client_auth".into(),
                    );
                }
            }
            ClientAuth::PrivateKeyJwt => {
                if pr.kind == ProviderKind::JanrainCapture {
                    problem(
                        "provider.client_auth",
                        "private_key_jwt is not supported by kind = \"janrain-capture\"".into(),
                    );
                }
                match &pr.private_key_file {
                    None => problem(
                        "provider.private_key_file",
                        "required for client_auth = \"private_key_jwt\"".into(),
                    ),
                    Some(path) => {
                        if let Err(e) = crate::provider::client_assertion::ClientAssertionKey::load(
                            path,
                            pr.private_key_alg.as_deref(),
                            pr.private_key_kid.as_deref(),
                        ) {
                            problem("provider.private_key_file", e);
                        }
                    }
                }
            }
            ClientAuth::JanrainSigned => {
                if pr.kind != ProviderKind::JanrainCapture {
                    problem(
                        "provider.client_auth",
                        "janrain-signed is only for kind = \"janrain-capture\"".into(),
                    );
                }
                if pr.client_secret.as_ref().is_none_or(Secret::is_empty) {
                    problem(
                        "provider.client_secret",
                        "required (or client_secret_file) for this client_auth".into(),
                    );
                }
            }
        }
        if pr.client_auth != ClientAuth::PrivateKeyJwt {
            for (key, set) in [
                ("provider.private_key_file", pr.private_key_file.is_some()),
                ("provider.private_key_kid", pr.private_key_kid.is_some()),
                ("provider.private_key_alg", pr.private_key_alg.is_some()),
            ] {
                if set {
                    problem(key, "only for client_auth = \"private_key_jwt\"".into());
                }
            }
        }
        if pr.response_mode == ResponseMode::FormPost && !self.is_https_url() {
            problem(
                "provider.response_mode",
                "form_post needs an https public_url (the login cookie must be SameSite=None; Secure)"
                    .into(),
            );
        }
        if pr.scopes.is_empty() {
            problem("provider.scopes", "must not be empty".into());
        } else if matches!(pr.kind, ProviderKind::Oidc | ProviderKind::OracleIdcs)
            && !pr.scopes.iter().any(|s| s == "openid")
        {
            problem("provider.scopes", "must contain \"openid\"".into());
        }
        if pr.allowed_algorithms.is_empty() {
            problem("provider.allowed_algorithms", "must not be empty".into());
        }
        for alg in &pr.allowed_algorithms {
            if !SUPPORTED_ALGORITHMS.contains(&alg.as_str()) {
                problem(
                    "provider.allowed_algorithms",
                    format!(
                        "`{alg}` is not accepted (supported: {})",
                        SUPPORTED_ALGORITHMS.join(", ")
                    ),
                );
            }
        }
        if pr.max_response_bytes < 1024 {
            problem(
                "provider.max_response_bytes",
                "must be at least 1024".into(),
            );
        }
        if let Some(ca) = &pr.ca_file {
            if !ca.is_file() {
                problem(
                    "provider.ca_file",
                    format!("{} is not a readable file", ca.display()),
                );
            }
        }

        let se = &self.session;
        match base64_decode_any(se.secret.expose()) {
            Some(bytes) if bytes.len() >= 32 => {}
            Some(_) => problem("session.secret", "must decode to at least 32 bytes".into()),
            None => problem("session.secret", "must be base64".into()),
        }
        if se.previous_secrets.len() > crate::session::seal::MAX_PREVIOUS_SECRETS {
            problem(
                "session.previous_secrets",
                format!(
                    "at most {} secrets",
                    crate::session::seal::MAX_PREVIOUS_SECRETS
                ),
            );
        }
        for (i, old) in se.previous_secrets.iter().enumerate() {
            match base64_decode_any(old.expose()) {
                Some(bytes) if bytes.len() >= 32 => {}
                Some(_) => problem(
                    &format!("session.previous_secrets[{i}]"),
                    "must decode to at least 32 bytes".into(),
                ),
                None => problem(
                    &format!("session.previous_secrets[{i}]"),
                    "must be base64".into(),
                ),
            }
        }
        if se.store == SessionStoreKind::Redis {
            match se.redis_url.as_ref().map(|u| url::Url::parse(u.expose())) {
                None => problem(
                    "session.redis_url",
                    "is required with store = \"redis\"".into(),
                ),
                // The URL may hold a password: never echo it.
                Some(Err(_)) => problem("session.redis_url", "is not a URL".into()),
                Some(Ok(u)) if !matches!(u.scheme(), "redis" | "rediss") => problem(
                    "session.redis_url",
                    "must start with redis:// or rediss://".into(),
                ),
                Some(Ok(u)) if u.host_str().is_none_or(str::is_empty) => {
                    problem("session.redis_url", "has no host".into())
                }
                Some(Ok(_)) => {}
            }
        }
        let prefix = &se.redis_key_prefix;
        if prefix.is_empty() || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            problem(
                "session.redis_key_prefix",
                "must be 1 to 64 visible ASCII characters".into(),
            );
        }
        if se.redis_cache_ttl > Duration::from_secs(60) {
            problem("session.redis_cache_ttl", "must be at most 60s".into());
        }
        if se.lifetime < Duration::from_secs(60) {
            problem("session.lifetime", "must be at least 1m".into());
        }
        if se.login_timeout.is_zero() || se.login_timeout > Duration::from_secs(600) {
            problem("session.login_timeout", "must be between 1s and 10m".into());
        }
        if !(1..=20).contains(&se.max_login_attempts) {
            problem(
                "session.max_login_attempts",
                "must be between 1 and 20".into(),
            );
        }
        if let Some(aud) = &self.bearer.audiences {
            if aud.is_empty() {
                problem(
                    "bearer.audiences",
                    "must not be empty (omit it for [client_id])".into(),
                );
            }
        }
        for (key, name) in [
            ("headers.user", &self.headers.user),
            ("headers.email", &self.headers.email),
            (
                "headers.preferred_username",
                &self.headers.preferred_username,
            ),
            ("headers.groups", &self.headers.groups),
        ] {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problem(key, format!("`{name}` is not a header name"));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if !r.path.starts_with('/') {
                problem(&format!("route[{i}].path"), "must start with `/`".into());
            }
            if r.auth == RouteAuth::None
                && (!r.allowed_groups.is_empty() || !r.allowed_email_domains.is_empty())
            {
                problem(
                    &format!("route[{i}].auth"),
                    "allowed_groups / allowed_email_domains need auth = \"required\"".into(),
                );
            }
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: p })
        }
    }

    /// The redirect URI registered at the provider: `public_url + prefix + /callback`.
    pub fn redirect_uri(&self) -> String {
        format!(
            "{}{}/callback",
            self.server.public_url.as_str().trim_end_matches('/'),
            self.server.prefix
        )
    }

    /// Accepted bearer audiences (default `[client_id]`).
    pub fn bearer_audiences(&self) -> Vec<String> {
        self.bearer
            .audiences
            .clone()
            .unwrap_or_else(|| vec![self.provider.client_id.clone()])
    }

    fn is_https_url(&self) -> bool {
        self.server.public_url.scheme() == "https"
    }

    /// Whether the external origin is https.
    pub fn is_https(&self) -> bool {
        self.server.public_url.scheme() == "https"
    }

    /// The session cookie name: `__Host-oidc-gateway` on https, `oidc-gateway` on http.
    pub fn session_cookie_name(&self) -> &'static str {
        if self.is_https() {
            "__Host-oidc-gateway"
        } else {
            "oidc-gateway"
        }
    }

    /// The decoded session secret (validated to be at least 32 bytes).
    pub fn session_secret_bytes(&self) -> Vec<u8> {
        base64_decode_any(self.session.secret.expose()).unwrap_or_default()
    }
}

/// What the authentication layer needs: the provider, the client,
/// sessions, bearer tokens, header names and routes. Nothing about
/// listeners or upstreams: an embedder mounting
/// [`OidcLayer`](crate::OidcLayer) in its own service builds only this.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OidcConfig {
    /// The external origin; `redirect_uri = public_url + prefix + /callback`.
    pub public_url: Url,
    /// Where the layer's endpoints live. Default `/oauth2`.
    pub prefix: String,
    /// `[provider]`.
    pub provider: ProviderConfig,
    /// `[session]`.
    pub session: SessionConfig,
    /// `[bearer]`.
    pub bearer: BearerConfig,
    /// `[headers]`.
    pub headers: HeaderNamesConfig,
    /// `[[route]]`, first match wins.
    pub routes: Vec<RouteConfig>,
}

/// The sections of an [`OidcConfig`] document besides the top-level keys.
const OIDC_SECTIONS: &[&str] = &["provider", "session", "bearer", "headers", "route"];

impl OidcConfig {
    /// Parses, expands and validates the layer's part of a configuration:
    /// top-level `public_url` (required) and `prefix`, then the
    /// `[provider]`, `[session]`, `[bearer]`, `[headers]` and `[[route]]`
    /// sections exactly as in `gateway.toml`. The same rules apply as to
    /// `gateway.toml`, and problems carry the same key paths.
    ///
    /// ```
    /// use oidc_gateway::config::OidcConfig;
    /// use std::collections::HashMap;
    ///
    /// let env = HashMap::from([("SECRET".to_string(), "s3cret".to_string())]);
    /// let config = OidcConfig::from_toml_str(r#"
    ///     public_url = "https://app.example.com"
    ///     [provider]
    ///     issuer = "https://idp.example.com"
    ///     client_id = "app"
    ///     client_secret = "${SECRET}"
    ///     [session]
    ///     secret = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
    /// "#, &env)?;
    /// assert_eq!(config.redirect_uri(), "https://app.example.com/oauth2/callback");
    /// # Ok::<(), oidc_gateway::config::ConfigError>(())
    /// ```
    pub fn from_toml_str(text: &str, env: &dyn Environment) -> Result<Self, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::one("", format!("{e}")))?;
        let mut gateway = toml::Table::new();
        let mut server = toml::Table::new();
        let mut problems = Vec::new();
        for (key, value) in table {
            match key.as_str() {
                "public_url" | "prefix" => {
                    server.insert(key, value);
                }
                k if OIDC_SECTIONS.contains(&k) => {
                    gateway.insert(key, value);
                }
                _ => problems.push(ConfigProblem {
                    key,
                    message: "unknown key (expected public_url, prefix, [provider], [session], \
                              [bearer], [headers] or [[route]])"
                        .into(),
                }),
            }
        }
        if !server.contains_key("public_url") {
            problems.push(ConfigProblem {
                key: "public_url".into(),
                message: "required".into(),
            });
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        // The layer ignores listeners and upstreams: a placeholder upstream
        // lets the whole-file rules run unchanged.
        let mut upstream = toml::Table::new();
        upstream.insert(
            "url".into(),
            toml::Value::String("http://127.0.0.1:1".into()),
        );
        gateway.insert("server".into(), toml::Value::Table(server));
        gateway.insert("upstream".into(), toml::Value::Table(upstream));
        let text = toml::to_string(&gateway)
            .map_err(|e| ConfigError::one("", format!("cannot re-encode: {e}")))?;
        match GatewayConfig::from_toml_str(&text, env) {
            Ok(c) => Ok(c.oidc()),
            Err(mut e) => {
                for p in &mut e.problems {
                    if let Some(rest) = p.key.strip_prefix("server.") {
                        p.key = rest.to_string();
                    }
                }
                Err(e)
            }
        }
    }

    /// The redirect URI registered at the provider: `public_url + prefix + /callback`.
    pub fn redirect_uri(&self) -> String {
        format!(
            "{}{}/callback",
            self.public_url.as_str().trim_end_matches('/'),
            self.prefix
        )
    }

    /// Accepted bearer audiences (default `[client_id]`).
    pub fn bearer_audiences(&self) -> Vec<String> {
        self.bearer
            .audiences
            .clone()
            .unwrap_or_else(|| vec![self.provider.client_id.clone()])
    }

    /// Whether the external origin is https.
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// The session cookie name: `__Host-oidc-gateway` on https, `oidc-gateway` on http.
    pub fn session_cookie_name(&self) -> &'static str {
        if self.is_https() {
            "__Host-oidc-gateway"
        } else {
            "oidc-gateway"
        }
    }
}

impl GatewayConfig {
    /// The authentication part of this configuration.
    pub fn oidc(&self) -> OidcConfig {
        OidcConfig {
            public_url: self.server.public_url.clone(),
            prefix: self.server.prefix.clone(),
            provider: self.provider.clone(),
            session: self.session.clone(),
            bearer: self.bearer.clone(),
            headers: self.headers.clone(),
            routes: self.routes.clone(),
        }
    }
}

/// `https://`, or `http://` on a loopback host.
pub fn check_provider_url(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(url) => Ok(()),
        "http" => Err("must be https:// (http:// only on loopback hosts)".into()),
        other => Err(format!("scheme `{other}` is not allowed; use https://")),
    }
}

/// 127.0.0.0/8, `[::1]` or `localhost`.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn base64_decode_any(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    let s = s.trim();
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

fn expand_table(
    table: &mut toml::Table,
    path: &str,
    env: &dyn Environment,
    problems: &mut Vec<ConfigProblem>,
) {
    for (k, v) in table.iter_mut() {
        let key = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        expand_value(v, &key, env, problems);
    }
}

fn expand_value(
    v: &mut toml::Value,
    key: &str,
    env: &dyn Environment,
    problems: &mut Vec<ConfigProblem>,
) {
    match v {
        toml::Value::String(s) => match expand_vars(s, env) {
            Ok(expanded) => *s = expanded,
            Err(m) => problems.push(ConfigProblem {
                key: key.into(),
                message: m,
            }),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{key}[{i}]"), env, problems);
            }
        }
        toml::Value::Table(t) => expand_table(t, key, env, problems),
        _ => {}
    }
}

/// Expands `${VAR}` from `env`; `$$` is a literal `$`.
fn expand_vars(s: &str, env: &dyn Environment) -> Result<String, String> {
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated `${` in value".to_string())?;
            let name = &body[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("`${{{name}}}` is not a variable name"));
            }
            let value = env
                .var(name)
                .ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn read_file_keys(root: &mut toml::Table, problems: &mut Vec<ConfigProblem>) {
    for (section, key) in FILE_KEYS {
        let Some(toml::Value::Table(t)) = root.get_mut(*section) else {
            continue;
        };
        let file_key = format!("{key}_file");
        let Some(v) = t.remove(&file_key) else {
            continue;
        };
        let full = format!("{section}.{file_key}");
        if t.contains_key(*key) {
            problems.push(ConfigProblem {
                key: full,
                message: format!("set either {key} or {file_key}, not both"),
            });
            continue;
        }
        let toml::Value::String(path) = v else {
            problems.push(ConfigProblem {
                key: full,
                message: "must be a path string".into(),
            });
            continue;
        };
        match std::fs::read_to_string(&path) {
            Ok(content) => {
                let value = content.strip_suffix('\n').unwrap_or(&content);
                let value = value.strip_suffix('\r').unwrap_or(value);
                t.insert((*key).to_string(), toml::Value::String(value.to_string()));
            }
            Err(e) => problems.push(ConfigProblem {
                key: full,
                message: format!("cannot read {path}: {}", e.kind()),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
