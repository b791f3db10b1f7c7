//! Sessions: what a signed-in browser has, the [`SessionStore`] trait
//! stores implement, and the in-memory (moka) store.
//!
//! The browser holds a random 256-bit session id in the session cookie; the
//! store is keyed by the SHA-256 of that id, so a leaked store listing does
//! not yield usable cookies. A login always creates a fresh id.
//!
//! Three stores come with the crate:
//!
//! - [`MemoryStore`]: in-process (sharded maps), lost on restart; one process only.
//! - [`CookieStore`]: stateless; the whole session sealed (AES-256-GCM) in
//!   the cookie itself, which the store reads through [`SessionSealer`].
//! - [`RedisStore`]: shared by any number of processes, with a short local
//!   read cache and cross-process invalidation and refresh locks.
//!
//! A store that keeps sessions itself implements only the required methods
//! of [`SessionStore`]; the provided ones (cache bypass, cross-process
//! refresh lock, cookie sealing, availability) have defaults that fit an
//! in-process store.

mod codec;
mod cookie;
mod memory;
mod redis;
pub mod seal;

pub use cookie::{CookieStore, CHUNK_BYTES, MAX_CHUNKS, REVOCATION_CAPACITY};
pub use memory::MemoryStore;
pub use redis::{RedisStore, RedisStoreOptions};

use crate::identity::{Identity, PrecomputedHeaders};
use crate::secret::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Store key: SHA-256 of the session id.
pub type SessionKey = [u8; 32];

/// One browser session.
#[derive(Debug)]
pub struct Session {
    /// Who is logged in.
    pub identity: Arc<Identity>,
    /// Identity headers, encoded once at login.
    pub headers: PrecomputedHeaders,
    /// Unix seconds when the session was created.
    pub created_at: u64,
    /// Unix seconds after which the session is over.
    pub expires_at: u64,
    /// The ID token, for `id_token_hint` at logout.
    pub id_token: Option<Secret>,
    /// The provider's session id (`sid`), for back-channel logout.
    pub sid: Option<String>,
    /// Provider tokens, kept only when the session can be refreshed.
    pub refresh: Option<Box<RefreshState>>,
    /// The access token of a session without [`Session::refresh`], kept
    /// only when a header sends it upstream; see
    /// [`Session::current_access_token`].
    pub access_token: Option<Box<Secret>>,
}

/// What refreshing a session needs; boxed so sessions without a refresh
/// token stay small.
#[derive(Debug)]
pub struct RefreshState {
    /// The current access token.
    pub access_token: Secret,
    /// Unix seconds when the access token expires, when known.
    pub access_expires_at: Option<u64>,
    /// Unix seconds from which the access token is refreshed.
    pub refresh_at: Option<u64>,
    /// The refresh token.
    pub refresh_token: Secret,
    /// Serializes refreshes of this session: concurrent requests never spend
    /// a rotating refresh token twice.
    pub lock: tokio::sync::Mutex<()>,
}

impl Session {
    /// A session for `identity` from `created_at` to `expires_at`, with no
    /// provider tokens besides what the caller sets afterwards.
    pub fn new(
        identity: Arc<Identity>,
        headers: PrecomputedHeaders,
        created_at: u64,
        expires_at: u64,
    ) -> Self {
        Session {
            identity,
            headers,
            created_at,
            expires_at,
            id_token: None,
            sid: None,
            refresh: None,
            access_token: None,
        }
    }

    /// The access token to send upstream: the refresh state's (current
    /// after every refresh), else the one kept for upstream headers.
    pub fn current_access_token(&self) -> Option<&Secret> {
        match &self.refresh {
            Some(r) => Some(&r.access_token),
            None => self.access_token.as_deref(),
        }
    }

    /// Records provider tokens obtained at `now` (kept only with a refresh
    /// token): the access token lives
    /// `expires_in` seconds and is refreshed `margin` seconds before it
    /// expires, or at half its life when it lives less than twice `margin`.
    pub fn set_tokens(
        &mut self,
        access_token: Secret,
        refresh_token: Option<Secret>,
        expires_in: Option<u64>,
        now: u64,
        margin: u64,
    ) {
        self.refresh = refresh_token.map(|refresh_token| {
            Box::new(RefreshState {
                access_token,
                access_expires_at: expires_in.map(|ttl| now + ttl),
                refresh_at: expires_in.map(|ttl| now + ttl - margin.min(ttl / 2)),
                refresh_token,
                lock: tokio::sync::Mutex::new(()),
            })
        });
    }

    /// Whether the access token should be refreshed now.
    pub fn needs_refresh(&self, now: u64) -> bool {
        self.refresh
            .as_ref()
            .is_some_and(|r| r.refresh_at.is_some_and(|at| now >= at))
    }
}

