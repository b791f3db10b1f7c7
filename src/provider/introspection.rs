//! RFC 7662 token introspection at the provider: where the endpoint is
//! (configuration, OpenID discovery, or RFC 8414 authorization server
//! metadata) and the call itself, with the client's usual authentication.
//! What an answer means is decided in [`crate::token`]; caching and bounds
//! in [`crate::auth::authn`].

use super::client::ClientCredentials;
use super::http::{HttpError, ProviderHttp};
use super::{Provider, ProviderError};
use crate::config::check_provider_url;
use bytes::Bytes;
use serde::Deserialize;
use url::Url;

/// Why an introspection call gave no answer. Never names the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum IntrospectError {
    /// The provider could not be reached, timed out or sent too much.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The endpoint answered with a status other than 200.
    #[error("introspection endpoint answered HTTP {0}")]
    Status(u16),
    /// The client authentication could not be made (`private_key_jwt`).
    #[error("client authentication: {0}")]
    ClientAuth(&'static str),
    /// No introspection endpoint is known.
    #[error("no introspection endpoint: {0}")]
    NoEndpoint(String),
    /// Too many introspections are in flight or waiting.
    #[error("too many introspections in flight")]
    Overloaded,
    /// `bearer.userinfo = true` and the userinfo endpoint gave no answer.
    #[error("{0}")]
    Userinfo(String),
}

/// `/.well-known/oauth-authorization-server` for `issuer` (RFC 8414 §3.1:
/// the well-known segment goes between the host and the issuer's path).
pub(crate) fn authorization_server_metadata_url(issuer: &str) -> Result<Url, String> {
    let url = Url::parse(issuer).map_err(|e| e.to_string())?;
    let path = url.path().trim_end_matches('/');
    let mut out = url.clone();
    out.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    out.set_query(None);
    out.set_fragment(None);
    Ok(out)
}

#[derive(Deserialize)]
struct AuthorizationServerMetadata {
    issuer: String,
    introspection_endpoint: Option<String>,
}

/// The introspection endpoint named by the provider's RFC 8414 metadata,
/// whose `issuer` must equal the configured issuer (RFC 8414 §3.3).
pub(crate) async fn discover_rfc8414(provider: &Provider) -> Result<Url, ProviderError> {
    let invalid = |reason: String| ProviderError::Invalid {
        what: "authorization server metadata",
        reason,
    };
    let url = authorization_server_metadata_url(provider.issuer()).map_err(invalid)?;
    let resp = provider.http().get(url.as_str(), &[]).await?;
    if !resp.status.is_success() {
        return Err(ProviderError::Status {
            what: "authorization server metadata",
            status: resp.status.as_u16(),
        });
    }
    let doc: AuthorizationServerMetadata =
        serde_json::from_slice(&resp.body).map_err(|e| invalid(e.to_string()))?;
    if !provider.accepted_issuers().contains(&doc.issuer) && doc.issuer != provider.issuer() {
        return Err(ProviderError::IssuerMismatch {
            expected: provider.issuer().to_string(),
            got: doc.issuer,
        });
    }
    let endpoint = doc
        .introspection_endpoint
        .ok_or_else(|| invalid("introspection_endpoint missing".into()))?;
    let endpoint =
        Url::parse(&endpoint).map_err(|e| invalid(format!("introspection_endpoint: {e}")))?;
    check_provider_url(&endpoint).map_err(|e| invalid(format!("introspection_endpoint: {e}")))?;
    Ok(endpoint)
}

/// Asks `endpoint` about `token` (RFC 7662 §2.1), authenticated as the
/// client; `assertion_audience` is the `aud` of a `private_key_jwt`
/// assertion (the token endpoint, as OpenID Connect Core §9 recommends).
/// Returns the body of a 200 answer (size-bounded by the HTTP client).
pub(crate) async fn introspect(
    http: &ProviderHttp,
    endpoint: &Url,
    credentials: &ClientCredentials,
    assertion_audience: &str,
    token: &str,
) -> Result<Bytes, IntrospectError> {
    let mut headers = Vec::new();
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token)
            .append_pair("token_type_hint", "access_token");
        credentials
            .apply(assertion_audience, &mut form, &mut headers)
            .map_err(|e| match e {
                super::client::ExchangeError::ClientAuth(m) => IntrospectError::ClientAuth(m),
                _ => IntrospectError::ClientAuth("client authentication failed"),
            })?;
        form.finish()
    };
    let resp = http.post_form(endpoint.as_str(), body, &headers).await?;
    if resp.status != http::StatusCode::OK {
        return Err(IntrospectError::Status(resp.status.as_u16()));
    }
    Ok(resp.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8414_metadata_url_inserts_the_well_known_segment_before_the_path() {
        let u = |i: &str| authorization_server_metadata_url(i).unwrap().to_string();
        assert_eq!(
            u("https://idp.example.com"),
            "https://idp.example.com/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            u("https://idp.example.com/"),
            "https://idp.example.com/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            u("https://idp.example.com/realms/acme"),
            "https://idp.example.com/.well-known/oauth-authorization-server/realms/acme"
        );
        assert!(authorization_server_metadata_url("not a url").is_err());
    }
}
