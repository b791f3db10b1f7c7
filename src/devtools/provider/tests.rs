#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic")]

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::*;

// ===== helpers =====

const REDIRECT: &str = "http://127.0.0.1:9/oauth2/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-verifier-0123456789";

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }

    fn location(&self) -> url::Url {
        url::Url::parse(self.headers[header::LOCATION].to_str().unwrap()).unwrap()
    }
}

async fn send(req: Request<Full<Bytes>>) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client.request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn get(url: &str) -> Reply {
    send(Request::get(url).body(Full::new(Bytes::new())).unwrap()).await
}

async fn post_form(url: &str, pairs: &[(&str, &str)], basic: Option<&str>) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let mut req =
        Request::post(url).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(basic) = basic {
        req = req.header(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode(basic)),
        );
    }
    send(req.body(Full::new(Bytes::from(body))).unwrap()).await
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorize_url(op: &DevProvider, extra: &[(&str, &str)]) -> String {
    let challenge = challenge(VERIFIER);
    let mut url = url::Url::parse(&format!("{}/authorize", op.issuer())).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", op.client_id())
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid email profile")
        .append_pair("state", "the-state")
        .append_pair("nonce", "the-nonce")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .extend_pairs(extra);
    url.to_string()
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A provider with the published test keys (fast: no RSA key generation).
async fn start() -> DevProvider {
    let op = DevProvider::builder()
        .insecure_fixed_keys()
        .client_id("gateway")
        .client_secret("s3cret")
        .start()
        .await
        .unwrap();
    op.set_auto_login(Some("alice"));
    op
}

/// Runs authorize with auto-login and returns the code.
async fn code(op: &DevProvider) -> String {
    let reply = get(&authorize_url(op, &[])).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.text());
    param(&reply.location(), "code").unwrap()
}

async fn exchange(op: &DevProvider, code: &str, verifier: &str) -> Reply {
    post_form(
        &format!("{}/token", op.issuer()),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
        Some("gateway:s3cret"),
    )
    .await
}

/// A full flow; returns the token response (which must be 200).
async fn tokens(op: &DevProvider) -> Value {
    let code = code(op).await;
    let reply = exchange(op, &code, VERIFIER).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

async fn jwks(op: &DevProvider) -> JwkSet {
    let reply = get(&format!("{}/jwks", op.issuer())).await;
    assert_eq!(reply.status, StatusCode::OK);
    serde_json::from_slice(&reply.body).unwrap()
}

/// Validates an ID token the way a relying party would.
async fn validate_id_token(
    op: &DevProvider,
    token: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let header = jsonwebtoken::decode_header(token)?;
    let set = jwks(op).await;
    let Some(jwk) = header.kid.as_deref().and_then(|kid| set.find(kid)) else {
        return Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into());
    };
    let key = DecodingKey::from_jwk(jwk)?;
    // Allow-list, then one algorithm per key (jsonwebtoken refuses a list
    // that mixes key families).
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        return Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into());
    }
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[op.issuer()]);
    validation.set_audience(&[op.client_id()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).map(|d| d.claims)
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

// ===== discovery, JWKS, lifecycle =====

#[tokio::test]
async fn discovery_document_lists_endpoints_and_capabilities() {
    let op = start().await;
    assert!(op.issuer().starts_with("http://127.0.0.1:"));
    assert!(!op.issuer().ends_with('/'));
    let doc = get(&op.discovery_url()).await.json();
    assert_eq!(doc["issuer"], op.issuer());
    for (key, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks"),
        ("end_session_endpoint", "/end_session"),
    ] {
        assert_eq!(doc[key], format!("{}{path}", op.issuer()));
    }
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256", "ES256"])
    );
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(doc["backchannel_logout_supported"], true);
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(op.counters().discovery, 1);
}

#[tokio::test]
async fn jwks_serves_standard_rsa_and_ec_keys() {
    let op = start().await;
    let raw = get(&format!("{}/jwks", op.issuer())).await.json();
    let keys = raw["keys"].as_array().unwrap();
    let rsa = keys.iter().find(|k| k["kty"] == "RSA").unwrap();
    for member in ["kid", "use", "alg", "n", "e"] {
        assert!(rsa[member].is_string(), "{member}");
    }
    assert_eq!(rsa["alg"], "RS256");
    assert_eq!(rsa["e"], "AQAB");
    let ec = keys.iter().find(|k| k["kty"] == "EC").unwrap();
    assert_eq!(ec["crv"], "P-256");
    assert_eq!(ec["alg"], "ES256");
    assert!(ec["x"].is_string() && ec["y"].is_string());
    assert_eq!(rsa["kid"], op.rsa_kid());
    assert_eq!(ec["kid"], op.ec_kid());
}

