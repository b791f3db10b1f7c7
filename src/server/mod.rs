//! The accept loop: TCP listener → optional rustls handshake → HTTP/1.1 or
//! HTTP/2 (hyper-util `auto`) → a tower service, with graceful shutdown.
//!
//! Every request handed to the service carries a [`ConnInfo`] extension with
//! the peer address and whether the connection is TLS.
//!
//! Protections built in:
//! - a semaphore bounds concurrent connections ([`ServeOptions::max_connections`]);
//!   when full, the loop stops accepting until a connection ends;
//! - TLS handshakes are bounded by [`ServeOptions::tls_handshake_timeout`];
//!   failures are logged at debug and never stop the loop;
//! - a client must send its HTTP/1 request head (or the HTTP/2 preface)
//!   within [`ServeOptions::header_read_timeout`], counted from the first
//!   byte of the head on a keep-alive connection; a connection with no
//!   request in flight is closed after [`ServeOptions::keepalive_timeout`]
//!   without a byte (see [`idle`]);
//! - request heads are bounded to 64 KiB (HTTP/1 read buffer, HTTP/2 header list);
//! - before the service is called, `Host` / `:authority` must be
//!   unambiguous and header names with `_` are dropped, refused or kept
//!   ([`ServeOptions::headers_with_underscores`]); see [`rules`] for the
//!   exact rules. Refused requests get `400` from the server itself.
//!
//! On shutdown the listener is closed at once (new connections are refused),
//! in-flight requests may finish within [`ServeOptions::drain_timeout`], and
//! connections still open after it are closed. Upgraded connections
//! (WebSocket tunnels) are detached from hyper: whoever tunnels them drains
//! them ([`ReverseProxy::tunnels`](crate::proxy::ReverseProxy::tunnels),
//! which the gateway drains within the same timeout).
//!
//! # Example
//!
//! ```no_run
//! use std::convert::Infallible;
//! use oidc_gateway::{body, server};
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let svc = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
//!     Ok::<_, Infallible>(http::Response::new(body::full("hello")))
//! });
//! server::serve(listener, None, svc, server::ServeOptions::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

mod idle;
mod memory;
pub mod reloading_cert;
pub mod rules;
pub mod tls;

pub use rules::HeadersWithUnderscores;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::body::ResponseBody;

/// Upper bound on a request head: HTTP/1 read buffer and HTTP/2 header list size.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Length of a listener's queue of connections not yet accepted (the kernel
/// caps it at `net.core.somaxconn`, 4096 by default since Linux 5.4). A
/// burst of connects beyond the queue is dropped by the kernel while the
/// clients believe they are connected (`ListenOverflows`); std's and mio's
/// 128 is too short for a gateway in front of many clients.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with [`LISTEN_BACKLOG`] and `SO_REUSEADDR` (a
/// restarted gateway binds while the old connections are in `TIME_WAIT`).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Facts about the client connection, inserted into every request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// The peer's address (the TCP peer: a load balancer in front of the
    /// gateway appears here, not the end user).
    pub remote_addr: SocketAddr,
    /// Whether the connection is TLS-terminated by this server.
    pub tls: bool,
}

/// Tuning for [`serve`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Time a client has to send a complete HTTP/1 request head (from its
    /// first byte on a keep-alive connection) or the HTTP/2 preface.
    /// Defaults to 10 seconds.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no byte received for this
    /// long is closed (HTTP/1 keep-alive and HTTP/2 alike). Defaults to 75
    /// seconds: longer than the idle timeout of common load balancers (60 s on
    /// AWS ALB, Google Cloud's is 600 s and needs a longer value, nginx
    /// `keepalive_timeout` 75 s), so the balancer, not the gateway, closes an
    /// idle connection and never reuses one the gateway has just closed.
    pub keepalive_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins before their
    /// connections are closed. Defaults to 30 seconds.
    pub drain_timeout: Duration,
    /// Maximum number of concurrent connections. Defaults to 10 000.
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake. Defaults to 10 seconds.
    pub tls_handshake_timeout: Duration,
    /// What to do with request headers whose name contains `_`.
    /// Defaults to [`HeadersWithUnderscores::Drop`].
    pub headers_with_underscores: HeadersWithUnderscores,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(75),
            drain_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            tls_handshake_timeout: Duration::from_secs(10),
            headers_with_underscores: HeadersWithUnderscores::Drop,
        }
    }
}

impl ServeOptions {
    /// Options from the `[server]` config section (`header_read_timeout`,
    /// `keepalive_timeout`, `shutdown_timeout` as the drain timeout,
    /// `headers_with_underscores`);
    /// the rest are defaults.
    pub fn from_config(server: &crate::config::ServerConfig) -> Self {
        ServeOptions {
            header_read_timeout: server.header_read_timeout,
            keepalive_timeout: server.keepalive_timeout,
            drain_timeout: server.shutdown_timeout,
            headers_with_underscores: server.headers_with_underscores,
            ..ServeOptions::default()
        }
    }
}

