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
//! - an HTTP/1 connection idle for [`ServeOptions::park_idle_after`] is
//!   parked: hyper's buffers are freed while it waits (2.6 KiB per idle
//!   connection instead of ~17), and a new hyper connection serves its next
//!   request;
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

mod drain;
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
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
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
    /// An HTTP/1 keep-alive connection idle this long, with its response
    /// written, is parked: hyper's per-connection buffers (16 KiB) are
    /// freed and the gateway waits for the next request on the bare socket.
    /// `None` keeps every connection in hyper's hands. Defaults to 1
    /// second: connections under load never park.
    pub park_idle_after: Option<Duration>,
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
            park_idle_after: Some(Duration::from_secs(1)),
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
    // Tells every connection task that shutdown has begun. (hyper-util's
    // `GracefulShutdown` watches one hyper connection per watcher; a parked
    // connection is served by several in turn.) The semaphore's permits say
    // when the last connection has ended.
    let (force_close_tx, force_close_rx) = watch::channel(false);
    let max_connections = opts.max_connections.max(1);
    let limit = Arc::new(Semaphore::new(max_connections));
    let open = Arc::new(memory::OpenConnections::new(limit.clone(), max_connections));
    let drain = Arc::new(drain::DrainSignal::default());
    let conn = Arc::new(ConnContext {
        drain: drain.clone(),
        resumed: builder.clone().http1_only(),
        builder,
        acceptor: tls.map(TlsAcceptor::from),
        opts: opts.clone(),
        connections: open.clone(),
    });
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
        let mut force_close = force_close_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = conn.serve(stream, remote_addr, service) => {}
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
        connections = max_connections - limit.available_permits(),
        "shutting down: draining connections"
    );
    drain.start();
    let all_ended = limit.acquire_many(u32::try_from(max_connections).unwrap_or(u32::MAX));
    tokio::select! {
        _ = all_ended => tracing::debug!("all connections drained"),
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

/// A connection task's view of shutdown.
type Drain = drain::DrainWatch;

pin_project_lite::pin_project! {
    /// One hyper connection serving a client connection, until it ends;
    /// asked to end gracefully (`graceful`) once shutdown begins.
    struct Served<'d, F, G> {
        #[pin]
        conn: F,
        graceful: Option<G>,
        drain: &'d Drain,
    }
}

impl<F: Future, G: FnOnce(Pin<&mut F>)> Future for Served<'_, F, G> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        if this.graceful.is_some() && this.drain.poll_draining(cx).is_ready() {
            if let Some(graceful) = this.graceful.take() {
                graceful(this.conn.as_mut());
            }
        }
        this.conn.poll(cx)
    }
}

fn served<F, G: FnOnce(Pin<&mut F>)>(conn: F, graceful: G, drain: &Drain) -> Served<'_, F, G> {
    Served {
        conn,
        graceful: Some(graceful),
        drain,
    }
}

/// A client connection's transport that can wait for bytes without reading
/// them: what parking an idle connection needs.
trait Parkable: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready once the socket has bytes to read (or is closed).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;
}

impl Parkable for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        TcpStream::readable(self)
    }
}

// rustls keeps no decrypted bytes behind a read that returned `Pending`
// (parking happens only after one), so the socket alone says when the next
// request arrives.
impl Parkable for tokio_rustls::server::TlsStream<TcpStream> {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.get_ref().0.readable()
    }
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
    /// The same, HTTP/1 only: for connections resumed after parking.
    resumed: auto::Builder<TokioExecutor>,
    /// Counts parked connections out, for giving their memory back.
    connections: Arc<memory::OpenConnections>,
    /// Tells the connections that shutdown has begun.
    drain: Arc<drain::DrainSignal>,
    acceptor: Option<TlsAcceptor>,
    opts: ServeOptions,
}

impl ConnContext {
    async fn serve<S>(&self, stream: TcpStream, remote_addr: SocketAddr, service: S)
    where
        S: ConnService,
    {
        let _ = stream.set_nodelay(true);
        match &self.acceptor {
            None => {
                let info = ConnInfo {
                    remote_addr,
                    tls: false,
                };
                self.serve_http(stream, info, service).await;
            }
            // Boxed: a TLS connection's state (the handshake, then rustls's
            // connection inside the HTTP connection) is several KiB larger
            // than a plain one's, and every connection task would otherwise
            // be as large as the TLS variant.
            Some(acceptor) => {
                Box::pin(self.serve_tls(acceptor, stream, remote_addr, service)).await;
            }
        }
    }

    async fn serve_tls<S>(
        &self,
        acceptor: &TlsAcceptor,
        stream: TcpStream,
        remote_addr: SocketAddr,
        service: S,
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
        self.serve_http(stream, info, service).await;
    }

