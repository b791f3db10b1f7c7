//! Provider dialects end to end: a browser logs in through an in-process
//! gateway (`RunningGateway` on 127.0.0.1, plain HTTP) in front of
//! `devtools::echo::EchoUpstream`, against an emulator of each dialect
//! (`tests/emulators/`): Janrain Capture, Oracle IDCS, seed-C OAuth 2.0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod emulators;
mod support;

use emulators::idcs::{self, Idcs};
use emulators::janrain::{self, Capture, ClientAuthSeen};
use emulators::oauth2::{self as seedc, IdTokenFault, SeedC};
use oidc_gateway::config::{GatewayConfig, ProcessEnv};
use oidc_gateway::devtools::echo::EchoUpstream;
use oidc_gateway::gateway::RunningGateway;
use reqwest::header::ACCEPT;
use serde_json::Value;
use std::time::{Duration, Instant};
use url::Url;

const CLIENT_ID: &str = "gateway-client";
const SECRET: &str = "s3cret+/:%";

// ===== harness =====

struct Setup {
    gw: RunningGateway,
    echo: EchoUpstream,
    base: String,
    browser: reqwest::Client,
}

impl Setup {
    async fn start(provider: &str) -> Setup {
        let s = Self::start_unready(provider).await;
        s.wait_ready(Duration::from_secs(10)).await;
        s
    }