/// Serves `service` on `listener` until `shutdown` completes, then drains.
///
/// With `tls`, every connection is TLS (ALPN picks HTTP/2 or HTTP/1.1);
/// without, connections are plain HTTP/1.1 (or HTTP/2 with prior knowledge).
/// HTTP/1.1 upgrades (WebSocket) are supported. Returns once every connection
/// has ended or [`ServeOptions::drain_timeout`] has passed after `shutdown`.
///
/// Per-connection errors (handshake failures, resets, timeouts) are logged at
/// debug level and never end the loop; accept errors such as running out of
/// file descriptors are logged and retried after a short pause.
pub async fn serve<S>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    service: S,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Our own deadline (`idle::ConnDeadline`) bounds the head: hyper's
        // would also close idle keep-alive connections after it.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = Arc::new(ConnContext {
        builder,
        acceptor: tls.map(TlsAcceptor::from),
        opts: opts.clone(),
    });

    let graceful = GracefulShutdown::new();
    let (force_close_tx, force_close_rx) = watch::channel(false);
    let max_connections = opts.max_connections.max(1);
    let limit = Arc::new(Semaphore::new(max_connections));
    let open = Arc::new(memory::OpenConnections::new(limit.clone(), max_connections));
    let trim = (max_connections >= memory::TRIM_AFTER_CLOSED)
        .then(|| tokio::spawn(memory::trim_after_closes(open.clone())));
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, remote_addr) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    tracing::error!(error = %err, "accept failed; retrying");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        open.accepted();
        let conn = conn.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        let mut force_close = force_close_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = conn.serve(stream, remote_addr, service, watcher) => {}
                _ = force_close.wait_for(|closed| *closed) => {
                    tracing::debug!(%remote_addr, "connection closed: drain timeout");
                }
            }
        });
    }

    drop(listener);
    if let Some(trim) = trim {
        trim.abort();
    }
    tracing::debug!(
        connections = graceful.count(),
        "shutting down: draining connections"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!("all connections drained"),
        () = tokio::time::sleep(opts.drain_timeout) => {
            tracing::warn!(timeout = ?opts.drain_timeout, "drain timeout: closing remaining connections");
            let _ = force_close_tx.send(true);
        }
    }
    Ok(())
}

/// Errors from `accept` that concern one connection only.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

// === impl ConnContext ===

/// The service a connection serves: what [`serve`] asks of its service.
trait ConnService:
    tower::Service<
        Request<Incoming>,
        Response = Response<ResponseBody>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> ConnService for S where
    S: tower::Service<
            Request<Incoming>,
            Response = Response<ResponseBody>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// What every connection task shares.
struct ConnContext {
    builder: auto::Builder<TokioExecutor>,
    acceptor: Option<TlsAcceptor>,
    opts: ServeOptions,
}

impl ConnContext {
    async fn serve<S>(
        &self,
        stream: TcpStream,
        remote_addr: SocketAddr,
        service: S,
        watcher: Watcher,
    ) where
        S: ConnService,
    {
        let _ = stream.set_nodelay(true);
        match &self.acceptor {
            None => {
                let info = ConnInfo {
                    remote_addr,
                    tls: false,
                };
                self.serve_http(stream, info, service, watcher).await;
            }
            // Boxed: a TLS connection's state (the handshake, then rustls's
            // connection inside the HTTP connection) is several KiB larger
            // than a plain one's, and every connection task would otherwise
            // be as large as the TLS variant.
            Some(acceptor) => {
                Box::pin(self.serve_tls(acceptor, stream, remote_addr, service, watcher)).await;
            }
        }
    }

    async fn serve_tls<S>(
        &self,
        acceptor: &TlsAcceptor,
        stream: TcpStream,
        remote_addr: SocketAddr,
        service: S,
        watcher: Watcher,
    ) where
        S: ConnService,
    {
        let handshake =
            tokio::time::timeout(self.opts.tls_handshake_timeout, acceptor.accept(stream));
        let stream = match handshake.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                tracing::debug!(%remote_addr, error = %err, "tls handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%remote_addr, "tls handshake timed out");
                return;
            }
        };
        let info = ConnInfo {
            remote_addr,
            tls: true,
        };
        self.serve_http(stream, info, service, watcher).await;
    }

    async fn serve_http<I, S>(&self, io: I, info: ConnInfo, service: S, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: ConnService,
    {
        let activity = Arc::new(idle::ConnActivity::default());
        let io = TokioIo::new(idle::ConnDeadline::new(
            io,
            activity.clone(),
            self.opts.header_read_timeout,
            self.opts.keepalive_timeout,
        ));
        let service = TowerToHyperService::new(idle::Tracked {
            inner: rules::Checked {
                inner: service,
                info,
                underscores: self.opts.headers_with_underscores,
            },
            activity,
        });
        let conn = self.builder.serve_connection_with_upgrades(io, service);
        if let Err(err) = watcher.watch(conn).await {
            tracing::debug!(remote_addr = %info.remote_addr, error = %err, "connection ended with an error");
        }
    }
}
