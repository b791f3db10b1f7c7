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

use super::{non_empty_str, Dialect, LoginFailure, UserinfoUse, DEFAULT_IDCS_ISSUER};
use crate::config::ProviderConfig;
use crate::identity::Identity;
use crate::provider::{DiscoveryIssuer, ProviderRules};
use serde_json::{Map, Value};

/// Oracle IDCS: OpenID Connect with its own issuer, subject and userinfo.
#[derive(Debug)]
pub(crate) struct OracleIdcs {
    /// `expected_issuer`, with and without its trailing slash.
    accepted_issuers: Vec<String>,
}

impl OracleIdcs {
    pub(crate) fn new(p: &ProviderConfig) -> Self {
        let expected = p.expected_issuer.as_deref().unwrap_or(DEFAULT_IDCS_ISSUER);
        let bare = expected.trim_end_matches('/');
        OracleIdcs {
            accepted_issuers: vec![format!("{bare}/"), bare.to_string()],
        }
    }

    /// The issuers tokens (and discovery) may carry.
    pub(crate) fn accepted_issuers(&self) -> Vec<String> {
        self.accepted_issuers.clone()
    }
}

impl Dialect for OracleIdcs {
    fn provider_rules(&self, p: &ProviderConfig) -> ProviderRules {
        ProviderRules {
            accepted_issuers: self.accepted_issuers(),
            // The tenant's discovery advertises the global issuer, not its URL.
            discovery_issuer: DiscoveryIssuer::AnyAccepted,
            ..ProviderRules::discovered(p)
        }
    }

    fn trusted_audiences(&self) -> Vec<String> {
        self.accepted_issuers()
    }

    fn apply_id_token_claims(&self, identity: &mut Identity, claims: &Map<String, Value>) {
        apply_id_token_claims(identity, claims);
    }

    fn userinfo_use(&self) -> UserinfoUse {
        UserinfoUse::Merge { required: false }
    }

    fn merge_userinfo(
        &self,
        identity: &mut Identity,
        id_token_sub: &str,
        info: &Map<String, Value>,
    ) -> Result<(), LoginFailure> {
        merge_userinfo(identity, id_token_sub, info)
    }
}

/// Applies IDCS's claims to an identity from a verified ID token:
/// `user_id` becomes the subject, the login name (`sub`) the preferred
/// username, `user_displayname` the name.
fn apply_id_token_claims(identity: &mut Identity, claims: &Map<String, Value>) {
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
fn merge_userinfo(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentitySource;

    fn identity(sub: &str) -> Identity {
        Identity::new(
            sub,
            "https://identity.oraclecloud.com/",
            IdentitySource::Session,
        )
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