    async fn start_unready(provider: &str) -> Setup {
        let echo = EchoUpstream::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let port = support::free_port();
        let base = format!("http://127.0.0.1:{port}");
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "{base}"
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[provider]
client_id = "{CLIENT_ID}"
http_timeout = "3s"
jwks_min_refresh_interval = "1s"
{provider}
[session]
secret = "{session}"
"#,
            upstream = echo.url(),
            session = support::random_base64(32),
        );
        let config = GatewayConfig::from_toml_str(&toml, &ProcessEnv)
            .unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
        let gw = RunningGateway::start(config).await.unwrap();
        let (browser, _jar) = support::browser(None);
        Setup {
            gw,
            echo,
            base,
            browser,
        }
    }

    async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.gw.is_ready() {
            assert!(Instant::now() < deadline, "gateway not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.browser
            .get(url)
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap()
    }

    /// Browser navigation to `/app`: 302 to the provider; returns its URL.
    async fn begin(&self) -> Url {
        let r = self.get(&self.url("/app?x=1")).await;
        assert_eq!(r.status(), 302, "{:?}", r.text().await);
        support::location(&r).unwrap()
    }

    /// Follows the provider's authorization URL: 302 back to the callback.
    async fn authorize(&self, provider_url: &Url) -> Url {
        let r = self.get(provider_url.as_str()).await;
        assert_eq!(r.status(), 302, "provider: {:?}", r.text().await);
        let cb = support::location(&r).unwrap();
        assert!(
            cb.as_str().starts_with(&self.url("/oauth2/callback")),
            "{cb}"
        );
        cb
    }

    /// Completes the callback; `Ok(return_to)` on success, else the error page.
    async fn callback(&self, cb: &Url) -> Result<Url, (u16, String)> {
        let r = self.get(cb.as_str()).await;
        if r.status() == 302 {
            Ok(support::location(&r).unwrap())
        } else {
            Err((r.status().as_u16(), r.text().await.unwrap()))
        }
    }

    /// A full login; then the upstream's view of `/app?x=1`.
    async fn login(&self) -> Value {
        let p = self.begin().await;
        let cb = self.authorize(&p).await;
        let back = self.callback(&cb).await.expect("callback");
        assert_eq!(back.as_str(), self.url("/app?x=1"));
        self.upstream_view().await
    }

    /// `GET /app?x=1` with the session (JSON echo).
    async fn upstream_view(&self) -> Value {
        let r = self.browser.get(self.url("/app?x=1")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// After a failed login: no session was made and the upstream saw nothing.
    async fn assert_no_session(&self) {
        assert_eq!(self.gw.session_count(), 0);
        assert_eq!(self.echo.request_count(), 0);
        let r = self.browser.get(self.url("/app")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(self.echo.request_count(), 0);
    }
}

fn header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name.to_ascii_lowercase()].as_str()
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn error_page(e: Result<Url, (u16, String)>, status: u16) -> String {
    let (s, body) = e.expect_err("login should fail");
    assert_eq!(s, status, "{body}");
    assert!(
        body.contains("Sign-in failed") || body.contains("Sign-in"),
        "{body}"
    );
    body
}

// ===== Janrain Capture =====

fn capture_provider(cap: &Capture, client_auth: &str, secret: &str) -> String {
    format!(
        "kind = \"janrain-capture\"\ncapture_domain = \"{}\"\nclient_secret = \"{secret}\"\nclient_auth = \"{client_auth}\"\n",
        cap.url()
    )
}

#[tokio::test]
async fn janrain_login_identity_from_entity_with_basic_auth() {
    let cap = Capture::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&capture_provider(&cap, "client_secret_basic", SECRET)).await;
    let signin = s.begin().await;
    assert_eq!(signin.path(), "/oauth/signin");
    // No state/nonce/PKCE at /oauth/signin: our state rides in redirect_uri.
    assert_eq!(param(&signin, "state"), None);
    assert_eq!(param(&signin, "response_type").as_deref(), Some("code"));
    let redirect_uri = param(&signin, "redirect_uri").unwrap();
    assert!(redirect_uri.starts_with(&s.url("/oauth2/callback?state=")));
    let cb = s.authorize(&signin).await;
    assert!(s.callback(&cb).await.is_ok());
    // The identical redirect_uri was re-sent at /oauth/token.
    assert_eq!(
        cap.last_token_redirect_uri().as_deref(),
        Some(redirect_uri.as_str())
    );
    assert_eq!(cap.last_client_auth(), Some(ClientAuthSeen::Basic));
    let echo = s.upstream_view().await;
    assert_eq!(header(&echo, "X-Auth-Request-User"), Some(janrain::UUID));
    assert_eq!(header(&echo, "X-Auth-Request-Email"), Some(janrain::EMAIL));
    assert_eq!(
        header(&echo, "X-Auth-Request-Preferred-Username"),
        Some("alice")
    );
    assert_eq!(cap.count(|c| &c.entity), 1);
    assert_eq!(s.gw.session_count(), 1);
}

#[tokio::test]
async fn janrain_signed_client_auth_is_verified_by_capture() {
    let cap = Capture::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&capture_provider(&cap, "janrain-signed", SECRET)).await;
    let echo = s.login().await;
    assert_eq!(
        cap.last_client_auth(),
        Some(ClientAuthSeen::Signed),
        "{:?}",
        cap.errors()
    );
    assert_eq!(header(&echo, "X-Auth-Request-User"), Some(janrain::UUID));
}

#[tokio::test]
async fn janrain_body_credentials_work() {
    let cap = Capture::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&capture_provider(&cap, "client_secret_post", SECRET)).await;
    s.login().await;
    assert_eq!(cap.last_client_auth(), Some(ClientAuthSeen::Body));
}

#[tokio::test]
async fn janrain_bad_signature_code_402_gives_error_page_and_no_session() {
    let cap = Capture::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&capture_provider(&cap, "janrain-signed", "not-the-secret")).await;
    let p = s.begin().await;
    let cb = s.authorize(&p).await;
    let body = error_page(s.callback(&cb).await, 400);
    assert!(body.contains("refused"), "{body}");
    assert_eq!(cap.errors(), ["signature does not verify"]);
    s.assert_no_session().await;
}

#[tokio::test]
async fn janrain_invalid_code_200_gives_error_page() {
    let cap = Capture::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&capture_provider(&cap, "client_secret_basic", SECRET)).await;
    let p = s.begin().await;
    let mut cb = s.authorize(&p).await;
    let state = param(&cb, "state").unwrap();
    cb.query_pairs_mut()
        .clear()
        .append_pair("state", &state)
        .append_pair("code", "not-a-code");
    error_page(s.callback(&cb).await, 400);
    assert_eq!(cap.count(|c| &c.code_grants), 1);
    s.assert_no_session().await;
}

