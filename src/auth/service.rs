//! [`Oidc`]: the authentication middleware service.
//!
//! Per request: normalize the path (ambiguous paths get 400), strip every
//! identity header, answer the gateway's own endpoints, pick the route
//! policy, authenticate (bearer token, else session cookie), apply the
//! policy, set identity headers, remove the gateway's cookies, call the
//! inner service. The common cases (session in the memory store, cached
//! bearer token, public route) complete without an extra allocation for the
//! future.

use super::bearer::{BearerCache, Principal};
use super::cookies::{request_cookie, strip_gateway_cookies};
use super::endpoints;
use super::error::{html_page, json_error, unauthorized};
use super::future::ResponseFuture;
use super::identity::Identity;
use super::layer::Shared;
use super::routes::{normalize_path, RoutePolicy};
use super::session::{key_for_cookie, Session, SessionKey, SessionLookup};
use super::token::now_secs;
use crate::body::{BoxError, ResponseBody};
use crate::config::RouteAuth;
use crate::metrics::{AuthOutcome, RouteKind};
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri};
use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The authentication middleware; see [`OidcLayer`](super::OidcLayer).
#[derive(Clone)]
pub struct Oidc<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for Oidc<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc").finish_non_exhaustive()
    }
}

impl<S> Oidc<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Oidc { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// Who a request was authenticated as.
pub(crate) enum Authenticated {
    Session(Arc<Session>),
    Bearer(Arc<Principal>),
}

impl Authenticated {
    pub(crate) fn identity(&self) -> &Arc<Identity> {
        match self {
            Authenticated::Session(s) => &s.identity,
            Authenticated::Bearer(p) => &p.identity,
        }
    }

    /// Sets the identity headers on a request that `call` already
    /// stripped (step 2), so they are not stripped a second time.
    fn insert_headers(
        &self,
        ids: &super::identity::IdentityHeaders,
        headers: &mut http::HeaderMap,
    ) {
        match self {
            Authenticated::Session(s) => ids.insert_precomputed(&s.headers, headers),
            Authenticated::Bearer(p) => ids.insert_precomputed(&p.headers, headers),
        }
    }
}

/// What the request carried, before anything async.
pub(crate) enum Credential {
    None,
    Bearer(String),
    Session(super::session::SessionKey),
}

/// Outcome of the synchronous part of authentication.
pub(crate) enum Resolved {
    Done(Option<Authenticated>, bool),
    Pending,
}

impl Shared {
    /// The credential a request presents: a bearer token wins over a cookie.
    pub(crate) fn credential(&self, headers: &http::HeaderMap) -> Credential {
        if self.bearer.is_some() {
            // Only the Bearer scheme is ours; other schemes (Basic for the
            // app itself) fall through to the session cookie.
            if let Some(v) = headers.get(AUTHORIZATION) {
                let bytes = v.as_bytes();
                if bytes.len() >= 6 && bytes[..6].eq_ignore_ascii_case(b"bearer") {
                    let token = v
                        .to_str()
                        .ok()
                        .and_then(|s| s.get(6..))
                        .filter(|rest| rest.starts_with(' '))
                        .map(str::trim)
                        .unwrap_or("");
                    return Credential::Bearer(token.to_string());
                }
            }
        }
        match request_cookie(headers, &self.cookies.session_name).and_then(key_for_cookie) {
            Some(key) => Credential::Session(key),
            None => Credential::None,
        }
    }

    /// Authenticates from memory only: `Pending` when the store or the
    /// token validation has to be awaited. The bool says a presented
    /// bearer token was refused.
    fn resolve_now(&self, credential: &Credential) -> Resolved {
        match credential {
            Credential::None => Resolved::Done(None, false),
            Credential::Bearer(token) => {
                if token.is_empty() {
                    return Resolved::Done(None, true);
                }
                let Some(cache) = &self.bearer else {
                    return Resolved::Done(None, true);
                };
                match cache.get(&BearerCache::key(token)) {
                    Some(p) => Resolved::Done(Some(Authenticated::Bearer(p)), false),
                    None => Resolved::Pending,
                }
            }
            Credential::Session(key) => match self.store.load(key) {
                SessionLookup::Ready(Some(s)) if s.needs_refresh(now_secs()) => Resolved::Pending,
                SessionLookup::Ready(s) => Resolved::Done(s.map(Authenticated::Session), false),
                SessionLookup::Pending(_) => Resolved::Pending,
            },
        }
    }

