//! The `oidc-gateway` binary: `check`, `--version`/`--help`, `run` with a
//! graceful SIGTERM drain, and `demo` end to end (TLS from `certs/`, the
//! dev provider's login form).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::json;
use support::{
    ca_pem, free_port, gateway_bin, random_base64, random_token, DevEcho, DevProvider, Resp,
    TempDir,
};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn gateway() -> Command {
    let mut cmd = Command::new(gateway_bin());
    cmd.stdin(Stdio::null())
        .env_remove("GATEWAY_CLIENT_SECRET")
        .env_remove("GATEWAY_SESSION_SECRET");
    cmd
}

fn out_text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check(config: &Path) -> Output {
    gateway()
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .expect("run oidc-gateway check")
}

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A complete config: `server` lines after `public_url`, `upstream` as the
/// whole `[upstream]` section, `rest` after the session secret (more
/// `[session]` keys, then any further sections). The client secret is
/// [`SECRET`], which no output may contain.
fn config_text(server: &str, upstream: &str, rest: &str) -> String {
    format!(
        r#"
[server]
public_url = "https://app.example.com"
{server}
[upstream]
{upstream}
[provider]
issuer = "https://idp.example.com"
client_id = "gw"
client_secret = "{SECRET}"
[session]
secret = "{}"
{rest}
"#,
        random_base64(32)
    )
}

/// The usual `[upstream]` section of [`config_text`].
const UPSTREAM: &str = r#"url = "http://127.0.0.1:8080""#;

/// Runs `check` on `config`, which must be refused with exit 2, "config ok"
/// nowhere and the client secret never echoed; returns stderr.
fn check_refused(config: &Path) -> String {
    let out = check(config);
    let (stdout, stderr) = out_text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(!stdout.contains("config ok"), "{stdout}");
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "secret echoed:\n{stdout}\n{stderr}"
    );
    stderr
}

/// Runs `check` on `config`, which must pass ("config ok", exit 0);
/// returns stdout and stderr.
fn check_accepted(config: &Path) -> (String, String) {
    let out = check(config);
    let (stdout, stderr) = out_text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "config ok");
    (stdout, stderr)
}

/// Sends SIGTERM with the `kill` utility (no libc).
fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Waits for the child to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills a child on drop (failed tests must not leak processes).
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ===== check =====

#[test]
fn check_reference_config_with_env_is_ok() {
    let out = gateway()
        .current_dir(repo_root())
        .args(["check", "--config", "gateway.toml"])
        .env("GATEWAY_CLIENT_SECRET", random_token(16))
        .env("GATEWAY_SESSION_SECRET", random_base64(32))
        .output()
        .unwrap();
    let (stdout, stderr) = out_text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "config ok");
}

#[test]
fn check_reference_config_without_env_names_both_variables_exit_2() {
    let out = gateway()
        .current_dir(repo_root())
        .args(["check", "--config", "gateway.toml"])
        .output()
        .unwrap();
    let (stdout, stderr) = out_text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(!stdout.contains("config ok"));
    for key in ["provider.client_secret", "session.secret"] {
        assert!(stderr.contains(key), "{key} not named:\n{stderr}");
    }
}

const SECRET: &str = "super-secret-value-0123456789";

#[test]
fn check_broken_config_prints_every_problem_without_secret_exit_2() {
    let dir = TempDir::new("cli-check");
    let config = write(
        &dir,
        "gateway.toml",
        &format!(
            r#"
[server]
public_url = "ftp://app.example.com"
[upstream]
url = "ftp://127.0.0.1:1"
[provider]
issuer = "http://idp.example.com"
client_id = "gw"
client_secret = "{SECRET}"
[session]
secret = "{SECRET}"
[[route]]
path = "public"
auth = "none"
"#
        ),
    );
    let stderr = check_refused(&config);
    for key in [
        "server.public_url",
        "upstream.url",
        "provider.issuer",
        "session.secret",
        "route[0].path",
    ] {
        assert!(stderr.contains(key), "{key} not reported:\n{stderr}");
    }
}

