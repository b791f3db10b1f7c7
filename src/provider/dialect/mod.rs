//! Provider dialects: what differs between `provider.kind`s.
//!
//! A [`Dialect`] is chosen once, when the layer is built
//! ([`for_config`]). OpenID Connect ([`oidc::OpenIdConnect`]) is the
//! reference: its default methods are the standard authorization request
//! and the one exchange → verify → userinfo sequence ([`standard_login`]).
//! Oracle IDCS and plain OAuth 2.0 reuse that sequence through its hooks;
//! Janrain Capture replaces the login completion. What differs:
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

pub(crate) mod idcs;
pub(crate) mod janrain;
pub(crate) mod oauth2;
pub(crate) mod oidc;

use super::client::{exchange_code, ClientCredentials, ExchangeError, TokenResponse};
use super::http::ProviderHttp;
use super::{ProviderMetadata, ProviderRules};
use crate::clock::Clock;
use crate::config::{ProviderConfig, ProviderKind};
use crate::identity::Identity;
use crate::token::TokenVerifier;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::future::BoxFuture;
use http::StatusCode;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use url::Url;

/// `expected_issuer` of `oracle-idcs` when none is configured.
pub(crate) const DEFAULT_IDCS_ISSUER: &str = "https://identity.oraclecloud.com/";

/// The per-attempt secrets a dialect sends or checks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttemptParams<'a> {
    /// `state` sent to the provider.
    pub(crate) state: &'a str,
    /// `nonce` the ID token must carry.
    pub(crate) nonce: &'a str,
    /// PKCE `code_verifier`.
    pub(crate) code_verifier: &'a str,
}

impl AttemptParams<'_> {
    /// PKCE S256 `code_challenge` for this attempt's verifier.
    pub(crate) fn code_challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.code_verifier.as_bytes()))
    }
}

/// The client side of a login: what a dialect may use, and nothing else.
pub(crate) struct LoginContext<'a> {
    /// The HTTP client for provider calls.
    pub(crate) http: &'a ProviderHttp,
    /// ID token verification.
    pub(crate) verifier: &'a TokenVerifier,
    /// Client authentication at the token endpoint.
    pub(crate) credentials: &'a ClientCredentials,
    /// The OAuth client id.
    pub(crate) client_id: &'a str,
    /// The configured redirect URI (`public_url + prefix + /callback`).
    pub(crate) redirect_uri: &'a str,
    /// Scopes, sent space-separated, verbatim.
    pub(crate) scopes: &'a [String],
    /// Ask for `response_mode=form_post`.
    pub(crate) form_post: bool,
    /// The time.
    pub(crate) clock: &'a dyn Clock,
}

/// What a completed login yields, whatever the dialect.
pub(crate) struct DialectLogin {
    pub(crate) identity: Identity,
    /// The ID token, when one was validated (for `id_token_hint`).
    pub(crate) id_token: Option<String>,
    /// The provider session id (`sid`), when known.
    pub(crate) sid: Option<String>,
    /// The token response (access and refresh tokens).
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

    pub(crate) fn no_id_token() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "The identity provider sent no identity token.",
        )
    }
}

/// Whether [`standard_login`] needs, checks or ignores the ID token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdTokenUse {
    /// The token response must carry one; it is verified.
    Required,
    /// Not looked at.
    Ignored,
}

/// How [`standard_login`] uses the userinfo endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UserinfoUse {
    /// Not called.
    Off,
    /// Called when the provider offers it, merged into the ID token's identity.
    Merge {
        /// An absent endpoint fails the login.
        required: bool,
    },
    /// The identity comes from userinfo (the ID token, when verified, must
    /// name the same subject).
    Source,
}

