//! Reload of the running binary (CONTRACT.md "Additions": Reload): SIGHUP
//! applies a new gateway.toml to new requests with sessions kept, a bad one
//! is refused with one error line and the old one keeps serving, and a
//! certificate replaced on disk is served without a signal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

fn sighup(gw: &GatewayProcess) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP failed");
}

/// Waits until the gateway's log has `count` lines containing `needle`.
async fn wait_log(gw: &GatewayProcess, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.stderr().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {count}x {needle:?} in the log\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The leaf certificate a new TLS connection to `addr` is given.
async fn served_leaf(addr: SocketAddr) -> Vec<u8> {
    let config = oidc_gateway::server::tls::client_config(Some(&certs_dir().join("ca.pem")))
        .expect("client config");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("tls handshake");
    tls.get_ref().1.peer_certificates().expect("peer certs")[0].to_vec()
}

fn leaf_of(path: &Path) -> Vec<u8> {
    oidc_gateway::server::tls::load_certs(path).unwrap()[0].to_vec()
}

/// Replaces `dst` atomically with a copy of `src` (write, then rename).
fn replace_file(src: &Path, dst: &Path) {
    let tmp = dst.with_extension("tmp");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

/// Follows redirects by hand (the auto-login provider answers at once)
/// until a non-redirect answer.
async fn follow(client: &reqwest::Client, url: &str) -> reqwest::Response {
    let mut url = url::Url::parse(url).unwrap();
    for _ in 0..10 {
        let resp = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "text/html")
            .send()
            .await
            .expect("request");
        match location(&resp) {
            Some(next) if resp.status().is_redirection() => url = next,
            _ => return resp,
        }
    }
    panic!("too many redirects from {url}");
}

/// What every version of the test's gateway.toml shares.
struct Setup<'a> {
    port: u16,
    admin: u16,
    dir: &'a Path,
    op: &'a DevProvider,
    echo: &'a DevEcho,
    secret: &'a str,
}

fn config(setup: &Setup<'_>, extra_headers: &str, extra_routes: &str) -> String {
    let Setup {
        port,
        admin,
        dir,
        op,
        echo,
        secret,
    } = setup;
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "https://localhost:{port}"
tls_cert = "{dir}/tls.crt"
tls_key = "{dir}/tls.key"
shutdown_timeout = "2s"

[admin]
listen = "127.0.0.1:{admin}"

[upstream]
url = "{upstream}"

[provider]
issuer = "{issuer}"
client_id = "gateway"
client_secret = "{client_secret}"

[session]
secret = "{secret}"

[headers]
{extra_headers}

[[route]]
path = "/public/"
auth = "none"
{extra_routes}
"#,
        dir = dir.display(),
        upstream = echo.url(),
        issuer = op.issuer(),
        client_secret = op.client_secret(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_new_config_refuses_bad_one_and_cert_rotates_without_signal() {
    let op = dev_provider().await;
    let echo = echo_upstream().await;
    let certs = TempDir::new("reload-certs");
    let certs_path = certs.path();
    std::fs::copy(certs_dir().join("gateway.crt"), certs_path.join("tls.crt")).unwrap();
    std::fs::copy(certs_dir().join("gateway.key"), certs_path.join("tls.key")).unwrap();
    let (port, admin) = (free_port(), free_port());
    let secret = random_base64(32);
    let write = |gw: &GatewayProcess, text: &str| {
        std::fs::write(gw.dir().join("gateway.toml"), text).unwrap();
    };
    let setup = Setup {
        port,
        admin,
        dir: certs_path,
        op: &op,
        echo: &echo,
        secret: &secret,
    };
    let first = config(&setup, "", "");
    let gw = GatewayProcess::start(
        &first,
        &format!("https://localhost:{port}"),
        &format!("http://127.0.0.1:{admin}"),
    )
    .await;
    let ca = ca_pem();
    let api = api_client(Some(&ca));
    let (browser, _jar) = browser(Some(&ca));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(
        served_leaf(addr).await,
        leaf_of(&certs_dir().join("gateway.crt"))
    );

    // A session made under the first configuration.
    let resp = follow(&browser, &gw.url("/app/")).await;
    assert_eq!(resp.status(), 200, "{}", gw.logs());
    let seen = echo.last_request().unwrap();
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice", "{seen}");
    assert_eq!(
        api.get(gw.url("/open/")).send().await.unwrap().status(),
        401
    );
    // A connection opened before the reload (kept alive across it).
    let kept = api_client(Some(&ca));
    assert_eq!(
        kept.get(gw.url("/public/")).send().await.unwrap().status(),
        200
    );

    // New route, new header name, and a restart-only change.
    let second = config(
        &setup,
        "user = \"X-Reloaded-User\"",
        "[[route]]\npath = \"/open/\"\nauth = \"none\"\n",
    )
    .replace("shutdown_timeout = \"2s\"", "shutdown_timeout = \"3s\"");
    write(&gw, &second);
    sighup(&gw);
    wait_log(&gw, "configuration reloaded", 1).await;
    let log = gw.stderr();
    assert!(
        log.contains("need a restart") && log.contains("server.shutdown_timeout"),
        "{log}"
    );
    assert_eq!(
        api.get(gw.url("/open/x")).send().await.unwrap().status(),
        200
    );
    // The session survived; the new header name applies.
    let resp = browser.get(gw.url("/app/")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", gw.logs());
    let seen = echo.last_request().unwrap();
    assert_eq!(seen["headers"]["x-reloaded-user"], "alice", "{seen}");
    assert!(
        seen["headers"].get("x-auth-request-user").is_none(),
        "{seen}"
    );
    assert_eq!(
        kept.get(gw.url("/public/")).send().await.unwrap().status(),
        200
    );

    // A config `check` refuses: one error line, the running one keeps serving.
    write(
        &gw,
        &second.replace("[upstream]", "[upstream]\nurll = \"x\""),
    );
    sighup(&gw);
    wait_log(&gw, "reload refused", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = gw.stderr();
    assert_eq!(log.matches("reload refused").count(), 1, "{log}");
    let refused_line = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(
        refused_line.contains("ERROR") && refused_line.contains("urll"),
        "{refused_line}"
    );
    assert_eq!(
        api.get(gw.url("/open/x")).send().await.unwrap().status(),
        200
    );
    // An unreadable certificate at SIGHUP: refused too.
    write(
        &gw,
        &second.replace(
            &format!("{}/tls.crt", certs_path.display()),
            "/nonexistent/tls.crt",
        ),
    );
    sighup(&gw);
    wait_log(&gw, "reload refused", 2).await;
    assert!(gw.stderr().contains("/nonexistent/tls.crt"));
    assert_eq!(
        api.get(gw.url("/open/x")).send().await.unwrap().status(),
        200
    );
    write(&gw, &second);

    // Certificate rotation, no signal.
    replace_file(
        &certs_dir().join("gateway-ec.key"),
        &certs_path.join("tls.key"),
    );
    replace_file(
        &certs_dir().join("gateway-ec.crt"),
        &certs_path.join("tls.crt"),
    );
    let want = leaf_of(&certs_dir().join("gateway-ec.crt"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while served_leaf(addr).await != want {
        assert!(
            Instant::now() < deadline,
            "rotated certificate not served\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_log(&gw, "tls certificate reloaded", 1).await;
    let metrics = api
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("oidc_gateway_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("oidc_gateway_config_reloads_total{result=\"error\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("oidc_gateway_tls_reloads_total{result=\"ok\"}"),
        "{metrics}"
    );
}
