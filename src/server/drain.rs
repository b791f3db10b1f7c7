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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// A connection task as the drain sees it: the waker it registers.
pub(crate) trait DrainTask: Send + Sync {
    fn waker(&self) -> &AtomicWaker;
}

/// The server's side: starts the drain.
#[derive(Default)]
pub(crate) struct DrainSignal {
    draining: AtomicBool,
    tasks: Mutex<Tasks>,
}

/// The wakers of the live connection tasks, in slots reused as tasks end:
/// one allocation for all (a per-task entry left behind would pin a page
/// of the heap that the connection's memory could otherwise give back).
#[derive(Default)]
struct Tasks {
    slots: Vec<Option<Arc<dyn DrainTask>>>,
    free: Vec<usize>,
}

impl DrainSignal {
    fn tasks(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A watch for the connection task `task`.
    pub(crate) fn watch(self: &Arc<Self>, task: Arc<dyn DrainTask>) -> DrainWatch {
        let mut tasks = self.tasks();
        let slot = match tasks.free.pop() {
            Some(slot) => {
                tasks.slots[slot] = Some(task.clone());
                slot
            }
            None => {
                tasks.slots.push(Some(task.clone()));
                tasks.slots.len() - 1
            }
        };
        drop(tasks);
        DrainWatch {
            signal: self.clone(),
            task,
            slot,
        }
    }

    /// Starts the drain: every watch is ready from now on.
    pub(crate) fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
        for task in self.tasks().slots.iter().flatten() {
            task.waker().wake();
        }
    }
}

/// A connection task's side: ready once the drain has started.
pub(crate) struct DrainWatch {
    signal: Arc<DrainSignal>,
    task: Arc<dyn DrainTask>,
    slot: usize,
}

impl Drop for DrainWatch {
    fn drop(&mut self) {
        let mut tasks = self.signal.tasks();
        tasks.slots[self.slot] = None;
        tasks.free.push(self.slot);
    }
}

impl DrainWatch {
    /// `Ready` once the drain has started; else wakes the task when it does.
    pub(crate) fn poll_draining(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before the flag is read: a drain starting in between
        // finds the waker.
        self.task.waker().register(cx.waker());
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

    #[derive(Default)]
    struct Task(AtomicWaker);

    impl DrainTask for Task {
        fn waker(&self) -> &AtomicWaker {
            &self.0
        }
    }

    fn task() -> Arc<dyn DrainTask> {
        Arc::new(Task::default())
    }

    #[tokio::test]
    async fn start_wakes_every_watch_and_later_ones_are_ready() {
        let signal = Arc::new(DrainSignal::default());
        let watches: Vec<_> = (0..3).map(|_| signal.watch(task())).collect();
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
        let late = signal.watch(task());
        tokio::time::timeout(Duration::from_secs(5), late.draining())
            .await
            .expect("ready at once");
    }

    #[test]
    fn ended_tasks_leave_nothing_behind_and_their_slots_are_reused() {
        let signal = Arc::new(DrainSignal::default());
        let kept: Vec<_> = (0..3).map(|_| signal.watch(task())).collect();
        for _ in 0..10_000 {
            drop(signal.watch(task()));
        }
        let tasks = signal.tasks();
        assert_eq!(tasks.slots.len(), 4);
        assert_eq!(tasks.slots.iter().flatten().count(), 3);
        drop(tasks);
        drop(kept);
        assert_eq!(signal.tasks().slots.iter().flatten().count(), 0);
    }
}