/// Why a store operation failed: what was attempted, and the backend's
/// error as the source.
#[derive(Debug, thiserror::Error)]
#[error("session store: {context}")]
pub struct StoreError {
    context: &'static str,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// `context` (e.g. "redis unreachable") caused by `source`.
    pub fn new(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError {
            context,
            source: Some(source.into()),
        }
    }

    /// `context` with no underlying error.
    pub fn message(context: &'static str) -> Self {
        StoreError {
            context,
            source: None,
        }
    }
}

/// Result of [`SessionStore::load`]: immediate for in-process stores, a
/// future for remote ones.
pub enum SessionLookup {
    /// Known now.
    Ready(Option<Arc<Session>>),
    /// To be awaited.
    Pending(BoxFuture<'static, Result<Option<Arc<Session>>, StoreError>>),
}

impl SessionLookup {
    /// The session, awaiting a remote store when the lookup is pending.
    pub async fn wait(self) -> Result<Option<Arc<Session>>, StoreError> {
        match self {
            SessionLookup::Ready(s) => Ok(s),
            SessionLookup::Pending(fut) => fut.await,
        }
    }
}

/// A lock that serializes refreshes of one session, held until
/// [`RefreshLock::release`] (or dropped; a cross-process lock then expires
/// by itself).
#[must_use]
pub struct RefreshLock {
    release: Option<Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>>,
}

impl std::fmt::Debug for RefreshLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshLock").finish_non_exhaustive()
    }
}

impl RefreshLock {
    /// No lock beyond the session's own in-process one.
    pub fn none() -> Self {
        RefreshLock { release: None }
    }

    /// A lock released by running `release` (which owns any guard).
    pub fn with_release(release: impl FnOnce() -> BoxFuture<'static, ()> + Send + 'static) -> Self {
        RefreshLock {
            release: Some(Box::new(release)),
        }
    }

    /// Releases the lock.
    pub async fn release(mut self) {
        if let Some(release) = self.release.take() {
            release().await;
        }
    }
}

/// A session opened from the session cookie by a [`SessionSealer`].
#[derive(Debug)]
pub struct Opened {
    /// The session's store key (sealed inside the cookie).
    pub key: SessionKey,
    /// The session.
    pub session: Arc<Session>,
    /// The cookie should be written again (a newer copy of the session, a
    /// rotated secret, or the idle timer to be reset).
    pub reseal: bool,
}

/// Stores that keep the session in the cookie itself: seal a session into
/// cookie values and open them again.
pub trait SessionSealer: Send + Sync {
    /// `session` (stored under `key`) sealed for the cookie `name`: one
    /// value, or several when it is too large for one cookie (at most
    /// [`SessionSealer::max_chunks`]).
    fn seal(
        &self,
        name: &str,
        key: &SessionKey,
        session: &Session,
    ) -> Result<Vec<String>, StoreError>;
    /// The session sealed in the values of cookie `name`, in chunk order;
    /// `None` when they do not open (tampered, reordered, incomplete,
    /// expired, revoked, or sealed with an unknown key).
    fn open(&self, name: &str, chunks: &[&str]) -> Option<Opened>;
    /// Most cookies one session is split into.
    fn max_chunks(&self) -> usize;
}

/// Where sessions live.
pub trait SessionStore: Send + Sync + 'static {
    /// The session stored under `key`, if any and not expired.
    fn load(&self, key: &SessionKey) -> SessionLookup;
    /// Stores `session` under `key` until its `expires_at`.
    fn save(
        &self,
        key: SessionKey,
        session: Arc<Session>,
    ) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Deletes the session under `key`.
    fn remove(&self, key: &SessionKey) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Deletes every session whose provider `sid` or subject matches.
    fn remove_where(
        &self,
        sid: Option<&str>,
        subject: Option<&str>,
    ) -> BoxFuture<'static, Result<u64, StoreError>>;
    /// Approximate number of sessions.
    fn len(&self) -> u64;
    /// Whether the store holds no session.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Like [`SessionStore::load`], but from the authoritative copy,
    /// bypassing any local cache (refresh reads with it). Default: `load`.
    fn load_fresh(&self, key: &SessionKey) -> SessionLookup {
        self.load(key)
    }
    /// Serializes refreshes of the session under `key` among every process
    /// sharing the store (so a rotating refresh token is spent once).
    /// Default: no lock beyond the in-process one every session has.
    fn lock_refresh(
        &self,
        key: &SessionKey,
    ) -> BoxFuture<'static, Result<RefreshLock, StoreError>> {
        let _ = key;
        Box::pin(async { Ok(RefreshLock::none()) })
    }
    /// For stores that keep the session in the cookie itself: how it is
    /// sealed. Default `None`: the cookie carries a random session id.
    fn sealer(&self) -> Option<&dyn SessionSealer> {
        None
    }
    /// Whether the store can be used now (for readiness). Default `true`.
    fn is_available(&self) -> bool {
        true
    }
}

