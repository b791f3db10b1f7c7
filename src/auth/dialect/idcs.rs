//! Oracle Identity Cloud Service / OCI IAM identity domains
//! (`kind = "oracle-idcs"`).
//!
//! Discovery at the tenant URL (`issuer`), whose `issuer` member, like the
//! ID tokens' `iss`, is `expected_issuer` (default
//! `https://identity.oraclecloud.com/`), compared with or without trailing
//! slash. ID tokens carry `aud = [client_id, issuer]` (the issuer needs no
//! `azp`), `x5t` / `x5t#S256` headers (keys are matched by them when the
//! `kid` does not), and `user_id`, the stable subject (`sub` is the login
//! name, kept as preferred username). Userinfo is merged in when the tenant
//! offers it; its unset claims come as `""` and are treated as absent. With
//! `jwks_auth = "client_credentials"` the JWKS (`/admin/v1/SigningCert/jwk`,
//! often not public) is fetched with a client-credentials access token.
//! Logout goes through discovery's `end_session_endpoint`
//! (`/oauth2/v1/userlogout`) with `id_token_hint` and
//! `post_logout_redirect_uri`.

use super::{
    bearer, fetch_json_object, non_empty_str, verified_payload, DialectLogin, LoginFailure,
};
use crate::auth::code_flow::ClientCredentials;
use crate::auth::http_client::ProviderHttp;
use crate::auth::identity::Identity;
use crate::auth::layer::Shared;
use crate::auth::login::LoginAttempt;
use crate::auth::provider::{ProviderError, ProviderMetadata};
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value};

/// The scope that lets a confidential client read the tenant's signing
/// certificate with a client-credentials token.
pub const CLIENT_CREDENTIALS_SCOPE: &str = "urn:opc:idm:__myscopes__";

/// A client-credentials access token for the JWKS request, as an
/// `Authorization: Bearer` value.
pub(crate) async fn client_credentials_token(
    http: &ProviderHttp,
    token_endpoint: &str,
    credentials: &ClientCredentials,
) -> Result<HeaderValue, ProviderError> {
    let mut headers = Vec::new();
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials")
            .append_pair("scope", CLIENT_CREDENTIALS_SCOPE);
        credentials
            .apply(token_endpoint, &mut form, &mut headers)
            .map_err(|e| ProviderError::Invalid {
                what: "client-credentials token for the jwks",
                reason: e.to_string(),
            })?;
        form.finish()
    };
    let resp = http.post_form(token_endpoint, body, &headers).await?;
    if !resp.status.is_success() {
        return Err(ProviderError::Status {
            what: "client-credentials token for the jwks",
            status: resp.status.as_u16(),
        });
    }
    let tokens = crate::auth::code_flow::parse_token_response(&resp.body).map_err(|e| {
        ProviderError::Invalid {
            what: "client-credentials token for the jwks",
            reason: e.to_string(),
        }
    })?;
    bearer(tokens.access_token.expose()).map_err(|_| ProviderError::Invalid {
        what: "client-credentials token for the jwks",
        reason: "access token is not header-safe".into(),
    })
}

/// Applies IDCS's claims to an identity from a verified ID token:
/// `user_id` becomes the subject, the login name (`sub`) the preferred
/// username, `user_displayname` the name.
pub(crate) fn apply_id_token_claims(identity: &mut Identity, claims: &Map<String, Value>) {
    let login_name = identity.subject.clone();
    if let Some(user_id) = non_empty_str(claims, "user_id") {
        identity.subject = user_id;
    }
    if identity.preferred_username.is_none() {
        identity.preferred_username = Some(login_name);
    }
    if identity.name.as_deref().is_none_or(str::is_empty) {
        identity.name = non_empty_str(claims, "user_displayname");
    }
}