#[tokio::test]
async fn janrain_callback_without_login_cookie_is_refused() {
    let cap = Capture::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&capture_provider(&cap, "client_secret_basic", SECRET)).await;
    let p = s.begin().await;
    let cb = s.authorize(&p).await;
    // Login CSRF: the callback URL replayed in another browser.
    let (other, _) = support::browser(None);
    let r = other
        .get(cb.as_str())
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(cap.count(|c| &c.token), 0);
    s.assert_no_session().await;
}

#[tokio::test]
async fn janrain_entity_414_refreshes_once_and_retries() {
    let cap = Capture::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&capture_provider(&cap, "janrain-signed", SECRET)).await;
    cap.expire_next_access_tokens(1);
    let echo = s.login().await;
    assert_eq!(header(&echo, "X-Auth-Request-User"), Some(janrain::UUID));
    assert_eq!(cap.count(|c| &c.entity_expired), 1);
    assert_eq!(cap.count(|c| &c.refresh_grants), 1);
    assert_eq!(cap.count(|c| &c.entity), 2);
}

#[tokio::test]
async fn janrain_entity_414_twice_gives_error_page_after_one_refresh() {
    let cap = Capture::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&capture_provider(&cap, "client_secret_basic", SECRET)).await;
    cap.expire_next_access_tokens(2);
    let p = s.begin().await;
    let cb = s.authorize(&p).await;
    error_page(s.callback(&cb).await, 400);
    assert_eq!(cap.count(|c| &c.refresh_grants), 1);
    assert_eq!(cap.count(|c| &c.entity), 2);
    s.assert_no_session().await;
}

/// The owner API mints a code for the redirect URI the gateway chose.
async fn mint_code(cap: &Capture, redirect_uri: &str, lifetime: Option<&str>) -> String {
    let mut form = vec![
        ("uuid", janrain::UUID),
        ("redirect_uri", redirect_uri),
        (
            "transaction_state",
            r#"{"capture":{"action":"minted"},"app":"x"}"#,
        ),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
    ];
    if let Some(l) = lifetime {
        form.push(("lifetime", l));
    }
    let r: Value = support::api_client(None)
        .post(format!("{}/access/getAuthorizationCode", cap.url()))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["stat"], "ok", "{r}");
    r["authorizationCode"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn janrain_minted_code_is_exchanged_within_its_lifetime() {
    let cap = Capture::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&capture_provider(&cap, "janrain-signed", SECRET)).await;
    let signin = s.begin().await;
    let redirect_uri = param(&signin, "redirect_uri").unwrap();
    let code = mint_code(&cap, &redirect_uri, None).await;
    let mut cb = Url::parse(&redirect_uri).unwrap();
    cb.query_pairs_mut().append_pair("code", &code);
    let back = s.callback(&cb).await.expect("minted code exchanged");
    assert_eq!(back.as_str(), s.url("/app?x=1"));
    assert_eq!(cap.count(|c| &c.minted), 1);
    assert_eq!(cap.count(|c| &c.signin), 0);
    assert_eq!(
        cap.last_transaction_state().unwrap()["capture"]["action"],
        "minted"
    );
    let echo = s.upstream_view().await;
    assert_eq!(header(&echo, "X-Auth-Request-User"), Some(janrain::UUID));
}

#[tokio::test]
async fn janrain_expired_minted_code_415_gives_error_page() {
    let cap = Capture::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&capture_provider(&cap, "client_secret_basic", SECRET)).await;
    let signin = s.begin().await;
    let redirect_uri = param(&signin, "redirect_uri").unwrap();
    let code = mint_code(&cap, &redirect_uri, Some("1")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut cb = Url::parse(&redirect_uri).unwrap();
    cb.query_pairs_mut().append_pair("code", &code);
    error_page(s.callback(&cb).await, 400);
    s.assert_no_session().await;
}