    /// Refreshes the session's access token when it is about to expire.
    /// Single-flight per session: concurrent callers wait on the session's
    /// lock, and all but the first find the refreshed session in the store.
    /// A failed refresh ends the session (`None`).
    async fn refresh_if_needed(
        &self,
        key: &SessionKey,
        session: Arc<Session>,
    ) -> Option<Arc<Session>> {
        if !session.needs_refresh(now_secs()) {
            return Some(session);
        }
        let state = session.refresh.as_ref()?;
        let _guard = state.lock.lock().await;
        let current = match self.store.load(key) {
            SessionLookup::Ready(s) => s,
            SessionLookup::Pending(f) => f.await.ok().flatten(),
        };
        match current {
            Some(c) if !Arc::ptr_eq(&c, &session) => return Some(c),
            None => return None,
            Some(_) => {}
        }
        let meta = self.provider.metadata()?;
        let refresh_token = &state.refresh_token;
        let result = super::code_flow::refresh(
            self.provider.http(),
            meta.token_endpoint.as_str(),
            &self.credentials,
            refresh_token.expose(),
        )
        .await;
        let tokens = match result {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(error = %e, "refresh failed: session ended");
                let _ = self.store.remove(key).await;
                return None;
            }
        };
        let now = now_secs();
        let (identity, headers, id_token, sid) = match tokens.id_token.as_deref() {
            Some(id_token) => {
                match self
                    .verifier
                    .verify_refreshed_id_token(id_token, &session.identity)
                    .await
                {
                    Ok((mut identity, info)) => {
                        identity.source = super::identity::IdentitySource::Session;
                        let headers = self.identity_headers.precompute(&identity);
                        (
                            Arc::new(identity),
                            headers,
                            Some(crate::secret::Secret::new(id_token)),
                            info.sid.or_else(|| session.sid.clone()),
                        )
                    }
                    Err(e) => {
                        tracing::warn!(reason = %e, "refreshed id token refused: session ended");
                        let _ = self.store.remove(key).await;
                        return None;
                    }
                }
            }
            None => (
                session.identity.clone(),
                session.headers.clone(),
                session.id_token.clone(),
                session.sid.clone(),
            ),
        };
        let mut fresh = Session::new(identity, headers, session.created_at, session.expires_at);
        fresh.id_token = id_token;
        fresh.sid = sid;
        // Keep the old refresh token when the provider does not rotate it.
        let refresh_token = tokens
            .refresh_token
            .or_else(|| Some(state.refresh_token.clone()));
        fresh.set_tokens(
            tokens.access_token,
            refresh_token,
            tokens.expires_in,
            now,
            self.refresh_margin,
        );
        let fresh = Arc::new(fresh);
        if let Err(e) = self.store.save(*key, fresh.clone()).await {
            tracing::error!(error = %e, "session store write failed after refresh");
            return None;
        }
        Some(fresh)
    }

    /// Full authentication, awaiting the store or validating the token.
    pub(crate) async fn resolve(&self, credential: &Credential) -> (Option<Authenticated>, bool) {
        match credential {
            Credential::None => (None, false),
            Credential::Bearer(token) => {
                if token.is_empty() {
                    return (None, true);
                }
                let Some(cache) = &self.bearer else {
                    return (None, true);
                };
                let key = BearerCache::key(token);
                if let Some(p) = cache.get(&key) {
                    self.metrics.record_auth(AuthOutcome::BearerCached);
                    return (Some(Authenticated::Bearer(p)), false);
                }
                match self.verifier.verify_access_token(token).await {
                    Ok(identity) => {
                        self.metrics.record_auth(AuthOutcome::BearerValidated);
                        let headers = self.identity_headers.precompute(&identity);
                        let p = Arc::new(Principal {
                            identity: Arc::new(identity),
                            headers,
                        });
                        cache.insert(key, p.clone());
                        (Some(Authenticated::Bearer(p)), false)
                    }
                    Err(e) => {
                        self.metrics.record_auth(AuthOutcome::BearerInvalid);
                        tracing::info!(reason = %e, "bearer token refused");
                        (None, true)
                    }
                }
            }
            Credential::Session(key) => {
                let loaded = match self.store.load(key) {
                    SessionLookup::Ready(s) => s,
                    SessionLookup::Pending(fut) => match fut.await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "session store lookup failed");
                            None
                        }
                    },
                };
                let Some(session) = loaded else {
                    return (None, false);
                };
                (
                    self.refresh_if_needed(key, session)
                        .await
                        .map(Authenticated::Session),
                    false,
                )
            }
        }
    }

    /// The response for a request that has no valid credential.
    pub(crate) fn unauthenticated<B>(
        &self,
        req: &Request<B>,
        invalid_token: bool,
    ) -> Response<ResponseBody> {
        if !invalid_token && is_navigation(req) {
            self.metrics.record_auth(AuthOutcome::LoginRedirect);
            let return_to = super::return_to::original_url(req.uri());
            return endpoints::begin_login(self, return_to, req.headers());
        }
        self.metrics.record_auth(AuthOutcome::Unauthenticated);
        unauthorized(invalid_token)
    }
}

/// GET/HEAD whose `Accept` includes `text/html`.
pub(crate) fn is_navigation<B>(req: &Request<B>) -> bool {
    is_navigation_parts(req.method(), req.headers())
}

fn is_navigation_parts(method: &Method, headers: &http::HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && headers.get_all(ACCEPT).iter().any(|v| {
            v.as_bytes()
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"text/html"))
        })
}

