//! The browser login: `/start` and the redirect to the provider, the
//! `/callback` that completes it and opens a session, `/sign_out`, and
//! `/signed_out` where the provider sends the browser back ([`logout`]).
//!
//! The flow owns the per-attempt state ([`state::LoginManager`]), the
//! provider [`Dialect`](crate::provider::dialect::Dialect) chosen for this
//! gateway, and a [`SessionIssuer`] that stores the new session and sets its
//! cookie. The dialect sees only a [`LoginContext`], never this flow.

pub(crate) mod logout;
pub(crate) mod return_to;
pub(crate) mod state;

use crate::auth::cookies::add_set_cookie;
use crate::auth::params::{query_param, read_form, single_params};
use crate::auth::responses::{html_page, redirect};
use crate::auth::session_cookie::{Presented, SessionCookies};
use crate::body::{BoxError, ResponseBody};
use crate::clock::SharedClock;
use crate::identity::{Identity, IdentityHeaders, IdentitySource};
use crate::metrics::{AuthOutcome, Metrics};
use crate::provider::client::{sanitize_code, ClientCredentials, TokenResponse};
use crate::provider::dialect::{DynDialect, LoginContext};
use crate::provider::Provider;
use crate::secret::Secret;
use crate::session::{new_session_id, Session, SessionStore};
use crate::token::TokenVerifier;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use return_to::safe_return_to;
use state::LoginManager;
use std::sync::Arc;
use std::time::Duration;

/// The OAuth client this gateway is.
pub(crate) struct ClientSettings {
    pub(crate) client_id: String,
    /// `public_url` without a trailing slash.
    pub(crate) public_url: String,
    /// `public_url + prefix + /callback`.
    pub(crate) redirect_uri: String,
    /// The gateway's endpoint prefix (`/oauth2`).
    pub(crate) prefix: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) form_post: bool,
}

/// Stores the session a login establishes and sets its cookie.
pub(crate) struct SessionIssuer {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) cookies: SessionCookies,
    pub(crate) identity_headers: Arc<IdentityHeaders>,
    pub(crate) lifetime: Duration,
    pub(crate) refresh_margin: u64,
    /// Keep the access token of sessions that are not refreshed (a header
    /// sends it upstream).
    pub(crate) keep_access_token: bool,
    /// Keep the ID token even when logout does not need it (a header sends
    /// it upstream).
    pub(crate) keep_id_token: bool,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) clock: SharedClock,
}

/// What a completed login establishes.
struct Established<'a> {
    identity: Identity,
    id_token: Option<String>,
    sid: Option<String>,
    /// Provider tokens to keep for refresh, or for upstream headers.
    tokens: Option<&'a TokenResponse>,
    /// Whether the dialect refreshes sessions.
    refreshes: bool,
}

impl SessionIssuer {
    /// Stores a new session for the established identity and redirects to
    /// `return_to`; the id the browser presented, if any, is never reused.
    async fn open(
        &self,
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
            refreshes,
        } = login;
        identity.source = IdentitySource::Session;
        let now = self.clock.now_secs();
        let headers_for_upstream = self.identity_headers.precompute(&identity);
        let mut session = Session::new(
            Arc::new(identity),
            headers_for_upstream,
            now,
            now + self.lifetime.as_secs(),
        );
        session.id_token = id_token.map(Secret::new);
        session.sid = sid;
        if let Some(tokens) = tokens.filter(|t| refreshes && t.refresh_token.is_some()) {
            session.set_tokens(
                tokens.access_token.clone(),
                tokens.refresh_token.clone(),
                tokens.expires_in,
                now,
                self.refresh_margin,
            );
        }
        if session.refresh.is_none() && self.keep_access_token {
            session.access_token = tokens
                .filter(|t| !t.access_token.is_empty())
                .map(|t| Box::new(t.access_token.clone()));
        }
        let session = Arc::new(session);
        if let Some(old) = self.cookies.presented_key(headers) {
            let _ = self.store.remove(&old).await;
        }
        let (id, key) = new_session_id();
        let set_cookies = match self.cookies.issue(headers, &id, &key, &session, now) {
            Ok(set) => set,
            Err(e) => {
                tracing::error!(error = %e, "session cookie could not be written");
                let mut resp = login_failed(
                    &self.metrics,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The session is too large to be kept.",
                );
                add_set_cookie(resp.headers_mut(), clear_login);
                return resp;
            }
        };
        if let Err(e) = self.store.save(key, session).await {
            tracing::error!(error = %e, "session store write failed");
            let mut resp = login_failed(
                &self.metrics,
                StatusCode::SERVICE_UNAVAILABLE,
                "The session could not be stored.",
            );
            add_set_cookie(resp.headers_mut(), clear_login);
            return resp;
        }
        self.metrics.record_auth(AuthOutcome::LoginSucceeded);
        self.metrics.set_sessions(self.store.len());
        let mut resp = redirect(return_to);
        for c in set_cookies {
            add_set_cookie(resp.headers_mut(), c);
        }
        add_set_cookie(resp.headers_mut(), clear_login);
        resp
    }
}

