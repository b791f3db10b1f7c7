//! The gateway's own endpoints under `server.prefix`: `/start`,
//! `/callback`, `/sign_out`, `/userinfo`, `/auth`.

use super::code_flow::sanitize_code;
use super::cookies::{add_set_cookie, request_cookie};
use super::error::{html_page, json_error, redirect, unauthorized};
use super::identity::IdentitySource;
use super::layer::Shared;
use super::login::{AuthorizationRequest, LoginError};
use super::return_to::safe_return_to;
use super::routes::normalize_path;
use super::service::{forbidden, Authenticated};
use super::session::{key_for_cookie, new_session_id, Session, SessionLookup};
use super::token::now_secs;
use crate::body::{BoxError, ResponseBody};
use crate::config::RouteAuth;
use crate::metrics::AuthOutcome;
use crate::secret::Secret;
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use std::sync::Arc;

/// Largest callback / logout form body accepted.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Dispatches a request under the prefix.
pub(crate) async fn handle<B>(shared: Arc<Shared>, req: Request<B>) -> Response<ResponseBody>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let rest = parts
        .uri
        .path()
        .get(shared.prefix.len()..)
        .unwrap_or("")
        .to_string();
    match rest.as_str() {
        "/start" => {
            only(&parts, &[Method::GET, Method::HEAD]).unwrap_or_else(|| start(&shared, &parts))
        }
        "/callback" => match only(&parts, &[Method::GET, Method::POST]) {
            Some(r) => r,
            None => callback(&shared, parts, body).await,
        },
        "/sign_out" => match only(&parts, &[Method::GET, Method::POST]) {
            Some(r) => r,
            None => sign_out(&shared, &parts).await,
        },
        "/userinfo" => match only(&parts, &[Method::GET, Method::HEAD]) {
            Some(r) => r,
            None => userinfo(&shared, &parts).await,
        },
        "/auth" => forward_auth(&shared, &parts).await,
        "/backchannel_logout" => match only(&parts, &[Method::POST]) {
            Some(r) => r,
            None => backchannel_logout(&shared, &parts, body).await,
        },
        _ => json_error(StatusCode::NOT_FOUND, "not_found"),
    }
}

/// 405 unless the method is one of `allowed`.
fn only(req: &Parts, allowed: &[Method]) -> Option<Response<ResponseBody>> {
    if allowed.contains(&req.method) {
        return None;
    }
    let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
        r.headers_mut().insert(ALLOW, v);
    }
    Some(r)
}

/// One value per parameter name; a repeated name is an error (RFC 6749 §3.1).
fn single_params(raw: &[u8], names: &[&str]) -> Result<Vec<Option<String>>, ()> {
    let mut out = vec![None; names.len()];
    for (k, v) in form_urlencoded::parse(raw) {
        if let Some(i) = names.iter().position(|n| *n == k) {
            if out[i].is_some() {
                return Err(());
            }
            out[i] = Some(v.into_owned());
        }
    }
    Ok(out)
}

fn query_param(req: &Parts, name: &str) -> Option<String> {
    let q = req.uri.query()?;
    single_params(q.as_bytes(), &[name]).ok()?.pop().flatten()
}

/// `/start?rd=PATH`: begin a login that returns to `rd` (local paths only).
fn start(shared: &Shared, req: &Parts) -> Response<ResponseBody> {
    let rd = query_param(req, "rd");
    let return_to = safe_return_to(rd.as_deref()).to_string();
    begin_login(shared, return_to, &req.headers)
}

/// 302 to the provider's authorization endpoint, with a new login cookie.
pub(crate) fn begin_login(
    shared: &Shared,
    return_to: String,
    headers: &HeaderMap,
) -> Response<ResponseBody> {
    let Some(meta) = shared.provider.metadata() else {
        return provider_unavailable();
    };
    let (attempt, set_cookies) = shared.login.begin(return_to, headers);
    let mut url = super::dialect::authorization_url(shared, &meta, &attempt).unwrap_or_else(|| {
        AuthorizationRequest {
            endpoint: &meta.authorization_endpoint,
            client_id: &shared.client_id,
            redirect_uri: &shared.redirect_uri,
            scopes: &shared.scopes,
            form_post: shared.form_post,
        }
        .url(&attempt)
    });
    // OpenID Connect Core §11: offline access needs prompt=consent.
    if shared.scopes.iter().any(|s| s == "offline_access") {
        url.push_str("&prompt=consent");
    }
    let mut resp = redirect(&url);
    for c in set_cookies {
        add_set_cookie(resp.headers_mut(), c);
    }
    resp
}

