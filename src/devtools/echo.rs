//! An upstream that answers every request with what it received.
//!
//! Every request gets `200` and a JSON description:
//! `{"method", "path", "query", "headers": {name: value}, "body", "body_len",
//! "body_truncated"}`; header values that repeat are joined with `", "`,
//! the body is decoded as lossy UTF-8 and cut at 1 MiB. When the request
//! accepts `text/html` (a browser, e.g. in `oidc-gateway demo`), a small HTML
//! page shows the `X-Auth-Request-*` identity headers instead.
//!
//! Two paths help proxy tests: `/_echo/status/<code>` answers with that
//! status, and `/_echo/sleep/<ms>` waits that long (at most 60 s) before
//! answering.
//!
//! # Example
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use oidc_gateway::devtools::echo::EchoUpstream;
//!
//! let echo = EchoUpstream::start(([127, 0, 0, 1], 0).into()).await?;
//! println!("upstream at http://{}", echo.addr());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, Request, StatusCode};
use hyper::body::Incoming;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::http::{self as h, escape_html, spawn_server, Resp, ServerHandle};

/// Bytes of request body kept in the echo.
pub const MAX_ECHO_BODY: usize = 1024 * 1024;

#[derive(Debug, Default)]
struct State {
    count: AtomicUsize,
    last: Mutex<Option<Value>>,
}

/// A running echo upstream; dropping it stops the server.
///
/// See the [module docs](self).
#[derive(Debug)]
pub struct EchoUpstream {
    state: Arc<State>,
    server: ServerHandle,
}

impl EchoUpstream {
    /// Binds `addr` (use port 0 for a free port) and starts serving.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(addr: SocketAddr) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let state = Arc::new(State::default());
        let handler_state = Arc::clone(&state);
        let server = spawn_server(listener, move |req| handle(Arc::clone(&handler_state), req))?;
        Ok(Self { state, server })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// How many requests have been received.
    pub fn request_count(&self) -> usize {
        self.state.count.load(Ordering::Relaxed)
    }

    /// The JSON echo of the latest request.
    pub fn last_request(&self) -> Option<Value> {
        self.state.last.lock().clone()
    }

    /// Stops the server now (dropping the handle does the same).
    pub fn shutdown(mut self) {
        self.server.stop();
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Resp {
    state.count.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let (body, body_len, complete) = h::read_body_prefix(body, MAX_ECHO_BODY).await;
    let echo = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers_json(&parts.headers),
        "body": String::from_utf8_lossy(&body),
        "body_len": body_len,
        "body_truncated": body_len > body.len() || !complete,
    });
    *state.last.lock() = Some(echo.clone());

    let mut status = StatusCode::OK;
    let path = parts.uri.path();
    if let Some(code) = path.strip_prefix("/_echo/status/") {
        status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
    } else if let Some(ms) = path.strip_prefix("/_echo/sleep/") {
        let ms = ms.parse::<u64>().unwrap_or(0).min(60_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    let wants_html = parts
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"));
    if wants_html {
        let mut resp = h::html(status, html_page(&parts.headers, &echo));
        resp.headers_mut()
            .insert("x-echo", http::HeaderValue::from_static("1"));
        return resp;
    }
    let mut resp = h::json(status, &echo);
    resp.headers_mut()
        .insert("x-echo", http::HeaderValue::from_static("1"));
    resp
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut map: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        map.entry(name.as_str())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    json!(map)
}

fn html_page(headers: &HeaderMap, echo: &Value) -> String {
    let row = |name: &str, value: &str| {
        format!(
            "<tr><th>{}</th><td><code>{}</code></td></tr>",
            escape_html(name),
            escape_html(value)
        )
    };
    let identity: String = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-auth-request-"))
        .map(|(name, value)| row(name.as_str(), &String::from_utf8_lossy(value.as_bytes())))
        .collect();
    let identity = if identity.is_empty() {
        "<p><em>No identity headers: this request was not authenticated by the gateway.</em></p>"
            .to_owned()
    } else {
        format!("<table>{identity}</table>")
    };
    let all: String = headers
        .iter()
        .filter(|(name, _)| *name != header::COOKIE)
        .map(|(name, value)| row(name.as_str(), &String::from_utf8_lossy(value.as_bytes())))
        .collect();
    let method = echo["method"].as_str().unwrap_or("");
    let path = echo["path"].as_str().unwrap_or("");
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Echo upstream</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}}\
         th{{text-align:left;padding-right:1rem;vertical-align:top}} td code{{word-break:break-all}}</style>\
         </head><body><h1>Hello from the upstream</h1>\
         <p><code>{method} {path}</code></p>\
         <h2>Identity headers from the gateway</h2>{identity}\
         <p><a href=\"/oauth2/userinfo\">/oauth2/userinfo</a> · \
         <a href=\"/oauth2/sign_out\">Sign out</a></p>\
         <details><summary>All request headers (cookies hidden)</summary><table>{all}</table></details>\
         </body></html>\n",
        method = escape_html(method),
        path = escape_html(path),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic")]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    async fn send(req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let resp = client.request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }

    #[tokio::test]
    async fn echo_post_returns_request_as_json() {
        let echo = EchoUpstream::start(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let req = Request::post(format!("{}/a/b?x=1&y=2", echo.url()))
            .header("x-test", "one")
            .header("x-test", "two")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let (status, _, body) = send(req).await;
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/a/b");
        assert_eq!(v["query"], "x=1&y=2");
        assert_eq!(v["headers"]["x-test"], "one, two");
        assert_eq!(v["body"], "hello");
        assert_eq!(v["body_truncated"], false);
        assert_eq!(echo.request_count(), 1);
        assert_eq!(echo.last_request().unwrap()["path"], "/a/b");
    }

    #[tokio::test]
    async fn echo_large_body_is_truncated_and_counted() {
        let echo = EchoUpstream::start(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let big = vec![b'a'; MAX_ECHO_BODY + 10];
        let req = Request::put(echo.url())
            .body(Full::new(Bytes::from(big)))
            .unwrap();
        let (_, _, body) = send(req).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["body_len"], MAX_ECHO_BODY + 10);
        assert_eq!(v["body_truncated"], true);
        assert_eq!(v["body"].as_str().unwrap().len(), MAX_ECHO_BODY);
    }

    #[tokio::test]
    async fn echo_html_shows_identity_headers_escaped() {
        let echo = EchoUpstream::start(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let req = Request::get(echo.url())
            .header("accept", "text/html,application/xhtml+xml")
            .header("x-auth-request-user", "<alice>")
            .header("x-auth-request-groups", "users,admins")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, headers, body) = send(req).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let page = String::from_utf8(body.to_vec()).unwrap();
        assert!(page.contains("x-auth-request-user"));
        assert!(page.contains("&lt;alice&gt;"));
        assert!(!page.contains("<alice>"));
        assert!(page.contains("users,admins"));
    }

    #[tokio::test]
    async fn echo_status_path_sets_status() {
        let echo = EchoUpstream::start(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let req = Request::get(format!("{}/_echo/status/503", echo.url()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, _, _) = send(req).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn echo_dropped_stops_listening() {
        let echo = EchoUpstream::start(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let addr = echo.addr();
        drop(echo);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