/// CONTRACT: "print every problem (key path + what is wrong)": also when
/// values have the wrong type or form, in several sections at once.
#[test]
fn check_type_errors_in_several_sections_all_reported_with_key_path_exit_2() {
    let dir = TempDir::new("cli-check");
    let config = write(
        &dir,
        "gateway.toml",
        &config_text(
            r#"listen = "not-an-address""#,
            UPSTREAM,
            r#"lifetime = "forever""#,
        ),
    );
    let stderr = check_refused(&config);
    for key in ["server.listen", "session.lifetime"] {
        assert!(stderr.contains(key), "{key} not reported:\n{stderr}");
    }
}

#[test]
fn check_unknown_key_exit_2() {
    let dir = TempDir::new("cli-check");
    let config = write(
        &dir,
        "gateway.toml",
        &config_text(r#"listn = "0.0.0.0:8443""#, UPSTREAM, ""),
    );
    let stderr = check_refused(&config);
    assert!(
        stderr.contains("server.listn"),
        "unknown key not named with its path:\n{stderr}"
    );
}

/// `response_mode = "form_post"` needs the login cookie to be
/// `SameSite=None; Secure`, so an http public_url is refused; the same file
/// with an https public_url passes.
#[test]
fn check_form_post_with_http_public_url_exit_2() {
    let dir = TempDir::new("cli-check");
    let text = |public_url: &str| {
        format!(
            r#"
[server]
public_url = "{public_url}"
[upstream]
url = "http://127.0.0.1:8080"
[provider]
issuer = "https://idp.example.com"
client_id = "gw"
client_secret = "{SECRET}"
response_mode = "form_post"
[session]
secret = "{}"
"#,
            random_base64(32)
        )
    };
    let config = write(&dir, "http.toml", &text("http://127.0.0.1:8080"));
    let stderr = check_refused(&config);
    assert!(
        stderr.contains("provider.response_mode"),
        "key not named:\n{stderr}"
    );
    assert!(stderr.contains("https"), "reason not given:\n{stderr}");

    // Twin: https public_url.
    let config = write(&dir, "https.toml", &text("https://app.example.com"));
    check_accepted(&config);
}

/// `client_auth = "private_key_jwt"`: without `private_key_file`, or with
/// a file that holds no usable key, `check` exits 2 naming the key (and the
/// file); with a real key it passes, and no key material is printed.
#[test]
fn check_private_key_jwt_needs_a_loadable_key_exit_2() {
    let dir = TempDir::new("cli-check");
    let text = |key_line: &str| {
        format!(
            r#"
[server]
public_url = "https://app.example.com"
[upstream]
url = "http://127.0.0.1:8080"
[provider]
issuer = "https://idp.example.com"
client_id = "gw"
client_auth = "private_key_jwt"
{key_line}
[session]
secret = "{}"
"#,
            random_base64(32)
        )
    };
    let config = write(&dir, "missing.toml", &text(""));
    let stderr = check_refused(&config);
    assert!(
        stderr.contains("provider.private_key_file") && stderr.contains("required"),
        "key not named:\n{stderr}"
    );

    let not_a_key = write(&dir, "not-a-key.pem", "hello\n");
    let config = write(
        &dir,
        "bad.toml",
        &text(&format!(
            "private_key_file = {:?}",
            not_a_key.display().to_string()
        )),
    );
    let stderr = check_refused(&config);
    assert!(
        stderr.contains("provider.private_key_file") && stderr.contains("not-a-key.pem"),
        "key and file not named:\n{stderr}"
    );

    // Twin: a real key (RSA PKCS#8 from certs/).
    let key = repo_root().join("certs").join("gateway.key");
    let config = write(
        &dir,
        "ok.toml",
        &text(&format!(
            "private_key_file = {:?}",
            key.display().to_string()
        )),
    );
    let (stdout, stderr) = check_accepted(&config);
    assert!(!stdout.contains("PRIVATE") && !stderr.contains("PRIVATE"));
}

#[test]
fn check_missing_file_exit_2() {
    let out = check(Path::new("/nonexistent/oidc-gateway/gateway.toml"));
    assert_eq!(out.status.code(), Some(2));
}

/// A missing file is said plainly, with the two ways forward: `--config`
/// and `demo`.
#[test]
fn check_missing_file_suggests_config_and_demo_exit_2() {
    let dir = TempDir::new("cli-check");
    let out = gateway()
        .current_dir(dir.path())
        .arg("check")
        .output()
        .unwrap();
    let (stdout, stderr) = out_text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("no configuration file at gateway.toml"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--config PATH") && stderr.contains("oidc-gateway demo"),
        "{stderr}"
    );
    assert!(!stderr.contains("not valid"), "{stderr}");
}

/// A missing required key is named itself, not the key serde stopped at.
#[test]
fn check_missing_required_key_names_it_exit_2() {
    let dir = TempDir::new("cli-check");
    let config = write(
        &dir,
        "gateway.toml",
        &config_text("", r#"connect_timeout = "1s""#, ""),
    );
    let stderr = check_refused(&config);
    assert!(stderr.contains("  upstream.url: missing\n"), "{stderr}");
    assert!(!stderr.contains("connect_timeout"), "{stderr}");
}

/// A typo gets "did you mean" with the right key.
#[test]
fn check_unknown_key_suggests_the_closest_key_exit_2() {
    let dir = TempDir::new("cli-check");
    let config = write(
        &dir,
        "gateway.toml",
        &config_text(
            "",
            r#"
url = "http://127.0.0.1:8080"
conect_timeout = "1s"
"#,
            "",
        ),
    );
    let stderr = check_refused(&config);
    assert!(
        stderr.contains("upstream.conect_timeout: unknown key, did you mean `connect_timeout`?"),
        "{stderr}"
    );
}

#[test]
fn version_and_help_exit_0() {
    let out = gateway().arg("--version").output().unwrap();
    let (stdout, _) = out_text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")) && stdout.contains("oidc-gateway"),
        "{stdout}"
    );
    let out = gateway().arg("--help").output().unwrap();
    let (stdout, _) = out_text(&out);
    assert_eq!(out.status.code(), Some(0));
    for word in ["check", "demo", "run", "--config"] {
        assert!(
            stdout.contains(word),
            "{word} missing from --help:\n{stdout}"
        );
    }
    let out = gateway().arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "bad arguments exit 2");
}