fn provider_unavailable() -> Response<ResponseBody> {
    html_page(
        StatusCode::BAD_GATEWAY,
        "Sign-in unavailable",
        "The identity provider cannot be reached right now. Please try again in a moment.",
    )
}

fn login_failed(shared: &Shared, status: StatusCode, message: &str) -> Response<ResponseBody> {
    shared.metrics.record_auth(AuthOutcome::LoginFailed);
    html_page(status, "Sign-in failed", message)
}

/// Reads a form body (POST callbacks), bounded.
async fn read_form<B>(parts: &Parts, body: B) -> Result<Bytes, StatusCode>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let is_form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let collected = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        Limited::new(body, MAX_FORM_BYTES).collect(),
    )
    .await
    .map_err(|_| StatusCode::REQUEST_TIMEOUT)?
    .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE)?;
    Ok(collected.to_bytes())
}

/// `/callback`: the authorization response, as query (GET) or form_post (POST).
async fn callback<B>(shared: &Shared, parts: Parts, body: B) -> Response<ResponseBody>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let raw = if parts.method == Method::POST {
        match read_form(&parts, body).await {
            Ok(x) => x,
            Err(status) => {
                return login_failed(shared, status, "The sign-in response could not be read.")
            }
        }
    } else {
        drop(body);
        Bytes::copy_from_slice(parts.uri.query().unwrap_or("").as_bytes())
    };
    let headers = parts.headers;
    let Ok(params) = single_params(&raw, &["code", "state", "iss", "error"]) else {
        return login_failed(
            shared,
            StatusCode::BAD_REQUEST,
            "The sign-in response repeats a parameter.",
        );
    };
    let [code, state, iss, error]: [Option<String>; 4] = match params.try_into() {
        Ok(a) => a,
        Err(_) => return login_failed(shared, StatusCode::BAD_REQUEST, "Bad sign-in response."),
    };

    if let Some(error) = error {
        let code = sanitize_code(&error);
        tracing::info!(error = %code, "provider returned an error to the callback");
        let status = if code == "access_denied" {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut resp = login_failed(
            shared,
            status,
            &format!("The identity provider did not sign you in ({code})."),
        );
        if let Some(state) = state.as_deref().filter(|s| s.len() <= 256) {
            add_set_cookie(resp.headers_mut(), shared.login.clear_for_state(state));
        }
        return resp;
    }

    let (attempt, clear_login) = match shared.login.finish(state.as_deref(), &headers) {
        Ok(x) => x,
        Err(e) => {
            tracing::info!(reason = %e, "callback refused");
            let status = match e {
                LoginError::MissingState | LoginError::UnknownState | LoginError::StateMismatch => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::BAD_REQUEST,
            };
            let mut resp = login_failed(
                shared,
                status,
                &format!("Sign-in could not be completed: {e}."),
            );
            if let Some(state) = state.as_deref().filter(|s| s.len() <= 256) {
                add_set_cookie(resp.headers_mut(), shared.login.clear_for_state(state));
            }
            return resp;
        }
    };
    let fail = |status: StatusCode, message: &str| {
        let mut resp = login_failed(shared, status, message);
        add_set_cookie(resp.headers_mut(), clear_login.clone());
        resp
    };

    let Some(meta) = shared.provider.metadata() else {
        let mut resp = provider_unavailable();
        add_set_cookie(resp.headers_mut(), clear_login.clone());
        return resp;
    };
    // RFC 9207: the response must come from our issuer.
    match iss.as_deref() {
        Some(iss) if iss != meta.issuer => {
            tracing::warn!("callback iss parameter does not match the issuer (mix-up?)");
            return fail(
                StatusCode::BAD_REQUEST,
                "The sign-in response came from an unexpected issuer.",
            );
        }
        None if meta.iss_parameter_supported => {
            return fail(
                StatusCode::BAD_REQUEST,
                "The sign-in response lacks its issuer.",
            );
        }
        _ => {}
    }
    let Some(code) = code.filter(|c| !c.is_empty() && c.len() <= 4096) else {
        return fail(StatusCode::BAD_REQUEST, "The sign-in response has no code.");
    };

    // Provider dialects (janrain-capture, oracle-idcs, oauth2) exchange the
    // code and establish the identity their own way.
    if let Some(done) = super::dialect::complete_login(shared, &meta, &attempt, &code).await {
        return match done {
            Ok(login) => {
                open_session(
                    shared,
                    &headers,
                    Established {
                        identity: login.identity,
                        id_token: login.id_token,
                        sid: login.sid,
                        tokens: None,
                    },
                    &attempt.return_to,
                    clear_login,
                )
                .await
            }
            Err(f) => fail(f.status, f.message),
        };
    }

    let tokens = match super::dialect::standard_exchange(shared, &meta, &attempt, &code).await {
        Ok(t) => t,
        Err(f) => return fail(f.status, f.message),
    };
    let Some(id_token) = tokens.id_token.as_deref() else {
        tracing::warn!("token response has no id_token");
        return fail(
            StatusCode::BAD_GATEWAY,
            "The identity provider sent no identity token.",
        );
    };
    let (mut identity, info) = match shared
        .verifier
        .verify_id_token(id_token, &attempt.nonce)
        .await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(reason = %e, "id token refused");
            return fail(
                StatusCode::UNAUTHORIZED,
                "The identity token was not valid.",
            );
        }
    };
    if shared.userinfo {
        let Some(url) = meta.userinfo_endpoint.as_ref() else {
            return fail(
                StatusCode::BAD_GATEWAY,
                "The identity provider has no userinfo endpoint.",
            );
        };
        match super::userinfo::fetch(
            shared.provider.http(),
            url.as_str(),
            tokens.access_token.expose(),
        )
        .await
        .and_then(|claims| super::userinfo::merge(&mut identity, &claims))
        {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "userinfo refused");
                let status = if matches!(e, super::userinfo::UserinfoError::SubjectMismatch) {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::BAD_GATEWAY
                };
                return fail(
                    status,
                    "The identity provider's user information was not usable.",
                );
            }
        }
    }

    open_session(
        shared,
        &headers,
        Established {
            identity,
            id_token: Some(id_token.to_string()),
            sid: info.sid,
            tokens: Some(&tokens),
        },
        &attempt.return_to,
        clear_login,
    )
    .await
}

