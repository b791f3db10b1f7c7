//! The stateless store: the whole session sealed in the session cookie.
//!
//! The session (identity, expiry, provider tokens, a random session key) is
//! encoded ([`super::codec`]), sealed with AES-256-GCM under the session
//! secret bound to the cookie name ([`super::seal`]), base64url-encoded and
//! split into chunks of at most [`CHUNK_BYTES`] when it would not fit one
//! cookie. Chunks are never sealed separately: the one authentication tag
//! covers all of them, so a missing, extra, reordered, swapped or altered
//! chunk does not open. Expiry (and the optional idle limit) is read from
//! inside the sealed payload against the injected clock, never from the
//! cookie's `Max-Age`.
//!
//! # What a stateless store cannot do
//!
//! The server keeps no session, so it cannot end one by itself: a copied
//! cookie stays valid until its sealed expiry, on every replica. What this
//! store does instead is a per-process revocation list ([`Revocations`]):
//! sign-out revokes the session's key, a back-channel logout its `sid` (or
//! every session of its `sub` created before the logout). Its limits: only
//! the process that received the logout knows (other replicas keep
//! accepting the cookie), it is lost on restart, and it is bounded
//! ([`REVOCATION_CAPACITY`] entries per kind, least recently used dropped
//! first). Use the Redis store when logout must be global.
//!
//! Refresh is single-flight within one process (a keyed lock and a short
//! memory of the refreshed session, so concurrent requests presenting the
//! old cookie get the new one); two replicas refreshing the same cookie at
//! the same moment both spend the refresh token, which a provider that
//! detects refresh-token reuse answers by ending the session.

use super::codec::{self, Extras};
use super::seal::Sealer;
use super::{
    Opened, RefreshLock, Session, SessionKey, SessionLookup, SessionSealer, SessionStore,
    StoreError,
};
use crate::clock::SharedClock;
use crate::secret::SessionSecret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::future::BoxFuture;
use moka::policy::EvictionPolicy;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Largest value of one chunk cookie, in bytes: with the name and
/// attributes a cookie stays under the 4096 bytes browsers keep.
pub const CHUNK_BYTES: usize = 3800;
/// Most chunks a session is split into (about 30 KB; requests carry at most
/// 64 KiB of headers).
pub const MAX_CHUNKS: usize = 8;
/// Most entries of each revocation kind (keys, `sid`s, subjects) a process
/// remembers.
pub const REVOCATION_CAPACITY: u64 = 100_000;
/// How long a refreshed session is remembered for requests that still
/// carry the cookie from before the refresh.
const SUCCESSOR_TTL: Duration = Duration::from_secs(60);

/// Sessions sealed in the cookie; see the [module docs](self).
pub struct CookieStore {
    sealer: Sealer,
    clock: SharedClock,
    idle: Option<u64>,
    revoked: Revocations,
    /// Sessions refreshed in the last minute, by key.
    successors: moka::sync::Cache<SessionKey, Arc<Session>>,
    /// Per-session refresh locks.
    locks: moka::sync::Cache<SessionKey, Arc<tokio::sync::Mutex<()>>>,
}

impl std::fmt::Debug for CookieStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieStore")
            .field("idle_timeout", &self.idle)
            .finish_non_exhaustive()
    }
}

impl CookieStore {
    /// A store sealing with `secret` and still opening cookies sealed with
    /// any of `previous` (at most [`super::seal::MAX_PREVIOUS_SECRETS`]).
    /// `lifetime` is the longest session (how long revocations are kept).
    pub fn new(secret: &SessionSecret, previous: &[SessionSecret], lifetime: Duration) -> Self {
        CookieStore {
            sealer: Sealer::new("session-cookie", secret, previous),
            clock: crate::clock::system(),
            idle: None,
            revoked: Revocations::new(lifetime),
            successors: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(SUCCESSOR_TTL)
                .build(),
            locks: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(60))
                .build(),
        }
    }

    /// Reads expiry against `clock` (tests pin it).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Ends a session that was not used for `idle` (read from the sealed
    /// payload; the cookie is rewritten at most every `idle / 2` to keep an
    /// active session alive). Default: only the lifetime limits a session.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = Some(idle.as_secs().max(1));
        self
    }

    fn now(&self) -> u64 {
        self.clock.now_secs()
    }

    fn live(&self, key: &SessionKey, s: &Session, now: u64) -> bool {
        s.expires_at > now && !self.revoked.is_revoked(key, s)
    }
}