/// What differs between `provider.kind`s. Chosen once ([`for_config`]);
/// the default methods are OpenID Connect's.
pub(crate) trait Dialect: Send + Sync + 'static {
    /// Issuer rules, static metadata and key-fetch credentials for the
    /// [`Provider`](super::Provider).
    fn provider_rules(&self, p: &ProviderConfig) -> ProviderRules {
        ProviderRules::discovered(p)
    }

    /// Audiences besides the client id that an ID token may carry without `azp`.
    fn trusted_audiences(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether sessions of this dialect keep tokens for refresh.
    fn refreshes_sessions(&self) -> bool {
        false
    }

    /// The redirect URI sent for an attempt (at authorization and,
    /// identically, at the token endpoint).
    fn redirect_uri<'a>(&self, base: &'a str, _attempt: &AttemptParams<'_>) -> Cow<'a, str> {
        Cow::Borrowed(base)
    }

    /// The URL the browser is sent to (`endpoint`: the metadata's
    /// authorization endpoint, which a provider with browser sign-in has).
    fn authorization_url(
        &self,
        ctx: &LoginContext<'_>,
        _meta: &ProviderMetadata,
        endpoint: &Url,
        attempt: &AttemptParams<'_>,
    ) -> String {
        oidc::AuthorizationRequest {
            endpoint,
            client_id: ctx.client_id,
            redirect_uri: ctx.redirect_uri,
            scopes: ctx.scopes,
            form_post: ctx.form_post,
            nonce: true,
        }
        .url(attempt)
    }

    /// Whether the standard sequence needs the ID token.
    fn id_token_use(&self, _meta: &ProviderMetadata) -> IdTokenUse {
        IdTokenUse::Required
    }

    /// Adjusts the identity of a verified ID token (its whole payload given).
    fn apply_id_token_claims(&self, _identity: &mut Identity, _claims: &Map<String, Value>) {}

    /// How the standard sequence uses userinfo.
    fn userinfo_use(&self) -> UserinfoUse {
        UserinfoUse::Off
    }

    /// Merges a userinfo object into the identity of the ID token
    /// (`id_token_sub` is the ID token's own `sub`).
    fn merge_userinfo(
        &self,
        identity: &mut Identity,
        _id_token_sub: &str,
        info: &Map<String, Value>,
    ) -> Result<(), LoginFailure> {
        super::userinfo::merge(identity, info).map_err(|e| {
            tracing::warn!(error = %e, "userinfo refused");
            if matches!(e, super::userinfo::UserinfoError::SubjectMismatch) {
                LoginFailure::new(
                    StatusCode::UNAUTHORIZED,
                    "The identity provider's user information was not usable.",
                )
            } else {
                LoginFailure::new(
                    StatusCode::BAD_GATEWAY,
                    "The identity provider's user information was not usable.",
                )
            }
        })
    }

    /// The identity of a userinfo object (for [`UserinfoUse::Source`]).
    fn identity_from_userinfo(
        &self,
        _info: &Map<String, Value>,
        _meta: &ProviderMetadata,
        _expires_at: Option<u64>,
    ) -> Option<Identity> {
        None
    }

    /// Exchanges `code` and establishes the identity.
    fn complete_login<'a>(
        &'a self,
        ctx: &'a LoginContext<'a>,
        meta: &'a ProviderMetadata,
        attempt: AttemptParams<'a>,
        code: &'a str,
    ) -> BoxFuture<'a, Result<DialectLogin, LoginFailure>>
    where
        Self: Sized,
    {
        Box::pin(standard_login(self, ctx, meta, attempt, code))
    }
}

/// The dialect of `provider.kind`.
pub(crate) fn for_config(p: &ProviderConfig) -> Box<dyn DynDialect> {
    match p.kind {
        ProviderKind::Oidc => Box::new(oidc::OpenIdConnect {
            userinfo: p.userinfo,
        }),
        ProviderKind::OracleIdcs => Box::new(idcs::OracleIdcs::new(p)),
        ProviderKind::JanrainCapture => Box::new(janrain::JanrainCapture),
        ProviderKind::Oauth2 => Box::new(oauth2::OAuth2),
    }
}

/// [`Dialect`] as a trait object (the login completion boxed).
pub(crate) trait DynDialect: Send + Sync + 'static {
    fn provider_rules(&self, p: &ProviderConfig) -> ProviderRules;
    fn trusted_audiences(&self) -> Vec<String>;
    fn refreshes_sessions(&self) -> bool;
    fn authorization_url(
        &self,
        ctx: &LoginContext<'_>,
        meta: &ProviderMetadata,
        endpoint: &Url,
        attempt: &AttemptParams<'_>,
    ) -> String;
    fn complete_login<'a>(
        &'a self,
        ctx: &'a LoginContext<'a>,
        meta: &'a ProviderMetadata,
        attempt: AttemptParams<'a>,
        code: &'a str,
    ) -> BoxFuture<'a, Result<DialectLogin, LoginFailure>>;
}

impl<D: Dialect> DynDialect for D {
    fn provider_rules(&self, p: &ProviderConfig) -> ProviderRules {
        Dialect::provider_rules(self, p)
    }
    fn trusted_audiences(&self) -> Vec<String> {
        Dialect::trusted_audiences(self)
    }
    fn refreshes_sessions(&self) -> bool {
        Dialect::refreshes_sessions(self)
    }
    fn authorization_url(
        &self,
        ctx: &LoginContext<'_>,
        meta: &ProviderMetadata,
        endpoint: &Url,
        attempt: &AttemptParams<'_>,
    ) -> String {
        Dialect::authorization_url(self, ctx, meta, endpoint, attempt)
    }
    fn complete_login<'a>(
        &'a self,
        ctx: &'a LoginContext<'a>,
        meta: &'a ProviderMetadata,
        attempt: AttemptParams<'a>,
        code: &'a str,
    ) -> BoxFuture<'a, Result<DialectLogin, LoginFailure>> {
        Dialect::complete_login(self, ctx, meta, attempt, code)
    }
}

