//! Provider dialects: what differs between `provider.kind`s.
//!
//! The `oidc` kind is the core code path (discovery, ID token); this module
//! is consulted at the few points where the other kinds differ:
//!
//! | | `oracle-idcs` | `janrain-capture` | `oauth2` |
//! |---|---|---|---|
//! | metadata | discovery at the tenant URL; discovery `issuer` = `expected_issuer` | fixed paths under `capture_domain` | the configured endpoints |
//! | authorization request | OIDC (state, nonce, PKCE) | `/oauth/signin`: `response_type`, `client_id`, `redirect_uri` only | `state`, PKCE, scopes verbatim; `nonce` when `jwks_uri` is set |
//! | client authentication | `client_auth` (also `private_key_jwt`) | Basic, body, or `janrain-signed` (HMAC-SHA1) | `client_auth` (Basic by default, also `private_key_jwt`) |
//! | token response | strict (RFC 6749) | lenient: no `token_type`/`id_token`; `stat` decides | strict |
//! | identity | ID token, `user_id` as subject, userinfo merged (`""` = absent) | `POST /entity`: `uuid` → subject; one refresh + retry on code 414 | userinfo (`Bearer`); ID token checked when `jwks_uri` is set |
//!
//! # Janrain Capture and CSRF
//!
//! Capture's `/oauth/signin` has no `state` parameter, but it returns to the
//! `redirect_uri` verbatim with `code` appended to its query. The gateway
//! therefore carries the attempt's `state` *inside* the redirect URI
//! (`…/oauth2/callback?state=<state>`): the callback reads `state` and
//! `code` from its query as for any provider, finds the attempt's encrypted
//! login cookie by the `state`'s hash and compares the `state` in constant
//! time, so CSRF protection is exactly that of the OIDC path (an attacker
//! cannot plant a code: the victim's browser has no login cookie for the
//! attacker's `state`). At `/oauth/token` the identical redirect URI,
//! query included, is rebuilt from the attempt and sent again, as Capture
//! requires.

pub mod idcs;
pub mod janrain;
pub mod oauth2;

use super::code_flow::{exchange_code, ClientCredentials, ExchangeError, TokenResponse};
use super::identity::Identity;
use super::layer::Shared;
use super::login::LoginAttempt;
use super::provider::ProviderMetadata;
use crate::config::{ProviderConfig, ProviderKind};
use http::StatusCode;
use std::borrow::Cow;
use url::Url;

/// `expected_issuer` of `oracle-idcs` when none is configured.
pub const DEFAULT_IDCS_ISSUER: &str = "https://identity.oraclecloud.com/";

/// The standard code exchange (RFC 6749 §4.1.3 with PKCE, strict response).
pub(crate) async fn standard_exchange(
    shared: &Shared,
    meta: &ProviderMetadata,
    attempt: &LoginAttempt,
    code: &str,
) -> Result<TokenResponse, LoginFailure> {
    exchange_code(
        shared.provider.http(),
        meta.token_endpoint.as_str(),
        &shared.credentials,
        code,
        &shared.redirect_uri,
        &attempt.code_verifier,
    )
    .await
    .map_err(|e| LoginFailure::from_exchange(&e))
}

/// What a completed login yields, whatever the dialect.
pub(crate) struct DialectLogin {
    pub(crate) identity: Identity,
    /// The ID token, when one was validated (for `id_token_hint`).
    pub(crate) id_token: Option<String>,
    /// The provider session id (`sid`), when known.
    pub(crate) sid: Option<String>,
    /// The token response (access and refresh tokens).
    #[allow(dead_code)]
    pub(crate) tokens: TokenResponse,
}

/// A login that failed: status and a message for the error page (the
/// details are logged where they happen).
#[derive(Debug)]
pub(crate) struct LoginFailure {
    pub(crate) status: StatusCode,
    pub(crate) message: &'static str,
}

impl LoginFailure {
    pub(crate) fn new(status: StatusCode, message: &'static str) -> Self {
        LoginFailure { status, message }
    }

    pub(crate) fn refused() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "The identity provider refused to complete the sign-in.",
        )
    }

    /// The failure for a code exchange that did not succeed: a 4xx OAuth
    /// error is the provider refusing (400), anything else is a bad gateway.
    pub(crate) fn from_exchange(e: &ExchangeError) -> Self {
        tracing::warn!(error = %e, "code exchange failed");
        match e {
            ExchangeError::Refused { status, .. } if *status < 500 => Self::refused(),
            _ => Self::bad_gateway(),
        }
    }

    pub(crate) fn bad_gateway() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "The identity provider did not answer properly.",
        )
    }

    pub(crate) fn bad_id_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "The identity token was not valid.",
        )
    }
}

/// The issuers tokens may carry for this provider.
pub(crate) fn accepted_issuers(p: &ProviderConfig) -> Vec<String> {
    match p.kind {
        ProviderKind::OracleIdcs => {
            let expected = p.expected_issuer.as_deref().unwrap_or(DEFAULT_IDCS_ISSUER);
            let bare = expected.trim_end_matches('/');
            vec![format!("{bare}/"), bare.to_string()]
        }
        ProviderKind::JanrainCapture => p
            .capture_domain
            .iter()
            .map(|u| u.as_str().trim_end_matches('/').to_string())
            .collect(),
        ProviderKind::Oidc | ProviderKind::Oauth2 => p.issuer.iter().cloned().collect(),
    }
}

