//! The reverse proxy: a tower [`Service`](tower::Service) that forwards each
//! request to the upstream application and streams the response back.
//!
//! - Bodies stream both ways; nothing is buffered.
//! - The request URI becomes the upstream's scheme and authority, its base
//!   path (if any) and the request's path-and-query **as given**: the proxy
//!   does not re-normalize the path, the auth layer already did.
//! - Hop-by-hop headers are removed from requests ([`headers::sanitize_request`])
//!   and responses; `X-Forwarded-For`, `-Proto` and `-Host` are set.
//! - HTTP/2 client requests go upstream as HTTP/1.1 (`Host` from
//!   `:authority`, `Cookie` lines joined).
//! - Only WebSocket upgrades are forwarded (any other `Upgrade`, such as
//!   `h2c`, is stripped and the request forwarded as an ordinary one; see
//!   [`headers`](headers#upgrades)). If the upstream answers `101` with
//!   `Upgrade: websocket`, bytes are copied both ways in a spawned task
//!   ([`Tunnels`]): closed after [`ProxyOptions::tunnel_idle_timeout`]
//!   without traffic, and drained on shutdown. A `101` to a request that was
//!   not a forwarded WebSocket upgrade, or to another protocol, is never
//!   tunnelled: `502`. The request reached the proxy only after the auth
//!   layer authenticated it and applied the route policy, like any other.
//! - Upstream failures become responses: connect failure or a broken
//!   connection → `502 {"error":"upstream_unavailable"}`, no response
//!   headers within [`ProxyOptions::timeout`] → `504 {"error":"upstream_timeout"}`.
//! - A request body the client got wrong (a malformed chunk, a body shorter
//!   than its `Content-Length`, a reset stream) is `400 {"error":"bad_request"}`
//!   when no response has started. The upstream never sees such a request
//!   as complete: its connection is closed without the terminating chunk.
//!   They are logged at warn level without request headers (which carry
//!   cookies and tokens) or the query string.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use oidc_gateway::proxy::{headers, ProxyOptions, ReverseProxy};
//! use tower::ServiceExt;
//!
//! # async fn run() {
//! let proxy = ReverseProxy::new(
//!     ProxyOptions::new("http://127.0.0.1:8080".parse().unwrap()),
//!     None,
//! );
//! let svc = tower::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
//!     // First thing, before any identity header is set: see `headers`.
//!     headers::sanitize_request(&mut req);
//!     proxy.clone().oneshot(req)
//! });
//! # let _ = svc;
//! # }
//! ```

pub mod headers;
mod pool;
mod tunnel;

pub use tunnel::{Tunnels, MAX_TUNNELS};

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{self, BoxError, ResponseBody};
use crate::metrics::Metrics;
use crate::server::tls::{self, TlsError};
use crate::server::ConnInfo;
use headers::HopByHopStripped;

/// Where and how to forward requests.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// The upstream: scheme and authority, optionally a base path that is
    /// prefixed to every request path (`http://10.0.0.5:8080/app`).
    pub upstream: Uri,
    /// Time allowed until the upstream's response headers; then `504`.
    /// Defaults to 30 seconds.
    pub timeout: Duration,
    /// Time allowed to open a TCP connection; then `502`. Defaults to 5 seconds.
    pub connect_timeout: Duration,
    /// Send the client's `Host` upstream (else the upstream's authority).
    /// Defaults to `true`.
    pub pass_host_header: bool,
    /// `X-Forwarded-Proto` to send regardless of the connection, e.g.
    /// `Some("https")` when the gateway's public URL is https but TLS is
    /// terminated in front of it. `None` (the default): `https` when the
    /// client connection is TLS ([`ConnInfo::tls`]), else `http`.
    pub public_proto: Option<&'static str>,
    /// A WebSocket tunnel with no byte read from either side for this long
    /// is closed. Defaults to 5 minutes (Envoy's `stream_idle_timeout`;
    /// nginx closes after 60 s of `proxy_read_timeout`).
    pub tunnel_idle_timeout: Duration,
}

impl ProxyOptions {
    /// Options for `upstream` with the defaults documented on each field.
    pub fn new(upstream: Uri) -> Self {
        ProxyOptions {
            upstream,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            pass_host_header: true,
            public_proto: None,
            tunnel_idle_timeout: Duration::from_secs(300),
        }
    }

