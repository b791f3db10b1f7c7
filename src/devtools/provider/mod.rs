//! A development OpenID Provider that runs in-process on loopback.
//!
//! It implements just enough of OpenID Connect Core, Discovery, RFC 6749,
//! RFC 7636 (PKCE, `S256` only), RFC 9207 (`iss` on the authorization
//! response) and form_post response mode for the gateway to log users in,
//! and it can be told to misbehave in many precise ways ([`Fault`]) so the
//! gateway's defences can be tested.
//!
//! It serves plain HTTP, or HTTPS with [`DevProviderBuilder::tls`] (issuer
//! `https://localhost:PORT`), e.g. to test `provider.ca_file`.
//!
//! # Endpoints
//! | path | |
//! |---|---|
//! | `GET /.well-known/openid-configuration` | discovery document |
//! | `GET /jwks` | RS256 and ES256 public keys |
//! | `GET\|POST /authorize` | login form (any user name logs in), or an immediate redirect with [`DevProvider::set_auto_login`] |
//! | `POST /authorize/login` | the login form's target (`username`, `pending`) |
//! | `POST /token` | `authorization_code` and `refresh_token` grants; `client_secret_basic` / `client_secret_post`, or `private_key_jwt` with [`ClientAuth::PrivateKeyJwt`] |
//! | `GET\|POST /userinfo` | claims for a Bearer access token |
//! | `GET\|POST /end_session` | RP-initiated logout |
//! | `POST /introspect` | RFC 7662 introspection (client-authenticated) of opaque tokens from [`DevProvider::mint_opaque_token`] and of its JWT access tokens |
//! | `GET /.well-known/oauth-authorization-server` | RFC 8414 metadata (always names the introspection endpoint) |
//!
//! # Example
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use oidc_gateway::devtools::provider::{DevProvider, Fault};
//!
//! let op = DevProvider::builder()
//!     .client_id("gateway")
//!     .client_secret("s3cret")
//!     .start()
//!     .await?;
//! op.set_auto_login(Some("alice"));
//! op.set_fault(Fault::WrongNonce);
//! println!("issuer: {}", op.issuer());
//! # Ok(()) }
//! ```

mod authorize;
mod claims;
mod endpoints;
mod faults;
mod introspect;
mod keys;
mod token;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use super::http::{spawn_server_with, ServerHandle};

pub use faults::{Fault, ATTACKER_ISSUER, OTHER_AUDIENCE};
pub use keys::{
    corrupt_signature, public_key_pem, Signer, TEST_EC_PRIVATE_KEY_PEM, TEST_RSA_PRIVATE_KEY_PEM,
};

use faults::Faults;
use keys::KeySet;

/// Where the provider's signing keys come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeySource {
    /// Fresh RSA-2048 and P-256 keys made at start (the default).
    Generate,
    /// The given PKCS#8 PEMs: only through
    /// [`DevProviderBuilder::insecure_fixed_keys`].
    Fixed {
        rsa_pem: &'static str,
        ec_pem: &'static str,
    },
}

/// Algorithm the provider signs its ID and access tokens with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (the default).
    #[default]
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// HMAC-SHA-256 keyed with the client secret (OpenID Connect Core
    /// §10.1), for ID tokens of clients that accept it.
    Hs256ClientSecret,
}

impl SigningAlg {
    fn signer(self, client_secret: &str) -> Signer {
        match self {
            SigningAlg::Rs256 => Signer::Rs256,
            SigningAlg::Es256 => Signer::Es256,
            SigningAlg::Hs256ClientSecret => Signer::Hs256(client_secret.as_bytes().to_vec()),
        }
    }
}

/// Which client authentication methods the token endpoint accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// Both `client_secret_basic` and `client_secret_post` (the default).
    #[default]
    Any,
    /// Only HTTP Basic (`client_secret_basic`).
    ClientSecretBasic,
    /// Only credentials in the form body (`client_secret_post`).
    ClientSecretPost,
    /// Only `private_key_jwt` (RFC 7523 §2.2) assertions signed by the key
    /// whose public half this PEM holds (`BEGIN PUBLIC KEY`, RSA or EC
    /// P-256; see [`public_key_pem`]). The assertion's signature, `iss` =
    /// `sub` = client id, `aud` = this provider's token endpoint URL, `exp`
    /// in the future (at most 5 minutes ahead) and a `jti` not seen before
    /// are required; anything else is `401 invalid_client`.
    PrivateKeyJwt(String),
}

