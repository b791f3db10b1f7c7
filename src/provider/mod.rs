//! The identity provider: discovery metadata and signing keys.
//!
//! Metadata comes from `issuer + /.well-known/openid-configuration`, whose
//! `issuer` must equal the configured one exactly (OpenID Connect Discovery
//! §4.3); explicitly configured endpoints override what discovery says. With
//! `discovery = false` it comes from the configuration alone (`issuer` +
//! `jwks_uri`, and the login endpoints when there is browser sign-in). The
//! JWKS is cached in a [`KeyCache`](keys::KeyCache): a token with an unknown
//! `kid` triggers at most one refetch per `jwks_min_refresh_interval`, and
//! the start-up and periodic fetches do not count against that limit (see
//! [`keys`]). Each `[[bearer.issuer]]` has its own ([`issuer`]).
//!
//! Provider dialects (see [`crate::provider::dialect`]) change three things here:
//! `janrain-capture` and `oauth2` have no discovery (their endpoints come
//! from the configuration, and they may have no JWKS at all); `oracle-idcs`
//! discovers at the tenant URL but its discovery `issuer` (and the ID
//! tokens' `iss`) is `expected_issuer`, compared trailing-slash tolerant;
//! and with `jwks_auth = "client_credentials"` the JWKS is fetched with a
//! client-credentials access token.

pub(crate) mod client;
pub(crate) mod client_assertion;
pub(crate) mod dialect;
pub(crate) mod http;
pub(crate) mod introspection;
pub(crate) mod issuer;
pub(crate) mod keys;
pub(crate) mod userinfo;

use self::client::ClientCredentials;
use self::http::{HttpError, ProviderHttp};
use self::keys::{KeyCache, KeySource};
use crate::config::{check_provider_url, JwksAuth, ProviderConfig};
use ::http::HeaderValue;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use parking_lot::RwLock;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Why provider metadata or keys could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The HTTP call failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The provider answered with an unexpected status.
    #[error("{what} answered HTTP {status}")]
    Status {
        /// Which document.
        what: &'static str,
        /// The status code.
        status: u16,
    },
    /// The document was not the expected JSON.
    #[error("{what} is not valid: {reason}")]
    Invalid {
        /// Which document.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The JWKS could not be used.
    #[error("jwks is not valid: {0}")]
    Jwks(#[source] JwksError),
    /// Discovery's `issuer` differs from the configured issuer.
    #[error("discovery issuer {got:?} does not equal the configured issuer {expected:?}")]
    IssuerMismatch {
        /// Configured.
        expected: String,
        /// Advertised.
        got: String,
    },
    /// Metadata is not loaded yet.
    #[error("provider metadata not loaded yet")]
    NotReady,
}

/// The provider's endpoints, from discovery and configuration.
#[derive(Clone, Debug)]
pub struct ProviderMetadata {
    /// The issuer tokens must carry.
    pub issuer: String,
    /// Where browsers are sent to log in; `None`: bearer-only (no browser
    /// sign-in, `discovery = false` without login endpoints).
    pub authorization_endpoint: Option<Url>,
    /// Where codes are exchanged (and tokens refreshed); `None` with
    /// `authorization_endpoint`.
    pub token_endpoint: Option<Url>,
    /// Userinfo, when offered.
    pub userinfo_endpoint: Option<Url>,
    /// Signing keys; `None` for providers without a JWKS (Janrain
    /// Capture, `oauth2` without `jwks_uri`).
    pub jwks_uri: Option<Url>,
    /// RP-initiated logout, when offered.
    pub end_session_endpoint: Option<Url>,
    /// RFC 7662 token introspection, when the OpenID discovery document
    /// names it (RFC 8414 metadata is consulted later, only when needed).
    pub introspection_endpoint: Option<Url>,
    /// RFC 9207: the provider sends `iss` with authorization responses.
    pub iss_parameter_supported: bool,
    /// Discovery's `id_token_signing_alg_values_supported` (at most 32
    /// names); `None` when it names none or there is no discovery.
    pub id_token_signing_algs: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    jwks_uri: Option<String>,
    end_session_endpoint: Option<String>,
    introspection_endpoint: Option<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    id_token_signing_alg_values_supported: Option<Vec<serde_json::Value>>,
}

/// One verification key from the JWKS.
#[derive(Clone)]
pub struct VerificationKey {
    kid: Option<String>,
    x5t: Option<String>,
    x5t_s256: Option<String>,
    family: AlgorithmFamily,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl VerificationKey {
    /// The key itself.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    fn fits(&self, alg: Algorithm) -> bool {
        alg.family() == self.family && self.alg.is_none_or(|a| a == alg)
    }
}

/// Most keys a JWKS may hold.
const MAX_JWKS_KEYS: usize = 100;

/// Why a JWKS document was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// Not a JSON object with a `keys` array.
    #[error("not a JWKS document")]
    NotJson(#[source] serde_json::Error),
    /// More than 100 keys.
    #[error("more than {MAX_JWKS_KEYS} keys")]
    TooManyKeys,
    /// No RSA, EC or OKP signature key that could be used.
    #[error("no usable signature key")]
    NoUsableKey,
}

/// The provider's current signing keys.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
    pub(crate) generation: u64,
}

