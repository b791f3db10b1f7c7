//! The admin listener's service: health, readiness and Prometheus metrics.
//! It is served on its own listener and never proxied.
//!
//! | request | response |
//! |---|---|
//! | `GET /healthz` | `200 ok` while the process serves |
//! | `GET /readyz` | `200 ready` when the readiness check passes, else `503 not ready` |
//! | `GET /metrics` | `200`, Prometheus text format 0.0.4 |
//! | other path | `404` |
//! | other method | `405` with `Allow: GET, HEAD` |
//!
//! `HEAD` is accepted wherever `GET` is.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use oidc_gateway::{admin::AdminService, metrics::Metrics};
//!
//! let admin = AdminService::new(Arc::new(Metrics::new()), Arc::new(|| true));
//! # let _ = admin;
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::body::{self, ResponseBody};
use crate::metrics::Metrics;

/// Readiness check: `true` once the gateway can serve (provider metadata and
/// keys loaded).
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The admin service. See the [module docs](self).
#[derive(Clone)]
pub struct AdminService {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

impl fmt::Debug for AdminService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminService").finish_non_exhaustive()
    }
}

impl AdminService {
    /// Serves `metrics`, and reports ready when `readiness` returns `true`.
    pub fn new(metrics: Arc<Metrics>, readiness: Readiness) -> Self {
        AdminService { metrics, readiness }
    }

    fn respond(&self, method: &Method, path: &str) -> Response<ResponseBody> {
        let known = matches!(path, "/healthz" | "/readyz" | "/metrics");
        if !known {
            return text(StatusCode::NOT_FOUND, "not found");
        }
        if method != Method::GET && method != Method::HEAD {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok"),
            "/readyz" if (self.readiness)() => text(StatusCode::OK, "ready"),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
            _ => {
                let mut resp = Response::new(body::full(self.metrics.encode()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(METRICS_CONTENT_TYPE),
                );
                resp.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                resp
            }
        }
    }
}

fn text(status: StatusCode, msg: &'static str) -> Response<ResponseBody> {
    let mut resp = Response::new(body::full(msg));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

impl<B> tower::Service<Request<B>> for AdminService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.respond(req.method(), req.uri().path())))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tower::ServiceExt;

    async fn call(
        svc: &AdminService,
        method: Method,
        path: &str,
    ) -> (StatusCode, String, Response<()>) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        let resp = svc.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            String::from_utf8(body.to_vec()).unwrap(),
            Response::from_parts(parts, ()),
        )
    }

    #[tokio::test]
    async fn admin_endpoints_answer() {
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let metrics = Arc::new(Metrics::new());
        metrics.record_request(crate::metrics::RouteKind::Public, 200);
        let svc = AdminService::new(metrics, Arc::new(move || flag.load(Ordering::SeqCst)));

        let (status, body, _) = call(&svc, Method::GET, "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

        let (status, body, _) = call(&svc, Method::GET, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "not ready")
        );
        ready.store(true, Ordering::SeqCst);
        let (status, body, _) = call(&svc, Method::HEAD, "/readyz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ready"));

        let (status, body, resp) = call(&svc, Method::GET, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        assert!(body.contains("oidc_gateway_requests_total"), "{body}");
    }

    #[tokio::test]
    async fn admin_unknown_path_404_and_bad_method_405() {
        let svc = AdminService::new(Arc::new(Metrics::new()), Arc::new(|| true));
        assert_eq!(call(&svc, Method::GET, "/").await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            call(&svc, Method::GET, "/healthz/x").await.0,
            StatusCode::NOT_FOUND
        );
        let (status, _, resp) = call(&svc, Method::POST, "/healthz").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()["allow"], "GET, HEAD");
    }
}