    async fn serve_http<I, S>(&self, mut io: I, info: ConnInfo, service: S)
    where
        I: Parkable,
        S: ConnService,
    {
        let cell = Arc::new(idle::ConnCell::default());
        let drain = self.drain.watch(cell.clone());
        let mut resumed = false;
        loop {
            let activity = Arc::new(idle::ConnActivity::default());
            let mut deadline = idle::ConnDeadline::new(
                io,
                activity.clone(),
                self.opts.header_read_timeout,
                self.opts.keepalive_timeout,
            );
            if let Some(after) = self.opts.park_idle_after {
                deadline = deadline.parking(after, cell.clone());
            }
            let builder = if resumed {
                deadline = deadline.resumed();
                &self.resumed
            } else {
                &self.builder
            };
            let service = TowerToHyperService::new(idle::Tracked {
                inner: rules::Checked {
                    inner: service.clone(),
                    info,
                    underscores: self.opts.headers_with_underscores,
                },
                activity: activity.clone(),
            });
            // Boxed, and dropped before a parked wait: a parked connection
            // keeps none of hyper's state.
            let conn =
                Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(deadline), service));
            let ended = served(
                idle::Rechecked::new(conn, activity),
                |conn| conn.conn().get_mut().as_mut().graceful_shutdown(),
                &drain,
            )
            .await;
            if let Err(err) = ended {
                tracing::debug!(remote_addr = %info.remote_addr, error = %err, "connection ended with an error");
                return;
            }
            let Some(parked) = cell.take_parked() else {
                return;
            };
            // Parked: nothing but the socket, until the next request, the
            // end of the keep-alive deadline, or shutdown.
            let _parked = self.connections.parked();
            tracing::trace!(remote_addr = %info.remote_addr, "idle connection parked");
            tokio::select! {
                biased;
                () = drain.draining() => return,
                () = tokio::time::sleep_until(parked.idle_deadline) => {
                    tracing::debug!(remote_addr = %info.remote_addr, "keep-alive connection idle too long");
                    return;
                }
                ready = parked.io.readable() => if ready.is_err() { return },
            }
            io = parked.io;
            resumed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    /// Answers `ok` to everything (a 32 MiB body on `/big`) and counts its
    /// clones: the server clones its service once per hyper connection, so
    /// once more per resumed park (and hyper-util once per request).
    struct Counting(Arc<AtomicUsize>);

    impl Clone for Counting {
        fn clone(&self) -> Self {
            self.0.fetch_add(1, Ordering::SeqCst);
            Counting(self.0.clone())
        }
    }

