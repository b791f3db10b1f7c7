//! Interoperability with a real, OpenID Certified provider: the npm package
//! `oidc-provider` (panva), pinned in `tests/oidc-provider/package.json` and
//! started by `tests/oidc-provider/server.mjs` on a free loopback port.
//!
//! Needs Node.js (>= 20) and npm; `npm ci` runs on first use when
//! `tests/oidc-provider/node_modules` is missing. These tests never skip: a
//! missing component is a failure that says how to install it.
//!
//! * `oidc_provider_harness_issues_tokens` checks the provider side alone
//!   (discovery, dev login + consent, PKCE code exchange, JWT access token for
//!   the resource, ID token claims, refresh with offline_access).
//! * the `rp_*` tests put the real `oidc-gateway` binary in front of an echo
//!   upstream, configured per CONTRACT.md, and drive it like a browser / an
//!   API client.
//! * the `rp_private_key_jwt_*` tests register the public half of a
//!   `certs/` key for the client (`server.mjs --client-auth private_key_jwt
//!   --client-key`) and run the gateway with `client_auth =
//!   "private_key_jwt"`: login and refresh with the right key, `invalid_client`
//!   with another one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
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

/// The client registered at the provider, and used by the gateway.
const CLIENT_ID: &str = "gateway";
/// The resource indicator every authorization defaults to; its access tokens
/// are JWTs with this `aud`, which the gateway's `[bearer] audiences` accept.
const RESOURCE: &str = "urn:oidc-gateway:api";
/// A redirect_uri for flows the test drives itself; never connected to (the
/// test reads the code off the redirect).
const HARNESS_REDIRECT: &str = "http://127.0.0.1:9/harness/callback";
/// The gateway's session cookie over plain http (CONTRACT.md).
const SESSION_COOKIE: &str = "oidc-gateway";

// ===== the node provider =====

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