/// 403 as HTML for browsers, JSON otherwise.
pub(crate) fn forbidden(method: &Method, headers: &http::HeaderMap) -> Response<ResponseBody> {
    if is_navigation_parts(method, headers) {
        html_page(
            StatusCode::FORBIDDEN,
            "Access denied",
            "You are signed in, but this page is not available to your account.",
        )
    } else {
        json_error(StatusCode::FORBIDDEN, "forbidden")
    }
}

fn bad_path() -> Response<ResponseBody> {
    json_error(StatusCode::BAD_REQUEST, "invalid_path")
}

/// Replaces the request path with its normalized form, keeping the query.
fn set_path<B>(req: &mut Request<B>, path: &str) -> Result<(), ()> {
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.path_and_query = Some(PathAndQuery::from_maybe_shared(Bytes::from(pq)).map_err(|_| ())?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| ())?;
    Ok(())
}

/// Whether `path` is the gateway's endpoint prefix or below it.
fn under_prefix(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Prepares an authenticated request for the inner service; its identity
/// headers were stripped on entry (step 2 of `call`).
fn admit<B>(shared: &Shared, req: &mut Request<B>, who: &Authenticated) {
    who.insert_headers(&shared.identity_headers, req.headers_mut());
    req.extensions_mut().insert(who.identity().clone());
    strip_gateway_cookies(req.headers_mut(), &shared.cookies);
}

fn policy_allows(policy: &RoutePolicy<'_>, who: &Authenticated) -> bool {
    (policy.allowed_groups.is_empty() && policy.allowed_email_domains.is_empty())
        || policy.allows(who.identity())
}

impl<S, B, ResBody> tower_service::Service<Request<B>> for Oidc<S>
where
    S: tower_service::Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let metrics = &shared.metrics;

        // 1. One path for matching and forwarding.
        match normalize_path(req.uri().path()) {
            Ok(Cow::Borrowed(_)) => {}
            Ok(Cow::Owned(p)) => {
                if set_path(&mut req, &p).is_err() {
                    return ResponseFuture::ready(bad_path(), metrics, RouteKind::Rejected);
                }
            }
            Err(e) => {
                tracing::debug!(reason = %e, "path refused");
                return ResponseFuture::ready(bad_path(), metrics, RouteKind::Rejected);
            }
        }

        // 2. Identity headers are ours alone, on every route.
        shared.identity_headers.strip(req.headers_mut());

        // 3. The gateway's own endpoints.
        if under_prefix(req.uri().path(), &shared.prefix) {
            let shared = self.shared.clone();
            let fut = async move { Ok(endpoints::handle(shared, req).await) };
            return ResponseFuture::boxed(Box::pin(fut), metrics, RouteKind::Endpoint);
        }

        // 4. Route policy.
        let policy = shared.routes.match_path(req.uri().path());
        if policy.auth == RouteAuth::None {
            strip_gateway_cookies(req.headers_mut(), &shared.cookies);
            let fut = self.inner.call(req);
            return ResponseFuture::inner(fut, metrics, RouteKind::Public);
        }

        // 5. Authenticate, synchronously when possible.
        let credential = shared.credential(req.headers());
        match shared.resolve_now(&credential) {
            Resolved::Done(Some(who), _) => {
                if !policy_allows(&policy, &who) {
                    metrics.record_auth(AuthOutcome::Forbidden);
                    return ResponseFuture::ready(
                        forbidden(req.method(), req.headers()),
                        metrics,
                        RouteKind::Protected,
                    );
                }
                metrics.record_auth(match who {
                    Authenticated::Session(_) => AuthOutcome::Session,
                    Authenticated::Bearer(_) => AuthOutcome::BearerCached,
                });
                admit(shared, &mut req, &who);
                let fut = self.inner.call(req);
                ResponseFuture::inner(fut, metrics, RouteKind::Protected)
            }
            Resolved::Done(None, invalid) => {
                let resp = shared.unauthenticated(&req, invalid);
                ResponseFuture::ready(resp, metrics, RouteKind::Protected)
            }
            Resolved::Pending => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let shared = self.shared.clone();
                let fut = async move {
                    let (who, invalid) = shared.resolve(&credential).await;
                    let Some(who) = who else {
                        return Ok(shared.unauthenticated(&req, invalid));
                    };
                    let policy = shared.routes.match_path(req.uri().path());
                    if !policy_allows(&policy, &who) {
                        shared.metrics.record_auth(AuthOutcome::Forbidden);
                        return Ok(forbidden(req.method(), req.headers()));
                    }
                    if matches!(who, Authenticated::Session(_)) {
                        shared.metrics.record_auth(AuthOutcome::Session);
                    }
                    admit(&shared, &mut req, &who);
                    std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
                    let resp = inner.call(req).await?;
                    Ok(resp.map(crate::body::boxed))
                };
                ResponseFuture::boxed(Box::pin(fut), metrics, RouteKind::Protected)
            }
        }
    }
}
