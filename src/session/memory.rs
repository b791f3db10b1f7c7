//! The in-process session store: a bounded moka cache.

use super::{Session, SessionKey, SessionLookup, SessionStore, StoreError};
use crate::clock::SharedClock;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// In-process store on a moka cache: bounded, TTL = session lifetime.
pub struct MemoryStore {
    cache: moka::sync::Cache<SessionKey, Arc<Session>>,
    clock: SharedClock,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl MemoryStore {
    /// A store keeping at most `capacity` sessions, each at most `lifetime`.
    pub fn new(capacity: u64, lifetime: Duration) -> Self {
        MemoryStore {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(lifetime)
                .build(),
            clock: crate::clock::system(),
        }
    }

    /// Reads session expiry against `clock` (tests pin it).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }
}

impl SessionStore for MemoryStore {
    fn load(&self, key: &SessionKey) -> SessionLookup {
        let found = self
            .cache
            .get(key)
            .filter(|s| s.expires_at > self.clock.now_secs());
        SessionLookup::Ready(found)
    }

    fn save(
        &self,
        key: SessionKey,
        session: Arc<Session>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.cache.insert(key, session);
        Box::pin(async { Ok(()) })
    }

    fn remove(&self, key: &SessionKey) -> BoxFuture<'static, Result<(), StoreError>> {
        self.cache.invalidate(key);
        Box::pin(async { Ok(()) })
    }

    fn remove_where(
        &self,
        sid: Option<&str>,
        subject: Option<&str>,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        let mut removed = 0;
        for (key, session) in self.cache.iter() {
            let by_sid = sid.is_some() && session.sid.as_deref() == sid;
            let by_sub = sid.is_none() && subject == Some(session.identity.subject.as_str());
            if by_sid || by_sub {
                self.cache.invalidate(&*key);
                removed += 1;
            }
        }
        Box::pin(async move { Ok(removed) })
    }

    fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}
