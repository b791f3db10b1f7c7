//! `gateway.toml`: the gateway's configuration, and [`OidcConfig`], the
//! layer's part of it.
//!
//! Loading goes path → string → [`GatewayConfig::from_toml_str`] →
//! validation. Before the typed parse, every string value has `${VAR}`
//! expanded from the environment, and every `<key>_file` key that stands for
//! a secret (`client_secret_file`, `secret_file`, `redis_url_file`) is
//! replaced by the file's content (trailing newline trimmed). Unknown keys
//! are an error. Durations are strings such as `30s`, `15m` or `8h`.
//!
//! Each section is parsed and validated on its own (`server`, `provider`,
//! `session`, `routes` submodules), so one bad section does not hide the
//! problems of the others. Every problem is reported with its key path;
//! secrets are never part of a problem message or of `Debug` output.
//!
//! | module | sections |
//! | --- | --- |
//! | `server` | `[server]`, `[admin]`, `[upstream]` |
//! | `log` | `[log]` |
//! | `provider` | `[provider]` |
//! | `session` | `[session]`, `[bearer]`, `[headers]` |
//! | `routes` | `[[route]]` |
//! | `tracing_export` | `[tracing]` |
//! | `problems` | [`ConfigError`], [`ConfigProblem`], key paths |
//! | `env` | `${VAR}`, `*_file`, [`Environment`] |

mod env;
mod log;
mod problems;
mod provider;
mod routes;
mod server;
mod session;
mod tracing_export;

pub use env::{Environment, ProcessEnv};
pub use log::{LogConfig, LogFormat};
pub use problems::{ConfigError, ConfigProblem};
pub use provider::{
    check_provider_url, is_loopback_host, AllowedAlgorithm, ClientAuth, JwksAuth, ProviderConfig,
    ProviderKind, ProviderUrlError, ResponseMode, SigningAlgorithm, UnsupportedAlgorithm,
    SUPPORTED_ALGORITHMS,
};
pub use routes::{RouteAuth, RouteConfig};
pub use server::{AdminConfig, ServerConfig, UpstreamConfig};
pub use session::{
    AuthorizationConfig, BearerConfig, BearerIssuerConfig, HeaderNamesConfig, SameSiteConfig,
    SessionConfig, SessionStoreKind, MAX_BEARER_ISSUERS,
};
pub use tracing_export::{TracingConfig, NO_OTEL, OTLP_TRACES_PATH};

use problems::{At, Problems, Section};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::Path;
use std::time::Duration;
use url::Url;

// ===== GatewayConfig =====

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
    /// `[log]`: log format, filter and the access log.
    #[serde(default)]
    pub log: LogConfig,
    /// `[tracing]`: OpenTelemetry trace export.
    #[serde(default)]
    pub tracing: TracingConfig,
}

impl GatewayConfig {
    /// Reads, expands and validates the file at `path` with the process environment.
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                ConfigError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Self::from_toml_str(&text, &ProcessEnv)
    }

    /// Parses, expands and validates a TOML document.
    pub fn from_toml_str(text: &str, env: &dyn Environment) -> Result<Self, ConfigError> {
        let mut doc = parse_document(text, env)?;
        let mut problems = Problems::default();
        problems::unknown_keys::<GatewayConfig>("", &mut doc, &mut problems);
        let server = required::<ServerConfig>(&mut doc, "server", &mut problems);
        let admin = optional::<AdminConfig>(&mut doc, "admin", &mut problems);
        let upstream = required::<UpstreamConfig>(&mut doc, "upstream", &mut problems);
        let log = optional::<LogConfig>(&mut doc, "log", &mut problems);
        let layer = LayerSections::parse(&mut doc, &mut problems);
        let tracing = optional::<TracingConfig>(&mut doc, "tracing", &mut problems);
        if let Some(server) = &server {
            layer.validate_for_origin(&server.public_url, &mut problems);
        }
        let (Some(server), Some(admin), Some(upstream), Some(log), Some(layer), Some(tracing)) =
            (server, admin, upstream, log, layer.complete(), tracing)
        else {
            return Err(incomplete(problems));
        };
        problems.into_result(GatewayConfig {
            server,
            admin,
            upstream,
            provider: layer.provider,
            session: layer.session,
            bearer: layer.bearer,
            headers: layer.headers,
            routes: layer.routes,
            log,
            tracing,
        })
    }

    /// Checks what types alone cannot: every problem is collected.
    /// ([`from_toml_str`](Self::from_toml_str) already did.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        self.server.validate(&mut problems.at("server"));
        self.admin.validate(&mut problems.at("admin"));
        self.upstream.validate(&mut problems.at("upstream"));
        self.log.validate(&mut problems.at("log"));
        self.tracing.validate(&mut problems.at("tracing"));
        validate_layer(&self.oidc(), &mut problems);
        problems.into_result(())
    }

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

    /// The redirect URI registered at the provider: `public_url + prefix + /callback`.
    pub fn redirect_uri(&self) -> String {
        redirect_uri(&self.server.public_url, &self.server.prefix)
    }

    /// Accepted bearer audiences (default `[client_id]`).
    pub fn bearer_audiences(&self) -> Vec<String> {
        bearer_audiences(&self.bearer, &self.provider)
    }

    /// Whether the external origin is https.
    pub fn is_https(&self) -> bool {
        self.server.public_url.scheme() == "https"
    }

    /// The session cookie name: `session.cookie_name`, else
    /// `__Host-oidc-gateway` on https (`__Secure-oidc-gateway` with a
    /// `cookie_domain`), `oidc-gateway` on http.
    pub fn session_cookie_name(&self) -> &str {
        session_cookie_name(self.is_https(), &self.session)
    }
}

