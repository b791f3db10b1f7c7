//! Shared helpers for the integration tests that run the real `oidc-gateway`
//! binary: free ports, temp dirs, an echo upstream, spawning the gateway with
//! a TOML config, and a scripted "browser" (cookie jar, no automatic
//! redirects, optional extra CA).
//!
//! Each test crate uses only part of this module.
#![allow(dead_code, unreachable_pub, unused_imports)]

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

/// A loopback port that is free now, for processes that must be told their
/// port. Taken from 20000-32767, below Linux's ephemeral range (32768-60999),
/// so that no outgoing connection of a parallel test can have taken it
/// between this check and the process binding it (the flake a plain
/// `bind :0` + drop gives); a counter from a random start keeps the ports
/// of one test process apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20000;
    const SPAN: u16 = 12768;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        1 + rand::random::<u16>() % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = LOW + n % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN)
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

pub fn install_crypto_provider() {
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
        let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".into());
        Self::start_with_env(config_toml, main_url, admin_url, &[("RUST_LOG", &rust_log)]).await
    }

    /// [`start`](Self::start) with these environment variables set for the
    /// process (`RUST_LOG` is not set unless given).
    pub async fn start_with_env(
        config_toml: &str,
        main_url: &str,
        admin_url: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = TempDir::new("oidc-gateway-test");
        let config = dir.path().join("gateway.toml");
        std::fs::write(&config, config_toml).expect("write gateway.toml");
        let stdout = std::fs::File::create(dir.path().join("gateway.stdout")).expect("log file");
        let stderr = std::fs::File::create(dir.path().join("gateway.stderr")).expect("log file");
        let child = Command::new(gateway_bin())
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env_remove("OIDC_GATEWAY_LOG_FORMAT")
            .envs(env.iter().copied())
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

    /// The process id (to send it signals, to read `/proc/<pid>/status` and `/proc/<pid>/fd`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir holding `gateway.toml` and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the process wrote to stderr so far (its log).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.stderr")).unwrap_or_default()
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

// ===== in-process harness: DevProvider + echo upstream + RunningGateway =====

/// The development provider with fixed keys, a random client secret and
/// auto-login as `alice` (installs the rustls crypto provider first).
pub async fn dev_provider() -> DevProvider {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    DevProvider::builder()
        .insecure_fixed_keys()
        .client_secret(random_token(18))
        .auto_login("alice")
        .start()
        .await
        .expect("start dev provider")
}

/// The echo upstream on a free loopback port.
pub async fn echo_upstream() -> DevEcho {
    DevEcho::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("start echo upstream")
}

/// The gateway binary in front of `upstream`, with the dev provider `op`,
/// `extra_server` lines in `[server]`, a public `/public/` route, and the
/// `extra` sections after it (e.g. `[log]`), on free ports; `env` is the
/// process environment ([`GatewayProcess::start_with_env`]).
pub async fn dev_gateway_process(
    op: &DevProvider,
    upstream: &str,
    extra_server: &str,
    extra: &str,
    env: &[(&str, &str)],
) -> GatewayProcess {
    let port = free_port();
    let admin = free_port();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
{extra_server}
[admin]
listen = "127.0.0.1:{admin}"
[upstream]
url = "{upstream}"
connect_timeout = "1s"
timeout = "5s"
[provider]
issuer = "{issuer}"
client_id = "gateway"
client_secret = "{secret}"
[session]
secret = "{session_secret}"
[[route]]
path = "/public/"
auth = "none"
{extra}
"#,
        issuer = op.issuer(),
        secret = op.client_secret(),
        session_secret = random_base64(32),
    );
    GatewayProcess::start_with_env(
        &config,
        &format!("http://127.0.0.1:{port}"),
        &format!("http://127.0.0.1:{admin}"),
        env,
    )
    .await
}

use oidc_gateway::config::{GatewayConfig, ProcessEnv};
pub use oidc_gateway::devtools::echo::EchoUpstream as DevEcho;
pub use oidc_gateway::devtools::provider::{ClientAuth, DevProvider, Fault, Signer};
use oidc_gateway::gateway::{RunningGateway, StartError};

