//! Token verification with a pinned clock: every time rule at its edge,
//! and the claim and header rules that make a token the right kind.

use super::*;
use crate::clock::ManualClock;
use crate::provider::http::ProviderHttp;
use crate::provider::{KeySet, ProviderMetadata, ProviderRules};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use std::time::Duration;

const ISSUER: &str = "https://idp.example.com";
const CLIENT: &str = "gateway";
const NOW: u64 = 1_800_000_000;
const SKEW: u64 = 60;

/// An ES256 signer with a kid, its public key in a JWKS, and a verifier
/// over it whose clock stands at [`NOW`].
struct Fixture {
    key: EncodingKey,
    clock: Arc<ManualClock>,
    verifier: TokenVerifier,
}

fn fixture() -> Fixture {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let (x, y) = (&point[1..33], &point[33..65]);
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
    }]});
    let keys = KeySet::from_jwks_json(jwks.to_string().as_bytes()).unwrap();
    let config: crate::config::ProviderConfig = toml::from_str(&format!(
        "issuer = \"{ISSUER}\"\nclient_id = \"{CLIENT}\"\njwks_min_refresh_interval = \"1h\""
    ))
    .unwrap();
    let url = |p: &str| url::Url::parse(&format!("http://127.0.0.1:9{p}")).unwrap();
    let metadata = ProviderMetadata {
        issuer: ISSUER.into(),
        authorization_endpoint: url("/authorize"),
        token_endpoint: url("/token"),
        userinfo_endpoint: None,
        jwks_uri: Some(url("/jwks")),
        end_session_endpoint: None,
        iss_parameter_supported: false,
    };
    let http = ProviderHttp::new(None, Duration::from_millis(200), 1 << 20).unwrap();
    let provider = Arc::new(Provider::preloaded(
        ProviderRules::discovered(&config),
        http,
        metadata,
        keys,
    ));
    let clock = Arc::new(ManualClock::new(NOW));
    let verifier = TokenVerifier::new(
        provider,
        &[crate::config::SigningAlgorithm::ES256],
        CLIENT,
        &["api".to_string(), CLIENT.to_string()],
        SKEW,
    )
    .with_clock(clock.clone());
    Fixture {
        key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        clock,
        verifier,
    }
}

impl Fixture {
    fn sign_typed(&self, typ: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        header.typ = typ.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_typed(Some("JWT"), claims)
    }

    async fn id_token(&self, claims: Value) -> Result<(Identity, IdTokenInfo), TokenError> {
        self.verifier
            .verify_id_token(&self.sign(&claims), "n-1")
            .await
    }
}

fn id_claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "alice", "aud": CLIENT, "nonce": "n-1",
        "iat": NOW, "exp": NOW + 300, "email": "alice@example.com",
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

#[tokio::test]
async fn id_token_valid_gives_identity_and_sid() {
    let f = fixture();
    let (identity, info) = f
        .id_token(with(id_claims(), "sid", json!("s-9")))
        .await
        .unwrap();
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.email.as_deref(), Some("alice@example.com"));
    assert_eq!(identity.issuer, ISSUER);
    assert_eq!(info.sid.as_deref(), Some("s-9"));
    assert_eq!(info.expires_at, NOW + 300);
}

#[tokio::test]
async fn id_token_exp_in_past_but_in_leeway_ok() {
    let f = fixture();
    let claims = with(id_claims(), "exp", json!(NOW - SKEW));
    assert!(f.id_token(claims).await.is_ok());
}

#[tokio::test]
async fn id_token_exp_in_past_beyond_leeway_fails() {
    let f = fixture();
    let claims = with(id_claims(), "exp", json!(NOW - SKEW - 1));
    assert_eq!(f.id_token(claims).await.unwrap_err(), TokenError::Expired);
}

#[tokio::test]
async fn id_token_expires_when_the_clock_moves_past_exp() {
    let f = fixture();
    let token = f.sign(&id_claims());
    assert!(f.verifier.verify_id_token(&token, "n-1").await.is_ok());
    f.clock.set(NOW + 300 + SKEW + 1);
    assert_eq!(
        f.verifier.verify_id_token(&token, "n-1").await.unwrap_err(),
        TokenError::Expired
    );
}

#[tokio::test]
async fn id_token_without_exp_fails() {
    let f = fixture();
    assert_eq!(
        f.id_token(without(id_claims(), "exp")).await.unwrap_err(),
        TokenError::MissingClaim("exp")
    );
}

#[tokio::test]
async fn id_token_nbf_in_future_beyond_leeway_fails_and_within_is_ok() {
    let f = fixture();
    let late = with(id_claims(), "nbf", json!(NOW + SKEW + 1));
    assert_eq!(f.id_token(late).await.unwrap_err(), TokenError::NotYetValid);
    let edge = with(id_claims(), "nbf", json!(NOW + SKEW));
    assert!(f.id_token(edge).await.is_ok());
}