impl SessionSealer for CookieStore {
    fn seal(
        &self,
        name: &str,
        key: &SessionKey,
        session: &Session,
    ) -> Result<Vec<String>, StoreError> {
        let now = self.now();
        let mut extras = Extras {
            key: Some(key),
            touched_at: Some(now),
            without_id_token: false,
        };
        let mut text = self.seal_text(name, session, extras);
        if text.len() > CHUNK_BYTES * MAX_CHUNKS && session.id_token.is_some() {
            // The ID token only serves as id_token_hint at logout.
            extras.without_id_token = true;
            text = self.seal_text(name, session, extras);
        }
        if text.len() > CHUNK_BYTES * MAX_CHUNKS {
            return Err(StoreError::message(
                "session too large for the cookie store",
            ));
        }
        let chunks = text
            .as_bytes()
            .chunks(CHUNK_BYTES)
            // base64url is ASCII: every split is on a character boundary.
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        Ok(chunks)
    }

    fn open(&self, name: &str, chunks: &[&str]) -> Option<Opened> {
        if chunks.is_empty()
            || chunks.len() > MAX_CHUNKS
            || chunks.iter().any(|c| c.is_empty() || c.len() > CHUNK_BYTES)
        {
            return None;
        }
        let mut text = String::with_capacity(chunks.iter().map(|c| c.len()).sum());
        for c in chunks {
            text.push_str(c);
        }
        let sealed = URL_SAFE_NO_PAD.decode(text.as_bytes()).ok()?;
        let plain = self.sealer.open(name.as_bytes(), &sealed)?;
        let decoded = codec::decode(&plain)?;
        let key = decoded.key?;
        let now = self.now();
        let mut reseal = !self.sealer.is_current(&sealed);
        if let Some(idle) = self.idle {
            let touched = decoded.touched_at?;
            if now >= touched.saturating_add(idle) {
                return None;
            }
            reseal |= now >= touched.saturating_add(idle / 2);
        }
        let session = match self.successors.get(&key) {
            Some(newer) => {
                reseal = true;
                newer
            }
            None => Arc::new(decoded.session),
        };
        if !self.live(&key, &session, now) {
            return None;
        }
        Some(Opened {
            key,
            session,
            reseal,
        })
    }

    fn max_chunks(&self) -> usize {
        MAX_CHUNKS
    }
}

impl CookieStore {
    fn seal_text(&self, name: &str, session: &Session, extras: Extras<'_>) -> String {
        let plain = codec::encode(session, extras);
        URL_SAFE_NO_PAD.encode(self.sealer.seal(name.as_bytes(), &plain))
    }
}

impl SessionStore for CookieStore {
    /// Only a session refreshed by this process in the last minute (the
    /// cookie itself is read through [`SessionSealer::open`]).
    fn load(&self, key: &SessionKey) -> SessionLookup {
        let now = self.now();
        SessionLookup::Ready(self.successors.get(key).filter(|s| self.live(key, s, now)))
    }

    /// Remembers `session` briefly for requests still carrying the cookie
    /// from before (the cookie itself is written by the caller).
    fn save(
        &self,
        key: SessionKey,
        session: Arc<Session>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.successors.insert(key, session);
        Box::pin(async { Ok(()) })
    }

