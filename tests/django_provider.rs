//! Interoperability with a second real, widely deployed OpenID Provider:
//! django-oauth-toolkit (PyPI), pinned in
//! `tests/django-provider/requirements.txt` and started by
//! `tests/django-provider/serve.py` (Django and waitress) on a free loopback
//! port, with a fresh SQLite database and a fresh RSA signing key per run.
//!
//! Needs the venv `tests/django-provider/.venv`, which `bash scripts/test.sh`
//! creates; without it these tests fail and say so (they never skip).
//!
//! The gateway is the released binary in front of an echo upstream; a
//! browser (an HTTP client with a cookie jar) fills Django's login form
//! (CSRF token + username/password) and django-oauth-toolkit's consent and
//! logout confirmation forms. django-oauth-toolkit issues opaque access
//! tokens, checked by introspection (its endpoint is in its RFC 8414
//! metadata only; its answers name no `token_type` and no `sub`, hence
//! `bearer.introspection_access_tokens_only = true`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, COOKIE, WWW_AUTHENTICATE};
use serde_json::Value;
use sha2::Digest as _;
use support::{
    api_client, browser, free_port, location, random_base64, random_token, set_cookies, tail_of,
    EchoUpstream, Echoed, GatewayProcess, TempDir,
};
use url::Url;

/// The gateway's client at the provider.
const CLIENT_ID: &str = "gateway";
/// Another client of the same provider, whose tokens the gateway refuses.
const OTHER_CLIENT_ID: &str = "other-app";
/// A redirect_uri for flows the test drives itself; never connected to.
const HARNESS_REDIRECT: &str = "http://127.0.0.1:9/harness/callback";
/// Every test user's password.
const PASSWORD: &str = "correct-horse-battery-staple";
const USERS: [&str; 5] = ["alice", "bob", "carol", "dana", "erin"];
const SESSION_COOKIE: &str = "oidc-gateway";

// ===== the Django provider =====

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/django-provider")
}

fn venv_python() -> PathBuf {
    let python = provider_dir().join(".venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import oauth2_provider, waitress"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "tests/django_provider.rs needs the venv {} with the pinned requirements of \
         tests/django-provider/requirements.txt (django-oauth-toolkit, Django, waitress).\n\
         Run `bash scripts/test.sh --test django_provider`, which creates it \
         (python3 -m venv + pip install -r requirements.txt).",
        python.display()
    );
    python
}

struct ProviderOptions {
    access_token_ttl: u64,
    /// The gateway client's registered redirect URIs.
    redirect_uris: Vec<String>,
    /// The gateway client's registered post_logout_redirect_uris (exact).
    post_logout_redirect_uris: Vec<String>,
}

/// `python serve.py` on a free loopback port; killed on drop.
struct DjangoProvider {
    child: Child,
    dir: TempDir,
    issuer: Url,
    client_secret: String,
    other_secret: String,
}

