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
    fixture_with(|v| v)
}

/// [`fixture`] with the verifier adjusted by `adjust`.
fn fixture_with(adjust: impl FnOnce(TokenVerifier) -> TokenVerifier) -> Fixture {
    fixture_advertising(Some(vec!["ES256".into()]), adjust)
}

/// [`fixture_with`] whose discovery advertised `advertised` as
/// `id_token_signing_alg_values_supported`.
fn fixture_advertising(
    advertised: Option<Vec<String>>,
    adjust: impl FnOnce(TokenVerifier) -> TokenVerifier,
) -> Fixture {
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
        authorization_endpoint: Some(url("/authorize")),
        token_endpoint: Some(url("/token")),
        userinfo_endpoint: None,
        jwks_uri: Some(url("/jwks")),
        end_session_endpoint: None,
        introspection_endpoint: None,
        iss_parameter_supported: false,
        id_token_signing_algs: advertised,
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
    let verifier = adjust(verifier);
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
// === token discipline: an ID token is not an access token ===

async fn as_bearer(f: &Fixture, typ: Option<&str>, claims: Value) -> Result<Identity, TokenError> {
    f.verifier
        .verify_access_token(&f.sign_typed(typ, &claims))
        .await
}

#[tokio::test]
async fn bearer_id_token_of_this_client_is_refused() {
    let f = fixture();
    assert_eq!(
        as_bearer(&f, Some("JWT"), id_claims()).await.unwrap_err(),
        TokenError::IdTokenAsBearer
    );
    assert_eq!(
        as_bearer(&f, None, id_claims()).await.unwrap_err(),
        TokenError::IdTokenAsBearer,
        "untyped"
    );
}

#[tokio::test]
async fn bearer_id_token_accepted_only_when_configured() {
    let f = fixture_with(|v| v.with_accept_id_tokens(true));
    let identity = as_bearer(&f, Some("JWT"), id_claims()).await.unwrap();
    assert_eq!(identity.subject, "alice");
}

#[tokio::test]
async fn bearer_id_token_without_nonce_is_refused_by_its_hashes_or_missing_grant() {
    let f = fixture();
    // A refreshed ID token carries no nonce; at_hash still marks it.
    let refreshed = with(without(id_claims(), "nonce"), "at_hash", json!("x"));
    assert_eq!(
        as_bearer(&f, Some("JWT"), refreshed).await.unwrap_err(),
        TokenError::IdTokenAsBearer
    );
    for hash in ["c_hash", "s_hash"] {
        let claims = with(
            with(without(id_claims(), "nonce"), "scope", json!("openid")),
            hash,
            json!("x"),
        );
        assert_eq!(
            as_bearer(&f, None, claims).await.unwrap_err(),
            TokenError::IdTokenAsBearer,
            "{hash}"
        );
    }
    // Nor nonce nor hashes: no scope / scp / client_id names a grant.
    let bare = with(without(id_claims(), "nonce"), "auth_time", json!(NOW));
    assert_eq!(
        as_bearer(&f, Some("JWT"), bare).await.unwrap_err(),
        TokenError::IdTokenAsBearer
    );
}

#[tokio::test]
async fn bearer_jwt_for_the_client_naming_its_grant_is_an_access_token() {
    let f = fixture();
    let base = without(id_claims(), "nonce");
    for (member, value) in [
        ("scope", json!("openid profile")),
        ("scp", json!(["openid"])),
        ("client_id", json!("some-app")),
    ] {
        let claims = with(base.clone(), member, value);
        assert!(
            as_bearer(&f, Some("JWT"), claims).await.is_ok(),
            "{member} names a grant"
        );
    }
}

#[tokio::test]
async fn bearer_at_jwt_type_is_an_access_token_whatever_it_carries() {
    let f = fixture();
    // RFC 9068 §2.1 explicit typing wins over every claim.
    for typ in ["at+jwt", "application/at+jwt"] {
        assert!(as_bearer(&f, Some(typ), id_claims()).await.is_ok(), "{typ}");
    }
}

#[tokio::test]
async fn bearer_payload_typ_claim_decides_as_keycloak_types_it() {
    let f = fixture();
    let id = with(access_claims(), "typ", json!("ID"));
    assert_eq!(
        as_bearer(&f, Some("JWT"), id).await.unwrap_err(),
        TokenError::IdTokenAsBearer,
        "typ ID, even for another audience"
    );
    let access = with(id_claims(), "typ", json!("Bearer"));
    assert!(as_bearer(&f, Some("JWT"), access).await.is_ok());
}

#[tokio::test]
async fn bearer_jwt_for_another_audience_is_not_an_id_token_of_this_client() {
    let f = fixture();
    // aud "api" only: even with a nonce it is no ID token of ours.
    let claims = with(access_claims(), "nonce", json!("n"));
    assert!(as_bearer(&f, Some("JWT"), claims).await.is_ok());
}

#[tokio::test]
async fn bearer_required_scopes_must_all_be_granted() {
    let f = fixture_with(|v| v.with_required_scopes(vec!["read".into(), "write".into()]));
    let ok = [
        json!({"scope": "read write admin"}),
        json!({"scp": ["write", "read"]}),
        json!({"scp": "read write"}),
        json!({"scope": "read", "scp": ["write"]}),
    ];
    for extra in ok {
        let mut claims = access_claims();
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        assert!(
            as_bearer(&f, Some("at+jwt"), claims).await.is_ok(),
            "{extra}"
        );
    }
    let refused = [
        json!({}),
        json!({"scope": "read"}),
        json!({"scope": "readwrite"}),
        json!({"scope": "read  writer"}),
        json!({"scope": 7}),
    ];
    for extra in refused {
        let mut claims = access_claims();
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        assert_eq!(
            as_bearer(&f, Some("at+jwt"), claims).await.unwrap_err(),
            TokenError::InsufficientScope,
            "{extra}"
        );
    }
}

// === RFC 7662 introspection answers ===

fn active() -> Value {
    json!({
        "active": true, "sub": "svc", "aud": "api", "iss": ISSUER,
        "exp": NOW + 60, "iat": NOW, "scope": "read", "client_id": "app",
        "token_type": "Bearer", "username": "svc-user", "email": "svc@example.com",
        "groups": ["ops"],
    })
}

fn introspect(f: &Fixture, answer: &Value) -> Result<Identity, TokenError> {
    let parsed = Introspection::from_json(answer.to_string().as_bytes())?;
    f.verifier.check_introspection(parsed)
}

#[test]
fn introspection_active_answer_gives_identity() {
    let f = fixture();
    let identity = introspect(&f, &active()).unwrap();
    assert_eq!(identity.subject, "svc");
    assert_eq!(identity.preferred_username.as_deref(), Some("svc-user"));
    assert_eq!(identity.email.as_deref(), Some("svc@example.com"));
    assert_eq!(identity.groups, vec!["ops".to_string()]);
    assert_eq!(identity.issuer, ISSUER);
    assert_eq!(identity.expires_at, Some(NOW + 60));
    assert_eq!(identity.source, IdentitySource::Bearer);
    // preferred_username wins over username.
    let named = with(active(), "preferred_username", json!("pu"));
    assert_eq!(
        introspect(&f, &named)
            .unwrap()
            .preferred_username
            .as_deref(),
        Some("pu")
    );
}

#[test]
fn introspection_inactive_answer_is_refused() {
    let f = fixture();
    assert_eq!(
        introspect(&f, &json!({"active": false})).unwrap_err(),
        TokenError::Inactive
    );
    assert_eq!(
        introspect(&f, &with(active(), "active", json!(false))).unwrap_err(),
        TokenError::Inactive
    );
}

#[test]
fn introspection_malformed_answer_is_refused() {
    let f = fixture();
    for bad in [
        json!({"sub": "svc"}),
        json!({"active": "true", "sub": "svc"}),
        json!({"active": 1}),
        json!([true]),
        with(active(), "exp", json!("soon")),
        with(active(), "exp", json!(-5)),
        with(active(), "sub", json!(42)),
    ] {
        assert_eq!(
            introspect(&f, &bad).unwrap_err(),
            TokenError::Malformed,
            "{bad}"
        );
    }
    assert!(Introspection::from_json(b"<html>").is_err());
}

#[test]
fn introspection_only_answers_about_bearer_access_tokens_are_accepted() {
    let f = fixture();
    for (member, value) in [
        ("token_type", json!("refresh_token")),
        ("token_type", json!("DPoP")),
        ("token_use", json!("refresh_token")),
        ("cnf", json!({"jkt": "abc"})),
    ] {
        assert_eq!(
            introspect(&f, &with(active(), member, value.clone())).unwrap_err(),
            TokenError::WrongType,
            "{member} = {value}"
        );
    }
    assert!(introspect(&f, &with(active(), "token_type", json!("bearer"))).is_ok());
    assert!(introspect(&f, &with(active(), "token_use", json!("access_token"))).is_ok());
    // No word on the type: as oidc-provider answers for a refresh token.
    let untyped = without(active(), "token_type");
    assert_eq!(introspect(&f, &untyped).unwrap_err(), TokenError::WrongType);
    let hydra = with(untyped.clone(), "token_use", json!("access_token"));
    assert!(introspect(&f, &hydra).is_ok());
    let keycloak = with(untyped.clone(), "typ", json!("Bearer"));
    assert!(introspect(&f, &keycloak).is_ok());
    let keycloak_refresh = with(untyped, "typ", json!("Refresh"));
    assert_eq!(
        introspect(&f, &keycloak_refresh).unwrap_err(),
        TokenError::WrongType
    );
    let mixed = with(active(), "token_use", json!("refresh_token"));
    assert_eq!(introspect(&f, &mixed).unwrap_err(), TokenError::WrongType);
}

/// django-oauth-toolkit's answer: `active`, `scope`, `exp`, `client_id`,
/// `username` (no `token_type`, no `sub`, no `aud`); its endpoint knows
/// access tokens only.
#[test]
fn introspection_untyped_answer_accepted_only_from_an_access_token_only_endpoint() {
    let dot = json!({
        "active": true, "scope": "openid email", "exp": NOW + 60,
        "client_id": CLIENT, "username": "alice",
    });
    assert_eq!(
        introspect(&fixture(), &dot).unwrap_err(),
        TokenError::WrongType
    );
    let f = fixture_with(|v| v.with_introspection_access_tokens_only(true));
    let identity = introspect(&f, &dot).unwrap();
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.preferred_username.as_deref(), Some("alice"));
    // `sub`, when there, is still the identity.
    let with_sub = with(dot.clone(), "sub", json!("42"));
    assert_eq!(introspect(&f, &with_sub).unwrap().subject, "42");
    // A type that says something else is still refused, and so is an
    // answer that names nobody.
    let refresh = with(dot.clone(), "token_type", json!("refresh_token"));
    assert_eq!(introspect(&f, &refresh).unwrap_err(), TokenError::WrongType);
    assert_eq!(
        introspect(&f, &without(dot, "username")).unwrap_err(),
        TokenError::MissingClaim("sub")
    );
}

