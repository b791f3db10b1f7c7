//! `[session]`, `[bearer]` and `[headers]`: browser sessions, API clients
//! with bearer tokens, and the names of the identity headers sent upstream.

use super::duration;
use super::problems::{At, Section};
use super::provider::check_provider_url;
use crate::secret::{Secret, SessionSecret};
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

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
    /// The key that seals the login-state cookies and sessions (cookie
    /// store, Redis values): at least 32 random bytes, written in base64
    /// (standard or URL-safe, padded or not), decoded when the
    /// configuration is loaded.
    #[serde(deserialize_with = "session_secret")]
    pub secret: SessionSecret,
    /// Older secrets that still open what they sealed but never seal
    /// (rotation without signing everyone out); at most 8. Default none.
    #[serde(default, deserialize_with = "previous_session_secrets")]
    pub previous_secrets: Vec<SessionSecret>,
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
    /// Session cookie name. Default `__Host-oidc-gateway` on https
    /// (`__Secure-oidc-gateway` with `cookie_domain`), `oidc-gateway` on http.
    pub cookie_name: Option<String>,
    /// `Domain` of the session cookie, to share the session with
    /// subdomains; then the name cannot have the `__Host-` prefix. Default:
    /// none (host-only).
    pub cookie_domain: Option<String>,
    /// `SameSite` of the session cookie. Default `lax`.
    #[serde(default)]
    pub same_site: SameSiteConfig,
}

/// `session.same_site`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SameSiteConfig {
    /// Sent on top-level navigations from other sites.
    #[default]
    Lax,
    /// Never sent on requests from other sites.
    Strict,
    /// Always sent (needs https: the cookie is then `Secure`).
    None,
}

/// Decodes `session.secret`; the message never contains the value.
fn session_secret<'de, D: Deserializer<'de>>(d: D) -> Result<SessionSecret, D::Error> {
    let text = Secret::deserialize(d)?;
    SessionSecret::from_base64(text.expose()).map_err(serde::de::Error::custom)
}

/// Decodes `session.previous_secrets`; messages never contain a value and
/// name the entry (`previous_secrets[i]`).
fn previous_session_secrets<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<SessionSecret>, D::Error> {
    struct Decoded(SessionSecret);
    impl<'de> Deserialize<'de> for Decoded {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            session_secret(d).map(Decoded)
        }
    }
    let decoded = Vec::<Decoded>::deserialize(d)?;
    Ok(decoded.into_iter().map(|s| s.0).collect())
}

fn default_redis_key_prefix() -> String {
    "oidc-gateway:".into()
}

fn default_redis_cache_ttl() -> Duration {
    Duration::from_secs(2)
}

impl Section for SessionConfig {
    fn validate(&self, at: &mut At<'_>) {
        if self.previous_secrets.len() > crate::session::seal::MAX_PREVIOUS_SECRETS {
            at.add(
                "previous_secrets",
                format!(
                    "at most {} secrets",
                    crate::session::seal::MAX_PREVIOUS_SECRETS
                ),
            );
        }
        if self.store == SessionStoreKind::Redis {
            match self.redis_url.as_ref().map(|u| url::Url::parse(u.expose())) {
                None => at.add("redis_url", "is required with store = \"redis\""),
                // The URL may hold a password: never echo it.
                Some(Err(_)) => at.add("redis_url", "is not a URL"),
                Some(Ok(u)) if !matches!(u.scheme(), "redis" | "rediss") => {
                    at.add("redis_url", "must start with redis:// or rediss://")
                }
                Some(Ok(u)) if u.host_str().is_none_or(str::is_empty) => {
                    at.add("redis_url", "has no host")
                }
                Some(Ok(_)) => {}
            }
        }
        let prefix = &self.redis_key_prefix;
        if prefix.is_empty() || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            at.add(
                "redis_key_prefix",
                "must be 1 to 64 visible ASCII characters",
            );
        }
        if self.redis_cache_ttl > Duration::from_secs(60) {
            at.add("redis_cache_ttl", "must be at most 60s");
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
        if let Some(name) = &self.cookie_name {
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty() || !name.bytes().all(token) {
                at.add("cookie_name", format!("`{name}` is not a cookie name"));
            } else if name.starts_with("__Host-") && self.cookie_domain.is_some() {
                at.add(
                    "cookie_name",
                    "a __Host- cookie cannot have a Domain: drop the prefix or cookie_domain",
                );
            }
        }
        if let Some(domain) = &self.cookie_domain {
            let d = domain.trim_start_matches('.');
            let ok = !d.is_empty()
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                at.add("cookie_domain", format!("`{domain}` is not a domain name"));
            }
        }
    }
}

