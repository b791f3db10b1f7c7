//! A lean HTTP/1.1 connection pool for a plain-`http` upstream.
//!
//! hyper-util's legacy `Client` is generic (any scheme and authority, HTTP/1
//! and HTTP/2, a keyed pool behind a hashed lookup, a spawned task per request
//! to return a busy connection to the pool). A gateway talks to one upstream,
//! so this pool is one LIFO stack of idle [`http1::SendRequest`] handles:
//!
//! - checkout pops the most recently used handle (closed ones are dropped);
//!   with none idle, a new connection is opened (`TCP_NODELAY`, TCP
//!   keep-alive 60 s, bounded by the connect timeout) and its connection task
//!   spawned;
//! - a handle goes back to the stack only once the response body has been
//!   read to its end (by [`PooledBody`]), so a slow client reading a long
//!   response never holds up another request; a body dropped before its end
//!   closes the connection;
//! - a request that a reused connection could not send (the upstream closed
//!   it while idle) is retried on another connection, as the legacy client
//!   does;
//! - idle handles older than the idle timeout are dropped when a handle is
//!   returned; at most [`MAX_IDLE`] are kept.
//!
//! Upgrades (`101 Switching Protocols`) work: connection tasks run
//! `with_upgrades`, and an upgraded connection is never pooled.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::body::ResponseBody;

/// Most idle connections kept.
pub(crate) const MAX_IDLE: usize = 1024;

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// Opening the TCP connection failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// Opening the TCP connection took longer than the connect timeout.
    #[error("connect to {addr}: timed out after {timeout:?}")]
    ConnectTimeout {
        /// `host:port`.
        addr: String,
        /// The connect timeout.
        timeout: Duration,
    },
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error("the upstream response future was polled after it completed")]
    Polled,
}

/// Idle connections to one `http` upstream. See the [module docs](self).
pub(crate) struct Pool {
    host: String,
    port: u16,
    connect_timeout: Duration,
    idle_timeout: Duration,
    builder: http1::Builder,
    idle: Mutex<VecDeque<Idle>>,
}

struct Idle {
    tx: http1::SendRequest<ResponseBody>,
    since: Instant,
}

impl Pool {
    /// A pool for `host:port` (`host` may be a bracketed IPv6 literal or a name).
    pub(crate) fn new(host: &str, port: u16, connect_timeout: Duration) -> Self {
        let mut builder = http1::Builder::new();
        builder
            .writev(true)
            .max_buf_size(crate::server::MAX_HEADER_BYTES);
        Pool {
            host: host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host)
                .to_owned(),
            port,
            connect_timeout,
            idle_timeout: Duration::from_secs(90),
            builder,
            idle: Mutex::new(VecDeque::new()),
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) and returns the response
    /// once its head has arrived; the body streams from the connection.
    pub(crate) fn send(
        self: &Arc<Self>,
        req: Request<ResponseBody>,
    ) -> PoolSend<
        impl Future<Output = Result<Response<Incoming>, TrySendError<Request<ResponseBody>>>> + Send,
    > {
        // The common case, synchronously: an idle connection that is ready
        // takes the request now, and the future is only hyper's wait for
        // the response head (small enough to stay in the allocator's
        // thread cache once boxed with the proxy's state).
        if let Some(mut tx) = self.checkout_ready() {
            let response = tx.try_send_request(req);
            return PoolSend::Sent {
                response,
                tx: Some(tx),
                pool: self.clone(),
            };
        }
        PoolSend::slow(self.clone(), req)
    }