/// The session cookie over plain http / https (CONTRACT.md).
pub const COOKIE_HTTP: &str = "oidc-gateway";
pub const COOKIE_HTTPS: &str = "__Host-oidc-gateway";

/// The repository's `certs/` directory.
pub fn certs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
}

/// `certs/ca.pem`, the test CA that signed `certs/gateway.crt`.
pub fn ca_pem() -> Vec<u8> {
    std::fs::read(certs_dir().join("ca.pem")).expect("read certs/ca.pem")
}

/// The TLS server configuration from `certs/gateway.crt` / `gateway.key`
/// (ALPN `h2`, `http/1.1`).
pub fn server_tls_config() -> Arc<rustls::ServerConfig> {
    let certs = certs_dir();
    oidc_gateway::server::tls::load_server_config(
        &certs.join("gateway.crt"),
        &certs.join("gateway.key"),
    )
    .expect("load certs/gateway.crt + gateway.key")
}

/// `ca_file = "<repo>/certs/ca.pem"`, for [`Options::provider`].
pub fn ca_file_line() -> String {
    format!(
        "ca_file = {:?}\n",
        certs_dir().join("ca.pem").display().to_string()
    )
}

/// How to build a [`Harness`]. Each string is added verbatim to its TOML
/// section; `routes` is appended after the built-in `/public/` route.
pub struct Options {
    /// Serve TLS from `certs/` with `public_url = https://localhost:PORT`.
    pub tls: bool,
    /// Run the DevProvider over TLS from `certs/` (issuer
    /// `https://localhost:PORT`). The gateway then needs
    /// `provider.ca_file` (see [`ca_file_line`]) to trust it.
    pub provider_tls: bool,
    pub server: String,
    pub upstream: String,
    pub provider: String,
    pub session: String,
    pub bearer: String,
    pub headers: String,
    pub routes: String,
    /// Replace the echo upstream's URL (e.g. a closed port).
    pub upstream_url: Option<String>,
    /// Faults active before the gateway starts (discovery, JWKS).
    pub faults_before_start: Vec<Fault>,
    /// Wait until the gateway reports ready.
    pub wait_ready: bool,
    /// The DevProvider's token endpoint client authentication (default
    /// [`ClientAuth::Any`]).
    pub op_client_auth: Option<ClientAuth>,
    /// The DevProvider's access token lifetime (default 1 hour).
    pub op_access_token_ttl: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tls: false,
            provider_tls: false,
            server: String::new(),
            upstream: String::new(),
            provider: String::new(),
            session: String::new(),
            bearer: String::new(),
            headers: String::new(),
            routes: String::new(),
            upstream_url: None,
            faults_before_start: Vec::new(),
            wait_ready: true,
            op_client_auth: None,
            op_access_token_ttl: None,
        }
    }
}

/// A DevProvider (auto-login `alice`), a devtools echo upstream and an
/// in-process gateway in front of it, all on loopback.
pub struct Harness {
    pub op: DevProvider,
    pub echo: DevEcho,
    pub gw: RunningGateway,
    /// The gateway's public origin (no trailing slash).
    pub base: String,
    /// `http://<admin addr>`.
    pub admin: String,
    pub ca: Option<Vec<u8>>,
    /// The session cookie's name.
    pub cookie: &'static str,
    pub config: String,
}

