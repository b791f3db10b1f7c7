//! The gateway's own endpoints under `server.prefix`: `/start`,
//! `/callback`, `/sign_out`, `/signed_out` (the [`LoginFlow`](super::login::LoginFlow)),
//! `/userinfo`, `/auth` (forward-auth), `/backchannel_logout` and
//! `/jwks.json` (the key of the identity assertion, when one is sent).

use super::authn::Authenticator;
use super::cookies::add_set_cookie;
use super::layer::Core;
use super::params::{read_form, single_params};
use super::policy::{normalize_path, RouteTable};
use super::responses::{
    error_for, forbidden_because, json_error, store_unavailable, unauthorized, with_request_id,
};
use super::upstream::UpstreamCredentials;
use crate::body::{BoxError, ResponseBody};
use crate::identity::IdentityHeaders;
use crate::metrics::{AuthOutcome, Metrics};
use crate::session::SessionStore;
use crate::token::TokenVerifier;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;

/// Dispatches a request under the prefix; a page made without the request
/// id (sign-in failed, signed out) gets it on the way out.
pub(crate) async fn handle<B>(core: Arc<Core>, req: Request<B>) -> Response<ResponseBody>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let request_id = req.headers().get(&crate::telemetry::REQUEST_ID).cloned();
    let resp = dispatch(core, req).await;
    with_request_id(resp, request_id.as_ref())
}

async fn dispatch<B>(core: Arc<Core>, req: Request<B>) -> Response<ResponseBody>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let rest = parts.uri.path().get(core.prefix.len()..).unwrap_or("");
    match rest {
        "/start" => {
            only(&parts, &[Method::GET, Method::HEAD]).unwrap_or_else(|| core.login.start(&parts))
        }
        "/callback" => match only(&parts, &[Method::GET, Method::POST]) {
            Some(r) => r,
            None => core.login.callback(parts, body).await,
        },
        "/sign_out" => match only(&parts, &[Method::GET, Method::POST]) {
            Some(r) => r,
            None => core.login.sign_out(&parts).await,
        },
        "/signed_out" => only(&parts, &[Method::GET, Method::HEAD])
            .unwrap_or_else(|| core.login.signed_out(&parts)),
        "/userinfo" => match only(&parts, &[Method::GET, Method::HEAD]) {
            Some(r) => r,
            None => userinfo(&core.authn, &parts).await,
        },
        "/auth" => {
            ForwardAuth {
                authn: &core.authn,
                routes: &core.routes,
                identity_headers: &core.identity_headers,
                upstream: core.upstream.as_deref(),
                metrics: &core.metrics,
            }
            .check(&parts)
            .await
        }
        "/jwks.json" => match only(&parts, &[Method::GET, Method::HEAD]) {
            Some(r) => r,
            None => jwks(core.upstream.as_deref()),
        },
        "/backchannel_logout" => match only(&parts, &[Method::POST]) {
            Some(r) => r,
            None => core.logout.receive(&parts, body).await,
        },
        _ => not_found(&parts),
    }
}

/// 404 under the prefix: a page for a browser, JSON for an API client.
fn not_found(req: &Parts) -> Response<ResponseBody> {
    error_for(
        &req.method,
        &req.headers,
        StatusCode::NOT_FOUND,
        "not_found",
        "Page not found",
        "The sign-in service has no page at this address.",
    )
}

/// 405 unless the method is one of `allowed`.
fn only(req: &Parts, allowed: &[Method]) -> Option<Response<ResponseBody>> {
    if allowed.contains(&req.method) {
        return None;
    }
    let mut r = error_for(
        &req.method,
        &req.headers,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Not allowed",
        "This address of the sign-in service cannot be used that way.",
    );
    let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
        r.headers_mut().insert(ALLOW, v);
    }
    Some(r)
}