impl KeySet {
    /// Parses a JWKS document, keeping the signature keys it can use.
    pub fn from_jwks_json(body: &[u8]) -> Result<KeySet, JwksError> {
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<serde_json::Value>,
        }
        let raw: Raw = serde_json::from_slice(body).map_err(JwksError::NotJson)?;
        if raw.keys.len() > MAX_JWKS_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let mut keys = Vec::new();
        for value in raw.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
                AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
                AlgorithmParameters::OctetKeyPair(_) => AlgorithmFamily::Ed,
                // Symmetric keys are never accepted from a JWKS.
                _ => continue,
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            keys.push(VerificationKey {
                kid: jwk.common.key_id.clone(),
                x5t: jwk.common.x509_sha1_fingerprint.clone(),
                x5t_s256: jwk.common.x509_sha256_fingerprint.clone(),
                family,
                alg,
                key,
            });
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(KeySet {
            keys,
            generation: 0,
        })
    }

    /// Candidate keys for a token header: the key with that `kid`, or, when
    /// the token names none, every key that fits the algorithm.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerificationKey> + 'a {
        self.keys.iter().filter(move |k| {
            k.fits(alg)
                && match kid {
                    Some(kid) => k.kid.as_deref() == Some(kid),
                    None => true,
                }
        })
    }

    /// Candidate keys for a token header: by `kid`; when the token names no
    /// `kid` or no key has it, by the certificate thumbprints `x5t#S256` /
    /// `x5t` (Oracle IDCS headers carry both); when the header names none of
    /// these, every key that fits the algorithm.
    pub fn candidates_for<'a>(
        &'a self,
        header: &'a jsonwebtoken::Header,
    ) -> Box<dyn Iterator<Item = &'a VerificationKey> + 'a> {
        let alg = header.alg;
        let kid = header.kid.as_deref();
        if kid.is_some() && self.candidates(kid, alg).next().is_some() {
            return Box::new(self.candidates(kid, alg));
        }
        let (x5t, s256) = (header.x5t.as_deref(), header.x5t_s256.as_deref());
        if x5t.is_none() && s256.is_none() {
            return Box::new(self.candidates(kid, alg));
        }
        Box::new(self.keys.iter().filter(move |k| {
            k.fits(alg)
                && ((s256.is_some() && k.x5t_s256.as_deref() == s256)
                    || (x5t.is_some() && k.x5t.as_deref() == x5t))
        }))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// How discovery's `issuer` member is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DiscoveryIssuer {
    /// It must equal the configured issuer exactly (Discovery §4.3).
    Configured,
    /// It must be one of the accepted issuers (Oracle IDCS tenants).
    AnyAccepted,
}

/// What a dialect decides about its provider, handed to [`Provider::new`].
#[derive(Clone)]
pub struct ProviderRules {
    /// The configured issuer (discovery is at its `/.well-known/`).
    pub(crate) configured_issuer: String,
    /// The issuers a token's `iss` may equal.
    pub(crate) accepted_issuers: Vec<String>,
    /// How discovery's `issuer` is checked.
    pub(crate) discovery_issuer: DiscoveryIssuer,
    /// Metadata for providers without discovery; `None` means discover.
    pub(crate) static_metadata: Option<ProviderMetadata>,
    /// Credentials to fetch the JWKS with (`jwks_auth = "client_credentials"`).
    pub(crate) jwks_credentials: Option<ClientCredentials>,
    /// Explicitly configured endpoints, which override discovery.
    pub(crate) overrides: Overrides,
    /// Least time between two JWKS fetches for unknown `kid`s.
    pub(crate) min_key_refresh: Duration,
}

