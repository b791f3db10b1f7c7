//! OpenTelemetry trace export (cargo feature `otel`, configured in
//! `[tracing]`): one server span per request, exported in batches over
//! OTLP/HTTP (protobuf).
//!
//! - **Span**: kind server, named `METHOD http.route` (`METHOD` when no
//!   route is known), from the request's arrival to its response headers.
//!   Attributes: `http.request.method`, `url.path` (never the query),
//!   `url.scheme`, `http.route` (the matching `[[route]]` path, or the
//!   gateway endpoint's path), `http.response.status_code`,
//!   `oidc_gateway.route` and `oidc_gateway.auth` (the access log's route
//!   kind and authentication outcome), `oidc_gateway.request_id`, and
//!   `error.type` with an error status for 5xx. Never a token, code,
//!   cookie, header value or query string.
//! - **Context**: a valid incoming `traceparent` is the span's remote parent
//!   (same trace id; its sampled flag decides, `sample_ratio` applies to new
//!   traces only); without one a new trace starts. The `traceparent` sent
//!   upstream carries the trace id and the *gateway's* span id (also when
//!   the span is not sampled, so the upstream's spans join the same trace);
//!   `tracestate` passes on unchanged.
//! - **Export**: the SDK's batch processor (its own thread, a bounded queue:
//!   a full queue drops spans, the request path never waits). Its HTTP
//!   requests are made by a hyper client on the gateway's runtime, each
//!   bounded by `otlp_timeout`. Failures are logged at most once a
//!   minute, with the number of failed exports, and once when exports
//!   succeed again. [`TraceExport::shutdown`] flushes within a bound.
//!
//! The `OTEL_EXPORTER_OTLP_HEADERS` / `OTEL_EXPORTER_OTLP_TRACES_HEADERS`
//! (e.g. a collector's API key), `OTEL_BSP_*` (batch sizes, delay) and
//! `OTEL_RESOURCE_ATTRIBUTES` environment variables apply as the
//! OpenTelemetry SDK defines them; the endpoint is always `[tracing]`'s.

use crate::auth::policy::{normalize_path, RouteTable};
use crate::config::{GatewayConfig, TracingConfig};
use crate::metrics::RouteKind;
use crate::telemetry::{AccessNote, TraceParent, TRACEPARENT};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_http::HttpError;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

/// Largest collector response body read (the rest is not needed).
const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// At most one export-failure log line per this period.
pub const FAILURE_LOG_PERIOD: Duration = Duration::from_secs(60);

/// Why trace export could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The TLS client configuration for an https collector failed.
    #[error("tls: {0}")]
    Tls(#[source] crate::server::tls::TlsError),
    /// The OTLP exporter refused its configuration.
    #[error("otlp exporter: {0}")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

// ===== export pipeline =====

/// The running export pipeline: a tracer provider with a batch processor.
#[derive(Debug)]
pub struct TraceExport {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    scheme: &'static str,
}

impl TraceExport {
    /// Starts export as `config.tracing` says; `None` when it has no
    /// `otlp_endpoint`. Must be called within a Tokio runtime: export
    /// requests run on it.
    pub fn start(config: &GatewayConfig) -> Result<Option<TraceExport>, OtelError> {
        let tracing = &config.tracing;
        let Some(url) = tracing.traces_url() else {
            return Ok(None);
        };
        let client = HyperExportClient::new(tracing)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(tracing.otlp_timeout)
            .build()
            .map_err(OtelError::Exporter)?;
        let exporter = ReportingExporter {
            inner: exporter,
            report: FailureReport::default(),
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).build())
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                tracing.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(tracing.service_name.clone())
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("oidc-gateway");
        let scheme = if config.is_https() { "https" } else { "http" };
        Ok(Some(TraceExport {
            provider,
            tracer,
            scheme,
        }))
    }

    /// The request tracer for the routes of `config` (a reload builds a new
    /// one on the same pipeline).
    pub fn request_tracer(&self, config: &GatewayConfig) -> RequestTracer {
        RequestTracer {
            tracer: self.tracer.clone(),
            routes: Arc::new(Routes {
                table: RouteTable::new(&config.routes),
                paths: config.routes.iter().map(|r| r.path.clone()).collect(),
            }),
            scheme: self.scheme,
        }
    }

    /// Exports the spans still queued and stops, waiting at most `bound`.
    /// Runs the blocking shutdown off the runtime's workers (the export
    /// requests need them).
    pub async fn shutdown(self, bound: Duration) {
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(bound));
        match done.await {
            Ok(Ok(())) => tracing::debug!("trace export flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "trace export: spans may be lost at shutdown"),
            Err(e) => tracing::warn!(error = %e, "trace export: shutdown did not finish"),
        }
    }
}

