//! The token endpoint: exchanging an authorization code (and, later,
//! refresh tokens) with client authentication.

use crate::config::{ClientAuth, ProviderConfig};
use crate::provider::client_assertion::{ClientAssertionKey, JWT_BEARER_ASSERTION_TYPE};
use crate::provider::http::{HttpError, ProviderHttp};
use crate::secret::Secret;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{header, HeaderValue};
use serde::Deserialize;
use std::sync::Arc;

/// The client's credentials at the token endpoint.
#[derive(Clone, Debug)]
pub(crate) struct ClientCredentials {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: Secret,
    /// How they are sent.
    pub method: ClientAuth,
    /// The signing key for `private_key_jwt` (`None` for the other methods).
    pub assertion_key: Option<Arc<ClientAssertionKey>>,
}

impl ClientCredentials {
    /// The credentials `p` configures; the `private_key_jwt` key is read and
    /// parsed here, once.
    pub(crate) fn from_config(p: &ProviderConfig) -> Result<Self, String> {
        let assertion_key = match (p.client_auth, &p.private_key_file) {
            (ClientAuth::PrivateKeyJwt, Some(path)) => Some(Arc::new(ClientAssertionKey::load(
                path,
                p.private_key_alg,
                p.private_key_kid.as_deref(),
            )?)),
            (ClientAuth::PrivateKeyJwt, None) => {
                return Err("private_key_jwt needs provider.private_key_file".into())
            }
            _ => None,
        };
        Ok(ClientCredentials {
            client_id: p.client_id.clone(),
            client_secret: p.client_secret.clone().unwrap_or_default(),
            method: p.client_auth,
            assertion_key,
        })
    }

    /// `Authorization: Basic` per RFC 6749 §2.3.1: id and secret are each
    /// form-urlencoded before being joined with `:` and base64-encoded.
    pub(crate) fn basic_header(&self) -> HeaderValue {
        let id: String = form_urlencoded::byte_serialize(self.client_id.as_bytes()).collect();
        let secret: String =
            form_urlencoded::byte_serialize(self.client_secret.expose().as_bytes()).collect();
        let encoded = STANDARD.encode(format!("{id}:{secret}"));
        let mut v = HeaderValue::from_str(&format!("Basic {encoded}"))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        v.set_sensitive(true);
        v
    }

    /// Adds the client authentication of a request to `token_endpoint` to
    /// its form or headers: Basic (the default), id and secret in the form
    /// (`client_secret_post`), or a fresh signed assertion
    /// (`private_key_jwt`).
    pub(crate) fn apply(
        &self,
        token_endpoint: &str,
        form: &mut form_urlencoded::Serializer<'_, String>,
        headers: &mut Vec<(header::HeaderName, HeaderValue)>,
    ) -> Result<(), ExchangeError> {
        match self.method {
            ClientAuth::ClientSecretPost => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", self.client_secret.expose());
            }
            ClientAuth::PrivateKeyJwt => {
                let key = self
                    .assertion_key
                    .as_ref()
                    .ok_or(ExchangeError::ClientAuth("no private key loaded"))?;
                let assertion = key
                    .assertion(&self.client_id, token_endpoint)
                    .map_err(|e| {
                        tracing::error!(error = %e, "signing the client assertion failed");
                        ExchangeError::ClientAuth("signing the client assertion failed")
                    })?;
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_assertion_type", JWT_BEARER_ASSERTION_TYPE);
                form.append_pair("client_assertion", &assertion);
            }
            _ => headers.push((header::AUTHORIZATION, self.basic_header())),
        }
        Ok(())
    }
}

