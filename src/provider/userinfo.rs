//! The userinfo endpoint (OpenID Connect Core §5.3): fetching it with the
//! access token and merging its claims into the identity.

use crate::identity::Identity;
use crate::provider::http::{HttpError, ProviderHttp};
use http::{header, HeaderValue};
use serde_json::{Map, Value};

/// Why userinfo could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum UserinfoError {
    /// The call failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Non-2xx answer.
    #[error("userinfo answered HTTP {0}")]
    Status(u16),
    /// Not a JSON object.
    #[error("userinfo response is not a JSON object")]
    Malformed,
    /// Its `sub` differs from the ID token's (Core §5.3.2): a substitution attempt.
    #[error("userinfo sub does not match the ID token")]
    SubjectMismatch,
}

/// GETs `url` with `Authorization: Bearer <access_token>`.
pub(crate) async fn fetch(
    http: &ProviderHttp,
    url: &str,
    access_token: &str,
) -> Result<Map<String, Value>, UserinfoError> {
    let mut auth = HeaderValue::from_str(&format!("Bearer {access_token}"))
        .map_err(|_| UserinfoError::Malformed)?;
    auth.set_sensitive(true);
    fetch_with(http, url, auth).await
}

/// GETs `url` with the given `Authorization` value and expects a JSON object.
pub(crate) async fn fetch_with(
    http: &ProviderHttp,
    url: &str,
    authorization: HeaderValue,
) -> Result<Map<String, Value>, UserinfoError> {
    let resp = http
        .get(url, &[(header::AUTHORIZATION, authorization)])
        .await?;
    if !resp.status.is_success() {
        return Err(UserinfoError::Status(resp.status.as_u16()));
    }
    match serde_json::from_slice::<Value>(&resp.body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(UserinfoError::Malformed),
    }
}

fn non_empty_str(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Merges userinfo claims into `identity`. `sub` must be present and equal
/// to the identity's subject. Empty-string claims count as absent.
pub(crate) fn merge(
    identity: &mut Identity,
    claims: &Map<String, Value>,
) -> Result<(), UserinfoError> {
    match non_empty_str(claims.get("sub")) {
        Some(sub) if sub == identity.subject => {}
        _ => return Err(UserinfoError::SubjectMismatch),
    }
    if let Some(email) = non_empty_str(claims.get("email")) {
        identity.email = Some(email);
        identity.email_verified = match claims.get("email_verified") {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) if !s.is_empty() => Some(s.eq_ignore_ascii_case("true")),
            _ => None,
        };
    }
    if let Some(v) = non_empty_str(claims.get("preferred_username")) {
        identity.preferred_username = Some(v);
    }
    if let Some(v) = non_empty_str(claims.get("name")) {
        identity.name = Some(v);
    }
    match claims.get("groups") {
        Some(Value::Array(items)) => {
            identity.groups = items
                .iter()
                .filter_map(|g| g.as_str().filter(|s| !s.is_empty()).map(String::from))
                .take(256)
                .collect();
        }
        Some(Value::String(g)) if !g.is_empty() => identity.groups = vec![g.clone()],
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentitySource;
    use serde_json::json;

    fn alice() -> Identity {
        Identity {
            email: Some("old@example.com".into()),
            ..Identity::new("alice", "https://idp", IdentitySource::Session)
        }
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn userinfo_merge_takes_claims_and_ignores_empty_strings() {
        let mut id = alice();
        merge(
            &mut id,
            &map(
                json!({"sub":"alice","email":"a@example.com","email_verified":true,
                        "preferred_username":"","groups":["admins",""],"name":"Alice"}),
            ),
        )
        .unwrap();
        assert_eq!(id.email.as_deref(), Some("a@example.com"));
        assert_eq!(id.email_verified, Some(true));
        assert_eq!(id.preferred_username, None);
        assert_eq!(id.groups, ["admins"]);
        assert_eq!(id.name.as_deref(), Some("Alice"));
    }

    #[test]
    fn userinfo_merge_refuses_other_or_missing_subject() {
        let mut id = alice();
        assert!(matches!(
            merge(&mut id, &map(json!({"sub":"mallory","email":"m@evil"}))),
            Err(UserinfoError::SubjectMismatch)
        ));
        assert!(merge(&mut id, &map(json!({"email":"m@evil"}))).is_err());
        assert_eq!(id.email.as_deref(), Some("old@example.com"));
    }
}
