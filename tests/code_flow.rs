//! The browser flow (authorization code + PKCE) end to end against the
//! hostile in-process development provider: every ID-token, token-endpoint
//! and redirect fault must end with no session, no upstream request and an
//! error status, and each has a passing twin. Also: session cookie
//! attributes, state handling, open redirects, sign-out and back-channel
//! logout. Test names follow the OpenID RP certification ids where one
//! applies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use oidc_gateway::devtools::provider::corrupt_signature;
use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE};
use serde_json::{json, Value};
use support::{jwt_claims, now_secs, Fault, Flow, Harness, Options, Resp, Signer};

// ===== helpers =====

/// Drives a login while `fault` is active and checks it is refused with
/// `expect` (any 4xx/5xx when `None`), creating no session and sending
/// nothing upstream; then clears the fault and checks the same browser logs
/// in and reaches the upstream (the passing twin).
async fn refused_then_twin(h: &Harness, fault: Fault, expect: Option<u16>) -> Flow {
    h.op.set_fault(fault.clone());
    let upstream_before = h.echo.request_count();
    let (client, _jar) = h.browser();
    let flow = h.login_flow(&client, "/private?x=1").await;
    assert_refused(h, &flow.callback, expect, &format!("{fault:?}"));
    assert_eq!(
        h.echo.request_count(),
        upstream_before,
        "{fault:?}: the upstream saw a request"
    );
    // The browser still has no usable session.
    let api = client.get(h.url("/private")).send().await.unwrap();
    assert_eq!(api.status(), 401, "{fault:?}: browser is not signed in");
    assert_eq!(h.echo.request_count(), upstream_before);

    // Passing twin.
    h.op.clear_faults();
    twin(h, &client).await;
    flow
}

fn assert_refused(h: &Harness, resp: &Resp, expect: Option<u16>, what: &str) {
    match expect {
        Some(code) => assert_eq!(resp.status, code, "{what}: {resp:?}"),
        None => assert!(
            (400..600).contains(&resp.status),
            "{what}: expected an error status: {resp:?}"
        ),
    }
    assert!(
        !resp.sets_session(h.cookie),
        "{what}: a session cookie was set: {resp:?}"
    );
    assert_eq!(h.gw.session_count(), 0, "{what}: a session was stored");
}

/// A successful login with `client` that reaches the upstream as alice.
async fn twin(h: &Harness, client: &reqwest::Client) {
    let before = h.echo.request_count();
    h.login(client, "/private").await;
    let resp = client.get(h.url("/private")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "twin: signed-in request");
    assert_eq!(h.echo.request_count(), before + 1);
    assert_eq!(
        h.last_upstream()["headers"]["x-auth-request-user"],
        "alice",
        "twin: upstream identity"
    );
}

fn query_param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn cookie_attrs(line: &str) -> Vec<String> {
    line.split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

// ===== ID token faults (OpenID RP certification) =====

#[tokio::test]
async fn rp_id_token_bad_sig_rs256_login_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::BadSignature, None).await;
}

#[tokio::test]
async fn rp_id_token_sig_none_login_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::AlgNone, None).await;
}

#[tokio::test]
async fn rp_id_token_sig_hs256_with_rsa_public_key_login_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::Hs256WithRsaPublicKey, None).await;
}

#[tokio::test]
async fn rp_id_token_iss_mismatch_login_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::WrongIssuer, None).await;
}

#[tokio::test]
async fn rp_id_token_aud_mismatch_login_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::WrongAudience, None).await;
}

#[tokio::test]
async fn rp_id_token_aud_multiple_without_azp_login_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::MultipleAudiencesWithoutAzp, None).await;
}

#[tokio::test]
async fn rp_id_token_azp_wrong_login_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::WrongAzp, None).await;
}

#[tokio::test]
async fn rp_nonce_invalid_login_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::WrongNonce, None).await;
}

#[tokio::test]
async fn rp_nonce_missing_login_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::MissingNonce, None).await;
}

#[tokio::test]
async fn rp_id_token_expired_login_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::Expired, None).await;
}

#[tokio::test]
async fn rp_id_token_iat_in_future_login_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::IssuedInFuture, None).await;
}

#[tokio::test]
async fn rp_id_token_sub_missing_login_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::MissingSub, None).await;
}