/// A new random session id (the cookie value) and its store key.
pub fn new_session_id() -> (String, SessionKey) {
    let mut raw = [0u8; 32];
    crate::random::fill_random(&mut raw);
    let id = URL_SAFE_NO_PAD.encode(raw);
    (id, key_of_raw(&raw))
}

/// The store key for a cookie value, if it has the shape of a session id.
pub fn key_for_cookie(value: &str) -> Option<SessionKey> {
    if value.len() != 43 {
        return None;
    }
    let mut raw = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(value.as_bytes(), &mut raw) {
        Ok(32) => Some(key_of_raw(&raw)),
        _ => None,
    }
}

fn key_of_raw(raw: &[u8; 32]) -> SessionKey {
    Sha256::digest(raw).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::identity::IdentitySource;
    use std::time::Duration;

    fn session(sub: &str, sid: Option<&str>, expires_at: u64) -> Arc<Session> {
        let mut s = Session::new(
            Arc::new(Identity::new(sub, "https://idp", IdentitySource::Session)),
            PrecomputedHeaders::default(),
            0,
            expires_at,
        );
        s.sid = sid.map(String::from);
        Arc::new(s)
    }

    #[test]
    fn session_needs_refresh_only_with_refresh_token_near_expiry() {
        let identity = session("a", None, 10).identity.clone();
        let mut s = Session::new(identity, PrecomputedHeaders::default(), 0, 10_000);
        s.set_tokens(Secret::new("at"), None, Some(1000), 0, 60);
        assert!(!s.needs_refresh(990), "no refresh token");
        s.set_tokens(
            Secret::new("at"),
            Some(Secret::new("rt")),
            Some(1000),
            0,
            60,
        );
        assert!(s.needs_refresh(940));
        assert!(!s.needs_refresh(939));
        // Short-lived tokens are refreshed at half-life.
        s.set_tokens(
            Secret::new("at"),
            Some(Secret::new("rt")),
            Some(30),
            100,
            60,
        );
        assert!(!s.needs_refresh(114));
        assert!(s.needs_refresh(115));
    }

    fn ready(l: SessionLookup) -> Option<Arc<Session>> {
        match l {
            SessionLookup::Ready(s) => s,
            SessionLookup::Pending(_) => panic!("memory store is never pending"),
        }
    }

    #[test]
    fn session_id_is_random_and_keyed_by_hash() {
        let (a, ka) = new_session_id();
        let (b, kb) = new_session_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(key_for_cookie(&a), Some(ka));
        assert_eq!(key_for_cookie(&b), Some(kb));
        assert_eq!(key_for_cookie("short"), None);
        assert_eq!(key_for_cookie(&"!".repeat(43)), None);
    }

    #[tokio::test]
    async fn memory_store_saves_loads_and_removes() {
        let store = MemoryStore::new(100, Duration::from_secs(60));
        let (_, key) = new_session_id();
        let far = crate::clock::system_now_secs() + 3600;
        store
            .save(key, session("alice", Some("s1"), far))
            .await
            .unwrap();
        assert_eq!(ready(store.load(&key)).unwrap().identity.subject, "alice");
        store.remove(&key).await.unwrap();
        assert!(ready(store.load(&key)).is_none());
    }

    #[tokio::test]
    async fn memory_store_expired_session_is_not_returned() {
        let clock = Arc::new(ManualClock::new(1_000));
        let store = MemoryStore::new(100, Duration::from_secs(60)).with_clock(clock.clone());
        let (_, key) = new_session_id();
        store
            .save(key, session("alice", None, 1_010))
            .await
            .unwrap();
        assert!(ready(store.load(&key)).is_some());
        clock.set(1_009);
        assert!(ready(store.load(&key)).is_some());
        clock.set(1_010);
        assert!(ready(store.load(&key)).is_none(), "expires_at is exclusive");
    }

    #[tokio::test]
    async fn memory_store_remove_where_matches_sid_or_subject() {
        let store = MemoryStore::new(100, Duration::from_secs(60));
        let far = crate::clock::system_now_secs() + 3600;
        let (_, k1) = new_session_id();
        let (_, k2) = new_session_id();
        let (_, k3) = new_session_id();
        store
            .save(k1, session("alice", Some("s1"), far))
            .await
            .unwrap();
        store
            .save(k2, session("alice", Some("s2"), far))
            .await
            .unwrap();
        store
            .save(k3, session("bob", Some("s3"), far))
            .await
            .unwrap();
        assert_eq!(store.remove_where(Some("s1"), None).await.unwrap(), 1);
        assert!(ready(store.load(&k1)).is_none());
        assert!(ready(store.load(&k2)).is_some());
        assert_eq!(store.remove_where(None, Some("alice")).await.unwrap(), 1);
        assert!(ready(store.load(&k2)).is_none());
        assert!(ready(store.load(&k3)).is_some());
    }
}
