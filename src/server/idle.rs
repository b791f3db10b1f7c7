//! Read deadlines of a client connection: the request head, and the idle
//! wait between keep-alive requests.
//!
//! hyper's own HTTP/1 `header_read_timeout` starts as soon as the connection
//! waits for the next request head, so an idle keep-alive connection would be
//! closed after the header timeout (10 s): behind a load balancer whose idle
//! timeout is longer, the balancer then reuses a connection the gateway has
//! just closed and its client gets a 502. hyper's timer is therefore off and
//! [`ConnDeadline`] bounds reads itself, in phases:
//!
//! | phase | starts | deadline |
//! |---|---|---|
//! | fresh | the connection is accepted | `header_read_timeout` for the HTTP/1 head or the HTTP/2 preface |
//! | busy | a request reaches the service | none (the request's own timeouts apply) |
//! | idle | the last response in flight has been sent | `keepalive_timeout` with no byte read |
//! | head | HTTP/1: the first byte of the next head while idle | `header_read_timeout` |
//!
//! On HTTP/2 (recognised by its preface) bytes while idle (PINGs, window
//! updates) do not start a head: only the idle deadline applies between
//! streams. A `101 Switching Protocols` response turns every deadline off for
//! good (the tunnel has its own idle timeout).
//!
//! The service side ([`Tracked`]) counts requests in flight in a
//! [`ConnActivity`] shared with the reader; a request stays in flight until
//! its response body is dropped (hyper drops it once sent), or its future
//! is dropped unanswered.
//!
//! Timers: one [`Sleep`] per connection, never re-registered per request.
//! Each phase change only records the wanted deadline; the sleep is reset
//! when it is later than the wanted one, or when it fires before it.
//!
//! Limit: with HTTP/1 pipelining, bytes of the next head read while a request
//! is still busy are not told apart from its body, so the rest of such a
//! head gets the idle deadline rather than the head deadline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The HTTP/2 client connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Requests started and finished on one connection, shared by the service
/// side ([`Tracked`]) and the reader ([`ConnDeadline`]).
#[derive(Debug, Default)]
pub(crate) struct ConnActivity {
    /// Requests handed to the service.
    started: AtomicU64,
    /// Requests whose response has been sent (or abandoned).
    finished: AtomicU64,
    /// A `101` was answered: no deadline applies any more.
    upgraded: AtomicBool,
}

impl ConnActivity {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// `(started, finished)`; `finished` is read first, so `started >= finished`.
    fn counts(&self) -> (u64, u64) {
        let finished = self.finished.load(Ordering::Acquire);
        let started = self.started.load(Ordering::Acquire);
        (started, finished)
    }
}

/// One request in flight; finished when dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnActivity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Release);
    }
}

// === ConnDeadline ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Fresh,
    Busy,
    Idle,
    Head,
    Off,
}

pin_project_lite::pin_project! {
    /// The reader side: fails reads with `TimedOut` once the current phase's
    /// deadline has passed (see the [module docs](self)).
    pub(crate) struct ConnDeadline<I> {
        #[pin]
        io: I,
        activity: Arc<ConnActivity>,
        header_timeout: Duration,
        keepalive_timeout: Duration,
        phase: Phase,
        // What `activity` said when the phase was last decided.
        seen: (u64, u64),
        // Bytes of the HTTP/2 preface matched so far; `None` once decided.
        preface: Option<usize>,
        http2: bool,
        // The deadline of the phase; `sleep` may be registered earlier.
        wanted: Option<Instant>,
        sleep: Pin<Box<Sleep>>,
    }
}

impl<I> ConnDeadline<I> {
    pub(crate) fn new(
        io: I,
        activity: Arc<ConnActivity>,
        header_timeout: Duration,
        keepalive_timeout: Duration,
    ) -> Self {
        let at = Instant::now() + header_timeout;
        ConnDeadline {
            io,
            activity,
            header_timeout,
            keepalive_timeout,
            phase: Phase::Fresh,
            seen: (0, 0),
            preface: Some(0),
            http2: false,
            wanted: Some(at),
            sleep: Box::pin(tokio::time::sleep_until(at)),
        }
    }
}