#[tokio::test]
async fn rp_id_token_kid_absent_multiple_jwks_unknown_kid_refused_with_one_refetch() {
    let h = Harness::with(Options {
        provider: "jwks_min_refresh_interval = \"200ms\"".into(),
        ..Options::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.op.reset_counters();
    h.op.set_fault(Fault::UnknownKid);
    let (client, _jar) = h.browser();
    for _ in 0..3 {
        let flow = h.login_flow(&client, "/private").await;
        assert_refused(&h, &flow.callback, None, "UnknownKid");
    }
    let jwks = h.op.counters().jwks;
    assert!(jwks <= 1, "JWKS refetched {jwks} times for unknown kids");
    assert_eq!(h.echo.request_count(), 0);
    h.op.clear_faults();
    twin(&h, &client).await;
}

#[tokio::test]
async fn rp_key_rotation_op_sign_key_login_works_with_one_refetch() {
    let h = Harness::with(Options {
        provider: "jwks_min_refresh_interval = \"200ms\"".into(),
        ..Options::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old_kid = h.op.rsa_kid();
    h.op.rotate_keys().unwrap();
    assert_ne!(h.op.rsa_kid(), old_kid);
    h.op.reset_counters();
    let (client, _jar) = h.browser();
    twin(&h, &client).await;
    assert_eq!(
        h.op.counters().jwks,
        1,
        "JWKS refetched once after rotation"
    );
    // The new key is now known: a second login needs no fetch.
    let (client, _jar) = h.browser();
    twin(&h, &client).await;
    assert_eq!(h.op.counters().jwks, 1);
}

#[tokio::test]
async fn rp_key_rotation_with_jwks_unavailable_login_refused() {
    let h = Harness::with(Options {
        provider: "jwks_min_refresh_interval = \"100ms\"".into(),
        ..Options::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.op.rotate_keys_keep_old(false);
    h.op.rotate_keys().unwrap();
    h.op.set_fault(Fault::JwksUnavailable);
    let (client, _jar) = h.browser();
    let flow = h.login_flow(&client, "/private").await;
    assert_refused(&h, &flow.callback, None, "JwksUnavailable");
    assert_eq!(h.echo.request_count(), 0);
    h.op.clear_faults();
    tokio::time::sleep(Duration::from_millis(150)).await;
    twin(&h, &client).await;
}

#[tokio::test]
async fn jwks_unavailable_at_start_not_ready_and_login_refused_until_it_returns() {
    let h = Harness::with(Options {
        faults_before_start: vec![Fault::JwksUnavailable],
        wait_ready: false,
        ..Options::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!h.gw.is_ready());
    let ready = reqwest::get(h.admin_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let (client, _jar) = h.browser();
    let first = h.navigate(&client, "/private").await;
    if first.status == 302 {
        // Metadata is loaded, keys are not: the login must still fail.
        let cb = h.authorize(&client, &first.location().unwrap()).await;
        let resp = Resp::of(client.get(cb).send().await.unwrap()).await;
        assert_refused(&h, &resp, None, "JwksUnavailable at start");
    } else {
        assert_refused(&h, &first, Some(502), "JwksUnavailable at start");
    }
    assert_eq!(h.echo.request_count(), 0);
    h.op.clear_faults();
    h.wait_ready(Duration::from_secs(10)).await;
    twin(&h, &client).await;
}

// ===== token endpoint faults =====

#[tokio::test]
async fn token_endpoint_error_4xx_login_refused() {
    let h = Harness::start().await;
    let fault = Fault::TokenEndpointError {
        status: 400,
        body: r#"{"error":"invalid_grant"}"#.into(),
    };
    refused_then_twin(&h, fault, Some(400)).await;
}

#[tokio::test]
async fn token_endpoint_error_5xx_login_is_502() {
    let h = Harness::start().await;
    let fault = Fault::TokenEndpointError {
        status: 503,
        body: r#"{"error":"temporarily_unavailable"}"#.into(),
    };
    refused_then_twin(&h, fault, Some(502)).await;
}

#[tokio::test]
async fn token_endpoint_malformed_response_login_is_502() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::MalformedTokenResponse, Some(502)).await;
}

#[tokio::test]
async fn token_endpoint_oversized_response_login_is_502() {
    let h = Harness::with(Options {
        provider: "max_response_bytes = 16384".into(),
        ..Options::default()
    })
    .await;
    refused_then_twin(&h, Fault::OversizedTokenResponse(200_000), Some(502)).await;
}

#[tokio::test]
async fn token_endpoint_slower_than_http_timeout_login_is_502() {
    let h = Harness::with(Options {
        provider: "http_timeout = \"500ms\"".into(),
        ..Options::default()
    })
    .await;
    let started = std::time::Instant::now();
    refused_then_twin(
        &h,
        Fault::TokenEndpointDelay(Duration::from_secs(3)),
        Some(502),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timeout honoured"
    );
}

#[tokio::test]
async fn token_response_missing_id_token_login_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::MissingIdToken, None).await;
}

// ===== authorization response faults =====

#[tokio::test]
async fn callback_wrong_state_refused() {
    let h = Harness::start().await;
    refused_then_twin(&h, Fault::WrongState, Some(400)).await;
}

#[tokio::test]
async fn rp_iss_param_mismatch_rfc9207_refused() {
    let h = Harness::start().await;
    let flow = refused_then_twin(&h, Fault::WrongIssParam, Some(400)).await;
    assert_eq!(
        query_param(&flow.callback_url, "iss").as_deref(),
        Some(oidc_gateway::devtools::provider::ATTACKER_ISSUER)
    );
}

#[tokio::test]
async fn callback_error_redirect_refused() {
    let h = Harness::start().await;
    let flow = refused_then_twin(&h, Fault::ErrorRedirect, None).await;
    assert_eq!(
        query_param(&flow.callback_url, "error").as_deref(),
        Some("access_denied")
    );
}

#[tokio::test]
async fn discovery_issuer_mismatch_never_ready() {
    let h = Harness::with(Options {
        faults_before_start: vec![Fault::DiscoveryIssuerMismatch],
        wait_ready: false,
        ..Options::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!h.gw.is_ready());
    assert!(h.op.counters().discovery >= 2, "discovery was retried");
    let ready = reqwest::get(h.admin_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let (client, _jar) = h.browser();
    let nav = h.navigate(&client, "/private").await;
    assert_refused(&h, &nav, Some(502), "DiscoveryIssuerMismatch");
    assert!(
        nav.location().is_none(),
        "no redirect to an untrusted provider"
    );
    assert_eq!(h.op.counters().authorize, 0);
    assert_eq!(h.echo.request_count(), 0);
    // Twin: the provider fixes its document; the gateway becomes ready.
    h.op.clear_faults();
    h.wait_ready(Duration::from_secs(10)).await;
    let ready = reqwest::get(h.admin_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    twin(&h, &client).await;
}

// ===== login success =====

#[tokio::test]
async fn login_authorization_request_has_pkce_state_nonce() {
    let h = Harness::start().await;
    let (client, _jar) = h.browser();
    let flow = h.login_flow(&client, "/private").await;
    let a = &flow.authorize;
    assert_eq!(query_param(a, "response_type").as_deref(), Some("code"));
    assert_eq!(query_param(a, "client_id").as_deref(), Some("gateway"));
    assert_eq!(
        query_param(a, "redirect_uri"),
        Some(h.url("/oauth2/callback"))
    );
    let scope = query_param(a, "scope").unwrap();
    assert!(scope.split(' ').any(|s| s == "openid"), "{scope}");
    for p in ["state", "nonce", "code_challenge"] {
        let v = query_param(a, p).unwrap_or_default();
        assert!(v.len() >= 16, "{p} = {v:?}");
    }
    assert_eq!(
        query_param(a, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(flow.callback.status, 302);
}

#[tokio::test]
async fn login_success_sets_http_cookie_and_identity_headers() {
    let h = Harness::start().await;
    h.op.set_user_claims("alice", json!({"groups": ["users", "admins"]}));
    let (client, _jar) = h.browser();
    let flow = h.login_flow(&client, "/private/page?a=1&b=two").await;
    assert_eq!(flow.callback.status, 302, "{:?}", flow.callback);
    assert_eq!(
        flow.callback.header("location"),
        Some("/private/page?a=1&b=two"),
        "original URL restored"
    );
    let line = flow.callback.cookie_line("oidc-gateway").expect("cookie");
    let attrs = cookie_attrs(line);
    for a in ["httponly", "path=/", "samesite=lax"] {
        assert!(attrs.iter().any(|x| x == a), "{a} missing: {line}");
    }
    assert_eq!(h.gw.session_count(), 1);

    let resp = client
        .get(h.url("/private/page?a=1&b=two"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = h.last_upstream();
    assert_eq!(seen["path"], "/private/page");
    assert_eq!(seen["query"], "a=1&b=two");
    let hd = &seen["headers"];
    assert_eq!(hd["x-auth-request-user"], "alice");
    assert_eq!(hd["x-auth-request-email"], "alice@example.com");
    assert_eq!(hd["x-auth-request-preferred-username"], "alice");
    assert_eq!(hd["x-auth-request-groups"], "users,admins");
}

#[tokio::test]
async fn login_success_over_tls_sets_host_prefixed_secure_cookie() {
    let h = Harness::with(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    assert!(h.base.starts_with("https://localhost:"));
    let (client, _jar) = h.browser();
    let flow = h.login_flow(&client, "/private").await;
    assert_eq!(flow.callback.status, 302, "{:?}", flow.callback);
    assert!(flow.callback.cookie_line("oidc-gateway").is_none());
    let line = flow
        .callback
        .cookie_line("__Host-oidc-gateway")
        .expect("__Host- cookie");
    let attrs = cookie_attrs(line);
    for a in ["httponly", "path=/", "samesite=lax", "secure"] {
        assert!(attrs.iter().any(|x| x == a), "{a} missing: {line}");
    }
    assert!(
        !attrs.iter().any(|x| x.starts_with("domain")),
        "__Host- has no Domain: {line}"
    );
    let resp = client.get(h.url("/private")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = h.last_upstream();
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn login_gateway_cookies_removed_from_upstream_other_cookies_pass() {
    let h = Harness::start().await;
    let (client, _jar) = h.browser();
    let session = h.login(&client, "/").await;
    let resp = h
        .api()
        .get(h.url("/private"))
        .header(
            COOKIE,
            format!("theme=dark; oidc-gateway={session}; oidc-gateway-login-abc=zzz; lang=en"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = h.last_upstream();
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice");
    let cookie = seen["headers"]["cookie"].as_str().unwrap_or("");
    assert!(!cookie.contains("oidc-gateway"), "{cookie}");
    assert!(!cookie.contains(&session), "{cookie}");
    assert!(cookie.contains("theme=dark"), "{cookie}");
    assert!(cookie.contains("lang=en"), "{cookie}");
}

#[tokio::test]
async fn login_presented_session_id_never_reused_fixation() {
    let h = Harness::start().await;
    // The attacker signs in as mallory and plants that session in the
    // victim's browser.
    h.op.set_auto_login(Some("mallory"));
    let (attacker, _jar) = h.browser();
    let planted = h.login(&attacker, "/").await;
    h.op.set_auto_login(Some("alice"));

    let (victim, jar) = h.browser();
    let url = url::Url::parse(&h.base).unwrap();
    jar.add_cookie_str(&format!("oidc-gateway={planted}; Path=/"), &url);
    // The victim signs in explicitly (a planted valid session would
    // otherwise just be used).
    let fresh = login_via_start(&h, &victim).await;
    assert_ne!(fresh, planted, "session id reused");
    let resp = victim.get(h.url("/private")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.last_upstream()["headers"]["x-auth-request-user"], "alice");
    // The planted id does not carry alice's identity.
    let before = h.echo.request_count();
    let resp = h
        .api()
        .get(h.url("/private"))
        .header(COOKIE, format!("oidc-gateway={planted}"))
        .send()
        .await
        .unwrap();
    if resp.status() == 200 {
        assert_eq!(
            h.last_upstream()["headers"]["x-auth-request-user"],
            "mallory"
        );
    } else {
        assert_eq!(resp.status(), 401);
        assert_eq!(h.echo.request_count(), before);
    }

    // An id the gateway never issued is not adopted either.
    let (victim2, jar2) = h.browser();
    let made_up = "A".repeat(43);
    jar2.add_cookie_str(&format!("oidc-gateway={made_up}; Path=/"), &url);
    let fresh2 = login_via_start(&h, &victim2).await;
    assert_ne!(fresh2, made_up);
}

/// `/oauth2/start` → provider → callback; returns the new session cookie.
async fn login_via_start(h: &Harness, client: &reqwest::Client) -> String {
    let start = Resp::of(client.get(h.url("/oauth2/start")).send().await.unwrap()).await;
    assert_eq!(start.status, 302, "{start:?}");
    let cb = h.authorize(client, &start.location().unwrap()).await;
    let done = Resp::of(client.get(cb).send().await.unwrap()).await;
    assert_eq!(done.status, 302, "{done:?}");
    done.cookie(h.cookie)
        .filter(|v| !v.is_empty())
        .expect("session cookie")
}

// ===== state =====

/// The login cookie a flow's first response set, as `name=value`.
fn login_cookie_pair(start: &Resp) -> String {
    start
        .set_cookie_lines()
        .into_iter()
        .find(|l| l.starts_with("oidc-gateway-login-"))
        .and_then(|l| l.split(';').next())
        .expect("login cookie")
        .to_owned()
}

#[tokio::test]
async fn callback_replayed_state_refused() {
    let h = Harness::start().await;
    let (client, _jar) = h.browser();
    let start = h.navigate(&client, "/private").await;
    let login_cookie = login_cookie_pair(&start);
    let callback_url = h.authorize(&client, &start.location().unwrap()).await;
    let api = h.api();
    let first = Resp::of(
        api.get(callback_url.clone())
            .header(COOKIE, &login_cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(first.status, 302, "{first:?}");
    assert!(first.sets_session(h.cookie));
    // The same response (and the same login cookie) again.
    let second = Resp::of(
        api.get(callback_url)
            .header(COOKIE, &login_cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!((400..500).contains(&second.status), "{second:?}");
    assert!(!second.sets_session(h.cookie));
    assert_eq!(h.gw.session_count(), 1);
    assert_eq!(h.echo.request_count(), 0);
}

#[tokio::test]
async fn callback_without_login_cookie_refused() {
    let h = Harness::start().await;
    let (client, _jar) = h.browser();
    let start = h.navigate(&client, "/private").await;
    let callback_url = h.authorize(&client, &start.location().unwrap()).await;
    // Another browser (no login cookie) delivers the response.
    let resp = Resp::of(h.api().get(callback_url.clone()).send().await.unwrap()).await;
    assert_refused(&h, &resp, Some(400), "no login cookie");
    // Twin: the right browser completes (the code is still unused).
    let ok = Resp::of(client.get(callback_url).send().await.unwrap()).await;
    assert_eq!(ok.status, 302, "{ok:?}");
    assert!(ok.sets_session(h.cookie));
}

#[tokio::test]
async fn callback_two_parallel_tabs_both_complete() {
    let h = Harness::start().await;
    let (client, _jar) = h.browser();
    let tab1 = h.navigate(&client, "/one").await;
    let tab2 = h.navigate(&client, "/two?t=2").await;
    let cb1 = h.authorize(&client, &tab1.location().unwrap()).await;
    let cb2 = h.authorize(&client, &tab2.location().unwrap()).await;
    let r2 = Resp::of(client.get(cb2).send().await.unwrap()).await;
    assert_eq!(r2.status, 302, "{r2:?}");
    assert_eq!(r2.header("location"), Some("/two?t=2"));
    assert!(r2.sets_session(h.cookie));
    let r1 = Resp::of(client.get(cb1).send().await.unwrap()).await;
    assert_eq!(r1.status, 302, "{r1:?}");
    assert_eq!(r1.header("location"), Some("/one"));
    assert!(r1.sets_session(h.cookie));
}

#[tokio::test]
async fn callback_repeated_parameters_refused() {
    let h = Harness::start().await;
    for extra in ["state=forged", "code=forged"] {
        let (client, _jar) = h.browser();
        let start = h.navigate(&client, "/private").await;
        let cb = h.authorize(&client, &start.location().unwrap()).await;
        let doubled = format!("{cb}&{extra}");
        let resp = Resp::of(client.get(&doubled).send().await.unwrap()).await;
        assert_refused(&h, &resp, Some(400), extra);
        // Twin with the unmodified response is refused too now (state
        // consumed or not): at least no session from the doubled one.
    }
    let (client, _jar) = h.browser();
    twin(&h, &client).await;
}

#[tokio::test]
async fn callback_form_post_completes_login() {
    let h = Harness::start().await;
    let (client, _jar) = h.browser();
    let start = h.navigate(&client, "/posted?p=1").await;
    let cb = h.authorize(&client, &start.location().unwrap()).await;
    let form = cb.query().unwrap().to_owned();
    let resp = Resp::of(
        client
            .post(h.url("/oauth2/callback"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 302, "{resp:?}");
    assert_eq!(resp.header("location"), Some("/posted?p=1"));
    assert!(resp.sets_session(h.cookie));
    let ok = client.get(h.url("/posted")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn callback_form_post_wrong_content_type_refused() {
    let h = Harness::start().await;
    let (client, _jar) = h.browser();
    let start = h.navigate(&client, "/private").await;
    let cb = h.authorize(&client, &start.location().unwrap()).await;
    let resp = Resp::of(
        client
            .post(h.url("/oauth2/callback"))
            .header(CONTENT_TYPE, "text/plain")
            .body(cb.query().unwrap().to_owned())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&h, &resp, None, "text/plain form_post");
}

// ===== open redirects =====

#[tokio::test]
async fn start_rd_open_redirects_end_at_root() {
    let h = Harness::start().await;
    let hostile = [
        "//evil.com",
        "/\\evil.com",
        "https://evil.com",
        "/%2F%2Fevil.com",
        "/%09/evil.com",
        "javascript:alert(1)",
        "\\\\evil.com",
        "/%5Cevil.com",
        " //evil.com",
    ];
    for rd in hostile {
        let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let (client, _jar) = h.browser();
        let start = Resp::of(
            client
                .get(h.url(&format!("/oauth2/start?rd={enc}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(start.status, 302, "{rd}: {start:?}");
        let cb = h.authorize(&client, &start.location().unwrap()).await;
        let done = Resp::of(client.get(cb).send().await.unwrap()).await;
        assert_eq!(done.status, 302, "{rd}: {done:?}");
        assert_eq!(done.header("location"), Some("/"), "rd={rd:?}");
    }
    // Twin: a local path is honoured.
    let (client, _jar) = h.browser();
    let start = Resp::of(
        client
            .get(h.url("/oauth2/start?rd=%2Fapp%2Fpage%3Fq%3D1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let cb = h.authorize(&client, &start.location().unwrap()).await;
    let done = Resp::of(client.get(cb).send().await.unwrap()).await;
    assert_eq!(done.header("location"), Some("/app/page?q=1"));
}

// ===== sign-out =====

#[tokio::test]
async fn sign_out_deletes_session_clears_cookie_and_redirects_to_provider() {
    let h = Harness::start().await;
    let (client, _jar) = h.browser();
    let session = h.login(&client, "/").await;
    assert_eq!(h.gw.session_count(), 1);
    let out = Resp::of(
        client
            .get(h.url("/oauth2/sign_out?rd=%2Fbye"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(out.status, 302, "{out:?}");
    let loc = out.location().unwrap();
    assert!(
        loc.as_str()
            .starts_with(&format!("{}/end_session", h.op.issuer())),
        "{loc}"
    );
    let hint = query_param(&loc, "id_token_hint").expect("id_token_hint");
    let claims = jwt_claims(&hint);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "gateway");
    // The one registered URI; rd travels in the sealed state.
    assert_eq!(
        query_param(&loc, "post_logout_redirect_uri"),
        Some(h.url("/oauth2/signed_out"))
    );
    assert!(!query_param(&loc, "state").unwrap().contains("bye"));
    let back = Resp::of(client.get(loc.clone()).send().await.unwrap()).await;
    let back = back.location().expect("end_session redirects back");
    assert_eq!(back.path(), "/oauth2/signed_out", "{back}");
    let signed_out = Resp::of(client.get(back).send().await.unwrap()).await;
    assert_eq!(
        signed_out.header("location"),
        Some("/bye"),
        "{signed_out:?}"
    );
    let cleared = out.cookie_line("oidc-gateway").expect("cookie cleared");
    assert!(
        out.cookie("oidc-gateway").unwrap().is_empty()
            || cookie_attrs(cleared).iter().any(|a| a == "max-age=0"),
        "{cleared}"
    );
    assert_eq!(h.gw.session_count(), 0);

    // Replaying the old cookie: API → 401, navigation → login.
    let before = h.echo.request_count();
    let api = h
        .api()
        .get(h.url("/private"))
        .header(COOKIE, format!("oidc-gateway={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    let nav = Resp::of(
        h.api()
            .get(h.url("/private"))
            .header(COOKIE, format!("oidc-gateway={session}"))
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(nav.status, 302);
    assert!(nav.location().unwrap().as_str().starts_with(h.op.issuer()));
    assert_eq!(h.echo.request_count(), before);
}

#[tokio::test]
async fn sign_out_foreign_rd_returns_to_root() {
    let h = Harness::start().await;
    for rd in ["https%3A%2F%2Fevil.com", "%2F%2Fevil.com"] {
        let (client, _jar) = h.browser();
        h.login(&client, "/").await;
        let out = Resp::of(
            client
                .post(h.url(&format!("/oauth2/sign_out?rd={rd}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(out.status, 302, "{out:?}");
        let loc = out.location().unwrap();
        assert_eq!(
            query_param(&loc, "post_logout_redirect_uri"),
            Some(h.url("/oauth2/signed_out")),
            "rd={rd}"
        );
        let back = Resp::of(client.get(loc).send().await.unwrap()).await;
        let signed_out = Resp::of(client.get(back.location().unwrap()).send().await.unwrap()).await;
        assert_eq!(signed_out.header("location"), Some("/"), "rd={rd}");
    }
}

/// RP-Initiated Logout 1.0 §2–3: providers accept only an exactly
/// registered post_logout_redirect_uri, so every sign-out names the same one
/// and the local `rd` comes back in the sealed, single-use `state`.
#[tokio::test]
async fn sign_out_any_rd_uses_one_post_logout_uri_and_returns_to_rd_once() {
    let h = Harness::start().await;
    for rd in ["/bye", "/app/page?q=1", "/"] {
        let (client, _jar) = h.browser();
        h.login(&client, "/").await;
        let encoded: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let out = Resp::of(
            client
                .get(h.url(&format!("/oauth2/sign_out?rd={encoded}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let loc = out.location().unwrap();
        assert_eq!(
            query_param(&loc, "post_logout_redirect_uri"),
            Some(h.url("/oauth2/signed_out")),
            "rd={rd}"
        );
        let back = Resp::of(client.get(loc).send().await.unwrap()).await;
        let back = back.location().unwrap();
        let done = Resp::of(client.get(back.clone()).send().await.unwrap()).await;
        assert_eq!(done.status, 302, "{done:?}");
        assert_eq!(done.header("location"), Some(rd));
        // The state is single use: a replay shows the signed-out page.
        let again = Resp::of(client.get(back).send().await.unwrap()).await;
        assert_eq!(again.status, 200, "{again:?}");
        assert!(again.body.contains("Signed out"), "{again:?}");
        assert!(again.body.contains("href=\"/oauth2/start\""), "{again:?}");
    }
    // Without a state (or with a forged one): the page, never a redirect.
    let (client, _jar) = h.browser();
    for path in ["/oauth2/signed_out", "/oauth2/signed_out?state=forged"] {
        let r = Resp::of(client.get(h.url(path)).send().await.unwrap()).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert!(r.header("location").is_none());
    }
}

// ===== userinfo =====

#[tokio::test]
async fn userinfo_with_session_returns_identity_json() {
    let h = Harness::start().await;
    let (client, _jar) = h.browser();
    h.login(&client, "/").await;
    let resp = Resp::of(client.get(h.url("/oauth2/userinfo")).send().await.unwrap()).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let v = resp.json();
    assert_eq!(v["subject"], "alice");
    assert_eq!(v["email"], "alice@example.com");
    assert_eq!(v["groups"], json!(["users"]));
}

#[tokio::test]
async fn userinfo_without_session_is_401() {
    let h = Harness::start().await;
    let resp = Resp::of(
        h.api()
            .get(h.url("/oauth2/userinfo"))
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 401, "{resp:?}");
    assert!(resp.header("www-authenticate").is_some());
}

// ===== back-channel logout =====

async fn post_logout(h: &Harness, content_type: &str, body: String) -> Resp {
    Resp::of(
        h.api()
            .post(h.url("/oauth2/backchannel_logout"))
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn form(token: &str) -> String {
    format!("logout_token={token}")
}

fn signed(h: &Harness, claims: &Value) -> String {
    h.op.sign_with(Signer::Rs256, json!({"typ": "logout+jwt"}), claims)
}

#[tokio::test]
async fn backchannel_logout_malformed_tokens_400_session_survives() {
    let h = Harness::start().await;
    let (client, _jar) = h.browser();
    h.login(&client, "/").await;
    let base = jwt_claims(&h.op.mint_logout_token(Some("alice"), None));
    let variant = |f: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        c["jti"] = json!(format!("jti-{}", support::random_token(8)));
        f(&mut c);
        c
    };
    let mut cases: Vec<(&str, String, &str)> = vec![
        (
            "no events",
            signed(
                &h,
                &variant(&|c| {
                    c.as_object_mut().unwrap().remove("events");
                }),
            ),
            "form",
        ),
        (
            "with nonce",
            signed(&h, &variant(&|c| c["nonce"] = json!("n-123"))),
            "form",
        ),
        (
            "wrong aud",
            signed(&h, &variant(&|c| c["aud"] = json!("some-other-client"))),
            "form",
        ),
        (
            "wrong iss",
            signed(
                &h,
                &variant(&|c| c["iss"] = json!("https://attacker.example")),
            ),
            "form",
        ),
        (
            "expired",
            signed(
                &h,
                &variant(&|c| {
                    c["iat"] = json!(now_secs() - 7200);
                    c["exp"] = json!(now_secs() - 3600);
                }),
            ),
            "form",
        ),
        (
            "bad signature",
            corrupt_signature(&signed(&h, &variant(&|_| {}))),
            "form",
        ),
        (
            "alg none",
            h.op.sign_with(
                Signer::None,
                json!({"typ": "logout+jwt"}),
                &variant(&|_| {}),
            ),
            "form",
        ),
        (
            "hs256 with public key",
            h.op.sign_with(
                Signer::Hs256WithRsaPublicKey,
                json!({"typ": "logout+jwt"}),
                &variant(&|_| {}),
            ),
            "form",
        ),
        ("no sid nor sub", h.op.mint_logout_token(None, None), "form"),
        ("not a form", signed(&h, &variant(&|_| {})), "json"),
        ("garbage", "not-a-jwt".to_owned(), "form"),
    ];
    for (what, token, kind) in cases.drain(..) {
        let resp = if kind == "json" {
            post_logout(
                &h,
                "application/json",
                json!({"logout_token": token}).to_string(),
            )
            .await
        } else {
            post_logout(&h, "application/x-www-form-urlencoded", form(&token)).await
        };
        assert_eq!(resp.status, 400, "{what}: {resp:?}");
        let alive = client.get(h.url("/private")).send().await.unwrap();
        assert_eq!(alive.status(), 200, "{what}: session must survive");
    }
    // Missing parameter and repeated parameter.
    let t = signed(&h, &variant(&|_| {}));
    for body in [String::new(), format!("logout_token={t}&logout_token={t}")] {
        let resp = post_logout(&h, "application/x-www-form-urlencoded", body).await;
        assert_eq!(resp.status, 400, "{resp:?}");
    }
    assert_eq!(h.gw.session_count(), 1);

    // Replayed jti: valid for another user (200), then refused (400).
    let bob = h.op.mint_logout_token(Some("bob"), None);
    let first = post_logout(&h, "application/x-www-form-urlencoded", form(&bob)).await;
    assert_eq!(first.status, 200, "{first:?}");
    let again = post_logout(&h, "application/x-www-form-urlencoded", form(&bob)).await;
    assert_eq!(again.status, 400, "replayed jti: {again:?}");
    let alive = client.get(h.url("/private")).send().await.unwrap();
    assert_eq!(alive.status(), 200);
}

#[tokio::test]
async fn backchannel_logout_valid_token_ends_session() {
    let h = Harness::start().await;
    let (client, _jar) = h.browser();
    h.login(&client, "/").await;
    let (other, _jar2) = h.browser();
    h.op.set_auto_login(Some("bob"));
    h.login(&other, "/").await;
    assert_eq!(h.gw.session_count(), 2);
    let token = h.op.mint_logout_token(Some("alice"), None);
    let resp = post_logout(&h, "application/x-www-form-urlencoded", form(&token)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let gone = client.get(h.url("/private")).send().await.unwrap();
    assert_eq!(gone.status(), 401, "alice's session ended");
    let alive = other.get(h.url("/private")).send().await.unwrap();
    assert_eq!(alive.status(), 200, "bob's session untouched");
    assert_eq!(h.gw.session_count(), 1);
}

#[tokio::test]
async fn backchannel_logout_sid_only_ends_that_session_other_sid_survives() {
    let h = Harness::start().await;
    let (first, _jar1) = h.browser();
    h.login(&first, "/").await;
    let sid_first = h.op.last_issued_sid().expect("sid of the first login");
    let (second, _jar2) = h.browser();
    h.login(&second, "/").await;
    let sid_second = h.op.last_issued_sid().expect("sid of the second login");
    let (third, _jar3) = h.browser();
    h.login(&third, "/").await;
    let sid_third = h.op.last_issued_sid().expect("sid of the third login");
    assert_ne!(sid_first, sid_second);
    assert_ne!(sid_second, sid_third);
    assert_eq!(h.gw.session_count(), 3, "three sessions of alice");

    // Only `sid`: ends exactly the session that carries it.
    let token = h.op.mint_logout_token(None, Some(&sid_first));
    assert!(jwt_claims(&token).get("sub").is_none(), "token has no sub");
    let resp = post_logout(&h, "application/x-www-form-urlencoded", form(&token)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let gone = first.get(h.url("/private")).send().await.unwrap();
    assert_eq!(gone.status(), 401, "the session with that sid ended");
    for (what, client) in [("second", &second), ("third", &third)] {
        let alive = client.get(h.url("/private")).send().await.unwrap();
        assert_eq!(alive.status(), 200, "{what} session (other sid) survives");
        assert_eq!(h.last_upstream()["headers"]["x-auth-request-user"], "alice");
    }
    assert_eq!(h.gw.session_count(), 2);

    // `sub` and `sid`: still only that sid, not every session of the user.
    let token = h.op.mint_logout_token(Some("alice"), Some(&sid_second));
    let resp = post_logout(&h, "application/x-www-form-urlencoded", form(&token)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let gone = second.get(h.url("/private")).send().await.unwrap();
    assert_eq!(gone.status(), 401, "the session with sid + sub ended");
    let alive = third.get(h.url("/private")).send().await.unwrap();
    assert_eq!(alive.status(), 200, "alice's third session survives");
    assert_eq!(h.gw.session_count(), 1);

    // An unknown sid ends nothing.
    let token = h.op.mint_logout_token(None, Some("no-such-sid"));
    let resp = post_logout(&h, "application/x-www-form-urlencoded", form(&token)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let alive = third.get(h.url("/private")).send().await.unwrap();
    assert_eq!(alive.status(), 200);
    assert_eq!(h.gw.session_count(), 1);
}

// ===== response_mode = form_post =====

/// Decodes the five entities `escape_html` produces (and `&#x27;`).
fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in one HTML tag (double-quoted values).
fn html_attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(html_unescape(&tag[start..start + len]))
}

/// The first `<form>` of a page: its method, action and hidden inputs.
fn parse_form(html: &str) -> (String, String, Vec<(String, String)>) {
    let form_start = html.find("<form").expect("a <form> in the page");
    let form_end = html[form_start..]
        .find("</form>")
        .map(|i| form_start + i)
        .expect("</form>");
    let form = &html[form_start..form_end];
    let form_tag = &form[..form.find('>').expect("form tag end")];
    let method = html_attr(form_tag, "method").unwrap_or_default();
    let action = html_attr(form_tag, "action").expect("form action");
    let mut inputs = Vec::new();
    let mut rest = form;
    while let Some(i) = rest.find("<input") {
        let tag_end = rest[i..].find('>').expect("input tag end") + i;
        let tag = &rest[i..tag_end];
        if html_attr(tag, "type").as_deref() == Some("hidden") {
            inputs.push((
                html_attr(tag, "name").expect("input name"),
                html_attr(tag, "value").unwrap_or_default(),
            ));
        }
        rest = &rest[tag_end..];
    }
    (method, action, inputs)
}

#[tokio::test]
async fn form_post_response_mode_login_completes_via_posted_form() {
    let h = Harness::with(Options {
        tls: true,
        provider: "response_mode = \"form_post\"\n".into(),
        ..Options::default()
    })
    .await;
    let (client, _jar) = h.browser();
    let start = h.navigate(&client, "/posted?p=1").await;
    assert_eq!(start.status, 302, "{start:?}");
    let authorize = start.location().expect("Location to the provider");
    assert!(authorize.as_str().starts_with(h.op.issuer()), "{authorize}");
    assert_eq!(
        query_param(&authorize, "response_mode").as_deref(),
        Some("form_post"),
        "{authorize}"
    );
    // The login cookie must come back on a cross-site POST.
    let login_line = start
        .set_cookie_lines()
        .into_iter()
        .find(|l| l.contains("oidc-gateway-login-"))
        .unwrap_or_else(|| panic!("login cookie: {start:?}"));
    let attrs = cookie_attrs(login_line);
    for a in ["samesite=none", "secure", "httponly"] {
        assert!(attrs.iter().any(|x| x == a), "{a} missing: {login_line}");
    }

    // The provider answers with its auto-submitting form, not a redirect.
    let at_op = Resp::of(client.get(authorize.clone()).send().await.unwrap()).await;
    assert_eq!(at_op.status, 200, "provider form_post page: {at_op:?}");
    assert!(at_op.location().is_none());
    let (method, action, inputs) = parse_form(&at_op.body);
    assert_eq!(method.to_ascii_lowercase(), "post");
    assert_eq!(action, h.url("/oauth2/callback"));
    let names: Vec<&str> = inputs.iter().map(|(k, _)| k.as_str()).collect();
    for n in ["code", "state", "iss"] {
        assert!(names.contains(&n), "hidden input {n} missing: {names:?}");
    }
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(inputs.iter())
        .finish();
    let cb = Resp::of(
        client
            .post(&action)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(cb.status, 302, "{cb:?}");
    assert_eq!(cb.header("location"), Some("/posted?p=1"));
    assert!(cb.sets_session(h.cookie), "{cb:?}");
    assert_eq!(h.gw.session_count(), 1);

    let resp = client.get(h.url("/posted?p=1")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = h.last_upstream();
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice");
    assert_eq!(seen["headers"]["x-auth-request-email"], "alice@example.com");
}

#[tokio::test]
async fn form_post_callback_posted_from_other_browser_refused() {
    // The provider's form replayed by a browser without the login cookie
    // (which is SameSite=None, so only the browser that started the login
    // has it) creates no session.
    let h = Harness::with(Options {
        tls: true,
        provider: "response_mode = \"form_post\"\n".into(),
        ..Options::default()
    })
    .await;
    let (client, _jar) = h.browser();
    let start = h.navigate(&client, "/private").await;
    let authorize = start.location().unwrap();
    let at_op = Resp::of(client.get(authorize).send().await.unwrap()).await;
    assert_eq!(at_op.status, 200, "{at_op:?}");
    let (_, action, inputs) = parse_form(&at_op.body);
    // An attacker replays the posted parameters from another browser.
    let (attacker, _jar2) = h.browser();
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(inputs.iter())
        .finish();
    let resp = Resp::of(
        attacker
            .post(&action)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&h, &resp, None, "form_post without the login cookie");
}