// ===== request spans =====

/// The `[[route]]` table of the running configuration, for `http.route`.
struct Routes {
    table: RouteTable,
    paths: Vec<String>,
}

/// Starts one server span per request (cheap to clone).
#[derive(Clone)]
pub struct RequestTracer {
    tracer: SdkTracer,
    routes: Arc<Routes>,
    scheme: &'static str,
}

impl fmt::Debug for RequestTracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestTracer")
            .field("routes", &self.routes.paths.len())
            .finish_non_exhaustive()
    }
}

/// `http.request.method`: the method, or `_OTHER` for one not in RFC 9110
/// or RFC 5789 (an attribute value the client cannot choose freely).
fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// `traceparent` (version 00) of a span context.
pub fn traceparent_value(sc: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    )
}

impl RequestTracer {
    /// Starts the span of `req`, a child of `parent` (the sanitized incoming
    /// `traceparent`) when there is one, and sets the `traceparent` sent
    /// upstream to the new span.
    pub fn start<B>(&self, req: &mut Request<B>, parent: Option<TraceParent>) -> RequestSpan {
        let cx = match parent {
            Some(p) => OtelContext::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(p.trace_id),
                SpanId::from_bytes(p.parent_id),
                TraceFlags::new(p.flags),
                true,
                TraceState::NONE,
            )),
            None => OtelContext::new(),
        };
        let method = method_name(req.method());
        let span = self
            .tracer
            .span_builder(method)
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &cx);
        let sc = span.span_context();
        // An invalid context (provider shut down): the header stays as it came.
        if sc.is_valid() {
            if let Ok(v) = HeaderValue::from_str(&traceparent_value(sc)) {
                req.headers_mut().insert(TRACEPARENT, v);
            }
        }
        // Only a recorded span needs its attributes' values.
        let request_id = span
            .is_recording()
            .then(|| crate::telemetry::request_id(req.headers()).map(str::to_owned))
            .flatten();
        RequestSpan {
            span,
            request_id,
            method: req.method().clone(),
            uri: req.uri().clone(),
            routes: self.routes.clone(),
            scheme: self.scheme,
        }
    }
}

/// A request's span until its response.
pub struct RequestSpan {
    span: opentelemetry_sdk::trace::Span,
    request_id: Option<String>,
    method: Method,
    uri: Uri,
    routes: Arc<Routes>,
    scheme: &'static str,
}

impl fmt::Debug for RequestSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSpan")
            .field("span_context", self.span.span_context())
            .finish_non_exhaustive()
    }
}

impl RequestSpan {
    /// The span's context (what was sent upstream in `traceparent`).
    pub fn span_context(&self) -> &SpanContext {
        self.span.span_context()
    }

    /// `http.route`: the matching `[[route]]`'s path, or the path of a
    /// gateway endpoint; `None` for the default route and refused requests.
    fn route(&self, kind: Option<RouteKind>) -> Option<String> {
        let path = self.uri.path();
        match kind? {
            RouteKind::Endpoint | RouteKind::ForwardAuth => Some(path.to_owned()),
            RouteKind::Public | RouteKind::Protected => {
                let normalized = normalize_path(path).ok()?;
                let index = self
                    .routes
                    .table
                    .match_request(&self.method, &normalized)
                    .index?;
                self.routes.paths.get(index).cloned()
            }
            RouteKind::Rejected => None,
        }
    }

    /// Ends the span with what the response says.
    pub fn end<B>(mut self, resp: &Response<B>) {
        if !self.span.is_recording() {
            return;
        }
        let note = resp.extensions().get::<AccessNote>();
        let status = resp.status().as_u16();
        let method = method_name(&self.method);
        let route = self.route(note.map(|n| n.route));
        let mut attrs = vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.path", self.uri.path().to_owned()),
            KeyValue::new("url.scheme", self.scheme),
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new(
                "oidc_gateway.route",
                note.map_or("none", |n| n.route.as_str()),
            ),
            KeyValue::new(
                "oidc_gateway.auth",
                note.and_then(|n| n.outcome).map_or("none", |o| o.as_str()),
            ),
        ];
        if let Some(id) = self.request_id.take() {
            attrs.push(KeyValue::new("oidc_gateway.request_id", id));
        }
        if let Some(route) = &route {
            self.span.update_name(format!("{method} {route}"));
            attrs.push(KeyValue::new("http.route", route.clone()));
        }
        if status >= 500 {
            attrs.push(KeyValue::new("error.type", status.to_string()));
            self.span.set_status(Status::error(""));
        }
        self.span.set_attributes(attrs);
        self.span.end();
    }
}

