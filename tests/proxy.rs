//! End-to-end tests of the HTTP plumbing: `server::serve` in front of
//! `ReverseProxy` in front of an in-test hyper upstream, all on 127.0.0.1:0,
//! over plain HTTP and TLS (HTTP/1.1 and HTTP/2 via ALPN).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use oidc_gateway::body::{self, ResponseBody};
use oidc_gateway::proxy::{headers, ProxyOptions, ReverseProxy};
use oidc_gateway::server::{self, tls, ServeOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;

// === support ===

fn certs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("certs")
}

/// Requests to `/slow` that reached the upstream (only one test uses it).
static SLOW_STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The in-test upstream application.
async fn upstream_app(req: Request<Incoming>) -> Result<Response<ResponseBody>, Infallible> {
    let resp = match req.uri().path() {
        "/headers" => {
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
                "version": format!("{:?}", req.version()),
                "headers": headers,
            });
            Response::new(body::full(json.to_string()))
        }
        "/echo" => Response::new(body::boxed(req.into_body())),
        "/slow" => {
            SLOW_STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(800)).await;
            Response::new(body::full("slow done"))
        }
        "/hang" => std::future::pending().await,
        "/hop" => Response::builder()
            .header("connection", "x-resp-secret")
            .header("x-resp-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("x-kept", "1")
            .body(body::full("hop"))
            .unwrap(),
        "/ws"
            if req
                .headers()
                .get("upgrade")
                .is_some_and(|v| v == "websocket") =>
        {
            let mut req = req;
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(on_upgrade.await.unwrap());
                io.write_all(b"hello").await.unwrap();
                let mut buf = [0u8; 1024];
                loop {
                    let n = io.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    let mut reply = b"echo:".to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    io.write_all(&reply).await.unwrap();
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(body::empty())
                .unwrap()
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(body::empty())
            .unwrap(),
    };
    Ok(resp)
}

async fn spawn_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        TokioIo::new(stream),
                        hyper::service::service_fn(upstream_app),
                    )
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// A running gateway: `serve` + `sanitize_request` + `ReverseProxy`.
struct Gateway {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<io::Result<()>>,
}

