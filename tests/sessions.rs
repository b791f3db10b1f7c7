//! Session stores end to end: several gateways sharing one real
//! `redis-server` (started here on a free port), and the stateless cookie
//! store across restarts, tampering and key rotation.
//!
//! The Redis tests need the `redis-server` binary (Debian/Ubuntu:
//! `apt-get install -y redis-server`; `.ci/run` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use oidc_gateway::config::GatewayConfig;
use oidc_gateway::devtools::echo::EchoUpstream;
use oidc_gateway::devtools::provider::DevProvider;
use oidc_gateway::gateway::RunningGateway;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::TempDir;

const COOKIE: &str = "oidc-gateway";

// ===== redis-server =====

/// A `redis-server` on a free loopback port, persisting to its own temp dir
/// (so a stop with `SHUTDOWN SAVE` and a start keep the data).
struct Redis {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

fn redis_server_bin() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "redis-server not found on PATH: the Redis store tests need a real Redis. \
             Install it with `apt-get install -y redis-server` (Debian/Ubuntu; .ci/run does \
             this), `brew install redis` (macOS), or put a redis-server binary on PATH."
        )
    })
}

impl Redis {
    async fn start() -> Redis {
        let mut r = Redis {
            port: support::free_port(),
            dir: TempDir::new("sessions-redis"),
            child: None,
        };
        r.spawn().await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new(redis_server_bin())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "3600 1", "--appendonly", "no"])
            .args(["--rdbcompression", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping().await {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn conn(&self) -> Option<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url()).ok()?;
        tokio::time::timeout(
            Duration::from_secs(1),
            client.get_multiplexed_async_connection(),
        )
        .await
        .ok()?
        .ok()
    }

    async fn ping(&self) -> bool {
        match self.conn().await {
            Some(mut c) => redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok(),
            None => false,
        }
    }

    /// `SHUTDOWN SAVE`: writes `dump.rdb` and exits.
    async fn stop(&mut self) {
        if let Some(mut c) = self.conn().await {
            let _ = redis::cmd("SHUTDOWN")
                .arg("SAVE")
                .query_async::<()>(&mut c)
                .await;
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn dump(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("dump.rdb")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ===== gateways =====

/// One provider and upstream; gateways made on demand, all with the same
/// session secret and `[session]` settings.
struct Site {
    op: DevProvider,
    echo: EchoUpstream,
    secret: String,
}

impl Site {
    async fn new(access_ttl: Duration) -> Site {
        let op = DevProvider::builder()
            .auto_login("alice")
            .issue_refresh_tokens(true)
            .access_token_ttl(access_ttl)
            .start()
            .await
            .unwrap();
        let echo = EchoUpstream::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Site {
            op,
            echo,
            secret: support::random_base64(32),
        }
    }

    /// A ready gateway whose `[session]` has `secret` and `session`.
    async fn gateway_with(&self, secret: &str, session: &str) -> Gateway {
        let port = support::free_port();
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
shutdown_timeout = "1s"
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "http://{up}"
[provider]
issuer = "{iss}"
client_id = "{cid}"
client_secret = "{cs}"
scopes = ["openid", "email", "profile", "offline_access"]
[session]
secret = "{secret}"
{session}
"#,
            up = self.echo.addr(),
            iss = self.op.issuer(),
            cid = self.op.client_id(),
            cs = self.op.client_secret(),
        );
        let config = GatewayConfig::from_toml_str(&toml, &HashMap::new())
            .unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let gw = RunningGateway::start(config).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gw.is_ready() {
            assert!(Instant::now() < deadline, "gateway not ready\n{toml}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Gateway {
            base: format!("http://{}", gw.main_addr()),
            admin: format!("http://{}", gw.admin_addr()),
            gw,
        }
    }

    async fn gateway(&self, session: &str) -> Gateway {
        self.gateway_with(&self.secret.clone(), session).await
    }
}

struct Gateway {
    gw: RunningGateway,
    base: String,
    admin: String,
}

impl Gateway {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Status of `GET path` as an API client sending `cookie`.
    async fn get(&self, path: &str, cookie: &str) -> reqwest::Response {
        support::api_client(None)
            .get(self.url(path))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
    }

    async fn status(&self, path: &str, cookie: &str) -> u16 {
        self.get(path, cookie).await.status().as_u16()
    }

    async fn readyz(&self) -> u16 {
        support::api_client(None)
            .get(format!("{}/readyz", self.admin))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn backchannel_logout(&self, token: &str) -> u16 {
        support::api_client(None)
            .post(self.url("/oauth2/backchannel_logout"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("logout_token={token}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// A browser login through `gw` (auto-login); returns the `Cookie` header
/// value with every session cookie the gateway set.
async fn login(gw: &Gateway) -> String {
    let (client, _jar) = support::browser(None);
    let mut url = gw.url("/private");
    let mut cookies: Vec<(String, String)> = Vec::new();
    for _ in 0..6 {
        let resp = client
            .get(&url)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        for line in resp.headers().get_all("set-cookie") {
            let line = line.to_str().unwrap();
            let pair = line.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if name == COOKIE || name.starts_with(&format!("{COOKIE}-")) && !name.contains("login")
            {
                cookies.retain(|(n, _)| n != name);
                if !value.is_empty() {
                    cookies.push((name.to_string(), value.to_string()));
                }
            }
        }
        if resp.status() == 200 {
            assert!(!cookies.is_empty(), "no session cookie");
            return cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
        }
        assert_eq!(resp.status(), 302, "unexpected status at {url}");
        url = support::location(&resp).unwrap().to_string();
    }
    panic!("login did not complete");
}

/// Polls until `f` returns `want` or `within` passes; returns what it saw.
async fn eventually<F, Fut>(within: Duration, want: u16, mut f: F) -> u16
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let deadline = Instant::now() + within;
    loop {
        let got = f().await;
        if got == want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn redis_session(redis: &Redis) -> String {
    format!("store = \"redis\"\nredis_url = \"{}\"", redis.url())
}

// ===== redis store =====

#[tokio::test]
async fn redis_session_from_one_gateway_works_on_the_other_and_logout_ends_both() {
    let redis = Redis::start().await;
    let site = Site::new(Duration::from_secs(3600)).await;
    let a = site.gateway(&redis_session(&redis)).await;
    let b = site.gateway(&redis_session(&redis)).await;

    let cookie = login(&a).await;
    assert_eq!(a.status("/api", &cookie).await, 200);
    assert_eq!(
        b.status("/api", &cookie).await,
        200,
        "made on A, valid on B"
    );
    let seen = site.echo.last_request().unwrap();
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice", "{seen}");

    // Back-channel logout received by A ends the session on B too, sooner
    // than the cache bound (pub/sub), and certainly within it.
    let token = site.op.mint_logout_token(Some("alice"), None);
    assert_eq!(a.backchannel_logout(&token).await, 200);
    let started = Instant::now();
    let on_b = eventually(Duration::from_secs(3), 401, || b.status("/api", &cookie)).await;
    assert_eq!(on_b, 401, "logout reached B");
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(a.status("/api", &cookie).await, 401);

    // Sign-out through B ends a new session on A.
    let cookie = login(&a).await;
    assert_eq!(b.status("/api", &cookie).await, 200);
    let out = b.get("/oauth2/sign_out", &cookie).await;
    assert_eq!(out.status(), 302);
    let on_a = eventually(Duration::from_secs(3), 401, || a.status("/api", &cookie)).await;
    assert_eq!(on_a, 401, "sign-out reached A");
}

#[tokio::test]
async fn redis_session_survives_gateway_restart_and_dump_holds_no_token() {
    let mut redis = Redis::start().await;
    let site = Site::new(Duration::from_secs(3600)).await;
    let a = site.gateway(&redis_session(&redis)).await;
    let cookie = login(&a).await;
    a.gw.shutdown().await.unwrap();

    let a2 = site.gateway(&redis_session(&redis)).await;
    assert_eq!(a2.status("/api", &cookie).await, 200, "survives restart");

    // Every key is under the prefix and has a TTL.
    let mut c = redis.conn().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(keys.len() >= 2, "{keys:?}");
    for k in &keys {
        assert!(k.starts_with("oidc-gateway:"), "{k}");
        let ttl: i64 = redis::cmd("PTTL").arg(k).query_async(&mut c).await.unwrap();
        assert!(ttl > 0, "{k} has no TTL");
    }
    // Bytes per session (value, key and index sets; Redis's own accounting).
    let mut bytes = 0u64;
    for k in &keys {
        let used: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(k)
            .query_async(&mut c)
            .await
            .unwrap();
        bytes += used.unwrap_or(0);
    }
    eprintln!("redis: {} keys, {bytes} bytes for one session", keys.len());
    assert!(bytes < 8 * 1024, "{bytes} bytes for one session");
    let session_id = cookie.split_once('=').unwrap().1;
    redis.stop().await;
    let dump = redis.dump();
    assert!(dump.len() > 100, "no dump written");
    let text = String::from_utf8_lossy(&dump);
    for needle in ["eyJ", "alice", session_id, "refresh", "access_token"] {
        assert!(!text.contains(needle), "{needle} in the Redis dump");
    }
}

#[tokio::test]
async fn redis_down_is_503_bearer_still_200_and_recovers_without_restart() {
    let mut redis = Redis::start().await;
    let site = Site::new(Duration::from_secs(3600)).await;
    let a = site
        .gateway(&format!(
            "{}\nredis_cache_ttl = \"500ms\"",
            redis_session(&redis)
        ))
        .await;
    let cookie = login(&a).await;
    assert_eq!(a.status("/api", &cookie).await, 200);
    assert_eq!(a.readyz().await, 200);

    redis.stop().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let resp = a.get("/api", &cookie).await;
    assert_eq!(resp.status(), 503, "session lookup with Redis down");
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("temporarily_unavailable"));
    let page = support::api_client(None)
        .get(a.url("/private"))
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503, "browsers get a page, not a login loop");
    assert_eq!(
        eventually(Duration::from_secs(3), 503, || a.readyz()).await,
        503
    );
    let token = site
        .op
        .mint_access_token(serde_json::json!({ "sub": "bob" }));
    let bearer = support::api_client(None)
        .get(a.url("/api"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200, "bearer does not need the store");

    redis.spawn().await;
    assert_eq!(
        eventually(Duration::from_secs(5), 200, || a.status("/api", &cookie)).await,
        200,
        "recovers by itself; the session persisted in Redis"
    );
    assert_eq!(
        eventually(Duration::from_secs(3), 200, || a.readyz()).await,
        200
    );
}

#[tokio::test]
async fn redis_concurrent_refresh_on_two_gateways_refreshes_once() {
    let redis = Redis::start().await;
    // Access tokens live 4 s: refreshed from half-life (2 s).
    let site = Site::new(Duration::from_secs(4)).await;
    let a = site.gateway(&redis_session(&redis)).await;
    let b = site.gateway(&redis_session(&redis)).await;
    let cookie = login(&a).await;
    assert_eq!(b.status("/api", &cookie).await, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = site.op.counters().refresh;
    let calls = (0..50).map(|i| {
        let url = if i % 2 == 0 {
            a.url("/api")
        } else {
            b.url("/api")
        };
        let cookie = cookie.clone();
        tokio::spawn(async move {
            support::api_client(None)
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    });
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(
        site.op.counters().refresh - before,
        1,
        "exactly one refresh"
    );
}

// ===== cookie store =====

#[tokio::test]
async fn cookie_store_survives_restart_and_rotation_with_previous_secrets() {
    let site = Site::new(Duration::from_secs(3600)).await;
    let old = site.secret.clone();
    let gw = site.gateway("store = \"cookie\"").await;
    let cookie = login(&gw).await;
    assert!(!cookie.contains("alice"), "sealed");
    gw.gw.shutdown().await.unwrap();

    let gw = site.gateway("store = \"cookie\"").await;
    assert_eq!(gw.status("/api", &cookie).await, 200, "survives restart");
    gw.gw.shutdown().await.unwrap();

    // Rotation: the new secret seals, the old one still opens.
    let new = support::random_base64(32);
    let rotated = format!("store = \"cookie\"\nprevious_secrets = [\"{old}\"]");
    let gw = site.gateway_with(&new, &rotated).await;
    let resp = gw.get("/api", &cookie).await;
    assert_eq!(resp.status(), 200, "opens with previous_secrets");
    let resealed = support::set_cookies(&resp, COOKIE);
    assert_eq!(resealed.len(), 1, "resealed under the new secret");
    let resealed = format!("{COOKIE}={}", resealed[0].0);
    gw.gw.shutdown().await.unwrap();

    let gw = site.gateway_with(&new, "store = \"cookie\"").await;
    assert_eq!(gw.status("/api", &cookie).await, 401, "old key gone");
    assert_eq!(gw.status("/api", &resealed).await, 200);
}

#[tokio::test]
async fn cookie_store_chunks_tampered_missing_extra_are_unauthenticated_and_sign_out_clears_all() {
    let site = Site::new(Duration::from_secs(3600)).await;
    let groups: Vec<String> = (0..300).map(|i| format!("team-{i:04}-members")).collect();
    site.op
        .set_user_claims("alice", serde_json::json!({ "groups": groups }));
    let gw = site.gateway("store = \"cookie\"").await;
    let cookie = login(&gw).await;
    let pairs: Vec<&str> = cookie.split("; ").collect();
    assert!(pairs.len() >= 2, "chunked: {}", pairs.len());
    assert!(pairs[0].starts_with(&format!("{COOKIE}-0=")));
    for p in &pairs {
        assert!(p.len() < 4000, "each chunk fits a cookie");
    }
    assert_eq!(gw.status("/api", &cookie).await, 200);
    let seen = site.echo.last_request().unwrap();
    let sent = seen["headers"]["x-auth-request-groups"].as_str().unwrap();
    // The gateway keeps at most 256 groups of a token.
    assert_eq!(sent.split(',').count(), 256);

    let mut tampered: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
    let last = tampered.len() - 1;
    let mid = tampered[last].len() - 5;
    let flip = if tampered[last].as_bytes()[mid] == b'A' {
        "B"
    } else {
        "A"
    };
    tampered[last].replace_range(mid..=mid, flip);
    let variants = [
        ("tampered", tampered.join("; ")),
        ("missing", pairs[1..].join("; ")),
        ("extra", format!("{cookie}; {COOKIE}-{}=AAAA", pairs.len())),
        ("reordered", {
            let mut r: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
            let (v0, v1) = (
                r[0].split_once('=').unwrap().1.to_string(),
                r[1].split_once('=').unwrap().1.to_string(),
            );
            r[0] = format!("{COOKIE}-0={v1}");
            r[1] = format!("{COOKIE}-1={v0}");
            r.join("; ")
        }),
    ];
    for (what, bad) in variants {
        assert_eq!(gw.status("/api", &bad).await, 401, "{what}");
        let nav = support::api_client(None)
            .get(gw.url("/private"))
            .header("cookie", &bad)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(nav.status(), 302, "{what}: to the provider, never 500");
    }

    let out = gw.get("/oauth2/sign_out", &cookie).await;
    assert_eq!(out.status(), 302);
    for i in 0..pairs.len() {
        let cleared = support::set_cookies(&out, &format!("{COOKIE}-{i}"));
        assert_eq!(cleared.len(), 1, "chunk {i} cleared");
        assert!(cleared[0].1.contains("Max-Age=0"));
    }
    // This process also revoked the session.
    assert_eq!(gw.status("/api", &cookie).await, 401);
}

#[tokio::test]
async fn cookie_store_refresh_rewrites_the_cookie() {
    let site = Site::new(Duration::from_secs(2)).await;
    let gw = site.gateway("store = \"cookie\"").await;
    let cookie = login(&gw).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = site.op.counters().refresh;
    let resp = gw.get("/api", &cookie).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(site.op.counters().refresh - before, 1);
    let rewritten = support::set_cookies(&resp, COOKIE);
    assert_eq!(rewritten.len(), 1, "refreshed session travels back");
    let fresh = format!("{COOKIE}={}", rewritten[0].0);
    assert_eq!(gw.status("/api", &fresh).await, 200);
    assert_eq!(site.op.counters().refresh - before, 1, "no second refresh");
}