/// What a completed login establishes.
struct Established<'a> {
    identity: super::identity::Identity,
    id_token: Option<String>,
    sid: Option<String>,
    /// Provider tokens to keep for refresh (OpenID Connect only).
    tokens: Option<&'a super::code_flow::TokenResponse>,
}

/// Stores a new session for the established identity and redirects to `return_to`.
async fn open_session(
    shared: &Shared,
    headers: &HeaderMap,
    login: Established<'_>,
    return_to: &str,
    clear_login: HeaderValue,
) -> Response<ResponseBody> {
    let Established {
        mut identity,
        id_token,
        sid,
        tokens,
    } = login;
    let fail = |status: StatusCode, message: &str| {
        let mut resp = login_failed(shared, status, message);
        add_set_cookie(resp.headers_mut(), clear_login.clone());
        resp
    };
    identity.source = IdentitySource::Session;
    let now = now_secs();
    let headers_for_upstream = shared.identity_headers.precompute(&identity);
    let mut session = Session::new(
        Arc::new(identity),
        headers_for_upstream,
        now,
        now + shared.lifetime.as_secs(),
    );
    session.id_token = id_token.map(Secret::new);
    session.sid = sid;
    // Refresh is kept for OpenID Connect providers (the dialects' sessions
    // last `session.lifetime`).
    if let Some(tokens) = tokens.filter(|t| t.refresh_token.is_some()) {
        session.set_tokens(
            tokens.access_token.clone(),
            tokens.refresh_token.clone(),
            tokens.expires_in,
            now,
            shared.refresh_margin,
        );
    }
    let session = Arc::new(session);
    // Never reuse an id the browser presented: drop the old session.
    if let Some(old) =
        request_cookie(headers, &shared.cookies.session_name).and_then(key_for_cookie)
    {
        let _ = shared.store.remove(&old).await;
    }
    let (id, key) = new_session_id();
    if let Err(e) = shared.store.save(key, session).await {
        tracing::error!(error = %e, "session store write failed");
        return fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "The session could not be stored.",
        );
    }
    shared.metrics.record_auth(AuthOutcome::LoginSucceeded);
    shared.metrics.set_sessions(shared.store.len());
    let mut resp = redirect(return_to);
    add_set_cookie(
        resp.headers_mut(),
        shared.cookies.set(
            &shared.cookies.session_name,
            &id,
            shared.lifetime.as_secs(),
            super::cookies::SameSite::Lax,
        ),
    );
    add_set_cookie(resp.headers_mut(), clear_login);
    resp
}