impl Gateway {
    async fn start(
        upstream: SocketAddr,
        tls: bool,
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
        let tls = tls.then(|| {
            tls::load_server_config(&certs().join("gateway.crt"), &certs().join("gateway.key"))
                .unwrap()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::serve(listener, tls, svc, serve_opts, async {
            let _ = rx.await;
        }));
        Gateway {
            addr,
            shutdown: Some(tx),
            handle,
        }
    }

    async fn plain(upstream: SocketAddr) -> Gateway {
        Gateway::start(upstream, false, |_| {}, |_| {}).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn tls_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A client for plain-HTTP URLs (reqwest still wants a TLS config with an
/// explicit provider).
fn http_client() -> reqwest::Client {
    tls_client(&[b"http/1.1"])
}

/// A client trusting `certs/ca.pem`, offering the given ALPN protocols.
fn tls_client(alpn: &[&[u8]]) -> reqwest::Client {
    let mut config = tls::client_config(Some(&certs().join("ca.pem"))).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(config)
        .build()
        .unwrap()
}

/// Sends one request over a fresh HTTP/1.1 connection with hyper's low-level
/// client, which sends headers exactly as given.
async fn raw_h1(addr: SocketAddr, req: Request<Empty<Bytes>>) -> Response<Bytes> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn header<'a>(seen: &'a Value, name: &str) -> Option<&'a str> {
    let values = seen["headers"][name].as_array()?;
    assert_eq!(values.len(), 1, "{name}: {values:?}");
    values[0].as_str()
}

/// Reads from `stream` until the end of a response head.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert!(
            n > 0,
            "eof in response head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
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

fn big_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

// === forwarding ===

#[tokio::test]
async fn proxy_http1_strips_hop_by_hop_and_sets_forwarded_headers() {
    let gw = Gateway::plain(spawn_upstream().await).await;
    let req = Request::get("/headers?a=1&b=%2F")
        .header("host", "app.example.test")
        .header("connection", "keep-alive, X-Drop-Me, x-auth-request-user")
        .header("x-drop-me", "secret")
        .header("x-auth-request-user", "mallory")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("proxy-connection", "keep-alive")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "gopher")
        .header("x-forwarded-host", "evil.example")
        .header("x-kept", "yes")
        .body(Empty::new())
        .unwrap();
    let resp = raw_h1(gw.addr, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = json(resp.body());

    assert_eq!(seen["uri"], "/headers?a=1&b=%2F");
    assert_eq!(seen["version"], "HTTP/1.1");
    for gone in [
        "connection",
        "x-drop-me",
        "x-auth-request-user",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            seen["headers"].get(gone).is_none(),
            "{gone} reached upstream: {seen}"
        );
    }
    assert_eq!(header(&seen, "x-kept"), Some("yes"));
    assert_eq!(header(&seen, "host"), Some("app.example.test"));
    assert_eq!(
        header(&seen, "x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("http"));
    assert_eq!(header(&seen, "x-forwarded-host"), Some("app.example.test"));
}

#[tokio::test]
async fn proxy_without_pass_host_sends_upstream_authority() {
    let upstream = spawn_upstream().await;
    let gw = Gateway::start(
        upstream,
        false,
        |o| {
            o.pass_host_header = false;
            o.public_proto = Some("https");
        },
        |_| {},
    )
    .await;
    let req = Request::get("/headers")
        .header("host", "app.example.test")
        .body(Empty::new())
        .unwrap();
    let seen = json(raw_h1(gw.addr, req).await.body());
    assert_eq!(header(&seen, "host"), Some(upstream.to_string().as_str()));
    assert_eq!(header(&seen, "x-forwarded-host"), Some("app.example.test"));
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("https"));
}

#[tokio::test]
async fn proxy_strips_hop_by_hop_from_responses() {
    let gw = Gateway::plain(spawn_upstream().await).await;
    let resp = raw_h1(
        gw.addr,
        Request::get("/hop")
            .header("host", "x")
            .body(Empty::new())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers().get("x-resp-secret").is_none(),
        "{:?}",
        resp.headers()
    );
    assert!(
        resp.headers().get("keep-alive").is_none(),
        "{:?}",
        resp.headers()
    );
    assert_eq!(resp.headers()["x-kept"], "1");
    assert_eq!(&resp.body()[..], b"hop");
}

#[tokio::test]
async fn proxy_http1_streams_8mib_both_ways() {
    let gw = Gateway::plain(spawn_upstream().await).await;
    let payload = big_body(8 * 1024 * 1024);
    let resp = http_client()
        .post(gw.url("/echo"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let got = resp.bytes().await.unwrap();
    assert_eq!(got.len(), payload.len());
    assert!(got[..] == payload[..], "echoed body differs");
}

#[tokio::test]
async fn proxy_streams_response_before_request_body_ends() {
    // The echo upstream answers as soon as it has the head; the response must
    // reach the client while the request body is still being sent (no buffering).
    let gw = Gateway::plain(spawn_upstream().await).await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(4);
    let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
    let req = Request::post("/echo")
        .header("host", "x")
        .body(body)
        .unwrap();
    let resp_fut = tokio::spawn(async move { sender.send_request(req).await.unwrap() });
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"first "))))
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp_fut)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first ");
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"second"))))
        .await
        .unwrap();
    drop(tx);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "second");
}

/// A `Stream` over an mpsc receiver, without pulling in tokio-stream.
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

// === TLS ===

#[tokio::test]
async fn tls_alpn_h2_is_served_and_forwarded_as_http1() {
    let gw = Gateway::start(spawn_upstream().await, true, |_| {}, |_| {}).await;
    let client = tls_client(&[b"h2", b"http/1.1"]);
    let resp = client
        .get(gw.tls_url("/headers?q=1"))
        .header("cookie", "a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["uri"], "/headers?q=1");
    let authority = format!("localhost:{}", gw.addr.port());
    assert_eq!(header(&seen, "host"), Some(authority.as_str()));
    assert_eq!(header(&seen, "x-forwarded-host"), Some(authority.as_str()));
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&seen, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&seen, "cookie"), Some("a=1"));

    // Large bodies stream over HTTP/2 too.
    let payload = big_body(8 * 1024 * 1024 + 7);
    let resp = client
        .put(gw.tls_url("/echo"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    let got = resp.bytes().await.unwrap();
    assert!(got[..] == payload[..], "echoed body differs");
}

#[tokio::test]
async fn tls_alpn_http1_is_served() {
    let gw = Gateway::start(spawn_upstream().await, true, |_| {}, |_| {}).await;
    let resp = tls_client(&[b"http/1.1"])
        .get(gw.tls_url("/headers"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), Version::HTTP_11);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("https"));
}

