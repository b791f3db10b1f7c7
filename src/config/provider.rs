//! `[provider]`: the identity provider, the client, and what is accepted
//! from the provider (signing algorithms, URLs).

use super::duration;
use super::problems::{At, Section};
use crate::secret::Secret;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use url::Url;

// ===== [provider] =====

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
    /// `private_key_file`), signed anew for every token request.
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

/// How the JWKS is fetched (Oracle IDCS protects it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JwksAuth {
    /// With an access token from a client-credentials grant.
    ClientCredentials,
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
    /// Signing algorithm of the `private_key_jwt` assertions: one of
    /// `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512` for RSA keys,
    /// `ES256` for EC keys. Default `RS256` for RSA keys, `ES256` for EC keys.
    pub private_key_alg: Option<SigningAlgorithm>,
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
    /// Signing algorithms accepted for ID and access tokens. Default: from
    /// discovery, the provider's `id_token_signing_alg_values_supported`
    /// that are in the safe asymmetric set (RS256/384/512, PS256/384/512,
    /// ES256/384, EdDSA); `RS256` when the provider advertises none (OpenID
    /// Connect Core §15.1) or has no discovery. `HS256`/`HS384`/`HS512`
    /// only when listed here (and a `client_secret` exists): ID tokens
    /// MACed with the client secret (Core §10.1); never bearer tokens.
    pub allowed_algorithms: Option<Vec<AllowedAlgorithm>>,
    /// Fetch the discovery document at `issuer`. Default `true` for
    /// `oidc` and `oracle-idcs`. `false`: the endpoints come from this
    /// section (`jwks_uri` required); without `authorization_endpoint` and
    /// `token_endpoint` the gateway is bearer-only (no browser sign-in:
    /// browsers get 401).
    #[serde(default = "yes")]
    pub discovery: bool,
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
    /// Longest time since an ID token's `iat` at login (OpenID Connect Core
    /// §3.1.3.7 step 10), beyond `clock_skew`. Default `10m`.
    #[serde(default = "default_id_token_max_age", deserialize_with = "duration")]
    pub id_token_max_age: Duration,
    /// Oracle IDCS: the issuer ID tokens carry. Default `https://identity.oraclecloud.com/`.
    pub expected_issuer: Option<String>,
    /// Janrain Capture: `https://<app>.<region>.janraincapture.com`.
    pub capture_domain: Option<Url>,
    /// Oracle IDCS: `client_credentials` to fetch the JWKS with an access token.
    pub jwks_auth: Option<JwksAuth>,
}

impl Section for ProviderConfig {
    fn validate(&self, at: &mut At<'_>) {
        self.validate_urls(at);
        if self.client_id.is_empty() {
            at.add("client_id", "must not be empty");
        }
        self.validate_kind(at);
        self.validate_client_auth(at);
        if self.scopes.is_empty() {
            at.add("scopes", "must not be empty");
        } else if matches!(self.kind, ProviderKind::Oidc | ProviderKind::OracleIdcs)
            && !self.scopes.iter().any(|s| s == "openid")
        {
            at.add("scopes", "must contain \"openid\"");
        }
        self.validate_algorithms(at);
        if self.max_response_bytes < 1024 {
            at.add("max_response_bytes", "must be at least 1024");
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                at.add(
                    "ca_file",
                    format!("{} is not a readable file", ca.display()),
                );
            }
        }
    }
}

impl ProviderConfig {
    /// The rules that depend on the external origin: `form_post` needs an
    /// https `public_url`.
    pub(super) fn validate_for_origin(&self, public_url: &Url, at: &mut At<'_>) {
        if self.response_mode == ResponseMode::FormPost && public_url.scheme() != "https" {
            at.add(
                "response_mode",
                "form_post needs an https public_url (the login cookie must be SameSite=None; Secure)",
            );
        }
    }

