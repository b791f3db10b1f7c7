//! The token endpoint: client authentication, the `authorization_code` and
//! `refresh_token` grants, and the token endpoint faults.

use std::time::Instant;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::{header, HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::authorize::is_pkce_value;
use super::claims::{access_token_claims, access_token_header, id_token, IdTokenContext};
use super::endpoints::MAX_FORM_BODY;
use super::faults::Fault;
use super::{bump, ClientAuth, RefreshGrant, Shared};
use crate::devtools::http::{self as h, random_token, Resp};

/// An OAuth error response (RFC 6749 §5.2).
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// Add `WWW-Authenticate: Basic` (invalid_client after Basic auth).
    basic_challenge: bool,
}

impl OAuthError {
    pub(crate) fn bad_request(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    fn invalid_client(description: impl Into<String>, basic: bool) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: description.into(),
            basic_challenge: basic,
        }
    }

    fn invalid_grant(description: impl Into<String>) -> Self {
        Self::bad_request("invalid_grant", description)
    }

    pub(crate) fn into_response(self) -> Resp {
        let mut resp = h::json_no_store(
            self.status,
            &json!({"error": self.error, "error_description": self.description}),
        );
        if self.basic_challenge {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="dev-provider""#),
            );
        }
        resp
    }
}

pub(crate) async fn token(shared: &Shared, req: Request<Incoming>) -> Resp {
    bump(&shared.counters.token);
    if let Some(delay) = shared.faults.find(|f| match f {
        Fault::TokenEndpointDelay(d) => Some(*d),
        _ => None,
    }) {
        tokio::time::sleep(delay).await;
    }
    if let Some((status, body)) = shared.faults.find(|f| match f {
        Fault::TokenEndpointError { status, body } => Some((*status, body.clone())),
        _ => None,
    }) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return h::json_no_store(status, &Value::Null)
            .map(|_| http_body_util::Full::new(bytes::Bytes::from(body)));
    }
    if shared.faults.has(&Fault::MalformedTokenResponse) {
        return h::response(
            StatusCode::OK,
            "application/json",
            "<html><body>this is not a token response</body></html>",
        );
    }
    match exchange(shared, req).await {
        Ok(mut body) => {
            if shared.faults.has(&Fault::MissingIdToken) {
                if let Some(o) = body.as_object_mut() {
                    o.remove("id_token");
                }
            }
            if let Some(size) = shared.faults.find(|f| match f {
                Fault::OversizedTokenResponse(n) => Some(*n),
                _ => None,
            }) {
                return h::response(StatusCode::OK, "application/json", oversized(&body, size));
            }
            h::json_no_store(StatusCode::OK, &body)
        }
        Err(err) => err.into_response(),
    }
}