fn require_tool(tool: &str) {
    match Command::new(tool).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`{tool} --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "tests/real_provider.rs needs `{tool}` (Node.js >= 20 with npm) to run the real \
             OpenID Provider (npm oidc-provider), but it could not be run: {e}.\n\
             Install it, e.g. on Debian/Ubuntu: `apt-get install -y nodejs npm`, \
             then run `npm ci` in tests/oidc-provider (the test also does this itself)."
        ),
    }
}

/// `npm ci` in tests/oidc-provider unless `node_modules` is there (once per
/// test process; tests run in parallel threads).
fn ensure_node_modules() {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    require_tool("node");
    let dir = provider_dir();
    if dir.join("node_modules/oidc-provider/package.json").exists() {
        return;
    }
    require_tool("npm");
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run npm ci");
    assert!(
        out.status.success(),
        "`npm ci` in {} failed ({}):\n{}\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Default)]
struct ProviderOptions {
    redirect_uris: Vec<String>,
    post_logout_origin: Option<String>,
    backchannel_logout_uri: Option<String>,
    access_token_ttl: Option<u64>,
    /// `private_key_jwt`: the PEM key whose public half is registered for
    /// the client, and its `kid`.
    client_key: Option<(PathBuf, Option<String>)>,
    /// Registered post_logout_redirect_uris (exact match).
    post_logout_redirect_uris: Vec<String>,
    /// No default resource: access tokens are opaque (oidc-provider's
    /// default for resource-less requests), checked by introspection.
    opaque_access_tokens: bool,
}

/// `node server.mjs` on a free loopback port; killed on drop.
struct NodeProvider {
    child: Child,
    dir: TempDir,
    issuer: Url,
    client_secret: String,
}

impl NodeProvider {
    async fn start(opts: ProviderOptions) -> Self {
        ensure_node_modules();
        let dir = TempDir::new("oidc-provider-test");
        let client_secret = random_token(24);
        let stdout_path = dir.path().join("op.stdout");
        let stdout = std::fs::File::create(&stdout_path).expect("op log");
        let stderr = std::fs::File::create(dir.path().join("op.stderr")).expect("op log");
        let mut cmd = Command::new("node");
        cmd.arg("server.mjs")
            // `=`: a random secret may start with `-`, which parseArgs
            // would otherwise take for an option.
            .args(["--port", "0", &format!("--client-secret={client_secret}")])
            .args(["--resource", RESOURCE])
            .current_dir(provider_dir())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for uri in &opts.redirect_uris {
            cmd.args(["--redirect-uri", uri]);
        }
        if let Some(origin) = &opts.post_logout_origin {
            cmd.args(["--post-logout-origin", origin]);
        }
        for uri in &opts.post_logout_redirect_uris {
            cmd.args(["--post-logout-redirect-uri", uri]);
        }
        if opts.opaque_access_tokens {
            cmd.arg("--no-default-resource");
        }
        if let Some(uri) = &opts.backchannel_logout_uri {
            cmd.args(["--backchannel-logout-uri", uri]);
        }
        if let Some(ttl) = opts.access_token_ttl {
            cmd.args(["--access-token-ttl", &ttl.to_string()]);
        }
        if let Some((key, kid)) = &opts.client_key {
            cmd.args(["--client-auth", "private_key_jwt", "--client-key"])
                .arg(key);
            if let Some(kid) = kid {
                cmd.args(["--client-key-kid", kid]);
            }
        }
        let child = cmd.spawn().expect("spawn node server.mjs");
        let mut op = Self {
            child,
            dir,
            issuer: Url::parse("http://127.0.0.1/").unwrap(),
            client_secret,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(line) = out.lines().find(|l| l.starts_with("listening on ")) {
                let issuer = line.trim_start_matches("listening on ").trim();
                op.issuer = Url::parse(issuer).expect("issuer URL");
                return op;
            }
            if let Some(status) = op.child.try_wait().expect("try_wait") {
                panic!("node server.mjs exited early ({status})\n{}", op.logs());
            }
            assert!(
                Instant::now() < deadline,
                "node server.mjs did not print its listening line in 60 s\n{}",
                op.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The issuer without a trailing slash, as the provider spells it.
    fn issuer_str(&self) -> String {
        self.issuer.as_str().trim_end_matches('/').to_owned()
    }

    fn logs(&self) -> String {
        format!(
            "--- oidc-provider stdout (tail) ---\n{}\n--- oidc-provider stderr (tail) ---\n{}",
            tail_of(&self.dir.path().join("op.stdout"), 8192),
            tail_of(&self.dir.path().join("op.stderr"), 8192),
        )
    }

    async fn discovery(&self) -> Value {
        let url = format!("{}/.well-known/openid-configuration", self.issuer_str());
        let resp = api_client(None).get(&url).send().await.expect("discovery");
        assert_eq!(resp.status(), 200, "GET {url}");
        resp.json().await.expect("discovery JSON")
    }
}

impl Drop for NodeProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

// ===== driving the provider's devInteractions UI =====

/// A form found in a page.
#[derive(Debug)]
struct Form {
    action: String,
    hidden: Vec<(String, String)>,
    has_login_field: bool,
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in one tag's text (`name="..."`).
fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(html_unescape(&tag[start..end]))
}

/// The first `<form>` of a page: its action and hidden inputs.
fn parse_form(html: &str) -> Option<Form> {
    let start = html.find("<form")?;
    let end = html[start..]
        .find("</form>")
        .map_or(html.len(), |e| start + e);
    let form = &html[start..end];
    let open_tag = &form[..form.find('>')?];
    let action = attr(open_tag, "action")?;
    let mut hidden = Vec::new();
    let mut has_login_field = false;
    for (i, _) in form.match_indices("<input") {
        let tag_end = form[i..].find('>').map_or(form.len(), |e| i + e);
        let tag = &form[i..tag_end];
        let Some(name) = attr(tag, "name") else {
            continue;
        };
        if attr(tag, "type").as_deref() == Some("hidden") {
            hidden.push((name, attr(tag, "value").unwrap_or_default()));
        } else if name == "login" {
            has_login_field = true;
        }
    }
    Some(Form {
        action,
        hidden,
        has_login_field,
    })
}

/// Where a walk through the provider's pages ended.
#[derive(Debug)]
enum Exit {
    /// A redirect away from the provider (e.g. to a redirect_uri).
    Redirect(Url),
    /// An auto-submitting form posting away from the provider (form_post).
    FormPost(Url, Vec<(String, String)>),
    /// A page on the provider with no form (e.g. "Sign-out Success").
    Page(Url, String),
}

/// What the walk saw on its way.
#[derive(Debug, Default)]
struct Walk {
    /// Login forms submitted.
    logins: usize,
    /// Consent forms submitted.
    consents: usize,
    /// Logout confirmations submitted.
    logouts: usize,
}

/// Follow the provider's redirects and fill its dev forms (login: `login` +
/// any password; consent: continue; logout: yes) from `start` until the
/// browser is sent away from the provider's origin.
async fn walk_provider(
    client: &reqwest::Client,
    issuer: &Url,
    start: Url,
    login: &str,
) -> (Exit, Walk) {
    let mut walk = Walk::default();
    let mut next: (Url, Option<Vec<(String, String)>>) = (start, None);
    for _ in 0..25 {
        let (url, form) = next;
        let resp = match &form {
            None => client.get(url.clone()).header(ACCEPT, "text/html"),
            Some(fields) => client
                .post(url.clone())
                .header(ACCEPT, "text/html")
                .form(fields),
        }
        .send()
        .await
        .unwrap_or_else(|e| panic!("request to {url} failed: {e}"));
        let status = resp.status();
        if status.is_redirection() {
            let to =
                location(&resp).unwrap_or_else(|| panic!("{status} without Location at {url}"));
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
        let action = page_url.join(&form.action).expect("form action URL");
        let mut fields = form.hidden.clone();
        if action.origin() != issuer.origin() {
            return (Exit::FormPost(action, fields), walk);
        }
        if form.has_login_field {
            walk.logins += 1;
            fields.push(("login".into(), login.into()));
            fields.push(("password".into(), "any-password".into()));
        } else if body.contains("op.logoutForm") {
            walk.logouts += 1;
            fields.push(("logout".into(), "yes".into()));
        } else {
            walk.consents += 1;
        }
        next = (action, Some(fields));
    }
    panic!("more than 25 hops through the provider");
}

fn query_map(url: &Url) -> std::collections::HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Tokens from a code flow the test drives itself against the provider
/// (client `gateway`, redirect_uri [`HARNESS_REDIRECT`], PKCE S256).
struct DirectTokens {
    body: Value,
    nonce: String,
}

impl DirectTokens {
    fn access_token(&self) -> &str {
        self.body["access_token"].as_str().expect("access_token")
    }
    fn id_token(&self) -> &str {
        self.body["id_token"].as_str().expect("id_token")
    }
}

async fn direct_code_flow(op: &NodeProvider, login: &str, scope: &str) -> DirectTokens {
    let meta = op.discovery().await;
    let (client, _jar) = browser(None);
    let verifier = random_token(32);
    let challenge = b64url(&sha2::Sha256::digest(verifier.as_bytes()));
    let state = random_token(12);
    let nonce = random_token(12);
    let mut authorize = Url::parse(meta["authorization_endpoint"].as_str().unwrap()).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", HARNESS_REDIRECT)
        .append_pair("scope", scope)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    if scope.split(' ').any(|s| s == "offline_access") {
        // OpenID Connect Core 11: offline_access is honoured only together
        // with prompt=consent (oidc-provider drops it otherwise).
        authorize.query_pairs_mut().append_pair("prompt", "consent");
    }
    let (exit, walk) = walk_provider(&client, &op.issuer, authorize, login).await;
    assert_eq!(walk.logins, 1, "{walk:?}");
    let Exit::Redirect(back) = exit else {
        panic!("expected a redirect to the redirect_uri, got {exit:?}");
    };
    assert!(
        back.as_str().starts_with(HARNESS_REDIRECT),
        "redirected to {back}"
    );
    let q = query_map(&back);
    assert_eq!(q.get("state"), Some(&state), "{back}");
    assert_eq!(
        q.get("iss").map(String::as_str),
        Some(op.issuer_str().as_str())
    );
    let code = q.get("code").unwrap_or_else(|| panic!("no code in {back}"));

    let resp = api_client(None)
        .post(meta["token_endpoint"].as_str().unwrap())
        .basic_auth(CLIENT_ID, Some(&op.client_secret))
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
    DirectTokens { body, nonce }
}

/// Verify a JWT against the provider's JWKS (RS256) and return its header
/// and claims.
async fn verify_jwt(op: &NodeProvider, token: &str, aud: &str) -> (jsonwebtoken::Header, Value) {
    let meta = op.discovery().await;
    let jwks: Value = api_client(None)
        .get(meta["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks JSON");
    let header = jsonwebtoken::decode_header(token).expect("JWT header");
    let kid = header.kid.clone().expect("kid in JWT header");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} not in JWKS {jwks}"));
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap(),
        jwk["e"].as_str().unwrap(),
    )
    .expect("RSA key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[op.issuer_str()]);
    let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("JWT does not verify ({e}): {token}"));
    (data.header, Value::Object(data.claims))
}

// ===== the provider on its own =====

/// The harness itself: discovery, dev login + consent, PKCE code exchange,
/// a JWT access token for [`RESOURCE`], claims in the ID token, and a
/// refresh with offline_access. Needs no gateway.
#[tokio::test]
async fn oidc_provider_harness_issues_tokens() {
    let rp = LogoutRecorder::spawn().await;
    let op = NodeProvider::start(ProviderOptions {
        redirect_uris: vec![HARNESS_REDIRECT.into()],
        post_logout_origin: Some(rp.origin()),
        backchannel_logout_uri: Some(format!("{}/backchannel", rp.origin())),
        access_token_ttl: None,
        client_key: None,
        ..ProviderOptions::default()
    })
    .await;

    let meta = op.discovery().await;
    assert_eq!(meta["issuer"], op.issuer_str());
    for key in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
        "end_session_endpoint",
    ] {
        let v = meta[key].as_str().unwrap_or_else(|| panic!("no {key}"));
        assert!(v.starts_with(&op.issuer_str()), "{key} = {v}");
    }
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(meta["backchannel_logout_supported"], true);

    let tokens = direct_code_flow(&op, "alice", "openid email profile offline_access").await;

    // Access token: an RS256 JWT for the resource.
    let (header, at) = verify_jwt(&op, tokens.access_token(), RESOURCE).await;
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(at["sub"], "alice");
    assert_eq!(at["client_id"], CLIENT_ID);
    assert_eq!(at["email"], "alice@example.com");
    assert_eq!(at["groups"], serde_json::json!(["users"]));

    // ID token: for the client, with the nonce and the user's claims.
    let (_, id) = verify_jwt(&op, tokens.id_token(), CLIENT_ID).await;
    assert_eq!(id["sub"], "alice");
    assert_eq!(id["nonce"], tokens.nonce.as_str());
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["groups"], serde_json::json!(["users"]));
    assert!(id["sid"].is_string(), "sid in ID token: {id:?}");

    // offline_access: a refresh token that works (and again yields a JWT AT).
    let refresh = tokens.body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token: {}", tokens.body));
    let resp = api_client(None)
        .post(meta["token_endpoint"].as_str().unwrap())
        .basic_auth(CLIENT_ID, Some(&op.client_secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let refreshed: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "refresh: {refreshed}");
    let (_, at2) = verify_jwt(&op, refreshed["access_token"].as_str().unwrap(), RESOURCE).await;
    assert_eq!(at2["sub"], "alice");
    assert!(refreshed["id_token"].is_string());

    // The wrong client secret is refused.
    let resp = api_client(None)
        .post(meta["token_endpoint"].as_str().unwrap())
        .basic_auth(CLIENT_ID, Some("wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // A code request without PKCE is refused (PKCE is required).
    let mut no_pkce = Url::parse(meta["authorization_endpoint"].as_str().unwrap()).unwrap();
    no_pkce
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", HARNESS_REDIRECT)
        .append_pair("scope", "openid");
    let resp = api_client(None).get(no_pkce).send().await.unwrap();
    let to = location(&resp).expect("error redirect");
    assert_eq!(
        query_map(&to).get("error").map(String::as_str),
        Some("invalid_request")
    );

    // A second login in the same browser session is SSO: no login form.
    // (RP-initiated logout then brings the login form back.)
    let (client, _jar) = browser(None);
    let verifier = "v".repeat(43);
    let start = |nonce: &str| {
        let mut u = Url::parse(meta["authorization_endpoint"].as_str().unwrap()).unwrap();
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", CLIENT_ID)
            .append_pair("redirect_uri", HARNESS_REDIRECT)
            .append_pair("scope", "openid")
            .append_pair("nonce", nonce)
            .append_pair(
                "code_challenge",
                &b64url(&sha2::Sha256::digest(verifier.as_bytes())),
            )
            .append_pair("code_challenge_method", "S256");
        u
    };
    let (_, walk) = walk_provider(&client, &op.issuer, start("n1"), "bob").await;
    assert_eq!(walk.logins, 1);
    let (exit, walk) = walk_provider(&client, &op.issuer, start("n2"), "bob").await;
    assert_eq!(walk.logins, 0, "SSO expected: {walk:?}");
    let Exit::Redirect(back) = exit else {
        panic!("{exit:?}")
    };
    let code = query_map(&back)["code"].clone();
    let resp = api_client(None)
        .post(meta["token_endpoint"].as_str().unwrap())
        .basic_auth(CLIENT_ID, Some(&op.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", HARNESS_REDIRECT),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    let bob: Value = resp.json().await.unwrap();
    let (_, bob_id) = verify_jwt(&op, bob["id_token"].as_str().unwrap(), CLIENT_ID).await;

    // RP-initiated logout, as the gateway does it: id_token_hint and a
    // post_logout_redirect_uri anywhere on the RP's origin.
    let mut end = Url::parse(meta["end_session_endpoint"].as_str().unwrap()).unwrap();
    let after = format!("{}/signed-out?x=1", rp.origin());
    end.query_pairs_mut()
        .append_pair("id_token_hint", bob["id_token"].as_str().unwrap())
        .append_pair("post_logout_redirect_uri", &after)
        .append_pair("state", "st");
    let (exit, walk) = walk_provider(&client, &op.issuer, end, "bob").await;
    assert_eq!(walk.logouts, 1, "{exit:?}");
    let Exit::Redirect(back) = exit else {
        panic!("{exit:?}")
    };
    assert_eq!(back.as_str(), format!("{after}&state=st"));

    // Back-channel logout reached the RP: a logout_token for bob's session.
    let deadline = Instant::now() + Duration::from_secs(10);
    let logout_token = loop {
        if let Some(body) = rp.backchannel.lock().unwrap().first() {
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect();
            break form["logout_token"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no back-channel logout\n{}",
            op.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_, lt) = verify_jwt(&op, &logout_token, CLIENT_ID).await;
    assert_eq!(lt["sub"], "bob");
    assert_eq!(lt["sid"], bob_id["sid"]);
    assert!(
        lt["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object(),
        "{lt}"
    );

    let (_, walk) = walk_provider(&client, &op.issuer, start("n3"), "bob").await;
    assert_eq!(walk.logins, 1, "login form again after logout: {walk:?}");
}

/// A stand-in RP origin for the harness: records back-channel logout POSTs
/// at `/backchannel`, answers 200 elsewhere.
struct LogoutRecorder {
    addr: std::net::SocketAddr,
    backchannel: std::sync::Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LogoutRecorder {
    async fn spawn() -> Self {
        let backchannel = std::sync::Arc::new(Mutex::new(Vec::new()));
        let store = backchannel.clone();
        let app = axum::Router::new()
            .route(
                "/backchannel",
                axum::routing::post(move |body: String| {
                    let store = store.clone();
                    async move {
                        store.lock().unwrap().push(body);
                        ""
                    }
                }),
            )
            .fallback(|| async { "ok" });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            backchannel,
            task,
        }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LogoutRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ===== the gateway in front of an echo upstream =====

struct Env {
    // Dropped in this order: gateway first.
    gw: GatewayProcess,
    op: NodeProvider,
    _upstream: EchoUpstream,
    public_url: String,
    meta: Value,
}

/// The exact config the gateway runs with (CONTRACT.md keys only).
fn gateway_toml(main_port: u16, admin_port: u16, upstream: &str, op: &NodeProvider) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{main_port}"
public_url = "http://127.0.0.1:{main_port}"

[admin]
listen = "127.0.0.1:{admin_port}"

[upstream]
url = "{upstream}"

[provider]
kind = "oidc"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{secret}"
scopes = ["openid", "email", "profile", "offline_access"]
client_auth = "client_secret_basic"

[session]
store = "memory"
secret = "{session_secret}"
lifetime = "1h"

[bearer]
enabled = true
audiences = ["{RESOURCE}"]
"#,
        issuer = op.issuer_str(),
        secret = op.client_secret,
        session_secret = random_base64(32),
    )
}

async fn start_env() -> Env {
    start_env_with(None).await
}

async fn start_env_with(access_token_ttl: Option<u64>) -> Env {
    start_env_full(access_token_ttl, None).await
}

/// `private_key_jwt` on both sides: the provider registers the public half
/// of `op_key`, the gateway signs with `gateway_key`.
struct PrivateKeyJwt {
    op_key: PathBuf,
    gateway_key: PathBuf,
    kid: Option<String>,
}

async fn start_env_full(access_token_ttl: Option<u64>, pkjwt: Option<PrivateKeyJwt>) -> Env {
    let upstream = EchoUpstream::spawn().await;
    let main_port = free_port();
    let admin_port = free_port();
    let public_url = format!("http://127.0.0.1:{main_port}");
    let op = NodeProvider::start(ProviderOptions {
        redirect_uris: vec![
            format!("{public_url}/oauth2/callback"),
            HARNESS_REDIRECT.into(),
        ],
        post_logout_origin: Some(public_url.clone()),
        backchannel_logout_uri: Some(format!("{public_url}/oauth2/backchannel_logout")),
        access_token_ttl,
        client_key: pkjwt.as_ref().map(|k| (k.op_key.clone(), k.kid.clone())),
        ..ProviderOptions::default()
    })
    .await;
    let meta = op.discovery().await;
    let mut toml = gateway_toml(main_port, admin_port, &upstream.url(), &op);
    if let Some(k) = &pkjwt {
        let secret_line = format!("client_secret = \"{}\"\n", op.client_secret);
        assert!(toml.contains(&secret_line));
        let mut auth = format!(
            "client_auth = \"private_key_jwt\"\nprivate_key_file = {:?}",
            k.gateway_key.display().to_string()
        );
        if let Some(kid) = &k.kid {
            auth.push_str(&format!("\nprivate_key_kid = \"{kid}\""));
        }
        toml = toml
            .replace(&secret_line, "")
            .replace("client_auth = \"client_secret_basic\"", &auth);
    }
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

    fn public_origin(&self) -> url::Origin {
        Url::parse(&self.public_url).unwrap().origin()
    }

    /// Browser login through the gateway, starting at `path`; asserts every
    /// hop and returns the session cookie value.
    async fn browser_login(&self, client: &reqwest::Client, path: &str, login: &str) -> String {
        // 1. Unauthenticated navigation: 302 to the authorization endpoint.
        let resp = client
            .get(self.url(path))
            .header(ACCEPT, "text/html,application/xhtml+xml")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "GET {path} unauthenticated (browser)");
        let authorize = location(&resp).expect("Location");
        let endpoint = Url::parse(self.meta["authorization_endpoint"].as_str().unwrap()).unwrap();
        assert_eq!(
            (authorize.origin(), authorize.path()),
            (endpoint.origin(), endpoint.path()),
            "redirected to {authorize}"
        );
        let q = query_map(&authorize);
        assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
        assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT_ID));
        assert_eq!(
            q.get("redirect_uri"),
            Some(&format!("{}/oauth2/callback", self.public_url))
        );
        let scope: Vec<&str> = q.get("scope").expect("scope").split(' ').collect();
        for s in ["openid", "email", "profile", "offline_access"] {
            assert!(scope.contains(&s), "scope {scope:?} lacks {s}");
        }
        for p in ["state", "nonce", "code_challenge"] {
            assert!(
                q.get(p).is_some_and(|v| !v.is_empty()),
                "{p} missing in {authorize}"
            );
        }
        assert_eq!(
            q.get("code_challenge").unwrap().len(),
            43,
            "S256 code_challenge is 43 base64url chars"
        );
        assert_eq!(
            q.get("code_challenge_method").map(String::as_str),
            Some("S256")
        );

        // 2. The provider's login (+ consent) forms.
        let (exit, _walk) = walk_provider(client, &self.op.issuer, authorize, login).await;

        // 3. Back to the gateway's callback, which sets the session cookie
        //    and redirects to where the user was going.
        let resp = match exit {
            Exit::Redirect(back) => {
                assert_eq!(back.origin(), self.public_origin(), "{back}");
                assert_eq!(back.path(), "/oauth2/callback", "{back}");
                let q = query_map(&back);
                assert!(q.contains_key("code") && q.contains_key("state"), "{back}");
                client
                    .get(back)
                    .header(ACCEPT, "text/html")
                    .send()
                    .await
                    .unwrap()
            }
            Exit::FormPost(action, fields) => {
                assert_eq!(action.origin(), self.public_origin(), "{action}");
                client.post(action).form(&fields).send().await.unwrap()
            }
            Exit::Page(url, body) => panic!("stuck at the provider on {url}:\n{body}"),
        };
        let status = resp.status();
        assert!(
            status.is_redirection(),
            "callback answered {status}: {}",
            resp.text().await.unwrap_or_default()
        );
        let to = location(&resp).expect("callback Location");
        assert_eq!(to.as_str(), self.url(path), "callback redirects to {to}");
        let cookies = set_cookies(&resp, SESSION_COOKIE);
        let (value, line) = cookies
            .iter()
            .find(|(v, _)| !v.is_empty())
            .unwrap_or_else(|| {
                panic!("no {SESSION_COOKIE} cookie set by the callback: {cookies:?}")
            });
        let lower = line.to_ascii_lowercase();
        assert!(lower.contains("httponly"), "{line}");
        assert!(lower.contains("path=/"), "{line}");
        assert!(lower.contains("samesite=lax"), "{line}");
        assert!(
            !lower.contains("secure"),
            "no Secure over plain http: {line}"
        );
        value.clone()
    }

    /// GET `path` as an API client (no cookie jar) with `cookie` replayed.
    async fn replay(&self, path: &str, cookie: &str) -> reqwest::Response {
        api_client(None)
            .get(self.url(path))
            .header(ACCEPT, "application/json")
            .header(COOKIE, format!("{SESSION_COOKIE}={cookie}"))
            .send()
            .await
            .unwrap()
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

fn assert_unauthenticated_api(status: reqwest::StatusCode, www: Option<&str>, body: &str) {
    assert_eq!(status, 401, "body: {body}");
    let www = www.unwrap_or_else(|| panic!("401 without WWW-Authenticate: {body}"));
    assert!(www.starts_with("Bearer"), "WWW-Authenticate: {www}");
    let json: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("401 body not JSON ({e}): {body}"));
    assert!(json["error"].is_string(), "401 body: {body}");
}

fn contains_string(v: &Value, needle: &str) -> bool {
    match v {
        Value::String(s) => s == needle,
        Value::Array(a) => a.iter().any(|x| contains_string(x, needle)),
        Value::Object(o) => o.values().any(|x| contains_string(x, needle)),
        _ => false,
    }
}

/// rp-response_type-code + rp-nonce + rp-scope-userinfo-claims + PKCE:
/// a browser logs in through the real provider, reaches the upstream with
/// the identity headers, reads /oauth2/userinfo and signs out.
#[tokio::test]
async fn rp_code_flow_login_through_real_provider() {
    let env = start_env().await;
    let (client, _jar) = browser(None);
    let cookie = env.browser_login(&client, "/private", "alice").await;

    // The upstream sees the identity; spoofed identity headers are replaced.
    let resp = client
        .get(env.url("/private"))
        .header(ACCEPT, "text/html")
        .header("X-Auth-Request-User", "mallory")
        .header("X-Auth-Request-Email", "mallory@evil.example")
        .send()
        .await
        .unwrap();
    let seen = echoed(resp).await;
    assert_eq!(seen.uri, "/private");
    assert_eq!(
        seen.header("x-auth-request-user"),
        Some("alice"),
        "{seen:?}"
    );
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
    assert_eq!(
        seen.header("x-auth-request-groups"),
        Some("users"),
        "{seen:?}"
    );

    // /oauth2/userinfo: JSON of the identity.
    let resp = client
        .get(env.url("/oauth2/userinfo"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let info: Value = resp.json().await.expect("userinfo JSON");
    assert!(contains_string(&info, "alice"), "userinfo: {info}");
    assert!(
        contains_string(&info, "alice@example.com"),
        "userinfo: {info}"
    );

    // The cookie alone is the session: replayed from another client, it works...
    let seen = echoed(env.replay("/private", &cookie).await).await;
    assert_eq!(seen.header("x-auth-request-user"), Some("alice"));

    // ...until sign-out, which clears it (and may log out at the provider).
    let resp = client
        .get(env.url("/oauth2/sign_out"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert!(
        status.is_redirection() || status.is_success(),
        "sign_out answered {status}"
    );
    let cleared = set_cookies(&resp, SESSION_COOKIE);
    assert!(
        cleared.iter().any(|(v, line)| {
            let l = line.to_ascii_lowercase();
            v.is_empty() || l.contains("max-age=0") || l.contains("1970")
        }),
        "sign_out must clear {SESSION_COOKIE}: {cleared:?}"
    );
    if let Some(to) = location(&resp) {
        if to.origin() == env.op.issuer.origin() {
            let (exit, _) = walk_provider(&client, &env.op.issuer, to, "alice").await;
            if let Exit::Redirect(back) = exit {
                assert_eq!(back.origin(), env.public_origin(), "{back}");
            }
        }
    }

    let resp = env.replay("/private", &cookie).await;
    let (status, www) = (
        resp.status(),
        resp.headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    let body = resp.text().await.unwrap();
    assert_unauthenticated_api(status, www.as_deref(), &body);

    // And the browser is sent to log in again.
    let resp = client
        .get(env.url("/private"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    drop(env);
}

/// An access token the real provider issued (RS256 JWT, `aud` = the
/// resource) is accepted as a bearer token; a tampered one, or a token for
/// another audience (the ID token), is refused with `invalid_token`.
#[tokio::test]
async fn rp_bearer_access_token_from_real_provider() {
    let env = start_env().await;
    let tokens = direct_code_flow(&env.op, "bob", "openid email profile").await;
    let at = tokens.access_token().to_owned();
    let api = api_client(None);

    let resp = api
        .get(env.url("/api/things?x=1"))
        .header(ACCEPT, "application/json")
        .header(AUTHORIZATION, format!("Bearer {at}"))
        .send()
        .await
        .unwrap();
    let seen = echoed(resp).await;
    assert_eq!(seen.uri, "/api/things?x=1");
    assert_eq!(seen.header("x-auth-request-user"), Some("bob"), "{seen:?}");
    assert_eq!(
        seen.header("x-auth-request-email"),
        Some("bob@example.com"),
        "{seen:?}"
    );

    // Forward-auth with the same token: 202 + identity headers.
    let resp = api
        .get(env.url("/oauth2/auth"))
        .header(AUTHORIZATION, format!("Bearer {at}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "/oauth2/auth with a valid bearer");
    assert_eq!(
        resp.headers()
            .get("x-auth-request-user")
            .map(|v| v.to_str().unwrap()),
        Some("bob")
    );

    // Tampered: one signature character changed.
    let mut tampered = at.clone().into_bytes();
    let i = tampered.len() - 5;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    // Also: a real, valid JWT from the same issuer but for another audience.
    let id_token = tokens.id_token().to_owned();
    for (what, token) in [("tampered access token", tampered), ("ID token", id_token)] {
        let resp = api
            .get(env.url("/api/things"))
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let www = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = resp.text().await.unwrap();
        assert_eq!(status, 401, "{what}: {body}");
        assert!(www.starts_with("Bearer"), "{what}: WWW-Authenticate: {www}");
        assert!(
            www.contains(r#"error="invalid_token""#),
            "{what}: WWW-Authenticate: {www}"
        );
    }

    // No credentials at all: 401, never a redirect, for an API client.
    let resp = api
        .get(env.url("/api/things"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    let (status, www) = (
        resp.status(),
        resp.headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    let body = resp.text().await.unwrap();
    assert_unauthenticated_api(status, www.as_deref(), &body);
    drop(env);
}

/// rp-init-logout: `/oauth2/sign_out` sends the browser to the provider's
/// end_session_endpoint, which ends the provider session too (the next login
/// shows the login form again instead of single sign-on).
#[tokio::test]
async fn rp_initiated_logout_ends_provider_session() {
    let env = start_env().await;
    let (client, _jar) = browser(None);
    env.browser_login(&client, "/app/", "carol").await;

    let resp = client
        .get(env.url("/oauth2/sign_out?rd=/bye"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_redirection(),
        "sign_out: {}",
        resp.status()
    );
    let to = location(&resp).expect("sign_out Location");
    let end = Url::parse(env.meta["end_session_endpoint"].as_str().unwrap()).unwrap();
    assert_eq!(
        (to.origin(), to.path()),
        (end.origin(), end.path()),
        "sign_out should go to the end_session_endpoint, went to {to}"
    );
    let q = query_map(&to);
    assert!(
        q.contains_key("id_token_hint")
            || q.get("client_id").map(String::as_str) == Some(CLIENT_ID),
        "end_session request names the client: {to}"
    );
    if let Some(uri) = q.get("post_logout_redirect_uri") {
        assert_eq!(
            Url::parse(uri).unwrap().origin(),
            env.public_origin(),
            "{uri}"
        );
    }

    let (exit, _) = walk_provider(&client, &env.op.issuer, to, "carol").await;
    if let Exit::Redirect(back) = &exit {
        assert_eq!(back.origin(), env.public_origin(), "{back}");
        let resp = client
            .get(back.clone())
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        assert!(resp.status().as_u16() < 500, "{back}: {}", resp.status());
    }

    // The provider session is gone: logging in again asks for the login.
    let resp = client
        .get(env.url("/app/"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let authorize = location(&resp).unwrap();
    let (_, walk) = walk_provider(&client, &env.op.issuer, authorize, "carol").await;
    assert_eq!(
        walk.logins, 1,
        "provider session should have ended: {walk:?}"
    );
    drop(env);
}

/// OpenID Connect Back-Channel Logout: ending the session at the provider
/// (not through the gateway) ends the gateway session too.
#[tokio::test]
async fn rp_backchannel_logout_ends_gateway_session() {
    let env = start_env().await;
    let (client, _jar) = browser(None);
    let cookie = env.browser_login(&client, "/private", "dave").await;
    echoed(env.replay("/private", &cookie).await).await;

    let mut end = Url::parse(env.meta["end_session_endpoint"].as_str().unwrap()).unwrap();
    end.query_pairs_mut().append_pair("client_id", CLIENT_ID);
    let (exit, walk) = walk_provider(&client, &env.op.issuer, end, "dave").await;
    assert_eq!(walk.logouts, 1, "{exit:?}");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = env.replay("/private", &cookie).await;
        if resp.status() == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "session still valid 10 s after back-channel logout ({})",
            resp.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(env);
}

/// offline_access: the gateway gets a refresh token and, once the access
/// token is past half its life, refreshes it at the provider on the next
/// request; the session goes on with the same identity.
#[tokio::test]
async fn rp_refresh_offline_access_through_gateway() {
    let env = start_env_with(Some(4)).await;
    let (client, _jar) = browser(None);
    env.browser_login(&client, "/app/", "dave").await;
    let refreshes = |env: &Env| {
        std::fs::read_to_string(env.op.dir.path().join("op.stdout"))
            .unwrap_or_default()
            .matches("grant.success grant_type=refresh_token")
            .count()
    };
    assert_eq!(refreshes(&env), 0, "{}", env.op.logs());
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let resp = client
        .get(env.url("/app/after-refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", env.op.logs());
    let seen = echoed(resp).await;
    assert_eq!(seen.header("x-auth-request-user"), Some("dave"), "{seen:?}");
    assert_eq!(refreshes(&env), 1, "{}", env.op.logs());
    drop(env);
}

// ===== private_key_jwt =====

fn cert(name: &str) -> PathBuf {
    support::certs_dir().join(name)
}

/// `client_auth = "private_key_jwt"` against oidc-provider's own
/// verification of RFC 7523 assertions (signature with the registered JWKS,
/// `kid`, `iss`/`sub`, `aud`, `exp`, single-use `jti`): the code exchange and
/// a later refresh each authenticate with a fresh assertion; the client has
/// no secret at all.
#[tokio::test]
async fn rp_private_key_jwt_login_and_refresh_through_real_provider() {
    let env = start_env_full(
        Some(4),
        Some(PrivateKeyJwt {
            op_key: cert("gateway.key"),
            gateway_key: cert("gateway.key"),
            kid: Some("gw-rsa-1".into()),
        }),
    )
    .await;
    let methods = env.meta["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("private_key_jwt"), "{methods}");
    let (client, _jar) = browser(None);
    env.browser_login(&client, "/app/", "erin").await;
    let grants = |env: &Env, kind: &str| {
        std::fs::read_to_string(env.op.dir.path().join("op.stdout"))
            .unwrap_or_default()
            .matches(&format!("grant.success grant_type={kind}"))
            .count()
    };
    assert_eq!(grants(&env, "authorization_code"), 1, "{}", env.op.logs());
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let resp = client
        .get(env.url("/app/after-refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", env.op.logs());
    let seen = echoed(resp).await;
    assert_eq!(seen.header("x-auth-request-user"), Some("erin"), "{seen:?}");
    assert_eq!(grants(&env, "refresh_token"), 1, "{}", env.op.logs());
    drop(env);
}

/// The twin with an EC key: the provider has the RSA key registered, the
/// gateway signs ES256 with another key; oidc-provider answers
/// `invalid_client` and the gateway shows an error page, no session.
#[tokio::test]
async fn rp_private_key_jwt_wrong_key_refused_by_real_provider() {
    let env = start_env_full(
        None,
        Some(PrivateKeyJwt {
            op_key: cert("gateway.key"),
            gateway_key: cert("gateway-ec.key"),
            kid: None,
        }),
    )
    .await;
    let (client, _jar) = browser(None);
    let resp = client
        .get(env.url("/app/"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let authorize = location(&resp).unwrap();
    let (exit, _) = walk_provider(&client, &env.op.issuer, authorize, "frank").await;
    let Exit::Redirect(back) = exit else {
        panic!("expected a redirect back to the gateway")
    };
    let resp = client
        .get(back)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "{}", env.op.logs());
    assert!(set_cookies(&resp, SESSION_COOKIE)
        .iter()
        .all(|(v, _)| v.is_empty()));
    let body = resp.text().await.unwrap();
    assert!(
        !body.contains("BEGIN") && !body.contains("client_assertion"),
        "{body}"
    );
    let resp = client.get(env.url("/app/")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let logs = env.op.logs();
    assert!(
        logs.contains("invalid_client") || logs.contains("InvalidClient"),
        "{logs}"
    );
    assert!(!logs.contains("grant.success"), "{logs}");
    drop(env);
}

// ===== opaque tokens, token discipline, one post-logout URI =====

/// A gateway whose provider issues opaque access tokens (no resource
/// indicator) and registers exactly one post_logout_redirect_uri,
/// `public_url + /oauth2/signed_out`; `[bearer]` introspects and accepts the
/// default audience `[client_id]` (so the ID token's `aud` is accepted too).
async fn start_env_opaque() -> Env {
    let upstream = EchoUpstream::spawn().await;
    let main_port = free_port();
    let admin_port = free_port();
    let public_url = format!("http://127.0.0.1:{main_port}");
    let op = NodeProvider::start(ProviderOptions {
        redirect_uris: vec![
            format!("{public_url}/oauth2/callback"),
            HARNESS_REDIRECT.into(),
        ],
        post_logout_redirect_uris: vec![format!("{public_url}/oauth2/signed_out")],
        opaque_access_tokens: true,
        ..ProviderOptions::default()
    })
    .await;
    let meta = op.discovery().await;
    let toml = gateway_toml(main_port, admin_port, &upstream.url(), &op).replace(
        &format!("audiences = [\"{RESOURCE}\"]"),
        "introspection = true",
    );
    assert!(toml.contains("introspection = true"));
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

async fn bearer_status(env: &Env, token: &str) -> (u16, String) {
    let resp = api_client(None)
        .get(env.url("/api/things"))
        .header(ACCEPT, "application/json")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, www)
}

/// The real provider's opaque access token is checked at its RFC 7662
/// introspection endpoint (found in discovery) and accepted with the
/// identity it names; its ID token (whose `aud` is the accepted client id),
/// its refresh token and made-up tokens are refused with `invalid_token`.
#[tokio::test]
async fn rp_opaque_access_token_through_introspection_and_id_token_refused() {
    let env = start_env_opaque().await;
    assert!(
        env.meta["introspection_endpoint"].is_string(),
        "{}",
        env.meta
    );
    let tokens = direct_code_flow(&env.op, "bob", "openid email profile offline_access").await;
    let at = tokens.access_token().to_owned();
    assert_eq!(at.split('.').count(), 1, "an opaque access token: {at}");

    for _ in 0..2 {
        let resp = api_client(None)
            .get(env.url("/api/things?x=1"))
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, format!("Bearer {at}"))
            .send()
            .await
            .unwrap();
        let seen = echoed(resp).await;
        assert_eq!(seen.header("x-auth-request-user"), Some("bob"), "{seen:?}");
        assert_eq!(
            seen.header("x-auth-request-email"),
            Some("bob@example.com"),
            "{seen:?}"
        );
    }

    let id_token = tokens.id_token().to_owned();
    let refresh = tokens.body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    for (what, token) in [
        ("ID token", id_token),
        ("refresh token", refresh),
        ("made-up opaque token", random_token(32)),
    ] {
        let (status, www) = bearer_status(&env, &token).await;
        assert_eq!(status, 401, "{what}\n{}", env.op.logs());
        assert!(www.contains(r#"error="invalid_token""#), "{what}: {www}");
    }
    // The access token still works: nothing above poisoned the cache.
    assert_eq!(bearer_status(&env, &at).await.0, 200);
}

/// RP-Initiated Logout 1.0 with exactly one registered
/// post_logout_redirect_uri: sign-outs with different `rd` values all end
/// at the provider's logout, come back to `/oauth2/signed_out` and go on to
/// their `rd`.
#[tokio::test]
async fn rp_initiated_logout_many_rd_values_one_registered_uri() {
    let env = start_env_opaque().await;
    for (i, rd) in ["/bye", "/app/page?q=1", "/"].into_iter().enumerate() {
        let (client, _jar) = browser(None);
        env.browser_login(&client, "/app/", &format!("dana{i}"))
            .await;
        let encoded: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let resp = client
            .get(env.url(&format!("/oauth2/sign_out?rd={encoded}")))
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "sign_out rd={rd}");
        let to = location(&resp).expect("sign_out Location");
        let q = query_map(&to);
        assert_eq!(
            q.get("post_logout_redirect_uri"),
            Some(&format!("{}/oauth2/signed_out", env.public_url)),
            "{to}"
        );
        let (exit, _) = walk_provider(&client, &env.op.issuer, to, "unused").await;
        let Exit::Redirect(back) = exit else {
            panic!(
                "rd={rd}: the provider did not send the browser back: {exit:?}\n{}",
                env.op.logs()
            );
        };
        assert_eq!(back.path(), "/oauth2/signed_out", "{back}");
        let resp = client
            .get(back)
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "rd={rd}");
        assert_eq!(
            resp.headers()["location"].to_str().unwrap(),
            rd,
            "signed_out goes on to rd"
        );
    }
}
