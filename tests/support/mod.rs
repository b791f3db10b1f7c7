//! Shared helpers for the integration tests that run the real `oidc-gateway`
//! binary: free ports, temp dirs, an echo upstream, spawning the gateway with
//! a TOML config, and a scripted "browser" (cookie jar, no automatic
//! redirects, optional extra CA).
//!
//! Each test crate uses only part of this module.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// How long a spawned gateway gets to report ready on `/readyz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

// ===== ports and temp dirs =====

/// A loopback port that was free a moment ago (bind `127.0.0.1:0`, read the
/// port, drop the listener). For processes that must be told their port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local_addr")
        .port()
}

/// `n` random bytes, standard base64 (e.g. a `[session] secret`).
pub fn random_base64(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A random URL-safe token (for client secrets, logins).
pub fn random_token(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A directory under the system temp dir, removed on drop (kept when the
/// thread is panicking, so a failed test leaves its config and logs behind).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            random_token(4)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(kept {} for diagnosis)", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The last `max` bytes of a file, lossily decoded (for failure messages).
pub fn tail_of(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

// ===== echo upstream =====

/// An upstream that answers every request with 200 and a JSON body
/// `{"method": .., "uri": .., "headers": {name: value, ..}}` (header names
/// lowercase, repeated headers joined with ", ").
pub struct EchoUpstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoUpstream {
    pub async fn spawn() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind echo upstream");
        let addr = listener.local_addr().expect("local_addr");
        let app = axum::Router::new().fallback(echo);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(req: axum::extract::Request) -> axum::response::Response {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let body = serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "headers": headers,
    });
    axum::response::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-echo-upstream", "1")
        .body(axum::body::Body::from(body.to_string()))
        .expect("echo response")
}

/// What the echo upstream saw.
#[derive(Debug, serde::Deserialize)]
pub struct Echoed {
    pub method: String,
    pub uri: String,
    pub headers: BTreeMap<String, String>,
}

impl Echoed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

// ===== HTTP clients =====

fn install_crypto_provider() {
    // reqwest is built with `rustls-tls-manual-roots-no-provider`.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn client_builder(ca_pem: Option<&[u8]>) -> reqwest::ClientBuilder {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .no_proxy();
    if let Some(pem) = ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem).expect("parse CA PEM") {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
}

/// A scripted browser: keeps cookies (returned jar for inspection), never
/// follows redirects on its own, trusts `ca_pem` in addition to nothing else.
pub fn browser(ca_pem: Option<&[u8]>) -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = client_builder(ca_pem)
        .cookie_provider(jar.clone())
        .build()
        .expect("build browser client");
    (client, jar)
}

/// An API client: no cookie store, no automatic redirects.
pub fn api_client(ca_pem: Option<&[u8]>) -> reqwest::Client {
    client_builder(ca_pem).build().expect("build api client")
}

/// `Location` of a redirect, resolved against the request URL.
pub fn location(resp: &reqwest::Response) -> Option<url::Url> {
    let value = resp.headers().get(reqwest::header::LOCATION)?;
    resp.url().join(value.to_str().ok()?).ok()
}

/// The `name=value` of every `Set-Cookie` for `name` in a response, as
/// (value, full header line) pairs.
pub fn set_cookies<'a>(resp: &'a reqwest::Response, name: &str) -> Vec<(String, &'a str)> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|line| {
            let (pair, _) = line.split_once(';').unwrap_or((line, ""));
            let (n, v) = pair.split_once('=')?;
            (n.trim() == name).then(|| (v.trim().to_owned(), line))
        })
        .collect()
}

// ===== the gateway binary =====

/// The binary under test: `OIDC_GATEWAY_BIN` when set (e.g. a release
/// build), else the one cargo built for this test run.
pub fn gateway_bin() -> PathBuf {
    std::env::var_os("OIDC_GATEWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_oidc-gateway")))
}

/// A running `oidc-gateway` process, started from a TOML config written to a
/// temp dir; killed on drop (its logs are printed when a test panics).
pub struct GatewayProcess {
    child: Child,
    dir: TempDir,
    pub main_url: String,
    pub admin_url: String,
}

impl GatewayProcess {
    /// Write `config_toml` to `<tmp>/gateway.toml`, run
    /// `oidc-gateway --config <it>`, and wait (bounded by [`READY_TIMEOUT`])
    /// for `GET {admin_url}/readyz` to answer 200.
    pub async fn start(config_toml: &str, main_url: &str, admin_url: &str) -> Self {
        let dir = TempDir::new("oidc-gateway-test");
        let config = dir.path().join("gateway.toml");
        std::fs::write(&config, config_toml).expect("write gateway.toml");
        let stdout = std::fs::File::create(dir.path().join("gateway.stdout")).expect("log file");
        let stderr = std::fs::File::create(dir.path().join("gateway.stderr")).expect("log file");
        let child = Command::new(gateway_bin())
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn oidc-gateway binary");
        let mut gw = Self {
            child,
            dir,
            main_url: main_url.trim_end_matches('/').to_owned(),
            admin_url: admin_url.trim_end_matches('/').to_owned(),
        };
        gw.wait_ready(READY_TIMEOUT).await;
        gw
    }

    async fn wait_ready(&mut self, timeout: Duration) {
        let client = api_client(None);
        let url = format!("{}/readyz", self.admin_url);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "oidc-gateway exited before it was ready ({status})\n{}",
                    self.logs()
                );
            }
            let last = match client.get(&url).send().await {
                Ok(resp) if resp.status() == 200 => return,
                Ok(resp) => format!("HTTP {}", resp.status()),
                Err(e) => format!("{e}"),
            };
            if Instant::now() > deadline {
                panic!(
                    "oidc-gateway not ready at {url} after {timeout:?} (last: {last})\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The config file and the tail of stdout/stderr, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- gateway.toml ---\n{}\n--- gateway stdout (tail) ---\n{}\n--- gateway stderr (tail) ---\n{}",
            tail_of(&self.dir.path().join("gateway.toml"), 4096),
            tail_of(&self.dir.path().join("gateway.stdout"), 8192),
            tail_of(&self.dir.path().join("gateway.stderr"), 16384),
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.main_url)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
