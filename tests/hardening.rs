//! Hardening against hostile HTTP input (issue 11, items 1–4), over real
//! loopback sockets: `server::serve` → `ReverseProxy` → an in-test upstream,
//! plus the assembled gateway where authentication must come first.
//!
//! - upgrades: only WebSocket is forwarded and tunnelled; `h2c` and other
//!   tokens are stripped; `HTTP2-Settings` never leaves the gateway; a `101`
//!   the gateway did not ask for is a `502`; tunnels have an idle timeout and
//!   are part of the shutdown drain;
//! - header names with `_` are dropped (or refused, or allowed) before
//!   anything else sees them;
//! - `Host` / `:authority` rules of RFC 9112 §3.2 and RFC 9113 §8.3.1;
//! - malformed chunked request bodies: `400` and an aborted upstream request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use oidc_gateway::body::{self, ResponseBody};
use oidc_gateway::proxy::{headers, ProxyOptions, ReverseProxy};
use oidc_gateway::server::{self, ServeOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tower::ServiceExt;

// === support ===

/// Counts upgrade requests that reached the upstream, per upstream.
#[derive(Clone, Default)]
struct Seen {
    upgrades: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

/// The in-test upstream: `/headers` echoes the request head as JSON; any
/// request carrying `Upgrade` is answered `101` with the same `Upgrade`
/// value (an upstream that would happily switch to `h2c`), except
/// `/ws-as-h2c`, which answers a WebSocket upgrade by switching to `h2c`.
/// After a `101` the upstream writes `hello` and echoes `echo:<bytes>`.
async fn upstream_app(
    seen: Seen,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(upgrade) = req.headers().get("upgrade").cloned() {
        seen.upgrades.fetch_add(1, Ordering::SeqCst);
        let protocol = if req.uri().path() == "/ws-as-h2c" {
            http::HeaderValue::from_static("h2c")
        } else {
            upgrade
        };
        let mut req = req;
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut io = TokioIo::new(upgraded);
            if io.write_all(b"hello").await.is_err() {
                return;
            }
            let mut buf = [0u8; 1024];
            loop {
                let n = match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                if io.write_all(&reply).await.is_err() {
                    break;
                }
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", protocol)
            .body(body::empty())
            .unwrap());
    }
    let resp = match req.uri().path() {
        "/switch" => Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(body::empty())
            .unwrap(),
        _ => {
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (name, value) in req.headers() {
                headers
                    .entry(name.as_str().to_owned())
                    .or_default()
                    .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
            }
            let json = serde_json::json!({
                "method": req.method().as_str(),
                "uri": req.uri().to_string(),
                "headers": headers,
            });
            Response::new(body::full(json.to_string()))
        }
    };
    Ok(resp)
}

async fn spawn_upstream() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| upstream_app(s.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, seen)
}

/// `serve` + `sanitize_request` + `ReverseProxy` on 127.0.0.1:0.
struct Gateway {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    _handle: JoinHandle<io::Result<()>>,
}

impl Gateway {
    async fn start(
        upstream: SocketAddr,
        proxy: impl FnOnce(&mut ProxyOptions),
        serve: impl FnOnce(&mut ServeOptions),
    ) -> Gateway {
        let mut proxy_opts = ProxyOptions::new(format!("http://{upstream}").parse().unwrap());
        proxy_opts.timeout = Duration::from_secs(5);
        proxy_opts.connect_timeout = Duration::from_secs(2);
        proxy(&mut proxy_opts);
        let mut serve_opts = ServeOptions {
            header_read_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
            ..ServeOptions::default()
        };
        serve(&mut serve_opts);
        let proxy = ReverseProxy::try_new(proxy_opts, None).unwrap();
        let svc = tower::service_fn(move |mut req: Request<Incoming>| {
            headers::sanitize_request(&mut req);
            proxy.clone().oneshot(req)
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::serve(listener, None, svc, serve_opts, async {
            let _ = rx.await;
        }));
        Gateway {
            addr,
            shutdown: Some(tx),
            _handle: handle,
        }
    }

    async fn plain(upstream: SocketAddr) -> Gateway {
        Gateway::start(upstream, |_| {}, |_| {}).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Writes `request` (complete, as bytes) on a fresh connection and reads
/// the response head.
async fn send_raw(addr: SocketAddr, request: &[u8]) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let head = read_head(&mut stream).await;
    (stream, head)
}

/// Reads from `stream` until the end of a response head.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.unwrap();
            assert!(
                n > 0,
                "eof in response head: {}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
    });
    read.await.expect("response head within 10 s");
    String::from_utf8(head).unwrap()
}

/// Status code of a response head.
fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Reads a response (head + `Content-Length` body) and returns the
/// status and the body as JSON (or `Null`).
async fn read_response(stream: &mut TcpStream) -> (u16, Value) {
    let head = read_head(stream).await;
    let len = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.unwrap();
    (
        status_of(&head),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// One request with `Connection: close`; the status and the upstream's
/// echo (JSON) when there is one.
async fn exchange(addr: SocketAddr, request: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut stream).await
}

/// The connection is closed by the peer (EOF or reset) within `within`.
async fn assert_closed(stream: &mut TcpStream, within: Duration) {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "connection still open after {within:?}");
}

fn has_header(seen: &Value, name: &str) -> bool {
    seen["headers"].get(name).is_some()
}

const WS_UPGRADE: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

// === 1. upgrades ===

#[tokio::test]
async fn upgrade_h2c_is_stripped_and_forwarded_as_a_plain_request() {
    let (up, seen) = spawn_upstream().await;
    let gw = Gateway::plain(up).await;
    let (status, echo) = exchange(
        gw.addr,
        "GET /headers HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    assert!(!has_header(&echo, "upgrade"), "{echo}");
    assert!(!has_header(&echo, "http2-settings"), "{echo}");
    assert_eq!(seen.upgrades.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn upgrade_unknown_token_is_stripped() {
    let (up, seen) = spawn_upstream().await;
    let gw = Gateway::plain(up).await;
    for token in ["foo/1", "h2c", "HTTP/2.0", "websocketx", "TLS/1.2"] {
        let (status, echo) = exchange(
            gw.addr,
            &format!(
                "GET /headers HTTP/1.1\r\nHost: app.test\r\nConnection: upgrade, close\r\nUpgrade: {token}\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status, 200, "{token}: {echo}");
        assert!(!has_header(&echo, "upgrade"), "{token}: {echo}");
    }
    assert_eq!(seen.upgrades.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn upgrade_websocket_on_post_or_http10_is_stripped() {
    let (up, seen) = spawn_upstream().await;
    let gw = Gateway::plain(up).await;
    let (status, _) = exchange(
        gw.addr,
        &format!(
            "POST /headers HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n{WS_UPGRADE}\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = exchange(
        gw.addr,
        &format!("GET /headers HTTP/1.0\r\nHost: app.test\r\n{WS_UPGRADE}\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(seen.upgrades.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn http2_settings_header_is_never_forwarded() {
    let (up, _) = spawn_upstream().await;
    let gw = Gateway::plain(up).await;
    // Not named in Connection: still connection-specific (RFC 9113 §3.2.1 of RFC 7540).
    let (status, echo) = exchange(
        gw.addr,
        "GET /headers HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\
         HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    assert!(!has_header(&echo, "http2-settings"), "{echo}");
}

#[tokio::test]
async fn upgrade_websocket_is_tunnelled() {
    let (up, seen) = spawn_upstream().await;
    let gw = Gateway::plain(up).await;
    let (mut stream, head) = send_raw(
        gw.addr,
        format!("GET /ws HTTP/1.1\r\nHost: app.test\r\n{WS_UPGRADE}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&head), 101, "{head}");
    let mut buf = [0u8; 9];
    stream.read_exact(&mut buf[..5]).await.unwrap();
    assert_eq!(&buf[..5], b"hello");
    stream.write_all(b"ping").await.unwrap();
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"echo:ping");
    assert_eq!(seen.upgrades.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn tunnel_idle_timeout_closes_a_silent_tunnel_only() {
    let (up, _) = spawn_upstream().await;
    let gw = Gateway::start(
        up,
        |o| o.tunnel_idle_timeout = Duration::from_millis(400),
        |_| {},
    )
    .await;
    let (mut stream, head) = send_raw(
        gw.addr,
        format!("GET /ws HTTP/1.1\r\nHost: app.test\r\n{WS_UPGRADE}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&head), 101, "{head}");
    let mut buf = [0u8; 9];
    stream.read_exact(&mut buf[..5]).await.unwrap();
    // Traffic every 150 ms keeps it open well past the idle timeout...
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        stream.write_all(b"ping").await.unwrap();
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"echo:ping");
    }
    // ...silence closes it.
    let started = std::time::Instant::now();
    assert_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn upgrade_list_with_websocket_forwards_only_websocket() {
    let (up, _) = spawn_upstream().await;
    let gw = Gateway::plain(up).await;
    let (_stream, head) = send_raw(
        gw.addr,
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: h2c, WebSocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    // The upstream echoes the Upgrade value it received.
    assert_eq!(status_of(&head), 101, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nupgrade: websocket\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn upstream_switching_to_another_protocol_is_502_not_a_tunnel() {
    let (up, _) = spawn_upstream().await;
    let gw = Gateway::plain(up).await;
    let (mut stream, head) = send_raw(
        gw.addr,
        format!("GET /ws-as-h2c HTTP/1.1\r\nHost: app.test\r\n{WS_UPGRADE}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&head), 502, "{head}");
    // Whatever follows on this connection is HTTP parsed by the gateway,
    // never bytes passed to the upstream.
    stream
        .write_all(b"GET /headers HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains("echo:"), "{rest}");
}

#[tokio::test]
async fn upstream_101_without_an_upgrade_request_is_502() {
    let (up, _) = spawn_upstream().await;
    let gw = Gateway::plain(up).await;
    let (status, _) = exchange(
        gw.addr,
        "GET /switch HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 502);
}

// === 2. header names with underscores ===

const UNDERSCORED: &str = "Transfer_Encoding: chunked\r\nContent_Length: 5\r\n\
    X_Auth_Request_User: mallory\r\nX_Custom: 1\r\n";

#[tokio::test]
async fn underscore_headers_are_dropped_by_default() {
    let (up, _) = spawn_upstream().await;
    let gw = Gateway::plain(up).await;
    let (status, echo) = exchange(
        gw.addr,
        &format!("GET /headers HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n{UNDERSCORED}X-Kept: 1\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    for name in [
        "transfer_encoding",
        "content_length",
        "x_auth_request_user",
        "x_custom",
    ] {
        assert!(!has_header(&echo, name), "{name}: {echo}");
    }
    assert!(has_header(&echo, "x-kept"), "{echo}");
}

#[tokio::test]
async fn underscore_headers_reject_is_400() {
    let (up, seen) = spawn_upstream().await;
    let gw = Gateway::start(
        up,
        |_| {},
        |s| s.headers_with_underscores = server::HeadersWithUnderscores::Reject,
    )
    .await;
    let (status, _) = exchange(
        gw.addr,
        "GET /headers HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nX_Custom: 1\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn underscore_headers_allow_forwards_them() {
    let (up, _) = spawn_upstream().await;
    let gw = Gateway::start(
        up,
        |_| {},
        |s| s.headers_with_underscores = server::HeadersWithUnderscores::Allow,
    )
    .await;
    let (status, echo) = exchange(
        gw.addr,
        "GET /headers HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nX_Custom: 1\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(has_header(&echo, "x_custom"), "{echo}");
}

#[tokio::test]
async fn gateway_underscore_allow_still_strips_identity_lookalikes() {
    let h = support::Harness::with(support::Options {
        server: "headers_with_underscores = \"allow\"\n".into(),
        ..support::Options::default()
    })
    .await;
    let (status, _) = exchange(
        h.gw.main_addr(),
        &format!(
            "GET /public/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{UNDERSCORED}\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200);
    let seen = h.last_upstream();
    let text = seen.to_string().to_ascii_lowercase();
    assert!(!text.contains("mallory"), "{seen}");
    assert!(text.contains("x_custom"), "{seen}");
}

#[tokio::test]
async fn gateway_underscore_headers_dropped_by_default() {
    let h = support::Harness::start().await;
    let (status, _) = exchange(
        h.gw.main_addr(),
        &format!(
            "GET /public/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{UNDERSCORED}\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200);
    let text = h.last_upstream().to_string().to_ascii_lowercase();
    for name in ["transfer_encoding", "content_length", "x_custom", "mallory"] {
        assert!(!text.contains(name), "{name}: {text}");
    }
}

// === 3. Host and :authority ===

#[tokio::test]
async fn host_rules_bad_requests_are_400() {
    let (up, seen) = spawn_upstream().await;
    let gw = Gateway::plain(up).await;
    let cases = [
        ("no host", "GET /headers HTTP/1.1\r\n"),
        (
            "two hosts",
            "GET /headers HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n",
        ),
        (
            "two hosts differ",
            "GET /headers HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n",
        ),
        ("userinfo", "GET /headers HTTP/1.1\r\nHost: user@a.test\r\n"),
        (
            "userinfo+port",
            "GET /headers HTTP/1.1\r\nHost: user:pw@a.test:80\r\n",
        ),
        ("path", "GET /headers HTTP/1.1\r\nHost: a.test/x\r\n"),
        ("query", "GET /headers HTTP/1.1\r\nHost: a.test?x\r\n"),
        ("empty", "GET /headers HTTP/1.1\r\nHost: \r\n"),
        ("bad port", "GET /headers HTTP/1.1\r\nHost: a.test:x\r\n"),
        (
            "absolute-form differs",
            "GET http://b.test/headers HTTP/1.1\r\nHost: a.test\r\n",
        ),
        (
            "absolute-form userinfo",
            "GET http://u@a.test/headers HTTP/1.1\r\nHost: a.test\r\n",
        ),
        (
            "absolute-form without host",
            "GET http://a.test/headers HTTP/1.1\r\n",
        ),
    ];
    for (what, head) in cases {
        let (status, body) = exchange(gw.addr, &format!("{head}Connection: close\r\n\r\n")).await;
        assert_eq!(status, 400, "{what}: {body}");
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn host_rules_good_requests_pass() {
    let (up, _) = spawn_upstream().await;
    let gw = Gateway::plain(up).await;
    let cases = [
        ("plain", "GET /headers HTTP/1.1\r\nHost: a.test\r\n"),
        ("port", "GET /headers HTTP/1.1\r\nHost: a.test:8443\r\n"),
        ("ipv6", "GET /headers HTTP/1.1\r\nHost: [::1]:8080\r\n"),
        ("http/1.0 without host", "GET /headers HTTP/1.0\r\n"),
        (
            "absolute-form, same host other case",
            "GET http://A.Test/headers HTTP/1.1\r\nHost: a.test\r\n",
        ),
        (
            "absolute-form, default port spelled out",
            "GET http://a.test:80/headers HTTP/1.1\r\nHost: a.test\r\n",
        ),
    ];
    for (what, head) in cases {
        let (status, body) = exchange(gw.addr, &format!("{head}Connection: close\r\n\r\n")).await;
        assert_eq!(status, 200, "{what}: {body}");
    }
}

/// Sends one HTTP/2 (prior knowledge) request with hyper's client.
async fn h2_request(
    addr: SocketAddr,
    req: Request<Empty<Bytes>>,
) -> Result<StatusCode, hyper::Error> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    Ok(status)
}

#[tokio::test]
async fn http2_authority_with_userinfo_or_other_host_is_400() {
    let (up, seen) = spawn_upstream().await;
    let gw = Gateway::plain(up).await;
    let port = gw.addr.port();
    let ok = Request::get(format!("http://a.test:{port}/headers"))
        .body(Empty::new())
        .unwrap();
    assert_eq!(h2_request(gw.addr, ok).await.unwrap(), StatusCode::OK);
    let userinfo = Request::get(format!("http://user@a.test:{port}/headers"))
        .body(Empty::new())
        .unwrap();
    assert_eq!(
        h2_request(gw.addr, userinfo).await.unwrap(),
        StatusCode::BAD_REQUEST
    );
    let other_host = Request::get(format!("http://a.test:{port}/headers"))
        .header("host", "b.test")
        .body(Empty::new())
        .unwrap();
    assert_eq!(
        h2_request(gw.addr, other_host).await.unwrap(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

// === 4. malformed chunked request bodies ===

/// What a raw upstream received for one request: the bytes, and whether
/// the connection ended (EOF or reset) before a terminating chunk.
#[derive(Debug)]
struct Received {
    bytes: Vec<u8>,
    terminated: bool,
}

/// A raw HTTP/1.1 upstream that reads one chunked request until its
/// terminating chunk or the end of the connection, reports it, and answers
/// only a complete request.
async fn spawn_chunk_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                let mut buf = [0u8; 4096];
                let terminated = loop {
                    if bytes.windows(5).any(|w| w == b"0\r\n\r\n") {
                        break true;
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break false,
                        Ok(n) => bytes.extend_from_slice(&buf[..n]),
                    }
                };
                if terminated {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                }
                let _ = tx.send(Received { bytes, terminated });
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn malformed_chunked_body_is_400_and_the_upstream_sees_an_aborted_request() {
    let (up, mut received) = spawn_chunk_upstream().await;
    let gw = Gateway::plain(up).await;
    let bad_bodies: [&[u8]; 4] = [
        b"5\r\nhello\r\nzz\r\n",                    // chunk size not hex
        b"5\r\nhello\r\n5\r\nworldXX",              // no CRLF after the data
        b"5\r\nhello\r\nffffffffffffffffff\r\n",    // chunk size overflows
        b"5\r\nhello\r\n3\x00\r\nabc\r\n0\r\n\r\n", // NUL in the size line
    ];
    for bad in bad_bodies {
        let mut request =
            b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        request.extend_from_slice(bad);
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream.write_all(&request).await.unwrap();
        let head = read_head(&mut stream).await;
        let what = String::from_utf8_lossy(bad);
        assert_eq!(status_of(&head), 400, "{what:?}: {head}");
        let got = tokio::time::timeout(Duration::from_secs(5), received.recv())
            .await
            .expect("upstream report")
            .unwrap();
        assert!(
            !got.terminated,
            "{what:?}: the upstream saw a complete request: {:?}",
            String::from_utf8_lossy(&got.bytes)
        );
    }
}

#[tokio::test]
async fn wellformed_chunked_body_still_reaches_the_upstream_complete() {
    let (up, mut received) = spawn_chunk_upstream().await;
    let gw = Gateway::plain(up).await;
    let (status, _) = exchange(
        gw.addr,
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let got = received.recv().await.unwrap();
    assert!(got.terminated);
}

// === the assembled gateway: authentication comes before any upgrade ===

#[tokio::test]
async fn gateway_websocket_upgrade_requires_authentication_and_route_policy() {
    let (up, seen) = spawn_upstream().await;
    let h = support::Harness::with(support::Options {
        upstream_url: Some(format!("http://{up}")),
        routes: "[[route]]\npath = \"/admins/\"\nallowed_groups = [\"admins\"]\n".into(),
        ..support::Options::default()
    })
    .await;
    let addr = h.gw.main_addr();
    // No session: 401, nothing reaches the upstream, no tunnel.
    let (mut stream, head) = send_raw(
        addr,
        format!("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n{WS_UPGRADE}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&head), 401, "{head}");
    drop(stream);
    assert_eq!(seen.upgrades.load(Ordering::SeqCst), 0);

    let (client, _) = h.browser();
    let cookie = h.login(&client, "/").await;
    let cookie = format!("Cookie: {}={cookie}\r\n", h.cookie);
    // Logged in, but the route wants a group alice is not in: 403.
    let (_s, head) = send_raw(
        addr,
        format!("GET /admins/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}{WS_UPGRADE}\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&head), 403, "{head}");
    assert_eq!(seen.upgrades.load(Ordering::SeqCst), 0);

    // Allowed: tunnelled.
    (stream, _) = send_raw(
        addr,
        format!("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}{WS_UPGRADE}\r\n").as_bytes(),
    )
    .await;
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    assert_eq!(seen.upgrades.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn gateway_shutdown_closes_tunnels_within_the_shutdown_timeout() {
    let (up, _) = spawn_upstream().await;
    let h = support::Harness::with(support::Options {
        upstream_url: Some(format!("http://{up}")),
        routes: "[[route]]\npath = \"/open/\"\nauth = \"none\"\n".into(),
        ..support::Options::default()
    })
    .await;
    let addr = h.gw.main_addr();
    let (mut stream, head) = send_raw(
        addr,
        format!("GET /open/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n{WS_UPGRADE}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&head), 101, "{head}");
    let mut buf = [0u8; 9];
    stream.read_exact(&mut buf[..5]).await.unwrap();

    let support::Harness { gw, op, echo, .. } = h;
    let started = std::time::Instant::now();
    let shutdown = tokio::spawn(gw.shutdown());
    // The tunnel keeps working during the drain...
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(b"ping").await.unwrap();
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"echo:ping");
    // ...and is closed once `shutdown_timeout` (2 s in the harness) is over.
    assert_closed(&mut stream, Duration::from_secs(4)).await;
    tokio::time::timeout(Duration::from_secs(4), shutdown)
        .await
        .expect("shutdown returns")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
    drop((op, echo));
}
