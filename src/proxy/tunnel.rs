//! WebSocket tunnels: after a `101`, bytes are copied both ways in a
//! spawned task until either side closes, nothing moves for the idle
//! timeout ([`ProxyOptions::tunnel_idle_timeout`](super::ProxyOptions::tunnel_idle_timeout)),
//! or [`Tunnels::drain`] closes them on shutdown.
//!
//! hyper hands an upgraded connection over and forgets it, so its graceful
//! shutdown cannot see tunnels; [`Tunnels`] is the registry the gateway
//! drains instead. At most [`MAX_TUNNELS`] are open at once.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

/// Most tunnels open at once; an upgrade beyond it is answered `503`.
pub const MAX_TUNNELS: usize = 10_000;

/// How long tunnels still open at the end of a drain get to close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The open tunnels of one [`ReverseProxy`](super::ReverseProxy). Cheap to
/// clone. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Tunnels {
    /// `true` once tunnels must close. Every tunnel holds a receiver, so
    /// the receiver count is the number of open tunnels.
    closing: Arc<watch::Sender<bool>>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            closing: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl Tunnels {
    /// Number of open tunnels (including those waiting for both sides'
    /// upgrade to complete).
    pub fn len(&self) -> usize {
        self.closing.receiver_count()
    }

    /// Whether no tunnel is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every tunnel has ended or `timeout` has passed, then
    /// closes those still open and refuses new ones. Returns once they are
    /// gone (or after a further second).
    pub async fn drain(&self, timeout: Duration) {
        if tokio::time::timeout(timeout, self.closing.closed())
            .await
            .is_err()
        {
            tracing::warn!(
                tunnels = self.len(),
                ?timeout,
                "drain timeout: closing tunnels"
            );
        }
        self.closing.send_replace(true);
        let _ = tokio::time::timeout(CLOSE_GRACE, self.closing.closed()).await;
    }

    /// Tunnels `client` and `upstream` once both upgrades complete.
    pub(crate) fn spawn(&self, client: OnUpgrade, upstream: OnUpgrade, idle_timeout: Duration) {
        let mut closing = self.closing.subscribe();
        tokio::spawn(async move {
            let (client, upstream) = match tokio::try_join!(client, upstream) {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::debug!(error = %err, "upgrade failed");
                    return;
                }
            };
            if *closing.borrow_and_update() {
                return;
            }
            let start = Instant::now();
            let last = Arc::new(AtomicU64::new(0));
            let mut client = Tracked::new(TokioIo::new(client), &last, start);
            let mut upstream = Tracked::new(TokioIo::new(upstream), &last, start);
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match r {
                    Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
                    Err(err) => tracing::debug!(error = %err, "tunnel failed"),
                },
                () = idle(&last, start, idle_timeout) => {
                    tracing::debug!(timeout = ?idle_timeout, "tunnel closed: idle");
                }
                _ = closing.wait_for(|c| *c) => tracing::debug!("tunnel closed: shutdown"),
            }
        });
    }
}

/// Completes once nothing was read for `timeout`. `last` holds the time of
/// the last read, in milliseconds since `start`.
async fn idle(last: &AtomicU64, start: Instant, timeout: Duration) {
    loop {
        let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + timeout;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

pin_project_lite::pin_project! {
    /// An I/O stream that records the time of its last successful read.
    struct Tracked<I> {
        #[pin]
        io: I,
        last: Arc<AtomicU64>,
        start: Instant,
    }
}

impl<I> Tracked<I> {
    fn new(io: I, last: &Arc<AtomicU64>, start: Instant) -> Self {
        Tracked {
            io,
            last: last.clone(),
            start,
        }
    }
}

impl<I: AsyncRead> AsyncRead for Tracked<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let poll = this.io.poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let ms = u64::try_from(this.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            this.last.store(ms, Ordering::Relaxed);
        }
        poll
    }
}

crate::io::forward_async_write!(Tracked);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_completes_after_timeout_without_reads() {
        let last = AtomicU64::new(0);
        let start = Instant::now();
        let t = tokio::time::timeout(
            Duration::from_secs(11),
            idle(&last, start, Duration::from_secs(10)),
        );
        assert!(t.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_is_pushed_back_by_reads() {
        let last = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let l = last.clone();
        let idle = tokio::spawn(async move { idle(&l, start, Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_secs(8)).await;
        last.store(8_000, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert!(!idle.is_finished());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(idle.is_finished());
    }

    #[tokio::test]
    async fn drain_without_tunnels_returns_at_once() {
        let t = Tunnels::default();
        assert!(t.is_empty());
        tokio::time::timeout(Duration::from_millis(100), t.drain(Duration::from_secs(30)))
            .await
            .unwrap();
    }
}