#[tokio::test]
async fn janrain_minted_code_for_another_redirect_uri_420_gives_error_page() {
    let cap = Capture::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&capture_provider(&cap, "client_secret_basic", SECRET)).await;
    let signin = s.begin().await;
    let redirect_uri = param(&signin, "redirect_uri").unwrap();
    let code = mint_code(&cap, "https://elsewhere.example.com/cb", None).await;
    let mut cb = Url::parse(&redirect_uri).unwrap();
    cb.query_pairs_mut().append_pair("code", &code);
    error_page(s.callback(&cb).await, 400);
    s.assert_no_session().await;
}

#[tokio::test]
async fn janrain_emulator_token_endpoint_error_shapes() {
    // The emulator itself: 400/401 with stat/code/request_token; GET accepted.
    let cap = Capture::start(CLIENT_ID, SECRET).await;
    let c = support::api_client(None);
    let r = c
        .get(format!("{}/oauth/token?grant_type=authorization_code&code=x&redirect_uri=y&client_id={CLIENT_ID}&client_secret=bad", cap.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["stat"].as_str(), v["code"].as_i64()),
        (Some("error"), Some(402))
    );
    assert_eq!(v["request_token"].as_str().unwrap().len(), 16);
    let r = c
        .get(format!("{}/oauth/token", cap.url()))
        .query(&[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("redirect_uri", "y"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 200);
    assert_eq!(v["error"], "invalid_grant");
    assert_eq!(cap.count(|c| &c.token_get), 2);
}

// ===== Oracle IDCS =====

fn idcs_provider(op: &Idcs, extra: &str) -> String {
    format!(
        "kind = \"oracle-idcs\"\nissuer = \"{}\"\nclient_secret = \"{SECRET}\"\n{extra}\n",
        op.url()
    )
}

#[tokio::test]
async fn idcs_login_user_id_is_subject_and_userinfo_blanks_are_absent() {
    let op = Idcs::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&idcs_provider(&op, "")).await;
    let echo = s.login().await;
    assert_eq!(header(&echo, "X-Auth-Request-User"), Some(idcs::USER_ID));
    assert_eq!(header(&echo, "X-Auth-Request-Email"), Some(idcs::USERNAME));
    assert_eq!(
        header(&echo, "X-Auth-Request-Preferred-Username"),
        Some(idcs::USERNAME)
    );
    assert_eq!(op.count(|c| &c.userinfo), 1);
    // userinfo's "name": "" did not replace user_displayname; no "" claim leaked.
    let me: Value = s
        .browser
        .get(s.url("/oauth2/userinfo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["subject"], idcs::USER_ID);
    assert_eq!(me["name"], "Alice Liddell");
    assert_eq!(me["email_verified"], false);
    assert_eq!(me["issuer"], idcs::GLOBAL_ISSUER);
    assert!(!me.to_string().contains("\"\""), "{me}");
}

#[tokio::test]
async fn idcs_issuer_check_is_trailing_slash_tolerant() {
    let op = Idcs::start(CLIENT_ID, SECRET).await;
    // Discovery with slash, tokens without; default expected_issuer.
    op.settings().token_issuer = "https://identity.oraclecloud.com".into();
    let s = Setup::start(&idcs_provider(&op, "")).await;
    let echo = s.login().await;
    assert_eq!(header(&echo, "X-Auth-Request-User"), Some(idcs::USER_ID));

    // expected_issuer configured without slash; discovery and tokens with.
    let op = Idcs::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&idcs_provider(
        &op,
        "expected_issuer = \"https://identity.oraclecloud.com\"",
    ))
    .await;
    s.login().await;
}

#[tokio::test]
async fn idcs_foreign_token_issuer_is_refused() {
    let op = Idcs::start(CLIENT_ID, SECRET).await;
    op.settings().token_issuer = "https://identity.oraclecloud.com.evil.example/".into();
    let s = Setup::start(&idcs_provider(&op, "")).await;
    let p = s.begin().await;
    let cb = s.authorize(&p).await;
    error_page(s.callback(&cb).await, 401);
    s.assert_no_session().await;
}

#[tokio::test]
async fn idcs_discovery_issuer_other_than_expected_is_not_ready() {
    let op = Idcs::start(CLIENT_ID, SECRET).await;
    op.settings().discovery_issuer = op.url();
    let s = Setup::start_unready(&idcs_provider(&op, "")).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!s.gw.is_ready());
    assert!(op.count(|c| &c.discovery) >= 1);
}

#[tokio::test]
async fn idcs_keys_match_by_x5t_when_kid_does_not() {
    let op = Idcs::start(CLIENT_ID, SECRET).await;
    op.settings().header_kid = None;
    let s = Setup::start(&idcs_provider(&op, "")).await;
    s.login().await;

    let op = Idcs::start(CLIENT_ID, SECRET).await;
    op.settings().header_kid = Some("unknown-kid".into());
    let s = Setup::start(&idcs_provider(&op, "")).await;
    s.login().await;
}

#[tokio::test]
async fn idcs_protected_jwks_with_client_credentials_works() {
    let op = Idcs::start(CLIENT_ID, SECRET).await;
    op.protect_jwks(true);
    let s = Setup::start(&idcs_provider(&op, "jwks_auth = \"client_credentials\"")).await;
    assert!(op.count(|c| &c.client_credentials) >= 1);
    assert_eq!(op.count(|c| &c.jwks_unauthorized), 0);
    let echo = s.login().await;
    assert_eq!(header(&echo, "X-Auth-Request-User"), Some(idcs::USER_ID));
}

#[tokio::test]
async fn idcs_protected_jwks_without_jwks_auth_is_not_ready() {
    let op = Idcs::start(CLIENT_ID, SECRET).await;
    op.protect_jwks(true);
    // The emulator answers the SCIM 401.
    let r = support::api_client(None)
        .get(format!("{}/admin/v1/SigningCert/jwk", op.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "401");
    let s = Setup::start_unready(&idcs_provider(&op, "")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while op.count(|c| &c.jwks_unauthorized) < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!s.gw.is_ready());
    assert_eq!(op.count(|c| &c.client_credentials), 0);
}

#[tokio::test]
async fn idcs_logout_goes_through_userlogout() {
    let op = Idcs::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&idcs_provider(&op, "")).await;
    s.login().await;
    let r = s.get(&s.url("/oauth2/sign_out?rd=/bye")).await;
    assert_eq!(r.status(), 302);
    let to = support::location(&r).unwrap();
    assert!(
        to.as_str()
            .starts_with(&format!("{}/oauth2/v1/userlogout", op.url())),
        "{to}"
    );
    assert!(param(&to, "id_token_hint").is_some());
    assert_eq!(
        param(&to, "post_logout_redirect_uri"),
        Some(s.url("/oauth2/signed_out"))
    );
    let r = s.get(to.as_str()).await;
    assert_eq!(r.status(), 302);
    let back = support::location(&r).unwrap();
    assert_eq!(back.path(), "/oauth2/signed_out", "{back}");
    let r = s.get(back.as_str()).await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/bye");
    assert_eq!(op.count(|c| &c.logout), 1);
    assert_eq!(s.gw.session_count(), 0);
}

#[tokio::test]
async fn idcs_token_error_gives_error_page() {
    let op = Idcs::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&format!(
        "kind = \"oracle-idcs\"\nissuer = \"{}\"\nclient_secret = \"wrong\"\n",
        op.url()
    ))
    .await;
    let p = s.begin().await;
    let cb = s.authorize(&p).await;
    error_page(s.callback(&cb).await, 400);
    s.assert_no_session().await;
}

