//! The in-process session store: sharded hash maps and a queue in order of
//! creation.
//!
//! Sessions all live `session.lifetime` from their creation, so the order of
//! creation is the order of expiry: one queue of `(expires_at, key)` both
//! sweeps expired sessions (from its front, a few at each save) and, when
//! the store is full, says which session goes first (the oldest, the one
//! closest to its end). A general-purpose cache (moka, with its admission
//! sketch, timer wheels and per-entry bookkeeping: ~405 B per entry measured
//! on 100,000 entries) would cost more than the session itself; this costs
//! one map slot and one queue slot per session (~90–180 B).
//!
//! Keys are SHA-256 outputs of random ids, so their first bytes are already
//! a uniform hash and pick the shard; only the gateway inserts keys (a
//! client's cookie is only ever looked up), so no one can aim collisions.
//!
//! A session removed before it expires (logout) leaves its queue slot
//! behind; the queue is compacted when such slots outnumber the sessions,
//! so it never holds more than about twice as many slots as there are
//! sessions.

use super::{Session, SessionKey, SessionLookup, SessionStore, StoreError};
use crate::clock::SharedClock;
use futures_util::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Number of shards (a power of two): concurrent lookups and saves rarely
/// meet on one lock.
const SHARDS: usize = 16;

/// Expired sessions swept from the queue's front at each save, at most.
const SWEEP_PER_SAVE: usize = 8;

type Shard = RwLock<HashMap<SessionKey, Arc<Session>, BuildHasherDefault<KeyHasher>>>;

