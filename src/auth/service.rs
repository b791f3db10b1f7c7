//! [`Oidc`]: the authentication middleware service.
//!
//! Per request: normalize the path (ambiguous paths get 400), strip every
//! identity header, answer the gateway's own endpoints, pick the route
//! policy, authenticate (bearer token, else session cookie), apply the
//! policy, set identity headers, remove the gateway's cookies, call the
//! inner service. The common cases (session in an in-process store, cached
//! bearer token, public route) complete without an extra allocation for the
//! future.

use super::authn::{Authenticated, BearerRefusal, Outcome, Resolved};
use super::cookies::{add_set_cookie, strip_gateway_cookies};
use super::endpoints;
use super::future::ResponseFuture;
use super::layer::Core;
use super::login::return_to::original_url;
use super::policy::{normalize_path, MatchedRoute, RoutePolicy};
use super::responses::{
    forbidden_because, is_navigation, json_error, store_unavailable, unauthorized, with_request_id,
};
use crate::body::{BoxError, ResponseBody};
use crate::config::RouteAuth;
use crate::metrics::{AuthOutcome, RouteKind};
use crate::telemetry::AccessNote;
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The authentication middleware; see [`OidcLayer`](super::OidcLayer).
#[derive(Clone)]
pub struct Oidc<S> {
    inner: S,
    core: Arc<Core>,
}

impl<S> std::fmt::Debug for Oidc<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc").finish_non_exhaustive()
    }
}