/// `body` with a `padding` member making the JSON exactly `size` bytes long
/// (or as short as possible when `size` is smaller than the body).
fn oversized(body: &Value, size: usize) -> Vec<u8> {
    let base = body.to_string();
    // `{...,"padding":""}`: base without its closing brace + member + brace.
    let overhead = base.len() - 1 + r#","padding":""}"#.len();
    let pad = size.saturating_sub(overhead);
    let mut out = Vec::with_capacity(overhead + pad);
    out.extend_from_slice(&base.as_bytes()[..base.len() - 1]);
    out.extend_from_slice(br#","padding":""#);
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(br#""}"#);
    out
}

/// The form of a client-authenticated request (token, introspection):
/// `application/x-www-form-urlencoded`, bounded, and authenticated with
/// the client's method.
pub(crate) async fn authenticated_form(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Vec<(String, String)>, OAuthError> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(OAuthError::bad_request(
            "invalid_request",
            "content-type must be application/x-www-form-urlencoded",
        ));
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let body = h::read_body(req.into_body(), MAX_FORM_BODY)
        .await
        .map_err(|_| OAuthError::bad_request("invalid_request", "request body too large"))?;
    let params = h::parse_form(&body);
    {
        let param = |name: &str| {
            h::single(&params, name).map_err(|()| {
                OAuthError::bad_request("invalid_request", format!("parameter {name} is repeated"))
            })
        };
        match (param("client_assertion_type")?, param("client_assertion")?) {
            (None, None) => authenticate_client(
                shared,
                authorization.as_deref(),
                param("client_id")?,
                param("client_secret")?,
            )?,
            (assertion_type, assertion) => {
                if authorization.is_some() || param("client_secret")?.is_some() {
                    return Err(OAuthError::bad_request(
                        "invalid_request",
                        "more than one client authentication method",
                    ));
                }
                authenticate_assertion(shared, param("client_id")?, assertion_type, assertion)?;
            }
        }
    }
    Ok(params)
}

async fn exchange(shared: &Shared, req: Request<Incoming>) -> Result<Value, OAuthError> {
    let params = authenticated_form(shared, req).await?;
    let param = |name: &str| {
        h::single(&params, name).map_err(|()| {
            OAuthError::bad_request("invalid_request", format!("parameter {name} is repeated"))
        })
    };

    match param("grant_type")? {
        Some("authorization_code") => authorization_code(
            shared,
            param("code")?,
            param("redirect_uri")?,
            param("code_verifier")?,
        ),
        Some("refresh_token") => refresh(shared, param("refresh_token")?),
        Some(_) => Err(OAuthError::bad_request(
            "unsupported_grant_type",
            "only authorization_code and refresh_token",
        )),
        None => Err(OAuthError::bad_request(
            "invalid_request",
            "grant_type is required",
        )),
    }
}

/// RFC 6749 §2.3.1: `client_secret_basic` (id and secret form-url-encoded
/// inside the Basic credentials) or `client_secret_post`, never both.
fn authenticate_client(
    shared: &Shared,
    authorization: Option<&[u8]>,
    body_id: Option<&str>,
    body_secret: Option<&str>,
) -> Result<(), OAuthError> {
    let (id, secret, basic) = match authorization {
        Some(value) => {
            let value = std::str::from_utf8(value)
                .map_err(|_| OAuthError::invalid_client("malformed authorization header", true))?;
            let (scheme, creds) = value.split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(OAuthError::invalid_client(
                    "unsupported authorization scheme",
                    true,
                ));
            }
            let decoded = STANDARD
                .decode(creds.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| OAuthError::invalid_client("malformed basic credentials", true))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_client("malformed basic credentials", true))?;
            let id = form_decode(id)
                .ok_or_else(|| OAuthError::invalid_client("malformed client id encoding", true))?;
            let secret = form_decode(secret).ok_or_else(|| {
                OAuthError::invalid_client("malformed client secret encoding", true)
            })?;
            if body_secret.is_some() {
                return Err(OAuthError::bad_request(
                    "invalid_request",
                    "more than one client authentication method",
                ));
            }
            if body_id.is_some_and(|b| b != id) {
                return Err(OAuthError::bad_request(
                    "invalid_request",
                    "client_id mismatch",
                ));
            }
            (id, secret, true)
        }
        None => match (body_id, body_secret) {
            (Some(id), Some(secret)) => (id.to_owned(), secret.to_owned(), false),
            _ => {
                return Err(OAuthError::invalid_client(
                    "client authentication required",
                    false,
                ))
            }
        },
    };
    let method_allowed = match shared.client_auth {
        ClientAuth::Any => true,
        ClientAuth::ClientSecretBasic => basic,
        ClientAuth::ClientSecretPost => !basic,
        ClientAuth::PrivateKeyJwt(_) => false,
    };
    if !method_allowed {
        return Err(OAuthError::invalid_client(
            "client authentication method not allowed for this client",
            basic,
        ));
    }
    let id_ok = id.as_bytes().ct_eq(shared.client_id.as_bytes());
    let secret_ok =
        Sha256::digest(secret.as_bytes()).ct_eq(&Sha256::digest(shared.client_secret.as_bytes()));
    if !bool::from(id_ok & secret_ok) {
        return Err(OAuthError::invalid_client(
            "client authentication failed",
            basic,
        ));
    }
    if basic {
        bump(&shared.counters.token_basic);
    } else {
        bump(&shared.counters.token_post);
    }
    Ok(())
}