impl DjangoProvider {
    async fn start(opts: ProviderOptions) -> Self {
        let python = venv_python();
        let dir = TempDir::new("django-provider-test");
        // base64url: no `|` (the setup's separator), nothing to encode.
        let client_secret = random_token(24);
        let other_secret = random_token(24);
        let stdout_path = dir.path().join("op.stdout");
        let stdout = std::fs::File::create(&stdout_path).expect("op log");
        let stderr = std::fs::File::create(dir.path().join("op.stderr")).expect("op log");
        let mut cmd = Command::new(python);
        cmd.arg("serve.py")
            .arg("--dir")
            .arg(dir.path())
            .args(["--access-token-ttl", &opts.access_token_ttl.to_string()])
            .current_dir(provider_dir())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for user in USERS {
            cmd.args(["--user", &format!("{user}:{PASSWORD}")]);
        }
        cmd.args([
            "--client",
            &format!(
                "{CLIENT_ID}|{client_secret}|{}|{}",
                opts.redirect_uris.join(" "),
                opts.post_logout_redirect_uris.join(" ")
            ),
        ]);
        cmd.args([
            "--client",
            &format!("{OTHER_CLIENT_ID}|{other_secret}|{HARNESS_REDIRECT}|"),
        ]);
        let child = cmd.spawn().expect("spawn python serve.py");
        let mut op = Self {
            child,
            dir,
            issuer: Url::parse("http://127.0.0.1/").unwrap(),
            client_secret,
            other_secret,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(line) = out.lines().find(|l| l.starts_with("listening on ")) {
                op.issuer = Url::parse(line.trim_start_matches("listening on ").trim()).unwrap();
                return op;
            }
            if let Some(status) = op.child.try_wait().expect("try_wait") {
                panic!("python serve.py exited early ({status})\n{}", op.logs());
            }
            assert!(
                Instant::now() < deadline,
                "python serve.py did not print its listening line in 30 s\n{}",
                op.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn issuer_str(&self) -> String {
        self.issuer.as_str().trim_end_matches('/').to_owned()
    }

    fn logs(&self) -> String {
        format!(
            "--- django provider stdout (tail) ---\n{}\n--- django provider stderr (tail) ---\n{}",
            tail_of(&self.dir.path().join("op.stdout"), 8192),
            tail_of(&self.dir.path().join("op.stderr"), 8192),
        )
    }

    /// Successful requests to `path` with `method` in the access log.
    fn requests(&self, method: &str, path: &str) -> usize {
        let line = format!("access {method} {path} 200");
        std::fs::read_to_string(self.dir.path().join("op.stdout"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == line)
            .count()
    }

    async fn discovery(&self) -> Value {
        let url = format!("{}/.well-known/openid-configuration", self.issuer_str());
        let resp = api_client(None).get(&url).send().await.expect("discovery");
        assert_eq!(resp.status(), 200, "GET {url}");
        resp.json().await.expect("discovery JSON")
    }
}

impl Drop for DjangoProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

// ===== driving Django's pages as a browser =====

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(html_unescape(&tag[start..end]))
}

/// The first form of a page: its action (if any), its hidden inputs and
/// the names of its other inputs.
struct Form {
    action: Option<String>,
    hidden: Vec<(String, String)>,
    inputs: Vec<String>,
}

fn parse_form(html: &str) -> Option<Form> {
    let start = html.find("<form")?;
    let end = html[start..]
        .find("</form>")
        .map_or(html.len(), |e| start + e);
    let form = &html[start..end];
    let open_tag = &form[..form.find('>')?];
    let mut hidden = Vec::new();
    let mut inputs = Vec::new();
    for (i, _) in form.match_indices("<input") {
        let tag_end = form[i..].find('>').map_or(form.len(), |e| i + e);
        let tag = &form[i..tag_end];
        let Some(name) = attr(tag, "name") else {
            continue;
        };
        if attr(tag, "type").as_deref() == Some("hidden") {
            hidden.push((name, attr(tag, "value").unwrap_or_default()));
        } else {
            inputs.push(name);
        }
    }
    Some(Form {
        action: attr(open_tag, "action"),
        hidden,
        inputs,
    })
}

#[derive(Debug)]
enum Exit {
    /// A redirect away from the provider.
    Redirect(Url),
    /// A page on the provider without a form (e.g. an error).
    Page(Url, String),
}

impl Exit {
    /// The redirect away from the provider; anything else fails `what`.
    fn redirect(self, what: &str) -> Url {
        match self {
            Exit::Redirect(to) => to,
            Exit::Page(url, body) => panic!("{what}: stuck at the provider on {url}:\n{body}"),
        }
    }
}

#[derive(Debug, Default)]
struct Walk {
    logins: usize,
    consents: usize,
    logouts: usize,
}

/// Follows the provider's redirects and fills its forms (Django's login
/// form with `user` + [`PASSWORD`]; the consent and logout confirmation
/// with their `allow` button) until the browser is sent elsewhere.
async fn walk_provider(
    client: &reqwest::Client,
    issuer: &Url,
    start: Url,
    user: &str,
) -> (Exit, Walk) {
    let mut walk = Walk::default();
    let mut next: (Url, Option<Vec<(String, String)>>) = (start, None);
    for _ in 0..20 {
        let (url, form) = next;
        let req = match &form {
            None => client.get(url.clone()),
            Some(fields) => client.post(url.clone()).form(fields),
        };
        let resp = req
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {url} failed: {e}"));
        let status = resp.status();
        if status.is_redirection() {
            let to = location(&resp).unwrap_or_else(|| panic!("{status} without Location"));
            if to.origin() != issuer.origin() {
                return (Exit::Redirect(to), walk);
            }
            next = (to, None);
            continue;
        }
        let page_url = resp.url().clone();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(
            status, 200,
            "provider answered {status} at {page_url}:\n{body}"
        );
        let Some(form) = parse_form(&body) else {
            return (Exit::Page(page_url, body), walk);
        };
        let action = match &form.action {
            Some(a) => page_url.join(a).expect("form action"),
            None => page_url.clone(),
        };
        let mut fields = form.hidden;
        assert!(
            fields
                .iter()
                .any(|(n, v)| n == "csrfmiddlewaretoken" && !v.is_empty()),
            "a Django form carries its CSRF token: {body}"
        );
        if form.inputs.iter().any(|n| n == "username") {
            walk.logins += 1;
            fields.push(("username".into(), user.into()));
            fields.push(("password".into(), PASSWORD.into()));
        } else if body.contains("Confirm Logout") {
            walk.logouts += 1;
            fields.push(("allow".into(), "Logout".into()));
        } else {
            assert!(body.contains("Authorize"), "unknown form: {body}");
            walk.consents += 1;
            fields.push(("allow".into(), "Authorize".into()));
        }
        next = (action, Some(fields));
    }
    panic!("more than 20 hops through the provider");
}

fn query_map(url: &Url) -> std::collections::HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// A code flow the test drives itself (PKCE S256, redirect_uri
/// [`HARNESS_REDIRECT`]) for `client_id`; returns the token response.
async fn direct_code_flow(op: &DjangoProvider, client_id: &str, secret: &str, user: &str) -> Value {
    let meta = op.discovery().await;
    let (client, _jar) = browser(None);
    let verifier = random_token(32);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let state = random_token(12);
    let mut authorize = Url::parse(meta["authorization_endpoint"].as_str().unwrap()).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", HARNESS_REDIRECT)
        .append_pair("scope", "openid email profile")
        .append_pair("state", &state)
        .append_pair("nonce", &random_token(12))
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let (exit, walk) = walk_provider(&client, &op.issuer, authorize, user).await;
    assert_eq!((walk.logins, walk.consents), (1, 1), "{walk:?}");
    let back = exit.redirect("expected a redirect to the redirect_uri");
    let q = query_map(&back);
    assert_eq!(q.get("state"), Some(&state), "{back}");
    let code = q.get("code").unwrap_or_else(|| panic!("no code in {back}"));
    let resp = api_client(None)
        .post(meta["token_endpoint"].as_str().unwrap())
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", HARNESS_REDIRECT),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .expect("token request");
    let status = resp.status();
    let body: Value = resp.json().await.expect("token JSON");
    assert_eq!(status, 200, "token endpoint: {body}");
    body
}

// ===== the gateway in front =====

struct Env {
    gw: GatewayProcess,
    op: DjangoProvider,
    _upstream: EchoUpstream,
    public_url: String,
    meta: Value,
}

async fn start_env(access_token_ttl: u64) -> Env {
    let upstream = EchoUpstream::spawn().await;
    let main_port = free_port();
    let admin_port = free_port();
    let public_url = format!("http://127.0.0.1:{main_port}");
    let op = DjangoProvider::start(ProviderOptions {
        access_token_ttl,
        redirect_uris: vec![
            format!("{public_url}/oauth2/callback"),
            HARNESS_REDIRECT.into(),
        ],
        post_logout_redirect_uris: vec![format!("{public_url}/oauth2/signed_out")],
    })
    .await;
    let meta = op.discovery().await;
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:{main_port}"
public_url = "{public_url}"

[admin]
listen = "127.0.0.1:{admin_port}"

[upstream]
url = "{upstream}"

[provider]
kind = "oidc"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{secret}"
scopes = ["openid", "email", "profile"]
client_auth = "client_secret_basic"

[session]
store = "memory"
secret = "{session_secret}"
lifetime = "1h"

[bearer]
enabled = true
introspection = true
introspection_access_tokens_only = true
introspection_cache = "1s"
"#,
        upstream = upstream.url(),
        issuer = op.issuer_str(),
        secret = op.client_secret,
        session_secret = random_base64(32),
    );
    let gw = GatewayProcess::start(
        &toml,
        &public_url,
        &format!("http://127.0.0.1:{admin_port}"),
    )
    .await;
    Env {
        gw,
        op,
        _upstream: upstream,
        public_url,
        meta,
    }
}

impl Env {
    fn url(&self, path: &str) -> String {
        self.gw.url(path)
    }

    /// Browser login through the gateway at `path`: the provider's login
    /// and consent forms, back to the callback; returns the session cookie.
    async fn browser_login(
        &self,
        client: &reqwest::Client,
        path: &str,
        user: &str,
    ) -> (String, Walk) {
        let resp = client
            .get(self.url(path))
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "GET {path} unauthenticated");
        let authorize = location(&resp).expect("Location");
        let endpoint = Url::parse(self.meta["authorization_endpoint"].as_str().unwrap()).unwrap();
        assert_eq!(
            (authorize.origin(), authorize.path()),
            (endpoint.origin(), endpoint.path()),
            "{authorize}"
        );
        let (exit, walk) = walk_provider(client, &self.op.issuer, authorize, user).await;
        let back = exit.redirect("login");
        assert_eq!(back.path(), "/oauth2/callback", "{back}");
        let resp = client
            .get(back)
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let to = location(&resp);
        let cookie = set_cookies(&resp, SESSION_COOKIE)
            .into_iter()
            .find(|(v, _)| !v.is_empty())
            .map(|(v, _)| v);
        assert!(
            status.is_redirection(),
            "callback answered {status}: {}\n{}",
            resp.text().await.unwrap_or_default(),
            self.gw.logs()
        );
        assert_eq!(to.unwrap().as_str(), self.url(path));
        (cookie.expect("session cookie set by the callback"), walk)
    }

    async fn replay(&self, path: &str, cookie: &str) -> reqwest::Response {
        api_client(None)
            .get(self.url(path))
            .header(ACCEPT, "application/json")
            .header(COOKIE, format!("{SESSION_COOKIE}={cookie}"))
            .send()
            .await
            .unwrap()
    }

    async fn bearer(&self, token: &str) -> reqwest::Response {
        api_client(None)
            .get(self.url("/api/things"))
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap()
    }

    /// A bearer token the gateway must refuse: 401 `invalid_token`.
    async fn assert_bearer_refused(&self, what: &str, token: &str) {
        let resp = self.bearer(token).await;
        let status = resp.status();
        let www = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert_eq!(status, 401, "{what}\n{}", self.gw.logs());
        assert!(www.contains(r#"error="invalid_token""#), "{what}: {www}");
    }
}

async fn echoed(resp: reqwest::Response) -> Echoed {
    let status = resp.status();
    let from_upstream = resp.headers().contains_key("x-echo-upstream");
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "expected the upstream's 200, got: {text}");
    assert!(
        from_upstream,
        "answer did not come from the upstream: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("echo JSON ({e}): {text}"))
}

// ===== tests =====

/// Login through django-oauth-toolkit (Django login form + consent): the
/// upstream gets the identity; with a 4 s access token the gateway refreshes
/// it with the refresh token on a request past half its life, and the
/// session goes on with the same identity.
#[tokio::test]
async fn django_login_identity_and_refresh() {
    let env = start_env(4).await;
    let (client, _jar) = browser(None);
    let (cookie, walk) = env.browser_login(&client, "/private", "alice").await;
    assert_eq!((walk.logins, walk.consents), (1, 1), "{walk:?}");
    assert_eq!(env.op.requests("POST", "/o/token/"), 1, "{}", env.op.logs());

    let resp = client
        .get(env.url("/private"))
        .header(ACCEPT, "text/html")
        .header("X-Auth-Request-Email", "mallory@evil.example")
        .send()
        .await
        .unwrap();
    let seen = echoed(resp).await;
    // The ID token's `sub` is the Django user's primary key.
    assert_eq!(seen.header("x-auth-request-user"), Some("1"), "{seen:?}");
    assert_eq!(
        seen.header("x-auth-request-email"),
        Some("alice@example.com"),
        "{seen:?}"
    );
    assert_eq!(
        seen.header("x-auth-request-preferred-username"),
        Some("alice"),
        "{seen:?}"
    );
    echoed(env.replay("/private", &cookie).await).await;

    // Past half the life of whichever access token the session holds now
    // (a slow machine may already have refreshed once): exactly one
    // refresh_token grant on the next request.
    let before = env.op.requests("POST", "/o/token/");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let resp = client
        .get(env.url("/app/after-refresh"))
        .send()
        .await
        .unwrap();
    let seen = echoed(resp).await;
    assert_eq!(
        seen.header("x-auth-request-preferred-username"),
        Some("alice"),
        "{seen:?}"
    );
    assert_eq!(
        env.op.requests("POST", "/o/token/"),
        before + 1,
        "one refresh_token grant\n{}\n{}",
        env.op.logs(),
        env.gw.logs()
    );
}

/// RP-Initiated Logout with the one registered post_logout_redirect_uri
/// (`public_url + /oauth2/signed_out`, exact match at the provider): two
/// sign-outs with different `rd` values both pass the provider's logout
/// confirmation, come back to `/oauth2/signed_out` and go on to their `rd`;
/// the gateway session and the provider session are gone.
#[tokio::test]
async fn django_sign_out_two_rd_values_one_registered_uri() {
    let env = start_env(3600).await;
    for (user, rd) in [("bob", "/bye"), ("carol", "/app/page?q=1")] {
        let (client, _jar) = browser(None);
        let (cookie, _) = env.browser_login(&client, "/app/", user).await;
        let encoded: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let resp = client
            .get(env.url(&format!("/oauth2/sign_out?rd={encoded}")))
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "sign_out rd={rd}");
        let to = location(&resp).expect("sign_out Location");
        let end = Url::parse(env.meta["end_session_endpoint"].as_str().unwrap()).unwrap();
        assert_eq!((to.origin(), to.path()), (end.origin(), end.path()), "{to}");
        let q = query_map(&to);
        assert_eq!(
            q.get("post_logout_redirect_uri"),
            Some(&format!("{}/oauth2/signed_out", env.public_url)),
            "{to}"
        );
        let (exit, walk) = walk_provider(&client, &env.op.issuer, to, user).await;
        assert_eq!(walk.logouts, 1, "{walk:?}");
        let back = exit.redirect(&format!("rd={rd}: logout"));
        assert_eq!(back.path(), "/oauth2/signed_out", "{back}");
        let resp = client
            .get(back)
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "rd={rd}\n{}", env.gw.logs());
        assert_eq!(resp.headers()["location"].to_str().unwrap(), rd);

        // The gateway session is gone…
        assert_eq!(env.replay("/app/", &cookie).await.status(), 401);
        // …and so is the provider's: the next login shows the login form.
        let (_, walk) = env.browser_login(&client, "/app/", user).await;
        assert_eq!(
            walk.logins, 1,
            "provider session should have ended: {walk:?}"
        );
    }
}

/// Bearer tokens from django-oauth-toolkit: its opaque access token is
/// checked at the RFC 7662 endpoint of its RFC 8414 metadata and accepted
/// with the user it names, until it is revoked (then refused once the
/// 1 s introspection cache has passed); its ID token (a JWT for this client)
/// and refresh token are refused; another client's access and ID tokens are
/// refused.
#[tokio::test]
async fn django_bearer_introspection_revocation_and_token_discipline() {
    let env = start_env(3600).await;
    assert!(
        env.meta.get("introspection_endpoint").is_none(),
        "the OpenID discovery document names no introspection endpoint: {}",
        env.meta
    );
    let tokens = direct_code_flow(&env.op, CLIENT_ID, &env.op.client_secret, "dana").await;
    let at = tokens["access_token"].as_str().unwrap().to_owned();
    assert!(!at.contains('.'), "an opaque access token: {at}");
    for _ in 0..2 {
        let seen = echoed(env.bearer(&at).await).await;
        // Introspection names the user by `username` (no `sub`).
        assert_eq!(seen.header("x-auth-request-user"), Some("dana"), "{seen:?}");
        assert_eq!(
            seen.header("x-auth-request-preferred-username"),
            Some("dana"),
            "{seen:?}"
        );
    }
    assert!(
        env.op.requests("POST", "/o/introspect/") >= 1,
        "{}",
        env.op.logs()
    );

    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(id_token.split('.').count(), 3, "the ID token is a JWT");
    env.assert_bearer_refused("own ID token", id_token).await;
    env.assert_bearer_refused("refresh token", tokens["refresh_token"].as_str().unwrap())
        .await;
    env.assert_bearer_refused("made-up opaque token", &random_token(30))
        .await;

    let other = direct_code_flow(&env.op, OTHER_CLIENT_ID, &env.op.other_secret, "erin").await;
    env.assert_bearer_refused(
        "another client's access token",
        other["access_token"].as_str().unwrap(),
    )
    .await;
    env.assert_bearer_refused(
        "another client's ID token",
        other["id_token"].as_str().unwrap(),
    )
    .await;

    // Still accepted; then revoked at the provider (RFC 7009).
    assert_eq!(env.bearer(&at).await.status(), 200);
    let revoke = Url::parse(&format!("{}/revoke_token/", env.op.issuer_str())).unwrap();
    let resp = api_client(None)
        .post(revoke)
        .basic_auth(CLIENT_ID, Some(&env.op.client_secret))
        .form(&[("token", at.as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "revocation");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.assert_bearer_refused("revoked access token", &at).await;
}
