//! Read deadlines of a client connection (the request head, and the idle
//! wait between keep-alive requests), and parking of idle HTTP/1
//! connections.
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
//! # Parking
//!
//! hyper's HTTP/1 connection keeps an 8 KiB read buffer and an 8 KiB write
//! buffer for its whole life, idle or not, and has no way to wait for the
//! next request on the bare socket. So an HTTP/1 connection idle for
//! `park_after` (with everything written) is *parked*: its reader answers
//! hyper's read with end-of-stream, hyper ends the connection gracefully
//! and asks to shut the socket down, and instead of shutting it down the
//! reader hands the socket over ([`Parked`]), with the idle deadline still
//! running. The server then waits for readability on the socket alone and
//! serves the next request with a new hyper connection. Busy connections
//! never park: the check runs only when the idle timer fires.
//!
//! Parking needs hyper's read buffer to be empty, which the reader cannot
//! see: it is, unless the client pipelined the start of a request behind
//! the previous one and has sent nothing more for `park_after`. hyper then
//! reports the cut-off head as an error and the connection is closed (as an
//! idle one would be), never served from a half-read head.
//!
//! Limit: with HTTP/1 pipelining, bytes of the next head read while a request
//! is still busy are not told apart from its body, so the rest of such a
//! head gets the idle deadline (or parking) rather than the head deadline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    /// `finished` as the reader last saw it: behind `finished` when a
    /// request ended after hyper's last read (see [`Rechecked`]).
    observed: AtomicU64,
}