fn no_store(resp: &mut Response<ResponseBody>) {
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `/userinfo`: the current identity as JSON.
async fn userinfo(authn: &Authenticator, req: &Parts) -> Response<ResponseBody> {
    let outcome = authn
        .resolve(&authn.credential(&req.headers), &req.headers)
        .await;
    if outcome.unavailable {
        return store_unavailable(&req.method, &req.headers);
    }
    if let Some(resp) = authn.refusal_response(&outcome) {
        return resp;
    }
    let Some(who) = outcome.who else {
        return unauthorized(outcome.invalid_token);
    };
    let body = serde_json::to_vec(&**who.identity()).unwrap_or_default();
    let mut resp = Response::new(crate::body::full(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    no_store(&mut resp);
    for c in outcome.set_cookies {
        add_set_cookie(resp.headers_mut(), c);
    }
    resp
}

/// `/jwks.json`: the public key of the identity assertion; 404 when no
/// assertion is configured.
fn jwks(upstream: Option<&UpstreamCredentials>) -> Response<ResponseBody> {
    let Some(assertion) = upstream.and_then(|u| u.assertion.as_ref()) else {
        return json_error(StatusCode::NOT_FOUND, "not_found");
    };
    let mut resp = Response::new(crate::body::full(assertion.signer.jwks()));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    resp.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// `/auth`: forward-auth for nginx `auth_request` and Traefik `forwardAuth`.
struct ForwardAuth<'a> {
    authn: &'a Authenticator,
    routes: &'a RouteTable,
    identity_headers: &'a IdentityHeaders,
    upstream: Option<&'a UpstreamCredentials>,
    metrics: &'a Metrics,
}

impl ForwardAuth<'_> {
    /// 202 with identity headers (and the token and assertion headers when
    /// configured), 401 without valid credentials, 403 when the route
    /// policy for `X-Forwarded-Uri` / `X-Original-URI` refuses. The method
    /// routes are matched with is `X-Forwarded-Method` /
    /// `X-Original-Method`, else this request's.
    async fn check(&self, req: &Parts) -> Response<ResponseBody> {
        let outcome = self
            .authn
            .resolve(&self.authn.credential(&req.headers), &req.headers)
            .await;
        if outcome.unavailable {
            return json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
        }
        if let Some(resp) = self.authn.refusal_response(&outcome) {
            return resp;
        }
        let Some(who) = outcome.who else {
            self.metrics.record_auth(AuthOutcome::Unauthenticated);
            return unauthorized(outcome.invalid_token);
        };
        let original = req
            .headers
            .get("x-forwarded-uri")
            .or_else(|| req.headers.get("x-original-uri"))
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(['?', '#']).next().unwrap_or(""));
        let method = req
            .headers
            .get("x-forwarded-method")
            .or_else(|| req.headers.get("x-original-method"))
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
            .unwrap_or_else(|| req.method.clone());
        let mut route = None;
        if let Some(path) = original {
            let Ok(path) = normalize_path(if path.is_empty() { "/" } else { path }) else {
                return json_error(StatusCode::BAD_REQUEST, "invalid_path");
            };
            let policy = self.routes.match_request(&method, &path);
            if let Err(denied) = policy.admit(who.identity()) {
                self.metrics.record_auth(AuthOutcome::Forbidden);
                return forbidden_because(&req.method, &req.headers, &denied);
            }
            route = policy.index;
        }
        let mut resp = Response::new(crate::body::empty());
        *resp.status_mut() = StatusCode::ACCEPTED;
        self.identity_headers
            .apply_precomputed(who.headers(), resp.headers_mut());
        for c in outcome.set_cookies {
            add_set_cookie(resp.headers_mut(), c);
        }
        if let Some(upstream) = self.upstream {
            // The tokens come from the request's credential: copy its
            // Authorization so a bearer token can be echoed.
            if let Some(auth) = req.headers.get(http::header::AUTHORIZATION) {
                resp.headers_mut()
                    .insert(http::header::AUTHORIZATION, auth.clone());
            }
            upstream.apply(resp.headers_mut(), &who, route);
            if upstream.authorization == super::upstream::AuthorizationMode::None {
                resp.headers_mut().remove(http::header::AUTHORIZATION);
            }
        }
        resp
    }
}

/// The OpenID Connect Back-Channel Logout 1.0 receiver.
pub(crate) struct BackchannelLogout {
    pub(crate) verifier: Arc<TokenVerifier>,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) metrics: Arc<Metrics>,
    /// `jti`s seen within the logout token window (single use).
    pub(crate) seen_jtis: moka::sync::Cache<[u8; 32], ()>,
}

impl BackchannelLogout {
    /// Longest time a `jti` is remembered: beyond the `iat` window.
    pub(crate) const JTI_MEMORY: Duration = Duration::from_secs(20 * 60);

    pub(crate) fn new(
        verifier: Arc<TokenVerifier>,
        store: Arc<dyn SessionStore>,
        metrics: Arc<Metrics>,
    ) -> Self {
        BackchannelLogout {
            verifier,
            store,
            metrics,
            seen_jtis: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Self::JTI_MEMORY)
                .build(),
        }
    }

    /// A valid logout token ends the sessions of its `sid` (or of its `sub`
    /// when it names no `sid`); anything else is 400 and ends nothing.
    async fn receive<B>(&self, parts: &Parts, body: B) -> Response<ResponseBody>
    where
        B: http_body::Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let refuse = |why: &str| {
            tracing::info!(reason = why, "back-channel logout refused");
            let mut r = json_error(StatusCode::BAD_REQUEST, "invalid_request");
            no_store(&mut r);
            r
        };
        let raw = match read_form(parts, body).await {
            Ok(raw) => raw,
            Err(_) => return refuse("body is not a bounded form"),
        };
        let Ok(params) = single_params(&raw, &["logout_token"]) else {
            return refuse("logout_token repeated");
        };
        let Some(token) = params.into_iter().next().flatten() else {
            return refuse("logout_token missing");
        };
        let claims = match self.verifier.verify_logout_token(&token).await {
            Ok(c) => c,
            Err(e) => return refuse(&e.to_string()),
        };
        let jti_key: [u8; 32] =
            <sha2::Sha256 as sha2::Digest>::digest(claims.jti.as_bytes()).into();
        if !self.seen_jtis.entry(jti_key).or_insert(()).is_fresh() {
            return refuse("jti replayed");
        }
        let (sid, sub) = (claims.sid.as_deref(), claims.sub.as_deref());
        match self
            .store
            .remove_where(sid, if sid.is_some() { None } else { sub })
            .await
        {
            Ok(n) => tracing::info!(sessions = n, "back-channel logout"),
            Err(e) => {
                tracing::error!(error = %e, "session store delete failed");
                return json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
            }
        }
        self.metrics.set_sessions(self.store.len());
        let mut resp = Response::new(crate::body::empty());
        no_store(&mut resp);
        resp
    }
}
