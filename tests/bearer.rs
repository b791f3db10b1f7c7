//! API clients: unauthenticated requests get 401 JSON (never a redirect),
//! bearer JWTs are validated against the provider's JWKS (`iss`, `aud`,
//! `exp`, `nbf`, allowed algorithms), cached until `exp` and never
//! re-validated from cache once expired, and random `kid`s cannot make the
//! gateway hammer the JWKS endpoint. ID tokens are not access tokens;
//! opaque tokens are introspected (RFC 7662), cached, and a flood of them
//! reaches the provider as a bounded number of concurrent calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use oidc_gateway::devtools::provider::{corrupt_signature, SigningAlg};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE};
use serde_json::{json, Value};
use support::{jwt_claims, now_secs, random_token, Fault, Harness, Options, Resp, Signer};

async fn get_with_token(h: &Harness, path: &str, token: &str) -> Resp {
    Resp::of(
        h.api()
            .get(h.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn assert_invalid_token(resp: &Resp, what: &str) {
    assert_eq!(resp.status, 401, "{what}: {resp:?}");
    let www = resp.header("www-authenticate").unwrap_or("");
    assert!(
        www.starts_with("Bearer") && www.contains(r#"error="invalid_token""#),
        "{what}: WWW-Authenticate = {www:?}"
    );
    assert!(resp.header("location").is_none(), "{what}: no redirect");
}

/// Claims of a valid access token, for re-signing hostile variants.
fn valid_claims(h: &Harness) -> Value {
    jwt_claims(&h.op.mint_access_token(json!({})))
}

#[tokio::test]
async fn api_without_credentials_is_401_json_never_redirect() {
    let h = Harness::start().await;
    let api = h.api();
    let requests = [
        api.get(h.url("/private")),
        api.get(h.url("/private"))
            .header(ACCEPT, "application/json"),
        api.get(h.url("/private")).header(ACCEPT, "*/*"),
        api.post(h.url("/private"))
            .header(ACCEPT, "text/html")
            .header(CONTENT_TYPE, "application/json")
            .body("{}"),
        api.put(h.url("/private")).header(ACCEPT, "text/html"),
        api.delete(h.url("/private")),
    ];
    for (i, req) in requests.into_iter().enumerate() {
        let resp = Resp::of(req.send().await.unwrap()).await;
        assert_eq!(resp.status, 401, "request {i}: {resp:?}");
        assert!(resp.header("location").is_none(), "request {i}: redirect");
        assert!(
            resp.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "request {i}: {resp:?}"
        );
        assert!(
            resp.header("content-type")
                .is_some_and(|v| v.starts_with("application/json")),
            "request {i}: {resp:?}"
        );
        assert!(resp.json()["error"].is_string(), "request {i}: {resp:?}");
        assert!(!resp.sets_session(h.cookie));
    }
    assert_eq!(h.echo.request_count(), 0);
    // Twin: the same GET as a browser navigation is sent to the provider.
    let (client, _jar) = h.browser();
    let nav = h.navigate(&client, "/private").await;
    assert_eq!(nav.status, 302);
}

#[tokio::test]
async fn bearer_valid_token_200_with_identity_headers() {
    let h = Harness::start().await;
    let token = h.op.mint_access_token(json!({"groups": ["users", "ops"]}));
    let resp = get_with_token(&h, "/api/things?limit=1", &token).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let seen = h.last_upstream();
    assert_eq!(seen["path"], "/api/things");
    let hd = &seen["headers"];
    assert_eq!(hd["x-auth-request-user"], "alice");
    assert_eq!(hd["x-auth-request-email"], "alice@example.com");
    assert_eq!(hd["x-auth-request-preferred-username"], "alice");
    assert_eq!(hd["x-auth-request-groups"], "users,ops");
    assert!(!resp.sets_session(h.cookie), "bearer makes no session");
    assert_eq!(h.gw.session_count(), 0);
}

#[tokio::test]
async fn bearer_es256_token_accepted() {
    let h = Harness::start().await;
    h.op.set_signing_alg(SigningAlg::Es256);
    let token = h.op.mint_access_token(json!({"sub": "bob"}));
    let resp = get_with_token(&h, "/api", &token).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(h.last_upstream()["headers"]["x-auth-request-user"], "bob");
}

#[tokio::test]
async fn bearer_hostile_tokens_401_invalid_token() {
    let h = Harness::start().await;
    let now = now_secs();
    let claims = valid_claims(&h);
    let with = |patch: Value| {
        let mut c = claims.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let at = json!({"typ": "at+jwt"});
    let cases: Vec<(&str, String)> = vec![
        (
            "bad signature",
            corrupt_signature(&h.op.mint_access_token(json!({}))),
        ),
        (
            "alg none",
            h.op.sign_with(Signer::None, at.clone(), &claims),
        ),
        (
            "hs256 keyed with the rsa public key",
            h.op.sign_with(Signer::Hs256WithRsaPublicKey, at.clone(), &claims),
        ),
        (
            "hs256 with a guessable secret",
            h.op.sign_with(Signer::Hs256(b"secret".to_vec()), at.clone(), &claims),
        ),
        (
            "wrong iss",
            h.op.sign_with(
                Signer::Rs256,
                at.clone(),
                &with(json!({"iss": "https://attacker.example"})),
            ),
        ),
        (
            "wrong aud",
            h.op.sign_with(
                Signer::Rs256,
                at.clone(),
                &with(json!({"aud": "some-other-client"})),
            ),
        ),
        (
            "expired",
            h.op.sign_with(
                Signer::Rs256,
                at.clone(),
                &with(json!({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})),
            ),
        ),
        (
            "nbf in the future",
            h.op.sign_with(Signer::Rs256, at.clone(), &with(json!({"nbf": now + 3600}))),
        ),
        (
            "unknown kid",
            h.op.sign_with(
                Signer::Rs256,
                json!({"typ": "at+jwt", "kid": "nope"}),
                &claims,
            ),
        ),
        (
            "alg header lies (PS256 over an RS256 signature)",
            h.op.sign_with(
                Signer::Rs256,
                json!({"typ": "at+jwt", "alg": "PS256"}),
                &claims,
            ),
        ),
        (
            "a logout token (typ logout+jwt) as a bearer token",
            h.op.sign_with(Signer::Rs256, json!({"typ": "logout+jwt"}), &claims),
        ),
        (
            "crit header naming an extension nobody understands",
            h.op.sign_with(
                Signer::Rs256,
                json!({"typ": "at+jwt", "crit": ["exp"]}),
                &claims,
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
        ("two segments", "abc.def".to_owned()),
    ];
    for (what, token) in &cases {
        let resp = get_with_token(&h, "/api", token).await;
        assert_invalid_token(&resp, what);
        // A browser presenting a bad token is not redirected either.
        let nav = Resp::of(
            h.api()
                .get(h.url("/api"))
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .header(ACCEPT, "text/html")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_invalid_token(&nav, what);
    }
    assert_eq!(h.echo.request_count(), 0, "nothing reached the upstream");
    // Twin: the unmodified claims, properly signed.
    let good = h.op.sign_with(Signer::Rs256, at, &claims);
    assert_eq!(get_with_token(&h, "/api", &good).await.status, 200);
}

#[tokio::test]
async fn bearer_invalid_token_does_not_fall_back_to_session() {
    let h = Harness::start().await;
    let (client, _jar) = h.browser();
    let session = h.login(&client, "/").await;
    let bad = corrupt_signature(&h.op.mint_access_token(json!({})));
    let resp = Resp::of(
        h.api()
            .get(h.url("/api"))
            .header(AUTHORIZATION, format!("Bearer {bad}"))
            .header(COOKIE, format!("oidc-gateway={session}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_invalid_token(&resp, "bad bearer + good session");
    assert_eq!(h.echo.request_count(), 0);
}

#[tokio::test]
async fn bearer_second_call_served_from_cache() {
    let h = Harness::start().await;
    let token = h.op.mint_access_token(json!({}));
    let validated = h.auth_outcome("bearer_validated").await;
    let cached = h.auth_outcome("bearer_cached").await;
    assert_eq!(get_with_token(&h, "/api", &token).await.status, 200);
    assert_eq!(h.auth_outcome("bearer_validated").await, validated + 1);
    assert_eq!(h.auth_outcome("bearer_cached").await, cached);
    assert_eq!(get_with_token(&h, "/api", &token).await.status, 200);
    assert_eq!(get_with_token(&h, "/api", &token).await.status, 200);
    assert_eq!(h.auth_outcome("bearer_validated").await, validated + 1);
    assert_eq!(h.auth_outcome("bearer_cached").await, cached + 2);
    // A different token is validated, not confused with the cached one.
    let other = h.op.mint_access_token(json!({"sub": "bob"}));
    assert_eq!(get_with_token(&h, "/api", &other).await.status, 200);
    assert_eq!(h.last_upstream()["headers"]["x-auth-request-user"], "bob");
    assert_eq!(h.auth_outcome("bearer_validated").await, validated + 2);
}

#[tokio::test]
async fn bearer_expired_token_never_served_from_cache() {
    let h = Harness::with(Options {
        provider: "clock_skew = \"0s\"".into(),
        ..Options::default()
    })
    .await;
    let exp = now_secs() + 2;
    let token = h.op.mint_access_token(json!({"exp": exp}));
    assert_eq!(get_with_token(&h, "/api", &token).await.status, 200);
    assert_eq!(get_with_token(&h, "/api", &token).await.status, 200);
    // Wait until the token is past its exp.
    while now_secs() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = h.echo.request_count();
    let resp = get_with_token(&h, "/api", &token).await;
    assert_invalid_token(&resp, "expired after caching");
    assert_eq!(h.echo.request_count(), before);
}

/// Sends `n` concurrent bearer requests, each signed under a random unknown
/// `kid`; every one must be refused with 401.
async fn flood_of_random_kids(h: &Harness, n: usize) {
    let claims = valid_claims(h);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let token = h.op.sign_with(
            Signer::Rs256,
            json!({"typ": "at+jwt", "kid": random_token(12)}),
            &claims,
        );
        let client = h.api();
        let url = h.url("/api");
        set.spawn(async move {
            client
                .get(url)
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap().unwrap(), 401);
    }
}

#[tokio::test]
async fn bearer_flood_of_random_kids_fetches_jwks_at_most_twice() {
    let h = Harness::with(Options {
        provider: "jwks_min_refresh_interval = \"5s\"".into(),
        ..Options::default()
    })
    .await;
    // The limiter counts from the initial load: within one window, 200
    // unknown kids may cause at most 1-2 fetches (without it: 200).
    h.op.reset_counters();
    flood_of_random_kids(&h, 200).await;
    let fetches = h.op.counters().jwks;
    assert!(fetches <= 2, "{fetches} JWKS fetches for 200 random kids");
    assert_eq!(h.echo.request_count(), 0);
}

#[tokio::test]
async fn bearer_flood_after_refresh_window_fetches_jwks_once() {
    let h = Harness::with(Options {
        provider: "jwks_min_refresh_interval = \"300ms\"".into(),
        ..Options::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.op.reset_counters();
    flood_of_random_kids(&h, 100).await;
    let fetches = h.op.counters().jwks;
    assert!(
        (1..=2).contains(&fetches),
        "{fetches} JWKS fetches for 100 random kids"
    );
}

// ===== token discipline: an ID token is not an access token =====

/// The ID token the gateway received at login, as it leaves in the
/// sign-out URL (`id_token_hint`), where it ends up in provider logs.
async fn leaked_id_token(h: &Harness) -> String {
    let (client, _jar) = h.browser();
    h.login(&client, "/").await;
    let out = Resp::of(client.get(h.url("/oauth2/sign_out")).send().await.unwrap()).await;
    let loc = out.location().unwrap();
    loc.query_pairs()
        .find(|(k, _)| k == "id_token_hint")
        .map(|(_, v)| v.into_owned())
        .expect("id_token_hint")
}

#[tokio::test]
async fn bearer_id_token_refused_by_default() {
    let h = Harness::start().await;
    let id_token = leaked_id_token(&h).await;
    assert_eq!(
        jwt_claims(&id_token)["aud"],
        "gateway",
        "aud is an accepted audience"
    );
    assert_invalid_token(
        &get_with_token(&h, "/api", &id_token).await,
        "login ID token",
    );
    // Minted without nonce or at_hash: still no grant claims, still refused.
    let bare = h.op.mint_id_token(json!({}));
    assert_invalid_token(&get_with_token(&h, "/api", &bare).await, "bare ID token");
    assert_eq!(h.echo.request_count(), 0);
    // Twin: the access token of the same provider and audience is accepted.
    let at = h.op.mint_access_token(json!({}));
    assert_eq!(get_with_token(&h, "/api", &at).await.status, 200);
}

#[tokio::test]
async fn bearer_id_token_accepted_when_configured() {
    let h = Harness::with(Options {
        bearer: "accept_id_tokens = true".into(),
        ..Options::default()
    })
    .await;
    let id_token = leaked_id_token(&h).await;
    let resp = get_with_token(&h, "/api", &id_token).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(h.last_upstream()["headers"]["x-auth-request-user"], "alice");
}

#[tokio::test]
async fn bearer_required_scopes_refuse_tokens_without_them() {
    let h = Harness::with(Options {
        bearer: "required_scopes = [\"api:read\"]\nintrospection = true".into(),
        ..Options::default()
    })
    .await;
    // A valid token without the scope is 403 insufficient_scope (RFC 6750
    // 3.1), not 401.
    let insufficient = |resp: &Resp, what: &str| {
        assert_eq!(resp.status, 403, "{what}: {resp:?}");
        assert!(
            resp.header("www-authenticate")
                .is_some_and(|v| v.contains(r#"error="insufficient_scope""#)),
            "{what}: {resp:?}"
        );
    };
    let without = h.op.mint_access_token(json!({}));
    insufficient(
        &get_with_token(&h, "/api", &without).await,
        "jwt without scope",
    );
    let with = h.op.mint_access_token(json!({"scope": "openid api:read"}));
    assert_eq!(get_with_token(&h, "/api", &with).await.status, 200);
    let opaque_without = h.op.mint_opaque_token(json!({}));
    insufficient(
        &get_with_token(&h, "/api", &opaque_without).await,
        "opaque without scope",
    );
    let opaque_with = h.op.mint_opaque_token(json!({"scope": "api:read"}));
    assert_eq!(get_with_token(&h, "/api", &opaque_with).await.status, 200);
}

// ===== opaque tokens: RFC 7662 introspection =====

fn introspecting() -> Options {
    Options {
        bearer: "introspection = true".into(),
        ..Options::default()
    }
}

#[tokio::test]
async fn bearer_opaque_token_introspected_200_with_identity_headers_then_cached() {
    let h = Harness::with(introspecting()).await;
    let token =
        h.op.mint_opaque_token(json!({"sub": "bob", "groups": ["users", "ops"]}));
    let resp = get_with_token(&h, "/api/things", &token).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let hd = &h.last_upstream()["headers"];
    assert_eq!(hd["x-auth-request-user"], "bob");
    assert_eq!(hd["x-auth-request-email"], "bob@example.com");
    assert_eq!(hd["x-auth-request-groups"], "users,ops");
    assert!(!resp.sets_session(h.cookie));
    for _ in 0..3 {
        assert_eq!(get_with_token(&h, "/api", &token).await.status, 200);
    }
    assert_eq!(h.op.counters().introspection, 1, "answers are cached");
    // Forward-auth takes opaque tokens too.
    let fa = Resp::of(
        h.api()
            .get(h.url("/oauth2/auth"))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(fa.status, 202);
    assert_eq!(fa.header("x-auth-request-user"), Some("bob"));
}

#[tokio::test]
async fn bearer_opaque_token_refused_without_introspection() {
    let h = Harness::start().await;
    let token = h.op.mint_opaque_token(json!({}));
    assert_invalid_token(
        &get_with_token(&h, "/api", &token).await,
        "opaque, introspection off",
    );
    assert_eq!(h.op.counters().introspection, 0);
}

#[tokio::test]
async fn bearer_jwt_shaped_token_is_never_introspected() {
    let h = Harness::with(introspecting()).await;
    let bad = corrupt_signature(&h.op.mint_access_token(json!({})));
    assert_invalid_token(&get_with_token(&h, "/api", &bad).await, "forged JWT");
    let id_token = h.op.mint_id_token(json!({}));
    assert_invalid_token(&get_with_token(&h, "/api", &id_token).await, "ID token");
    assert_eq!(h.op.counters().introspection, 0);
}

#[tokio::test]
async fn bearer_opaque_hostile_introspection_answers_401_outages_503() {
    let h = Harness::with(Options {
        bearer: "introspection = true".into(),
        provider: "http_timeout = \"1s\"\nmax_response_bytes = 65536".into(),
        ..Options::default()
    })
    .await;
    let now = now_secs();
    let faults = [
        (
            "active false",
            Fault::IntrospectionClaims(json!({"active": false})),
        ),
        (
            "wrong aud",
            Fault::IntrospectionClaims(json!({"aud": "some-other-api"})),
        ),
        (
            "wrong iss",
            Fault::IntrospectionClaims(json!({"iss": "https://attacker.example"})),
        ),
        (
            "expired",
            Fault::IntrospectionClaims(json!({"exp": now - 3600, "iat": now - 7200})),
        ),
        (
            "refresh token",
            Fault::IntrospectionClaims(json!({"token_type": "refresh_token"})),
        ),
        ("malformed", Fault::MalformedIntrospectionResponse),
    ];
    for (what, fault) in faults {
        h.op.clear_faults();
        h.op.set_fault(fault);
        let token = h.op.mint_opaque_token(json!({}));
        assert_invalid_token(&get_with_token(&h, "/api", &token).await, what);
    }
    // No usable answer at all: 503, fail closed (not "invalid token").
    let outages = [
        ("oversized", Fault::OversizedIntrospectionResponse(1 << 20)),
        ("slow", Fault::IntrospectionDelay(Duration::from_secs(3))),
        ("unavailable", Fault::IntrospectionUnavailable),
    ];
    for (what, fault) in outages {
        h.op.clear_faults();
        h.op.set_fault(fault);
        let token = h.op.mint_opaque_token(json!({}));
        let resp = get_with_token(&h, "/api", &token).await;
        assert_eq!(resp.status, 503, "{what}: {resp:?}");
        assert_eq!(resp.json()["error"], "temporarily_unavailable", "{what}");
    }
    assert_eq!(h.echo.request_count(), 0, "nothing reached the upstream");
    // Twin: the same provider, no fault.
    h.op.clear_faults();
    let token = h.op.mint_opaque_token(json!({}));
    assert_eq!(get_with_token(&h, "/api", &token).await.status, 200);
}

#[tokio::test]
async fn bearer_opaque_endpoint_found_in_rfc8414_metadata() {
    let h = Harness::with(Options {
        faults_before_start: vec![Fault::IntrospectionOnlyInRfc8414],
        ..introspecting()
    })
    .await;
    let token = h.op.mint_opaque_token(json!({}));
    assert_eq!(get_with_token(&h, "/api", &token).await.status, 200);
}

/// Sends `tokens` concurrently and returns how many were answered 401 and
/// how many 503 (the introspector's waiting room full); any other status
/// fails the test.
async fn flood(h: &Harness, tokens: Vec<String>) -> (usize, usize) {
    let mut set = tokio::task::JoinSet::new();
    for token in tokens {
        let client = h.api();
        let url = h.url("/api");
        set.spawn(async move {
            let resp = client
                .get(url)
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .send()
                .await?;
            let status = resp.status().as_u16();
            let body = resp.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        });
    }
    let (mut refused, mut overloaded) = (0, 0);
    while let Some(r) = set.join_next().await {
        let (status, body) = r.unwrap().unwrap();
        match status {
            401 => refused += 1,
            503 => {
                assert!(body.contains("temporarily_unavailable"), "{body}");
                overloaded += 1;
            }
            other => panic!("flood answered {other}: {body}"),
        }
    }
    (refused, overloaded)
}

#[tokio::test]
async fn bearer_flood_of_random_opaque_tokens_is_bounded_at_the_provider() {
    let h = Harness::with(introspecting()).await;
    h.op.set_fault(Fault::IntrospectionDelay(Duration::from_millis(100)));
    // 16 calls in flight and 256 waiting (the defaults): when all 300
    // arrive at once, the rest are told 503 at once instead of queueing.
    let (refused, overloaded) = flood(&h, (0..300).map(|_| random_token(24)).collect()).await;
    assert!(
        refused >= 16 + 200,
        "{refused} refused, {overloaded} overloaded"
    );
    assert!(overloaded <= 300 - 16 - 256, "{overloaded} overloaded");
    let c = h.op.counters();
    assert!(
        c.introspection_max_in_flight <= 16,
        "{} introspections in flight at once",
        c.introspection_max_in_flight
    );
    assert!(c.introspection <= 300, "{c:?}");
    // One made-up token sent 200 times: one call (single flight, then the
    // negative cache).
    h.op.reset_counters();
    let same = random_token(24);
    assert_eq!(
        flood(&h, (0..200).map(|_| same.clone()).collect()).await,
        (200, 0)
    );
    assert_eq!(h.op.counters().introspection, 1);
    // Tokens that are no RFC 6750 b64token never reach the provider.
    h.op.reset_counters();
    assert_eq!(
        flood(&h, (0..50).map(|i| format!("not,a;token{i}")).collect()).await,
        (50, 0)
    );
    assert_eq!(h.op.counters().introspection, 0);
    assert_eq!(h.echo.request_count(), 0);
}