/// A snapshot of the provider's request counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Requests to the discovery document.
    pub discovery: usize,
    /// Requests to `/jwks`.
    pub jwks: usize,
    /// Requests to `/authorize`.
    pub authorize: usize,
    /// Submissions of the login form.
    pub login: usize,
    /// Requests to `/token` (any grant, including refused ones).
    pub token: usize,
    /// Token requests that authenticated with `client_secret_basic`.
    pub token_client_secret_basic: usize,
    /// Token requests that authenticated with `client_secret_post`.
    pub token_client_secret_post: usize,
    /// Token requests that authenticated with `private_key_jwt`.
    pub token_private_key_jwt: usize,
    /// Successful `refresh_token` grants.
    pub refresh: usize,
    /// Requests to `/userinfo`.
    pub userinfo: usize,
    /// Requests to `/end_session`.
    pub end_session: usize,
    /// Requests to `/introspect`.
    pub introspection: usize,
    /// Most `/introspect` requests that were in flight at once.
    pub introspection_max_in_flight: usize,
}

#[derive(Debug, Default)]
pub(crate) struct CounterCells {
    pub(crate) discovery: AtomicUsize,
    pub(crate) jwks: AtomicUsize,
    pub(crate) authorize: AtomicUsize,
    pub(crate) login: AtomicUsize,
    pub(crate) token: AtomicUsize,
    pub(crate) token_basic: AtomicUsize,
    pub(crate) token_post: AtomicUsize,
    pub(crate) token_jwt: AtomicUsize,
    pub(crate) refresh: AtomicUsize,
    pub(crate) userinfo: AtomicUsize,
    pub(crate) end_session: AtomicUsize,
    pub(crate) introspection: AtomicUsize,
    pub(crate) introspection_in_flight: AtomicUsize,
    pub(crate) introspection_max_in_flight: AtomicUsize,
}

