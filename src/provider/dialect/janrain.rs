//! Akamai Identity Cloud / Janrain Capture (`kind = "janrain-capture"`).
//!
//! Not OIDC: no discovery, no ID token, no JWKS. Browser sign-in at
//! `{capture_domain}/oauth/signin`, code exchange at `/oauth/token`, the
//! profile from `POST /entity` with `Authorization: OAuth <token>`.
//!
//! - Token responses have no `token_type` and no `id_token`; success and
//!   failure are told apart by `stat` (`"ok"` / `"error"`), whatever the
//!   HTTP status. Errors carry Capture's numeric `code` (200 bad code, 402
//!   bad client, 414 expired token, 415 expired code, 420 redirect
//!   mismatch…), which is logged.
//! - Client authentication: `client_secret_basic`, `client_secret_post`, or
//!   `janrain-signed`: `Date: %Y-%m-%d %H:%M:%S` (UTC) and
//!   `Authorization: Signature <client_id>:<base64(HMAC-SHA1(secret, data))>`
//!   where `data = path \n date \n` followed by the sorted `k=v` form
//!   parameters (raw values), one per line, each ending in `\n`.
//! - `/entity`: `uuid` is the subject; on code 414 (access token expired)
//!   the token is refreshed once and the call retried.

use super::{scheme_header, AttemptParams, Dialect, DialectLogin, LoginContext, LoginFailure};
use crate::config::{ClientAuth, ProviderConfig};
use crate::identity::{Identity, IdentitySource};
use crate::provider::client::{sanitize_code, ClientCredentials, TokenResponse};
use crate::provider::http::{HttpError, HttpResponse, ProviderHttp};
use crate::provider::{ProviderMetadata, ProviderRules};
use crate::secret::Secret;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use http::{header, HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value};
use std::borrow::Cow;
use url::Url;

/// Janrain Capture: its own sign-in, token and profile calls.
#[derive(Debug)]
pub(crate) struct JanrainCapture;

impl Dialect for JanrainCapture {
    fn provider_rules(&self, p: &ProviderConfig) -> ProviderRules {
        ProviderRules {
            accepted_issuers: p
                .capture_domain
                .iter()
                .map(|u| u.as_str().trim_end_matches('/').to_string())
                .collect(),
            static_metadata: metadata(p),
            ..ProviderRules::discovered(p)
        }
    }

    fn redirect_uri<'a>(&self, base: &'a str, attempt: &AttemptParams<'_>) -> Cow<'a, str> {
        Cow::Owned(redirect_uri(base, attempt.state))
    }

    fn authorization_url(
        &self,
        ctx: &LoginContext<'_>,
        _meta: &ProviderMetadata,
        endpoint: &Url,
        attempt: &AttemptParams<'_>,
    ) -> String {
        authorization_url(
            endpoint,
            ctx.client_id,
            &redirect_uri(ctx.redirect_uri, attempt.state),
        )
    }

    fn complete_login<'a>(
        &'a self,
        ctx: &'a LoginContext<'a>,
        meta: &'a ProviderMetadata,
        attempt: AttemptParams<'a>,
        code: &'a str,
    ) -> BoxFuture<'a, Result<DialectLogin, LoginFailure>> {
        Box::pin(complete_login(ctx, meta, attempt, code))
    }
}

/// Capture's code for an expired access token at `/entity`.
pub(crate) const CODE_ACCESS_TOKEN_EXPIRED: i64 = 414;

/// Metadata from `capture_domain`.
fn metadata(p: &ProviderConfig) -> Option<ProviderMetadata> {
    let base = p.capture_domain.as_ref()?;
    let at = |path: &str| base.join(path).ok();
    Some(ProviderMetadata {
        issuer: base.as_str().trim_end_matches('/').to_string(),
        authorization_endpoint: Some(
            p.authorization_endpoint
                .clone()
                .or_else(|| at("/oauth/signin"))?,
        ),
        token_endpoint: Some(p.token_endpoint.clone().or_else(|| at("/oauth/token"))?),
        userinfo_endpoint: p.userinfo_endpoint.clone().or_else(|| at("/entity")),
        jwks_uri: None,
        end_session_endpoint: p.end_session_endpoint.clone(),
        introspection_endpoint: None,
        iss_parameter_supported: false,
        id_token_signing_algs: None,
    })
}

/// The redirect URI carrying our `state` (Capture has no `state` parameter
/// but returns to the redirect URI verbatim, `code` appended).
fn redirect_uri(base: &str, state: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let state: String = form_urlencoded::byte_serialize(state.as_bytes()).collect();
    format!("{base}{sep}state={state}")
}

