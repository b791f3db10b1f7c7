//! Shutdown's signal to the connection tasks, cheap to look at.
//!
//! Every connection task checks for shutdown each time it is polled (hyper's
//! connection, or the wait of a parked one). A `watch` or `Notify` receiver
//! costs a mutex and a waker comparison per poll (about 500 instructions on
//! a proxied request, which polls its task several times); here a poll
//! costs one [`AtomicWaker`] registration (a compare-and-swap when the
//! waker is the task's own, as it is) and one flag load. Starting the drain
//! sets the flag and wakes every task once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// The server's side: starts the drain.
#[derive(Debug, Default)]
pub(crate) struct DrainSignal {
    draining: AtomicBool,
    /// The wakers of the connection tasks (dead ones pruned as it grows).
    tasks: Mutex<Vec<Weak<AtomicWaker>>>,
}

impl DrainSignal {
    /// A watch for one connection task.
    pub(crate) fn watch(self: &Arc<Self>) -> DrainWatch {
        let waker = Arc::new(AtomicWaker::new());
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if tasks.len() == tasks.capacity() {
            // Amortized: each prune at least halves what the next push may
            // grow to, or the vector doubles.
            tasks.retain(|t| t.strong_count() > 0);
        }
        tasks.push(Arc::downgrade(&waker));
        drop(tasks);
        DrainWatch {
            signal: self.clone(),
            waker,
        }
    }

    /// Starts the drain: every watch is ready from now on.
    pub(crate) fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        for task in tasks.iter().filter_map(Weak::upgrade) {
            task.wake();
        }
    }
}

/// A connection task's side: ready once the drain has started.
#[derive(Debug)]
pub(crate) struct DrainWatch {
    signal: Arc<DrainSignal>,
    waker: Arc<AtomicWaker>,
}

impl DrainWatch {
    /// `Ready` once the drain has started; else wakes the task when it does.
    pub(crate) fn poll_draining(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before the flag is read: a drain starting in between
        // finds the waker.
        self.waker.register(cx.waker());
        if self.signal.draining.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Ready once the drain has started.
    pub(crate) async fn draining(&self) {
        std::future::poll_fn(|cx| self.poll_draining(cx)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn start_wakes_every_watch_and_later_ones_are_ready() {
        let signal = Arc::new(DrainSignal::default());
        let watches: Vec<_> = (0..3).map(|_| signal.watch()).collect();
        let waiting: Vec<_> = watches
            .into_iter()
            .map(|w| tokio::spawn(async move { w.draining().await }))
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(waiting.iter().all(|t| !t.is_finished()));
        signal.start();
        for task in waiting {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("woken by start")
                .expect("no panic");
        }
        let late = signal.watch();
        tokio::time::timeout(Duration::from_secs(5), late.draining())
            .await
            .expect("ready at once");
    }

    #[test]
    fn dropped_watches_are_pruned() {
        let signal = Arc::new(DrainSignal::default());
        for _ in 0..10_000 {
            drop(signal.watch());
        }
        let kept = signal.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(kept.capacity() <= 16, "{} entries kept", kept.capacity());
    }
}