#[tokio::test]
async fn id_token_iat_in_future_beyond_leeway_fails() {
    let f = fixture();
    let claims = with(id_claims(), "iat", json!(NOW + SKEW + 1));
    assert_eq!(
        f.id_token(claims).await.unwrap_err(),
        TokenError::BadIssuedAt
    );
    assert_eq!(
        f.id_token(without(id_claims(), "iat")).await.unwrap_err(),
        TokenError::BadIssuedAt
    );
}

#[tokio::test]
async fn id_token_issued_longer_ago_than_the_age_bound_fails_at_login() {
    let f = fixture();
    let edge = DEFAULT_MAX_ID_TOKEN_AGE_SECS + SKEW;
    let old = with(id_claims(), "iat", json!(NOW - edge - 1));
    assert_eq!(
        f.id_token(old.clone()).await.unwrap_err(),
        TokenError::TooOld
    );
    assert!(f
        .id_token(with(id_claims(), "iat", json!(NOW - edge)))
        .await
        .is_ok());
    // On refresh the age is not checked (no nonce, the token is the
    // provider's answer to our own refresh request).
    let (first, _) = f.id_token(id_claims()).await.unwrap();
    let refreshed = f.sign(&without(old, "nonce"));
    assert!(f
        .verifier
        .verify_refreshed_id_token(&refreshed, &first)
        .await
        .is_ok());
}

#[tokio::test]
async fn id_token_nonce_must_match() {
    let f = fixture();
    let claims = with(id_claims(), "nonce", json!("n-2"));
    assert_eq!(
        f.id_token(claims).await.unwrap_err(),
        TokenError::WrongNonce
    );
    let missing = without(id_claims(), "nonce");
    assert_eq!(
        f.id_token(missing).await.unwrap_err(),
        TokenError::WrongNonce
    );
}

#[tokio::test]
async fn id_token_issuer_and_audience_must_be_ours() {
    let f = fixture();
    let other_iss = with(id_claims(), "iss", json!("https://evil.example.com"));
    assert_eq!(
        f.id_token(other_iss).await.unwrap_err(),
        TokenError::WrongIssuer
    );
    let other_aud = with(id_claims(), "aud", json!("someone-else"));
    assert_eq!(
        f.id_token(other_aud).await.unwrap_err(),
        TokenError::WrongAudience
    );
}

#[tokio::test]
async fn id_token_with_several_audiences_needs_azp_of_the_client() {
    let f = fixture();
    let several = with(id_claims(), "aud", json!([CLIENT, "other"]));
    assert_eq!(
        f.id_token(several.clone()).await.unwrap_err(),
        TokenError::WrongAuthorizedParty
    );
    assert!(f
        .id_token(with(several.clone(), "azp", json!(CLIENT)))
        .await
        .is_ok());
    assert_eq!(
        f.id_token(with(several, "azp", json!("other")))
            .await
            .unwrap_err(),
        TokenError::WrongAuthorizedParty
    );
}

#[tokio::test]
async fn id_token_of_another_type_is_refused() {
    let f = fixture();
    let token = f.sign_typed(Some("at+jwt"), &id_claims());
    assert_eq!(
        f.verifier.verify_id_token(&token, "n-1").await.unwrap_err(),
        TokenError::WrongType
    );
    let untyped = f.sign_typed(None, &id_claims());
    assert!(f.verifier.verify_id_token(&untyped, "n-1").await.is_ok());
}