    /// The rest: connect (or wait for a pooled connection to be ready),
    /// and retry on another connection a request that a reused one could
    /// not send.
    async fn send_slow(
        self: Arc<Self>,
        mut req: Request<ResponseBody>,
    ) -> Result<Response<ResponseBody>, PoolError> {
        loop {
            let (mut tx, reused) = match self.checkout() {
                Some(tx) => (tx, true),
                None => (self.connect().await?, false),
            };
            if let Err(err) = tx.ready().await {
                if reused {
                    continue;
                }
                return Err(err.into());
            }
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok(self.attach(resp, tx)),
                Err(mut err) => match err.take_message() {
                    Some(unsent) if reused => {
                        tracing::debug!(error = %err.error(), "pooled connection closed; retrying");
                        req = unsent;
                    }
                    _ => return Err(err.into_error().into()),
                },
            }
        }
    }

    /// An idle connection that can take a request now: the most recently
    /// used one that is ready (one just given back may not be yet: its
    /// connection task has not seen the end of the last response), closed
    /// ones dropped on the way.
    fn checkout_ready(&self) -> Option<http1::SendRequest<ResponseBody>> {
        let mut idle = self.idle.lock();
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            if idle[i].tx.is_ready() {
                return idle.remove(i).map(|Idle { tx, .. }| tx);
            }
            if idle[i].tx.is_closed() {
                idle.remove(i);
            }
        }
        None
    }

    fn checkout(&self) -> Option<http1::SendRequest<ResponseBody>> {
        let mut idle = self.idle.lock();
        while let Some(Idle { tx, .. }) = idle.pop_back() {
            if !tx.is_closed() {
                return Some(tx);
            }
        }
        None
    }

    fn checkin(&self, tx: http1::SendRequest<ResponseBody>) {
        if tx.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock();
        while idle.front().is_some_and(|oldest| {
            idle.len() >= MAX_IDLE || now.duration_since(oldest.since) > self.idle_timeout
        }) {
            idle.pop_front();
        }
        idle.push_back(Idle { tx, since: now });
    }

    async fn connect(&self) -> Result<http1::SendRequest<ResponseBody>, PoolError> {
        let addr = || format!("{}:{}", self.host, self.port);
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(PoolError::Connect {
                    addr: addr(),
                    source,
                })
            }
            Err(_) => {
                return Err(PoolError::ConnectTimeout {
                    addr: addr(),
                    timeout: self.connect_timeout,
                })
            }
        };
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let (tx, conn) = self.builder.handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(error = %err, "upstream connection ended with an error");
            }
        });
        Ok(tx)
    }

    /// The response with a body that returns `tx` to the pool at its end.
    fn attach(
        self: &Arc<Self>,
        resp: Response<Incoming>,
        tx: http1::SendRequest<ResponseBody>,
    ) -> Response<ResponseBody> {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The connection becomes the tunnel: never reused.
            return resp.map(crate::body::boxed);
        }
        let (parts, body) = resp.into_parts();
        let body = PooledBody {
            body,
            conn: Some((tx, self.clone())),
        };
        Response::from_parts(parts, crate::body::boxed(body))
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Pool::send`]: hyper's wait for the response head on
    /// a connection that took the request synchronously, or the boxed slow
    /// path (connect, wait, retry).
    #[project = PoolSendProj]
    pub(crate) enum PoolSend<F> {
        Sent {
            #[pin]
            response: F,
            tx: Option<http1::SendRequest<ResponseBody>>,
            pool: Arc<Pool>,
        },
        Slow {
            slow: Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, PoolError>> + Send>>,
        },
    }
}

impl<F> PoolSend<F> {
    fn slow(pool: Arc<Pool>, req: Request<ResponseBody>) -> Self {
        PoolSend::Slow {
            slow: Box::pin(pool.send_slow(req)),
        }
    }
}

impl<F> Future for PoolSend<F>
where
    F: Future<Output = Result<Response<Incoming>, TrySendError<Request<ResponseBody>>>>,
{
    type Output = Result<Response<ResponseBody>, PoolError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let retry = match self.as_mut().project() {
                PoolSendProj::Slow { slow } => return slow.as_mut().poll(cx),
                PoolSendProj::Sent { response, tx, pool } => {
                    match std::task::ready!(response.poll(cx)) {
                        Ok(resp) => {
                            return Poll::Ready(match tx.take() {
                                Some(tx) => Ok(pool.attach(resp, tx)),
                                None => Err(PoolError::Polled),
                            })
                        }
                        Err(mut err) => match err.take_message() {
                            // A reused connection that closed before it
                            // took the request: another one, on the slow
                            // path.
                            Some(unsent) => {
                                tracing::debug!(error = %err.error(), "pooled connection closed; retrying");
                                (pool.clone(), unsent)
                            }
                            None => return Poll::Ready(Err(err.into_error().into())),
                        },
                    }
                }
            };
            self.set(PoolSend::slow(retry.0, retry.1));
        }
    }
}

/// An upstream response body that returns its connection to the pool once
/// read to the end.
struct PooledBody {
    body: Incoming,
    conn: Option<(http1::SendRequest<ResponseBody>, Arc<Pool>)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((tx, pool)) = self.conn.take() {
            pool.checkin(tx);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            None => this.release(),
            Some(Err(_)) => this.conn = None,
            Some(Ok(_)) => {
                if this.body.is_end_stream() {
                    this.release();
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