    /// Revokes the session in this process (the caller clears the cookie).
    fn remove(&self, key: &SessionKey) -> BoxFuture<'static, Result<(), StoreError>> {
        self.successors.invalidate(key);
        self.revoked.keys.insert(*key, ());
        Box::pin(async { Ok(()) })
    }

    /// Revokes, in this process, every session of `sid` (or, without one,
    /// every session of `subject` created until now). Returns 0: a
    /// stateless store does not know how many there are.
    fn remove_where(
        &self,
        sid: Option<&str>,
        subject: Option<&str>,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        match (sid, subject) {
            (Some(sid), _) => self.revoked.sids.insert(digest(sid), ()),
            (None, Some(sub)) => self.revoked.subjects.insert(digest(sub), self.now()),
            (None, None) => {}
        }
        Box::pin(async { Ok(0) })
    }

    /// Unknown to a stateless store: 0.
    fn len(&self) -> u64 {
        0
    }

    fn lock_refresh(
        &self,
        key: &SessionKey,
    ) -> BoxFuture<'static, Result<RefreshLock, StoreError>> {
        let lock = self
            .locks
            .get_with(*key, || Arc::new(tokio::sync::Mutex::new(())));
        Box::pin(async move {
            let guard = lock.lock_owned().await;
            Ok(RefreshLock::with_release(move || {
                drop(guard);
                Box::pin(async {})
            }))
        })
    }

    fn sealer(&self) -> Option<&dyn SessionSealer> {
        Some(self)
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The per-process revocation list of the cookie store: session keys,
/// provider `sid`s, and subjects with the time of their logout. Each kind
/// holds at most [`REVOCATION_CAPACITY`] entries (least recently used
/// evicted first) for at most the session lifetime.
struct Revocations {
    keys: moka::sync::Cache<SessionKey, ()>,
    sids: moka::sync::Cache<[u8; 32], ()>,
    subjects: moka::sync::Cache<[u8; 32], u64>,
}

impl Revocations {
    fn new(lifetime: Duration) -> Self {
        fn cache<K, V>(lifetime: Duration) -> moka::sync::Cache<K, V>
        where
            K: std::hash::Hash + Eq + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
        {
            moka::sync::Cache::builder()
                .max_capacity(REVOCATION_CAPACITY)
                .eviction_policy(EvictionPolicy::lru())
                .time_to_live(lifetime)
                .build()
        }
        Revocations {
            keys: cache(lifetime),
            sids: cache(lifetime),
            subjects: cache(lifetime),
        }
    }

    fn is_revoked(&self, key: &SessionKey, s: &Session) -> bool {
        self.keys.contains_key(key)
            || s.sid
                .as_deref()
                .is_some_and(|sid| self.sids.contains_key(&digest(sid)))
            || self
                .subjects
                .get(&digest(&s.identity.subject))
                .is_some_and(|at| s.created_at <= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::session::codec::tests::sample;

    const NAME: &str = "__Host-oidc-gateway";

    fn secret(b: u8) -> SessionSecret {
        SessionSecret::from_bytes(&[b; 32]).unwrap()
    }

    fn store(clock: &Arc<ManualClock>) -> CookieStore {
        CookieStore::new(&secret(1), &[], Duration::from_secs(3600)).with_clock(clock.clone())
    }

    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn cookie_store_seal_open_round_trip() {
        let clock = Arc::new(ManualClock::new(1_000));
        let s = store(&clock);
        let chunks = s.seal(NAME, &[9; 32], &sample(2)).unwrap();
        assert_eq!(chunks.len(), 1);
        let opened = s.open(NAME, &refs(&chunks)).unwrap();
        assert_eq!(opened.key, [9; 32]);
        assert_eq!(opened.session.identity.subject, "alice");
        assert!(!opened.reseal);
        assert!(s.open("other-name", &refs(&chunks)).is_none());
    }

    #[test]
    fn cookie_store_value_holds_no_token_bytes() {
        let clock = Arc::new(ManualClock::new(1_000));
        let chunks = store(&clock).seal(NAME, &[9; 32], &sample(2)).unwrap();
        let all = chunks.concat();
        for needle in ["ACCESS-TOKEN", "REFRESH-TOKEN", "ID-TOKEN", "alice"] {
            assert!(!all.contains(needle), "{needle} in the clear");
        }
    }

    #[test]
    fn cookie_store_large_session_is_chunked_and_chunks_are_bound() {
        let clock = Arc::new(ManualClock::new(1_000));
        let s = store(&clock);
        let chunks = s.seal(NAME, &[9; 32], &sample(600)).unwrap();
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= CHUNK_BYTES));
        let all = refs(&chunks);
        let opened = s.open(NAME, &all).unwrap();
        assert_eq!(opened.session.identity.groups.len(), 600);

        // Missing (first, middle, last), extra, reordered, tampered.
        for skip in [0, 1, all.len() - 1] {
            let mut missing = all.clone();
            missing.remove(skip);
            assert!(s.open(NAME, &missing).is_none(), "chunk {skip} missing");
        }
        let mut extra = all.clone();
        extra.push("AAAA");
        assert!(s.open(NAME, &extra).is_none());
        let mut swapped = all.clone();
        swapped.swap(0, 1);
        assert!(s.open(NAME, &swapped).is_none());
        let mut tampered = chunks.clone();
        let mid = tampered[1].len() / 2;
        let c = if tampered[1].as_bytes()[mid] == b'A' {
            "B"
        } else {
            "A"
        };
        tampered[1].replace_range(mid..=mid, c);
        assert!(s.open(NAME, &refs(&tampered)).is_none());
        // Chunks of another session do not mix in.
        let other = s.seal(NAME, &[8; 32], &sample(600)).unwrap();
        let mut mixed = all.clone();
        mixed[1] = &other[1];
        assert!(s.open(NAME, &mixed).is_none());
        // Bounded input.
        let too_many = vec!["AAAA"; MAX_CHUNKS + 1];
        assert!(s.open(NAME, &too_many).is_none());
        let long = "A".repeat(CHUNK_BYTES + 1);
        assert!(s.open(NAME, &[long.as_str()]).is_none());
        assert!(s.open(NAME, &["not base64 !"]).is_none());
        assert!(s.open(NAME, &[]).is_none());
    }

    #[test]
    fn cookie_store_too_large_drops_id_token_then_refuses() {
        let clock = Arc::new(ManualClock::new(1_000));
        let s = store(&clock);
        let mut big = sample(0);
        big.id_token = Some(crate::secret::Secret::new(
            "x".repeat(CHUNK_BYTES * MAX_CHUNKS),
        ));
        let chunks = s.seal(NAME, &[1; 32], &big).unwrap();
        assert!(s
            .open(NAME, &refs(&chunks))
            .unwrap()
            .session
            .id_token
            .is_none());
        assert!(s.seal(NAME, &[1; 32], &sample(5_000)).is_err());
    }

    #[test]
    fn cookie_store_expiry_is_read_from_the_payload() {
        let clock = Arc::new(ManualClock::new(1_000));
        let s = store(&clock);
        let chunks = s.seal(NAME, &[9; 32], &sample(0)).unwrap();
        clock.set(1_999);
        assert!(s.open(NAME, &refs(&chunks)).is_some());
        clock.set(2_000);
        assert!(
            s.open(NAME, &refs(&chunks)).is_none(),
            "expires_at is exclusive"
        );
    }

    #[test]
    fn cookie_store_idle_timeout_from_payload_and_reseal() {
        let clock = Arc::new(ManualClock::new(1_000));
        let s = store(&clock).with_idle_timeout(Duration::from_secs(100));
        let chunks = s.seal(NAME, &[9; 32], &sample(0)).unwrap();
        clock.set(1_049);
        assert!(!s.open(NAME, &refs(&chunks)).unwrap().reseal);
        clock.set(1_050);
        assert!(s.open(NAME, &refs(&chunks)).unwrap().reseal, "half idle");
        clock.set(1_100);
        assert!(s.open(NAME, &refs(&chunks)).is_none(), "idle");
        // Resealed at 1_090: alive until 1_190.
        clock.set(1_090);
        let again = s.seal(NAME, &[9; 32], &sample(0)).unwrap();
        clock.set(1_150);
        assert!(s.open(NAME, &refs(&again)).is_some());
    }

    #[test]
    fn cookie_store_rotation_previous_secret_opens_and_reseals() {
        let clock = Arc::new(ManualClock::new(1_000));
        let old = store(&clock);
        let chunks = old.seal(NAME, &[9; 32], &sample(0)).unwrap();
        let rotated = CookieStore::new(&secret(2), &[secret(1)], Duration::from_secs(3600))
            .with_clock(clock.clone());
        let opened = rotated.open(NAME, &refs(&chunks)).unwrap();
        assert!(opened.reseal, "sealed with a previous secret: write again");
        let without =
            CookieStore::new(&secret(2), &[], Duration::from_secs(3600)).with_clock(clock.clone());
        assert!(without.open(NAME, &refs(&chunks)).is_none());
    }

    #[tokio::test]
    async fn cookie_store_revocation_by_key_sid_and_subject() {
        let clock = Arc::new(ManualClock::new(1_000));
        let s = store(&clock);
        let a = s.seal(NAME, &[1; 32], &sample(0)).unwrap();
        s.remove(&[1; 32]).await.unwrap();
        assert!(s.open(NAME, &refs(&a)).is_none());

        let b = s.seal(NAME, &[2; 32], &sample(0)).unwrap();
        s.remove_where(Some("other-sid"), None).await.unwrap();
        assert!(s.open(NAME, &refs(&b)).is_some());
        s.remove_where(Some("sid-1"), None).await.unwrap();
        assert!(s.open(NAME, &refs(&b)).is_none());

        let s = store(&clock);
        let c = s.seal(NAME, &[3; 32], &sample(0)).unwrap();
        clock.set(1_500);
        s.remove_where(None, Some("alice")).await.unwrap();
        assert!(
            s.open(NAME, &refs(&c)).is_none(),
            "created before the logout"
        );
        let mut later = sample(0);
        later.created_at = 1_501;
        let d = s.seal(NAME, &[4; 32], &later).unwrap();
        assert!(s.open(NAME, &refs(&d)).is_some(), "login after the logout");
    }

    #[tokio::test]
    async fn cookie_store_successor_replaces_the_old_cookie() {
        let clock = Arc::new(ManualClock::new(1_000));
        let s = store(&clock);
        let old = s.seal(NAME, &[1; 32], &sample(0)).unwrap();
        let mut newer = sample(1);
        newer.sid = Some("sid-1".into());
        s.save([1; 32], Arc::new(newer)).await.unwrap();
        let opened = s.open(NAME, &refs(&old)).unwrap();
        assert!(opened.reseal);
        assert_eq!(opened.session.identity.groups.len(), 1);
    }
}