    fn validate_urls(&self, at: &mut At<'_>) {
        if let Some(issuer) = &self.issuer {
            match Url::parse(issuer) {
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
        }
        for (key, url) in [
            ("authorization_endpoint", &self.authorization_endpoint),
            ("token_endpoint", &self.token_endpoint),
            ("userinfo_endpoint", &self.userinfo_endpoint),
            ("jwks_uri", &self.jwks_uri),
            ("end_session_endpoint", &self.end_session_endpoint),
            ("capture_domain", &self.capture_domain),
        ] {
            if let Some(Err(e)) = url.as_ref().map(check_provider_url) {
                at.add(key, e.to_string());
            }
        }
    }

    /// `allowed_algorithms`: not empty; HMAC only with a client secret.
    fn validate_algorithms(&self, at: &mut At<'_>) {
        let Some(algs) = &self.allowed_algorithms else {
            return;
        };
        if algs.is_empty() {
            at.add(
                "allowed_algorithms",
                "must not be empty (omit it for the provider's advertised algorithms)",
            );
        }
        if let Some(hmac) = algs.iter().find(|a| a.is_hmac()) {
            if self.client_secret.as_ref().is_none_or(Secret::is_empty) {
                at.add(
                    "allowed_algorithms",
                    format!("{hmac} needs client_secret: HMAC ID tokens are keyed with it (OpenID Connect Core 10.1)"),
                );
            }
        }
    }

    /// Whether the client can authenticate at the provider with a secret
    /// (`client_secret_basic` / `_post` with a non-empty secret) or a key.
    pub(super) fn has_client_credentials(&self) -> bool {
        match self.client_auth {
            ClientAuth::PrivateKeyJwt => self.private_key_file.is_some(),
            _ => self.client_secret.as_ref().is_some_and(|s| !s.is_empty()),
        }
    }

    /// Whether this configuration has browser sign-in: discovery, or
    /// both explicit login endpoints (bearer-only otherwise).
    pub fn has_browser_login(&self) -> bool {
        self.discovery || (self.authorization_endpoint.is_some() && self.token_endpoint.is_some())
    }

    /// What each dialect requires, and the keys only one dialect takes.
    fn validate_kind(&self, at: &mut At<'_>) {
        if !self.discovery {
            if !matches!(self.kind, ProviderKind::Oidc) {
                at.add(
                    "discovery",
                    "only for kind = \"oidc\" (the other kinds set their own)",
                );
            }
            if self.jwks_uri.is_none() {
                at.add("jwks_uri", "required with discovery = false");
            }
            if self.authorization_endpoint.is_some() != self.token_endpoint.is_some() {
                at.add(
                    "token_endpoint",
                    "authorization_endpoint and token_endpoint go together (both for browser sign-in, neither for bearer-only)",
                );
            }
        }
        match self.kind {
            ProviderKind::Oidc | ProviderKind::OracleIdcs => {
                if self.issuer.is_none() {
                    at.add("issuer", "required for this provider kind");
                }
            }
            ProviderKind::Oauth2 => {
                for (key, v) in [
                    ("authorization_endpoint", &self.authorization_endpoint),
                    ("token_endpoint", &self.token_endpoint),
                    ("userinfo_endpoint", &self.userinfo_endpoint),
                ] {
                    if v.is_none() {
                        at.add(key, "required for kind = \"oauth2\"");
                    }
                }
            }
            ProviderKind::JanrainCapture => {
                if self.capture_domain.is_none() {
                    at.add("capture_domain", "required for kind = \"janrain-capture\"");
                }
            }
        }
        if self.kind == ProviderKind::Oauth2 && self.jwks_uri.is_some() && self.issuer.is_none() {
            at.add(
                "issuer",
                "required with jwks_uri for kind = \"oauth2\" (the iss ID tokens carry)",
            );
        }
        if let Some(expected) = &self.expected_issuer {
            if self.kind != ProviderKind::OracleIdcs {
                at.add("expected_issuer", "only for kind = \"oracle-idcs\"");
            } else if Url::parse(expected).is_err() {
                at.add("expected_issuer", "must be an absolute URL");
            }
        }
        if self.jwks_auth.is_some() && self.kind != ProviderKind::OracleIdcs {
            at.add("jwks_auth", "only for kind = \"oracle-idcs\"");
        }
    }

    fn validate_client_auth(&self, at: &mut At<'_>) {
        let needs_secret = |at: &mut At<'_>| {
            if self.client_secret.as_ref().is_none_or(Secret::is_empty) {
                at.add(
                    "client_secret",
                    "required (or client_secret_file) for this client_auth",
                );
            }
        };
        match self.client_auth {
            // Bearer-only makes no token request (introspection, which
            // does, is checked with `[bearer]`).
            ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost => {
                if self.has_browser_login() {
                    needs_secret(at)
                }
            }
            ClientAuth::PrivateKeyJwt => {
                if self.kind == ProviderKind::JanrainCapture {
                    at.add(
                        "client_auth",
                        "private_key_jwt is not supported by kind = \"janrain-capture\"",
                    );
                }
                match &self.private_key_file {
                    None => at.add(
                        "private_key_file",
                        "required for client_auth = \"private_key_jwt\"",
                    ),
                    Some(path) => {
                        if let Err(e) = crate::provider::client_assertion::ClientAssertionKey::load(
                            path,
                            self.private_key_alg,
                            self.private_key_kid.as_deref(),
                        ) {
                            at.add("private_key_file", e);
                        }
                    }
                }
            }
            ClientAuth::JanrainSigned => {
                if self.kind != ProviderKind::JanrainCapture {
                    at.add(
                        "client_auth",
                        "janrain-signed is only for kind = \"janrain-capture\"",
                    );
                }
                needs_secret(at);
            }
        }
        if self.client_auth != ClientAuth::PrivateKeyJwt {
            for (key, set) in [
                ("private_key_file", self.private_key_file.is_some()),
                ("private_key_kid", self.private_key_kid.is_some()),
                ("private_key_alg", self.private_key_alg.is_some()),
            ] {
                if set {
                    at.add(key, "only for client_auth = \"private_key_jwt\"");
                }
            }
        }
    }
}