impl ConnActivity {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Whether a request has finished since the reader last looked.
    fn unobserved(&self) -> bool {
        self.finished.load(Ordering::Acquire) != self.observed.load(Ordering::Relaxed)
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

// === Parking ===

/// A parked connection: the socket hyper let go of, and when its idle wait
/// ends.
#[derive(Debug)]
pub(crate) struct Parked<I> {
    pub(crate) io: I,
    /// The keep-alive deadline of the idle phase the connection parked in.
    pub(crate) idle_deadline: Instant,
}

/// What a connection task shares with the hyper connections serving it:
/// where a [`ConnDeadline`] leaves its socket when it parks, and the task's
/// waker for shutdown ([`super::drain`]). One allocation for both: every
/// small allocation of a connection that outlives hyper's buffers pins a
/// page of the heap that could otherwise be given back while it is parked.
#[derive(Debug)]
pub(crate) struct ConnCell<I> {
    parked: Mutex<Option<Parked<I>>>,
    waker: AtomicWaker,
}

impl<I> Default for ConnCell<I> {
    fn default() -> Self {
        ConnCell {
            parked: Mutex::new(None),
            waker: AtomicWaker::new(),
        }
    }
}

impl<I> ConnCell<I> {
    fn park(&self, parked: Parked<I>) {
        *self.parked.lock().unwrap_or_else(PoisonError::into_inner) = Some(parked);
    }

    /// What a connection left here when it parked, if it did.
    pub(crate) fn take_parked(&self) -> Option<Parked<I>> {
        self.parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl<I: Send + 'static> super::drain::DrainTask for ConnCell<I> {
    fn waker(&self) -> &AtomicWaker {
        &self.waker
    }
}

/// Parking settings of one [`ConnDeadline`].
struct Park<I> {
    after: Duration,
    cell: Arc<ConnCell<I>>,
    /// When the current idle phase may park.
    at: Option<Instant>,
    /// End-of-stream was answered: the next shutdown hands the socket over.
    leaving: bool,
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

/// The reader side: fails reads with `TimedOut` once the current phase's
/// deadline has passed, and parks idle HTTP/1 connections (see the
/// [module docs](self)).
pub(crate) struct ConnDeadline<I> {
    /// `None` once handed over by parking.
    io: Option<I>,
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
    // The last write or flush did not complete: hyper still holds bytes.
    write_pending: bool,
    park: Option<Park<I>>,
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
            io: Some(io),
            activity,
            header_timeout,
            keepalive_timeout,
            phase: Phase::Fresh,
            seen: (0, 0),
            preface: Some(0),
            http2: false,
            wanted: Some(at),
            sleep: Box::pin(tokio::time::sleep_until(at)),
            write_pending: false,
            park: None,
        }
    }

    /// Parks the connection into `cell` once it has been idle for `after`
    /// (HTTP/1 only).
    pub(crate) fn parking(mut self, after: Duration, cell: Arc<ConnCell<I>>) -> Self {
        self.park = Some(Park {
            after,
            cell,
            at: None,
            leaving: false,
        });
        self
    }

    /// A connection that has served requests and is known to be HTTP/1:
    /// what a parked connection resumes as (its next head is arriving).
    pub(crate) fn resumed(mut self) -> Self {
        self.preface = None;
        self
    }

    fn io(&mut self) -> io::Result<&mut I> {
        self.io
            .as_mut()
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ConnDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.park.as_ref().is_some_and(|p| p.leaving) {
            // Parking: end-of-stream until hyper shuts down.
            return Poll::Ready(Ok(()));
        }
        let io = Pin::new(match this.io.as_mut() {
            Some(io) => io,
            None => return Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        });
        if this.phase == Phase::Off {
            return io.poll_read(cx, buf);
        }
        // Requests started or finished since the last read?
        let counts = this.activity.counts();
        if counts != this.seen {
            this.seen = counts;
            this.activity.observed.store(counts.1, Ordering::Relaxed);
            if this.activity.upgraded.load(Ordering::Acquire) {
                this.phase = Phase::Off;
                this.wanted = None;
                return io.poll_read(cx, buf);
            }
            if counts.0 > counts.1 {
                this.phase = Phase::Busy;
                this.wanted = None;
            } else {
                this.phase = Phase::Idle;
                let now = Instant::now();
                this.wanted = Some(now + this.keepalive_timeout);
                if let Some(park) = &mut this.park {
                    park.at = Some(now + park.after);
                }
            }
        }
        let before = buf.filled().len();
        match io.poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if let Some(matched) = this.preface {
                    let rest = &H2_PREFACE[matched..];
                    let n = new.len().min(rest.len());
                    if new.is_empty() || new[..n] != rest[..n] {
                        this.preface = None;
                    } else if matched + n == H2_PREFACE.len() {
                        this.preface = None;
                        this.http2 = true;
                    } else {
                        this.preface = Some(matched + n);
                    }
                }
                if this.phase == Phase::Idle && !new.is_empty() && !this.http2 {
                    this.phase = Phase::Head;
                    this.wanted = Some(Instant::now() + this.header_timeout);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.wait(cx),
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
        }
    }
}

impl<I> ConnDeadline<I> {
    /// The socket has nothing to read: `Pending` until the phase's deadline
    /// (then `TimedOut`), or end-of-stream once the connection parks.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(wanted) = self.wanted else {
            return Poll::Pending;
        };
        let park_at = match &self.park {
            Some(park) if self.phase == Phase::Idle && !self.http2 && self.preface.is_none() => {
                park.at
            }
            _ => None,
        };
        let next = park_at.map_or(wanted, |at| at.min(wanted));
        if self.sleep.deadline() > next {
            self.sleep.as_mut().reset(next);
        }
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let now = Instant::now();
            if now >= wanted {
                self.wanted = None;
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    match self.phase {
                        Phase::Idle => "keep-alive connection idle too long",
                        _ => "request head not received within the header read timeout",
                    },
                )));
            }
            match (park_at, &mut self.park) {
                (Some(at), Some(park)) if now >= at && !self.write_pending => {
                    park.leaving = true;
                    return Poll::Ready(Ok(()));
                }
                // Not yet, or hyper still has bytes to write (it reads
                // again once they are out).
                (Some(at), _) if now < at => self.sleep.as_mut().reset(at),
                _ => self.sleep.as_mut().reset(wanted),
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ConnDeadline<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(this.io()?).poll_write(cx, buf);
        this.write_pending = polled.is_pending();
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(this.io()?).poll_write_vectored(cx, bufs);
        this.write_pending = polled.is_pending();
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(I::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(this.io()?).poll_flush(cx);
        this.write_pending = polled.is_pending();
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(park) = this.park.as_mut().filter(|p| p.leaving) {
            // hyper ended the connection on our end-of-stream: hand the
            // socket over instead of shutting it down.
            if let (Some(io), Some(idle_deadline)) = (this.io.take(), this.wanted) {
                park.cell.park(Parked { io, idle_deadline });
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(this.io()?).poll_shutdown(cx)
    }
}

// === Rechecked ===

/// How soon a connection is polled again after a request ended behind
/// hyper's last read.
const RECHECK: Duration = Duration::from_millis(250);

pin_project_lite::pin_project! {
    /// A hyper connection future, polled again within [`RECHECK`] whenever
    /// a request finished after hyper's last read.
    ///
    /// hyper often reads before the request reaches the service (tower's
    /// `Oneshot` calls it lazily) or while it is busy; when that read finds
    /// nothing, hyper waits for the socket and does not read again when the
    /// response ends. Without a poll, the reader would not see the idle
    /// phase begin, and would arm neither its idle deadline nor parking
    /// until the client sent a byte. One timer per connection, re-armed
    /// only once fired: under load it fires every [`RECHECK`], not per
    /// request; the idle phase starts at most that late.
    pub(crate) struct Rechecked<F> {
        #[pin]
        conn: F,
        activity: Arc<ConnActivity>,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F> Rechecked<F> {
    pub(crate) fn new(conn: F, activity: Arc<ConnActivity>) -> Self {
        Rechecked {
            conn,
            activity,
            timer: None,
        }
    }

    /// The connection future.
    pub(crate) fn conn(self: Pin<&mut Self>) -> Pin<&mut F> {
        self.project().conn
    }
}

impl<F: Future> Future for Rechecked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let polled = this.conn.poll(cx);
        if polled.is_pending() && this.activity.unobserved() {
            let timer = match this.timer {
                Some(timer) => {
                    if timer.is_elapsed() {
                        timer.as_mut().reset(Instant::now() + RECHECK);
                    }
                    timer
                }
                None => this.timer.insert(Box::pin(tokio::time::sleep(RECHECK))),
            };
            if timer.as_mut().poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
        polled
    }
}

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
    /// A response body that ends its request's time in flight with its last
    /// frame (or when dropped unfinished).
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
        let mut this = self.project();
        let frame = ready!(this.body.as_mut().poll_frame(cx));
        // Finished before hyper learns the body has ended: hyper then ends
        // the response and reads for the next request head in the same
        // poll, while it still holds this body. Counted only at drop, that
        // read would find the request busy and arm no idle deadline, and
        // hyper would not read again before the client sends a byte.
        if frame.is_none() || this.body.is_end_stream() {
            this._in_flight.take();
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