impl SessionConfig {
    /// The cookie rules that depend on the public URL.
    pub(super) fn validate_for_origin(&self, public_url: &Url, at: &mut At<'_>) {
        let https = public_url.scheme() == "https";
        if let Some(name) = &self.cookie_name {
            if !https && (name.starts_with("__Host-") || name.starts_with("__Secure-")) {
                at.add(
                    "cookie_name",
                    "__Host- and __Secure- cookies need an https public_url",
                );
            }
        }
        if self.same_site == SameSiteConfig::None && !https {
            at.add(
                "same_site",
                "\"none\" needs an https public_url (the cookie must be Secure)",
            );
        }
        if let (Some(domain), Some(host)) = (&self.cookie_domain, public_url.host_str()) {
            let d = domain.trim_start_matches('.').to_ascii_lowercase();
            let host = host.to_ascii_lowercase();
            if host != d && !host.ends_with(&format!(".{d}")) {
                at.add(
                    "cookie_domain",
                    format!("`{domain}` does not contain the public_url host `{host}`"),
                );
            }
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
    /// Most validated tokens (and, with introspection, answers) kept in
    /// the cache. Default 100000.
    #[serde(default = "default_bearer_cache")]
    pub cache_capacity: u64,
    /// Accept an ID token of this client as a bearer token. Default `false`:
    /// an ID token is not an access token (RFC 9068 §4, RFC 8725 §3.11).
    #[serde(default)]
    pub accept_id_tokens: bool,
    /// Check opaque (non-JWT) bearer tokens at the provider's RFC 7662
    /// introspection endpoint. Default `false`.
    #[serde(default)]
    pub introspection: bool,
    /// The introspection endpoint. Default: `introspection_endpoint` from
    /// OpenID discovery, else from the RFC 8414 metadata at
    /// `/.well-known/oauth-authorization-server`.
    pub introspection_endpoint: Option<Url>,
    /// Longest time an introspection answer is reused (never past the
    /// token's `exp`; refusals are reused for at most 10s). Default `60s`.
    #[serde(default = "default_introspection_cache", deserialize_with = "duration")]
    pub introspection_cache: Duration,
    /// The introspection endpoint answers `active` for access tokens only
    /// (django-oauth-toolkit): an answer naming no `token_type` is taken as
    /// an access token's, and `username` stands in for a missing `sub`.
    /// Default `false` (an untyped answer could be a refresh token's).
    #[serde(default)]
    pub introspection_access_tokens_only: bool,
    /// Scopes every bearer token (JWT or introspected) must have been
    /// granted (`scope` / `scp`); a token without one gets 403
    /// `insufficient_scope`. Default: none.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Fetch the provider's userinfo with each newly validated bearer token
    /// of the login provider (the token as the credential) and merge it
    /// into the identity; cached with the token. Its `sub` must equal the
    /// token's. Default `false`.
    #[serde(default)]
    pub userinfo: bool,
    /// `[[bearer.issuer]]`: further issuers whose JWT access tokens are
    /// accepted alongside the login provider's. Default: none.
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<BearerIssuerConfig>,
}

/// Most `[[bearer.issuer]]` entries.
pub const MAX_BEARER_ISSUERS: usize = 16;

/// `[[bearer.issuer]]`: another issuer of JWT access tokens.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerIssuerConfig {
    /// The `iss` its tokens carry, exactly.
    pub issuer: String,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    /// Its JWKS. Default: `jwks_uri` of its discovery document at
    /// `issuer + /.well-known/openid-configuration`.
    pub jwks_uri: Option<Url>,
    /// Accepted signing algorithms (asymmetric only). Default: every one of
    /// RS256/384/512, PS256/384/512, ES256/384, EdDSA that fits a key.
    pub allowed_algorithms: Option<Vec<super::SigningAlgorithm>>,
}

impl BearerIssuerConfig {
    fn validate(&self, at: &mut At<'_>) {
        match Url::parse(&self.issuer) {
            Ok(url) if url.query().is_none() && url.fragment().is_none() => {
                if let Err(e) = check_provider_url(&url) {
                    at.add("issuer", e.to_string());
                }
            }
            _ => at.add(
                "issuer",
                "must be an absolute URL without query or fragment",
            ),
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            at.add("audiences", "must name at least one non-empty audience");
        }
        if let Some(Err(e)) = self.jwks_uri.as_ref().map(check_provider_url) {
            at.add("jwks_uri", e.to_string());
        }
        if self.allowed_algorithms.as_ref().is_some_and(Vec::is_empty) {
            at.add(
                "allowed_algorithms",
                "must not be empty (omit it for the default)",
            );
        }
    }
}

impl Default for BearerConfig {
    fn default() -> Self {
        BearerConfig {
            enabled: true,
            audiences: None,
            cache_capacity: default_bearer_cache(),
            accept_id_tokens: false,
            introspection: false,
            introspection_endpoint: None,
            introspection_cache: default_introspection_cache(),
            introspection_access_tokens_only: false,
            required_scopes: Vec::new(),
            userinfo: false,
            issuers: Vec::new(),
        }
    }
}

impl Section for BearerConfig {
    fn validate(&self, at: &mut At<'_>) {
        if self.audiences.as_ref().is_some_and(Vec::is_empty) {
            at.add("audiences", "must not be empty (omit it for [client_id])");
        }
        if let Some(url) = &self.introspection_endpoint {
            if let Err(e) = check_provider_url(url) {
                at.add("introspection_endpoint", e.to_string());
            }
            if !self.introspection {
                at.add(
                    "introspection_endpoint",
                    "is only used with introspection = true",
                );
            }
        }
        if self.introspection_access_tokens_only && !self.introspection {
            at.add(
                "introspection_access_tokens_only",
                "is only used with introspection = true",
            );
        }
        if self.introspection_cache > Duration::from_secs(3600) {
            at.add("introspection_cache", "must be at most 1h");
        }
        if self
            .required_scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(' ') || s.len() > 256)
        {
            at.add(
                "required_scopes",
                "each scope must be a non-empty word without spaces",
            );
        }
        if self.required_scopes.iter().any(|s| {
            !s.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        }) {
            at.add(
                "required_scopes",
                "scopes are RFC 6749 scope tokens (printable ASCII without space, \" or \\)",
            );
        }
        if self.issuers.len() > MAX_BEARER_ISSUERS {
            at.add("issuer", format!("at most {MAX_BEARER_ISSUERS} entries"));
        }
        for (i, issuer) in self.issuers.iter().enumerate() {
            issuer.validate(&mut at.at(&format!("issuer[{i}]")));
            if self.issuers[..i].iter().any(|o| o.issuer == issuer.issuer) {
                at.add(&format!("issuer[{i}].issuer"), "repeats an earlier entry");
            }
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
    /// Send the access token in this header (oauth2-proxy's
    /// `X-Forwarded-Access-Token`). Default: not sent.
    pub access_token: Option<String>,
    /// Send the ID token in this header. Default: not sent.
    pub id_token: Option<String>,
    /// Set `Authorization: Bearer <token>` upstream. Default `none`.
    #[serde(default)]
    pub authorization: AuthorizationConfig,
    /// Send a signed identity assertion (JWT) in this header, e.g.
    /// `X-Auth-Request-Jwt`. Default: not sent.
    pub assertion: Option<String>,
    /// PEM EC P-256 private key signing the assertion. Default: a key
    /// generated at start (memory session store only).
    pub assertion_key_file: Option<PathBuf>,
    /// `aud` of the assertion. Default: the origin of the request's
    /// upstream (the route's, else `[upstream] url`).
    pub assertion_audience: Option<String>,
    /// How long an assertion is valid. Default `60s`.
    #[serde(default = "default_assertion_lifetime", deserialize_with = "duration")]
    pub assertion_lifetime: Duration,
}

/// `headers.authorization`: which token `Authorization: Bearer` carries upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationConfig {
    /// The client's own `Authorization` passes unchanged.
    #[default]
    None,
    /// The access token.
    AccessToken,
    /// The ID token.
    IdToken,
}

impl Default for HeaderNamesConfig {
    fn default() -> Self {
        HeaderNamesConfig {
            user: h_user(),
            email: h_email(),
            preferred_username: h_preferred_username(),
            groups: h_groups(),
            access_token: None,
            id_token: None,
            authorization: AuthorizationConfig::None,
            assertion: None,
            assertion_key_file: None,
            assertion_audience: None,
            assertion_lifetime: default_assertion_lifetime(),
        }
    }
}

impl HeaderNamesConfig {
    /// The assertion key rule that depends on the session store.
    pub(super) fn validate_for_store(&self, store: SessionStoreKind, at: &mut At<'_>) {
        if self.assertion.is_some()
            && self.assertion_key_file.is_none()
            && store != SessionStoreKind::Memory
        {
            at.add(
                "assertion_key_file",
                "required unless session.store = \"memory\" (every gateway process must sign with the same key)",
            );
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
        let identity = [
            &self.user,
            &self.email,
            &self.preferred_username,
            &self.groups,
        ];
        let mut seen: Vec<String> = Vec::new();
        for (key, name) in [
            ("access_token", &self.access_token),
            ("id_token", &self.id_token),
            ("assertion", &self.assertion),
        ] {
            let Some(name) = name else { continue };
            let lower = name.to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                at.add(key, format!("`{name}` is not a header name"));
            } else if matches!(lower.as_str(), "authorization" | "cookie" | "host") {
                at.add(
                    key,
                    format!("`{name}` cannot carry it (use headers.authorization)"),
                );
            } else if identity.iter().any(|i| i.eq_ignore_ascii_case(name)) || seen.contains(&lower)
            {
                at.add(key, format!("`{name}` is already used by another header"));
            }
            seen.push(lower);
        }
        if self.assertion.is_none() {
            for (key, set) in [
                ("assertion_key_file", self.assertion_key_file.is_some()),
                ("assertion_audience", self.assertion_audience.is_some()),
            ] {
                if set {
                    at.add(key, "only with headers.assertion");
                }
            }
        }
        if let Some(path) = &self.assertion_key_file {
            let probe = crate::auth::AssertionSigner::from_file(
                path,
                "https://probe.invalid",
                self.assertion_lifetime,
                crate::clock::system(),
            );
            if let Err(e) = probe {
                at.add("assertion_key_file", e.to_string());
            }
        }
        if self
            .assertion_audience
            .as_ref()
            .is_some_and(|a| a.trim().is_empty())
        {
            at.add("assertion_audience", "must not be empty");
        }
        if !(Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&self.assertion_lifetime)
        {
            at.add("assertion_lifetime", "must be between 10s and 1h");
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
fn default_introspection_cache() -> Duration {
    Duration::from_secs(60)
}
fn default_assertion_lifetime() -> Duration {
    Duration::from_secs(60)
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