impl ProviderRules {
    /// The rules of a discovered OpenID Provider configured by `p`.
    pub fn discovered(p: &ProviderConfig) -> Self {
        let jwks_credentials = match p.jwks_auth {
            Some(JwksAuth::ClientCredentials) => match ClientCredentials::from_config(p) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "jwks_auth: client credentials unusable");
                    None
                }
            },
            None => None,
        };
        ProviderRules {
            configured_issuer: p.issuer.clone().unwrap_or_default(),
            accepted_issuers: p.issuer.iter().cloned().collect(),
            discovery_issuer: DiscoveryIssuer::Configured,
            static_metadata: (!p.discovery).then(|| configured_metadata(p)),
            jwks_credentials,
            overrides: Overrides {
                authorization_endpoint: p.authorization_endpoint.clone(),
                token_endpoint: p.token_endpoint.clone(),
                userinfo_endpoint: p.userinfo_endpoint.clone(),
                jwks_uri: p.jwks_uri.clone(),
                end_session_endpoint: p.end_session_endpoint.clone(),
            },
            min_key_refresh: p.jwks_min_refresh_interval,
        }
    }
}

/// The metadata of `discovery = false`: the configured endpoints only.
fn configured_metadata(p: &ProviderConfig) -> ProviderMetadata {
    ProviderMetadata {
        issuer: p.issuer.clone().unwrap_or_default(),
        authorization_endpoint: p.authorization_endpoint.clone(),
        token_endpoint: p.token_endpoint.clone(),
        userinfo_endpoint: p.userinfo_endpoint.clone(),
        jwks_uri: p.jwks_uri.clone(),
        end_session_endpoint: p.end_session_endpoint.clone(),
        introspection_endpoint: None,
        iss_parameter_supported: false,
        id_token_signing_algs: None,
    }
}

/// Provider metadata and keys, shared by every request.
pub struct Provider {
    http: ProviderHttp,
    configured_issuer: String,
    accepted_issuers: Vec<String>,
    discovery_issuer: DiscoveryIssuer,
    static_metadata: Option<ProviderMetadata>,
    jwks_auth: Option<ClientCredentials>,
    overrides: Overrides,
    metadata: RwLock<Option<Arc<ProviderMetadata>>>,
    keys: KeyCache,
}