/// Merges userinfo into the identity; `""` claims are absent. The userinfo
/// `sub` (the login name) must be the ID token's `sub`.
pub(crate) fn merge_userinfo(
    identity: &mut Identity,
    id_token_sub: &str,
    info: &Map<String, Value>,
) -> Result<(), LoginFailure> {
    if let Some(sub) = non_empty_str(info, "sub") {
        if sub != id_token_sub {
            tracing::warn!("userinfo sub differs from the id token sub");
            return Err(LoginFailure::bad_id_token());
        }
    }
    if let Some(email) = non_empty_str(info, "email") {
        identity.email = Some(email);
        identity.email_verified = match info.get("email_verified") {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) if !s.is_empty() => Some(s.eq_ignore_ascii_case("true")),
            _ => identity.email_verified,
        };
    }
    if let Some(u) = non_empty_str(info, "preferred_username") {
        identity.preferred_username = Some(u);
    }
    if let Some(n) = non_empty_str(info, "name") {
        identity.name = Some(n);
    }
    if identity.groups.is_empty() {
        if let Some(Value::Array(groups)) = info.get("groups") {
            identity.groups = groups
                .iter()
                .filter_map(|g| match g {
                    Value::String(s) => Some(s.clone()),
                    // IDCS group objects: {"name": .., "id": ..}
                    Value::Object(o) => non_empty_str(o, "name"),
                    _ => None,
                })
                .filter(|g| !g.is_empty())
                .take(256)
                .collect();
        }
    }
    Ok(())
}

/// Standard code exchange and ID token, then IDCS's claims and userinfo.
pub(crate) async fn complete_login(
    shared: &Shared,
    meta: &ProviderMetadata,
    attempt: &LoginAttempt,
    code: &str,
) -> Result<DialectLogin, LoginFailure> {
    let tokens = super::standard_exchange(shared, meta, attempt, code).await?;
    let Some(id_token) = tokens.id_token.clone() else {
        tracing::warn!("token response has no id_token");
        return Err(LoginFailure::new(
            StatusCode::BAD_GATEWAY,
            "The identity provider sent no identity token.",
        ));
    };
    let (mut identity, info) = shared
        .verifier
        .verify_id_token(&id_token, &attempt.nonce)
        .await
        .map_err(|e| {
            tracing::warn!(reason = %e, "id token refused");
            LoginFailure::bad_id_token()
        })?;
    let id_token_sub = identity.subject.clone();
    let claims = verified_payload(&id_token).unwrap_or_default();
    apply_id_token_claims(&mut identity, &claims);
    if let Some(url) = &meta.userinfo_endpoint {
        let userinfo = fetch_json_object(
            shared.provider.http(),
            url,
            bearer(tokens.access_token.expose())?,
        )
        .await?;
        merge_userinfo(&mut identity, &id_token_sub, &userinfo)?;
    }
    Ok(DialectLogin {
        identity,
        id_token: Some(id_token),
        sid: info.sid,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::identity::IdentitySource;

    fn identity(sub: &str) -> Identity {
        Identity {
            subject: sub.into(),
            email: None,
            email_verified: None,
            preferred_username: None,
            groups: vec![],
            name: None,
            issuer: "https://identity.oraclecloud.com/".into(),
            expires_at: None,
            source: IdentitySource::Session,
        }
    }

    #[test]
    fn user_id_is_the_subject_and_sub_the_username() {
        let mut i = identity("alice@example.com");
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"user_id":"5a1b","user_displayname":"Alice A","sub_mappingattr":"userName"}"#,
        )
        .unwrap();
        apply_id_token_claims(&mut i, &claims);
        assert_eq!(i.subject, "5a1b");
        assert_eq!(i.preferred_username.as_deref(), Some("alice@example.com"));
        assert_eq!(i.name.as_deref(), Some("Alice A"));
    }

    #[test]
    fn userinfo_empty_strings_are_absent() {
        let mut i = identity("5a1b");
        i.name = Some("Alice A".into());
        let info: Map<String, Value> = serde_json::from_str(
            r#"{"birthdate":"","email":"user@example.com","email_verified":false,"family_name":"user","gender":"",
                "given_name":"user","appRoles":[],"name":"","preferred_username":"","sub":"user@example.com","website":""}"#,
        )
        .unwrap();
        merge_userinfo(&mut i, "user@example.com", &info).unwrap();
        assert_eq!(i.email.as_deref(), Some("user@example.com"));
        assert_eq!(i.email_verified, Some(false));
        assert_eq!(i.name.as_deref(), Some("Alice A"));
        assert_eq!(i.preferred_username, None);
        assert!(merge_userinfo(&mut i, "someone-else", &info).is_err());
    }
}