pub(crate) fn bump(counter: &AtomicUsize) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl CounterCells {
    fn snapshot(&self) -> Counters {
        let get = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        Counters {
            discovery: get(&self.discovery),
            jwks: get(&self.jwks),
            authorize: get(&self.authorize),
            login: get(&self.login),
            token: get(&self.token),
            token_client_secret_basic: get(&self.token_basic),
            token_client_secret_post: get(&self.token_post),
            token_private_key_jwt: get(&self.token_jwt),
            refresh: get(&self.refresh),
            userinfo: get(&self.userinfo),
            end_session: get(&self.end_session),
            introspection: get(&self.introspection),
            introspection_max_in_flight: get(&self.introspection_max_in_flight),
        }
    }

    fn reset(&self) {
        for c in [
            &self.discovery,
            &self.jwks,
            &self.authorize,
            &self.login,
            &self.token,
            &self.token_basic,
            &self.token_post,
            &self.token_jwt,
            &self.refresh,
            &self.userinfo,
            &self.end_session,
            &self.introspection,
            &self.introspection_max_in_flight,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// A validated authorization request waiting for the user (or being
/// completed right away by auto-login).
#[derive(Clone, Debug)]
pub(crate) struct AuthRequest {
    pub(crate) redirect_uri: String,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) scope: String,
    pub(crate) code_challenge: Option<String>,
    pub(crate) form_post: bool,
    pub(crate) created: Instant,
}

/// An issued authorization code.
#[derive(Clone, Debug)]
pub(crate) struct CodeGrant {
    pub(crate) request: AuthRequest,
    pub(crate) user: String,
    pub(crate) sid: String,
    pub(crate) auth_time: u64,
    pub(crate) expires: Instant,
    /// Token family: refresh tokens issued from this code share it.
    pub(crate) family: String,
}

/// An issued refresh token.
#[derive(Clone, Debug)]
pub(crate) struct RefreshGrant {
    pub(crate) user: String,
    pub(crate) scope: String,
    pub(crate) sid: String,
    pub(crate) auth_time: u64,
    pub(crate) family: String,
}

/// Issued-token bookkeeping, with reuse detection: presenting a used code or
/// refresh token revokes every refresh token of its family.
#[derive(Debug, Default)]
pub(crate) struct Grants {
    pub(crate) pending: HashMap<String, AuthRequest>,
    pub(crate) codes: HashMap<String, CodeGrant>,
    pub(crate) used_codes: HashMap<String, String>,
    pub(crate) refresh: HashMap<String, RefreshGrant>,
    pub(crate) used_refresh: HashMap<String, String>,
}

impl Grants {
    pub(crate) fn revoke_family(&mut self, family: &str) {
        self.refresh.retain(|_, g| g.family != family);
    }

    /// Drops stale pending requests and codes so memory stays bounded.
    pub(crate) fn prune(&mut self, pending_ttl: Duration) {
        let now = Instant::now();
        self.pending
            .retain(|_, r| now.duration_since(r.created) < pending_ttl);
        self.codes.retain(|_, c| c.expires > now);
        if self.used_codes.len() > 10_000 {
            self.used_codes.clear();
        }
        if self.used_refresh.len() > 10_000 {
            self.used_refresh.clear();
        }
    }
}

/// State shared between the handle and the server tasks.
pub(crate) struct Shared {
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) access_token_ttl: Duration,
    pub(crate) id_token_ttl: Duration,
    pub(crate) code_ttl: Duration,
    pub(crate) issue_refresh_tokens: bool,
    pub(crate) require_pkce: bool,
    pub(crate) client_auth: ClientAuth,
    /// The verification key of [`ClientAuth::PrivateKeyJwt`].
    pub(crate) client_jwt_key: Option<token::ClientJwtKey>,
    /// `jti`s of accepted client assertions, with their `exp`.
    pub(crate) client_jtis: Mutex<HashMap<String, u64>>,
    pub(crate) signing_alg: Mutex<SigningAlg>,
    pub(crate) keys: RwLock<KeySet>,
    pub(crate) keep_old_keys: AtomicBool,
    pub(crate) faults: Faults,
    pub(crate) auto_login: Mutex<Option<String>>,
    pub(crate) users: Mutex<HashMap<String, Value>>,
    pub(crate) grants: Mutex<Grants>,
    pub(crate) counters: CounterCells,
    pub(crate) last_authorize: Mutex<Option<Vec<(String, String)>>>,
    /// The `sid` of the latest login (authorization code issued).
    pub(crate) last_sid: Mutex<Option<String>>,
    /// Opaque access tokens and their introspection answers.
    pub(crate) opaque: Mutex<HashMap<String, Value>>,
}

impl Shared {
    pub(crate) fn signer(&self) -> Signer {
        self.signing_alg.lock().signer(&self.client_secret)
    }

    /// Signs with the current keys; a crypto failure (which does not happen
    /// with valid keys) yields a token with an empty signature.
    pub(crate) fn sign(&self, signer: &Signer, header: &Value, claims: &Value) -> String {
        let keys = self.keys.read();
        match keys.sign(signer, header, claims) {
            Ok(token) => token,
            Err(err) => {
                tracing::error!(error = %err, "dev provider: signing failed");
                // Unverifiable on purpose.
                keys.sign(&Signer::None, header, claims).unwrap_or_default()
            }
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ===== impl DevProviderBuilder =====

/// Builder for [`DevProvider`]; see [`DevProvider::builder`].
#[derive(Clone)]
#[must_use]
pub struct DevProviderBuilder {
    client_id: String,
    client_secret: String,
    bind: SocketAddr,
    issuer: Option<String>,
    redirect_uris: Vec<String>,
    access_token_ttl: Duration,
    id_token_ttl: Duration,
    code_ttl: Duration,
    issue_refresh_tokens: bool,
    require_pkce: bool,
    client_auth: ClientAuth,
    signing_alg: SigningAlg,
    keys: KeySource,
    keep_old_keys: bool,
    auto_login: Option<String>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for DevProviderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevProviderBuilder")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("bind", &self.bind)
            .field("issuer", &self.issuer)
            .field(
                "keys",
                &match self.keys {
                    KeySource::Generate => "generated",
                    KeySource::Fixed { .. } => "insecure fixed",
                },
            )
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for DevProviderBuilder {
    fn default() -> Self {
        Self {
            client_id: "gateway".to_owned(),
            client_secret: "dev-secret".to_owned(),
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            issuer: None,
            redirect_uris: Vec::new(),
            access_token_ttl: Duration::from_secs(3600),
            id_token_ttl: Duration::from_secs(3600),
            code_ttl: Duration::from_secs(60),
            issue_refresh_tokens: true,
            require_pkce: true,
            client_auth: ClientAuth::Any,
            signing_alg: SigningAlg::Rs256,
            keys: KeySource::Generate,
            keep_old_keys: true,
            auto_login: None,
            tls: None,
        }
    }
}

impl DevProviderBuilder {
    /// The one registered client's id. Defaults to `gateway`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// The client's secret. Defaults to `dev-secret`.
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = secret.into();
        self
    }

    /// Address to listen on. Defaults to `127.0.0.1:0` (a free port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Issuer to announce instead of `http://<bound address>` (no trailing
    /// slash is added or removed). Useful when the provider is reached
    /// through another name.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Adds an accepted `redirect_uri` (exact match). When none is added,
    /// any absolute `http(s)` redirect URI is accepted.
    pub fn add_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uris.push(uri.into());
        self
    }

    /// Lifetime of access tokens (`expires_in`). Defaults to 1 hour.
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = ttl;
        self
    }

    /// Lifetime of ID tokens. Defaults to 1 hour.
    pub fn id_token_ttl(mut self, ttl: Duration) -> Self {
        self.id_token_ttl = ttl;
        self
    }

    /// Lifetime of authorization codes. Defaults to 60 seconds.
    pub fn code_ttl(mut self, ttl: Duration) -> Self {
        self.code_ttl = ttl;
        self
    }

    /// Whether token responses include a (rotating) refresh token.
    /// Defaults to true.
    pub fn issue_refresh_tokens(mut self, yes: bool) -> Self {
        self.issue_refresh_tokens = yes;
        self
    }

    /// Whether authorization requests without a PKCE `code_challenge` are
    /// refused. Defaults to true.
    pub fn require_pkce(mut self, yes: bool) -> Self {
        self.require_pkce = yes;
        self
    }

    /// Client authentication methods the token endpoint accepts. Defaults
    /// to [`ClientAuth::Any`].
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// Algorithm for ID and access tokens. Defaults to RS256.
    pub fn signing_alg(mut self, alg: SigningAlg) -> Self {
        self.signing_alg = alg;
        self
    }

    /// Sign with the published test keys ([`TEST_RSA_PRIVATE_KEY_PEM`],
    /// [`TEST_EC_PRIVATE_KEY_PEM`]) instead of keys made at start: stable
    /// `kid`s across runs, and no RSA-2048 key generation (about 0.1 s per
    /// provider, up to 0.2 s: aws-lc is optimised even in debug builds) for
    /// tests that start many providers.
    ///
    /// **Insecure**: anyone can sign tokens this provider's JWKS vouches
    /// for. Tests only. By default fresh keys are made at start.
    pub fn insecure_fixed_keys(mut self) -> Self {
        self.keys = KeySource::Fixed {
            rsa_pem: TEST_RSA_PRIVATE_KEY_PEM,
            ec_pem: TEST_EC_PRIVATE_KEY_PEM,
        };
        self
    }

    /// Whether [`DevProvider::rotate_keys`] keeps publishing the previous
    /// keys. Defaults to true.
    pub fn rotate_keys_keep_old(mut self, yes: bool) -> Self {
        self.keep_old_keys = yes;
        self
    }

    /// Log every authorization request in as this user without showing the
    /// form; see [`DevProvider::set_auto_login`]. Defaults to off.
    pub fn auto_login(mut self, user: impl Into<String>) -> Self {
        self.auto_login = Some(user.into());
        self
    }

    /// Serve HTTPS with `config` instead of plain HTTP (e.g.
    /// [`crate::server::tls::load_server_config`] with the test
    /// certificate in `certs/`, which covers `localhost` and `127.0.0.1`).
    /// The default issuer then becomes `https://localhost:PORT`; clients
    /// (the gateway: `provider.ca_file`) must trust the certificate's CA.
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Binds the listener and starts serving.
    ///
    /// # Errors
    /// When the address cannot be bound, or the keys cannot be loaded or made.
    pub async fn start(self) -> io::Result<DevProvider> {
        let keys = match self.keys {
            // RSA key generation takes a moment; keep it off the reactor.
            KeySource::Generate => tokio::task::spawn_blocking(KeySet::generate)
                .await
                .map_err(io::Error::other)??,
            KeySource::Fixed { rsa_pem, ec_pem } => KeySet::from_pkcs8_pems(rsa_pem, ec_pem)?,
        };
        let client_jwt_key = match &self.client_auth {
            ClientAuth::PrivateKeyJwt(pem) => Some(token::ClientJwtKey::from_pem(pem)?),
            _ => None,
        };
        let listener = tokio::net::TcpListener::bind(self.bind).await?;
        let addr = listener.local_addr()?;
        let issuer = self.issuer.unwrap_or_else(|| {
            if self.tls.is_some() {
                // The name the test certificate is issued for.
                return format!("https://localhost:{}", addr.port());
            }
            let host = if addr.ip().is_unspecified() {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
            } else {
                addr
            };
            format!("http://{host}")
        });
        let shared = Arc::new(Shared {
            issuer,
            client_id: self.client_id,
            client_secret: self.client_secret,
            redirect_uris: self.redirect_uris,
            access_token_ttl: self.access_token_ttl,
            id_token_ttl: self.id_token_ttl,
            code_ttl: self.code_ttl,
            issue_refresh_tokens: self.issue_refresh_tokens,
            require_pkce: self.require_pkce,
            client_auth: self.client_auth,
            client_jwt_key,
            client_jtis: Mutex::new(HashMap::new()),
            signing_alg: Mutex::new(self.signing_alg),
            keys: RwLock::new(keys),
            keep_old_keys: AtomicBool::new(self.keep_old_keys),
            faults: Faults::default(),
            auto_login: Mutex::new(self.auto_login),
            users: Mutex::new(HashMap::new()),
            grants: Mutex::new(Grants::default()),
            counters: CounterCells::default(),
            last_authorize: Mutex::new(None),
            last_sid: Mutex::new(None),
            opaque: Mutex::new(HashMap::new()),
        });
        let acceptor = self.tls.map(tokio_rustls::TlsAcceptor::from);
        let server = serve(&shared, listener, acceptor.clone())?;
        Ok(DevProvider {
            shared,
            addr,
            acceptor,
            server: Some(server),
        })
    }
}

fn serve(
    shared: &Arc<Shared>,
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> io::Result<ServerHandle> {
    let handler_shared = Arc::clone(shared);
    spawn_server_with(listener, acceptor, move |req| {
        endpoints::handle(Arc::clone(&handler_shared), req)
    })
}

// ===== impl DevProvider =====

/// A running development OpenID Provider. Dropping it stops the server.
///
/// See the [module docs](self).
pub struct DevProvider {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// `None` between [`DevProvider::stop_serving`] and
    /// [`DevProvider::resume_serving`].
    server: Option<ServerHandle>,
}

impl std::fmt::Debug for DevProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevProvider")
            .field("issuer", &self.shared.issuer)
            .field("client_id", &self.shared.client_id)
            .field("addr", &self.addr)
            .field("serving", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

impl DevProvider {
    /// A builder with test defaults: client `gateway` / `dev-secret`,
    /// `127.0.0.1:0`, keys made at start (see
    /// [`DevProviderBuilder::insecure_fixed_keys`]).
    pub fn builder() -> DevProviderBuilder {
        DevProviderBuilder::default()
    }

    /// The issuer, `http://127.0.0.1:PORT` by default, `https://localhost:PORT`
    /// with [`DevProviderBuilder::tls`] (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registered client's id.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// The registered client's secret.
    pub fn client_secret(&self) -> &str {
        &self.shared.client_secret
    }

    /// `issuer + /.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.shared.issuer)
    }

    /// Stops the server now (dropping the handle does the same).
    pub fn shutdown(mut self) {
        self.stop_serving();
    }

    /// The provider goes down: the listener is closed (connections to
    /// [`addr`](Self::addr) are refused) and open connections are closed.
    /// Keys, grants and faults are kept for [`resume_serving`](Self::resume_serving).
    /// Does nothing when already stopped.
    pub fn stop_serving(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
    }

    /// Serves again on the same address (and issuer) after
    /// [`stop_serving`](Self::stop_serving), with the same state. Does
    /// nothing while serving.
    ///
    /// # Errors
    /// When the address cannot be bound again (another process took the port).
    pub async fn resume_serving(&mut self) -> io::Result<()> {
        if self.server.is_some() {
            return Ok(());
        }
        // The stopped accept loop drops its listener when its task is
        // cancelled, which may be a moment after `stop_serving`.
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.server = Some(serve(&self.shared, listener, self.acceptor.clone())?);
        Ok(())
    }

    // --- faults ---

    /// Activates `fault` for every later response, replacing an active
    /// fault of the same variant.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.faults.set(fault);
    }

    /// Deactivates every fault.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// The active faults.
    pub fn faults(&self) -> Vec<Fault> {
        self.shared.faults.snapshot()
    }

    // --- users and login ---

    /// With `Some(user)`, `/authorize` logs that user in at once and
    /// redirects back (no form). `None` shows the login form again.
    pub fn set_auto_login(&self, user: Option<&str>) {
        *self.shared.auto_login.lock() = user.map(str::to_owned);
    }

    /// Sets extra claims for `user`, merged over the defaults (`sub`,
    /// `email` = `<user>@example.com`, `email_verified`,
    /// `preferred_username`, `name`, `groups` = `["users"]`). A `null`
    /// member removes a default claim. Applies to ID tokens, access tokens
    /// and userinfo.
    pub fn set_user_claims(&self, user: &str, claims: Value) {
        self.shared.users.lock().insert(user.to_owned(), claims);
    }

    /// The parameters of the latest `/authorize` request, in order.
    pub fn last_authorize_request(&self) -> Option<Vec<(String, String)>> {
        self.shared.last_authorize.lock().clone()
    }

    /// The `sid` (provider session id, carried in the ID token and usable in
    /// logout tokens) of the latest login, once a code was issued.
    pub fn last_issued_sid(&self) -> Option<String> {
        self.shared.last_sid.lock().clone()
    }

    // --- counters ---

    /// A snapshot of the request counters.
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// Sets every counter back to zero.
    pub fn reset_counters(&self) {
        self.shared.counters.reset();
    }

    // --- keys ---

    /// Switches signing to fresh RSA and EC keys with new `kid`s. The JWKS
    /// then serves the new keys, and also the old ones unless
    /// [`rotate_keys_keep_old(false)`](Self::rotate_keys_keep_old).
    ///
    /// # Errors
    /// If key generation fails.
    pub fn rotate_keys(&self) -> io::Result<()> {
        let keep = self.shared.keep_old_keys.load(Ordering::Relaxed);
        self.shared.keys.write().rotate(keep)?;
        Ok(())
    }

    /// Whether later [`rotate_keys`](Self::rotate_keys) calls keep the
    /// previous keys in the JWKS.
    pub fn rotate_keys_keep_old(&self, keep: bool) {
        self.shared.keep_old_keys.store(keep, Ordering::Relaxed);
    }

    /// Switches the algorithm of later ID and access tokens.
    pub fn set_signing_alg(&self, alg: SigningAlg) {
        *self.shared.signing_alg.lock() = alg;
    }

    /// The `kid` of the current RSA key.
    pub fn rsa_kid(&self) -> String {
        self.shared.keys.read().rsa.kid.clone()
    }

    /// The `kid` of the current P-256 key.
    pub fn ec_kid(&self) -> String {
        self.shared.keys.read().ec.kid.clone()
    }

    /// The current RSA public key as an SPKI PEM (`BEGIN PUBLIC KEY`).
    pub fn rsa_public_key_pem(&self) -> String {
        self.shared.keys.read().rsa.public_pem().to_owned()
    }

    /// The JWKS document `/jwks` serves (ignoring faults).
    pub fn jwks(&self) -> Value {
        self.shared.keys.read().jwks()
    }

    // --- minting tokens ---

    /// An access token for bearer tests: `claims` merged over valid defaults
    /// (`iss`, `sub` = `alice`, `aud` = client id, `iat`, `nbf`, `exp`,
    /// `jti`, `scope`, `client_id` and the user's profile claims for the
    /// `sub` given in `claims`), signed with the current key and algorithm.
    /// A `null` member removes a default.
    pub fn mint_access_token(&self, claims: Value) -> String {
        let user = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("alice")
            .to_owned();
        let mut full = claims::access_token_claims(&self.shared, &user, "openid email profile");
        keys::merge(&mut full, &claims);
        self.shared
            .sign(&self.shared.signer(), &claims::access_token_header(), &full)
    }

    /// An ID token: `claims` merged over valid defaults for the `sub` given
    /// in `claims` (or `alice`), signed with the current key. Faults do not
    /// apply.
    pub fn mint_id_token(&self, claims: Value) -> String {
        let user = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("alice")
            .to_owned();
        let mut full =
            claims::id_token_claims(&self.shared, &user, &claims::IdTokenContext::default());
        keys::merge(&mut full, &claims);
        self.shared.sign(&self.shared.signer(), &Value::Null, &full)
    }

    /// A fresh opaque (non-JWT) access token that `/introspect` answers
    /// for: `claims` merged over an active answer with valid defaults
    /// (`active`, `iss`, `sub` = `alice`, `client_id` and `aud` = the client
    /// id, `scope`, `token_type` = `Bearer`, `iat`, `exp` = now + the
    /// access-token lifetime, and the user's profile claims). A `null`
    /// member removes a default. After its `exp` it is inactive.
    pub fn mint_opaque_token(&self, claims: Value) -> String {
        let user = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("alice")
            .to_owned();
        let mut answer = claims::access_token_claims(&self.shared, &user, "openid email profile");
        keys::merge(
            &mut answer,
            &serde_json::json!({"active": true, "token_type": "Bearer", "nbf": null}),
        );
        keys::merge(&mut answer, &claims);
        let token = crate::devtools::http::random_token(32);
        let mut opaque = self.shared.opaque.lock();
        if opaque.len() >= introspect::MAX_OPAQUE_TOKENS {
            opaque.clear();
        }
        opaque.insert(token.clone(), answer);
        token
    }

    /// Signs exactly `claims` with the current key and algorithm.
    pub fn sign_claims(&self, claims: &Value) -> String {
        self.shared
            .sign(&self.shared.signer(), &Value::Null, claims)
    }

    /// Signs `claims` with `signer`; `header` (a JSON object, or `null`) is
    /// merged over the signer's default header (`alg`, `typ`, `kid`), where a
    /// `null` member removes a default. For hostile tokens, e.g.
    /// `sign_with(Signer::Rs256, json!({"alg": "PS256"}), &claims)` or
    /// `sign_with(Signer::Rs256, json!({"kid": "nope"}), &claims)`.
    pub fn sign_with(&self, signer: Signer, header: Value, claims: &Value) -> String {
        self.shared.sign(&signer, &header, claims)
    }

    /// An OpenID Connect Back-Channel Logout token for this client, with
    /// `sub` and/or `sid`, signed with the current key.
    pub fn mint_logout_token(&self, sub: Option<&str>, sid: Option<&str>) -> String {
        let claims = claims::logout_token_claims(&self.shared, sub, sid);
        self.shared.sign(
            &self.shared.signer(),
            &serde_json::json!({"typ": "logout+jwt"}),
            &claims,
        )
    }
}