    /// Options from the `[upstream]` config section and the gateway's
    /// `public_url` (an https public URL sets `public_proto = "https"`).
    pub fn from_config(
        upstream: &crate::config::UpstreamConfig,
        public_url: &url::Url,
    ) -> Result<Self, http::uri::InvalidUri> {
        Ok(ProxyOptions {
            upstream: upstream.url.as_str().parse()?,
            timeout: upstream.timeout,
            connect_timeout: upstream.connect_timeout,
            pass_host_header: upstream.pass_host_header,
            public_proto: (public_url.scheme() == "https").then_some("https"),
            tunnel_idle_timeout: upstream.tunnel_idle_timeout,
        })
    }
}

/// The reverse proxy service. Cheap to clone: clones share the connection pool.
///
/// Implements `tower::Service<Request<B>>` for any streaming body `B`, with
/// `Error = Infallible`: every failure is a response. See the [module docs](self).
#[derive(Clone)]
pub struct ReverseProxy {
    inner: Arc<Inner>,
}

impl fmt::Debug for ReverseProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReverseProxy")
            .field("upstream", &self.inner.opts.upstream)
            .finish_non_exhaustive()
    }
}

type UpstreamClient = Client<HttpsConnector<HttpConnector>, ResponseBody>;

struct Inner {
    opts: ProxyOptions,
    scheme: Scheme,
    authority: Option<Authority>,
    /// Base path without its trailing `/` (empty for none).
    base_path: String,
    client: Option<UpstreamClient>,
    /// The lean HTTP/1.1 pool, for a plain-`http` upstream.
    pool: Option<Arc<pool::Pool>>,
    metrics: Option<Arc<Metrics>>,
    tunnels: Tunnels,
}

impl ReverseProxy {
    /// A proxy to `opts.upstream`, recording upstream latency in `metrics`.
    ///
    /// Building the TLS client configuration cannot fail with the built-in
    /// provider; should it ever, the error is logged and every request is
    /// answered `502`. Use [`ReverseProxy::try_new`] to get the error instead.
    pub fn new(opts: ProxyOptions, metrics: Option<Arc<Metrics>>) -> Self {
        let client = match Self::build_client(&opts) {
            Ok(client) => Some(client),
            Err(err) => {
                tracing::error!(error = %err, "cannot build the upstream tls client");
                None
            }
        };
        Self::with_client(opts, metrics, client)
    }

    /// Like [`ReverseProxy::new`], but fails when the TLS client
    /// configuration cannot be built.
    pub fn try_new(opts: ProxyOptions, metrics: Option<Arc<Metrics>>) -> Result<Self, TlsError> {
        let client = Self::build_client(&opts)?;
        Ok(Self::with_client(opts, metrics, Some(client)))
    }

    /// The options this proxy was built with.
    pub fn options(&self) -> &ProxyOptions {
        &self.inner.opts
    }

    /// The proxy's open WebSocket tunnels, to drain on shutdown
    /// ([`Tunnels::drain`]): hyper's graceful shutdown does not see them.
    pub fn tunnels(&self) -> Tunnels {
        self.inner.tunnels.clone()
    }

    fn with_client(
        opts: ProxyOptions,
        metrics: Option<Arc<Metrics>>,
        client: Option<UpstreamClient>,
    ) -> Self {
        let scheme = opts.upstream.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = opts.upstream.authority().cloned();
        let base_path = opts.upstream.path().trim_end_matches('/').to_owned();
        let pool = match (&authority, scheme == Scheme::HTTP) {
            (Some(a), true) => Some(Arc::new(pool::Pool::new(
                a.host(),
                a.port_u16().unwrap_or(80),
                opts.connect_timeout,
            ))),
            _ => None,
        };
        ReverseProxy {
            inner: Arc::new(Inner {
                opts,
                scheme,
                authority,
                base_path,
                client,
                pool,
                metrics,
                tunnels: Tunnels::default(),
            }),
        }
    }

    fn build_client(opts: &ProxyOptions) -> Result<UpstreamClient, TlsError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(opts.connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let mut tls = tls::client_config(None)?;
        // hyper-rustls sets ALPN itself (and insists it is empty).
        tls.alpn_protocols.clear();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector))
    }
}