impl<S> Oidc<S> {
    pub(crate) fn new(inner: S, core: Arc<Core>) -> Self {
        Oidc { inner, core }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl Core {
    /// The response for a request that has no valid credential: a login
    /// redirect for browser navigation, else 401.
    fn unauthenticated<B>(
        &self,
        req: &Request<B>,
        invalid_token: bool,
    ) -> (Response<ResponseBody>, AuthOutcome) {
        if !invalid_token && is_navigation(req.method(), req.headers()) {
            self.metrics.record_auth(AuthOutcome::LoginRedirect);
            let resp = with_request_id(
                self.login.begin(original_url(req.uri()), req.headers()),
                req.headers().get(&crate::telemetry::REQUEST_ID),
            );
            return (resp, AuthOutcome::LoginRedirect);
        }
        let outcome = if invalid_token {
            AuthOutcome::BearerInvalid
        } else {
            AuthOutcome::Unauthenticated
        };
        self.metrics.record_auth(AuthOutcome::Unauthenticated);
        (unauthorized(invalid_token), outcome)
    }

    /// Prepares an authenticated request for the inner service; its identity
    /// headers were stripped on entry (step 2 of `call`).
    fn admit<B>(&self, req: &mut Request<B>, who: &Authenticated, policy: &RoutePolicy<'_>) {
        self.identity_headers
            .insert_precomputed(who.headers(), req.headers_mut());
        if let Some(upstream) = &self.upstream {
            upstream.apply(req.headers_mut(), who, policy.index);
        }
        req.extensions_mut().insert(who.identity().clone());
        strip_gateway_cookies(req.headers_mut(), &self.cookies);
        forward(req, policy);
    }

    /// Prepares a request of a public route for the inner service.
    fn admit_public<B>(&self, req: &mut Request<B>, policy: &RoutePolicy<'_>) {
        if let Some(upstream) = &self.upstream {
            upstream.public(req.headers_mut());
        }
        strip_gateway_cookies(req.headers_mut(), &self.cookies);
        forward(req, policy);
    }
}

/// The route's forwarding: which upstream ([`MatchedRoute`], only for
/// routes with their own) and the path without `strip_prefix`.
fn forward<B>(req: &mut Request<B>, policy: &RoutePolicy<'_>) {
    if policy.own_upstream {
        if let Some(i) = policy.index {
            req.extensions_mut().insert(MatchedRoute(i));
        }
    }
    if let Some(prefix) = policy.strip_prefix {
        let rest = req.uri().path().get(prefix.len()..).unwrap_or("");
        let stripped = if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        };
        // The path was valid with the prefix: it is without.
        let _ = set_path(req, &stripped);
    }
}

/// `resp` with the access-log note of an asynchronous authentication.
fn with_note(
    mut resp: Response<ResponseBody>,
    outcome: AuthOutcome,
    who: Option<&Authenticated>,
) -> Response<ResponseBody> {
    resp.extensions_mut().insert(AccessNote {
        route: RouteKind::Protected,
        outcome: Some(outcome),
        identity: who.map(|w| w.identity().clone()),
    });
    resp
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
        let core = &self.core;
        let metrics = &core.metrics;

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
        core.identity_headers.strip(req.headers_mut());

        // 3. The gateway's own endpoints.
        if under_prefix(req.uri().path(), &core.prefix) {
            let core = self.core.clone();
            let fut = async move { Ok(endpoints::handle(core, req).await) };
            return ResponseFuture::boxed(Box::pin(fut), metrics, RouteKind::Endpoint);
        }

        // 4. Route policy.
        let policy = core.routes.match_request(req.method(), req.uri().path());
        if policy.auth == RouteAuth::None {
            core.admit_public(&mut req, &policy);
            let fut = self.inner.call(req);
            return ResponseFuture::inner(fut, metrics, RouteKind::Public);
        }

        // 5. Authenticate, synchronously when possible.
        let credential = core.authn.credential(req.headers());
        match core.authn.resolve_now(&credential) {
            Resolved::Done(Outcome { who: Some(who), .. }) => {
                if let Err(denied) = policy.admit(who.identity()) {
                    metrics.record_auth(AuthOutcome::Forbidden);
                    return ResponseFuture::ready(
                        forbidden_because(req.method(), req.headers(), &denied),
                        metrics,
                        RouteKind::Protected,
                    )
                    .noted(AuthOutcome::Forbidden, Some(who.identity()));
                }
                let outcome = who.outcome(true);
                metrics.record_auth(outcome);
                core.admit(&mut req, &who, &policy);
                let fut = self.inner.call(req);
                ResponseFuture::inner(fut, metrics, RouteKind::Protected)
                    .noted(outcome, Some(who.identity()))
            }
            Resolved::Done(outcome) => {
                if let Some(resp) = core.authn.refusal_response(&outcome) {
                    let fut = ResponseFuture::ready(resp, metrics, RouteKind::Protected);
                    return match outcome.bearer_refusal {
                        Some(BearerRefusal::InsufficientScope) => {
                            fut.noted(AuthOutcome::Forbidden, None)
                        }
                        _ => fut,
                    };
                }
                let (resp, noted) = core.unauthenticated(&req, outcome.invalid_token);
                ResponseFuture::ready(resp, metrics, RouteKind::Protected).noted(noted, None)
            }
            Resolved::Pending => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let core = self.core.clone();
                let fut = async move {
                    let outcome = core.authn.resolve(&credential, req.headers()).await;
                    if outcome.unavailable {
                        return Ok(store_unavailable(req.method(), req.headers()));
                    }
                    if let Some(resp) = core.authn.refusal_response(&outcome) {
                        return Ok(match outcome.bearer_refusal {
                            Some(BearerRefusal::InsufficientScope) => {
                                with_note(resp, AuthOutcome::Forbidden, None)
                            }
                            _ => resp,
                        });
                    }
                    let Some(who) = outcome.who else {
                        let (resp, noted) = core.unauthenticated(&req, outcome.invalid_token);
                        return Ok(with_note(resp, noted, None));
                    };
                    let policy = core.routes.match_request(req.method(), req.uri().path());
                    if let Err(denied) = policy.admit(who.identity()) {
                        core.metrics.record_auth(AuthOutcome::Forbidden);
                        let resp = forbidden_because(req.method(), req.headers(), &denied);
                        return Ok(with_note(resp, AuthOutcome::Forbidden, Some(&who)));
                    }
                    let noted = match who {
                        Authenticated::Session(_) => {
                            core.metrics.record_auth(AuthOutcome::Session);
                            AuthOutcome::Session
                        }
                        // The bearer step recorded whether it was cached.
                        Authenticated::Bearer(_) => AuthOutcome::BearerValidated,
                    };
                    let identity = who.identity().clone();
                    core.admit(&mut req, &who, &policy);
                    std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
                    let mut resp = inner.call(req).await?.map(crate::body::boxed);
                    resp.extensions_mut().insert(AccessNote {
                        route: RouteKind::Protected,
                        outcome: Some(noted),
                        identity: Some(identity),
                    });
                    // A refreshed or resealed cookie session travels back.
                    for c in outcome.set_cookies {
                        add_set_cookie(resp.headers_mut(), c);
                    }
                    Ok(resp)
                };
                ResponseFuture::boxed(Box::pin(fut), metrics, RouteKind::Protected)
            }
        }
    }
}

#[cfg(test)]
mod tests;
