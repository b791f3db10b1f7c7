//! Giving the memory of closed (and parked) connections back to the system.
//!
//! Each connection in hyper's hands holds some 17 KiB of heap (hyper's read
//! and write buffers, its state; see the README's performance notes); a
//! parked one (see [`super::idle`]) only its socket and task. glibc's
//! allocator keeps what is freed for reuse and returns pages to the system
//! only from the top of its heap, so after 10,000 idle keep-alive
//! connections have closed or parked, the gateway's RSS would stay at its
//! peak (~170 MiB more) for the rest of its life. When at least
//! [`TRIM_AFTER_CLOSED`] connections have left hyper's hands since the last
//! peak and the count has stopped falling, the accept loop's
//! [`trim_after_closes`] task asks glibc for the free pages of every arena
//! back (`malloc_trim(0)`, on a blocking thread: it walks the heap).
//! Elsewhere than glibc (musl, macOS), nothing is called: those allocators
//! return memory themselves or offer no such call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// How many connections must have closed since the peak before the free
/// memory is given back (~17 MiB at the size of an idle connection).
pub(crate) const TRIM_AFTER_CLOSED: usize = 1024;

/// How often the open-connection count is looked at.
const TICK: Duration = Duration::from_secs(1);

/// Fewest ticks between two trims: a trim walks the heap and holds each
/// arena's lock meanwhile (milliseconds with 10,000 connections open), so
/// connections that keep coming and going in thousands (a slowloris crowd
/// being closed and reconnecting) trim at most every 10 s.
const MIN_TICKS_BETWEEN: u32 = 10;

/// When to give memory back, from the number of open connections seen at
/// each tick and the highest number since the last tick.
#[derive(Debug)]
pub(crate) struct TrimPolicy {
    /// The highest count since the last trim.
    peak: usize,
    /// The count at the previous tick.
    last: usize,
    /// Ticks since the last trim.
    since_trim: u32,
}

impl Default for TrimPolicy {
    fn default() -> Self {
        TrimPolicy {
            peak: 0,
            last: 0,
            since_trim: MIN_TICKS_BETWEEN,
        }
    }
}

impl TrimPolicy {
    /// One tick: `open` connections now, `peak_since_tick` the most open at
    /// once since the previous tick. True when memory should be given back:
    /// at least [`TRIM_AFTER_CLOSED`] fewer than the peak, and no fewer than
    /// at the previous tick (a mass close has ended: one trim, not one per
    /// tick while it lasts), and at least [`MIN_TICKS_BETWEEN`] ticks after
    /// the last trim.
    pub(crate) fn tick(&mut self, open: usize, peak_since_tick: usize) -> bool {
        self.peak = self.peak.max(peak_since_tick).max(open);
        self.since_trim = self.since_trim.saturating_add(1);
        let settled = open >= self.last;
        self.last = open;
        if settled && self.peak - open >= TRIM_AFTER_CLOSED && self.since_trim >= MIN_TICKS_BETWEEN
        {
            self.peak = open;
            self.since_trim = 0;
            return true;
        }
        false
    }
}

/// The accept loop's connections in hyper's hands: the permits taken from
/// its semaphore less the parked connections, and the most at once since
/// the memory task last looked.
#[derive(Debug)]
pub(crate) struct OpenConnections {
    limit: Arc<Semaphore>,
    max: usize,
    /// The most in hyper's hands at once.
    peak: AtomicUsize,
    /// The most open at once, parked or not.
    peak_open: AtomicUsize,
    parked: AtomicUsize,
}

impl OpenConnections {
    /// For a loop that holds one of `limit`'s `max` permits per connection.
    pub(crate) fn new(limit: Arc<Semaphore>, max: usize) -> Self {
        OpenConnections {
            limit,
            max,
            peak: AtomicUsize::new(0),
            peak_open: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
        }
    }

    /// A connection was accepted (its permit taken): raises the peak.
    pub(crate) fn accepted(&self) {
        self.peak.fetch_max(self.active(), Ordering::Relaxed);
        self.peak_open.fetch_max(self.open(), Ordering::Relaxed);
    }

    /// A connection has parked, until the guard is dropped (it resumes or
    /// closes).
    pub(crate) fn parked(self: &Arc<Self>) -> ParkedConnection {
        self.parked.fetch_add(1, Ordering::Relaxed);
        ParkedConnection(self.clone())
    }

    /// Open connections, parked or not.
    fn open(&self) -> usize {
        self.max.saturating_sub(self.limit.available_permits())
    }

    /// Connections holding hyper's state.
    fn active(&self) -> usize {
        self.open()
            .saturating_sub(self.parked.load(Ordering::Relaxed))
    }
}

