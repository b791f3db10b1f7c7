//! What the upstream receives (tokens, the signed identity assertion),
//! several upstreams behind one gateway, method/email/claim route policies
//! and the session cookie options — end to end through a real listener
//! (issue 10).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use oidc_gateway::devtools::echo::EchoUpstream as DevEcho;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde_json::{json, Value};
use std::net::SocketAddr;
use support::{Harness, Options, Resp};

const TOKENS: &str = "access_token = \"X-Forwarded-Access-Token\"\n\
                      id_token = \"X-Forwarded-Id-Token\"\n\
                      authorization = \"access_token\"\n\
                      assertion = \"X-Auth-Request-Jwt\"\n";

/// Every header a client may try to forge, `-` and `_` spellings.
const FORGED: &[(&str, &str)] = &[
    ("X-Forwarded-Access-Token", "forged"),
    ("X_Forwarded_Access_Token", "forged"),
    ("X-Forwarded-Id-Token", "forged"),
    ("X-Auth-Request-Jwt", "forged"),
    ("X_Auth_Request_Jwt", "forged"),
];

fn forged(mut rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    for (n, v) in FORGED {
        rb = rb.header(*n, *v);
    }
    rb
}

fn header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name].as_str()
}

async fn jwks_key(h: &Harness) -> jsonwebtoken::DecodingKey {
    let jwks: jsonwebtoken::jwk::JwkSet = h
        .api()
        .get(h.url("/oauth2/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).unwrap()
}

fn assertion_validation(h: &Harness, aud: &str) -> jsonwebtoken::Validation {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[aud]);
    v.set_issuer(&[h.base.as_str()]);
    v
}

fn origin(url: &str) -> String {
    url::Url::parse(url).unwrap().origin().ascii_serialization()
}

#[tokio::test]
async fn tokens_session_upstream_gets_configured_tokens_and_nothing_injected() {
    let h = Harness::with(Options {
        headers: TOKENS.into(),
        ..Options::default()
    })
    .await;
    let (browser, _jar) = h.browser();
    h.login(&browser, "/app").await;
    let resp = forged(browser.get(h.url("/app")))
        .header(AUTHORIZATION, "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = h.last_upstream();
    let access = header(&seen, "x-forwarded-access-token").expect("access token sent");
    assert_ne!(access, "forged");
    assert_eq!(
        access.split('.').count(),
        3,
        "the provider's JWT access token"
    );
    assert_eq!(
        header(&seen, "authorization"),
        Some(format!("Bearer {access}").as_str()),
        "the client's Basic header is replaced"
    );
    let id = header(&seen, "x-forwarded-id-token").expect("id token sent");
    assert_ne!(id, "forged");
    assert_eq!(id.split('.').count(), 3);
    let jwt = header(&seen, "x-auth-request-jwt").expect("assertion sent");
    assert_ne!(jwt, "forged");
    for (name, _) in FORGED.iter().filter(|(n, _)| n.contains('_')) {
        assert!(
            header(&seen, &name.to_ascii_lowercase()).is_none(),
            "{name}"
        );
    }

    // A public route: every one of these names is stripped, and the
    // gateway-owned Authorization too.
    let resp = forged(h.api().get(h.url("/public/x")))
        .header(AUTHORIZATION, "Bearer forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = h.last_upstream();
    for name in [
        "x-forwarded-access-token",
        "x_forwarded_access_token",
        "x-forwarded-id-token",
        "x-auth-request-jwt",
        "x_auth_request_jwt",
        "authorization",
    ] {
        assert!(header(&seen, name).is_none(), "{name}: {seen}");
    }
}

#[tokio::test]
async fn tokens_bearer_request_forwards_its_token_and_no_id_token() {
    let h = Harness::with(Options {
        headers: TOKENS.into(),
        ..Options::default()
    })
    .await;
    let token = h.op.mint_access_token(json!({ "sub": "bob" }));
    let resp = forged(h.api().get(h.url("/api")))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = h.last_upstream();
    assert_eq!(
        header(&seen, "x-forwarded-access-token"),
        Some(token.as_str())
    );
    assert_eq!(
        header(&seen, "authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert!(header(&seen, "x-forwarded-id-token").is_none());
    assert!(header(&seen, "x-auth-request-user").is_some());
}

#[tokio::test]
async fn tokens_off_client_authorization_passes_unchanged() {
    let h = Harness::start().await;
    let (browser, _jar) = h.browser();
    h.login(&browser, "/app").await;
    let resp = forged(browser.get(h.url("/app")))
        .header(AUTHORIZATION, "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = h.last_upstream();
    assert_eq!(header(&seen, "authorization"), Some("Basic YTpi"));
    // Not configured: not ours, so not stripped.
    assert_eq!(header(&seen, "x-forwarded-access-token"), Some("forged"));
    let jwks = h
        .api()
        .get(h.url("/oauth2/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 404, "no assertion, no keys");
}

#[tokio::test]
async fn assertion_verifies_with_published_jwks_and_fails_with_a_tampered_one() {
    let h = Harness::with(Options {
        headers: "assertion = \"X-Auth-Request-Jwt\"\n".into(),
        ..Options::default()
    })
    .await;
    let token = h.op.mint_access_token(json!({ "sub": "alice" }));
    let resp = h
        .api()
        .get(h.url("/app"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = h.last_upstream();
    let jwt = header(&seen, "x-auth-request-jwt").unwrap().to_string();
    let aud = origin(&h.echo.url());
    let key = jwks_key(&h).await;
    let data = jsonwebtoken::decode::<Value>(&jwt, &key, &assertion_validation(&h, &aud)).unwrap();
    assert_eq!(data.claims["sub"], "alice");
    assert_eq!(data.claims["email"], "alice@example.com");
    assert_eq!(data.claims["groups"], json!(["users"]));
    let (iat, exp) = (
        data.claims["iat"].as_u64().unwrap(),
        data.claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 60);

    // A tampered JWKS (the published one with another point: the P-256
    // generator, a valid key that is not the gateway's) does not verify it.
    let mut jwks: Value = h
        .api()
        .get(h.url("/oauth2/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"][0]["x"] = json!("axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY");
    jwks["keys"][0]["y"] = json!("T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU");
    let tampered: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let tampered = jsonwebtoken::DecodingKey::from_jwk(&tampered.keys[0]).unwrap();
    assert!(
        jsonwebtoken::decode::<Value>(&jwt, &tampered, &assertion_validation(&h, &aud)).is_err()
    );
    // A tampered assertion does not verify with the published key.
    let mut parts: Vec<String> = jwt.split('.').map(String::from).collect();
    let mut payload: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &parts[1])
            .unwrap(),
    )
    .unwrap();
    payload["sub"] = json!("root");
    parts[1] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        payload.to_string(),
    );
    assert!(
        jsonwebtoken::decode::<Value>(&parts.join("."), &key, &assertion_validation(&h, &aud))
            .is_err()
    );
    // Nor for another audience.
    assert!(
        jsonwebtoken::decode::<Value>(&jwt, &key, &assertion_validation(&h, "http://other"))
            .is_err()
    );
}

#[tokio::test]
async fn upstreams_two_apps_each_get_only_their_routes_with_their_policies() {
    let two = DevEcho::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let h = Harness::with(Options {
        headers: "assertion = \"X-Auth-Request-Jwt\"\n".into(),
        routes: format!(
            "[[route]]\npath = \"/two/admin/\"\nupstream = \"{u}\"\nstrip_prefix = true\n\
             allowed_groups = [\"admins\"]\n\
             [[route]]\npath = \"/two/\"\nupstream = \"{u}\"\nstrip_prefix = true\n\
             upstream_timeout = \"5s\"\npass_host_header = false\n",
            u = two.url()
        ),
        ..Options::default()
    })
    .await;
    let bearer = |groups: Value| {
        format!(
            "Bearer {}",
            h.op.mint_access_token(json!({ "sub": "bob", "groups": groups }))
        )
    };
    let get =
        |path: &str, auth: String| h.api().get(h.url(path)).header(AUTHORIZATION, auth).send();

    let before_one = h.echo.request_count();
    let resp = get("/two/x?q=1", bearer(json!(["users"]))).await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = two.last_request().unwrap();
    assert_eq!(seen["path"], "/x", "prefix stripped");
    assert_eq!(seen["query"], "q=1");
    assert_eq!(
        header(&seen, "host"),
        Some(url::Url::parse(&two.url()).unwrap().authority()),
        "this route does not pass the Host header"
    );
    assert_eq!(
        h.echo.request_count(),
        before_one,
        "the default upstream saw nothing"
    );
    // The assertion names the route's own upstream as its audience.
    let key = jwks_key(&h).await;
    let jwt = header(&seen, "x-auth-request-jwt").unwrap();
    assert!(jsonwebtoken::decode::<Value>(
        jwt,
        &key,
        &assertion_validation(&h, &origin(&two.url()))
    )
    .is_ok());

    let before_two = two.request_count();
    assert_eq!(
        get("/one", bearer(json!(["users"])))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(h.last_upstream()["path"], "/one");
    assert_eq!(
        two.request_count(),
        before_two,
        "the second upstream saw nothing"
    );

    // The second app's admin route has its own policy.
    let denied = get("/two/admin/", bearer(json!(["users"]))).await.unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(two.request_count(), before_two);
    let ok = get("/two/admin/panel", bearer(json!(["admins"])))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        two.last_request().unwrap()["path"],
        "/panel",
        "its own prefix stripped"
    );
}

#[tokio::test]
async fn methods_preflight_passes_without_session_while_get_needs_one() {
    let h = Harness::with(Options {
        routes: "[[route]]\npath = \"/api/\"\nmethods = [\"OPTIONS\"]\nauth = \"none\"\n".into(),
        ..Options::default()
    })
    .await;
    let preflight = h
        .api()
        .request(reqwest::Method::OPTIONS, h.url("/api/items"))
        .header("origin", "https://spa.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(h.last_upstream()["method"], "OPTIONS");
    let get = h.api().get(h.url("/api/items")).send().await.unwrap();
    assert_eq!(get.status(), 401);
    let nav = h.navigate(&h.api(), "/api/items").await;
    assert_eq!(nav.status, 302, "a browser GET is sent to log in");
}

#[tokio::test]
async fn claims_policies_allow_and_deny_as_written() {
    let h = Harness::with(Options {
        routes: "[[route]]\npath = \"/mfa/\"\nallowed_claims = { acr = [\"urn:mfa\"] }\n\
                 [[route]]\npath = \"/eng/\"\nallowed_claims = { department = [\"eng\"] }\n\
                 [[route]]\npath = \"/ceo/\"\nallowed_emails = [\"ceo@example.com\"]\n"
            .into(),
        ..Options::default()
    })
    .await;
    let call = |path: &str, claims: Value| {
        let token = h.op.mint_access_token(claims);
        h.api()
            .get(h.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
    };
    assert_eq!(
        call("/mfa/x", json!({"acr": "urn:mfa"}))
            .await
            .unwrap()
            .status(),
        200
    );
    let denied = call("/mfa/x", json!({"acr": "urn:pwd"})).await.unwrap();
    assert_eq!(denied.status(), 403);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body, json!({"error": "forbidden", "missing": "claims"}));
    assert_eq!(call("/mfa/x", json!({})).await.unwrap().status(), 403);
    assert_eq!(
        call("/eng/x", json!({"department": ["sales", "eng"]}))
            .await
            .unwrap()
            .status(),
        200,
        "a list claim containing the value"
    );
    assert_eq!(
        call("/eng/x", json!({"department": ["sales"]}))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        call("/eng/x", json!({"department": "engineering"}))
            .await
            .unwrap()
            .status(),
        403
    );
    let ceo = call("/ceo/", json!({"sub": "ceo", "email": "CEO@example.com"}))
        .await
        .unwrap();
    assert_eq!(ceo.status(), 200);
    assert_eq!(call("/ceo/", json!({})).await.unwrap().status(), 403);

    // A browser session: the ID token's claims decide, and the page names
    // what is missing, never the allowed addresses.
    let (browser, _jar) = h.browser();
    h.login(&browser, "/").await;
    let page = Resp::of(
        browser
            .get(h.url("/mfa/"))
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("acr"), "{}", page.body);
    assert!(page.body.contains("urn:mfa"), "{}", page.body);
    let page = Resp::of(
        browser
            .get(h.url("/ceo/"))
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 403);
    assert!(!page.body.contains("ceo@example.com"), "{}", page.body);

    h.op.set_user_claims("alice", json!({"acr": "urn:mfa"}));
    let (browser, _jar) = h.browser();
    h.login(&browser, "/").await;
    let resp = browser.get(h.url("/mfa/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn cookie_options_appear_in_set_cookie() {
    let h = Harness::with(Options {
        session: "cookie_name = \"sso\"\nsame_site = \"strict\"\n".into(),
        ..Options::default()
    })
    .await;
    let (browser, _jar) = h.browser();
    let flow = h.login_flow(&browser, "/app").await;
    let line = flow
        .callback
        .cookie_line("sso")
        .expect("session cookie named sso");
    assert!(line.contains("SameSite=Strict"), "{line}");
    assert!(line.contains("HttpOnly"), "{line}");
    assert!(!line.contains("Domain="), "{line}");
    let resp = browser.get(h.url("/app")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the renamed cookie is the session");
    assert!(
        header(&h.last_upstream(), "cookie").is_none_or(|c| !c.contains("sso=")),
        "the session cookie never reaches the upstream"
    );

    let h = Harness::with(Options {
        tls: true,
        session: "cookie_domain = \"localhost\"\n".into(),
        ..Options::default()
    })
    .await;
    let (browser, _jar) = h.browser();
    let flow = h.login_flow(&browser, "/app").await;
    let line = flow
        .callback
        .cookie_line("__Secure-oidc-gateway")
        .expect("no __Host- prefix with a Domain");
    assert!(line.contains("Domain=localhost"), "{line}");
    assert!(line.contains("Secure"), "{line}");
    assert!(line.contains("SameSite=Lax"), "{line}");
}

#[tokio::test]
async fn tokens_access_token_sent_is_the_refreshed_one() {
    let h = Harness::with(Options {
        headers: TOKENS.into(),
        provider: "scopes = [\"openid\", \"email\", \"profile\", \"offline_access\"]\n".into(),
        op_access_token_ttl: Some(std::time::Duration::from_secs(2)),
        ..Options::default()
    })
    .await;
    let (browser, _jar) = h.browser();
    h.login(&browser, "/app").await;
    assert_eq!(
        browser.get(h.url("/app")).send().await.unwrap().status(),
        200
    );
    let first = header(&h.last_upstream(), "x-forwarded-access-token")
        .unwrap()
        .to_string();
    // Refreshed at half of its 2 s life.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(
        browser.get(h.url("/app")).send().await.unwrap().status(),
        200
    );
    let seen = h.last_upstream();
    let fresh = header(&seen, "x-forwarded-access-token").unwrap();
    assert_ne!(fresh, first, "the refreshed access token");
    assert_eq!(
        header(&seen, "authorization"),
        Some(format!("Bearer {fresh}").as_str())
    );
}