impl<B> tower::Service<Request<B>> for ReverseProxy
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        match inner.prepare(req) {
            Err(resp) => Box::pin(std::future::ready(Ok(resp))),
            Ok((upstream_req, sent)) => {
                let send = tokio::time::timeout(inner.opts.timeout, inner.send(upstream_req));
                Box::pin(Forwarding { send, sent, inner })
            }
        }
    }
}

/// What a forwarded request keeps for its response: the failure page's
/// kind, the names for log lines, the start time, the client's side of an
/// upgrade.
struct Sent {
    fail: Failure,
    method: Method,
    /// For log lines only: a reference-counted copy, not a new string.
    uri: Uri,
    start: Instant,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

pin_project_lite::pin_project! {
    /// A request on its way upstream: the send (bounded by the upstream
    /// timeout) and what its response needs. A named future rather than an
    /// `async` block, so that the boxed state holds the upstream request
    /// once (an `async` block would keep its captured request beside the
    /// send that owns it) and stays small.
    struct Forwarding<F> {
        #[pin]
        send: tokio::time::Timeout<F>,
        sent: Sent,
        inner: Arc<Inner>,
    }
}

impl<F> Future for Forwarding<F>
where
    F: Future<Output = Result<Response<ResponseBody>, BoxError>>,
{
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.send.poll(cx));
        Poll::Ready(Ok(this.inner.finish(result, this.sent)))
    }
}

// === impl Inner ===

impl Inner {
    /// Checks and rewrites a request for the upstream; `Err` is the answer
    /// when it cannot go (a response, as large as the request it replaces:
    /// each moves once, to `call`).
    #[allow(clippy::result_large_err)]
    fn prepare<B>(
        &self,
        mut req: Request<B>,
    ) -> Result<(Request<ResponseBody>, Sent), Response<ResponseBody>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let fail = Failure::of(&req);
        if req.method() == Method::CONNECT {
            return Err(fail.response(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
        }
        headers::sanitize_request(&mut req);
        let upgrade = req
            .extensions()
            .get::<HopByHopStripped>()
            .and_then(|s| s.0.clone());
        if upgrade.is_some() && self.tunnels.len() >= MAX_TUNNELS {
            tracing::warn!(max = MAX_TUNNELS, "too many tunnels: upgrade refused");
            return Err(fail.response(StatusCode::SERVICE_UNAVAILABLE, "too_many_tunnels"));
        }
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let method = req.method().clone();
        let uri = req.uri().clone();
        match self.rewrite(req, upgrade.as_ref()) {
            Ok(upstream_req) => Ok((
                upstream_req,
                Sent {
                    fail,
                    method,
                    uri,
                    start: Instant::now(),
                    client_upgrade,
                },
            )),
            Err(err) => {
                let path = uri.path();
                tracing::warn!(%method, %path, error = %err, "cannot build the upstream request");
                Err(fail.response(StatusCode::BAD_REQUEST, "bad_request"))
            }
        }
    }

    /// Sends the upstream request: on the pool (plain `http`) or the
    /// client (`https`).
    fn send(
        &self,
        req: Request<ResponseBody>,
    ) -> impl Future<Output = Result<Response<ResponseBody>, BoxError>> + Send + 'static {
        use futures_util::future::{Either, TryFutureExt};
        if let Some(pool) = &self.pool {
            return Either::Left(pool.send(req).map_err(|e| Box::new(e) as BoxError));
        }
        let request = self.client.as_ref().map(|c| c.request(req));
        Either::Right(async move {
            let Some(request) = request else {
                return Err(BoxError::from("no upstream client"));
            };
            request
                .await
                .map(|resp| resp.map(body::boxed))
                .map_err(|e| Box::new(e) as BoxError)
        })
    }