// ===== SigningAlgorithm =====

/// A JWS signing algorithm the gateway can be configured to accept
/// (`provider.allowed_algorithms`) or sign with (`provider.private_key_alg`).
/// Asymmetric only: HMAC algorithms are never accepted, as their key would
/// have to be shared with every party that verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl SigningAlgorithm {
    /// Every supported algorithm, in the order of [`SUPPORTED_ALGORITHMS`].
    pub const ALL: [SigningAlgorithm; 9] = [
        SigningAlgorithm::RS256,
        SigningAlgorithm::RS384,
        SigningAlgorithm::RS512,
        SigningAlgorithm::PS256,
        SigningAlgorithm::PS384,
        SigningAlgorithm::PS512,
        SigningAlgorithm::ES256,
        SigningAlgorithm::ES384,
        SigningAlgorithm::EdDSA,
    ];

    /// The JOSE name (`alg` header value), e.g. `RS256`.
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::RS256 => "RS256",
            SigningAlgorithm::RS384 => "RS384",
            SigningAlgorithm::RS512 => "RS512",
            SigningAlgorithm::PS256 => "PS256",
            SigningAlgorithm::PS384 => "PS384",
            SigningAlgorithm::PS512 => "PS512",
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::ES384 => "ES384",
            SigningAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// The same algorithm for `jsonwebtoken`.
    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm;
        match self {
            SigningAlgorithm::RS256 => Algorithm::RS256,
            SigningAlgorithm::RS384 => Algorithm::RS384,
            SigningAlgorithm::RS512 => Algorithm::RS512,
            SigningAlgorithm::PS256 => Algorithm::PS256,
            SigningAlgorithm::PS384 => Algorithm::PS384,
            SigningAlgorithm::PS512 => Algorithm::PS512,
            SigningAlgorithm::ES256 => Algorithm::ES256,
            SigningAlgorithm::ES384 => Algorithm::ES384,
            SigningAlgorithm::EdDSA => Algorithm::EdDSA,
        }
    }
}