/// One parked connection, counted out of [`OpenConnections`] while it lives.
#[derive(Debug)]
pub(crate) struct ParkedConnection(Arc<OpenConnections>);

impl Drop for ParkedConnection {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::Relaxed);
        self.0.accepted();
    }
}

/// Looks at `connections` every [`TICK`] and gives freed memory back as
/// [`TrimPolicy`] says, of the connections in hyper's hands (parking frees
/// hyper's buffers) or of all open ones (closing frees the rest). Runs
/// until aborted.
pub(crate) async fn trim_after_closes(connections: Arc<OpenConnections>) {
    let mut of_active = TrimPolicy::default();
    let mut of_open = TrimPolicy::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let active = connections.active();
        let open = connections.open();
        let active_peak = connections.peak.swap(active, Ordering::Relaxed);
        let open_peak = connections.peak_open.swap(open, Ordering::Relaxed);
        // Both ticked: each keeps its own peak.
        let parked_or_closed = of_active.tick(active, active_peak);
        let closed = of_open.tick(open, open_peak);
        if parked_or_closed || closed {
            let released = tokio::task::spawn_blocking(release_free_memory)
                .await
                .unwrap_or(false);
            tracing::debug!(open, active, released, "gave freed connection memory back");
        }
    }
}

/// `malloc_trim(0)`: glibc gives the free pages of every arena back.
/// Returns whether it released anything.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_memory() -> bool {
    // SAFETY: malloc_trim takes no pointer and touches only glibc's own free
    // lists, under the arenas' locks; it is safe to call at any time from
    // any thread.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Not glibc: nothing to call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_connections_count_as_open_but_not_active() {
        let limit = Arc::new(Semaphore::new(10));
        let connections = Arc::new(OpenConnections::new(limit.clone(), 10));
        let _permits = limit.clone().try_acquire_many_owned(3).unwrap();
        connections.accepted();
        let one = connections.parked();
        let two = connections.parked();
        assert_eq!((connections.open(), connections.active()), (3, 1));
        drop(one);
        assert_eq!((connections.open(), connections.active()), (3, 2));
        drop(two);
        assert_eq!(connections.active(), 3);
        // Resuming raised the peak of connections in hyper's hands.
        assert_eq!(connections.peak.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn no_trim_while_connections_only_grow_or_few_closed() {
        let mut p = TrimPolicy::default();
        assert!(!p.tick(100, 100));
        assert!(!p.tick(5000, 5000));
        // 1023 fewer than the peak: not yet.
        assert!(!p.tick(5000 - 1023, 5000 - 1023));
        assert!(!p.tick(5000 - 1023, 5000 - 1023));
    }

    #[test]
    fn one_trim_once_a_mass_close_has_settled() {
        let mut p = TrimPolicy::default();
        assert!(!p.tick(10_000, 10_000));
        // Falling: wait.
        assert!(!p.tick(6_000, 10_000));
        assert!(!p.tick(0, 6_000));
        // Settled at 0: trim once.
        assert!(p.tick(0, 0));
        assert!(!p.tick(0, 0));
        assert!(!p.tick(0, 0));
    }

    #[test]
    fn a_peak_between_ticks_counts() {
        let mut p = TrimPolicy::default();
        assert!(!p.tick(10, 10));
        // 3000 connections came and went between two ticks.
        assert!(p.tick(10, 3000));
    }

    /// `n` ticks with `open` connections and nothing else happening.
    fn quiet(p: &mut TrimPolicy, open: usize, n: u32) {
        for _ in 0..n {
            assert!(!p.tick(open, open));
        }
    }

    #[test]
    fn the_next_trim_needs_a_new_drop_from_the_new_peak() {
        let mut p = TrimPolicy::default();
        assert!(!p.tick(2000, 2000));
        // Still falling at this tick; settled at the next.
        assert!(!p.tick(500, 2000));
        assert!(p.tick(500, 500));
        quiet(&mut p, 500, MIN_TICKS_BETWEEN);
        // 900 more and gone again: under the threshold from the new peak.
        assert!(!p.tick(1400, 1400));
        quiet(&mut p, 500, 3);
        assert!(!p.tick(3000, 3000));
        assert!(!p.tick(1000, 3000));
        assert!(p.tick(1000, 1000));
    }

    #[test]
    fn trims_are_at_least_min_ticks_apart() {
        let mut p = TrimPolicy::default();
        assert!(p.tick(0, 5000));
        // Another crowd came and went at once: wait out the interval.
        for _ in 1..MIN_TICKS_BETWEEN {
            assert!(!p.tick(0, 5000));
        }
        assert!(p.tick(0, 0));
    }

    #[test]
    fn releasing_is_callable() {
        // Whatever it returns, it must not fail.
        let _ = release_free_memory();
    }
}
