//! Authentication: from the credential a request carries to the
//! [`Identity`](crate::identity::Identity) it proves.
//!
//! A request presents at most one credential ([`Credential`]): a bearer
//! token (which wins) or the session cookie. [`Authenticator::resolve`]
//! answers from memory when it can (a cached bearer token, a session in an
//! in-process store that needs no refresh) and returns `Pending` otherwise,
//! so the caller only allocates a future for the slow path. Both paths share
//! the same decision functions; there is one way to accept a credential.

pub(crate) mod bearer;
pub(crate) mod introspect;
mod refresh;
pub(crate) mod userinfo;

pub(crate) use bearer::{BearerCache, Principal};
pub(crate) use introspect::{IntrospectionSettings, Introspector};
pub(crate) use refresh::SessionRefresher;
pub(crate) use userinfo::BearerUserinfo;

use crate::auth::responses::json_error;
use crate::auth::session_cookie::{Presented, SessionCookies};
use crate::body::ResponseBody;
use crate::clock::SharedClock;
use crate::identity::{IdentityHeaders, PrecomputedHeaders};
use crate::metrics::{AuthOutcome, Metrics};
use crate::session::{Opened, Session, SessionKey, SessionLookup, SessionStore, StoreError};
use crate::token::{TokenError, TokenVerifier};
use http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use std::sync::Arc;

/// Who a request was authenticated as.
pub(crate) enum Authenticated {
    Session(Arc<Session>),
    Bearer(Arc<Principal>),
}

impl Authenticated {
    pub(crate) fn identity(&self) -> &Arc<crate::identity::Identity> {
        match self {
            Authenticated::Session(s) => &s.identity,
            Authenticated::Bearer(p) => &p.identity,
        }
    }

    /// The identity headers, encoded once when the credential was accepted.
    pub(crate) fn headers(&self) -> &PrecomputedHeaders {
        match self {
            Authenticated::Session(s) => &s.headers,
            Authenticated::Bearer(p) => &p.headers,
        }
    }

    /// The metric outcome of a request admitted with this credential.
    pub(crate) fn outcome(&self, cached: bool) -> AuthOutcome {
        match self {
            Authenticated::Session(_) => AuthOutcome::Session,
            Authenticated::Bearer(_) if cached => AuthOutcome::BearerCached,
            Authenticated::Bearer(_) => AuthOutcome::BearerValidated,
        }
    }
}

/// What the request carried, before anything async.
pub(crate) enum Credential {
    None,
    Bearer(String),
    /// A session id, to look up in the store.
    Session(SessionKey),
    /// A session sealed in the cookie, already opened.
    Sealed(Opened),
}

/// Why a presented bearer token was not accepted, when that is not a
/// plain `invalid_token` (401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BearerRefusal {
    /// Valid, but a `bearer.required_scopes` scope is not granted: 403
    /// `insufficient_scope` (RFC 6750 §3.1).
    InsufficientScope,
    /// The provider (introspection or userinfo) did not answer: 503, fail
    /// closed.
    ProviderUnavailable,
}

/// The outcome of authentication: who, or whether a presented bearer
/// token was refused (`invalid_token`, or `bearer_refusal`), or whether the
/// session store could not answer (`unavailable`: 503, not "signed out").
pub(crate) struct Outcome {
    pub(crate) who: Option<Authenticated>,
    pub(crate) invalid_token: bool,
    pub(crate) unavailable: bool,
    pub(crate) bearer_refusal: Option<BearerRefusal>,
    /// `Set-Cookie` values the response must carry: a cookie-sealed session
    /// that was refreshed or resealed.
    pub(crate) set_cookies: Vec<HeaderValue>,
}

impl Outcome {
    const ANONYMOUS: Outcome = Outcome {
        who: None,
        invalid_token: false,
        unavailable: false,
        bearer_refusal: None,
        set_cookies: Vec::new(),
    };
    const INVALID_TOKEN: Outcome = Outcome {
        who: None,
        invalid_token: true,
        unavailable: false,
        bearer_refusal: None,
        set_cookies: Vec::new(),
    };
    const UNAVAILABLE: Outcome = Outcome {
        who: None,
        invalid_token: false,
        unavailable: true,
        bearer_refusal: None,
        set_cookies: Vec::new(),
    };

    fn bearer_refused(refusal: BearerRefusal) -> Self {
        Outcome {
            bearer_refusal: Some(refusal),
            ..Outcome::ANONYMOUS
        }
    }

    /// The outcome of a bearer token refused for `reason`.
    fn refused_token(reason: TokenError) -> Self {
        match reason {
            TokenError::InsufficientScope => {
                Outcome::bearer_refused(BearerRefusal::InsufficientScope)
            }
            _ => Outcome::INVALID_TOKEN,
        }
    }

    fn found(who: Authenticated) -> Self {
        Outcome {
            who: Some(who),
            ..Outcome::ANONYMOUS
        }
    }