/// Signing algorithms the gateway can be configured to accept: the names of
/// [`SigningAlgorithm::ALL`].
pub const SUPPORTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`SUPPORTED_ALGORITHMS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedAlgorithm(String);

impl fmt::Display for UnsupportedAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hmac = if self.0.starts_with("HS") {
            "HMAC is never accepted; "
        } else {
            ""
        };
        write!(
            f,
            "`{}` is not accepted ({hmac}supported: {})",
            self.0,
            SUPPORTED_ALGORITHMS.join(", ")
        )
    }
}

impl std::error::Error for UnsupportedAlgorithm {}

impl FromStr for SigningAlgorithm {
    type Err = UnsupportedAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SigningAlgorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnsupportedAlgorithm(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for SigningAlgorithm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ===== AllowedAlgorithm =====

/// An algorithm `provider.allowed_algorithms` may name: a
/// [`SigningAlgorithm`], or HMAC with the client secret (ID tokens only,
/// OpenID Connect Core §10.1). `none` is never accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllowedAlgorithm {
    /// An asymmetric algorithm, verified with the provider's JWKS.
    Signing(SigningAlgorithm),
    /// HMAC-SHA-256 keyed with the client secret.
    HS256,
    /// HMAC-SHA-384 keyed with the client secret.
    HS384,
    /// HMAC-SHA-512 keyed with the client secret.
    HS512,
}

impl AllowedAlgorithm {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            AllowedAlgorithm::Signing(a) => a.name(),
            AllowedAlgorithm::HS256 => "HS256",
            AllowedAlgorithm::HS384 => "HS384",
            AllowedAlgorithm::HS512 => "HS512",
        }
    }

    /// Whether this is an HMAC (client secret) algorithm.
    pub fn is_hmac(self) -> bool {
        !matches!(self, AllowedAlgorithm::Signing(_))
    }

    /// The asymmetric algorithm, when it is one.
    pub fn signing(self) -> Option<SigningAlgorithm> {
        match self {
            AllowedAlgorithm::Signing(a) => Some(a),
            _ => None,
        }
    }

    /// The same algorithm for `jsonwebtoken`.
    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm;
        match self {
            AllowedAlgorithm::Signing(a) => a.jwt(),
            AllowedAlgorithm::HS256 => Algorithm::HS256,
            AllowedAlgorithm::HS384 => Algorithm::HS384,
            AllowedAlgorithm::HS512 => Algorithm::HS512,
        }
    }
}

impl fmt::Display for AllowedAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AllowedAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "HS256" => Ok(AllowedAlgorithm::HS256),
            "HS384" => Ok(AllowedAlgorithm::HS384),
            "HS512" => Ok(AllowedAlgorithm::HS512),
            _ => s.parse().map(AllowedAlgorithm::Signing).map_err(|_| {
                format!(
                    "`{s}` is not accepted (supported: {}, and HS256, HS384, HS512 for ID tokens keyed with the client secret)",
                    SUPPORTED_ALGORITHMS.join(", ")
                )
            }),
        }
    }
}

impl<'de> Deserialize<'de> for AllowedAlgorithm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ===== provider URLs =====

/// Why a provider URL is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderUrlError {
    /// `http://` on a host that is not loopback.
    #[error("must be https:// (http:// only on loopback hosts)")]
    InsecureHttp,
    /// Neither `https://` nor `http://`.
    #[error("scheme `{0}` is not allowed; use https://")]
    Scheme(String),
}

/// `https://`, or `http://` on a loopback host.
pub fn check_provider_url(url: &Url) -> Result<(), ProviderUrlError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(url) => Ok(()),
        "http" => Err(ProviderUrlError::InsecureHttp),
        other => Err(ProviderUrlError::Scheme(other.to_string())),
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

// ===== defaults =====

fn default_kind() -> ProviderKind {
    ProviderKind::Oidc
}
fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}
fn default_client_auth() -> ClientAuth {
    ClientAuth::ClientSecretBasic
}
fn yes() -> bool {
    true
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
fn default_id_token_max_age() -> Duration {
    Duration::from_secs(600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_algorithm_names_are_the_supported_list() {
        let names: Vec<&str> = SigningAlgorithm::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names, SUPPORTED_ALGORITHMS);
        for a in SigningAlgorithm::ALL {
            assert_eq!(a.name().parse::<SigningAlgorithm>(), Ok(a));
            assert_eq!(format!("{:?}", a.jwt()), a.name());
        }
    }

    #[test]
    fn signing_algorithm_hmac_and_unknown_names_are_refused() {
        let e = "HS256".parse::<SigningAlgorithm>().unwrap_err().to_string();
        assert!(e.starts_with("`HS256` is not accepted (HMAC"), "{e}");
        let e = "none".parse::<SigningAlgorithm>().unwrap_err().to_string();
        assert!(e.contains("supported: RS256, RS384"), "{e}");
        assert!("rs256".parse::<SigningAlgorithm>().is_err());
    }
}