/// `/sign_out?rd=PATH`: ends the session here, then at the provider when it
/// has an end_session_endpoint.
async fn sign_out(shared: &Shared, req: &Parts) -> Response<ResponseBody> {
    let rd = safe_return_to(query_param(req, "rd").as_deref()).to_string();
    let mut id_token_hint = None;
    if let Some(key) =
        request_cookie(&req.headers, &shared.cookies.session_name).and_then(key_for_cookie)
    {
        let session = match shared.store.load(&key) {
            SessionLookup::Ready(s) => s,
            SessionLookup::Pending(f) => f.await.ok().flatten(),
        };
        id_token_hint = session.and_then(|s| s.id_token.clone());
        if let Err(e) = shared.store.remove(&key).await {
            tracing::error!(error = %e, "session store delete failed");
        }
        shared.metrics.set_sessions(shared.store.len());
    }
    let location = match shared
        .provider
        .metadata()
        .and_then(|m| m.end_session_endpoint.clone())
    {
        Some(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                if let Some(hint) = &id_token_hint {
                    q.append_pair("id_token_hint", hint.expose());
                }
                q.append_pair("client_id", &shared.client_id);
                q.append_pair(
                    "post_logout_redirect_uri",
                    &format!("{}{rd}", shared.public_url),
                );
            }
            url.to_string()
        }
        None => rd,
    };
    let mut resp = redirect(&location);
    add_set_cookie(
        resp.headers_mut(),
        shared.cookies.clear(&shared.cookies.session_name),
    );
    resp
}

/// `/userinfo`: the current identity as JSON.
async fn userinfo(shared: &Shared, req: &Parts) -> Response<ResponseBody> {
    let credential = shared.credential(&req.headers);
    let (who, invalid) = shared.resolve(&credential).await;
    let Some(who) = who else {
        return unauthorized(invalid);
    };
    let body = serde_json::to_vec(&**who.identity()).unwrap_or_default();
    let mut resp = Response::new(crate::body::full(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

/// `/auth`: forward-auth for nginx `auth_request` and Traefik `forwardAuth`.
/// 202 with identity headers, 401 without valid credentials, 403 when the
/// route policy for `X-Forwarded-Uri` / `X-Original-URI` refuses.
async fn forward_auth(shared: &Shared, req: &Parts) -> Response<ResponseBody> {
    let credential = shared.credential(&req.headers);
    let (who, invalid) = shared.resolve(&credential).await;
    let Some(who) = who else {
        shared.metrics.record_auth(AuthOutcome::Unauthenticated);
        return unauthorized(invalid);
    };
    let original = req
        .headers
        .get("x-forwarded-uri")
        .or_else(|| req.headers.get("x-original-uri"))
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(['?', '#']).next().unwrap_or(""));
    if let Some(path) = original {
        let Ok(path) = normalize_path(if path.is_empty() { "/" } else { path }) else {
            return json_error(StatusCode::BAD_REQUEST, "invalid_path");
        };
        let policy = shared.routes.match_path(&path);
        if policy.auth == RouteAuth::Required
            && !(policy.allowed_groups.is_empty() && policy.allowed_email_domains.is_empty())
            && !policy.allows(who.identity())
        {
            shared.metrics.record_auth(AuthOutcome::Forbidden);
            return forbidden(&req.method, &req.headers);
        }
    }
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    match &who {
        Authenticated::Session(s) => shared
            .identity_headers
            .apply_precomputed(&s.headers, resp.headers_mut()),
        Authenticated::Bearer(p) => shared
            .identity_headers
            .apply_precomputed(&p.headers, resp.headers_mut()),
    }
    resp
}

/// `/backchannel_logout`: OpenID Connect Back-Channel Logout 1.0 receiver.
/// A valid logout token ends the sessions of its `sid` (or of its `sub`
/// when it names no `sid`); anything else is 400 and ends nothing.
async fn backchannel_logout<B>(shared: &Shared, parts: &Parts, body: B) -> Response<ResponseBody>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let refuse = |why: &str| {
        tracing::info!(reason = why, "back-channel logout refused");
        let mut r = json_error(StatusCode::BAD_REQUEST, "invalid_request");
        r.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
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
    let claims = match shared.verifier.verify_logout_token(&token).await {
        Ok(c) => c,
        Err(e) => return refuse(&e.to_string()),
    };
    let jti_key: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(claims.jti.as_bytes()).into();
    if !shared.logout_jtis.entry(jti_key).or_insert(()).is_fresh() {
        return refuse("jti replayed");
    }
    let (sid, sub) = (claims.sid.as_deref(), claims.sub.as_deref());
    match shared
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
    shared.metrics.set_sessions(shared.store.len());
    let mut resp = Response::new(crate::body::empty());
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}