    fn store_failed(e: &StoreError) -> Self {
        tracing::warn!(error = %e, "session store unavailable");
        Outcome::UNAVAILABLE
    }
}

/// Synchronous result of [`Authenticator::resolve_now`].
pub(crate) enum Resolved {
    Done(Outcome),
    Pending,
}

/// Bearer-token acceptance: the verifier and the cache of its answers, and
/// the introspector for opaque tokens (`bearer.introspection = true`).
pub(crate) struct BearerAuth {
    pub(crate) cache: BearerCache,
    pub(crate) verifier: Arc<TokenVerifier>,
    pub(crate) introspector: Option<Introspector>,
    /// `bearer.userinfo = true`: the login provider's JWTs get userinfo
    /// merged (introspected tokens get it inside the introspector).
    pub(crate) userinfo: Option<Arc<BearerUserinfo>>,
    /// The `WWW-Authenticate` of a 403 `insufficient_scope`, naming
    /// `bearer.required_scopes`.
    pub(crate) insufficient_scope: HeaderValue,
}

impl BearerAuth {
    /// `Bearer error="insufficient_scope", scope="<required scopes>"`
    /// (RFC 6750 §3; the scopes are validated scope tokens).
    pub(crate) fn insufficient_scope_challenge(required: &[String]) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\"",
            required.join(" ")
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"insufficient_scope\""))
    }
}

/// Credential → identity, for sessions and bearer tokens.
pub(crate) struct Authenticator {
    pub(crate) cookies: SessionCookies,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) bearer: Option<BearerAuth>,
    pub(crate) refresher: SessionRefresher,
    pub(crate) identity_headers: Arc<IdentityHeaders>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) clock: SharedClock,
}

impl Authenticator {
    /// The response for a bearer token refused with a [`BearerRefusal`]:
    /// 403 `insufficient_scope` with the required scopes, or 503 (JSON,
    /// `Retry-After: 1`) when the provider did not answer.
    pub(crate) fn refusal_response(&self, outcome: &Outcome) -> Option<Response<ResponseBody>> {
        let refusal = outcome.bearer_refusal?;
        Some(match refusal {
            BearerRefusal::InsufficientScope => {
                self.metrics.record_auth(AuthOutcome::Forbidden);
                let mut resp = json_error(StatusCode::FORBIDDEN, "insufficient_scope");
                if let Some(b) = &self.bearer {
                    resp.headers_mut()
                        .insert(WWW_AUTHENTICATE, b.insufficient_scope.clone());
                }
                resp
            }
            BearerRefusal::ProviderUnavailable => {
                let mut resp =
                    json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                resp
            }
        })
    }

    /// The credential a request presents: a bearer token wins over a cookie.
    pub(crate) fn credential(&self, headers: &HeaderMap) -> Credential {
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
        match self.cookies.read(headers) {
            Presented::Reference(key) => Credential::Session(key),
            Presented::Sealed(opened) => Credential::Sealed(opened),
            Presented::None => Credential::None,
        }
    }

    /// Authenticates from memory only: `Pending` when the store, a refresh
    /// or the token validation has to be awaited.
    pub(crate) fn resolve_now(&self, credential: &Credential) -> Resolved {
        match credential {
            Credential::None => Resolved::Done(Outcome::ANONYMOUS),
            Credential::Bearer(token) => match self.cached_bearer(token) {
                Ok(Some(p)) => Resolved::Done(Outcome::found(Authenticated::Bearer(p))),
                Ok(None) => Resolved::Pending,
                Err(refused) => Resolved::Done(refused),
            },
            Credential::Session(key) => match self.store.load(key) {
                SessionLookup::Ready(Some(s)) if s.needs_refresh(self.clock.now_secs()) => {
                    Resolved::Pending
                }
                SessionLookup::Ready(s) => Resolved::Done(match s {
                    Some(s) => Outcome::found(Authenticated::Session(s)),
                    None => Outcome::ANONYMOUS,
                }),
                SessionLookup::Pending(_) => Resolved::Pending,
            },
            Credential::Sealed(o) => {
                if o.reseal || o.session.needs_refresh(self.clock.now_secs()) {
                    Resolved::Pending
                } else {
                    Resolved::Done(Outcome::found(Authenticated::Session(o.session.clone())))
                }
            }
        }
    }