    impl tower::Service<Request<Incoming>> for Counting {
        type Response = Response<ResponseBody>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<ResponseBody>, Infallible>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request<Incoming>) -> Self::Future {
            let body = if req.uri().path() == "/big" {
                crate::body::full(vec![b'x'; BIG])
            } else {
                crate::body::full("ok")
            };
            std::future::ready(Ok(Response::new(body)))
        }
    }

    struct Server {
        addr: SocketAddr,
        clones: Arc<AtomicUsize>,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<io::Result<()>>,
    }

    async fn start(tls: bool, opts: impl FnOnce(&mut ServeOptions)) -> Server {
        let mut o = ServeOptions {
            park_idle_after: Some(Duration::from_millis(100)),
            ..ServeOptions::default()
        };
        opts(&mut o);
        let tls = tls.then(|| {
            let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
            tls::load_server_config(&certs.join("gateway.crt"), &certs.join("gateway.key")).unwrap()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let clones = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, tls, Counting(clones.clone()), o, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            clones,
            stop: Some(stop),
            task,
        }
    }

    impl Server {
        fn clones(&self) -> usize {
            self.clones.load(Ordering::SeqCst)
        }
    }

    const REQ: &[u8] = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n";
    /// A body larger than loopback's socket buffers.
    const BIG: usize = 32 << 20;

    /// Sends `REQ` and reads its `ok` response.
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
        stream.write_all(REQ).await.unwrap();
        read_ok(stream).await;
    }

    /// Reads one `200` response with the body `ok`.
    async fn read_ok<S: AsyncRead + Unpin>(stream: &mut S) {
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.ends_with(b"\r\n\r\nok") {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .expect("response in time")
                .unwrap();
            assert!(
                n > 0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200 "),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }

    /// Waits for the server to close the connection (no byte may come
    /// first); how long it took.
    async fn closed_after<S: AsyncRead + Unpin>(stream: &mut S) -> Duration {
        let from = Instant::now();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("closed in time");
        if let Ok(n @ 1..) = read {
            panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n]));
        }
        from.elapsed()
    }

    /// Clones of the service by one request on `client` (hyper-util
    /// clones it per request), and by one after an idle wait: one more
    /// when the connection parked and resumed on a new hyper connection.
    async fn clones_per_request<S: AsyncRead + AsyncWrite + Unpin>(
        server: &Server,
        client: &mut S,
    ) -> (usize, usize) {
        exchange(client).await;
        let before = server.clones();
        exchange(client).await;
        let busy = server.clones() - before;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let before = server.clones();
        exchange(client).await;
        (busy, server.clones() - before)
    }

    #[tokio::test]
    async fn idle_http1_connection_parks_and_serves_its_next_request() {
        let server = start(false, |_| {}).await;
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        let (busy, after_idle) = clones_per_request(&server, &mut client).await;
        // Parked: the same socket, served by a new hyper connection.
        assert_eq!(after_idle, busy + 1);
        // And again.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let before = server.clones();
        exchange(&mut client).await;
        assert_eq!(server.clones() - before, busy + 1);
    }

    #[tokio::test]
    async fn without_parking_one_hyper_connection_serves_them_all() {
        let server = start(false, |o| o.park_idle_after = None).await;
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        let (busy, after_idle) = clones_per_request(&server, &mut client).await;
        assert_eq!(after_idle, busy);
    }

    #[tokio::test]
    async fn busy_connection_never_parks() {
        let server = start(false, |_| {}).await;
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        exchange(&mut client).await;
        let before = server.clones();
        exchange(&mut client).await;
        let busy = server.clones() - before;
        let before = server.clones();
        let from = Instant::now();
        let mut requests = 0;
        while from.elapsed() < Duration::from_millis(500) {
            exchange(&mut client).await;
            requests += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(server.clones() - before, busy * requests);
    }

    /// After one request, the connection is closed at its keep-alive
    /// deadline, parked (`park_idle_after`) or not.
    async fn closes_at_the_keepalive_deadline(park_idle_after: Option<Duration>) {
        let keepalive = Duration::from_millis(600);
        let server = start(false, |o| {
            o.keepalive_timeout = keepalive;
            o.park_idle_after = park_idle_after;
        })
        .await;
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        exchange(&mut client).await;
        let idle = closed_after(&mut client).await;
        assert!(
            idle >= keepalive - Duration::from_millis(50) && idle < keepalive * 3,
            "closed after {idle:?}"
        );
    }

    #[tokio::test]
    async fn parked_connection_closes_at_the_keepalive_deadline() {
        closes_at_the_keepalive_deadline(Some(Duration::from_millis(100))).await;
    }

    #[tokio::test]
    async fn idle_connection_closes_at_the_keepalive_deadline_without_parking() {
        // The response ends inside hyper's poll (a whole body), after
        // hyper's last read: the connection must still be polled again to
        // arm the idle deadline, not wait for the header deadline (10 s) or
        // the client's next byte.
        closes_at_the_keepalive_deadline(None).await;
    }

    #[tokio::test]
    async fn slow_reader_gets_the_whole_response_before_parking() {
        let server = start(false, |_| {}).await;
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        client
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // hyper holds most of the body, unwritten, far past the park time.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut got = Vec::with_capacity(BIG + 1024);
        let mut buf = vec![0u8; 1 << 16];
        let head_end = loop {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        while got.len() - head_end < BIG {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {} body bytes", got.len() - head_end);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len() - head_end, BIG);
        // Then it parks and serves the next request as usual.
        tokio::time::sleep(Duration::from_millis(400)).await;
        exchange(&mut client).await;
    }

    #[tokio::test]
    async fn pipelined_partial_head_is_closed_not_misread() {
        let server = start(false, |_| {}).await;
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        exchange(&mut client).await;
        // A whole request, then the start of the next one behind it.
        client
            .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HT")
            .await
            .unwrap();
        read_ok(&mut client).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        // The rest arrives after the park time: the cut-off head is never
        // served (hyper saw it end early), the connection is closed.
        let _ = client.write_all(b"TP/1.1\r\nHost: x\r\n\r\n").await;
        closed_after(&mut client).await;
    }

    #[tokio::test]
    async fn shutdown_closes_parked_connections_at_once() {
        let mut server = start(false, |o| o.drain_timeout = Duration::from_secs(20)).await;
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        exchange(&mut client).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let from = Instant::now();
        let _ = server.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), &mut server.task)
            .await
            .expect("drained without waiting for the drain timeout")
            .unwrap()
            .unwrap();
        assert!(from.elapsed() < Duration::from_secs(2));
        closed_after(&mut client).await;
    }

    #[tokio::test]
    async fn tls_connection_parks_and_serves_its_next_request() {
        let server = start(true, |_| {}).await;
        let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        let mut config = tls::client_config(Some(&certs.join("ca.pem"))).unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut client = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        let (busy, after_idle) = clones_per_request(&server, &mut client).await;
        assert_eq!(after_idle, busy + 1);
    }
}