// ===== seed-C OAuth 2.0 =====

fn seedc_provider(op: &SeedC, extra: &str) -> String {
    let b = op.url();
    format!(
        "kind = \"oauth2\"\nclient_secret = \"{SECRET}\"\nauthorization_endpoint = \"{b}/oauth/authorize\"\ntoken_endpoint = \"{b}/auth/token\"\nuserinfo_endpoint = \"{b}/userinfo\"\nscopes = [\"user_profile\", \"additional_info\"]\n{extra}\n"
    )
}

fn seedc_with_jwks(op: &SeedC) -> String {
    seedc_provider(
        op,
        &format!(
            "jwks_uri = \"{}/jwks\"\nissuer = \"{}\"",
            op.url(),
            op.issuer()
        ),
    )
}

#[tokio::test]
async fn oauth2_login_identity_from_userinfo_scopes_verbatim() {
    let op = SeedC::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&seedc_provider(&op, "")).await;
    let echo = s.login().await;
    assert_eq!(
        op.last_scope().as_deref(),
        Some("user_profile additional_info")
    );
    assert_eq!(header(&echo, "X-Auth-Request-User"), Some(seedc::SUBJECT));
    assert_eq!(
        header(&echo, "X-Auth-Request-Email"),
        Some("carol@example.net")
    );
    assert_eq!(
        header(&echo, "X-Auth-Request-Preferred-Username"),
        Some("carol")
    );
    // Basic only: no client credentials in the token body; no nonce without jwks_uri.
    let form = op.last_token_form().unwrap();
    assert!(!form
        .iter()
        .any(|(k, _)| k == "client_id" || k == "client_secret"));
    let auth = op.last_authorize().unwrap();
    assert!(!auth.iter().any(|(k, _)| k == "nonce"));
    assert_eq!(op.count(|c| &c.userinfo), 1);
    assert_eq!(op.count(|c| &c.jwks), 0);
}