#[test]
fn introspection_exp_and_nbf_are_checked_with_the_skew_on_a_pinned_clock() {
    let f = fixture();
    let answer = active();
    f.clock.set(NOW + 60 + SKEW);
    assert!(introspect(&f, &answer).is_ok());
    f.clock.set(NOW + 60 + SKEW + 1);
    assert_eq!(introspect(&f, &answer).unwrap_err(), TokenError::Expired);
    f.clock.set(NOW);
    let early = with(active(), "nbf", json!(NOW + SKEW + 1));
    assert_eq!(introspect(&f, &early).unwrap_err(), TokenError::NotYetValid);
    let in_leeway = with(active(), "nbf", json!(NOW + SKEW));
    assert!(introspect(&f, &in_leeway).is_ok());
    // Without exp the answer itself is the only word (the cache bounds it).
    let no_exp = without(active(), "exp");
    assert_eq!(introspect(&f, &no_exp).unwrap().expires_at, None);
}

#[test]
fn introspection_issuer_must_be_the_providers_when_present() {
    let f = fixture();
    assert_eq!(
        introspect(
            &f,
            &with(active(), "iss", json!("https://attacker.example"))
        )
        .unwrap_err(),
        TokenError::WrongIssuer
    );
    assert_eq!(
        introspect(&f, &without(active(), "iss")).unwrap().issuer,
        ISSUER
    );
}