/// Start, callback and sign-out of the authorization-code flow.
pub(crate) struct LoginFlow {
    pub(crate) dialect: Box<dyn DynDialect>,
    pub(crate) provider: Arc<Provider>,
    pub(crate) verifier: Arc<TokenVerifier>,
    pub(crate) credentials: ClientCredentials,
    pub(crate) client: ClientSettings,
    pub(crate) attempts: LoginManager,
    pub(crate) logout_states: logout::LogoutStates,
    pub(crate) sessions: SessionIssuer,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) clock: SharedClock,
}

impl LoginFlow {
    fn context(&self) -> LoginContext<'_> {
        LoginContext {
            http: self.provider.http(),
            verifier: &self.verifier,
            credentials: &self.credentials,
            client_id: &self.client.client_id,
            redirect_uri: &self.client.redirect_uri,
            scopes: &self.client.scopes,
            form_post: self.client.form_post,
            clock: &*self.clock,
        }
    }

    /// `/start?rd=PATH`: begin a login that returns to `rd` (local paths only).
    pub(crate) fn start(&self, req: &Parts) -> Response<ResponseBody> {
        let rd = query_param(req, "rd");
        let return_to = safe_return_to(rd.as_deref()).to_string();
        self.begin(return_to, &req.headers)
    }

    /// 302 to the provider's authorization endpoint, with a new login cookie.
    pub(crate) fn begin(&self, return_to: String, headers: &HeaderMap) -> Response<ResponseBody> {
        let Some(meta) = self.provider.metadata() else {
            return provider_unavailable();
        };
        let Some(endpoint) = meta.authorization_endpoint.as_ref() else {
            return crate::auth::responses::no_browser_sign_in(headers);
        };
        let (attempt, set_cookies) = self.attempts.begin(return_to, headers);
        let mut url =
            self.dialect
                .authorization_url(&self.context(), &meta, endpoint, &attempt.params());
        // OpenID Connect Core §11: offline access needs prompt=consent.
        if self.client.scopes.iter().any(|s| s == "offline_access") {
            url.push_str("&prompt=consent");
        }
        let mut resp = redirect(&url);
        for c in set_cookies {
            add_set_cookie(resp.headers_mut(), c);
        }
        resp
    }

    fn failed(&self, status: StatusCode, message: &str) -> Response<ResponseBody> {
        login_failed(&self.metrics, status, message)
    }

    /// A failure page that also deletes the attempt's cookie for `state`.
    fn failed_for_state(
        &self,
        status: StatusCode,
        message: &str,
        state: Option<&str>,
    ) -> Response<ResponseBody> {
        let mut resp = self.failed(status, message);
        if let Some(state) = state.filter(|s| s.len() <= 256) {
            add_set_cookie(resp.headers_mut(), self.attempts.clear_for_state(state));
        }
        resp
    }

    /// `/callback`: the authorization response, as query (GET) or form_post (POST).
    pub(crate) async fn callback<B>(&self, parts: Parts, body: B) -> Response<ResponseBody>
    where
        B: http_body::Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let raw = if parts.method == Method::POST {
            match read_form(&parts, body).await {
                Ok(x) => x,
                Err(status) => {
                    return self.failed(status, "The sign-in response could not be read.")
                }
            }
        } else {
            drop(body);
            Bytes::copy_from_slice(parts.uri.query().unwrap_or("").as_bytes())
        };
        let headers = parts.headers;
        let Ok(params) = single_params(&raw, &["code", "state", "iss", "error"]) else {
            return self.failed(
                StatusCode::BAD_REQUEST,
                "The sign-in response repeats a parameter.",
            );
        };
        let [code, state, iss, error]: [Option<String>; 4] = match params.try_into() {
            Ok(a) => a,
            Err(_) => return self.failed(StatusCode::BAD_REQUEST, "Bad sign-in response."),
        };

        if let Some(error) = error {
            let code = sanitize_code(&error);
            tracing::info!(error = %code, "provider returned an error to the callback");
            let status = if code == "access_denied" {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_REQUEST
            };
            return self.failed_for_state(
                status,
                &format!("The identity provider did not sign you in ({code})."),
                state.as_deref(),
            );
        }

        let (attempt, clear_login) = match self.attempts.finish(state.as_deref(), &headers) {
            Ok(x) => x,
            Err(e) => {
                tracing::info!(reason = %e, "callback refused");
                return self.failed_for_state(
                    StatusCode::BAD_REQUEST,
                    &format!("Sign-in could not be completed: {e}."),
                    state.as_deref(),
                );
            }
        };
        let fail = |status: StatusCode, message: &str| {
            let mut resp = self.failed(status, message);
            add_set_cookie(resp.headers_mut(), clear_login.clone());
            resp
        };

        let Some(meta) = self.provider.metadata() else {
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

        let ctx = self.context();
        let login = match self
            .dialect
            .complete_login(&ctx, &meta, attempt.params(), &code)
            .await
        {
            Ok(login) => login,
            Err(f) => return fail(f.status, f.message),
        };
        let keep_tokens = self.dialect.refreshes_sessions();
        self.sessions
            .open(
                &headers,
                Established {
                    identity: login.identity,
                    // The ID token is kept for RP-initiated logout (as
                    // `id_token_hint`) or for an upstream header; otherwise
                    // it would be ~1 KB of dead weight in every session.
                    id_token: login.id_token.filter(|_| {
                        self.sessions.keep_id_token
                            || self
                                .provider
                                .metadata()
                                .is_some_and(|m| m.end_session_endpoint.is_some())
                    }),
                    sid: login.sid,
                    tokens: (keep_tokens || self.sessions.keep_access_token)
                        .then_some(&login.tokens),
                    refreshes: keep_tokens,
                },
                &attempt.return_to,
                clear_login,
            )
            .await
    }

    /// `/sign_out?rd=PATH`: ends the session here, then at the provider when
    /// it has an end_session_endpoint. The provider is always given the
    /// same `post_logout_redirect_uri`, `public_url + prefix + /signed_out`;
    /// `rd` travels in the sealed, single-use `state` ([`logout`]). Without
    /// an end_session_endpoint the browser goes to `rd` when one was given,
    /// else to the signed-out page.
    pub(crate) async fn sign_out(&self, req: &Parts) -> Response<ResponseBody> {
        let sessions = &self.sessions;
        let rd_param = query_param(req, "rd");
        let rd = safe_return_to(rd_param.as_deref()).to_string();
        let mut id_token_hint = None;
        let presented = match sessions.cookies.read(&req.headers) {
            Presented::Reference(key) => Some((key, None)),
            Presented::Sealed(o) => Some((o.key, Some(o.session))),
            Presented::None => None,
        };
        if let Some((key, opened)) = presented {
            let session = match opened {
                Some(s) => Some(s),
                None => match sessions.store.load(&key) {
                    crate::session::SessionLookup::Ready(s) => s,
                    crate::session::SessionLookup::Pending(f) => f.await.ok().flatten(),
                },
            };
            id_token_hint = session.and_then(|s| s.id_token.clone());
            if let Err(e) = sessions.store.remove(&key).await {
                tracing::error!(error = %e, "session store delete failed");
            }
            self.metrics.set_sessions(sessions.store.len());
        }
        let location = match self
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
                    q.append_pair("client_id", &self.client.client_id);
                    q.append_pair("post_logout_redirect_uri", &self.signed_out_uri());
                    q.append_pair("state", &self.logout_states.seal(&rd));
                }
                url.to_string()
            }
            None if rd_param.is_some() => rd,
            None => format!("{}/signed_out", self.client.prefix),
        };
        let mut resp = redirect(&location);
        for c in sessions.cookies.clear(&req.headers) {
            add_set_cookie(resp.headers_mut(), c);
        }
        resp
    }

    /// The one `post_logout_redirect_uri`: `public_url + prefix + /signed_out`.
    pub(crate) fn signed_out_uri(&self) -> String {
        format!(
            "{}{}/signed_out",
            self.client.public_url, self.client.prefix
        )
    }

    /// `/signed_out?state=…`: where the provider sends the browser after
    /// logout; on to the `rd` sealed in `state`, or the signed-out page.
    pub(crate) fn signed_out(&self, req: &Parts) -> Response<ResponseBody> {
        let state = query_param(req, "state");
        self.logout_states
            .signed_out(state.as_deref(), &format!("{}/start", self.client.prefix))
    }
}

fn provider_unavailable() -> Response<ResponseBody> {
    html_page(
        StatusCode::BAD_GATEWAY,
        "Sign-in unavailable",
        "The identity provider cannot be reached right now. Please try again in a moment.",
    )
}

fn login_failed(metrics: &Metrics, status: StatusCode, message: &str) -> Response<ResponseBody> {
    metrics.record_auth(AuthOutcome::LoginFailed);
    html_page(status, "Sign-in failed", message)
}