/// Explicitly configured endpoints.
#[derive(Clone, Default)]
pub(crate) struct Overrides {
    authorization_endpoint: Option<Url>,
    token_endpoint: Option<Url>,
    userinfo_endpoint: Option<Url>,
    jwks_uri: Option<Url>,
    end_session_endpoint: Option<Url>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.configured_issuer)
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl Provider {
    /// A provider that has loaded nothing yet; call [`Provider::load`].
    pub fn new(rules: ProviderRules, http: ProviderHttp) -> Self {
        Provider {
            http,
            configured_issuer: rules.configured_issuer,
            accepted_issuers: rules.accepted_issuers,
            discovery_issuer: rules.discovery_issuer,
            static_metadata: rules.static_metadata,
            jwks_auth: rules.jwks_credentials,
            overrides: rules.overrides,
            metadata: RwLock::new(None),
            keys: KeyCache::new(rules.min_key_refresh),
        }
    }

    /// A provider whose metadata and keys are already loaded (unit tests:
    /// no discovery, no JWKS fetch; an unknown `kid` finds no new key).
    #[cfg(test)]
    pub(crate) fn preloaded(
        rules: ProviderRules,
        http: ProviderHttp,
        metadata: ProviderMetadata,
        keys: KeySet,
    ) -> Self {
        let provider = Provider::new(rules, http);
        *provider.metadata.write() = Some(Arc::new(metadata));
        provider.keys.store(keys);
        provider
    }

    /// The HTTP client used for provider calls.
    pub fn http(&self) -> &ProviderHttp {
        &self.http
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.configured_issuer
    }

    /// The issuers a token's `iss` may equal: the configured issuer, or for
    /// `oracle-idcs` the `expected_issuer` with and without trailing slash.
    pub fn accepted_issuers(&self) -> &[String] {
        &self.accepted_issuers
    }

    /// Whether metadata and keys are loaded (keys only when there is a JWKS).
    pub fn is_ready(&self) -> bool {
        match &*self.metadata.read() {
            Some(m) => m.jwks_uri.is_none() || !self.keys.keys().is_empty(),
            None => false,
        }
    }

    /// The loaded metadata, if any.
    pub fn metadata(&self) -> Option<Arc<ProviderMetadata>> {
        self.metadata.read().clone()
    }

    /// The current keys.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.keys()
    }

    /// Loads discovery metadata, then the JWKS.
    pub async fn load(&self) -> Result<(), ProviderError> {
        let metadata = match &self.static_metadata {
            Some(m) => m.clone(),
            None => self.discover().await?,
        };
        let metadata = Arc::new(metadata);
        *self.metadata.write() = Some(metadata.clone());
        if metadata.jwks_uri.is_none() {
            return Ok(());
        }
        self.keys.refresh_now(|| self.fetch_keys(&metadata)).await
    }

    /// Refetches the JWKS for a token whose key is not in the set, unless
    /// another such refetch happened less than `jwks_min_refresh_interval`
    /// ago, or another caller refreshed the keys while this one waited.
    /// Scheduled fetches neither count nor block: the first unknown `kid`
    /// after one is followed. Returns the current keys either way.
    pub async fn refresh_keys(&self, seen_generation: u64) -> Arc<KeySet> {
        let Some(meta) = self.metadata() else {
            return self.keys();
        };
        self.keys
            .refresh_on_miss(seen_generation, || self.fetch_keys(&meta))
            .await
    }

    /// Periodic refresh. It does not count against the unknown-`kid`
    /// limit (see [`Provider::refresh_keys`]).
    pub async fn refresh_keys_now(&self) -> Result<(), ProviderError> {
        let Some(meta) = self.metadata() else {
            return Err(ProviderError::NotReady);
        };
        if meta.jwks_uri.is_none() {
            return Ok(());
        }
        self.keys.refresh_now(|| self.fetch_keys(&meta)).await
    }

    /// Fetches and parses the JWKS (`meta.jwks_uri`, which is set).
    async fn fetch_keys(&self, meta: &ProviderMetadata) -> Result<KeySet, ProviderError> {
        let Some(jwks_uri) = &meta.jwks_uri else {
            return Err(ProviderError::NotReady);
        };
        let mut headers = Vec::new();
        if let Some(credentials) = &self.jwks_auth {
            let Some(token_endpoint) = &meta.token_endpoint else {
                return Err(ProviderError::Invalid {
                    what: "client-credentials token for the jwks",
                    reason: "no token endpoint".into(),
                });
            };
            let token =
                client_credentials_token(&self.http, token_endpoint.as_str(), credentials).await?;
            headers.push((::http::header::AUTHORIZATION, token));
        }
        fetch_jwks(&self.http, jwks_uri, &headers).await
    }

    async fn discover(&self) -> Result<ProviderMetadata, ProviderError> {
        let o = &self.overrides;
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.configured_issuer.trim_end_matches('/')
        );
        let resp = self.http.get(&url, &[]).await?;
        if !resp.status.is_success() {
            return Err(ProviderError::Status {
                what: "discovery",
                status: resp.status.as_u16(),
            });
        }
        let doc: DiscoveryDocument =
            serde_json::from_slice(&resp.body).map_err(|e| ProviderError::Invalid {
                what: "discovery",
                reason: e.to_string(),
            })?;
        let issuer_ok = match self.discovery_issuer {
            DiscoveryIssuer::AnyAccepted => self.accepted_issuers.contains(&doc.issuer),
            DiscoveryIssuer::Configured => doc.issuer == self.configured_issuer,
        };
        if !issuer_ok {
            return Err(ProviderError::IssuerMismatch {
                expected: self.accepted_issuers.first().cloned().unwrap_or_default(),
                got: doc.issuer,
            });
        }
        let endpoint = |name: &'static str,
                        over: &Option<Url>,
                        found: Option<String>|
         -> Result<Option<Url>, ProviderError> {
            if let Some(u) = over {
                return Ok(Some(u.clone()));
            }
            let Some(s) = found else { return Ok(None) };
            let url = Url::parse(&s).map_err(|e| ProviderError::Invalid {
                what: "discovery",
                reason: format!("{name}: {e}"),
            })?;
            check_provider_url(&url).map_err(|m| ProviderError::Invalid {
                what: "discovery",
                reason: format!("{name}: {m}"),
            })?;
            Ok(Some(url))
        };
        let required = |name: &'static str, v: Option<Url>| {
            v.ok_or_else(|| ProviderError::Invalid {
                what: "discovery",
                reason: format!("{name} missing"),
            })
        };
        Ok(ProviderMetadata {
            authorization_endpoint: Some(required(
                "authorization_endpoint",
                endpoint(
                    "authorization_endpoint",
                    &o.authorization_endpoint,
                    doc.authorization_endpoint,
                )?,
            )?),
            token_endpoint: Some(required(
                "token_endpoint",
                endpoint("token_endpoint", &o.token_endpoint, doc.token_endpoint)?,
            )?),
            userinfo_endpoint: endpoint(
                "userinfo_endpoint",
                &o.userinfo_endpoint,
                doc.userinfo_endpoint,
            )?,
            jwks_uri: Some(required(
                "jwks_uri",
                endpoint("jwks_uri", &o.jwks_uri, doc.jwks_uri)?,
            )?),
            end_session_endpoint: endpoint(
                "end_session_endpoint",
                &o.end_session_endpoint,
                doc.end_session_endpoint,
            )?,
            // Optional and only used by bearer introspection: an unusable
            // value is ignored (RFC 8414 metadata may still name one).
            introspection_endpoint: endpoint(
                "introspection_endpoint",
                &None,
                doc.introspection_endpoint,
            )
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "discovery introspection_endpoint ignored");
                None
            }),
            iss_parameter_supported: doc.authorization_response_iss_parameter_supported,
            id_token_signing_algs: doc.id_token_signing_alg_values_supported.map(|algs| {
                algs.iter()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .take(32)
                    .collect()
            }),
            issuer: doc.issuer,
        })
    }

    /// Keeps metadata and keys loaded: retries the first load with backoff,
    /// then refreshes the JWKS every `every`. Runs until the task is dropped.
    pub async fn maintain(self: Arc<Self>, every: Duration) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.load().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "provider not loaded");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        tracing::info!(issuer = %self.configured_issuer, "provider metadata and keys loaded");
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.refresh_keys_now().await {
                tracing::warn!(error = %e, "periodic jwks refresh failed");
            }
        }
    }

    /// Generation of the current key set (changes on every successful fetch).
    pub fn key_generation(&self) -> u64 {
        self.keys.generation()
    }
}