#[tokio::test]
async fn tls_failed_handshake_does_not_stop_the_server() {
    let gw = Gateway::start(spawn_upstream().await, true, |_| {}, |_| {}).await;
    // Not TLS at all.
    let mut junk = TcpStream::connect(gw.addr).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_closed(&mut junk, Duration::from_secs(5)).await;
    // A client that does not trust the test CA.
    let untrusting = reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(tls::client_config(None).unwrap())
        .build()
        .unwrap();
    assert!(untrusting.get(gw.tls_url("/headers")).send().await.is_err());
    // Still serving.
    let resp = tls_client(&[b"h2"])
        .get(gw.tls_url("/headers"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

// === upgrades ===

/// Asks the test upstream for a WebSocket upgrade on `stream`; returns the
/// response head, lowercased.
async fn upgrade_ws(stream: &mut TcpStream) -> String {
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    read_head(stream).await.to_ascii_lowercase()
}

#[tokio::test]
async fn proxy_passes_websocket_upgrade_through() {
    let gw = Gateway::plain(spawn_upstream().await).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let head = upgrade_ws(&mut stream).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket\r\n"), "{head}");
    assert!(head.contains("connection: upgrade\r\n"), "{head}");

    let mut buf = [0u8; 64];
    stream.read_exact(&mut buf[..5]).await.unwrap();
    assert_eq!(&buf[..5], b"hello");
    stream.write_all(b"ping").await.unwrap();
    stream.read_exact(&mut buf[..9]).await.unwrap();
    assert_eq!(&buf[..9], b"echo:ping");
}

#[tokio::test]
async fn websocket_upgrade_works_on_a_connection_resumed_after_parking() {
    let gw = Gateway::start(
        spawn_upstream().await,
        false,
        |_| {},
        |s| s.park_idle_after = Some(Duration::from_millis(100)),
    )
    .await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /nothing HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    read_empty_404(&mut stream).await;
    // Idle past the park time: the upgrade comes to a new hyper connection.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let head = upgrade_ws(&mut stream).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let mut buf = [0u8; 64];
    stream.read_exact(&mut buf[..5]).await.unwrap();
    assert_eq!(&buf[..5], b"hello");
    // A tunnel never parks, however long it is quiet.
    tokio::time::sleep(Duration::from_millis(400)).await;
    stream.write_all(b"ping").await.unwrap();
    stream.read_exact(&mut buf[..9]).await.unwrap();
    assert_eq!(&buf[..9], b"echo:ping");
}

#[tokio::test]
async fn proxy_upgrade_refused_by_upstream_is_plain_response() {
    // Upgrade header without the `upgrade` Connection token: not an upgrade,
    // and the Upgrade header does not reach the upstream.
    let gw = Gateway::plain(spawn_upstream().await).await;
    let req = Request::get("/headers")
        .header("host", "x")
        .header("upgrade", "websocket")
        .body(Empty::new())
        .unwrap();
    let resp = raw_h1(gw.addr, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = json(resp.body());
    assert!(seen["headers"].get("upgrade").is_none(), "{seen}");
}

// === upstream failures ===

#[tokio::test]
async fn proxy_closed_port_is_502() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let gw = Gateway::plain(closed).await;
    let resp = http_client().get(gw.url("/anything")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"error":"upstream_unavailable"}"#
    );
}

#[tokio::test]
async fn proxy_silent_upstream_is_504() {
    let gw = Gateway::start(
        spawn_upstream().await,
        false,
        |o| o.timeout = Duration::from_millis(300),
        |_| {},
    )
    .await;
    let started = std::time::Instant::now();
    let resp = http_client().get(gw.url("/hang")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"error":"upstream_timeout"}"#
    );
}

// === server behaviour ===

#[tokio::test]
async fn serve_graceful_shutdown_finishes_in_flight_and_refuses_new() {
    let mut gw = Gateway::plain(spawn_upstream().await).await;
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { http_client().get(url).send().await });
    tokio::time::timeout(Duration::from_secs(5), async {
        while SLOW_STARTED.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("request never reached the upstream");

    gw.shutdown();
    // New connections are refused once the listener is closed.
    let refused = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if TcpStream::connect(gw.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "listener still accepting after shutdown");

    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "slow done");
    tokio::time::timeout(Duration::from_secs(3), &mut gw.handle)
        .await
        .expect("serve did not return after drain")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn serve_drain_timeout_closes_stuck_connections() {
    let mut gw = Gateway::start(
        spawn_upstream().await,
        false,
        |o| o.timeout = Duration::from_secs(30),
        |s| s.drain_timeout = Duration::from_millis(300),
    )
    .await;
    let url = gw.url("/hang");
    let stuck = tokio::spawn(async move { http_client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.shutdown();
    tokio::time::timeout(Duration::from_secs(3), &mut gw.handle)
        .await
        .expect("serve did not return after the drain timeout")
        .unwrap()
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(3), stuck)
        .await
        .unwrap()
        .unwrap();
    assert!(
        result.is_err(),
        "stuck request should fail when its connection is closed"
    );
}

#[tokio::test]
async fn serve_header_read_timeout_disconnects_slow_clients() {
    let gw = Gateway::start(
        spawn_upstream().await,
        false,
        |_| {},
        |s| s.header_read_timeout = Duration::from_millis(300),
    )
    .await;
    // Half a request head.
    let mut half = TcpStream::connect(gw.addr).await.unwrap();
    half.write_all(b"GET /headers HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Nothing at all.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    // Part of the HTTP/2 preface.
    let mut preface = TcpStream::connect(gw.addr).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();

    assert_closed(&mut half, Duration::from_secs(3)).await;
    assert_closed(&mut silent, Duration::from_secs(3)).await;
    assert_closed(&mut preface, Duration::from_secs(3)).await;

    // A prompt client is served.
    let resp = http_client().get(gw.url("/headers")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Reads one `404` response with an empty body (the test upstream's answer to
/// an unknown path) and checks its status line.
async fn read_empty_404(stream: &mut TcpStream) {
    let head = read_head(stream).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 0"),
        "{head}"
    );
}

#[tokio::test]
async fn serve_keepalive_timeout_is_separate_from_the_header_timeout() {
    let header = Duration::from_millis(300);
    let keepalive = Duration::from_millis(1500);
    let gw = Gateway::start(
        spawn_upstream().await,
        false,
        |_| {},
        |s| {
            s.header_read_timeout = header;
            s.keepalive_timeout = keepalive;
        },
    )
    .await;
    const REQ: &[u8] = b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n";

    // Idle longer than the header timeout, shorter than the keep-alive one:
    // the same connection serves the next request.
    let mut kept = TcpStream::connect(gw.addr).await.unwrap();
    kept.write_all(REQ).await.unwrap();
    read_empty_404(&mut kept).await;
    tokio::time::sleep(header * 3).await;
    kept.write_all(REQ).await.unwrap();
    read_empty_404(&mut kept).await;

    // Idle longer than the keep-alive timeout: closed by the gateway.
    let idle_from = std::time::Instant::now();
    assert_closed(&mut kept, keepalive * 3).await;
    let idle = idle_from.elapsed();
    assert!(
        idle >= keepalive - Duration::from_millis(50),
        "closed after {idle:?}"
    );

    // After an idle wait, a slow head still gets only the header timeout.
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(REQ).await.unwrap();
    read_empty_404(&mut slow).await;
    tokio::time::sleep(header * 2).await;
    slow.write_all(b"GET /nothing HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let head_from = std::time::Instant::now();
    assert_closed(&mut slow, keepalive * 3).await;
    let waited = head_from.elapsed();
    assert!(
        waited < keepalive - Duration::from_millis(300),
        "slow head closed after {waited:?}, not the header timeout"
    );
}

#[tokio::test]
async fn serve_h2c_prior_knowledge_works() {
    let gw = Gateway::plain(spawn_upstream().await).await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("http://localhost:{}/echo", gw.addr.port()))
        .body(Full::new(Bytes::from_static(b"over h2c")))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "over h2c"
    );
}

#[tokio::test]
async fn serve_max_connections_bounds_concurrency() {
    let gw = Gateway::start(
        spawn_upstream().await,
        false,
        |_| {},
        |s| s.max_connections = 1,
    )
    .await;
    // Holds the only slot.
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    first
        .write_all(b"GET /headers HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut first).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // The second connection completes the TCP handshake (kernel backlog) but
    // is not served while the first is open.
    let url = gw.url("/headers");
    let second = tokio::spawn(async move { http_client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "second connection served beyond the limit"
    );
    drop(first);
    let resp = tokio::time::timeout(Duration::from_secs(3), second)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn serve_inserts_conn_info() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = tower::service_fn(|req: Request<Incoming>| async move {
        let info = req.extensions().get::<server::ConnInfo>().copied().unwrap();
        Ok::<_, Infallible>(Response::new(body::full(format!(
            "{} {}",
            info.remote_addr.ip(),
            info.tls
        ))))
    });
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(server::serve(
        listener,
        None,
        svc,
        ServeOptions::default(),
        async {
            let _ = rx.await;
        },
    ));
    let text = http_client()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "127.0.0.1 false");
    tx.send(()).unwrap();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn tls_websocket_upgrade_passes_through() {
    let gw = Gateway::start(spawn_upstream().await, true, |_| {}, |_| {}).await;
    let mut config = tls::client_config(Some(&certs().join("ca.pem"))).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut buf = [0u8; 16];
    stream.read_exact(&mut buf[..5]).await.unwrap();
    assert_eq!(&buf[..5], b"hello");
    stream.write_all(b"tls").await.unwrap();
    stream.read_exact(&mut buf[..8]).await.unwrap();
    assert_eq!(&buf[..8], b"echo:tls");
}

#[tokio::test]
async fn proxy_records_upstream_latency() {
    let upstream = spawn_upstream().await;
    let metrics = std::sync::Arc::new(oidc_gateway::metrics::Metrics::new());
    let proxy = ReverseProxy::new(
        ProxyOptions::new(format!("http://{upstream}/").parse().unwrap()),
        Some(metrics.clone()),
    );
    let req = Request::get("/headers")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = proxy.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = json(&resp.into_body().collect().await.unwrap().to_bytes());
    // No ConnInfo (not behind `serve`): no X-Forwarded-For, proto http,
    // Host from the upstream authority.
    assert!(seen["headers"].get("x-forwarded-for").is_none(), "{seen}");
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("http"));
    assert_eq!(header(&seen, "host"), Some(upstream.to_string().as_str()));
    let text = metrics.encode();
    assert!(
        text.contains("oidc_gateway_upstream_duration_seconds_count 1"),
        "{text}"
    );
}

/// A raw HTTP/1.1 upstream that answers one request per connection and then
/// closes the socket abruptly (no `Connection: close`), counting connections.
async fn spawn_one_shot_upstream() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = read_head(&mut stream).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Dropped here: the pooled connection dies under the proxy.
            });
        }
    });
    (addr, conns)
}

#[tokio::test]
async fn pool_upstream_closing_idle_connections_never_fails_a_request() {
    let (upstream, conns) = spawn_one_shot_upstream().await;
    let gw = Gateway::plain(upstream).await;
    let client = http_client();
    for i in 0..30 {
        let resp = client.get(gw.url("/x")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "request {i}");
        assert_eq!(resp.text().await.unwrap(), "ok");
        // Let the upstream's close race the next checkout sometimes, not always.
        if i % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(
        conns.load(std::sync::atomic::Ordering::SeqCst),
        30,
        "one upstream connection per request"
    );
}

#[tokio::test]
async fn pool_reuses_kept_alive_upstream_connections() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let conns = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(stream),
                        hyper::service::service_fn(upstream_app),
                    )
                    .await;
            });
        }
    });
    let gw = Gateway::plain(upstream).await;
    let client = http_client();
    for _ in 0..20 {
        let resp = client.get(gw.url("/headers")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let _ = resp.bytes().await.unwrap();
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "sequential requests share one connection"
    );
}
