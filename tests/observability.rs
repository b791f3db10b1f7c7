//! Observability end to end: the request id (kept, generated, sent
//! upstream, returned, on error pages and in the access log), the W3C trace
//! context passed upstream, the access-log line, and error pages for
//! browsers vs JSON for API clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::header::ACCEPT;
use support::{free_port, Harness, Options};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Everything logged by the access-log target, for all tests of this binary.
fn access_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer_buf = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                oidc_gateway::telemetry::ACCESS_LOG_TARGET,
            ))
            .with_ansi(false)
            .with_writer(move || BufWriter(writer_buf.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buf
    })
    .clone()
}

struct BufWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The access-log line naming `request_id`.
fn log_line(request_id: &str) -> String {
    let log = access_log();
    let text = {
        let log = log.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&log).into_owned()
    };
    let needle = format!("request_id=\"{request_id}\"");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(&needle)).collect();
    assert_eq!(
        lines.len(),
        1,
        "one access-log line for {request_id}: {text}"
    );
    lines[0].to_string()
}

fn upstream_header(h: &Harness, name: &str) -> Option<String> {
    h.last_upstream()["headers"][name]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn request_id_is_kept_sent_upstream_returned_and_logged() {
    access_log();
    let h = Harness::start().await;
    let resp = h
        .api()
        .get(h.url("/public/x?code=SECRETCODE"))
        .header("x-request-id", "obs-test-kept-1")
        .header("cookie", "other=COOKIEVALUE")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "obs-test-kept-1");
    assert_eq!(
        upstream_header(&h, "x-request-id").as_deref(),
        Some("obs-test-kept-1")
    );

    let line = log_line("obs-test-kept-1");
    for part in [
        "method=GET",
        "path=\"/public/x\"",
        "status=200",
        "route=\"public\"",
        "auth=\"none\"",
        "upstream_ms=",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert!(!line.contains("SECRETCODE"), "no query string: {line}");
    assert!(!line.contains("COOKIEVALUE"), "no cookie: {line}");
}

#[tokio::test]
async fn bad_request_ids_are_replaced() {
    let h = Harness::start().await;
    for bad in ["has space", &"x".repeat(200)] {
        let resp = h
            .api()
            .get(h.url("/public/x"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, bad);
        assert_eq!(id.len(), 32, "{id}");
        assert_eq!(upstream_header(&h, "x-request-id"), Some(id));
    }
    // None sent: one is generated.
    let resp = h.api().get(h.url("/public/x")).send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"].len(), 32);
}

#[tokio::test]
async fn access_log_names_the_user_and_outcome_never_the_token() {
    access_log();
    let h = Harness::start().await;
    let (browser, _jar) = h.browser();
    let cookie = h.login(&browser, "/private").await;
    let resp = browser
        .get(h.url("/private?x=1"))
        .header("x-request-id", "obs-test-session-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let line = log_line("obs-test-session-1");
    for part in [
        "path=\"/private\"",
        "route=\"protected\"",
        "auth=\"session\"",
        "sub=\"alice\"",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert!(!line.contains(&cookie), "no session cookie: {line}");

    let resp = h
        .api()
        .get(h.url("/private"))
        .header("x-request-id", "obs-test-unauth-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let line = log_line("obs-test-unauth-1");
    assert!(line.contains("auth=\"unauthenticated\""), "{line}");
    assert!(line.contains("status=401"), "{line}");
    assert!(line.contains("sub=\"-\""), "{line}");
}

#[tokio::test]
async fn trace_context_goes_upstream_only_when_valid_and_its_trace_id_is_logged() {
    access_log();
    let h = Harness::start().await;
    let send = |tp: &'static str, ts: &'static str| {
        h.api()
            .get(h.url("/public/x"))
            .header("traceparent", tp)
            .header("tracestate", ts)
            .send()
    };
    assert_eq!(
        send(TRACEPARENT, "rojo=00f067aa0ba902b7")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        upstream_header(&h, "traceparent").as_deref(),
        Some(TRACEPARENT)
    );
    assert_eq!(
        upstream_header(&h, "tracestate").as_deref(),
        Some("rojo=00f067aa0ba902b7")
    );
    let line = log_line(&upstream_header(&h, "x-request-id").unwrap());
    assert!(
        line.contains(&format!("trace_id=\"{}\"", &TRACEPARENT[3..35])),
        "{line}"
    );

    let bad = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    assert_eq!(send(bad, "rojo=1").await.unwrap().status(), 200);
    assert_eq!(upstream_header(&h, "traceparent"), None);
    assert_eq!(upstream_header(&h, "tracestate"), None);
    let line = log_line(&upstream_header(&h, "x-request-id").unwrap());
    assert!(line.contains("trace_id=\"-\""), "{line}");
}

#[tokio::test]
async fn errors_under_the_prefix_are_pages_for_browsers_and_json_for_apis() {
    let h = Harness::start().await;
    let (browser, _jar) = h.browser();
    let page = browser
        .get(h.url("/oauth2/nope?<script>"))
        .header(ACCEPT, "text/html")
        .header("x-request-id", "obs-test-404")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let body = page.text().await.unwrap();
    assert!(body.contains("obs-test-404"), "{body}");
    assert!(body.contains("Try again"), "{body}");
    assert!(!body.contains("{\"error\""), "{body}");
    assert!(!body.contains("<script>"), "{body}");

    let page = browser
        .get(h.url("/oauth2/backchannel_logout"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 405);
    let id = page.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = page.text().await.unwrap();
    assert!(body.starts_with("<!doctype html>"), "{body}");
    assert!(
        body.contains(&id),
        "the page shows the response's request id: {body}"
    );

    let api = h.api().get(h.url("/oauth2/nope")).send().await.unwrap();
    assert_eq!(api.status(), 404);
    assert_eq!(api.text().await.unwrap(), r#"{"error":"not_found"}"#);
}

#[tokio::test]
async fn upstream_down_is_a_page_for_browsers_and_json_for_apis() {
    let h = Harness::with(Options {
        upstream_url: Some(format!("http://127.0.0.1:{}", free_port())),
        ..Options::default()
    })
    .await;
    let page = h
        .api()
        .get(h.url("/public/x"))
        .header(ACCEPT, "text/html")
        .header("x-request-id", "obs-test-502")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 502);
    let body = page.text().await.unwrap();
    assert!(body.contains("cannot be reached"), "{body}");
    assert!(body.contains("obs-test-502"), "{body}");

    let api = h.api().get(h.url("/public/x")).send().await.unwrap();
    assert_eq!(api.status(), 502);
    assert_eq!(
        api.text().await.unwrap(),
        r#"{"error":"upstream_unavailable"}"#
    );
}

#[tokio::test]
async fn sign_in_failed_and_signed_out_pages_show_the_request_id() {
    let h = Harness::start().await;
    let (browser, _jar) = h.browser();
    // A callback with a state this browser never started: sign-in failed.
    let page = browser
        .get(h.url("/oauth2/callback?code=c&state=never-issued"))
        .header(ACCEPT, "text/html")
        .header("x-request-id", "obs-test-callback")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    let body = page.text().await.unwrap();
    assert!(body.contains("Sign-in failed"), "{body}");
    assert!(
        body.contains("Request id: <code>obs-test-callback</code>"),
        "{body}"
    );

    // The provider's return after logout without a state: the signed-out
    // page, its "sign in again" link and the generated request id.
    let page = browser
        .get(h.url("/oauth2/signed_out"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let id = page.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = page.text().await.unwrap();
    assert!(body.contains("You are signed out."), "{body}");
    assert!(body.contains("Sign in again"), "{body}");
    assert!(body.contains(&format!("<code>{id}</code>")), "{body}");
}
