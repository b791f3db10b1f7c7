//! The nginx `auth_request` example (deploy/nginx/oidc-gateway.conf), run
//! by a real nginx in front of the gateway binary: a browser logs in through
//! nginx and the application gets the identity headers.
//!
//! Needs nginx (Debian: `apt-get install nginx`; scripts/test.sh installs
//! it): without it the test fails saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::ACCEPT;
use support::*;

fn nginx_bin() -> PathBuf {
    for candidate in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(candidate).is_file() {
            return candidate.into();
        }
    }
    if let Ok(out) = Command::new("sh").args(["-c", "command -v nginx"]).output() {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !path.is_empty() {
            return path.into();
        }
    }
    panic!(
        "nginx is not installed: the forward-auth example needs it \
         (Debian/Ubuntu: `apt-get install -y nginx`; scripts/test.sh installs it)"
    );
}

/// A running nginx, stopped on drop.
struct Nginx {
    child: Child,
    dir: TempDir,
}

impl Nginx {
    /// Runs the example server block with its placeholders filled in.
    async fn start(listen: SocketAddr, gateway: SocketAddr, app: SocketAddr) -> Nginx {
        let bin = nginx_bin();
        let dir = TempDir::new("nginx");
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/oidc-gateway.conf"),
        )
        .unwrap();
        let server = example
            .replace("${LISTEN}", &listen.to_string())
            .replace("${GATEWAY}", &gateway.to_string())
            .replace("${APP}", &app.to_string());
        assert!(!server.contains("${"), "unfilled placeholder:\n{server}");
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("server.conf"), server).unwrap();
        let main = format!(
            r#"
master_process off;  # one process: the kill on drop leaves no orphaned worker
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/server.conf;
}}
"#
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(listen).await.is_err() {
            if let Some(status) = nginx.child.try_wait().unwrap() {
                panic!("nginx exited ({status})\n{}", nginx.logs());
            }
            assert!(
                Instant::now() < deadline,
                "nginx not listening\n{}",
                nginx.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }

    fn logs(&self) -> String {
        format!(
            "--- nginx stderr ---\n{}\n--- nginx error.log ---\n{}",
            tail_of(&self.dir.path().join("stderr.log"), 4096),
            tail_of(&self.dir.path().join("error.log"), 8192)
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_logs_in_through_nginx_auth_request_and_app_gets_identity() {
    let op = dev_provider().await;
    // The application behind nginx (the gateway does not proxy to it).
    let app = echo_upstream().await;
    let (nginx_port, gw_port, admin_port) = (free_port(), free_port(), free_port());
    let origin = format!("http://127.0.0.1:{nginx_port}");
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{gw_port}"
public_url = "{origin}"

[admin]
listen = "127.0.0.1:{admin_port}"

[upstream]
url = "http://127.0.0.1:9"

[provider]
issuer = "{issuer}"
client_id = "gateway"
client_secret = "{secret}"

[session]
secret = "{session_secret}"
"#,
        issuer = op.issuer(),
        secret = op.client_secret(),
        session_secret = random_base64(32),
    );
    let gw = GatewayProcess::start(
        &config,
        &format!("http://127.0.0.1:{gw_port}"),
        &format!("http://127.0.0.1:{admin_port}"),
    )
    .await;
    let nginx = Nginx::start(
        SocketAddr::from(([127, 0, 0, 1], nginx_port)),
        SocketAddr::from(([127, 0, 0, 1], gw_port)),
        app.addr(),
    )
    .await;
    let (browser, _jar) = browser(None);
    let get = |url: String| {
        let browser = browser.clone();
        async move {
            browser
                .get(url)
                .header(ACCEPT, "text/html")
                .header("X-Auth-Request-User", "mallory")
                .send()
                .await
                .expect("request through nginx")
        }
    };

    // Not signed in: nginx sends the browser to the gateway's login start.
    let first = get(format!("{origin}/app/page")).await;
    assert_eq!(first.status(), 302, "{}\n{}", nginx.logs(), gw.logs());
    let start = location(&first).unwrap();
    assert_eq!(
        start.as_str(),
        format!("{origin}/oauth2/start?rd=/app/page")
    );
    assert_eq!(
        app.request_count(),
        0,
        "the app was reached unauthenticated"
    );
    // /oauth2/start (through nginx) → provider (auto-login) → callback
    // (through nginx) → back to the page.
    let to_op = get(start.to_string()).await;
    assert_eq!(to_op.status(), 302);
    let authorize = location(&to_op).unwrap();
    assert!(authorize.as_str().starts_with(op.issuer()), "{authorize}");
    let back = get(authorize.to_string()).await;
    let callback = location(&back).unwrap();
    assert!(
        callback
            .as_str()
            .starts_with(&format!("{origin}/oauth2/callback")),
        "{callback}"
    );
    let done = get(callback.to_string()).await;
    assert_eq!(done.status(), 302, "{}", gw.logs());
    assert_eq!(done.headers()["location"], "/app/page");

    // Signed in: the app gets the gateway's identity, not the client's.
    let page = get(format!("{origin}/app/page")).await;
    assert_eq!(page.status(), 200, "{}\n{}", nginx.logs(), gw.logs());
    let seen = app.last_request().unwrap();
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice", "{seen}");
    assert_eq!(seen["path"], "/app/page", "{seen}");

    // Without the cookie again: a client's own identity header gets nowhere.
    let api = api_client(None);
    let resp = api
        .get(format!("{origin}/app/page"))
        .header("X-Auth-Request-User", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(app.request_count(), 1);
}