pin_project! {
    /// A response future that ends its request's span (when tracing is on)
    /// before the access log sees the response.
    pub struct SpanFuture<F> {
        #[pin]
        fut: F,
        span: Option<RequestSpan>,
    }
}

impl<F> SpanFuture<F> {
    /// Wraps `fut`, the response future of the request of `span`.
    pub fn new(fut: F, span: Option<RequestSpan>) -> Self {
        SpanFuture { fut, span }
    }
}

impl<F, B, E> Future for SpanFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.fut.poll(cx));
        if let (Ok(resp), Some(span)) = (&result, this.span.take()) {
            span.end(resp);
        }
        Poll::Ready(result)
    }
}

// ===== the exporter's HTTP client =====

/// The OTLP exporter's HTTP client: hyper on the gateway's runtime. The SDK
/// runs exports on its own thread (blocking on the future); each request is
/// spawned onto the runtime and bounded by `otlp_timeout`.
#[derive(Clone)]
struct HyperExportClient {
    client: crate::provider::http::HttpsClient,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl fmt::Debug for HyperExportClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperExportClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HyperExportClient {
    fn new(config: &TracingConfig) -> Result<Self, OtelError> {
        let client = crate::provider::http::https_client(None, config.otlp_timeout)
            .map_err(OtelError::Tls)?;
        Ok(HyperExportClient {
            client,
            runtime: tokio::runtime::Handle::current(),
            timeout: config.otlp_timeout,
        })
    }

    async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self.runtime.spawn(async move {
            let exchange = async {
                let resp = client.request(req.map(Full::new)).await?;
                let (parts, body) = resp.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BODY)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(format!("no response within {timeout:?}").into()),
            }
        });
        task.await?
    }
}

impl opentelemetry_http::HttpClient for HyperExportClient {
    fn send_bytes<'a, 'f>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'f>>
    where
        'a: 'f,
        Self: 'f,
    {
        Box::pin(self.send(request))
    }
}

// ===== rate-limited failure reports =====

/// Counts failed exports and logs them at most once per
/// [`FAILURE_LOG_PERIOD`].
#[derive(Debug, Default)]
struct FailureReport {
    failed: AtomicU64,
    last_logged: Mutex<Option<Instant>>,
}

impl FailureReport {
    fn failure(&self, error: &OTelSdkError, batch: usize) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last_logged.lock();
        if last.is_some_and(|t| t.elapsed() < FAILURE_LOG_PERIOD) {
            return;
        }
        *last = Some(Instant::now());
        let failed_exports = self.failed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            error = %error,
            failed_exports,
            spans = batch,
            "trace export failed: spans dropped (reported at most once a minute)"
        );
    }

    fn success(&self) {
        let mut last = self.last_logged.lock();
        if last.is_some() {
            *last = None;
            let failed_exports = self.failed.swap(0, Ordering::Relaxed);
            tracing::info!(
                failed_exports,
                "trace export works again (failed exports since the last report)"
            );
        }
    }
}

/// The OTLP exporter, with its failures reported ([`FailureReport`]).
#[derive(Debug)]
struct ReportingExporter<E> {
    inner: E,
    report: FailureReport,
}

impl<E: SpanExporter> SpanExporter for ReportingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.report.success(),
            Err(e) => self.report.failure(e, n),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn traceparent_of_a_span_context() {
        let sc = SpanContext::new(
            TraceId::from_bytes([0x4b; 16]),
            SpanId::from_bytes([0x01, 0, 0, 0, 0, 0, 0, 0xff]),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        let v = traceparent_value(&sc);
        assert_eq!(v, "00-4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-01000000000000ff-01");
        assert!(TraceParent::parse(v.as_bytes()).is_some());
    }

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(method_name(&Method::GET), "GET");
        assert_eq!(
            method_name(&Method::from_bytes(b"SECRETTHING").unwrap()),
            "_OTHER"
        );
    }

    #[test]
    fn failures_are_logged_once_per_period() {
        let r = FailureReport::default();
        let e = OTelSdkError::InternalFailure("refused".into());
        r.failure(&e, 3);
        let first = *r.last_logged.lock();
        assert!(first.is_some());
        for _ in 0..100 {
            r.failure(&e, 3);
        }
        // Not logged again: the clock of the last line is unchanged and
        // the failures since are counted for the next line.
        assert_eq!(*r.last_logged.lock(), first);
        assert_eq!(r.failed.load(Ordering::Relaxed), 100);
        r.success();
        assert_eq!(*r.last_logged.lock(), None);
        assert_eq!(r.failed.load(Ordering::Relaxed), 0);
    }
}