impl KeySource for Provider {
    fn is_ready(&self) -> bool {
        Provider::is_ready(self)
    }

    fn current_keys(&self) -> Arc<KeySet> {
        self.keys()
    }

    fn keys_after_miss(&self, seen: u64) -> impl std::future::Future<Output = Arc<KeySet>> + Send {
        self.refresh_keys(seen)
    }
}

/// GETs a JWKS document and parses it.
pub(crate) async fn fetch_jwks(
    http: &ProviderHttp,
    jwks_uri: &Url,
    headers: &[(::http::HeaderName, HeaderValue)],
) -> Result<KeySet, ProviderError> {
    let resp = http.get(jwks_uri.as_str(), headers).await?;
    if !resp.status.is_success() {
        return Err(ProviderError::Status {
            what: "jwks",
            status: resp.status.as_u16(),
        });
    }
    KeySet::from_jwks_json(&resp.body).map_err(ProviderError::Jwks)
}

/// The scope that lets a confidential client read the tenant's signing
/// certificate with a client-credentials token.
const CLIENT_CREDENTIALS_SCOPE: &str = "urn:opc:idm:__myscopes__";

/// A client-credentials access token for the JWKS request, as an
/// `Authorization: Bearer` value.
async fn client_credentials_token(
    http: &ProviderHttp,
    token_endpoint: &str,
    credentials: &ClientCredentials,
) -> Result<HeaderValue, ProviderError> {
    let mut headers = Vec::new();
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials")
            .append_pair("scope", CLIENT_CREDENTIALS_SCOPE);
        credentials
            .apply(token_endpoint, &mut form, &mut headers)
            .map_err(|e| ProviderError::Invalid {
                what: "client-credentials token for the jwks",
                reason: e.to_string(),
            })?;
        form.finish()
    };
    let resp = http.post_form(token_endpoint, body, &headers).await?;
    if !resp.status.is_success() {
        return Err(ProviderError::Status {
            what: "client-credentials token for the jwks",
            status: resp.status.as_u16(),
        });
    }
    let tokens = client::parse_token_response(&resp.body).map_err(|e| ProviderError::Invalid {
        what: "client-credentials token for the jwks",
        reason: e.to_string(),
    })?;
    let mut value = HeaderValue::from_str(&format!("Bearer {}", tokens.access_token.expose()))
        .map_err(|_| ProviderError::Invalid {
            what: "client-credentials token for the jwks",
            reason: "access token is not header-safe".into(),
        })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_JWK: &str = r#"{"kty":"RSA","kid":"r1","use":"sig","alg":"RS256","n":"u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw","e":"AQAB"}"#;

    #[test]
    fn keyset_skips_symmetric_and_encryption_keys() {
        let json = format!(
            r#"{{"keys":[{RSA_JWK},{{"kty":"oct","k":"c2VjcmV0","kid":"h"}},{{"kty":"RSA","use":"enc","kid":"e","n":"AQAB","e":"AQAB"}}]}}"#
        );
        let set = KeySet::from_jwks_json(json.as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.candidates(Some("r1"), Algorithm::RS256).count(), 1);
        assert_eq!(set.candidates(Some("h"), Algorithm::RS256).count(), 0);
        assert_eq!(set.candidates(Some("r1"), Algorithm::ES256).count(), 0);
        // A key whose JWK names RS256 is not used for PS256.
        assert_eq!(set.candidates(Some("r1"), Algorithm::PS256).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::RS256).count(), 1);
    }

    /// A provider that rotates its keys right after the gateway's scheduled
    /// fetch is followed at the first unknown `kid`; only a repeated miss
    /// within `jwks_min_refresh_interval` waits.
    #[cfg(feature = "devtools")]
    #[tokio::test]
    async fn unknown_kid_right_after_a_scheduled_fetch_is_refetched_once() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let op = crate::devtools::provider::DevProvider::builder()
            .start()
            .await
            .unwrap();
        let config: ProviderConfig = toml::from_str(&format!(
            "issuer = \"{}\"\nclient_id = \"{}\"\njwks_min_refresh_interval = \"1h\"",
            op.issuer(),
            op.client_id()
        ))
        .unwrap();
        let http = ProviderHttp::new(None, Duration::from_secs(5), 1 << 20).unwrap();
        let provider = Provider::new(ProviderRules::discovered(&config), http);
        provider.load().await.unwrap();
        provider.refresh_keys_now().await.unwrap();
        op.rotate_keys().unwrap();
        let new_kid = op.rsa_kid();
        op.reset_counters();

        let keys = provider.refresh_keys(provider.key_generation()).await;
        assert_eq!(op.counters().jwks, 1, "the first miss is followed");
        assert_eq!(keys.candidates(Some(&new_kid), Algorithm::RS256).count(), 1);

        let _ = provider.refresh_keys(provider.key_generation()).await;
        assert_eq!(
            op.counters().jwks,
            1,
            "a repeated miss waits for the window"
        );
        // Scheduled fetches still happen, and do not open the window.
        provider.refresh_keys_now().await.unwrap();
        let _ = provider.refresh_keys(provider.key_generation()).await;
        assert_eq!(op.counters().jwks, 2);
    }

    #[test]
    fn keyset_without_usable_keys_is_an_error() {
        assert!(KeySet::from_jwks_json(br#"{"keys":[]}"#).is_err());
        assert!(KeySet::from_jwks_json(b"not json").is_err());
        assert!(KeySet::from_jwks_json(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err());
    }
}