    /// Full authentication, awaiting the store, a refresh or the token
    /// validation. Records the bearer metrics it decides. `request` is the
    /// request's headers (for the session cookies a rewrite replaces).
    pub(crate) async fn resolve(&self, credential: &Credential, request: &HeaderMap) -> Outcome {
        match credential {
            Credential::None => Outcome::ANONYMOUS,
            Credential::Bearer(token) => {
                let bearer = match self.cached_bearer(token) {
                    Ok(Some(p)) => {
                        self.metrics.record_auth(AuthOutcome::BearerCached);
                        return Outcome::found(Authenticated::Bearer(p));
                    }
                    Ok(None) => self.bearer.as_ref(),
                    Err(refused) => return refused,
                };
                let Some(bearer) = bearer else {
                    return Outcome::INVALID_TOKEN;
                };
                // Opaque tokens go to the introspection endpoint; JWT-shaped
                // ones are only ever verified locally.
                if let Some(introspector) = bearer
                    .introspector
                    .as_ref()
                    .filter(|_| !introspect::is_jwt_shaped(token))
                {
                    return match introspector.authenticate(token).await {
                        Ok((p, cached)) => {
                            self.metrics.record_auth(if cached {
                                AuthOutcome::BearerCached
                            } else {
                                AuthOutcome::BearerValidated
                            });
                            Outcome::found(Authenticated::Bearer(p))
                        }
                        Err(e) => {
                            self.metrics.record_auth(AuthOutcome::BearerInvalid);
                            match e {
                                introspect::IntrospectionFailure::Refused(reason) => {
                                    tracing::info!(reason = %e, "opaque bearer token refused");
                                    Outcome::refused_token(reason)
                                }
                                introspect::IntrospectionFailure::Unavailable(_) => {
                                    tracing::warn!(error = %e, "opaque bearer token not introspected");
                                    Outcome::bearer_refused(BearerRefusal::ProviderUnavailable)
                                }
                            }
                        }
                    };
                }
                let identity = match bearer.verifier.verify_access_token(token).await {
                    Ok(identity) => identity,
                    Err(e) => {
                        self.metrics.record_auth(AuthOutcome::BearerInvalid);
                        tracing::info!(reason = %e, "bearer token refused");
                        return Outcome::refused_token(e);
                    }
                };
                let p = match &bearer.userinfo {
                    Some(u) if bearer.verifier.is_provider_issuer(&identity.issuer) => {
                        match u.enrich(token, identity).await {
                            Ok(p) => p,
                            Err(e) => {
                                self.metrics.record_auth(AuthOutcome::BearerInvalid);
                                return match e {
                                    userinfo::UserinfoFailure::Refused(_) => {
                                        tracing::info!(reason = %e, "bearer token refused");
                                        Outcome::INVALID_TOKEN
                                    }
                                    userinfo::UserinfoFailure::Unavailable(_) => {
                                        tracing::warn!(error = %e, "bearer token not enriched");
                                        Outcome::bearer_refused(BearerRefusal::ProviderUnavailable)
                                    }
                                };
                            }
                        }
                    }
                    _ => {
                        let headers = self.identity_headers.precompute(&identity);
                        Arc::new(Principal {
                            identity: Arc::new(identity),
                            headers,
                        })
                    }
                };
                self.metrics.record_auth(AuthOutcome::BearerValidated);
                bearer.cache.insert(BearerCache::key(token), p.clone());
                Outcome::found(Authenticated::Bearer(p))
            }
            Credential::Session(key) => {
                let session = match self.load_session(key).await {
                    Ok(Some(s)) => s,
                    Ok(None) => return Outcome::ANONYMOUS,
                    Err(e) => return Outcome::store_failed(&e),
                };
                match self
                    .refresher
                    .refresh_if_needed(&*self.store, key, session, false)
                    .await
                {
                    Ok(Some(s)) => Outcome::found(Authenticated::Session(s)),
                    Ok(None) => Outcome::ANONYMOUS,
                    Err(e) => Outcome::store_failed(&e),
                }
            }
            Credential::Sealed(o) => {
                let fresh = match self
                    .refresher
                    .refresh_if_needed(&*self.store, &o.key, o.session.clone(), true)
                    .await
                {
                    Ok(Some(s)) => s,
                    Ok(None) => return Outcome::ANONYMOUS,
                    Err(e) => return Outcome::store_failed(&e),
                };
                let mut outcome = Outcome::found(Authenticated::Session(fresh.clone()));
                if o.reseal || !Arc::ptr_eq(&fresh, &o.session) {
                    let now = self.clock.now_secs();
                    match self.cookies.issue(request, "", &o.key, &fresh, now) {
                        Ok(set) => outcome.set_cookies = set,
                        Err(e) => tracing::warn!(error = %e, "session cookie not rewritten"),
                    }
                }
                outcome
            }
        }
    }

    /// The session stored under `key`, awaiting a remote store.
    pub(crate) async fn load_session(
        &self,
        key: &SessionKey,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        match self.store.load(key) {
            SessionLookup::Ready(s) => Ok(s),
            SessionLookup::Pending(fut) => fut.await,
        }
    }

    /// A cached principal for `token`; `Ok(None)` when it has to be
    /// validated; `Err` when it is refused outright (empty, or bearer
    /// tokens are not accepted).
    fn cached_bearer(&self, token: &str) -> Result<Option<Arc<Principal>>, Outcome> {
        if token.is_empty() {
            return Err(Outcome::INVALID_TOKEN);
        }
        let Some(bearer) = &self.bearer else {
            return Err(Outcome::INVALID_TOKEN);
        };
        Ok(bearer.cache.get(&BearerCache::key(token)))
    }
}