impl Harness {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(opts: Options) -> Self {
        install_crypto_provider();
        // The published test keys: no RSA key generation (~0.1 s each in
        // debug builds) for each of the many harnesses.
        let mut op_builder = DevProvider::builder()
            .insecure_fixed_keys()
            .client_secret(random_token(18))
            .auto_login("alice");
        if opts.provider_tls {
            op_builder = op_builder.tls(server_tls_config());
        }
        if let Some(auth) = opts.op_client_auth.clone() {
            op_builder = op_builder.client_auth(auth);
        }
        if let Some(ttl) = opts.op_access_token_ttl {
            op_builder = op_builder.access_token_ttl(ttl);
        }
        let op = op_builder.start().await.expect("start dev provider");
        for f in &opts.faults_before_start {
            op.set_fault(f.clone());
        }
        let echo = DevEcho::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("start echo upstream");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let (public_url, tls) = if opts.tls {
                let certs = certs_dir();
                (
                    format!("https://localhost:{port}"),
                    format!(
                        "tls_cert = {:?}\ntls_key = {:?}\n",
                        certs.join("gateway.crt").display().to_string(),
                        certs.join("gateway.key").display().to_string()
                    ),
                )
            } else {
                (format!("http://127.0.0.1:{port}"), String::new())
            };
            let config = format!(
                r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "{public_url}"
shutdown_timeout = "2s"
{tls}{server}
[admin]
listen = "127.0.0.1:0"

[upstream]
url = "{upstream}"
connect_timeout = "1s"
{upstream_extra}
[provider]
issuer = "{issuer}"
client_id = "gateway"
client_secret = "{secret}"
{provider}
[session]
secret = "{session_secret}"
{session}
[bearer]
{bearer}
[headers]
{headers}
[[route]]
path = "/public/"
auth = "none"
{routes}
"#,
                server = opts.server,
                upstream = opts.upstream_url.clone().unwrap_or_else(|| echo.url()),
                upstream_extra = opts.upstream,
                issuer = op.issuer(),
                secret = op.client_secret(),
                // `@OP_ISSUER@` stands for the DevProvider's issuer (known
                // only once it runs), e.g. for an explicit `jwks_uri`.
                provider = opts.provider.replace("@OP_ISSUER@", op.issuer()),
                session_secret = random_base64(32),
                session = opts.session,
                bearer = opts.bearer,
                headers = opts.headers,
                routes = opts.routes,
            );
            let parsed = GatewayConfig::from_toml_str(&config, &ProcessEnv)
                .unwrap_or_else(|e| panic!("harness config invalid: {e}\n{config}"));
            let gw = match RunningGateway::start(parsed).await {
                Ok(gw) => gw,
                Err(StartError::Bind { .. }) if attempt < 5 => continue,
                Err(e) => panic!("gateway did not start: {e}\n{config}"),
            };
            let h = Harness {
                base: public_url,
                admin: format!("http://{}", gw.admin_addr()),
                ca: (opts.tls || opts.provider_tls).then(ca_pem),
                cookie: if opts.tls { COOKIE_HTTPS } else { COOKIE_HTTP },
                op,
                echo,
                gw,
                config,
            };
            if opts.wait_ready {
                h.wait_ready(Duration::from_secs(10)).await;
            }
            return h;
        }
    }

    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.gw.is_ready() {
            assert!(
                Instant::now() < deadline,
                "gateway not ready after {timeout:?}\n{}",
                self.config
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.admin)
    }

    /// A scripted browser (cookie jar, no redirects) trusting the harness CA.
    pub fn browser(&self) -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
        browser(self.ca.as_deref())
    }

    /// A client without cookies or redirects, trusting the harness CA.
    pub fn api(&self) -> reqwest::Client {
        api_client(self.ca.as_deref())
    }

    /// `GET /metrics` on the admin listener.
    pub async fn metrics(&self) -> String {
        let resp = api_client(None)
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(resp.status(), 200);
        resp.text().await.expect("metrics body")
    }

    /// The value of one `oidc_gateway_auth_outcomes_total` series (0 when absent).
    pub async fn auth_outcome(&self, outcome: &str) -> u64 {
        let needle = format!("oidc_gateway_auth_outcomes_total{{outcome=\"{outcome}\"}} ");
        self.metrics()
            .await
            .lines()
            .find_map(|l| {
                l.strip_prefix(&needle)
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0)
    }

    /// GET `path` as a browser navigation (Accept: text/html).
    pub async fn navigate(&self, client: &reqwest::Client, path: &str) -> Resp {
        Resp::of(
            client
                .get(self.url(path))
                .header(reqwest::header::ACCEPT, "text/html,application/xhtml+xml")
                .send()
                .await
                .expect("navigate"),
        )
        .await
    }

    /// Drives the browser flow from `GET path` (navigation) to the gateway's
    /// answer to the callback: gateway → 302 provider → auto-login 302 →
    /// callback. Panics when the first two steps are not redirects.
    pub async fn login_flow(&self, client: &reqwest::Client, path: &str) -> Flow {
        let start = self.navigate(client, path).await;
        assert_eq!(start.status, 302, "navigation to {path}: {start:?}");
        let authorize = start.location().expect("Location to the provider");
        assert!(
            authorize.as_str().starts_with(self.op.issuer()),
            "redirect goes to the provider: {authorize}"
        );
        let callback_url = self.authorize(client, &authorize).await;
        let callback = Resp::of(
            client
                .get(callback_url.clone())
                .send()
                .await
                .expect("callback"),
        )
        .await;
        Flow {
            start,
            authorize,
            callback_url,
            callback,
        }
    }

    /// Follows the provider's authorization URL (auto-login) and returns
    /// the redirect back to the gateway's callback.
    pub async fn authorize(&self, client: &reqwest::Client, authorize: &url::Url) -> url::Url {
        let at_op = Resp::of(
            client
                .get(authorize.clone())
                .send()
                .await
                .expect("provider authorize"),
        )
        .await;
        assert_eq!(at_op.status, 302, "provider authorize: {at_op:?}");
        let callback = at_op.location().expect("Location back to the gateway");
        assert!(
            callback.as_str().starts_with(&self.url("/oauth2/callback")),
            "provider redirects to the callback: {callback}"
        );
        callback
    }

    /// A complete, successful login returning to `path`; returns the session
    /// cookie value.
    pub async fn login(&self, client: &reqwest::Client, path: &str) -> String {
        let flow = self.login_flow(client, path).await;
        assert_eq!(flow.callback.status, 302, "callback: {:?}", flow.callback);
        flow.callback
            .cookie(self.cookie)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| panic!("no session cookie: {:?}", flow.callback))
    }

    /// What the echo upstream saw last.
    pub fn last_upstream(&self) -> serde_json::Value {
        self.echo.last_request().expect("upstream saw a request")
    }
}

