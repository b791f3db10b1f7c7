//! [`OidcLayer`]: the shared state of the authentication middleware.

use super::bearer::BearerCache;
use super::code_flow::ClientCredentials;
use super::cookies::CookieSettings;
use super::http_client::ProviderHttp;
use super::identity::IdentityHeaders;
use super::login::LoginManager;
use super::provider::Provider;
use super::routes::RouteTable;
use super::service::Oidc;
use super::session::{MemoryStore, SessionStore};
use super::token::TokenVerifier;
use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why an [`OidcLayer`] could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub struct LayerError(String);

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LayerError {}

/// Everything a request may need, shared by every clone of the service.
pub(crate) struct Shared {
    pub(crate) prefix: String,
    pub(crate) public_url: String,
    pub(crate) redirect_uri: String,
    pub(crate) client_id: String,
    pub(crate) kind: crate::config::ProviderKind,
    pub(crate) scopes: Vec<String>,
    pub(crate) form_post: bool,
    pub(crate) provider: Arc<Provider>,
    pub(crate) verifier: TokenVerifier,
    pub(crate) credentials: ClientCredentials,
    pub(crate) login: LoginManager,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) bearer: Option<BearerCache>,
    pub(crate) routes: RouteTable,
    pub(crate) identity_headers: IdentityHeaders,
    pub(crate) cookies: CookieSettings,
    pub(crate) lifetime: Duration,
    pub(crate) refresh_margin: u64,
    pub(crate) userinfo: bool,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) logout_jtis: moka::sync::Cache<[u8; 32], ()>,
    maintenance: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = self.maintenance.take() {
            task.abort();
        }
    }
}

/// Tower layer that authenticates requests with OpenID Connect.
///
/// Browsers without a session are sent through the authorization-code flow
/// (state, nonce, PKCE); API clients present `Authorization: Bearer <JWT>`.
/// Authenticated requests reach the inner service with an
/// `Arc<`[`Identity`](super::Identity)`>` in their extensions and the
/// identity headers set; every configured identity header a client sent is
/// removed first, on every route. The layer answers its own endpoints under
/// `server.prefix` (`/oauth2` by default).
///
/// # Example
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use oidc_gateway::auth::{Identity, OidcLayer};
/// use oidc_gateway::config::{GatewayConfig, ProcessEnv};
/// use std::sync::Arc;
///
/// let config = GatewayConfig::from_toml_str(r#"
///     [server]
///     public_url = "https://app.example.com"
///     [upstream]
///     url = "http://127.0.0.1:8080"
///     [provider]
///     issuer = "https://idp.example.com"
///     client_id = "app"
///     client_secret = "${CLIENT_SECRET}"
///     [session]
///     secret = "${SESSION_SECRET}"
/// "#, &ProcessEnv)?;
/// let layer = OidcLayer::from_config(&config, Default::default())?;
/// let service = tower::ServiceBuilder::new().layer(layer).service_fn(
///     |req: http::Request<http_body_util::Empty<bytes::Bytes>>| async move {
///         let who = req.extensions().get::<Arc<Identity>>().map(|i| i.subject.clone());
///         Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
///             bytes::Bytes::from(format!("hello {who:?}")),
///         )))
///     },
/// );
/// # drop(service);
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct OidcLayer {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for OidcLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcLayer")
            .field("client_id", &self.shared.client_id)
            .field("provider", &self.shared.provider)
            .finish_non_exhaustive()
    }
}

impl OidcLayer {
    /// Builds the layer from a validated configuration and starts loading
    /// the provider's metadata and keys in the background (call from within
    /// a Tokio runtime). Requests that need the provider before it is loaded
    /// get 502 (browser login) or 401 (bearer).
    pub fn from_config(config: &GatewayConfig, metrics: Arc<Metrics>) -> Result<Self, LayerError> {
        let p = &config.provider;
        let http = ProviderHttp::new(p.ca_file.as_deref(), p.http_timeout, p.max_response_bytes)
            .map_err(|e| LayerError(format!("provider client: {e}")))?;
        let credentials = ClientCredentials::from_config(p)
            .map_err(|e| LayerError(format!("provider.private_key_file: {e}")))?;
        let provider = Arc::new(Provider::new(config, http));
        let verifier = TokenVerifier::new(
            provider.clone(),
            &p.allowed_algorithms,
            &p.client_id,
            &config.bearer_audiences(),
            p.clock_skew.as_secs(),
        )
        .map_err(LayerError)?
        .with_trusted_audiences(super::dialect::trusted_audiences(p));
        let form_post = p.response_mode == crate::config::ResponseMode::FormPost;
        let cookies = CookieSettings::new(config.session_cookie_name(), config.is_https());
        let login = LoginManager::new(
            &config.session_secret_bytes(),
            cookies.clone(),
            config.session.login_timeout,
            config.session.max_login_attempts,
            form_post,
        )
        .map_err(LayerError)?;
        let identity_headers = IdentityHeaders::new(&config.headers)
            .map_err(|e| LayerError(format!("headers: {e}")))?;
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(
            config.session.max_sessions,
            config.session.lifetime,
        ));
        let maintenance = tokio::runtime::Handle::try_current()
            .ok()
            .map(|rt| rt.spawn(provider.clone().maintain(Duration::from_secs(15 * 60))));
        let shared = Shared {
            prefix: config.server.prefix.clone(),
            public_url: config
                .server
                .public_url
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            redirect_uri: config.redirect_uri(),
            client_id: p.client_id.clone(),
            kind: p.kind,
            scopes: p.scopes.clone(),
            form_post,
            provider,
            verifier,
            credentials,
            login,
            store,
            bearer: config
                .bearer
                .enabled
                .then(|| BearerCache::new(config.bearer.cache_capacity)),
            routes: RouteTable::new(&config.routes),
            identity_headers,
            cookies,
            lifetime: config.session.lifetime,
            refresh_margin: config.session.refresh_margin.as_secs(),
            userinfo: p.userinfo,
            metrics,
            logout_jtis: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(20 * 60))
                .build(),
            maintenance,
        };
        Ok(OidcLayer {
            shared: Arc::new(shared),
        })
    }

    /// Whether the provider's metadata and keys are loaded (for `/readyz`).
    pub fn is_ready(&self) -> bool {
        self.shared.provider.is_ready()
    }

    /// A readiness probe that can be moved into another service.
    pub fn readiness(&self) -> Arc<dyn Fn() -> bool + Send + Sync> {
        let provider = self.shared.provider.clone();
        Arc::new(move || provider.is_ready())
    }

    /// Number of live sessions in the store.
    pub fn session_count(&self) -> u64 {
        self.shared.store.len()
    }
}

impl<S> tower_layer::Layer<S> for OidcLayer {
    type Service = Oidc<S>;

    fn layer(&self, inner: S) -> Oidc<S> {
        Oidc::new(inner, self.shared.clone())
    }
}