// ===== OidcConfig =====

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

/// The top-level keys of an [`OidcConfig`] document.
const OIDC_KEYS: &[&str] = &[
    "public_url",
    "prefix",
    "provider",
    "session",
    "bearer",
    "headers",
    "route",
];

/// The top-level `public_url` and `prefix` of an [`OidcConfig`] document
/// (`[server]` has them in `gateway.toml`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Origin {
    public_url: Url,
    #[serde(default = "server::default_prefix")]
    prefix: String,
}

impl Section for Origin {
    fn validate(&self, at: &mut At<'_>) {
        server::validate_public_url(&self.public_url, "public_url", at);
        server::validate_prefix(&self.prefix, "prefix", at);
    }
}

impl OidcConfig {
    /// Parses, expands and validates the layer's part of a configuration:
    /// top-level `public_url` (required) and `prefix`, then the
    /// `[provider]`, `[session]`, `[bearer]`, `[headers]` and `[[route]]`
    /// sections exactly as in `gateway.toml`. The same rules apply as to
    /// `gateway.toml`, and problems carry the same key paths (`public_url`
    /// and `prefix` are top-level here).
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
        let mut doc = parse_document(text, env)?;
        let mut problems = Problems::default();
        let unknown: Vec<String> = doc
            .keys()
            .filter(|k| !OIDC_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            doc.remove(&key);
            let message = match key.as_str() {
                "server" => "unknown key (public_url and prefix are top-level keys here)".into(),
                "upstream" | "admin" => {
                    "unknown key (the layer has no listener or upstream)".into()
                }
                _ => problems::unknown_key_message(&key, OIDC_KEYS),
            };
            problems.add(key, message);
        }
        let origin: toml::Table = ["public_url", "prefix"]
            .into_iter()
            .filter_map(|k| Some((k.to_string(), doc.remove(k)?)))
            .collect();
        let origin = problems::section::<Origin>("", toml::Value::Table(origin), &mut problems);
        let layer = LayerSections::parse(&mut doc, &mut problems);
        if let Some(origin) = &origin {
            layer.validate_for_origin(&origin.public_url, &mut problems);
        }
        let (Some(origin), Some(layer)) = (origin, layer.complete()) else {
            return Err(incomplete(problems));
        };
        problems.into_result(OidcConfig {
            public_url: origin.public_url,
            prefix: origin.prefix,
            provider: layer.provider,
            session: layer.session,
            bearer: layer.bearer,
            headers: layer.headers,
            routes: layer.routes,
        })
    }

    /// Checks what types alone cannot, with the rules and key paths of
    /// [`from_toml_str`](Self::from_toml_str) (which already did).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        let mut at = problems.at("");
        server::validate_public_url(&self.public_url, "public_url", &mut at);
        server::validate_prefix(&self.prefix, "prefix", &mut at);
        validate_layer(self, &mut problems);
        problems.into_result(())
    }

    /// The redirect URI registered at the provider: `public_url + prefix + /callback`.
    pub fn redirect_uri(&self) -> String {
        redirect_uri(&self.public_url, &self.prefix)
    }

    /// Accepted bearer audiences (default `[client_id]`).
    pub fn bearer_audiences(&self) -> Vec<String> {
        bearer_audiences(&self.bearer, &self.provider)
    }

    /// Whether the external origin is https.
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// The session cookie name: `session.cookie_name`, else
    /// `__Host-oidc-gateway` on https (`__Secure-oidc-gateway` with a
    /// `cookie_domain`), `oidc-gateway` on http.
    pub fn session_cookie_name(&self) -> &str {
        session_cookie_name(self.is_https(), &self.session)
    }
}

// ===== the layer's sections =====

/// The layer's sections as parsed from a document; `None` where a section
/// could not be built (its problems are recorded).
struct LayerSections {
    provider: Option<ProviderConfig>,
    session: Option<SessionConfig>,
    bearer: Option<BearerConfig>,
    headers: Option<HeaderNamesConfig>,
    routes: Option<Vec<RouteConfig>>,
}

/// The layer's sections, all built.
struct Layer {
    provider: ProviderConfig,
    session: SessionConfig,
    bearer: BearerConfig,
    headers: HeaderNamesConfig,
    routes: Vec<RouteConfig>,
}

impl LayerSections {
    /// Takes the layer's sections out of `doc`, each parsed and validated.
    fn parse(doc: &mut toml::Table, problems: &mut Problems) -> Self {
        LayerSections {
            provider: required(doc, "provider", problems),
            session: required(doc, "session", problems),
            bearer: optional(doc, "bearer", problems),
            headers: optional(doc, "headers", problems),
            routes: routes::parse(doc.remove("route"), problems),
        }
    }