/// `client_assertion_type` of `private_key_jwt`.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Assertions expiring further ahead than this are refused (they would
/// have to be remembered that long for replay detection).
const MAX_ASSERTION_LIFETIME: u64 = 300;

/// The public key that verifies the client's assertions.
pub(crate) struct ClientJwtKey {
    key: jsonwebtoken::DecodingKey,
    algorithms: Vec<jsonwebtoken::Algorithm>,
}

impl ClientJwtKey {
    /// An RSA (`RS*`, `PS*`) or EC P-256 (`ES256`) public key in PEM.
    pub(crate) fn from_pem(pem: &str) -> std::io::Result<Self> {
        use jsonwebtoken::{Algorithm as A, DecodingKey};
        if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
            return Ok(Self {
                key,
                algorithms: vec![A::RS256, A::RS384, A::RS512, A::PS256, A::PS384, A::PS512],
            });
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
            return Ok(Self {
                key,
                algorithms: vec![A::ES256],
            });
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "private_key_jwt: not an RSA or EC public key PEM",
        ))
    }
}

/// `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9).
fn authenticate_assertion(
    shared: &Shared,
    body_id: Option<&str>,
    assertion_type: Option<&str>,
    assertion: Option<&str>,
) -> Result<(), OAuthError> {
    let fail = |m: &str| Err(OAuthError::invalid_client(m, false));
    let Some(key) = &shared.client_jwt_key else {
        return fail("client authentication method not allowed for this client");
    };
    if assertion_type != Some(JWT_BEARER) {
        return fail("client_assertion_type must be jwt-bearer");
    }
    let Some(assertion) = assertion.filter(|a| !a.is_empty()) else {
        return fail("client_assertion is required");
    };
    let Ok(header) = jsonwebtoken::decode_header(assertion) else {
        return fail("client_assertion is not a JWT");
    };
    if !key.algorithms.contains(&header.alg) {
        return fail("client_assertion algorithm not allowed");
    }
    let token_endpoint = format!("{}/token", shared.issuer);
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[&shared.client_id]);
    validation.set_audience(&[&token_endpoint]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 0;
    let claims = match jsonwebtoken::decode::<Value>(assertion, &key.key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            use jsonwebtoken::errors::ErrorKind as K;
            let why = match e.kind() {
                K::InvalidSignature => "client_assertion signature is invalid",
                K::ExpiredSignature => "client_assertion has expired",
                K::InvalidIssuer => "client_assertion iss is not the client id",
                K::InvalidAudience => "client_assertion aud is not the token endpoint",
                K::MissingRequiredClaim(_) => "client_assertion lacks a required claim",
                _ => "client_assertion is invalid",
            };
            return fail(why);
        }
    };
    if claims.get("sub").and_then(Value::as_str) != Some(shared.client_id.as_str()) {
        return fail("client_assertion sub is not the client id");
    }
    if body_id.is_some_and(|id| id != shared.client_id) {
        return fail("client_id does not match the assertion");
    }
    let now = super::now();
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if exp > now + MAX_ASSERTION_LIFETIME {
        return fail("client_assertion expires too far in the future");
    }
    let Some(jti) = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
    else {
        return fail("client_assertion jti is required");
    };
    {
        let mut seen = shared.client_jtis.lock();
        seen.retain(|_, e| *e >= now);
        if seen.contains_key(jti) {
            return fail("client_assertion jti was already used");
        }
        seen.insert(jti.to_owned(), exp);
    }
    bump(&shared.counters.token_jwt);
    Ok(())
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn authorization_code(
    shared: &Shared,
    code: Option<&str>,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<Value, OAuthError> {
    let code =
        code.ok_or_else(|| OAuthError::bad_request("invalid_request", "code is required"))?;
    let grant = {
        let mut grants = shared.grants.lock();
        match grants.codes.remove(code) {
            Some(grant) => {
                grants
                    .used_codes
                    .insert(code.to_owned(), grant.family.clone());
                grant
            }
            None => {
                if let Some(family) = grants.used_codes.get(code).cloned() {
                    // RFC 6749 §4.1.2: revoke what the code produced.
                    grants.revoke_family(&family);
                    return Err(OAuthError::invalid_grant("code was already used"));
                }
                return Err(OAuthError::invalid_grant("unknown code"));
            }
        }
    };
    if grant.expires <= Instant::now() {
        return Err(OAuthError::invalid_grant("code expired"));
    }
    if redirect_uri != Some(grant.request.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant("redirect_uri does not match"));
    }
    match (&grant.request.code_challenge, verifier) {
        (Some(challenge), Some(verifier)) => {
            if !(43..=128).contains(&verifier.len()) || !is_pkce_value(verifier) {
                return Err(OAuthError::invalid_grant("malformed code_verifier"));
            }
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if !bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
                return Err(OAuthError::invalid_grant("code_verifier does not match"));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is required")),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier without a code_challenge",
            ))
        }
        (None, None) => {}
    }
    let refresh = RefreshGrant {
        user: grant.user,
        scope: grant.request.scope,
        sid: grant.sid,
        auth_time: grant.auth_time,
        family: grant.family,
    };
    Ok(issue(shared, refresh, grant.request.nonce.as_deref()))
}

