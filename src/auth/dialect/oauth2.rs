//! Plain OAuth 2.0 (`kind = "oauth2"`).
//!
//! No discovery: `authorization_endpoint`, `token_endpoint` and
//! `userinfo_endpoint` are configured (they need not share a base path).
//! Scopes are sent verbatim; client authentication is `client_auth`
//! (Basic by default); the identity comes from the userinfo endpoint
//! (`Authorization: Bearer`): `sub` (or `id`), `email`,
//! `preferred_username`, `name`, `groups`, with `""` as absent. When
//! `jwks_uri` is configured, a `nonce` is sent and the token response's
//! ID token is verified (signature, `iss` = `issuer`, `aud`, `exp`,
//! `nonce`), and its `sub` must be the userinfo subject.

use super::{bearer, fetch_json_object, non_empty_str, DialectLogin, LoginFailure};
use crate::auth::identity::{Identity, IdentitySource};
use crate::auth::layer::Shared;
use crate::auth::login::LoginAttempt;
use crate::auth::provider::ProviderMetadata;
use crate::auth::token::now_secs;
use crate::config::ProviderConfig;
use http::StatusCode;
use serde_json::{Map, Value};

/// The configured endpoints.
pub(crate) fn metadata(p: &ProviderConfig) -> Option<ProviderMetadata> {
    Some(ProviderMetadata {
        issuer: p.issuer.clone().unwrap_or_default(),
        authorization_endpoint: p.authorization_endpoint.clone()?,
        token_endpoint: p.token_endpoint.clone()?,
        userinfo_endpoint: p.userinfo_endpoint.clone(),
        jwks_uri: p.jwks_uri.clone(),
        end_session_endpoint: p.end_session_endpoint.clone(),
        iss_parameter_supported: false,
    })
}

/// `response_type=code`, `client_id`, `redirect_uri`, `scope` (verbatim),
/// `state`, PKCE; `nonce` only when an ID token will be verified.
pub(crate) fn authorization_url(
    shared: &Shared,
    meta: &ProviderMetadata,
    attempt: &LoginAttempt,
) -> String {
    let mut url = meta.authorization_endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &shared.client_id)
            .append_pair("redirect_uri", &shared.redirect_uri)
            .append_pair("scope", &shared.scopes.join(" "))
            .append_pair("state", &attempt.state);
        if meta.jwks_uri.is_some() {
            q.append_pair("nonce", &attempt.nonce);
        }
        q.append_pair("code_challenge", &attempt.code_challenge())
            .append_pair("code_challenge_method", "S256");
    }
    url.into()
}

/// The identity of a userinfo object.
pub(crate) fn identity_from_userinfo(
    info: &Map<String, Value>,
    issuer: &str,
    expires_at: Option<u64>,
) -> Option<Identity> {
    let s = |k: &str| non_empty_str(info, k);
    let subject = s("sub").or_else(|| match info.get("id") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(v)) if !v.trim().is_empty() => Some(v.clone()),
        _ => None,
    })?;
    let groups = match info.get("groups") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|g| !g.is_empty())
            .take(256)
            .map(str::to_string)
            .collect(),
        Some(Value::String(g)) if !g.is_empty() => vec![g.clone()],
        _ => Vec::new(),
    };
    Some(Identity {
        subject,
        email: s("email"),
        email_verified: match info.get("email_verified") {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(v)) if !v.is_empty() => Some(v.eq_ignore_ascii_case("true")),
            _ => None,
        },
        preferred_username: s("preferred_username"),
        groups,
        name: s("name"),
        issuer: issuer.to_string(),
        expires_at,
        source: IdentitySource::Session,
    })
}

/// Exchange (strict RFC 6749 response), optional ID token, userinfo.
pub(crate) async fn complete_login(
    shared: &Shared,
    meta: &ProviderMetadata,
    attempt: &LoginAttempt,
    code: &str,
) -> Result<DialectLogin, LoginFailure> {
    let tokens = super::standard_exchange(shared, meta, attempt, code).await?;
    let mut verified = None;
    if meta.jwks_uri.is_some() {
        let Some(id_token) = tokens.id_token.clone() else {
            tracing::warn!("jwks_uri is configured but the token response has no id_token");
            return Err(LoginFailure::new(
                StatusCode::BAD_GATEWAY,
                "The identity provider sent no identity token.",
            ));
        };
        let (identity, info) = shared
            .verifier
            .verify_id_token(&id_token, &attempt.nonce)
            .await
            .map_err(|e| {
                tracing::warn!(reason = %e, "id token refused");
                LoginFailure::bad_id_token()
            })?;
        verified = Some((id_token, identity.subject, info.sid));
    }
    let Some(url) = &meta.userinfo_endpoint else {
        return Err(LoginFailure::bad_gateway());
    };
    let info = fetch_json_object(
        shared.provider.http(),
        url,
        bearer(tokens.access_token.expose())?,
    )
    .await?;
    let expires_at = tokens.expires_in.map(|s| now_secs() + s);
    let issuer = if meta.issuer.is_empty() {
        meta.authorization_endpoint.origin().ascii_serialization()
    } else {
        meta.issuer.clone()
    };
    let identity = identity_from_userinfo(&info, &issuer, expires_at).ok_or_else(|| {
        tracing::warn!("userinfo has no sub");
        LoginFailure::new(
            StatusCode::BAD_GATEWAY,
            "The identity provider sent no user identifier.",
        )
    })?;
    let (id_token, sid) = match verified {
        Some((token, sub, sid)) => {
            if sub != identity.subject {
                tracing::warn!("userinfo sub differs from the id token sub");
                return Err(LoginFailure::bad_id_token());
            }
            (Some(token), sid)
        }
        None => (None, None),
    };
    Ok(DialectLogin {
        identity,
        id_token,
        sid,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_identity_uses_sub_then_id() {
        let info: Map<String, Value> = serde_json::from_str(
            r#"{"sub":"u1","email":"a@b.c","email_verified":"true","name":"","groups":["g1",""]}"#,
        )
        .unwrap();
        let i = identity_from_userinfo(&info, "https://idp", None).unwrap();
        assert_eq!(i.subject, "u1");
        assert_eq!(i.email_verified, Some(true));
        assert_eq!(i.name, None);
        assert_eq!(i.groups, vec!["g1".to_string()]);
        let info: Map<String, Value> = serde_json::from_str(r#"{"id":42}"#).unwrap();
        assert_eq!(
            identity_from_userinfo(&info, "https://idp", None)
                .unwrap()
                .subject,
            "42"
        );
        let info: Map<String, Value> = serde_json::from_str(r#"{"sub":""}"#).unwrap();
        assert!(identity_from_userinfo(&info, "https://idp", None).is_none());
    }
}