    /// The rules across sections (some depend on `public_url`).
    fn validate_for_origin(&self, public_url: &Url, problems: &mut Problems) {
        if let (Some(provider), Some(bearer)) = (&self.provider, &self.bearer) {
            introspection_credentials(provider, bearer, problems);
        }
        if let Some(provider) = &self.provider {
            provider.validate_for_origin(public_url, &mut problems.at("provider"));
        }
        if let Some(session) = &self.session {
            session.validate_for_origin(public_url, &mut problems.at("session"));
            if let Some(headers) = &self.headers {
                headers.validate_for_store(session.store, &mut problems.at("headers"));
            }
        }
    }

    fn complete(self) -> Option<Layer> {
        Some(Layer {
            provider: self.provider?,
            session: self.session?,
            bearer: self.bearer?,
            headers: self.headers?,
            routes: self.routes?,
        })
    }
}

/// Validates the layer's sections of a built configuration (not
/// `public_url` and `prefix` themselves, whose key paths differ).
fn validate_layer(c: &OidcConfig, problems: &mut Problems) {
    c.provider.validate(&mut problems.at("provider"));
    c.session.validate(&mut problems.at("session"));
    c.bearer.validate(&mut problems.at("bearer"));
    c.headers.validate(&mut problems.at("headers"));
    for (i, route) in c.routes.iter().enumerate() {
        route.validate(&mut problems.at(&format!("route[{i}]")));
    }
    c.provider
        .validate_for_origin(&c.public_url, &mut problems.at("provider"));
    c.session
        .validate_for_origin(&c.public_url, &mut problems.at("session"));
    c.headers
        .validate_for_store(c.session.store, &mut problems.at("headers"));
    introspection_credentials(&c.provider, &c.bearer, problems);
}

/// Introspection calls are client-authenticated, also when nothing else
/// (bearer-only) needs the client's credentials.
fn introspection_credentials(p: &ProviderConfig, b: &BearerConfig, problems: &mut Problems) {
    if b.introspection && !p.has_client_credentials() {
        problems.add(
            "bearer.introspection",
            "needs provider.client_secret (or private_key_jwt): introspection calls are client-authenticated",
        );
    }
}

/// Section `name` of `doc`, which must be there.
fn required<T: Section>(doc: &mut toml::Table, name: &str, problems: &mut Problems) -> Option<T> {
    match doc.remove(name) {
        Some(value) => problems::section(name, value, problems),
        None => {
            problems.add(name, "missing section");
            None
        }
    }
}

/// Section `name` of `doc`, or its defaults.
fn optional<T: Section + Default>(
    doc: &mut toml::Table,
    name: &str,
    problems: &mut Problems,
) -> Option<T> {
    match doc.remove(name) {
        Some(value) => problems::section(name, value, problems),
        None => Some(T::default()),
    }
}

/// The error for a document some section of which could not be built
/// (which always recorded why).
fn incomplete(mut problems: Problems) -> ConfigError {
    if problems.is_empty() {
        problems.add("", "incomplete configuration");
    }
    problems.into_error()
}

/// The TOML document of `text`, with `${VAR}` and `*_file` keys expanded.
/// A syntax error names its line and column but does not quote the line,
/// which may hold a secret.
fn parse_document(text: &str, env: &dyn Environment) -> Result<toml::Table, ConfigError> {
    let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let message = e.message().trim();
        let at = e.span().and_then(|span| {
            let before = text.get(..span.start)?;
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Some(format!(" at line {line}, column {column}"))
        });
        ConfigError::one(
            "",
            format!("TOML syntax error{}: {message}", at.unwrap_or_default()),
        )
    })?;
    let mut problems = Problems::default();
    env::expand(&mut doc, env, &mut problems);
    problems.into_result(doc)
}

fn redirect_uri(public_url: &Url, prefix: &str) -> String {
    format!(
        "{}{}/callback",
        public_url.as_str().trim_end_matches('/'),
        prefix
    )
}

fn bearer_audiences(bearer: &BearerConfig, provider: &ProviderConfig) -> Vec<String> {
    bearer
        .audiences
        .clone()
        .unwrap_or_else(|| vec![provider.client_id.clone()])
}

fn session_cookie_name(https: bool, session: &SessionConfig) -> &str {
    match (&session.cookie_name, https, &session.cookie_domain) {
        (Some(name), _, _) => name,
        (None, true, None) => "__Host-oidc-gateway",
        (None, true, Some(_)) => "__Secure-oidc-gateway",
        (None, false, _) => "oidc-gateway",
    }
}

// ===== durations =====

/// A duration value that is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError(String);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a duration (use e.g. \"30s\", \"15m\", \"8h\")",
            self.0
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses `30s`, `15m`, `8h`, `1h30m`, `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(s.trim()).map_err(|_| DurationError(s.to_string()))
}

/// `deserialize_with` for duration strings.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// `deserialize_with` for optional duration strings.
fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

#[cfg(test)]
mod tests;