#[tokio::test]
async fn provider_dropped_stops_listening() {
    let op = start().await;
    let addr = op.addr();
    op.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn generated_keys_differ_from_test_keys() {
    let op = DevProvider::builder().start().await.unwrap();
    let test = DevProvider::builder()
        .insecure_fixed_keys()
        .start()
        .await
        .unwrap();
    assert_ne!(op.rsa_kid(), test.rsa_kid());
    assert_ne!(op.ec_kid(), test.ec_kid());
}

#[tokio::test]
async fn default_keys_are_made_per_provider() {
    let a = DevProvider::builder().start().await.unwrap();
    let b = DevProvider::builder().start().await.unwrap();
    assert_ne!(a.rsa_kid(), b.rsa_kid());
    assert_ne!(a.ec_kid(), b.ec_kid());
    let fixed = KeySet::from_pkcs8_pems(TEST_RSA_PRIVATE_KEY_PEM, TEST_EC_PRIVATE_KEY_PEM).unwrap();
    assert_ne!(a.rsa_kid(), fixed.rsa.kid);
    assert_ne!(a.ec_kid(), fixed.ec.kid);
}

#[tokio::test]
async fn insecure_fixed_keys_are_the_published_test_keys() {
    let a = DevProvider::builder()
        .insecure_fixed_keys()
        .start()
        .await
        .unwrap();
    let b = DevProvider::builder()
        .insecure_fixed_keys()
        .start()
        .await
        .unwrap();
    let fixed = KeySet::from_pkcs8_pems(TEST_RSA_PRIVATE_KEY_PEM, TEST_EC_PRIVATE_KEY_PEM).unwrap();
    assert_eq!(a.rsa_kid(), fixed.rsa.kid);
    assert_eq!(a.ec_kid(), fixed.ec.kid);
    assert_eq!(a.jwks(), b.jwks());
    assert!(format!("{:?}", DevProvider::builder().insecure_fixed_keys()).contains("insecure"));
}

// ===== the code flow =====

#[tokio::test]
async fn code_flow_with_pkce_returns_valid_id_token() {
    let op = start().await;
    let reply = get(&authorize_url(&op, &[])).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    let location = reply.location();
    assert!(location.as_str().starts_with(REDIRECT));
    assert_eq!(param(&location, "state").as_deref(), Some("the-state"));
    assert_eq!(param(&location, "iss").as_deref(), Some(op.issuer()));
    let code = param(&location, "code").unwrap();

    let reply = exchange(&op, &code, VERIFIER).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["refresh_token"].is_string());

    let claims = validate_id_token(&op, body["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["nonce"], "the-nonce");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["name"], "Alice");
    assert_eq!(claims["groups"], json!(["users"]));
    assert!(claims["sid"].is_string());
    let at_hash = URL_SAFE_NO_PAD
        .encode(&Sha256::digest(body["access_token"].as_str().unwrap().as_bytes())[..16]);
    assert_eq!(claims["at_hash"], at_hash);

    // The access token is a JWT for the client too.
    let access = validate_id_token(&op, body["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(access["scope"], "openid email profile");
    assert!(access["nbf"].is_u64());

    let counters = op.counters();
    assert_eq!(counters.authorize, 1);
    assert_eq!(counters.token, 1);
    assert_eq!(counters.token_client_secret_basic, 1);
    assert_eq!(counters.jwks, 2);
}

#[tokio::test]
async fn code_flow_es256_signs_with_ec_key() {
    let op = DevProvider::builder()
        .client_secret("s3cret")
        .signing_alg(SigningAlg::Es256)
        .auto_login("bob")
        .start()
        .await
        .unwrap();
    let body = tokens(&op).await;
    let token = body["id_token"].as_str().unwrap();
    assert_eq!(header_of(token)["alg"], "ES256");
    assert_eq!(header_of(token)["kid"], op.ec_kid());
    let claims = validate_id_token(&op, token).await.unwrap();
    assert_eq!(claims["sub"], "bob");
}

#[tokio::test]
async fn login_form_logs_in_any_user_name() {
    let op = start().await;
    op.set_auto_login(None);
    let reply = get(&authorize_url(&op, &[])).await;
    assert_eq!(reply.status, StatusCode::OK);
    let page = reply.text();
    assert!(page.contains("name=\"username\""));
    let pending = page
        .split("name=\"pending\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();

    let login = format!("{}/authorize/login", op.issuer());
    let empty = post_form(&login, &[("username", ""), ("pending", &pending)], None).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);

    let reply = post_form(
        &login,
        &[("username", "carol"), ("pending", &pending)],
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.text());
    let code = param(&reply.location(), "code").unwrap();
    assert_eq!(
        param(&reply.location(), "state").as_deref(),
        Some("the-state")
    );
    let body = exchange(&op, &code, VERIFIER).await.json();
    assert_eq!(
        claims_of(body["id_token"].as_str().unwrap())["sub"],
        "carol"
    );

    // The pending id is single-use.
    let again = post_form(
        &login,
        &[("username", "carol"), ("pending", &pending)],
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(op.counters().login, 3);
}

#[tokio::test]
async fn form_post_response_mode_renders_auto_submitting_form() {
    let op = start().await;
    let reply = get(&authorize_url(&op, &[("response_mode", "form_post")])).await;
    assert_eq!(reply.status, StatusCode::OK);
    let page = reply.text();
    assert!(page.contains(&format!("action=\"{REDIRECT}\"")));
    assert!(page.contains("name=\"code\""));
    assert!(page.contains("name=\"state\" value=\"the-state\""));
    assert!(page.contains(&format!("name=\"iss\" value=\"{}\"", op.issuer())));
    assert!(page.contains("submit()"));
}

#[tokio::test]
async fn prompt_none_without_session_redirects_login_required() {
    let op = start().await;
    op.set_auto_login(None);
    let reply = get(&authorize_url(&op, &[("prompt", "none")])).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(
        param(&reply.location(), "error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn authorize_unknown_client_or_redirect_shows_error_page() {
    let op = DevProvider::builder()
        .add_redirect_uri(REDIRECT)
        .auto_login("alice")
        .start()
        .await
        .unwrap();
    let bad_client = authorize_url(&op, &[]).replace("client_id=gateway", "client_id=evil");
    assert_eq!(get(&bad_client).await.status, StatusCode::BAD_REQUEST);
    let bad_redirect = authorize_url(&op, &[]).replace("9%2Foauth2", "9%2Fevil");
    assert_eq!(get(&bad_redirect).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        get(&authorize_url(&op, &[])).await.status,
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn authorize_without_pkce_is_refused() {
    let op = start().await;
    let url = format!(
        "{}/authorize?response_type=code&client_id=gateway&redirect_uri={}&state=s",
        op.issuer(),
        REDIRECT
    );
    let reply = get(&url).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(
        param(&reply.location(), "error").as_deref(),
        Some("invalid_request")
    );
    let plain = authorize_url(&op, &[]).replace("S256", "plain");
    let reply = get(&plain).await;
    assert_eq!(
        param(&reply.location(), "error").as_deref(),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn last_authorize_request_records_parameters() {
    let op = start().await;
    code(&op).await;
    let params = op.last_authorize_request().unwrap();
    assert!(params.contains(&("nonce".to_owned(), "the-nonce".to_owned())));
    assert!(params.contains(&("code_challenge_method".to_owned(), "S256".to_owned())));
}

// ===== the token endpoint =====

#[tokio::test]
async fn code_reuse_is_refused() {
    let op = start().await;
    let code = code(&op).await;
    let first = exchange(&op, &code, VERIFIER).await;
    assert_eq!(first.status, StatusCode::OK);
    let refresh_token = first.json()["refresh_token"].as_str().unwrap().to_owned();
    let second = exchange(&op, &code, VERIFIER).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(second.json()["error"], "invalid_grant");
    // Replaying the code revoked the refresh token it produced.
    let refresh = post_form(
        &format!("{}/token", op.issuer()),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
        Some("gateway:s3cret"),
    )
    .await;
    assert_eq!(refresh.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pkce_mismatch_is_refused() {
    let op = start().await;
    let code1 = code(&op).await;
    let wrong = "x".repeat(50);
    let reply = exchange(&op, &code1, &wrong).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_grant");

    let code2 = code(&op).await;
    let reply = post_form(
        &format!("{}/token", op.issuer()),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code2),
            ("redirect_uri", REDIRECT),
        ],
        Some("gateway:s3cret"),
    )
    .await;
    assert_eq!(reply.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn redirect_uri_mismatch_is_refused() {
    let op = start().await;
    let code = code(&op).await;
    let reply = post_form(
        &format!("{}/token", op.issuer()),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/oauth2/callback/"),
            ("code_verifier", VERIFIER),
        ],
        Some("gateway:s3cret"),
    )
    .await;
    assert_eq!(reply.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn expired_code_is_refused() {
    let op = DevProvider::builder()
        .client_secret("s3cret")
        .code_ttl(Duration::from_millis(1))
        .auto_login("alice")
        .start()
        .await
        .unwrap();
    let code = code(&op).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        exchange(&op, &code, VERIFIER).await.json()["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn client_auth_wrong_secret_is_401_invalid_client() {
    let op = start().await;
    let code = code(&op).await;
    let reply = post_form(
        &format!("{}/token", op.issuer()),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        Some("gateway:wrong"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["error"], "invalid_client");
    assert!(reply.headers.contains_key(header::WWW_AUTHENTICATE));
}

#[tokio::test]
async fn client_secret_basic_credentials_are_form_url_decoded() {
    let op = DevProvider::builder()
        .client_id("my client")
        .client_secret("p@ss:w+rd%")
        .auto_login("alice")
        .start()
        .await
        .unwrap();
    let code = code(&op).await;
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let basic = format!("{}:{}", encode("my client"), encode("p@ss:w+rd%"));
    let reply = post_form(
        &format!("{}/token", op.issuer()),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        Some(&basic),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

#[tokio::test]
async fn client_secret_post_works_and_both_methods_are_refused() {
    let op = start().await;
    let code1 = code(&op).await;
    let token_url = format!("{}/token", op.issuer());
    let base = [
        ("grant_type", "authorization_code"),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", "gateway"),
        ("client_secret", "s3cret"),
    ];
    let mut pairs = base.to_vec();
    pairs.push(("code", &code1));
    let reply = post_form(&token_url, &pairs, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(op.counters().token_client_secret_post, 1);

    let code2 = code(&op).await;
    let mut pairs = base.to_vec();
    pairs.push(("code", &code2));
    let reply = post_form(&token_url, &pairs, Some("gateway:s3cret")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_request");
}

#[tokio::test]
async fn client_auth_restricted_to_post_refuses_basic() {
    let op = DevProvider::builder()
        .client_secret("s3cret")
        .client_auth(ClientAuth::ClientSecretPost)
        .auto_login("alice")
        .start()
        .await
        .unwrap();
    let code = code(&op).await;
    let reply = exchange(&op, &code, VERIFIER).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_old_one_is_invalid() {
    let op = start().await;
    let first = tokens(&op).await;
    let token_url = format!("{}/token", op.issuer());
    let rt1 = first["refresh_token"].as_str().unwrap();
    let reply = post_form(
        &token_url,
        &[("grant_type", "refresh_token"), ("refresh_token", rt1)],
        Some("gateway:s3cret"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let second = reply.json();
    let rt2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2);
    let claims = validate_id_token(&op, second["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert!(claims.get("nonce").is_none());
    assert_eq!(
        claims["sid"],
        claims_of(first["id_token"].as_str().unwrap())["sid"]
    );

    // Reusing the old one fails and revokes the rotated one too.
    let reuse = post_form(
        &token_url,
        &[("grant_type", "refresh_token"), ("refresh_token", rt1)],
        Some("gateway:s3cret"),
    )
    .await;
    assert_eq!(reuse.status, StatusCode::BAD_REQUEST);
    assert_eq!(reuse.json()["error"], "invalid_grant");
    let after = post_form(
        &token_url,
        &[("grant_type", "refresh_token"), ("refresh_token", rt2)],
        Some("gateway:s3cret"),
    )
    .await;
    assert_eq!(after.status, StatusCode::BAD_REQUEST);
    assert_eq!(op.counters().refresh, 1);
}

#[tokio::test]
async fn refresh_tokens_can_be_disabled() {
    let op = DevProvider::builder()
        .client_secret("s3cret")
        .issue_refresh_tokens(false)
        .auto_login("alice")
        .start()
        .await
        .unwrap();
    assert!(tokens(&op).await.get("refresh_token").is_none());
}

#[tokio::test]
async fn token_endpoint_rejects_non_form_and_unknown_grant() {
    let op = start().await;
    let token_url = format!("{}/token", op.issuer());
    let reply = send(
        Request::post(&token_url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = post_form(
        &token_url,
        &[("grant_type", "password")],
        Some("gateway:s3cret"),
    )
    .await;
    assert_eq!(reply.json()["error"], "unsupported_grant_type");
}

// ===== userinfo, end_session, users =====

#[tokio::test]
async fn userinfo_returns_claims_for_access_token() {
    let op = start().await;
    op.set_user_claims(
        "alice",
        json!({"groups": ["users", "admins"], "email": null}),
    );
    let body = tokens(&op).await;
    let access = body["access_token"].as_str().unwrap();
    let reply = send(
        Request::get(format!("{}/userinfo", op.issuer()))
            .header(header::AUTHORIZATION, format!("Bearer {access}"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let info = reply.json();
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["groups"], json!(["users", "admins"]));
    assert!(info.get("email").is_none());
    assert_eq!(
        claims_of(body["id_token"].as_str().unwrap())["groups"],
        json!(["users", "admins"])
    );

    let reply = send(
        Request::get(format!("{}/userinfo", op.issuer()))
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", corrupt_signature(access)),
            )
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(op.counters().userinfo, 2);
}

#[tokio::test]
async fn end_session_redirects_to_post_logout_uri() {
    let op = start().await;
    let reply = get(&format!(
        "{}/end_session?post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fbye&state=xyz",
        op.issuer()
    ))
    .await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(
        reply.location().as_str(),
        "http://127.0.0.1:9/bye?state=xyz"
    );
    let reply = get(&format!("{}/end_session", op.issuer())).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(op.counters().end_session, 2);
}

// ===== minting =====

#[tokio::test]
async fn mint_access_token_validates_against_jwks() {
    let op = start().await;
    let token = op.mint_access_token(json!({"sub": "dave", "groups": ["ops"]}));
    let claims = validate_id_token(&op, &token).await.unwrap();
    assert_eq!(claims["sub"], "dave");
    assert_eq!(claims["email"], "dave@example.com");
    assert_eq!(claims["groups"], json!(["ops"]));
    assert_eq!(claims["aud"], "gateway");
    let expired = op.mint_access_token(json!({"exp": 1000}));
    assert!(validate_id_token(&op, &expired).await.is_err());
}

#[tokio::test]
async fn sign_with_overrides_header() {
    let op = start().await;
    let token = op.sign_with(Signer::Rs256, json!({"kid": "nope"}), &json!({"sub": "x"}));
    assert_eq!(header_of(&token)["kid"], "nope");
    let token = op.sign_with(
        Signer::Hs256(b"k".to_vec()),
        Value::Null,
        &json!({"sub": "x"}),
    );
    assert_eq!(header_of(&token)["alg"], "HS256");
}

#[tokio::test]
async fn logout_token_has_backchannel_event() {
    let op = start().await;
    let token = op.mint_logout_token(Some("alice"), None);
    let claims = validate_id_token(&op, &token).await.unwrap();
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("sid").is_none());
    assert!(claims.get("nonce").is_none());
    assert_eq!(header_of(&token)["typ"], "logout+jwt");
}

// ===== keys =====

#[tokio::test]
async fn rotate_keys_switches_kid_and_keeps_old_when_asked() {
    let op = start().await;
    let old_kid = op.rsa_kid();
    let old_token = tokens(&op).await["id_token"].as_str().unwrap().to_owned();
    op.rotate_keys().unwrap();
    let new_kid = op.rsa_kid();
    assert_ne!(old_kid, new_kid);
    let set = jwks(&op).await;
    assert!(set.find(&new_kid).is_some());
    assert!(set.find(&old_kid).is_some());
    let token = tokens(&op).await["id_token"].as_str().unwrap().to_owned();
    assert_eq!(header_of(&token)["kid"], new_kid.as_str());
    validate_id_token(&op, &token).await.unwrap();
    validate_id_token(&op, &old_token).await.unwrap();

    op.rotate_keys_keep_old(false);
    op.rotate_keys().unwrap();
    let set = jwks(&op).await;
    assert!(set.find(&old_kid).is_none());
    assert!(set.find(&new_kid).is_none());
    assert_eq!(set.keys.len(), 2);
}

// ===== faults =====

/// Runs the flow with `fault` and returns the ID token.
async fn id_token_with(fault: Fault) -> (DevProvider, String) {
    let op = start().await;
    op.set_fault(fault);
    let body = tokens(&op).await;
    let token = body["id_token"].as_str().unwrap().to_owned();
    (op, token)
}

#[tokio::test]
async fn fault_bad_signature_fails_validation_only_on_signature() {
    let (op, token) = id_token_with(Fault::BadSignature).await;
    let err = validate_id_token(&op, &token).await.unwrap_err();
    assert_eq!(
        *err.kind(),
        jsonwebtoken::errors::ErrorKind::InvalidSignature
    );
    op.clear_faults();
    assert!(op.faults().is_empty());
    let token = tokens(&op).await["id_token"].as_str().unwrap().to_owned();
    validate_id_token(&op, &token).await.unwrap();
}

#[tokio::test]
async fn fault_alg_none_has_none_header_and_empty_signature() {
    let (_op, token) = id_token_with(Fault::AlgNone).await;
    assert_eq!(header_of(&token)["alg"], "none");
    assert!(header_of(&token).get("kid").is_none());
    assert!(token.ends_with('.'));
    assert_eq!(claims_of(&token)["nonce"], "the-nonce");
}

#[tokio::test]
async fn fault_hs256_with_rsa_public_key_verifies_with_hmac_of_pem() {
    let (op, token) = id_token_with(Fault::Hs256WithRsaPublicKey).await;
    assert_eq!(header_of(&token)["alg"], "HS256");
    assert_eq!(header_of(&token)["kid"], op.rsa_kid());
    let pem = op.rsa_public_key_pem();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&["gateway"]);
    jsonwebtoken::decode::<Value>(
        &token,
        &DecodingKey::from_secret(pem.as_bytes()),
        &validation,
    )
    .unwrap();
    assert!(validate_id_token(&op, &token).await.is_err());
}

#[tokio::test]
async fn fault_unknown_kid_names_key_absent_from_jwks() {
    let (op, token) = id_token_with(Fault::UnknownKid).await;
    let kid = header_of(&token)["kid"].as_str().unwrap().to_owned();
    assert!(jwks(&op).await.find(&kid).is_none());
    // Otherwise genuine: verifies with the current key.
    assert!(op.shared.keys.read().verify(&token).is_none());
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["gateway"]);
    let set = jwks(&op).await;
    let key = DecodingKey::from_jwk(set.find(&op.rsa_kid()).unwrap()).unwrap();
    jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
}

#[tokio::test]
async fn fault_claims_are_hostile_but_signed() {
    let now = now();
    type Check = Box<dyn Fn(&Value) -> bool>;
    let cases: Vec<(Fault, Check)> = vec![
        (
            Fault::WrongIssuer,
            Box::new(|c| c["iss"] == ATTACKER_ISSUER),
        ),
        (
            Fault::WrongAudience,
            Box::new(|c| c["aud"] == OTHER_AUDIENCE),
        ),
        (
            Fault::MultipleAudiencesWithoutAzp,
            Box::new(|c| c["aud"] == json!(["gateway", OTHER_AUDIENCE]) && c.get("azp").is_none()),
        ),
        (
            Fault::WrongAzp,
            Box::new(|c| c["aud"].is_array() && c["azp"] == OTHER_AUDIENCE),
        ),
        (
            Fault::WrongNonce,
            Box::new(|c| c["nonce"].is_string() && c["nonce"] != "the-nonce"),
        ),
        (Fault::MissingNonce, Box::new(|c| c.get("nonce").is_none())),
        (
            Fault::Expired,
            Box::new(move |c| c["exp"].as_u64().unwrap() < now),
        ),
        (
            Fault::IssuedInFuture,
            Box::new(move |c| c["iat"].as_u64().unwrap() > now + 3600),
        ),
        (Fault::MissingSub, Box::new(|c| c.get("sub").is_none())),
        (Fault::WrongAtHash, Box::new(|c| c["at_hash"].is_string())),
    ];
    for (fault, check) in cases {
        let (op, token) = id_token_with(fault.clone()).await;
        let claims = claims_of(&token);
        assert!(check(&claims), "{fault:?}: {claims}");
        // Only the claim is wrong: the signature is genuine.
        assert!(op.shared.keys.read().verify(&token).is_some(), "{fault:?}");
    }
}

#[tokio::test]
async fn fault_wrong_at_hash_differs_from_access_token_hash() {
    let op = start().await;
    op.set_fault(Fault::WrongAtHash);
    let body = tokens(&op).await;
    let expected = URL_SAFE_NO_PAD
        .encode(&Sha256::digest(body["access_token"].as_str().unwrap().as_bytes())[..16]);
    assert_ne!(
        claims_of(body["id_token"].as_str().unwrap())["at_hash"],
        expected
    );
}

#[tokio::test]
async fn fault_token_endpoint_error_returns_given_status_and_body() {
    let op = start().await;
    op.set_fault(Fault::TokenEndpointError {
        status: 503,
        body: r#"{"error":"temporarily_unavailable"}"#.to_owned(),
    });
    let code = code(&op).await;
    let reply = exchange(&op, &code, VERIFIER).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["error"], "temporarily_unavailable");
}

#[tokio::test]
async fn fault_malformed_token_response_is_not_json() {
    let op = start().await;
    op.set_fault(Fault::MalformedTokenResponse);
    let code = code(&op).await;
    let reply = exchange(&op, &code, VERIFIER).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());
}

#[tokio::test]
async fn fault_oversized_token_response_has_requested_size() {
    let op = start().await;
    op.set_fault(Fault::OversizedTokenResponse(5 * 1024 * 1024));
    let code = code(&op).await;
    let reply = exchange(&op, &code, VERIFIER).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), 5 * 1024 * 1024);
}

#[tokio::test]
async fn fault_token_endpoint_delay_delays_answer() {
    let op = start().await;
    op.set_fault(Fault::TokenEndpointDelay(Duration::from_millis(300)));
    let code = code(&op).await;
    let started = std::time::Instant::now();
    let reply = exchange(&op, &code, VERIFIER).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn fault_missing_id_token_omits_it() {
    let op = start().await;
    op.set_fault(Fault::MissingIdToken);
    let body = tokens(&op).await;
    assert!(body.get("id_token").is_none());
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn fault_redirect_faults_alter_callback_parameters() {
    let op = start().await;
    op.set_fault(Fault::WrongState);
    let location = get(&authorize_url(&op, &[])).await.location();
    let state = param(&location, "state").unwrap();
    assert_ne!(state, "the-state");
    assert!(param(&location, "code").is_some());

    op.clear_faults();
    op.set_fault(Fault::WrongIssParam);
    let location = get(&authorize_url(&op, &[])).await.location();
    assert_eq!(param(&location, "iss").as_deref(), Some(ATTACKER_ISSUER));
    assert_eq!(param(&location, "state").as_deref(), Some("the-state"));

    op.clear_faults();
    op.set_fault(Fault::ErrorRedirect);
    let location = get(&authorize_url(&op, &[])).await.location();
    assert_eq!(param(&location, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&location, "state").as_deref(), Some("the-state"));
    assert!(param(&location, "code").is_none());
}

#[tokio::test]
async fn fault_discovery_and_jwks_faults() {
    let op = start().await;
    op.set_fault(Fault::JwksUnavailable);
    assert_eq!(
        get(&format!("{}/jwks", op.issuer())).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    op.set_fault(Fault::DiscoveryIssuerMismatch);
    let doc = get(&op.discovery_url()).await.json();
    assert_eq!(doc["issuer"], ATTACKER_ISSUER);
    assert_eq!(doc["token_endpoint"], format!("{}/token", op.issuer()));
    op.set_fault(Fault::DiscoveryUnavailable);
    assert_eq!(
        get(&op.discovery_url()).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(op.faults().len(), 3);
    op.clear_faults();
    assert_eq!(
        get(&format!("{}/jwks", op.issuer())).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn fault_malformed_jwks_is_not_a_key_set() {
    let op = start().await;
    op.set_fault(Fault::MalformedJwks);
    let reply = get(&format!("{}/jwks", op.issuer())).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());
    op.clear_faults();
    assert_eq!(jwks(&op).await.keys.len(), 2);
}

#[tokio::test]
async fn fault_response_delay_holds_every_endpoint() {
    let op = start().await;
    op.set_fault(Fault::ResponseDelay(Duration::from_millis(300)));
    for url in [op.discovery_url(), format!("{}/jwks", op.issuer())] {
        let t = std::time::Instant::now();
        assert_eq!(get(&url).await.status, StatusCode::OK);
        assert!(t.elapsed() >= Duration::from_millis(300), "{url}");
    }
}

#[tokio::test]
async fn stop_and_resume_serving_keeps_address_and_keys() {
    let mut op = start().await;
    let kid = op.rsa_kid();
    op.stop_serving();
    let addr = op.addr();
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "stopped provider still accepts connections");
    op.resume_serving().await.unwrap();
    assert_eq!(op.addr(), addr);
    let set = jwks(&op).await;
    assert!(set
        .keys
        .iter()
        .any(|k| k.common.key_id.as_deref() == Some(kid.as_str())));
}

#[tokio::test]
async fn fault_userinfo_sub_mismatch_and_unavailable() {
    let op = start().await;
    let access = tokens(&op).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let userinfo = || {
        send(
            Request::get(format!("{}/userinfo", op.issuer()))
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    };
    op.set_fault(Fault::UserinfoSubMismatch);
    assert_eq!(userinfo().await.json()["sub"], "someone-else");
    op.set_fault(Fault::UserinfoUnavailable);
    assert_eq!(userinfo().await.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn concurrent_flows_all_succeed() {
    let op = std::sync::Arc::new(start().await);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let op = std::sync::Arc::clone(&op);
        tasks.push(tokio::spawn(async move {
            let body = tokens(&op).await;
            validate_id_token(&op, body["id_token"].as_str().unwrap())
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let counters = op.counters();
    assert_eq!(counters.token, 16);
    assert_eq!(counters.jwks, 16);
}

#[tokio::test]
async fn debug_output_hides_client_secret() {
    let op = start().await;
    assert!(!format!("{op:?}").contains("s3cret"));
    assert!(!format!("{:?}", DevProvider::builder().client_secret("s3cret")).contains("s3cret"));
}

// ===== private_key_jwt =====

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

async fn start_pkjwt(private_pem: &str) -> DevProvider {
    DevProvider::builder()
        .insecure_fixed_keys()
        .client_id("gateway")
        .client_auth(ClientAuth::PrivateKeyJwt(
            public_key_pem(private_pem).unwrap(),
        ))
        .auto_login("alice")
        .start()
        .await
        .unwrap()
}

/// An assertion signed with `private_pem` (`alg` by key type), with the
/// standard claims for `op` merged with `overrides` (`null` removes).
fn assertion(op: &DevProvider, private_pem: &str, overrides: &Value) -> String {
    let (alg, key) = if private_pem == TEST_EC_PRIVATE_KEY_PEM {
        (
            Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
        )
    } else {
        (
            Algorithm::RS256,
            jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
        )
    };
    let now = super::now();
    let mut claims = json!({
        "iss": "gateway",
        "sub": "gateway",
        "aud": format!("{}/token", op.issuer()),
        "jti": random_token(16),
        "iat": now,
        "exp": now + 60,
    });
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key).unwrap()
}

fn random_token(n: usize) -> String {
    crate::devtools::http::random_token(n)
}

async fn exchange_with_assertion(
    op: &DevProvider,
    assertion: &str,
    extra: &[(&str, &str)],
    basic: Option<&str>,
) -> Reply {
    let code = code(op).await;
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", "gateway"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    for (k, v) in extra {
        pairs.retain(|(pk, _)| pk != k);
        if !v.is_empty() {
            pairs.push((k, v));
        }
    }
    post_form(&format!("{}/token", op.issuer()), &pairs, basic).await
}

#[tokio::test]
async fn private_key_jwt_accepts_valid_assertion_once() {
    let op = start_pkjwt(TEST_RSA_PRIVATE_KEY_PEM).await;
    let jwt = assertion(&op, TEST_RSA_PRIVATE_KEY_PEM, &json!({}));
    let reply = exchange_with_assertion(&op, &jwt, &[], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.json()["id_token"].is_string());
    assert_eq!(op.counters().token_private_key_jwt, 1);

    // The same assertion again (jti replay) is refused.
    let reply = exchange_with_assertion(&op, &jwt, &[], None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["error"], "invalid_client");
    assert!(reply.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("jti"));
    // client_id in the form is optional.
    let jwt = assertion(&op, TEST_RSA_PRIVATE_KEY_PEM, &json!({}));
    let reply = exchange_with_assertion(&op, &jwt, &[("client_id", "")], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

#[tokio::test]
async fn private_key_jwt_with_ec_key_and_discovery() {
    let op = start_pkjwt(TEST_EC_PRIVATE_KEY_PEM).await;
    let doc = get(&format!("{}/.well-known/openid-configuration", op.issuer()))
        .await
        .json();
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    let jwt = assertion(&op, TEST_EC_PRIVATE_KEY_PEM, &json!({}));
    let reply = exchange_with_assertion(&op, &jwt, &[], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    // An RSA-signed assertion does not verify with the EC key.
    let jwt = assertion(&op, TEST_RSA_PRIVATE_KEY_PEM, &json!({}));
    let reply = exchange_with_assertion(&op, &jwt, &[], None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn private_key_jwt_refuses_bad_assertions_with_invalid_client() {
    let op = start_pkjwt(TEST_RSA_PRIVATE_KEY_PEM).await;
    let other_rsa =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/gateway.key")).unwrap();
    let aud = format!("{}/token", op.issuer());
    let cases: Vec<(&str, String)> = vec![
        ("signature", assertion(&op, &other_rsa, &json!({}))),
        (
            "iss",
            assertion(&op, TEST_RSA_PRIVATE_KEY_PEM, &json!({"iss": "other"})),
        ),
        (
            "sub",
            assertion(&op, TEST_RSA_PRIVATE_KEY_PEM, &json!({"sub": "other"})),
        ),
        (
            "aud",
            assertion(
                &op,
                TEST_RSA_PRIVATE_KEY_PEM,
                &json!({"aud": "https://elsewhere/token"}),
            ),
        ),
        (
            "expired",
            assertion(
                &op,
                TEST_RSA_PRIVATE_KEY_PEM,
                &json!({"exp": super::now() - 10}),
            ),
        ),
        (
            "claim",
            assertion(&op, TEST_RSA_PRIVATE_KEY_PEM, &json!({"exp": null})),
        ),
        (
            "jti",
            assertion(&op, TEST_RSA_PRIVATE_KEY_PEM, &json!({"jti": null})),
        ),
        (
            "future",
            assertion(
                &op,
                TEST_RSA_PRIVATE_KEY_PEM,
                &json!({"exp": super::now() + 3600}),
            ),
        ),
        ("not a JWT", "not-a-jwt".to_string()),
    ];
    for (what, jwt) in &cases {
        let reply = exchange_with_assertion(&op, jwt, &[], None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(reply.json()["error"], "invalid_client", "{what}");
        let desc = reply.json()["error_description"].to_string();
        let key = match *what {
            "expired" => "expired",
            "claim" => "required claim",
            "future" => "too far",
            other => other,
        };
        assert!(desc.contains(key), "{what}: {desc}");
    }
    // Wrong assertion type, client_id mismatch.
    let jwt = assertion(&op, TEST_RSA_PRIVATE_KEY_PEM, &json!({}));
    let reply =
        exchange_with_assertion(&op, &jwt, &[("client_assertion_type", "urn:x")], None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let jwt = assertion(&op, TEST_RSA_PRIVATE_KEY_PEM, &json!({}));
    let reply = exchange_with_assertion(&op, &jwt, &[("client_id", "other")], None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // Two methods at once.
    let jwt = assertion(&op, TEST_RSA_PRIVATE_KEY_PEM, &json!({}));
    let reply = exchange_with_assertion(&op, &jwt, &[], Some("gateway:dev-secret")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_request");
    // A secret is not accepted from a private_key_jwt client.
    let code = code(&op).await;
    let reply = post_form(
        &aud,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        Some("gateway:dev-secret"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(op.counters().token_private_key_jwt, 0);
}

#[tokio::test]
async fn assertions_are_refused_unless_configured() {
    let op = start().await;
    let jwt = assertion(&op, TEST_RSA_PRIVATE_KEY_PEM, &json!({}));
    let reply = exchange_with_assertion(&op, &jwt, &[], None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["error"], "invalid_client");
}

#[tokio::test]
async fn private_key_jwt_needs_a_public_key_pem() {
    let err = DevProvider::builder()
        .client_auth(ClientAuth::PrivateKeyJwt("nope".into()))
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