#[test]
fn introspection_audience_or_client_id_must_be_accepted() {
    let f = fixture();
    assert_eq!(
        introspect(&f, &with(active(), "aud", json!("billing"))).unwrap_err(),
        TokenError::WrongAudience
    );
    assert!(introspect(&f, &with(active(), "aud", json!(["billing", "api"]))).is_ok());
    // No aud: only a token issued to an accepted client (here: ours).
    let no_aud = without(active(), "aud");
    assert_eq!(
        introspect(&f, &no_aud).unwrap_err(),
        TokenError::WrongAudience,
        "client_id app is not an accepted audience"
    );
    assert!(introspect(&f, &with(no_aud.clone(), "client_id", json!(CLIENT))).is_ok());
    assert_eq!(
        introspect(&f, &without(no_aud, "client_id")).unwrap_err(),
        TokenError::WrongAudience
    );
}

#[test]
fn introspection_needs_sub_and_the_required_scopes() {
    let f = fixture_with(|v| v.with_required_scopes(vec!["read".into()]));
    assert_eq!(
        introspect(&f, &without(active(), "sub")).unwrap_err(),
        TokenError::MissingClaim("sub")
    );
    assert_eq!(
        introspect(&f, &with(active(), "sub", json!(""))).unwrap_err(),
        TokenError::MissingClaim("sub")
    );
    assert!(introspect(&f, &active()).is_ok());
    assert_eq!(
        introspect(&f, &with(active(), "scope", json!("write"))).unwrap_err(),
        TokenError::InsufficientScope
    );
    assert_eq!(
        introspect(&f, &without(active(), "scope")).unwrap_err(),
        TokenError::InsufficientScope
    );
}