// ===== run + SIGTERM =====

#[tokio::test]
async fn run_sigterm_drains_in_flight_request_and_exits_0() {
    let op = DevProvider::builder()
        .client_secret(random_token(16))
        .start()
        .await
        .unwrap();
    let echo = DevEcho::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let port = free_port();
    let admin_port = free_port();
    let dir = TempDir::new("cli-run");
    let config = write(
        &dir,
        "gateway.toml",
        &format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
shutdown_timeout = "10s"
[admin]
listen = "127.0.0.1:{admin_port}"
[upstream]
url = "{upstream}"
[provider]
issuer = "{issuer}"
client_id = "gateway"
client_secret = "${{TEST_CLIENT_SECRET}}"
[session]
secret = "{session}"
"#,
            upstream = echo.url(),
            issuer = op.issuer(),
            session = random_base64(32),
        ),
    );
    let stderr_path = dir.path().join("stderr");
    let child = gateway()
        .arg("--config")
        .arg(&config)
        .env("TEST_CLIENT_SECRET", op.client_secret())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let api = support::api_client(None);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = api
            .get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready: {}",
            support::tail_of(&stderr_path, 4000)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = op.mint_access_token(json!({}));
    let slow = tokio::spawn({
        let api = api.clone();
        let url = format!("http://127.0.0.1:{port}/_echo/sleep/1500");
        async move {
            api.get(url)
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    // Let the request reach the upstream, then ask the gateway to stop.
    let deadline = Instant::now() + Duration::from_secs(5);
    while echo.request_count() == 0 {
        assert!(Instant::now() < deadline, "slow request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sigterm(&child.0);
    let status = slow.await.unwrap().expect("in-flight request completed");
    assert_eq!(status, 200, "in-flight request finished during drain");
    let exit = tokio::task::spawn_blocking(move || {
        let s = wait_exit(&mut child.0, Duration::from_secs(10));
        drop(child);
        s
    })
    .await
    .unwrap();
    assert_eq!(
        exit.code(),
        Some(0),
        "exit status after SIGTERM; stderr:\n{}",
        support::tail_of(&stderr_path, 4000)
    );
    // No new connections after exit.
    assert!(api
        .get(format!("http://127.0.0.1:{port}/public/"))
        .send()
        .await
        .is_err());
    // Logs written to a file carry no ANSI colour codes.
    let log = support::tail_of(&stderr_path, 100_000);
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escape in a log file:\n{log}");
}

// ===== demo =====

#[tokio::test]
async fn demo_serves_tls_and_logs_in_through_provider_form() {
    let port = free_port();
    let child = gateway()
        .current_dir(repo_root())
        .args(["demo", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let want = format!("https://localhost:{port}/");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut printed = String::new();
    while !printed.contains(&want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                printed.push_str(&line);
                printed.push('\n');
            }
            Err(_) => panic!("demo did not print {want}; got:\n{printed}"),
        }
    }
    let base = format!("https://localhost:{port}");
    let ca = ca_pem();
    let (browser, _jar) = support::browser(Some(&ca));

    // The public page, over TLS trusting certs/ca.pem (the gateway may still
    // be loading the provider: retry briefly).
    let deadline = Instant::now() + Duration::from_secs(15);
    let public = loop {
        match browser.get(format!("{base}/public/")).send().await {
            Ok(r) => break r,
            Err(e) => {
                assert!(Instant::now() < deadline, "GET /public/: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(public.status(), 200);

    // Full login through the provider's form.
    let deadline = Instant::now() + Duration::from_secs(15);
    let start = loop {
        let r = Resp::of(
            browser
                .get(format!("{base}/hello?x=1"))
                .header(ACCEPT, "text/html")
                .send()
                .await
                .unwrap(),
        )
        .await;
        if r.status == 302 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(start.status, 302, "{start:?}");
    let authorize = start.location().unwrap();
    let form = Resp::of(browser.get(authorize.clone()).send().await.unwrap()).await;
    assert_eq!(form.status, 200, "{form:?}");
    assert!(form.body.contains("name=\"username\""), "{form:?}");
    let pending = form
        .body
        .split("name=\"pending\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("hidden pending field")
        .to_owned();
    let login_url = authorize.join("/authorize/login").unwrap();
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("username", "dave")
        .append_pair("pending", &pending)
        .finish();
    let back = Resp::of(
        browser
            .post(login_url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(back.status, 302, "{back:?}");
    let callback = back.location().unwrap();
    assert!(
        callback
            .as_str()
            .starts_with(&format!("{base}/oauth2/callback")),
        "{callback}"
    );
    let done = Resp::of(browser.get(callback).send().await.unwrap()).await;
    assert_eq!(done.status, 302, "{done:?}");
    assert_eq!(done.header("location"), Some("/hello?x=1"));
    assert!(done.sets_session("__Host-oidc-gateway"), "{done:?}");
    let page = Resp::of(
        browser
            .get(format!("{base}/hello?x=1"))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 200, "{page:?}");
    let seen = page.json();
    assert_eq!(seen["headers"]["x-auth-request-user"], "dave", "{seen}");

    sigterm(&child.0);
    let exit =
        tokio::task::spawn_blocking(move || wait_exit(&mut child.0, Duration::from_secs(10)))
            .await
            .unwrap();
    assert_eq!(exit.code(), Some(0));
}

/// `demo --port 0 --plain-http` prints the port it got, and serves there.
#[tokio::test]
async fn demo_port_0_prints_the_real_port_plain_http() {
    let child = gateway()
        .current_dir(repo_root())
        .args(["demo", "--port", "0", "--plain-http"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut printed = String::new();
    let base = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("demo printed no Open line; got:\n{printed}"));
        printed.push_str(&line);
        printed.push('\n');
        if let Some(rest) = line.trim().strip_prefix("Open") {
            break rest
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_owned();
        }
    };
    let port: u16 = base
        .strip_prefix("http://localhost:")
        .unwrap_or_else(|| panic!("not a plain http localhost URL: {base}"))
        .parse()
        .unwrap();
    assert_ne!(port, 0, "{printed}");
    let client = support::api_client(None);
    let public = client.get(format!("{base}/public/")).send().await.unwrap();
    assert_eq!(public.status(), 200);
    let start = client
        .get(format!("{base}/x"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    let to = start.headers()["location"].to_str().unwrap();
    assert!(
        to.contains(&format!(
            "redirect_uri=http%3A%2F%2Flocalhost%3A{port}%2Foauth2%2Fcallback"
        )),
        "{to}"
    );
    sigterm(&child.0);
    let exit =
        tokio::task::spawn_blocking(move || wait_exit(&mut child.0, Duration::from_secs(10)))
            .await
            .unwrap();
    assert_eq!(exit.code(), Some(0));
}

// ===== check --provider =====

fn provider_config(issuer: &str, extra_provider: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://app.example.com"

[upstream]
url = "http://127.0.0.1:9"

[provider]
issuer = "{issuer}"
client_id = "gateway"
client_secret = "s3cr3t-value"
{extra_provider}

[session]
secret = "{secret}"
"#,
        secret = support::random_base64(32),
    )
}

/// `check --provider` reports discovery, endpoints, keys, accepted
/// algorithms and the URIs to register; exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_provider_reports_keys_algorithms_and_uris_exit_0() {
    let op = support::DevProvider::builder()
        .insecure_fixed_keys()
        .start()
        .await
        .unwrap();
    let dir = TempDir::new("cli-check-provider");
    let path = write(&dir, "gateway.toml", &provider_config(op.issuer(), ""));
    let out = tokio::task::spawn_blocking(move || {
        gateway()
            .args(["--config"])
            .arg(&path)
            .args(["check", "--provider"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = out_text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for want in [
        "discovery ok",
        &format!("token_endpoint          {}/token", op.issuer()),
        "kty=RSA",
        "accepted algorithms: RS256",
        "redirect URI              https://app.example.com/oauth2/callback",
        "post-logout redirect URI  https://app.example.com/oauth2/signed_out",
        "provider ok",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("s3cr3t-value") && !stderr.contains("s3cr3t-value"));

    // Only algorithms no key can verify: exit 2, said plainly.
    let dir = TempDir::new("cli-check-provider");
    let path = write(
        &dir,
        "gateway.toml",
        &provider_config(op.issuer(), "allowed_algorithms = [\"EdDSA\"]"),
    );
    let out = tokio::task::spawn_blocking(move || {
        gateway()
            .arg("--config")
            .arg(&path)
            .args(["check", "--provider"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = out_text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("allowed but no key verifies them: EdDSA"),
        "{stdout}"
    );
    assert!(stderr.contains("logins will fail"), "{stderr}");
}

/// An unreachable provider: exit 2 with the reason.
#[test]
fn check_provider_unreachable_exit_2() {
    let dir = TempDir::new("cli-check-provider");
    let port = free_port();
    let path = write(
        &dir,
        "gateway.toml",
        &provider_config(&format!("http://127.0.0.1:{port}"), "http_timeout = \"2s\""),
    );
    let out = gateway()
        .arg("--config")
        .arg(&path)
        .args(["check", "--provider"])
        .output()
        .unwrap();
    let (stdout, stderr) = out_text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("provider http://127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(!stdout.contains("provider ok"), "{stdout}");
}

/// `[tracing] otlp_endpoint` in a build without the `otel` feature: `check`
/// refuses it with what to do (never ignores it); with the feature it is ok.
#[test]
fn check_tracing_endpoint_without_the_otel_feature_exit_2() {
    let dir = TempDir::new("cli-check");
    let config = write(
        &dir,
        "gateway.toml",
        &config_text(
            "",
            UPSTREAM,
            r#"
[tracing]
otlp_endpoint = "http://127.0.0.1:4318"
"#,
        ),
    );
    let out = check(&config);
    let (stdout, stderr) = out_text(&out);
    if cfg!(feature = "otel") {
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert_eq!(stdout.trim(), "config ok");
    } else {
        assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
        assert!(
            stderr.contains("tracing.otlp_endpoint: this build has no OpenTelemetry export: rebuild with --features otel"),
            "{stderr}"
        );
    }
}