/// A successful token response. `Debug` never shows the tokens.
#[derive(Clone)]
pub(crate) struct TokenResponse {
    /// `access_token`.
    pub access_token: Secret,
    /// `id_token`, if any.
    pub id_token: Option<String>,
    /// `refresh_token`, if any.
    pub refresh_token: Option<Secret>,
    /// `expires_in`, seconds.
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Why the code exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ExchangeError {
    /// The provider could not be reached, timed out or sent too much.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The provider refused (OAuth error response).
    #[error("token endpoint refused the request: HTTP {status}, error {error:?}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The OAuth `error` code (sanitized).
        error: String,
    },
    /// The response is not a valid token response.
    #[error("token response is invalid: {0}")]
    Malformed(&'static str),
    /// The client authentication could not be made (`private_key_jwt`).
    #[error("client authentication: {0}")]
    ClientAuth(&'static str),
}

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    id_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawError {
    error: Option<String>,
}

/// Keeps only `[A-Za-z0-9_.-]`, at most 64 characters: safe to log and show.
pub(crate) fn sanitize_code(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(64)
        .collect()
}

/// Exchanges `code` at `token_endpoint` (RFC 6749 §4.1.3 with PKCE).
pub(crate) async fn exchange_code(
    http: &ProviderHttp,
    token_endpoint: &str,
    credentials: &ClientCredentials,
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
) -> Result<TokenResponse, ExchangeError> {
    token_request(
        http,
        token_endpoint,
        credentials,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ],
    )
    .await
}

/// Spends `refresh_token` at `token_endpoint` (RFC 6749 §6).
pub(crate) async fn refresh(
    http: &ProviderHttp,
    token_endpoint: &str,
    credentials: &ClientCredentials,
    refresh_token: &str,
) -> Result<TokenResponse, ExchangeError> {
    token_request(
        http,
        token_endpoint,
        credentials,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

async fn token_request(
    http: &ProviderHttp,
    token_endpoint: &str,
    credentials: &ClientCredentials,
    params: &[(&str, &str)],
) -> Result<TokenResponse, ExchangeError> {
    let mut headers = Vec::new();
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            form.append_pair(k, v);
        }
        credentials.apply(token_endpoint, &mut form, &mut headers)?;
        form.finish()
    };
    let resp = http.post_form(token_endpoint, body, &headers).await?;
    if !resp.status.is_success() {
        let error = serde_json::from_slice::<RawError>(&resp.body)
            .ok()
            .and_then(|e| e.error)
            .map(|e| sanitize_code(&e))
            .unwrap_or_default();
        return Err(ExchangeError::Refused {
            status: resp.status.as_u16(),
            error,
        });
    }
    parse_token_response(&resp.body)
}

/// Parses a successful token response strictly: `access_token` and a
/// `Bearer` `token_type` are required.
pub(crate) fn parse_token_response(body: &[u8]) -> Result<TokenResponse, ExchangeError> {
    let raw: RawTokenResponse =
        serde_json::from_slice(body).map_err(|_| ExchangeError::Malformed("not a JSON object"))?;
    let access_token = raw
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or(ExchangeError::Malformed("access_token missing"))?;
    match raw.token_type {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        Some(_) => return Err(ExchangeError::Malformed("token_type is not Bearer")),
        None => return Err(ExchangeError::Malformed("token_type missing")),
    }
    let expires_in = match raw.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    Ok(TokenResponse {
        access_token: Secret::new(access_token),
        id_token: raw.id_token.filter(|t| !t.is_empty()),
        refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
        expires_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_form_encodes_id_and_secret() {
        let c = ClientCredentials {
            client_id: "my client".into(),
            client_secret: Secret::new("p@ss:w/rd+%"),
            method: ClientAuth::ClientSecretBasic,
            assertion_key: None,
        };
        let v = c.basic_header();
        let b64 = v.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
        assert_eq!(decoded, "my+client:p%40ss%3Aw%2Frd%2B%25");
        assert!(v.is_sensitive());
    }

    #[test]
    fn token_response_requires_access_token_and_bearer_type() {
        assert!(parse_token_response(
            br#"{"access_token":"a","token_type":"bearer","id_token":"x.y.z","expires_in":"60"}"#
        )
        .is_ok());
        assert!(matches!(
            parse_token_response(br#"{"token_type":"Bearer"}"#),
            Err(ExchangeError::Malformed(_))
        ));
        assert!(matches!(
            parse_token_response(br#"{"access_token":"a","token_type":"mac"}"#),
            Err(ExchangeError::Malformed(_))
        ));
        assert!(matches!(
            parse_token_response(b"<html>"),
            Err(ExchangeError::Malformed(_))
        ));
    }

    #[test]
    fn token_response_debug_redacts_tokens() {
        let t = parse_token_response(
            br#"{"access_token":"AT-secret","token_type":"Bearer","id_token":"ID-secret","refresh_token":"RT-secret"}"#,
        )
        .unwrap();
        let d = format!("{t:?}");
        assert!(!d.contains("secret"), "{d}");
    }

    #[test]
    fn sanitize_code_drops_markup_and_bounds_length() {
        assert_eq!(sanitize_code("invalid_grant"), "invalid_grant");
        assert_eq!(sanitize_code("<script>x"), "scriptx");
        assert_eq!(sanitize_code(&"a".repeat(100)).len(), 64);
    }
}
