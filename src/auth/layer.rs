//! [`OidcLayer`] and its builder: assembling the authentication parts from
//! an [`OidcConfig`].
//!
//! The builder makes each part with only what it uses and wires them
//! together once:
//!
//! - the [`Provider`] (metadata + keys), handed the [`ProviderRules`] the
//!   [`Dialect`](crate::provider::dialect::Dialect) chose;
//! - the [`TokenVerifier`] (ID, access and logout tokens) over the
//!   provider's keys;
//! - the [`Authenticator`] (credential → identity: session store, bearer
//!   cache, refresh);
//! - the [`LoginFlow`] (start, callback, sign-out) with the dialect;
//! - the [`BackchannelLogout`] receiver;
//! - the route table and identity-header names the service applies.
//!
//! [`ProviderRules`]: crate::provider::ProviderRules

use super::assertion::AssertionSigner;
use super::authn::{
    Authenticator, BearerAuth, BearerCache, BearerUserinfo, IntrospectionSettings, Introspector,
    SessionRefresher,
};
use super::cookies::{CookieSettings, SameSite};
use super::endpoints::BackchannelLogout;
use super::login::logout::LogoutStates;
use super::login::state::LoginManager;
use super::login::{ClientSettings, LoginFlow, SessionIssuer};
use super::policy::RouteTable;
use super::service::Oidc;
use super::session_cookie::SessionCookies;
use super::upstream::UpstreamCredentials;
use super::upstream::{Assertion, AuthorizationMode};
use crate::clock::{Clock, SharedClock};
use crate::config::{
    AuthorizationConfig, OidcConfig, ResponseMode, SameSiteConfig, SessionStoreKind,
    SigningAlgorithm,
};
use crate::identity::IdentityHeaders;
use crate::metrics::Metrics;
use crate::provider::client::ClientCredentials;
use crate::provider::http::ProviderHttp;
use crate::provider::issuer::BearerIssuer;
use crate::provider::{dialect, Provider};
use crate::secret::SessionSecret;
use crate::session::{CookieStore, MemoryStore, RedisStore, RedisStoreOptions, SessionStore};
use crate::token::TokenVerifier;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How often the provider's JWKS is refreshed in the background.
const KEY_REFRESH_PERIOD: Duration = Duration::from_secs(15 * 60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an [`OidcLayer`] could not be built: the key at fault, with the
/// cause as the source (its text also in the message, for logs).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The HTTP client for the provider (TLS roots of `provider.ca_file`).
    #[error("provider client: {0}")]
    ProviderClient(#[source] BoxError),
    /// Client authentication (`provider.private_key_file` for `private_key_jwt`).
    #[error("provider.private_key_file: {0}")]
    ClientCredentials(#[source] BoxError),
    /// An identity header name in `[headers]`.
    #[error("headers: {0}")]
    HeaderName(#[source] http::header::InvalidHeaderName),
    /// The session store of `session.store` (e.g. `session.redis_url`).
    #[error("session.store")]
    SessionStore(#[source] crate::session::StoreError),
    /// The identity assertion's key (`headers.assertion_key_file`).
    #[error("headers.assertion_key_file: {0}")]
    AssertionKey(#[source] super::assertion::AssertionKeyError),
}

/// The assembled parts, shared by every clone of the service. Each
/// endpoint and step takes only the part it needs.
pub(crate) struct Core {
    pub(crate) prefix: String,
    pub(crate) routes: RouteTable,
    pub(crate) identity_headers: Arc<IdentityHeaders>,
    pub(crate) cookies: Arc<CookieSettings>,
    pub(crate) authn: Authenticator,
    pub(crate) login: LoginFlow,
    pub(crate) logout: BackchannelLogout,
    pub(crate) metrics: Arc<Metrics>,
    /// Tokens and assertion for the upstream; `None` when none is configured.
    pub(crate) upstream: Option<Box<UpstreamCredentials>>,
    provider: Arc<Provider>,
    store: Arc<dyn SessionStore>,
    maintenance: Option<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Core {
    fn drop(&mut self) {
        for task in self.maintenance.take().into_iter().flatten() {
            task.abort();
        }
    }
}

/// Tower layer that authenticates requests with OpenID Connect.
///
/// Browsers without a session are sent through the authorization-code flow
/// (state, nonce, PKCE); API clients present `Authorization: Bearer <JWT>`.
/// Authenticated requests reach the inner service with an
/// `Arc<`[`Identity`](crate::Identity)`>` in their extensions and the
/// identity headers set; every configured identity header a client sent is
/// removed first, on every route. The layer answers its own endpoints under
/// the prefix (`/oauth2` by default).
///
/// Build it with [`OidcLayer::builder`]; see the [crate docs](crate) for an
/// example with a custom [`SessionStore`].
#[derive(Clone)]
#[must_use]
pub struct OidcLayer {
    pub(crate) core: Arc<Core>,
}

impl fmt::Debug for OidcLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcLayer")
            .field("client_id", &self.core.login.client.client_id)
            .field("provider", &self.core.provider)
            .finish_non_exhaustive()
    }
}

impl OidcLayer {
    /// A builder for a layer configured by `config`.
    pub fn builder(config: OidcConfig) -> OidcLayerBuilder {
        OidcLayerBuilder {
            config,
            store: None,
            metrics: None,
            clock: None,
            assertion_audience: None,
        }
    }

    /// Whether the provider's metadata and keys are loaded and the session
    /// store answers (for `/readyz`).
    pub fn is_ready(&self) -> bool {
        self.core.provider.is_ready() && self.core.store.is_available()
    }

    /// A readiness probe that can be moved into another service: the
    /// provider is loaded and the session store answers.
    pub fn readiness(&self) -> Arc<dyn Fn() -> bool + Send + Sync> {
        let provider = self.core.provider.clone();
        let store = self.core.store.clone();
        Arc::new(move || provider.is_ready() && store.is_available())
    }

    /// Number of live sessions in the store.
    pub fn session_count(&self) -> u64 {
        self.core.store.len()
    }

    /// The session store: a configuration reload builds the new layer on
    /// the same store, so sessions survive it.
    pub fn shared_session_store(&self) -> Arc<dyn SessionStore> {
        self.core.store.clone()
    }
}

impl<S> tower_layer::Layer<S> for OidcLayer {
    type Service = Oidc<S>;

    fn layer(&self, inner: S) -> Oidc<S> {
        Oidc::new(inner, self.core.clone())
    }
}

/// The token verifier's algorithms and issuers: `provider.allowed_algorithms`
/// (or the provider's advertised ones), HMAC ID tokens when listed, and the
/// `[[bearer.issuer]]`s.
fn token_verifier(
    config: &OidcConfig,
    provider: Arc<Provider>,
    bearer_issuers: &[Arc<BearerIssuer>],
) -> TokenVerifier {
    let p = &config.provider;
    let listed = p.allowed_algorithms.as_deref().unwrap_or_default();
    let asymmetric: Vec<SigningAlgorithm> = listed.iter().filter_map(|a| a.signing()).collect();
    let mut verifier = TokenVerifier::new(
        provider,
        &asymmetric,
        &p.client_id,
        &config.bearer_audiences(),
        p.clock_skew.as_secs(),
    );
    if p.allowed_algorithms.is_none() {
        verifier = verifier.with_algorithms_from_discovery();
    }
    if let Some(secret) = &p.client_secret {
        let hmac: Vec<_> = listed
            .iter()
            .filter(|a| a.is_hmac())
            .map(|a| a.jwt())
            .collect();
        verifier = verifier.with_hmac_id_tokens(&hmac, secret);
    }
    for (issuer, c) in bearer_issuers.iter().zip(&config.bearer.issuers) {
        let algs = c
            .allowed_algorithms
            .as_deref()
            .unwrap_or(&SigningAlgorithm::ALL);
        verifier = verifier.with_bearer_issuer(issuer.clone(), &c.audiences, algs);
    }
    verifier
}

/// The introspector's settings when `bearer.introspection = true`.
fn introspection_settings(config: &OidcConfig) -> Option<IntrospectionSettings> {
    let b = &config.bearer;
    b.introspection.then(|| IntrospectionSettings {
        endpoint: b.introspection_endpoint.clone(),
        cache_ttl: b.introspection_cache,
        capacity: b.cache_capacity,
        limits: Default::default(),
    })
}

/// Builds an [`OidcLayer`]; see [`OidcLayer::builder`].
#[must_use]
pub struct OidcLayerBuilder {
    config: OidcConfig,
    store: Option<Arc<dyn SessionStore>>,
    metrics: Option<Arc<Metrics>>,
    clock: Option<SharedClock>,
    assertion_audience: Option<String>,
}

impl fmt::Debug for OidcLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcLayerBuilder")
            .field("client_id", &self.config.provider.client_id)
            .finish_non_exhaustive()
    }
}

impl OidcLayerBuilder {
    /// Keeps sessions in `store` instead of the default in-memory store
    /// (bounded by `session.max_sessions`).
    pub fn session_store(self, store: impl SessionStore) -> Self {
        self.shared_session_store(Arc::new(store))
    }

    /// Keeps sessions in a store shared with other code.
    pub fn shared_session_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Records requests and authentication outcomes in `metrics` (a fresh
    /// registry otherwise).
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Reads the time from `clock` for every time-dependent check (tests
    /// pin it; the system clock otherwise).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The `aud` of identity assertions for requests of routes without an
    /// upstream of their own, unless `headers.assertion_audience` is set:
    /// the origin of the service behind the layer (the gateway passes
    /// `[upstream] url`'s). Default: the origin of `public_url`.
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.assertion_audience = Some(audience.into());
        self
    }

    /// Builds the layer and starts loading the provider's metadata and
    /// keys in the background (call from within a Tokio runtime). Requests
    /// that need the provider before it is loaded get 502 (browser login)
    /// or 401 (bearer).
    pub fn build(self) -> Result<OidcLayer, LayerError> {
        let OidcLayerBuilder {
            config,
            store,
            metrics,
            clock,
            assertion_audience,
        } = self;
        let clock = clock.unwrap_or_else(crate::clock::system);
        let metrics = metrics.unwrap_or_else(|| Arc::new(Metrics::new()));
        let p = &config.provider;
        let routes = RouteTable::new(&config.routes);

        let dialect = dialect::for_config(p);
        let http = ProviderHttp::new(p.ca_file.as_deref(), p.http_timeout, p.max_response_bytes)
            .map_err(LayerError::ProviderClient)?;
        let provider = Arc::new(Provider::new(dialect.provider_rules(p), http.clone()));
        let credentials = ClientCredentials::from_config(p)
            .map_err(|e| LayerError::ClientCredentials(e.into()))?;
        let bearer_issuers: Vec<Arc<BearerIssuer>> = config
            .bearer
            .issuers
            .iter()
            .map(|i| {
                Arc::new(BearerIssuer::new(
                    i,
                    http.clone(),
                    p.jwks_min_refresh_interval,
                ))
            })
            .collect();
        let verifier = Arc::new(
            token_verifier(&config, provider.clone(), &bearer_issuers)
                .with_trusted_audiences(dialect.trusted_audiences())
                .with_max_id_token_age(p.id_token_max_age.as_secs())
                .with_accept_id_tokens(config.bearer.accept_id_tokens)
                .with_introspection_access_tokens_only(
                    config.bearer.introspection_access_tokens_only,
                )
                .with_required_scopes(config.bearer.required_scopes.clone())
                .with_kept_claims(routes.claim_names())
                .with_clock(clock.clone()),
        );
        let upstream = upstream_credentials(&config, assertion_audience, &clock)?;
        let identity_headers = Arc::new(
            IdentityHeaders::new(&config.headers)
                .map_err(LayerError::HeaderName)?
                .also_stripping(upstream.names()),
        );
        let cookies = Arc::new(
            CookieSettings::new(config.session_cookie_name(), config.is_https())
                .with_domain(
                    config
                        .session
                        .cookie_domain
                        .as_ref()
                        .map(|d| d.trim_start_matches('.').to_ascii_lowercase()),
                )
                .with_same_site(match config.session.same_site {
                    SameSiteConfig::Lax => SameSite::Lax,
                    SameSiteConfig::Strict => SameSite::Strict,
                    SameSiteConfig::None => SameSite::None,
                }),
        );
        let store = match store {
            Some(store) => store,
            None => default_store(&config, &config.session.secret, &clock)?,
        };
        let form_post = p.response_mode == ResponseMode::FormPost;
        let refresh_margin = config.session.refresh_margin.as_secs();

        let authn = Authenticator {
            cookies: SessionCookies::new(cookies.clone(), store.clone()),
            store: store.clone(),
            bearer: config.bearer.enabled.then(|| {
                let userinfo = config.bearer.userinfo.then(|| {
                    Arc::new(BearerUserinfo::new(
                        provider.clone(),
                        identity_headers.clone(),
                        config.bearer.cache_capacity,
                        Default::default(),
                    ))
                });
                BearerAuth {
                    cache: BearerCache::with_clock(config.bearer.cache_capacity, clock.clone()),
                    verifier: verifier.clone(),
                    introspector: introspection_settings(&config).map(|settings| {
                        Introspector::new(
                            provider.clone(),
                            credentials.clone(),
                            verifier.clone(),
                            identity_headers.clone(),
                            settings,
                            clock.clone(),
                        )
                        .with_userinfo(userinfo.clone())
                    }),
                    userinfo,
                    insufficient_scope: BearerAuth::insufficient_scope_challenge(
                        &config.bearer.required_scopes,
                    ),
                }
            }),
            refresher: SessionRefresher {
                provider: provider.clone(),
                credentials: credentials.clone(),
                verifier: verifier.clone(),
                identity_headers: identity_headers.clone(),
                margin: refresh_margin,
                clock: clock.clone(),
            },
            identity_headers: identity_headers.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
        };
        let login = LoginFlow {
            dialect,
            provider: provider.clone(),
            verifier: verifier.clone(),
            credentials,
            client: ClientSettings {
                client_id: p.client_id.clone(),
                public_url: config.public_url.as_str().trim_end_matches('/').to_string(),
                redirect_uri: config.redirect_uri(),
                prefix: config.prefix.clone(),
                scopes: p.scopes.clone(),
                form_post,
            },
            attempts: LoginManager::new(
                &config.session.secret,
                (*cookies).clone(),
                config.session.login_timeout,
                config.session.max_login_attempts,
                form_post,
                clock.clone(),
            ),
            logout_states: LogoutStates::new(&config.session.secret, clock.clone()),
            sessions: SessionIssuer {
                store: store.clone(),
                cookies: SessionCookies::new(cookies.clone(), store.clone()),
                identity_headers: identity_headers.clone(),
                lifetime: config.session.lifetime,
                refresh_margin,
                keep_access_token: upstream.needs_access_token(),
                keep_id_token: upstream.needs_id_token(),
                metrics: metrics.clone(),
                clock: clock.clone(),
            },
            metrics: metrics.clone(),
            clock,
        };
        let logout = BackchannelLogout::new(verifier, store.clone(), metrics.clone());
        let maintenance = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let mut tasks = vec![rt.spawn(provider.clone().maintain(KEY_REFRESH_PERIOD))];
            tasks.extend(
                bearer_issuers
                    .iter()
                    .map(|i| rt.spawn(i.clone().maintain(KEY_REFRESH_PERIOD))),
            );
            tasks
        });
        let core = Core {
            prefix: config.prefix.clone(),
            routes,
            identity_headers,
            cookies,
            authn,
            login,
            logout,
            metrics,
            upstream: (!upstream.is_off()).then(|| Box::new(upstream)),
            provider,
            store,
            maintenance,
        };
        Ok(OidcLayer {
            core: Arc::new(core),
        })
    }
}

/// The store `session.store` names: memory (bounded by
/// `session.max_sessions`), cookie or Redis, keyed from `session.secret`
/// (and `session.previous_secrets`, which only open).
fn default_store(
    config: &OidcConfig,
    secret: &SessionSecret,
    clock: &SharedClock,
) -> Result<Arc<dyn SessionStore>, LayerError> {
    let se = &config.session;
    let previous = &se.previous_secrets;
    Ok(match se.store {
        SessionStoreKind::Memory => {
            Arc::new(MemoryStore::new(se.max_sessions, se.lifetime).with_clock(clock.clone()))
        }
        SessionStoreKind::Cookie => {
            Arc::new(CookieStore::new(secret, previous, se.lifetime).with_clock(clock.clone()))
        }
        SessionStoreKind::Redis => {
            let url = se.redis_url.clone().ok_or_else(|| {
                LayerError::SessionStore(crate::session::StoreError::message(
                    "session.redis_url is required for store = \"redis\"",
                ))
            })?;
            let mut options = RedisStoreOptions::new(url);
            options.key_prefix = se.redis_key_prefix.clone();
            options.cache_ttl = se.redis_cache_ttl;
            Arc::new(
                RedisStore::connect(options, secret, previous, clock.clone())
                    .map_err(LayerError::SessionStore)?,
            )
        }
    })
}

/// The token and assertion headers of `[headers]`.
fn upstream_credentials(
    config: &OidcConfig,
    default_audience: Option<String>,
    clock: &SharedClock,
) -> Result<UpstreamCredentials, LayerError> {
    let h = &config.headers;
    let name = |n: &Option<String>| -> Result<Option<http::HeaderName>, LayerError> {
        n.as_deref()
            .map(|n| http::HeaderName::from_bytes(n.as_bytes()))
            .transpose()
            .map_err(LayerError::HeaderName)
    };
    let assertion = match name(&h.assertion)? {
        None => None,
        Some(header) => {
            let issuer = config.public_url.as_str();
            let signer = match &h.assertion_key_file {
                Some(path) => {
                    AssertionSigner::from_file(path, issuer, h.assertion_lifetime, clock.clone())
                }
                None => AssertionSigner::generate(issuer, h.assertion_lifetime, clock.clone()),
            }
            .map_err(LayerError::AssertionKey)?;
            let origin = |u: &url::Url| u.origin().ascii_serialization();
            let default_audience = h
                .assertion_audience
                .clone()
                .or(default_audience)
                .unwrap_or_else(|| origin(&config.public_url));
            let route_audiences = config
                .routes
                .iter()
                .map(|r| match (&h.assertion_audience, &r.upstream) {
                    (None, Some(u)) => Some(origin(u)),
                    _ => None,
                })
                .collect();
            Some(Assertion {
                header,
                signer: Arc::new(signer),
                default_audience,
                route_audiences,
            })
        }
    };
    Ok(UpstreamCredentials {
        access_token: name(&h.access_token)?,
        id_token: name(&h.id_token)?,
        authorization: match h.authorization {
            AuthorizationConfig::None => AuthorizationMode::None,
            AuthorizationConfig::AccessToken => AuthorizationMode::AccessToken,
            AuthorizationConfig::IdToken => AuthorizationMode::IdToken,
        },
        assertion,
    })
}
