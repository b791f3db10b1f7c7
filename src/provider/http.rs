//! HTTP client for calls to the identity provider: rustls with webpki roots
//! (plus `provider.ca_file`), a timeout on every call and a cap on response size.

use crate::body::BoxError;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::time::Duration;

/// Why a call to the provider failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Connecting or sending failed.
    #[error("provider unreachable: {0}")]
    Unreachable(String),
    /// No complete response within the timeout.
    #[error("provider call timed out")]
    Timeout,
    /// The response body exceeded the configured cap.
    #[error("provider response larger than {0} bytes")]
    TooLarge(usize),
    /// The request could not be built.
    #[error("bad provider request: {0}")]
    BadRequest(String),
}

/// A complete, size-bounded response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body, at most the configured cap.
    pub body: Bytes,
}

/// The gateway's outgoing HTTPS (and plain HTTP) client, as the provider
/// calls and the OTLP exporter use it: the web PKI roots plus `extra_roots`,
/// HTTP/1.1 and HTTP/2 by ALPN, `connect_timeout` per connection, idle pooled
/// connections kept for 60 s.
pub(crate) fn https_client(
    extra_roots: Option<&Path>,
    connect_timeout: Duration,
) -> Result<HttpsClient, crate::server::tls::TlsError> {
    let mut tls = crate::server::tls::client_config(extra_roots)?;
    // hyper-rustls sets ALPN itself.
    tls.alpn_protocols.clear();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector))
}

/// What [`https_client`] builds.
pub(crate) type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Client for provider calls. Cheap to clone.
#[derive(Clone)]
pub struct ProviderHttp {
    client: HttpsClient,
    timeout: Duration,
    max_body: usize,
}

impl std::fmt::Debug for ProviderHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderHttp")
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish()
    }
}

impl ProviderHttp {
    /// A client with the given TLS roots, per-call timeout and body cap.
    pub fn new(
        extra_roots: Option<&Path>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Self, BoxError> {
        let client = https_client(extra_roots, timeout)?;
        Ok(ProviderHttp {
            client,
            timeout,
            max_body,
        })
    }

    /// `GET url` with `Accept: application/json` and optional extra headers.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(header::HeaderName, HeaderValue)],
    ) -> Result<HttpResponse, HttpError> {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(url)
            .header(header::ACCEPT, "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| HttpError::BadRequest(e.to_string()))?;
        self.send(req).await
    }

    /// `POST url` with a form body and optional extra headers.
    pub async fn post_form(
        &self,
        url: &str,
        form: String,
        headers: &[(header::HeaderName, HeaderValue)],
    ) -> Result<HttpResponse, HttpError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| HttpError::BadRequest(e.to_string()))?;
        self.send(req).await
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<HttpResponse, HttpError> {
        let max = self.max_body;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| HttpError::Unreachable(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            if let Some(len) = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
            {
                if len > max as u64 {
                    return Err(HttpError::TooLarge(max));
                }
            }
            let body = Limited::new(body, max)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        HttpError::TooLarge(max)
                    } else {
                        HttpError::Unreachable(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(HttpResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| HttpError::Timeout)?
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