/// In-process store: bounded to `capacity` sessions (the oldest goes when
/// a new one would pass it), each until its `expires_at`. See the
/// [module docs](self).
pub struct MemoryStore {
    shards: Box<[Shard]>,
    /// `(expires_at, key)` in order of first save.
    queue: Mutex<VecDeque<(u64, SessionKey)>>,
    len: AtomicU64,
    capacity: u64,
    clock: SharedClock,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.len.load(Ordering::Relaxed))
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl MemoryStore {
    /// A store keeping at most `capacity` sessions. (`lifetime` is each
    /// session's own `expires_at`; the parameter stays for the callers that
    /// size the store from it.)
    pub fn new(capacity: u64, lifetime: Duration) -> Self {
        let _ = lifetime;
        MemoryStore {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            queue: Mutex::new(VecDeque::new()),
            len: AtomicU64::new(0),
            capacity: capacity.max(1),
            clock: crate::clock::system(),
        }
    }

    /// Reads session expiry against `clock` (tests pin it).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn shard(&self, key: &SessionKey) -> &Shard {
        &self.shards[usize::from(key[8]) % SHARDS]
    }

    /// Removes `key` if it still holds a session expiring at `expires_at`
    /// (a queue slot and the map entry it was made for).
    fn remove_slot(&self, expires_at: u64, key: &SessionKey) -> bool {
        let mut shard = self.shard(key).write();
        if shard.get(key).is_some_and(|s| s.expires_at == expires_at) {
            shard.remove(key);
            self.len.fetch_sub(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Sweeps up to `max` expired (or already removed) sessions from the
    /// front of `queue`.
    fn sweep(&self, queue: &mut VecDeque<(u64, SessionKey)>, max: usize, now: u64) {
        for _ in 0..max {
            match queue.front() {
                Some(&(expires_at, key)) if expires_at <= now => {
                    queue.pop_front();
                    self.remove_slot(expires_at, &key);
                }
                _ => return,
            }
        }
    }

    /// Evicts the oldest sessions until one more fits.
    fn make_room(&self, queue: &mut VecDeque<(u64, SessionKey)>) {
        while self.len.load(Ordering::Relaxed) >= self.capacity {
            let Some((expires_at, key)) = queue.pop_front() else {
                return;
            };
            self.remove_slot(expires_at, &key);
        }
    }

    /// Drops the slots of sessions no longer in the maps, once they
    /// outnumber the sessions.
    fn compact(&self, queue: &mut VecDeque<(u64, SessionKey)>) {
        let live = self.len.load(Ordering::Relaxed) as usize;
        if queue.len() <= 2 * live + 1024 {
            return;
        }
        queue.retain(|(expires_at, key)| {
            self.shard(key)
                .read()
                .get(key)
                .is_some_and(|s| s.expires_at == *expires_at)
        });
        queue.shrink_to(2 * queue.len().max(16));
    }
}

impl SessionStore for MemoryStore {
    fn load(&self, key: &SessionKey) -> SessionLookup {
        let now = self.clock.now_secs();
        let found = self
            .shard(key)
            .read()
            .get(key)
            .filter(|s| s.expires_at > now)
            .cloned();
        SessionLookup::Ready(found)
    }

    fn save(
        &self,
        key: SessionKey,
        session: Arc<Session>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let expires_at = session.expires_at;
        let mut queue = self.queue.lock();
        self.sweep(&mut queue, SWEEP_PER_SAVE, self.clock.now_secs());
        let replaced = {
            let mut shard = self.shard(&key).write();
            match shard.get_mut(&key) {
                // A refreshed session keeps its slot when its end is the same.
                Some(old) if old.expires_at == expires_at => {
                    *old = session.clone();
                    true
                }
                Some(_) => {
                    shard.remove(&key);
                    self.len.fetch_sub(1, Ordering::Relaxed);
                    false
                }
                None => false,
            }
        };
        if !replaced {
            self.make_room(&mut queue);
            self.shard(&key).write().insert(key, session);
            self.len.fetch_add(1, Ordering::Relaxed);
            queue.push_back((expires_at, key));
            self.compact(&mut queue);
        }
        Box::pin(async { Ok(()) })
    }

    fn remove(&self, key: &SessionKey) -> BoxFuture<'static, Result<(), StoreError>> {
        if self.shard(key).write().remove(key).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        Box::pin(async { Ok(()) })
    }

    fn remove_where(
        &self,
        sid: Option<&str>,
        subject: Option<&str>,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        let mut removed = 0;
        for shard in self.shards.iter() {
            shard.write().retain(|_, session| {
                let by_sid = sid.is_some() && session.sid.as_deref() == sid;
                let by_sub = sid.is_none() && subject == Some(session.identity.subject.as_str());
                if by_sid || by_sub {
                    removed += 1;
                }
                !(by_sid || by_sub)
            });
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        Box::pin(async move { Ok(removed) })
    }

    fn len(&self) -> u64 {
        let mut queue = self.queue.lock();
        self.sweep(&mut queue, usize::MAX, self.clock.now_secs());
        self.len.load(Ordering::Relaxed)
    }
}

/// Hashes a [`SessionKey`] (a SHA-256 output) by its first eight bytes.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length (a `usize`), then its bytes.
        if let Some(head) = bytes.get(..8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(head);
            self.0 ^= u64::from_le_bytes(b);
        }
    }

    fn write_usize(&mut self, _len: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, IdentitySource, PrecomputedHeaders};
    use crate::session::new_session_id;

    fn session(sub: &str, sid: &str, expires_at: u64) -> Arc<Session> {
        let identity = Identity {
            subject: sub.into(),
            email: None,
            email_verified: None,
            preferred_username: None,
            groups: vec![],
            name: None,
            issuer: "https://idp.example.com".into(),
            expires_at: Some(expires_at),
            source: IdentitySource::Session,
            claims: Default::default(),
        };
        let headers = PrecomputedHeaders::of(&identity);
        let mut s = Session::new(Arc::new(identity), headers, 0, expires_at);
        s.sid = Some(sid.into());
        Arc::new(s)
    }

    fn found(store: &MemoryStore, key: &SessionKey) -> Option<Arc<Session>> {
        match store.load(key) {
            SessionLookup::Ready(s) => s,
            SessionLookup::Pending(_) => panic!("the memory store answers at once"),
        }
    }

    fn clock_at(secs: u64) -> (SharedClock, Arc<crate::clock::ManualClock>) {
        let manual = Arc::new(crate::clock::ManualClock::new(secs));
        (manual.clone(), manual)
    }

    #[tokio::test]
    async fn full_store_drops_the_oldest_session() {
        let (clock, _) = clock_at(1_000);
        let store = MemoryStore::new(3, Duration::from_secs(60)).with_clock(clock);
        let keys: Vec<SessionKey> = (0..4).map(|_| new_session_id().1).collect();
        for (i, key) in keys.iter().enumerate() {
            store
                .save(*key, session(&format!("u{i}"), "s", 2_000 + i as u64))
                .await
                .unwrap();
        }
        assert_eq!(store.len(), 3);
        assert!(found(&store, &keys[0]).is_none(), "the oldest went");
        for key in &keys[1..] {
            assert!(found(&store, key).is_some());
        }
    }

    #[tokio::test]
    async fn expired_sessions_are_not_found_and_are_swept() {
        let (clock, manual) = clock_at(1_000);
        let store = MemoryStore::new(100, Duration::from_secs(60)).with_clock(clock);
        let (_, a) = new_session_id();
        let (_, b) = new_session_id();
        store.save(a, session("a", "s", 1_060)).await.unwrap();
        store.save(b, session("b", "s", 1_120)).await.unwrap();
        manual.advance(60);
        assert!(found(&store, &a).is_none(), "expired at 1060");
        assert!(found(&store, &b).is_some());
        assert_eq!(store.len(), 1, "swept");
        manual.advance(60);
        assert_eq!(store.len(), 0);
    }

    #[tokio::test]
    async fn a_saved_again_session_replaces_the_old_one_in_place() {
        let (clock, _) = clock_at(1_000);
        let store = MemoryStore::new(2, Duration::from_secs(60)).with_clock(clock);
        let (_, a) = new_session_id();
        let (_, b) = new_session_id();
        store.save(a, session("a", "s1", 2_000)).await.unwrap();
        store.save(b, session("b", "s", 2_000)).await.unwrap();
        // A refresh of `a`: same key, same end; nothing is evicted.
        store.save(a, session("a", "s2", 2_000)).await.unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(found(&store, &a).unwrap().sid.as_deref(), Some("s2"));
        assert!(found(&store, &b).is_some());
    }

    #[tokio::test]
    async fn logouts_do_not_grow_the_queue_without_bound() {
        let (clock, _) = clock_at(1_000);
        let store = MemoryStore::new(1_000_000, Duration::from_secs(60)).with_clock(clock);
        for i in 0..20_000u64 {
            let (_, key) = new_session_id();
            store
                .save(key, session("u", "s", 10_000 + i))
                .await
                .unwrap();
            store.remove(&key).await.unwrap();
        }
        assert_eq!(store.len(), 0);
        let slots = store.queue.lock().len();
        assert!(slots <= 1024 + 1, "{slots} queue slots for no session");
    }
}
