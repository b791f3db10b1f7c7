//! OpenTelemetry trace export end to end (cargo feature `otel`): the real
//! binary with `[tracing] otlp_endpoint` pointing at an in-process OTLP/HTTP
//! receiver (a hyper server decoding `POST /v1/traces` with
//! `opentelemetry-proto`), the development provider and the echo upstream.
//!
//! Checked: one server span per request with the expected attributes; the
//! span continues an incoming `traceparent` (same trace id, the incoming
//! span id as parent); without one a new trace starts; the `traceparent`
//! the upstream receives carries the exported span's trace id and span id;
//! no token, cookie or query string in any attribute; the spans still
//! queued are exported at SIGTERM.
#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// What the receiver got: each decoded span with its resource's attributes.
#[derive(Default)]
struct Received {
    spans: Vec<(Vec<KeyValue>, Span)>,
    /// Requests that were not a decodable `POST /v1/traces` (path, why).
    bad: Vec<String>,
}

/// An OTLP/HTTP receiver on loopback: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, answered with an empty protobuf response.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Received::default()));
        let state = got.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let ok_request = req.method() == hyper::Method::POST
                                && path == "/v1/traces"
                                && req
                                    .headers()
                                    .get("content-type")
                                    .is_some_and(|v| v == "application/x-protobuf");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let mut got = state.lock().unwrap();
                            match ExportTraceServiceRequest::decode(body) {
                                Ok(export) if ok_request => {
                                    for rs in export.resource_spans {
                                        let resource =
                                            rs.resource.map(|r| r.attributes).unwrap_or_default();
                                        for ss in rs.scope_spans {
                                            for span in ss.spans {
                                                got.spans.push((resource.clone(), span));
                                            }
                                        }
                                    }
                                }
                                Ok(_) => got.bad.push(format!("{path}: not a protobuf POST")),
                                Err(e) => got.bad.push(format!("{path}: {e}")),
                            }
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver { addr, got, task }
    }

    fn span_count(&self) -> usize {
        self.got.lock().unwrap().spans.len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An exported span: its resource's attributes, the span, its attributes.
type Exported<'a> = (&'a Vec<KeyValue>, &'a Span, HashMap<String, String>);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

/// The `(trace id, span id)` of a `traceparent` value.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// The development provider, the echo upstream, and the gateway binary in
/// front of them with `tracing` as its `[tracing]` section.
async fn start_gateway(tracing: &str) -> (DevProvider, DevEcho, GatewayProcess) {
    let op = dev_provider().await;
    let echo = echo_upstream().await;
    let gw = dev_gateway_process(
        &op,
        &echo.url(),
        r#"shutdown_timeout = "2s""#,
        &format!("[tracing]\n{tracing}"),
        &[],
    )
    .await;
    (op, echo, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_span_per_request_continuing_the_trace_and_sent_upstream() {
    let receiver = Receiver::start().await;
    let (_op, echo, gw) = start_gateway(&format!(
        "otlp_endpoint = \"http://{}\"\nservice_name = \"gateway-under-test\"\nsample_ratio = 1.0\n",
        receiver.addr
    ))
    .await;
    let client = api_client(None);

    // 1. A sampled incoming traceparent, with a query and a cookie.
    let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let resp = client
        .get(gw.url("/public/page?code=SECRETCODE&token=SECRETTOKEN"))
        .header("traceparent", &incoming)
        .header("tracestate", "rojo=00f067aa0ba902b7")
        .header("cookie", "other=SECRETCOOKIE")
        .header("x-request-id", "otel-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = echo.last_request().expect("upstream saw the request");
    let upstream_tp = seen["headers"]["traceparent"].as_str().unwrap().to_owned();
    let (up_trace, up_span) = ids(&upstream_tp);
    assert_eq!(up_trace, TRACE_ID, "same trace id upstream");
    assert_ne!(up_span, PARENT_ID, "the gateway's own span id upstream");
    assert!(upstream_tp.ends_with("-01"), "{upstream_tp}");
    assert_eq!(
        seen["headers"]["tracestate"].as_str(),
        Some("rojo=00f067aa0ba902b7")
    );

    // 2. No traceparent: a new trace, started and forwarded.
    let resp = client
        .get(gw.url("/public/other"))
        .header("x-request-id", "otel-test-2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = echo.last_request().unwrap();
    let (new_trace, new_span) = ids(seen["headers"]["traceparent"].as_str().unwrap());
    assert_ne!(new_trace, TRACE_ID);

    // 3. A protected path with a bad bearer token and a session-like
    // cookie: refused by the gateway (no upstream).
    let resp = client
        .get(gw.url("/private/x?access_token=SECRETQUERY"))
        .header("authorization", "Bearer SECRETBEARER")
        .header("cookie", "oidc-gateway=SECRETSESSION")
        .header("x-request-id", "otel-test-3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // 4. A gateway endpoint: the login start redirects to the provider.
    let resp = client
        .get(gw.url("/oauth2/start?rd=%2FSECRETRD"))
        .header("x-request-id", "otel-test-4")
        .send()
        .await
        .unwrap();
    let login_status = resp.status().as_u16();

    // SIGTERM: the drain, then the queued spans are exported.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    while receiver.span_count() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = receiver.got.lock().unwrap();
    assert!(got.bad.is_empty(), "bad export requests: {:?}", got.bad);
    assert_eq!(
        got.spans.len(),
        4,
        "one span per request: {:#?}\n{}",
        got.spans,
        gw.logs()
    );
    let by_id: HashMap<String, Exported<'_>> = got
        .spans
        .iter()
        .map(|(res, s)| {
            let a = attrs(&s.attributes);
            let id = a
                .get("oidc_gateway.request_id")
                .cloned()
                .unwrap_or_default();
            (id, (res, s, a))
        })
        .collect();

    // Resource: the configured service name.
    let (res, _, _) = &by_id["otel-test-1"];
    assert_eq!(
        attrs(res).get("service.name").map(String::as_str),
        Some("gateway-under-test")
    );

    // 1: continues the incoming trace; its span id is what went upstream.
    let (_, s1, a1) = &by_id["otel-test-1"];
    assert_eq!(hex(&s1.trace_id), TRACE_ID);
    assert_eq!(hex(&s1.parent_span_id), PARENT_ID);
    assert_eq!(hex(&s1.span_id), up_span);
    assert_eq!(s1.kind, SpanKind::Server as i32);
    assert_eq!(s1.name, "GET /public/");
    for (k, v) in [
        ("http.request.method", "GET"),
        ("url.path", "/public/page"),
        ("url.scheme", "http"),
        ("http.route", "/public/"),
        ("http.response.status_code", "200"),
        ("oidc_gateway.route", "public"),
        ("oidc_gateway.auth", "none"),
    ] {
        assert_eq!(a1.get(k).map(String::as_str), Some(v), "{k}: {a1:?}");
    }
    assert!(s1.end_time_unix_nano >= s1.start_time_unix_nano);

    // 2: a new root span; the upstream got its ids.
    let (_, s2, a2) = &by_id["otel-test-2"];
    assert_eq!(hex(&s2.trace_id), new_trace);
    assert_eq!(hex(&s2.span_id), new_span);
    assert!(s2.parent_span_id.is_empty(), "a root span");
    assert_eq!(a2["url.path"], "/public/other");

    // 3: refused by the auth layer; the default route has no http.route.
    let (_, s3, a3) = &by_id["otel-test-3"];
    assert_eq!(a3["http.response.status_code"], "401");
    assert_eq!(a3["oidc_gateway.route"], "protected");
    assert_eq!(a3["oidc_gateway.auth"], "bearer_invalid");
    assert_eq!(a3["url.path"], "/private/x");
    assert!(!a3.contains_key("http.route"), "{a3:?}");
    assert_eq!(s3.name, "GET");

    // 4: a gateway endpoint, named by its path.
    let (_, s4, a4) = &by_id["otel-test-4"];
    assert_eq!(a4["http.route"], "/oauth2/start");
    assert_eq!(a4["oidc_gateway.route"], "endpoint");
    assert_eq!(a4["http.response.status_code"], login_status.to_string());
    assert_eq!(s4.name, "GET /oauth2/start");

    // Nothing secret anywhere in what was exported.
    let everything = format!("{:?}", got.spans);
    for secret in [
        "SECRETCODE",
        "SECRETTOKEN",
        "SECRETCOOKIE",
        "SECRETQUERY",
        "SECRETBEARER",
        "SECRETSESSION",
        "SECRETRD",
        "code=",
        "?",
    ] {
        assert!(
            !everything.contains(secret),
            "`{secret}` in an exported span: {everything}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_never_fails_requests_and_is_logged_rarely() {
    // A port nothing listens on.
    let dead = free_port();
    let (_op, _echo, gw) = start_gateway(&format!(
        "otlp_endpoint = \"http://127.0.0.1:{dead}\"\notlp_timeout = \"1s\"\n"
    ))
    .await;
    let client = api_client(None);
    for i in 0..50 {
        let resp = client
            .get(gw.url(&format!("/public/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    // The shutdown flush tries the collector once more, then the process exits.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gw.stderr().contains("stopped") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = gw.stderr();
    assert!(log.contains("stopped"), "{}", gw.logs());
    let failures = log.matches("trace export failed").count();
    assert_eq!(
        failures, 1,
        "one failure line, not one per request or batch:\n{log}"
    );
}