// ===== algorithms: discovery, HMAC, refusals =====

const CLIENT_SECRET: &str = "client-secret-of-at-least-32-bytes!!";

fn hmac_token(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn algorithms_from_discovery_are_the_advertised_safe_ones() {
    // ES256 advertised: the ES256 token verifies.
    let f = fixture_advertising(Some(vec!["HS256".into(), "ES256".into()]), |v| {
        v.with_algorithms_from_discovery()
    });
    assert!(f.id_token(id_claims()).await.is_ok());
    // Only RS256 (and HS256, never taken from discovery) advertised: the
    // ES256 token is a refused algorithm.
    let f = fixture_advertising(Some(vec!["RS256".into(), "HS256".into()]), |v| {
        v.with_algorithms_from_discovery()
    });
    assert_eq!(
        f.id_token(id_claims()).await.unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
    let hs = hmac_token(Algorithm::HS256, CLIENT_SECRET, &id_claims());
    assert_eq!(
        f.verifier.verify_id_token(&hs, "n-1").await.unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
    // Nothing advertised: RS256 only (OpenID Connect Core 15.1).
    let f = fixture_advertising(None, |v| v.with_algorithms_from_discovery());
    assert_eq!(
        f.id_token(id_claims()).await.unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
    assert_eq!(
        AlgSet::from_advertised(None),
        AlgSet::of([Algorithm::RS256])
    );
    assert_eq!(
        AlgSet::from_advertised(Some(&["none".into(), "HS512".into(), "EdDSA".into()])),
        AlgSet::of([Algorithm::EdDSA])
    );
}

#[tokio::test]
async fn hmac_id_token_with_the_client_secret_ok_only_when_allowed() {
    let secret = Secret::new(CLIENT_SECRET.to_string());
    let f = fixture_with(|v| v.with_hmac_id_tokens(&[Algorithm::HS256], &secret));
    let hs = hmac_token(Algorithm::HS256, CLIENT_SECRET, &id_claims());
    let (identity, _) = f.verifier.verify_id_token(&hs, "n-1").await.unwrap();
    assert_eq!(identity.subject, "alice");
    // The asymmetric ones still work alongside.
    assert!(f.id_token(id_claims()).await.is_ok());
    // Another secret is a bad signature; another HMAC size is not allowed.
    let wrong = hmac_token(
        Algorithm::HS256,
        "another-secret-another-secret-xx",
        &id_claims(),
    );
    assert_eq!(
        f.verifier.verify_id_token(&wrong, "n-1").await.unwrap_err(),
        TokenError::BadSignature
    );
    let hs384 = hmac_token(Algorithm::HS384, CLIENT_SECRET, &id_claims());
    assert_eq!(
        f.verifier.verify_id_token(&hs384, "n-1").await.unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
    // Never as a bearer token, even with access-token claims.
    let access = hmac_token(Algorithm::HS256, CLIENT_SECRET, &access_claims());
    assert_eq!(
        f.verifier.verify_access_token(&access).await.unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
    // Without the opt-in the same ID token is refused.
    let f = fixture();
    assert_eq!(
        f.verifier.verify_id_token(&hs, "n-1").await.unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn alg_none_and_unknown_algorithms_are_refused_algorithms_not_malformed() {
    let f = fixture();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    for alg in ["none", "None", "HS999"] {
        let token = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "typ": "JWT"})),
            b64(&access_claims())
        );
        assert_eq!(
            f.verifier.verify_access_token(&token).await.unwrap_err(),
            TokenError::AlgorithmNotAllowed,
            "{alg}"
        );
    }
    let garbage = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode("nope"),
        b64(&access_claims())
    );
    assert_eq!(
        f.verifier.verify_access_token(&garbage).await.unwrap_err(),
        TokenError::Malformed
    );
}

#[test]
fn peeked_issuer_is_read_without_verification() {
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let t = format!(
        "{}.{}.sig",
        b64(&json!({"alg": "RS256"})),
        b64(&json!({"iss": "https://ci"}))
    );
    assert_eq!(peek_issuer(&t).as_deref(), Some("https://ci"));
    assert_eq!(peek_issuer("a.b.c"), None);
    let t = format!(
        "{}.{}.sig",
        b64(&json!({"alg": "RS256"})),
        b64(&json!({"iss": 5}))
    );
    assert_eq!(peek_issuer(&t), None);
}