/// Audiences besides the client id an ID token may carry without `azp`.
pub(crate) fn trusted_audiences(p: &ProviderConfig) -> Vec<String> {
    match p.kind {
        ProviderKind::OracleIdcs => accepted_issuers(p),
        _ => Vec::new(),
    }
}

/// Metadata for providers without discovery; `None` means discover.
pub(crate) fn static_metadata(p: &ProviderConfig) -> Option<ProviderMetadata> {
    match p.kind {
        ProviderKind::JanrainCapture => janrain::metadata(p),
        ProviderKind::Oauth2 => oauth2::metadata(p),
        ProviderKind::Oidc | ProviderKind::OracleIdcs => None,
    }
}

/// Credentials to fetch the JWKS with, when `jwks_auth = "client_credentials"`.
pub(crate) fn jwks_auth_credentials(p: &ProviderConfig) -> Option<ClientCredentials> {
    if p.jwks_auth.as_deref() != Some("client_credentials") {
        return None;
    }
    match ClientCredentials::from_config(p) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = %e, "jwks_auth: client credentials unusable");
            None
        }
    }
}

/// The redirect URI sent for `attempt` (at authorization and, identically,
/// at the token endpoint).
pub(crate) fn redirect_uri<'a>(
    kind: ProviderKind,
    base: &'a str,
    attempt: &LoginAttempt,
) -> Cow<'a, str> {
    match kind {
        ProviderKind::JanrainCapture => Cow::Owned(janrain::redirect_uri(base, &attempt.state)),
        _ => Cow::Borrowed(base),
    }
}

/// The authorization URL for dialects that differ from OIDC; `None` for
/// `oidc` and `oracle-idcs`, which use the standard request.
pub(crate) fn authorization_url(
    shared: &Shared,
    meta: &ProviderMetadata,
    attempt: &LoginAttempt,
) -> Option<String> {
    match shared.kind {
        ProviderKind::JanrainCapture => Some(janrain::authorization_url(
            &meta.authorization_endpoint,
            &shared.client_id,
            &redirect_uri(shared.kind, &shared.redirect_uri, attempt),
        )),
        ProviderKind::Oauth2 => Some(oauth2::authorization_url(shared, meta, attempt)),
        ProviderKind::Oidc | ProviderKind::OracleIdcs => None,
    }
}

/// Exchanges `code` and establishes the identity, for every kind but
/// `oidc` (`None`: the core path handles it).
pub(crate) async fn complete_login(
    shared: &Shared,
    meta: &ProviderMetadata,
    attempt: &LoginAttempt,
    code: &str,
) -> Option<Result<DialectLogin, LoginFailure>> {
    Some(match shared.kind {
        ProviderKind::Oidc => return None,
        ProviderKind::JanrainCapture => janrain::complete_login(shared, meta, attempt, code).await,
        ProviderKind::OracleIdcs => idcs::complete_login(shared, meta, attempt, code).await,
        ProviderKind::Oauth2 => oauth2::complete_login(shared, meta, attempt, code).await,
    })
}

/// A JSON object's string member, with `""` (and whitespace-only) as absent.
pub(crate) fn non_empty_str(
    obj: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<String> {
    obj.get(key)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// The payload of a compact JWS whose signature was already verified.
pub(crate) fn verified_payload(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Fetches a userinfo-style JSON object with `Authorization: <scheme> <token>`.
pub(crate) async fn fetch_json_object(
    http: &super::http_client::ProviderHttp,
    url: &Url,
    authorization: http::HeaderValue,
) -> Result<serde_json::Map<String, serde_json::Value>, LoginFailure> {
    super::userinfo::fetch_with(http, url.as_str(), authorization)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "userinfo request failed");
            LoginFailure::bad_gateway()
        })
}

/// `Bearer <token>` as a sensitive header value.
pub(crate) fn bearer(token: &str) -> Result<http::HeaderValue, LoginFailure> {
    scheme_header("Bearer", token)
}

/// `<scheme> <token>` as a sensitive header value.
pub(crate) fn scheme_header(scheme: &str, token: &str) -> Result<http::HeaderValue, LoginFailure> {
    let mut v = http::HeaderValue::from_str(&format!("{scheme} {token}")).map_err(|_| {
        tracing::warn!("access token is not a valid header value");
        LoginFailure::bad_gateway()
    })?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idcs_issuers_are_trailing_slash_tolerant() {
        let mut p: ProviderConfig = toml::from_str(
            r#"kind = "oracle-idcs"
               issuer = "https://idcs-1.identity.oraclecloud.com"
               client_id = "c""#,
        )
        .unwrap();
        assert_eq!(
            accepted_issuers(&p),
            vec![
                "https://identity.oraclecloud.com/".to_string(),
                "https://identity.oraclecloud.com".to_string()
            ]
        );
        p.expected_issuer = Some("https://idcs-1.identity.oraclecloud.com".into());
        assert_eq!(
            accepted_issuers(&p),
            vec![
                "https://idcs-1.identity.oraclecloud.com/".to_string(),
                "https://idcs-1.identity.oraclecloud.com".to_string()
            ]
        );
    }

    #[test]
    fn empty_strings_are_absent() {
        let obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"a":"","b":" ","c":"x","d":1}"#).unwrap();
        assert_eq!(non_empty_str(&obj, "a"), None);
        assert_eq!(non_empty_str(&obj, "b"), None);
        assert_eq!(non_empty_str(&obj, "c").as_deref(), Some("x"));
        assert_eq!(non_empty_str(&obj, "d"), None);
        assert_eq!(non_empty_str(&obj, "e"), None);
    }
}