/// The one exchange → verify → userinfo sequence (OpenID Connect Core
/// §3.1.3; RFC 6749 §4.1.3 with PKCE), shaped by the dialect's hooks.
pub(crate) async fn standard_login<D: Dialect>(
    dialect: &D,
    ctx: &LoginContext<'_>,
    meta: &ProviderMetadata,
    attempt: AttemptParams<'_>,
    code: &str,
) -> Result<DialectLogin, LoginFailure> {
    let redirect_uri = dialect.redirect_uri(ctx.redirect_uri, &attempt);
    let Some(token_endpoint) = &meta.token_endpoint else {
        tracing::warn!("callback without a token endpoint (bearer-only provider)");
        return Err(LoginFailure::bad_gateway());
    };
    let tokens = exchange_code(
        ctx.http,
        token_endpoint.as_str(),
        ctx.credentials,
        code,
        &redirect_uri,
        attempt.code_verifier,
    )
    .await
    .map_err(|e| LoginFailure::from_exchange(&e))?;

    // The ID token: verified, then the dialect's own claims applied.
    let mut verified = None;
    if dialect.id_token_use(meta) == IdTokenUse::Required {
        let Some(id_token) = tokens.id_token.clone() else {
            tracing::warn!("token response has no id_token");
            return Err(LoginFailure::no_id_token());
        };
        let (mut identity, info) = ctx
            .verifier
            .verify_id_token(&id_token, attempt.nonce)
            .await
            .map_err(|e| {
                tracing::warn!(reason = %e, "id token refused");
                LoginFailure::bad_id_token()
            })?;
        let id_token_sub = identity.subject.clone();
        if let Some(claims) = verified_payload(&id_token) {
            dialect.apply_id_token_claims(&mut identity, &claims);
        }
        verified = Some((identity, id_token_sub, id_token, info.sid));
    }

    // Userinfo: merged into the ID token's identity, or the identity itself.
    let use_ = dialect.userinfo_use();
    let endpoint = meta.userinfo_endpoint.as_ref();
    let identity = match (use_, verified.as_mut()) {
        (UserinfoUse::Off, Some((identity, ..))) => identity.clone(),
        (UserinfoUse::Merge { required }, Some((identity, id_sub, ..))) => {
            match endpoint {
                Some(url) => {
                    let info = fetch_userinfo(ctx.http, url, tokens.access_token.expose()).await?;
                    dialect.merge_userinfo(identity, id_sub, &info)?;
                }
                None if required => {
                    return Err(LoginFailure::new(
                        StatusCode::BAD_GATEWAY,
                        "The identity provider has no userinfo endpoint.",
                    ))
                }
                None => {}
            }
            identity.clone()
        }
        (UserinfoUse::Source, _) => {
            let Some(url) = endpoint else {
                return Err(LoginFailure::bad_gateway());
            };
            let info = fetch_userinfo(ctx.http, url, tokens.access_token.expose()).await?;
            let expires_at = tokens.expires_in.map(|s| ctx.clock.now_secs() + s);
            let identity = dialect
                .identity_from_userinfo(&info, meta, expires_at)
                .ok_or_else(|| {
                    tracing::warn!("userinfo has no sub");
                    LoginFailure::new(
                        StatusCode::BAD_GATEWAY,
                        "The identity provider sent no user identifier.",
                    )
                })?;
            if let Some((_, id_sub, ..)) = &verified {
                if *id_sub != identity.subject {
                    tracing::warn!("userinfo sub differs from the id token sub");
                    return Err(LoginFailure::bad_id_token());
                }
            }
            identity
        }
        (_, None) => return Err(LoginFailure::no_id_token()),
    };
    let (id_token, sid) = match verified {
        Some((_, _, token, sid)) => (Some(token), sid),
        None => (None, None),
    };
    Ok(DialectLogin {
        identity,
        id_token,
        sid,
        tokens,
    })
}

/// A JSON object's string member, with `""` (and whitespace-only) as absent.
pub(crate) fn non_empty_str(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// The payload of a compact JWS whose signature was already verified.
pub(crate) fn verified_payload(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// GETs a userinfo-style JSON object with `Authorization: Bearer <token>`.
async fn fetch_userinfo(
    http: &ProviderHttp,
    url: &Url,
    access_token: &str,
) -> Result<Map<String, Value>, LoginFailure> {
    super::userinfo::fetch(http, url.as_str(), access_token)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "userinfo request failed");
            LoginFailure::bad_gateway()
        })
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
            idcs::OracleIdcs::new(&p).accepted_issuers(),
            vec![
                "https://identity.oraclecloud.com/".to_string(),
                "https://identity.oraclecloud.com".to_string()
            ]
        );
        p.expected_issuer = Some("https://idcs-1.identity.oraclecloud.com".into());
        assert_eq!(
            idcs::OracleIdcs::new(&p).accepted_issuers(),
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
