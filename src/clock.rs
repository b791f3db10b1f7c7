//! Time as the gateway's checks see it.
//!
//! Every time-dependent decision (`exp`, `nbf`, `iat`, refresh timing,
//! login-attempt and session expiry) reads a [`Clock`] handed to the part
//! that makes it, so tests pin the time instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A source of the current time in Unix seconds.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn now_secs(&self) -> u64;
}

/// A shared clock, as the gateway's parts hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> u64 {
        system_now_secs()
    }
}

/// A clock that only moves when told to (for tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock standing at `unix_secs`.
    pub fn new(unix_secs: u64) -> Self {
        ManualClock(AtomicU64::new(unix_secs))
    }

    /// Moves the clock to `unix_secs`.
    pub fn set(&self, unix_secs: u64) {
        self.0.store(unix_secs, Ordering::Relaxed);
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_secs(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_secs(&self) -> u64 {
        (**self).now_secs()
    }
}

/// The system clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Seconds since the Unix epoch from the operating system's clock.
pub fn system_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_secs(), 1_000);
        clock.advance(5);
        assert_eq!(clock.now_secs(), 1_005);
        clock.set(7);
        assert_eq!(clock.now_secs(), 7);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_secs() > 1_577_836_800);
    }
}