#[tokio::test]
async fn oauth2_emulator_accepts_post_authorize() {
    let op = SeedC::start(CLIENT_ID, SECRET).await;
    let r = support::api_client(None)
        .post(format!("{}/oauth/authorize", op.url()))
        .query(&[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", "http://127.0.0.1:1/cb"),
            ("scope", "user_profile additional_info"),
            ("state", "s"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(param(&support::location(&r).unwrap(), "code").is_some());
    assert_eq!(op.count(|c| &c.authorize_post), 1);
}

#[tokio::test]
async fn oauth2_id_token_is_validated_when_jwks_uri_is_set() {
    let op = SeedC::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&seedc_with_jwks(&op)).await;
    let echo = s.login().await;
    assert_eq!(header(&echo, "X-Auth-Request-User"), Some(seedc::SUBJECT));
    assert!(op.count(|c| &c.jwks) >= 1);
    let auth = op.last_authorize().unwrap();
    assert!(auth.iter().any(|(k, _)| k == "nonce"));
}

#[tokio::test]
async fn oauth2_bad_id_tokens_are_refused() {
    for fault in [
        IdTokenFault::BadSignature,
        IdTokenFault::WrongAudience,
        IdTokenFault::WrongSubject,
    ] {
        let op = SeedC::start(CLIENT_ID, SECRET).await;
        op.set_id_token_fault(fault);
        let s = Setup::start(&seedc_with_jwks(&op)).await;
        let p = s.begin().await;
        let cb = s.authorize(&p).await;
        error_page(s.callback(&cb).await, 401);
        s.assert_no_session().await;
    }
}

#[tokio::test]
async fn oauth2_bad_id_token_is_ignored_without_jwks_uri() {
    let op = SeedC::start(CLIENT_ID, SECRET).await;
    op.set_id_token_fault(IdTokenFault::BadSignature);
    let s = Setup::start(&seedc_provider(&op, "")).await;
    s.login().await;
}

#[tokio::test]
async fn oauth2_token_error_gives_error_page() {
    let op = SeedC::start(CLIENT_ID, SECRET).await;
    let s = Setup::start(&seedc_provider(&op, "")).await;
    op.fail_next_token(400, "invalid_grant");
    let p = s.begin().await;
    let cb = s.authorize(&p).await;
    error_page(s.callback(&cb).await, 400);
    s.assert_no_session().await;
}