fn refresh(shared: &Shared, token: Option<&str>) -> Result<Value, OAuthError> {
    let token = token
        .ok_or_else(|| OAuthError::bad_request("invalid_request", "refresh_token is required"))?;
    let grant = {
        let mut grants = shared.grants.lock();
        match grants.refresh.remove(token) {
            Some(grant) => {
                grants
                    .used_refresh
                    .insert(token.to_owned(), grant.family.clone());
                grant
            }
            None => {
                if let Some(family) = grants.used_refresh.get(token).cloned() {
                    // Reuse of a rotated token: assume theft, revoke the family.
                    grants.revoke_family(&family);
                    return Err(OAuthError::invalid_grant("refresh token was already used"));
                }
                return Err(OAuthError::invalid_grant("unknown refresh token"));
            }
        }
    };
    bump(&shared.counters.refresh);
    Ok(issue(shared, grant, None))
}

/// The token response for a grant.
fn issue(shared: &Shared, grant: RefreshGrant, nonce: Option<&str>) -> Value {
    let access_claims = access_token_claims(shared, &grant.user, &grant.scope);
    let access_token = shared.sign(&shared.signer(), &access_token_header(), &access_claims);
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": shared.access_token_ttl.as_secs(),
        "scope": grant.scope,
    });
    if grant.scope.split(' ').any(|s| s == "openid") {
        let ctx = IdTokenContext {
            nonce,
            sid: Some(&grant.sid),
            auth_time: Some(grant.auth_time),
            access_token: Some(&access_token),
        };
        body["id_token"] = json!(id_token(shared, &grant.user, &ctx));
    }
    if shared.issue_refresh_tokens {
        let refresh_token = random_token(32);
        body["refresh_token"] = json!(refresh_token);
        shared.grants.lock().refresh.insert(refresh_token, grant);
    }
    body
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic")]
mod tests {
    use super::*;

    #[test]
    fn form_decode_handles_plus_and_percent() {
        assert_eq!(form_decode("a+b%3Ac%25").as_deref(), Some("a b:c%"));
        assert!(form_decode("%ff").is_none());
    }

    #[test]
    fn oversized_body_has_exact_size_and_is_json() {
        let body = json!({"access_token": "x", "token_type": "Bearer"});
        let out = oversized(&body, 10_000);
        assert_eq!(out.len(), 10_000);
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["access_token"], "x");
    }
}