impl<I: AsyncRead> AsyncRead for ConnDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if *this.phase == Phase::Off {
            return this.io.poll_read(cx, buf);
        }
        // Requests started or finished since the last read?
        let counts = this.activity.counts();
        if counts != *this.seen {
            *this.seen = counts;
            if this.activity.upgraded.load(Ordering::Acquire) {
                *this.phase = Phase::Off;
                *this.wanted = None;
                return this.io.poll_read(cx, buf);
            }
            if counts.0 > counts.1 {
                *this.phase = Phase::Busy;
                *this.wanted = None;
            } else {
                *this.phase = Phase::Idle;
                *this.wanted = Some(Instant::now() + *this.keepalive_timeout);
            }
        }
        let before = buf.filled().len();
        match this.io.as_mut().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if let Some(matched) = *this.preface {
                    let rest = &H2_PREFACE[matched..];
                    let n = new.len().min(rest.len());
                    if new.is_empty() || new[..n] != rest[..n] {
                        *this.preface = None;
                    } else if matched + n == H2_PREFACE.len() {
                        *this.preface = None;
                        *this.http2 = true;
                    } else {
                        *this.preface = Some(matched + n);
                    }
                }
                if *this.phase == Phase::Idle && !new.is_empty() && !*this.http2 {
                    *this.phase = Phase::Head;
                    *this.wanted = Some(Instant::now() + *this.header_timeout);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let Some(wanted) = *this.wanted else {
                    return Poll::Pending;
                };
                if this.sleep.deadline() > wanted {
                    this.sleep.as_mut().reset(wanted);
                }
                loop {
                    ready!(this.sleep.as_mut().poll(cx));
                    if Instant::now() >= wanted {
                        *this.wanted = None;
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            match *this.phase {
                                Phase::Idle => "keep-alive connection idle too long",
                                _ => "request head not received within the header read timeout",
                            },
                        )));
                    }
                    this.sleep.as_mut().reset(wanted);
                }
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
        }
    }
}

crate::io::forward_async_write!(ConnDeadline);

// === Tracked ===

/// The service side: marks each request in flight until its response body
/// is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Tracked<S> {
    pub(crate) inner: S,
    pub(crate) activity: Arc<ConnActivity>,
}

impl<S, R, B> tower::Service<R> for Tracked<S>
where
    S: tower::Service<R, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        TrackedFuture {
            inner: self.inner.call(req),
            in_flight: Some(self.activity.begin()),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`Tracked`]'s future: the request stays in flight in its body.
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = ready!(this.inner.poll(cx))?;
        let in_flight = this.in_flight.take();
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(InFlight(activity)) = &in_flight {
                activity.upgraded.store(true, Ordering::Release);
            }
        }
        Poll::Ready(Ok(resp.map(|body| TrackedBody {
            body,
            _in_flight: in_flight,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends its request's time in flight when dropped.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        body: B,
        _in_flight: Option<InFlight>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const HEAD: Duration = Duration::from_secs(5);
    const IDLE: Duration = Duration::from_secs(60);

    fn conn() -> (DuplexStream, ConnDeadline<DuplexStream>, Arc<ConnActivity>) {
        let (client, server) = tokio::io::duplex(64);
        let activity = Arc::new(ConnActivity::default());
        let io = ConnDeadline::new(server, activity.clone(), HEAD, IDLE);
        (client, io, activity)
    }

    #[tokio::test(start_paused = true)]
    async fn silent_client_times_out_after_the_header_timeout() {
        let (_client, mut io, _) = conn();
        let start = Instant::now();
        let err = io.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn partial_preface_times_out() {
        let (mut client, mut io, _) = conn();
        client.write_all(b"PRI * HT").await.unwrap();
        let mut buf = [0u8; 24];
        assert_eq!(io.read(&mut buf).await.unwrap(), 8);
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_first_head_times_out() {
        let (mut client, mut io, _) = conn();
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), 16);
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn busy_has_no_deadline_then_idle_gets_the_keepalive_timeout() {
        let (mut client, mut io, activity) = conn();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), 18);
        let request = activity.begin();
        // A slow request: far longer than both timeouts.
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let n = io.read(&mut buf).await.unwrap();
            (io, n)
        });
        tokio::time::sleep(IDLE * 3).await;
        client.write_all(b"body").await.unwrap();
        let (mut io, n) = read.await.unwrap();
        assert_eq!(n, 4);
        drop(request);
        // Idle: longer than the head timeout is fine, the keep-alive one is not.
        let start = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn next_head_after_idle_gets_the_header_timeout() {
        let (mut client, mut io, activity) = conn();
        drop(activity.begin());
        tokio::time::sleep(IDLE / 2).await;
        client.write_all(b"GET / HT").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), 8);
        let start = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_bytes_while_idle_do_not_start_a_head() {
        let (mut client, mut io, activity) = conn();
        client.write_all(H2_PREFACE).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), 24);
        drop(activity.begin());
        let start = Instant::now();
        // Waiting from now: the idle phase starts.
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let n = io.read(&mut buf).await.unwrap();
            (io, n)
        });
        tokio::time::sleep(HEAD * 2).await;
        client.write_all(b"ping").await.unwrap();
        let (mut io, n) = read.await.unwrap();
        assert_eq!(n, 4);
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn upgrade_turns_deadlines_off() {
        let (mut client, mut io, activity) = conn();
        let request = activity.begin();
        activity.upgraded.store(true, Ordering::Release);
        drop(request);
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            io.read(&mut buf).await
        });
        tokio::time::sleep(IDLE * 10).await;
        client.write_all(b"x").await.unwrap();
        assert_eq!(read.await.unwrap().unwrap(), 1);
    }
}