    /// The response to the client, from the upstream's answer (or the lack
    /// of one).
    fn finish(
        &self,
        result: Result<Result<Response<ResponseBody>, BoxError>, tokio::time::error::Elapsed>,
        sent: &mut Sent,
    ) -> Response<ResponseBody> {
        let Sent {
            fail,
            method,
            uri,
            start,
            client_upgrade,
        } = sent;
        let path = uri.path();
        let mut resp = match result {
            Err(_) => {
                tracing::warn!(%method, %path, upstream = %self.opts.upstream, timeout = ?self.opts.timeout,
                    "upstream timed out");
                return fail.response(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout");
            }
            Ok(Err(err)) if is_caused_by::<ClientBodyError>(&*err) => {
                // The upstream connection is closed with the request unfinished.
                tracing::info!(%method, %path, error = %ErrorChain(&*err),
                    "request body from the client is malformed or incomplete");
                let mut resp = fail.response(StatusCode::BAD_REQUEST, "bad_request");
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return resp;
            }
            Ok(Err(err)) => {
                tracing::warn!(%method, %path, upstream = %self.opts.upstream, error = %ErrorChain(&*err),
                    "upstream request failed");
                return fail.response(StatusCode::BAD_GATEWAY, "upstream_unavailable");
            }
            Ok(Ok(resp)) => resp,
        };
        let upstream_time = start.elapsed();
        if let Some(metrics) = &self.metrics {
            metrics.observe_upstream(upstream_time);
        }
        resp.extensions_mut()
            .insert(crate::telemetry::UpstreamTime(upstream_time));

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade.take() else {
                tracing::warn!(%method, %path, "upstream switched protocols without an upgrade request");
                return fail.response(StatusCode::BAD_GATEWAY, "upstream_unavailable");
            };
            let switched_to = headers::strip_hop_by_hop(resp.headers_mut());
            if !switched_to.as_ref().is_some_and(headers::is_websocket) {
                tracing::warn!(%method, %path, protocol = ?switched_to,
                    "upstream switched to a protocol other than websocket");
                return fail.response(StatusCode::BAD_GATEWAY, "upstream_unavailable");
            }
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            resp.headers_mut()
                .insert(header::UPGRADE, headers::WEBSOCKET);
            self.tunnels.spawn(
                client_upgrade,
                upstream_upgrade,
                self.opts.tunnel_idle_timeout,
            );
            return resp.map(|_| body::empty());
        }

        headers::strip_hop_by_hop(resp.headers_mut());
        resp
    }

    /// The request to send upstream: URI, `Host`, `X-Forwarded-*`, version.
    fn rewrite<B>(
        &self,
        req: Request<B>,
        upgrade: Option<&HeaderValue>,
    ) -> Result<Request<ResponseBody>, http::Error>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let original_host = headers::original_host(&req);
        // Without a target authority, the original host is the `Host` header
        // itself (exactly one: see `server::rules`).
        let host_is_header = req.uri().authority().is_none() && original_host.is_some();
        let (mut parts, body) = req.into_parts();
        let conn = parts.extensions.get::<ConnInfo>().copied();

        if self.pool.is_some() {
            // The pool's connection is to the upstream itself: origin-form.
            let origin = parts.uri.scheme().is_none() && parts.uri.authority().is_none();
            parts.uri = match (parts.uri.path_and_query(), self.base_path.is_empty()) {
                // An HTTP/1.1 request in origin-form: its URI as it is.
                (Some(_), true) if origin => parts.uri,
                (Some(pq), true) => Uri::from(pq.clone()),
                (None, true) => Uri::from_static("/"),
                (pq, false) => Uri::try_from(format!(
                    "{}{}",
                    self.base_path,
                    pq.map_or("/", PathAndQuery::as_str)
                ))?,
            };
            return Ok(self.rewrite_headers(
                parts,
                body,
                conn,
                original_host,
                host_is_header,
                upgrade,
            ));
        }
        let uri = Uri::builder().scheme(self.scheme.clone());
        let mut uri = match (parts.uri.path_and_query(), self.base_path.is_empty()) {
            // Reused as it is: no copy, no second parse.
            (Some(pq), true) => uri.path_and_query(pq.clone()),
            (None, true) => uri.path_and_query(PathAndQuery::from_static("/")),
            (pq, false) => uri.path_and_query(format!(
                "{}{}",
                self.base_path,
                pq.map_or("/", PathAndQuery::as_str)
            )),
        };
        if let Some(authority) = &self.authority {
            uri = uri.authority(authority.clone());
        }
        parts.uri = uri.build()?;
        Ok(self.rewrite_headers(parts, body, conn, original_host, host_is_header, upgrade))
    }

    /// `Host`, `X-Forwarded-*`, version and body of the upstream request.
    fn rewrite_headers<B>(
        &self,
        mut parts: http::request::Parts,
        body: B,
        conn: Option<ConnInfo>,
        original_host: Option<HeaderValue>,
        host_is_header: bool,
        upgrade: Option<&HeaderValue>,
    ) -> Request<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let h = &mut parts.headers;
        if parts.version == Version::HTTP_2 {
            headers::merge_cookies(h);
        }
        parts.version = Version::HTTP_11;
        if let Some(conn) = conn {
            headers::append_forwarded_for(h, conn.remote_addr.ip());
        }
        let proto = self
            .opts
            .public_proto
            .unwrap_or(if conn.is_some_and(|c| c.tls) {
                "https"
            } else {
                "http"
            });
        headers::set_forwarded_proto(h, proto);
        headers::set_forwarded_host(h, original_host.clone());
        let host = match (&original_host, self.opts.pass_host_header) {
            // Already there as it should go: no second hashed insert.
            (Some(_), true) if host_is_header => None,
            (Some(host), true) => Some(host.clone()),
            _ => self
                .authority
                .as_ref()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        };
        if let Some(host) = host {
            h.insert(header::HOST, host);
        }
        if let Some(protocol) = upgrade {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, protocol.clone());
        }
        Request::from_parts(parts, body::boxed(ClientBody { body }))
    }
}