/// `GET /oauth/signin?response_type=code&client_id&redirect_uri`.
fn authorization_url(endpoint: &Url, client_id: &str, redirect_uri: &str) -> String {
    let mut url = endpoint.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri);
    url.into()
}

/// Why a Capture call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CaptureError {
    /// The HTTP call failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Capture answered `stat: "error"`.
    #[error("capture error {code} ({error}), HTTP {status}")]
    Api {
        /// HTTP status (not meaningful for Capture, logged anyway).
        status: u16,
        /// Capture's numeric error code.
        code: i64,
        /// Capture's `error` string (sanitized).
        error: String,
    },
    /// Not a Capture response.
    #[error("capture response is invalid: {0}")]
    Malformed(&'static str),
}

impl CaptureError {
    fn code(&self) -> Option<i64> {
        match self {
            CaptureError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The `Date` value janrain-signed requests carry: UTC `%Y-%m-%d %H:%M:%S`.
pub(crate) fn capture_date(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The janrain-signed signature of a request to `path` with form `params`
/// at `date` (see the module docs).
pub(crate) fn janrain_signature(
    secret: &str,
    path: &str,
    date: &str,
    params: &[(&str, &str)],
) -> String {
    let mut data = format!("{path}\n{date}\n");
    let mut kv: Vec<String> = params
        .iter()
        .filter(|(k, _)| !matches!(*k, "client_id" | "client_secret" | "access_token"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    kv.sort();
    for line in kv {
        data.push_str(&line);
        data.push('\n');
    }
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(data.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A successful Capture token response.
pub(crate) struct CaptureTokens {
    pub(crate) tokens: TokenResponse,
    /// `transaction_state`, kept as sent.
    pub(crate) transaction_state: Option<Value>,
}

/// POSTs `params` to the token endpoint with the configured client
/// authentication and parses the reply leniently.
async fn token_request(
    http: &ProviderHttp,
    token_endpoint: &Url,
    credentials: &ClientCredentials,
    params: &[(&str, &str)],
    now: u64,
) -> Result<CaptureTokens, CaptureError> {
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            form.append_pair(k, v);
        }
        if credentials.method == ClientAuth::ClientSecretPost {
            form.append_pair("client_id", &credentials.client_id);
            form.append_pair("client_secret", credentials.client_secret.expose());
        }
        form.finish()
    };
    match credentials.method {
        ClientAuth::ClientSecretPost => {}
        ClientAuth::JanrainSigned => {
            let date = capture_date(now);
            let sig = janrain_signature(
                credentials.client_secret.expose(),
                token_endpoint.path(),
                &date,
                params,
            );
            let mut auth =
                HeaderValue::from_str(&format!("Signature {}:{sig}", credentials.client_id))
                    .map_err(|_| CaptureError::Malformed("client_id is not header-safe"))?;
            auth.set_sensitive(true);
            headers.push((header::AUTHORIZATION, auth));
            headers.push((
                header::DATE,
                HeaderValue::from_str(&date).map_err(|_| CaptureError::Malformed("date"))?,
            ));
        }
        _ => headers.push((header::AUTHORIZATION, credentials.basic_header())),
    }
    let resp = http
        .post_form(token_endpoint.as_str(), body, &headers)
        .await?;
    parse_token_response(&resp)
}

/// Branches on `stat`, never on the HTTP status.
fn parse_capture(resp: &HttpResponse) -> Result<Map<String, Value>, CaptureError> {
    let obj: Map<String, Value> = serde_json::from_slice(&resp.body)
        .map_err(|_| CaptureError::Malformed("not a JSON object"))?;
    match obj.get("stat").and_then(Value::as_str) {
        Some("ok") => Ok(obj),
        Some("error") => Err(CaptureError::Api {
            status: resp.status.as_u16(),
            code: obj.get("code").and_then(Value::as_i64).unwrap_or(0),
            error: obj
                .get("error")
                .and_then(Value::as_str)
                .map(sanitize_code)
                .unwrap_or_default(),
        }),
        _ if !resp.status.is_success() => Err(CaptureError::Api {
            status: resp.status.as_u16(),
            code: 0,
            error: String::new(),
        }),
        _ => Err(CaptureError::Malformed("stat missing")),
    }
}

/// Capture's token response: `access_token` is required; `token_type`,
/// `id_token` and `scope` are never required.
pub(crate) fn parse_token_response(resp: &HttpResponse) -> Result<CaptureTokens, CaptureError> {
    let mut obj = parse_capture(resp)?;
    let access_token = obj
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or(CaptureError::Malformed("access_token missing"))?
        .to_string();
    let expires_in = match obj.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let refresh_token = obj
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    Ok(CaptureTokens {
        tokens: TokenResponse {
            access_token: Secret::new(access_token),
            id_token: None,
            refresh_token,
            expires_in,
        },
        transaction_state: obj.remove("transaction_state"),
    })
}

/// `POST /entity` with `Authorization: OAuth <token>`: the `result` object.
async fn entity(
    http: &ProviderHttp,
    url: &Url,
    access_token: &str,
) -> Result<Map<String, Value>, CaptureError> {
    let auth = scheme_header("OAuth", access_token)
        .map_err(|_| CaptureError::Malformed("access token is not header-safe"))?;
    let resp = http
        .post_form(
            url.as_str(),
            String::new(),
            &[(header::AUTHORIZATION, auth)],
        )
        .await?;
    let mut obj = parse_capture(&resp)?;
    match obj.remove("result") {
        Some(Value::Object(result)) => Ok(result),
        _ => Err(CaptureError::Malformed("entity result missing")),
    }
}

/// The identity of an entity `result`: `uuid` → subject, `email`,
/// `displayName` → preferred username, given + family name → name.
pub(crate) fn identity_from_entity(
    result: &Map<String, Value>,
    issuer: &str,
    expires_at: Option<u64>,
) -> Option<Identity> {
    let s = |k: &str| super::non_empty_str(result, k);
    let subject = s("uuid")?;
    let name = match (s("givenName"), s("familyName")) {
        (Some(g), Some(f)) => Some(format!("{g} {f}")),
        (g, f) => g.or(f).or_else(|| s("displayName")),
    };
    Some(Identity {
        subject,
        email: s("email"),
        // Capture's emailVerified is the time of verification, or null.
        email_verified: result
            .get("emailVerified")
            .map(|v| !v.is_null() && v.as_str() != Some("")),
        preferred_username: s("displayName"),
        groups: Vec::new(),
        name,
        issuer: issuer.to_string(),
        expires_at,
        source: IdentitySource::Session,
        claims: Default::default(),
    })
}

fn log_failure(what: &str, e: &CaptureError) -> LoginFailure {
    match e {
        CaptureError::Api {
            status,
            code,
            error,
        } => {
            tracing::warn!(capture_code = code, error = %error, http_status = status, "capture {what} refused");
            LoginFailure::refused()
        }
        CaptureError::Http(e) => {
            tracing::warn!(error = %e, "capture {what} failed");
            LoginFailure::bad_gateway()
        }
        CaptureError::Malformed(m) => {
            tracing::warn!(reason = m, "capture {what} answer is invalid");
            LoginFailure::bad_gateway()
        }
    }
}

/// Exchange, then `/entity` (one refresh + retry on code 414).
async fn complete_login(
    ctx: &LoginContext<'_>,
    meta: &ProviderMetadata,
    attempt: AttemptParams<'_>,
    code: &str,
) -> Result<DialectLogin, LoginFailure> {
    let http = ctx.http;
    let redirect_uri = redirect_uri(ctx.redirect_uri, attempt.state);
    let Some(token_endpoint) = &meta.token_endpoint else {
        return Err(LoginFailure::bad_gateway());
    };
    let exchanged = token_request(
        http,
        token_endpoint,
        ctx.credentials,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect_uri),
        ],
        ctx.clock.now_secs(),
    )
    .await
    .map_err(|e| log_failure("code exchange", &e))?;
    if let Some(ts) = &exchanged.transaction_state {
        let recover = ts
            .pointer("/capture/password_recover")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        tracing::debug!(password_recover = recover, "capture transaction_state");
    }
    let mut tokens = exchanged.tokens;
    let Some(entity_url) = &meta.userinfo_endpoint else {
        return Err(LoginFailure::bad_gateway());
    };
    let result = match entity(http, entity_url, tokens.access_token.expose()).await {
        Ok(r) => r,
        Err(e) if e.code() == Some(CODE_ACCESS_TOKEN_EXPIRED) => {
            let Some(refresh) = tokens.refresh_token.clone() else {
                return Err(log_failure("entity", &e));
            };
            tracing::info!("capture access token expired at /entity; refreshing once");
            let refreshed = token_request(
                http,
                token_endpoint,
                ctx.credentials,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.expose()),
                ],
                ctx.clock.now_secs(),
            )
            .await
            .map_err(|e| log_failure("refresh", &e))?;
            tokens = refreshed.tokens;
            entity(http, entity_url, tokens.access_token.expose())
                .await
                .map_err(|e| log_failure("entity", &e))?
        }
        Err(e) => return Err(log_failure("entity", &e)),
    };
    let expires_at = tokens.expires_in.map(|s| ctx.clock.now_secs() + s);
    let identity = identity_from_entity(&result, &meta.issuer, expires_at).ok_or_else(|| {
        tracing::warn!("capture entity has no uuid");
        LoginFailure::new(
            StatusCode::BAD_GATEWAY,
            "The identity provider sent no user identifier.",
        )
    })?;
    Ok(DialectLogin {
        identity,
        id_token: None,
        sid: None,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn capture_date_is_not_rfc7231() {
        assert_eq!(capture_date(0), "1970-01-01 00:00:00");
        assert_eq!(capture_date(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(capture_date(1_700_000_000), "2023-11-14 22:13:20");
    }

    #[test]
    fn janrain_signature_matches_reference() {
        // data = "/oauth/token\n2023-11-14 22:13:20\ncode=abc\ngrant_type=authorization_code\n"
        let sig = janrain_signature(
            "secret",
            "/oauth/token",
            "2023-11-14 22:13:20",
            &[
                ("grant_type", "authorization_code"),
                ("code", "abc"),
                ("client_id", "ignored"),
            ],
        );
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"secret").unwrap();
        mac.update(b"/oauth/token\n2023-11-14 22:13:20\ncode=abc\ngrant_type=authorization_code\n");
        assert_eq!(sig, STANDARD.encode(mac.finalize().into_bytes()));
        // No params: only path and date.
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"s").unwrap();
        mac.update(b"/entity\nD\n");
        assert_eq!(
            janrain_signature("s", "/entity", "D", &[]),
            STANDARD.encode(mac.finalize().into_bytes())
        );
    }

    #[test]
    fn token_response_without_token_type_is_accepted() {
        let t = parse_token_response(&resp(
            200,
            r#"{"access_token":"a_valid_token","expires_in":3600,"refresh_token":"r1","stat":"ok",
                "transaction_state":{"capture":{"action":"token_url_2","session_expires":null}}}"#,
        ))
        .unwrap();
        assert_eq!(t.tokens.access_token.expose(), "a_valid_token");
        assert_eq!(t.tokens.expires_in, Some(3600));
        assert!(t.tokens.id_token.is_none());
        assert!(t.transaction_state.is_some());
    }

    #[test]
    fn stat_error_wins_over_http_status() {
        let body = r#"{"argument_name":"authorization_code","code":200,"error":"invalid_grant","error_description":"authorization_code is not valid","stat":"error","sub_error":"invalid_argument"}"#;
        for status in [200, 400, 401] {
            match parse_token_response(&resp(status, body)) {
                Err(CaptureError::Api { code, error, .. }) => {
                    assert_eq!(code, 200);
                    assert_eq!(error, "invalid_grant");
                }
                other => panic!("{:?}", other.err()),
            }
        }
        assert!(matches!(
            parse_token_response(&resp(200, r#"{"access_token":"x"}"#)),
            Err(CaptureError::Malformed(_))
        ));
        assert!(matches!(
            parse_token_response(&resp(200, r#"{"stat":"ok"}"#)),
            Err(CaptureError::Malformed(_))
        ));
    }

    #[test]
    fn entity_maps_uuid_email_and_names() {
        let r: Map<String, Value> = serde_json::from_str(
            r#"{"uuid":"u-1","id":7,"email":"a@example.com","emailVerified":"2011-11-05 19:00:08.339082 +0000",
                "displayName":"ally","givenName":"Alice","familyName":"Liddell"}"#,
        )
        .unwrap();
        let i = identity_from_entity(&r, "https://x", None).unwrap();
        assert_eq!(i.subject, "u-1");
        assert_eq!(i.email.as_deref(), Some("a@example.com"));
        assert_eq!(i.email_verified, Some(true));
        assert_eq!(i.preferred_username.as_deref(), Some("ally"));
        assert_eq!(i.name.as_deref(), Some("Alice Liddell"));
        let r: Map<String, Value> =
            serde_json::from_str(r#"{"id":7,"email":"a@example.com"}"#).unwrap();
        assert!(identity_from_entity(&r, "https://x", None).is_none());
    }

    #[test]
    fn redirect_uri_keeps_its_own_query() {
        assert_eq!(
            redirect_uri("https://a/oauth2/callback", "s1"),
            "https://a/oauth2/callback?state=s1"
        );
        assert_eq!(
            redirect_uri("https://a/cb?from_sso=1", "s1"),
            "https://a/cb?from_sso=1&state=s1"
        );
    }
}