/// The steps of one browser login.
#[derive(Debug)]
pub struct Flow {
    pub start: Resp,
    pub authorize: url::Url,
    pub callback_url: url::Url,
    pub callback: Resp,
}

/// A response read to the end.
pub struct Resp {
    pub status: u16,
    pub url: url::Url,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body: String = self.body.chars().take(600).collect();
        f.debug_struct("Resp")
            .field("status", &self.status)
            .field("url", &self.url.as_str())
            .field("headers", &self.headers)
            .field("body", &body)
            .finish()
    }
}

impl Resp {
    pub async fn of(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let url = resp.url().clone();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Self {
            status,
            url,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Location`, resolved against the request URL.
    pub fn location(&self) -> Option<url::Url> {
        self.url.join(self.header("location")?).ok()
    }

    /// Every `Set-Cookie` line.
    pub fn set_cookie_lines(&self) -> Vec<&str> {
        self.headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The full `Set-Cookie` line for cookie `name`, if set.
    pub fn cookie_line(&self, name: &str) -> Option<&str> {
        self.set_cookie_lines()
            .into_iter()
            .find(|line| line.split_once('=').is_some_and(|(n, _)| n.trim() == name))
    }

    /// The value `Set-Cookie` gives cookie `name`, if set.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let line = self.cookie_line(name)?;
        let pair = line.split(';').next()?;
        Some(pair.split_once('=')?.1.trim().to_owned())
    }

    /// Whether the response sets a non-empty session cookie `name`.
    pub fn sets_session(&self, name: &str) -> bool {
        self.cookie(name).is_some_and(|v| !v.is_empty())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

/// The claims of a JWT (unverified).
pub fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Sends `head` (request line and headers, CRLF-separated, without the
/// final blank line) over a fresh plain TCP connection with
/// `Connection: close`, and returns the status code and the whole response.
pub async fn raw_http(addr: SocketAddr, head: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("{head}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("response within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    (status, text)
}
