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

use super::oidc::AuthorizationRequest;
use super::{non_empty_str, AttemptParams, Dialect, IdTokenUse, LoginContext, UserinfoUse};
use crate::config::ProviderConfig;
use crate::identity::{Identity, IdentitySource};
use crate::provider::{ProviderMetadata, ProviderRules};
use serde_json::{Map, Value};
use url::Url;

/// Plain OAuth 2.0 with a userinfo endpoint.
#[derive(Debug)]
pub(crate) struct OAuth2;

impl Dialect for OAuth2 {
    fn provider_rules(&self, p: &ProviderConfig) -> ProviderRules {
        ProviderRules {
            static_metadata: metadata(p),
            ..ProviderRules::discovered(p)
        }
    }

    /// `response_type=code`, `client_id`, `redirect_uri`, `scope` (verbatim),
    /// `state`, PKCE; `nonce` only when an ID token will be verified.
    fn authorization_url(
        &self,
        ctx: &LoginContext<'_>,
        meta: &ProviderMetadata,
        endpoint: &Url,
        attempt: &AttemptParams<'_>,
    ) -> String {
        AuthorizationRequest {
            endpoint,
            client_id: ctx.client_id,
            redirect_uri: ctx.redirect_uri,
            scopes: ctx.scopes,
            form_post: false,
            nonce: meta.jwks_uri.is_some(),
        }
        .url(attempt)
    }

    fn id_token_use(&self, meta: &ProviderMetadata) -> IdTokenUse {
        if meta.jwks_uri.is_some() {
            IdTokenUse::Required
        } else {
            IdTokenUse::Ignored
        }
    }

    fn userinfo_use(&self) -> UserinfoUse {
        UserinfoUse::Source
    }

    fn identity_from_userinfo(
        &self,
        info: &Map<String, Value>,
        meta: &ProviderMetadata,
        expires_at: Option<u64>,
    ) -> Option<Identity> {
        let issuer = match &meta.authorization_endpoint {
            Some(a) if meta.issuer.is_empty() => a.origin().ascii_serialization(),
            _ => meta.issuer.clone(),
        };
        identity_from_userinfo(info, &issuer, expires_at)
    }
}

/// The configured endpoints.
fn metadata(p: &ProviderConfig) -> Option<ProviderMetadata> {
    Some(ProviderMetadata {
        issuer: p.issuer.clone().unwrap_or_default(),
        authorization_endpoint: Some(p.authorization_endpoint.clone()?),
        token_endpoint: Some(p.token_endpoint.clone()?),
        userinfo_endpoint: p.userinfo_endpoint.clone(),
        jwks_uri: p.jwks_uri.clone(),
        end_session_endpoint: p.end_session_endpoint.clone(),
        introspection_endpoint: None,
        iss_parameter_supported: false,
        id_token_signing_algs: None,
    })
}

/// The identity of a userinfo object.
fn identity_from_userinfo(
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
        claims: Default::default(),
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
