//! Small HTTP plumbing shared by the development provider and the echo upstream:
//! the accept loop, bounded body reading and response builders.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Response type of every devtools server.
pub(crate) type Resp = Response<Full<Bytes>>;

/// A running loopback server; dropping it stops the accept loop and closes
/// every open connection.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    addr: SocketAddr,
    // Dropping the sender wakes every `changed()` waiter with an error.
    stop: Option<watch::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn stop(&mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves HTTP/1.1 and HTTP/2 on `listener` with `handler` until the
/// returned handle is dropped.
pub(crate) fn spawn_server<H, F>(listener: TcpListener, handler: H) -> io::Result<ServerHandle>
where
    H: Fn(http::Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    spawn_server_with(listener, None, handler)
}

/// Like [`spawn_server`], but with `Some(acceptor)` every connection is a
/// TLS connection first (HTTP/1.1 or HTTP/2 by ALPN, as the acceptor's
/// configuration offers). A failed or stalled (10 s) handshake just closes
/// the connection.
pub(crate) fn spawn_server_with<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: H,
) -> io::Result<ServerHandle>
where
    H: Fn(http::Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(());
    let handler = Arc::new(handler);
    let task = tokio::spawn(accept_loop(listener, tls, handler, stop_rx));
    Ok(ServerHandle {
        addr,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

/// How long a TLS client gets to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn accept_loop<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    mut stop: watch::Receiver<()>,
) where
    H: Fn(http::Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                tracing::debug!(error = %err, "devtools: accept failed");
                // Avoid a hot loop on e.g. EMFILE.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, handler, stop).await,
                Some(acceptor) => {
                    let mut stop_wait = stop.clone();
                    let handshake = tokio::select! {
                        res = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => res,
                        _ = stop_wait.changed() => return,
                    };
                    match handshake {
                        Ok(Ok(tls_stream)) => serve_connection(tls_stream, handler, stop).await,
                        Ok(Err(err)) => {
                            tracing::debug!(error = %err, "devtools: TLS handshake failed");
                        }
                        Err(_) => tracing::debug!("devtools: TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves one (plain or TLS) connection until it ends or the server stops.
async fn serve_connection<IO, H, F>(io: IO, handler: Arc<H>, mut stop: watch::Receiver<()>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(http::Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    let service = service_fn(move |req| {
        let fut = handler(req);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::select! {
        res = conn => {
            if let Err(err) = res {
                tracing::trace!(error = %err, "devtools: connection error");
            }
        }
        _ = stop.changed() => {}
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    TooLarge,
    Io,
}

/// Reads the whole body, refusing more than `limit` bytes.
pub(crate) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let mut body = body;
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Io)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads at most `keep` bytes of the body, draining (and counting) the rest.
/// Returns the kept bytes and the total length seen.
pub(crate) async fn read_body_prefix(body: Incoming, keep: usize) -> (Bytes, usize, bool) {
    let mut body = body;
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    let mut complete = true;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            complete = false;
            break;
        };
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            let room = keep.saturating_sub(buf.len());
            buf.extend_from_slice(&data[..room.min(data.len())]);
        }
    }
    (buf.freeze(), total, complete)
}

pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Resp {
    response(status, "application/json", value.to_string())
}

/// A JSON response that must not be cached (token endpoint, RFC 6749 §5.1).
pub(crate) fn json_no_store(status: StatusCode, value: &serde_json::Value) -> Resp {
    let mut resp = json(status, value);
    no_store(&mut resp);
    resp
}

pub(crate) fn no_store(resp: &mut Resp) {
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
}

pub(crate) fn html(status: StatusCode, body: String) -> Resp {
    let mut resp = response(status, "text/html; charset=utf-8", body);
    no_store(&mut resp);
    resp
}

pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    response(status, "text/plain; charset=utf-8", body)
}

/// `302 Found` to `location`; a location that is not a valid header value
/// becomes a 500.
pub(crate) fn redirect(location: &str) -> Resp {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut resp = response(StatusCode::FOUND, "text/plain; charset=utf-8", Bytes::new());
            resp.headers_mut().insert(LOCATION, value);
            no_store(&mut resp);
            resp
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "invalid redirect location",
        ),
    }
}

pub(crate) use crate::html::escape_html;

/// Parses an `application/x-www-form-urlencoded` string into pairs.
pub(crate) fn parse_form(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The single value of `name`; `Err(())` when it appears more than once
/// (RFC 6749 §3.1: parameters must not be repeated).
pub(crate) fn single<'a>(pairs: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, ()> {
    let mut found = None;
    for (k, v) in pairs {
        if k == name {
            if found.is_some() {
                return Err(());
            }
            found = Some(v.as_str());
        }
    }
    Ok(found)
}

/// A URL-safe random token with `bytes` bytes of entropy.
pub(crate) fn random_token(bytes: usize) -> String {
    crate::random::random_token_of(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic")]
mod tests {
    use super::*;

    #[test]
    fn escape_html_escapes_markup() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn single_repeated_parameter_is_error() {
        let pairs = parse_form(b"a=1&b=2&a=3");
        assert!(single(&pairs, "a").is_err());
        assert_eq!(single(&pairs, "b"), Ok(Some("2")));
        assert_eq!(single(&pairs, "c"), Ok(None));
    }

    #[test]
    fn random_token_is_unique() {
        assert_ne!(random_token(16), random_token(16));
        assert_eq!(random_token(32).len(), 43);
    }
}