#[tokio::test]
async fn token_with_an_algorithm_outside_the_allow_list_is_refused() {
    let f = fixture();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let hmac = jsonwebtoken::encode(
        &header,
        &id_claims(),
        &EncodingKey::from_secret(b"public-key-as-secret"),
    )
    .unwrap();
    assert_eq!(
        f.verifier.verify_id_token(&hmac, "n-1").await.unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn token_with_a_bad_signature_or_unknown_kid_is_refused() {
    let f = fixture();
    let token = f.sign(&id_claims());
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[0] ^= 1;
    let forged = format!("{head}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(
        f.verifier
            .verify_id_token(&forged, "n-1")
            .await
            .unwrap_err(),
        TokenError::BadSignature
    );
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k-unknown".into());
    let unknown = jsonwebtoken::encode(&header, &id_claims(), &f.key).unwrap();
    assert_eq!(
        f.verifier
            .verify_id_token(&unknown, "n-1")
            .await
            .unwrap_err(),
        TokenError::UnknownKey
    );
}

#[tokio::test]
async fn token_larger_than_the_bound_is_refused_before_parsing() {
    let f = fixture();
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        f.verifier.verify_access_token(&huge).await.unwrap_err(),
        TokenError::TooLarge
    );
    assert_eq!(
        f.verifier
            .verify_access_token("not.a.jwt")
            .await
            .unwrap_err(),
        TokenError::Malformed
    );
}

fn access_claims() -> Value {
    json!({"iss": ISSUER, "sub": "svc", "aud": "api", "exp": NOW + 60, "iat": NOW})
}

#[tokio::test]
async fn access_token_for_an_accepted_audience_is_valid_until_exp_plus_leeway() {
    let f = fixture();
    let token = f.sign_typed(Some("at+jwt"), &access_claims());
    let identity = f.verifier.verify_access_token(&token).await.unwrap();
    assert_eq!(identity.subject, "svc");
    assert_eq!(identity.expires_at, Some(NOW + 60));
    f.clock.set(NOW + 60 + SKEW);
    assert!(f.verifier.verify_access_token(&token).await.is_ok());
    f.clock.set(NOW + 60 + SKEW + 1);
    assert_eq!(
        f.verifier.verify_access_token(&token).await.unwrap_err(),
        TokenError::Expired
    );
}

#[tokio::test]
async fn access_token_nbf_in_future_is_refused() {
    let f = fixture();
    let token = f.sign(&with(access_claims(), "nbf", json!(NOW + SKEW + 5)));
    assert_eq!(
        f.verifier.verify_access_token(&token).await.unwrap_err(),
        TokenError::NotYetValid
    );
}

#[tokio::test]
async fn access_token_without_sub_or_of_another_audience_is_refused() {
    let f = fixture();
    let no_sub = f.sign(&without(access_claims(), "sub"));
    assert_eq!(
        f.verifier.verify_access_token(&no_sub).await.unwrap_err(),
        TokenError::MissingClaim("sub")
    );
    let other = f.sign(&with(access_claims(), "aud", json!("billing")));
    assert_eq!(
        f.verifier.verify_access_token(&other).await.unwrap_err(),
        TokenError::WrongAudience
    );
}

#[tokio::test]
async fn logout_token_is_not_an_access_token() {
    let f = fixture();
    let token = f.sign_typed(Some("logout+jwt"), &access_claims());
    assert_eq!(
        f.verifier.verify_access_token(&token).await.unwrap_err(),
        TokenError::WrongType
    );
}

fn logout_claims() -> Value {
    json!({
        "iss": ISSUER, "aud": CLIENT, "iat": NOW, "jti": "j-1", "sid": "s-1",
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    })
}

#[tokio::test]
async fn logout_token_valid_names_sid_and_jti() {
    let f = fixture();
    let token = f.sign_typed(Some("logout+jwt"), &logout_claims());
    let claims = f.verifier.verify_logout_token(&token).await.unwrap();
    assert_eq!(claims.sid.as_deref(), Some("s-1"));
    assert_eq!(claims.jti, "j-1");
    assert_eq!(claims.expires_at, NOW + 600);
}

#[tokio::test]
async fn logout_token_older_than_its_window_is_refused() {
    let f = fixture();
    let token = f.sign(&logout_claims());
    f.clock.set(NOW + 600 + SKEW);
    assert!(f.verifier.verify_logout_token(&token).await.is_ok());
    f.clock.set(NOW + 600 + SKEW + 1);
    assert_eq!(
        f.verifier.verify_logout_token(&token).await.unwrap_err(),
        TokenError::BadIssuedAt
    );
}

#[tokio::test]
async fn logout_token_needs_events_jti_and_sid_or_sub_and_no_nonce() {
    let f = fixture();
    let f = &f;
    let check = |claims: Value| {
        let token = f.sign(&claims);
        async move { f.verifier.verify_logout_token(&token).await }
    };
    assert_eq!(
        check(without(logout_claims(), "events")).await.unwrap_err(),
        TokenError::MissingClaim("events")
    );
    assert_eq!(
        check(without(logout_claims(), "jti")).await.unwrap_err(),
        TokenError::MissingClaim("jti")
    );
    assert_eq!(
        check(without(logout_claims(), "sid")).await.unwrap_err(),
        TokenError::MissingClaim("sid")
    );
    assert!(
        check(with(without(logout_claims(), "sid"), "sub", json!("alice")))
            .await
            .is_ok()
    );
    assert_eq!(
        check(with(logout_claims(), "nonce", json!("n")))
            .await
            .unwrap_err(),
        TokenError::Malformed
    );
}

#[tokio::test]
async fn refreshed_id_token_must_keep_issuer_and_subject() {
    let f = fixture();
    let (first, _) = f.id_token(id_claims()).await.unwrap();
    let same = f.sign(&without(id_claims(), "nonce"));
    assert!(f
        .verifier
        .verify_refreshed_id_token(&same, &first)
        .await
        .is_ok());
    let other = f.sign(&with(
        without(id_claims(), "nonce"),
        "sub",
        json!("mallory"),
    ));
    assert!(f
        .verifier
        .verify_refreshed_id_token(&other, &first)
        .await
        .is_err());
}