/// An error of the request body as the client sent it (as opposed to an
/// error of the upstream): see [`ClientBody`].
#[derive(Debug)]
struct ClientBodyError(BoxError);

impl fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("client request body")
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

pin_project_lite::pin_project! {
    /// The client's request body on its way upstream: marks its errors as
    /// [`ClientBodyError`], so that a failed exchange can be told apart
    /// (400, not 502). No allocation: the body is boxed once either way.
    struct ClientBody<B> {
        #[pin]
        body: B,
    }
}

impl<B> http_body::Body for ClientBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, ClientBodyError>>> {
        self.project()
            .body
            .poll_frame(cx)
            .map_err(|e| ClientBodyError(e.into()))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether `E` is `err` or one of its sources.
fn is_caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<E>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// How a request that failed here is answered: a page for browser
/// navigation (with the request id), else JSON.
struct Failure {
    navigation: bool,
    request_id: Option<HeaderValue>,
}

impl Failure {
    fn of<B>(req: &Request<B>) -> Self {
        let navigation = crate::auth::responses::is_navigation(req.method(), req.headers());
        Failure {
            navigation,
            request_id: navigation
                .then(|| req.headers().get(crate::telemetry::REQUEST_ID).cloned())
                .flatten(),
        }
    }

    fn response(&self, status: StatusCode, code: &'static str) -> Response<ResponseBody> {
        if !self.navigation {
            return error_response(status, code);
        }
        let (title, message) = match status {
            StatusCode::GATEWAY_TIMEOUT => (
                "The application is not answering",
                "The application behind the sign-in service took too long to answer. Please try again in a moment.",
            ),
            StatusCode::BAD_GATEWAY => (
                "The application is unavailable",
                "The application behind the sign-in service cannot be reached right now. Please try again in a moment.",
            ),
            StatusCode::SERVICE_UNAVAILABLE => (
                "Temporarily unavailable",
                "The service is busy. Please try again in a moment.",
            ),
            StatusCode::METHOD_NOT_ALLOWED => ("Not allowed", "This request method is not supported."),
            _ => ("Bad request", "The request could not be understood. Please try again."),
        };
        let id = self
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .filter(|v| crate::telemetry::is_valid_request_id(v.as_bytes()));
        crate::auth::responses::error_page(
            status,
            title,
            message,
            crate::auth::responses::PageLink::TRY_AGAIN,
            id,
        )
    }
}

/// A small JSON error response: `{"error":"<code>"}`.
fn error_response(status: StatusCode, code: &'static str) -> Response<ResponseBody> {
    let mut resp = Response::new(body::full(format!("{{\"error\":\"{code}\"}}")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Displays an error with its sources: `a: b: c`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use http_body_util::{BodyExt, Empty};
    use std::net::SocketAddr;

    fn proxy(upstream: &str, f: impl FnOnce(&mut ProxyOptions)) -> ReverseProxy {
        let mut opts = ProxyOptions::new(upstream.parse().unwrap());
        f(&mut opts);
        ReverseProxy::new(opts, None)
    }

    fn rewrite(p: &ReverseProxy, req: Request<Empty<Bytes>>) -> Request<ResponseBody> {
        let mut req = req;
        headers::sanitize_request(&mut req);
        p.inner.rewrite(req, None).unwrap()
    }

    #[test]
    fn rewrite_keeps_path_and_query_as_given() {
        let p = proxy("http://up.internal:8080", |_| {});
        let req = Request::get("/a/../b//c?x=%2F&y")
            .header("host", "gw.example")
            .body(Empty::new())
            .unwrap();
        let out = rewrite(&p, req);
        // A plain-http upstream gets origin-form (the pool connects to it).
        assert_eq!(out.uri(), "/a/../b//c?x=%2F&y");
        assert_eq!(out.headers()["host"], "gw.example");
        assert_eq!(out.headers()["x-forwarded-host"], "gw.example");
        assert_eq!(out.headers()["x-forwarded-proto"], "http");
        assert_eq!(out.version(), Version::HTTP_11);
    }

    #[test]
    fn rewrite_prefixes_base_path() {
        let p = proxy("https://up.internal/app/", |o| o.pass_host_header = false);
        let req = Request::get("/x?q=1")
            .header("host", "gw")
            .body(Empty::new())
            .unwrap();
        let out = rewrite(&p, req);
        assert_eq!(out.uri(), "https://up.internal/app/x?q=1");
        assert_eq!(out.headers()["host"], "up.internal");
        assert_eq!(out.headers()["x-forwarded-host"], "gw");
    }

    #[test]
    fn rewrite_prefixes_base_path_in_origin_form() {
        let p = proxy("http://up.internal/app/", |_| {});
        let req = Request::get("http://gw.example/x?q=1")
            .body(Empty::new())
            .unwrap();
        let out = rewrite(&p, req);
        assert_eq!(out.uri(), "/app/x?q=1");
        assert_eq!(out.headers()["host"], "gw.example");
        let req = Request::get("/").body(Empty::new()).unwrap();
        assert_eq!(rewrite(&p, req).uri(), "/app/");
    }

    #[test]
    fn rewrite_http2_request_uses_authority_and_merges_cookies() {
        let p = proxy("http://127.0.0.1:9", |o| o.public_proto = Some("https"));
        let mut req = Request::get("https://app.example.com/p")
            .version(Version::HTTP_2)
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(Empty::new())
            .unwrap();
        let addr: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        req.extensions_mut().insert(ConnInfo {
            remote_addr: addr,
            tls: false,
        });
        let out = rewrite(&p, req);
        assert_eq!(out.version(), Version::HTTP_11);
        assert_eq!(out.uri(), "/p");
        assert_eq!(out.headers()["host"], "app.example.com");
        assert_eq!(out.headers()["cookie"], "a=1; b=2");
        assert_eq!(out.headers()["x-forwarded-for"], "192.0.2.1");
        assert_eq!(out.headers()["x-forwarded-proto"], "https");
    }

    #[tokio::test]
    async fn connect_method_is_refused() {
        use tower::ServiceExt;
        let p = proxy("http://127.0.0.1:9", |_| {});
        let req = Request::connect("example.com:443")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = p.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"error":"method_not_allowed"}"#);
    }

    #[test]
    fn from_config_sets_public_proto_for_https() {
        let cfg = crate::config::UpstreamConfig {
            url: "http://127.0.0.1:8080/base".parse().unwrap(),
            timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            pass_host_header: false,
            tunnel_idle_timeout: Duration::from_secs(7),
        };
        let o =
            ProxyOptions::from_config(&cfg, &"https://app.example.com".parse().unwrap()).unwrap();
        assert_eq!(o.upstream, "http://127.0.0.1:8080/base");
        assert_eq!(o.public_proto, Some("https"));
        assert!(!o.pass_host_header);
        assert_eq!(o.tunnel_idle_timeout, Duration::from_secs(7));
        let o = ProxyOptions::from_config(&cfg, &"http://localhost:8080".parse().unwrap()).unwrap();
        assert_eq!(o.public_proto, None);
    }
}
