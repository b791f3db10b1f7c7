//! The shared store: sessions in Redis, seen by every gateway process that
//! uses the same Redis and key prefix.
//!
//! # Key layout (every key under the prefix, every key with a TTL)
//!
//! | key | type | value | TTL |
//! |---|---|---|---|
//! | `<prefix>session:<hex key>` | string | the session, sealed (AES-256-GCM under the session secret, bound to the key name) | the session's remaining lifetime |
//! | `<prefix>sid:<hex sha256(sid)>` | set | hex keys of the sessions of that provider `sid` | the newest member's lifetime |
//! | `<prefix>sub:<hex sha256(sub)>` | set | hex keys of the sessions of that subject | the newest member's lifetime |
//! | `<prefix>lock:<hex key>` | string | random token of the process refreshing the session | the lock TTL (10 s) |
//!
//! `<hex key>` is the SHA-256 of the cookie's session id, so a dump of Redis
//! holds no cookie value, and the sealed values hold no readable token or
//! claim. Invalidations are published on the channel `<prefix>invalidate`
//! (hex keys separated by spaces).
//!
//! # Local cache
//!
//! Reads go through a small in-process cache ([`RedisStoreOptions::cache_ttl`],
//! default 2 s): a hit answers without a round trip, on the synchronous
//! fast path. A sign-out or back-channel logout on any process deletes the
//! session in Redis and publishes its key; every process drops it from its
//! cache on receipt. If a message is missed (the subscription was down: it
//! is re-established on its own, and the whole cache is dropped when it
//! is), the cache TTL still bounds how long a process keeps serving an
//! ended session.
//!
//! # Failures
//!
//! Every command is bounded by [`RedisStoreOptions::timeout`]. A failed or
//! slow command is a [`StoreError`] (the layer answers 503), and marks the
//! store unavailable for readiness until a command or the 1 s health ping
//! succeeds again. The connection manager reconnects by itself; nothing
//! needs a restart.

use super::codec::{self, Extras};
use super::seal::Sealer;
use super::{RefreshLock, Session, SessionKey, SessionLookup, SessionStore, StoreError};
use crate::clock::SharedClock;
use crate::secret::{Secret, SessionSecret};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Settings of a [`RedisStore`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisStoreOptions {
    /// `redis://[user:password@]host[:port][/db]` or `rediss://` for TLS.
    pub url: Secret,
    /// Prefix of every key and of the invalidation channel. Default `oidc-gateway:`.
    pub key_prefix: String,
    /// Longest time a process serves a session from its local cache without
    /// asking Redis; zero disables the cache. Default 2 s.
    pub cache_ttl: Duration,
    /// Most sessions in the local cache. Default 100000.
    pub cache_capacity: u64,
    /// Bound on every Redis command (and on connecting). Default 1 s.
    pub timeout: Duration,
    /// How long a refresh lock is held at most. Default 10 s.
    pub lock_ttl: Duration,
}

impl RedisStoreOptions {
    /// Defaults for the Redis at `url`.
    pub fn new(url: Secret) -> Self {
        RedisStoreOptions {
            url,
            key_prefix: "oidc-gateway:".into(),
            cache_ttl: Duration::from_secs(2),
            cache_capacity: 100_000,
            timeout: Duration::from_secs(1),
            lock_ttl: Duration::from_secs(10),
        }
    }
}

/// Sessions in Redis; see the [module docs](self).
pub struct RedisStore {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Inner {
    conn: ConnectionManager,
    sealer: Sealer,
    prefix: String,
    channel: String,
    cache: Option<moka::sync::Cache<SessionKey, Arc<Session>>>,
    clock: SharedClock,
    available: AtomicBool,
    timeout: Duration,
    lock_ttl: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("available", &self.inner.available.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl RedisStore {
    /// A store on the Redis of `options`, sealing with `secret` and opening
    /// with it or any of `previous`. Connects lazily (an unreachable Redis
    /// is not an error here: requests get 503 until it answers). Spawns the
    /// invalidation subscriber and the health ping on the current Tokio
    /// runtime.
    ///
    /// # Errors
    /// The URL does not parse, or there is no Tokio runtime.
    pub fn connect(
        options: RedisStoreOptions,
        secret: &SessionSecret,
        previous: &[SessionSecret],
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| StoreError::new("redis store needs a tokio runtime", e))?;
        let client = redis::Client::open(options.url.expose())
            .map_err(|e| StoreError::new("redis_url is not a redis URL", e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| StoreError::new("redis connection manager", e))?;
        let cache = (!options.cache_ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(options.cache_capacity)
                .time_to_live(options.cache_ttl)
                .build()
        });
        let inner = Arc::new(Inner {
            conn,
            sealer: Sealer::new("session-redis", secret, previous),
            channel: format!("{}invalidate", options.key_prefix),
            prefix: options.key_prefix,
            cache,
            clock,
            available: AtomicBool::new(false),
            timeout: options.timeout,
            lock_ttl: options.lock_ttl,
        });
        let mut tasks = vec![rt.spawn(health(Arc::downgrade(&inner)))];
        if inner.cache.is_some() {
            tasks.push(rt.spawn(subscribe(client, Arc::downgrade(&inner))));
        }
        Ok(RedisStore { inner, tasks })
    }
}

// ===== impl Inner =====

impl Inner {
    fn session_key(&self, key: &SessionKey) -> String {
        format!("{}session:{}", self.prefix, hex(key))
    }

    fn index_key(&self, kind: &str, value: &str) -> String {
        format!(
            "{}{kind}:{}",
            self.prefix,
            hex(&Sha256::digest(value.as_bytes()))
        )
    }

    /// Runs `cmd` with the timeout, recording availability.
    async fn run<T, F>(&self, what: &'static str, f: F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => {
                self.available.store(true, Ordering::Relaxed);
                Ok(v)
            }
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.available.store(false, Ordering::Relaxed);
                }
                Err(StoreError::new(what, e))
            }
            Err(elapsed) => {
                self.available.store(false, Ordering::Relaxed);
                Err(StoreError::new(what, elapsed))
            }
        }
    }

    fn encode_value(&self, name: &str, session: &Session) -> Vec<u8> {
        self.sealer
            .seal(name.as_bytes(), &codec::encode(session, Extras::default()))
    }

    fn decode_value(&self, name: &str, value: &[u8]) -> Option<Session> {
        let plain = self.sealer.open(name.as_bytes(), value)?;
        codec::decode(&plain).map(|d| d.session)
    }

    fn cached(&self, key: &SessionKey) -> Option<Arc<Session>> {
        let now = self.clock.now_secs();
        self.cache.as_ref()?.get(key).filter(|s| s.expires_at > now)
    }

    async fn fetch(self: Arc<Self>, key: SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        let name = self.session_key(&key);
        let mut conn = self.conn.clone();
        let value: Option<Vec<u8>> = self
            .run(
                "redis GET",
                redis::cmd("GET").arg(&name).query_async(&mut conn),
            )
            .await?;
        let Some(value) = value else {
            if let Some(c) = &self.cache {
                c.invalidate(&key);
            }
            return Ok(None);
        };
        let Some(session) = self.decode_value(&name, &value) else {
            // Sealed with a key we no longer hold, or not ours: no session.
            return Ok(None);
        };
        if session.expires_at <= self.clock.now_secs() {
            return Ok(None);
        }
        let session = Arc::new(session);
        if let Some(c) = &self.cache {
            c.insert(key, session.clone());
        }
        Ok(Some(session))
    }

    fn forget_locally(&self, keys: &[SessionKey]) {
        if let Some(c) = &self.cache {
            for k in keys {
                c.invalidate(k);
            }
        }
    }

    /// Deletes the sessions `hex_keys` and tells every process.
    async fn delete(&self, hex_keys: &[String]) -> Result<u64, StoreError> {
        if hex_keys.is_empty() {
            return Ok(0);
        }
        let keys: Vec<SessionKey> = hex_keys.iter().filter_map(|h| unhex(h)).collect();
        self.forget_locally(&keys);
        let names: Vec<String> = keys.iter().map(|k| self.session_key(k)).collect();
        let mut conn = self.conn.clone();
        let removed: u64 = self
            .run(
                "redis DEL",
                redis::cmd("DEL").arg(&names).query_async(&mut conn),
            )
            .await?;
        for batch in hex_keys.chunks(100) {
            let msg = batch.join(" ");
            self.run(
                "redis PUBLISH",
                redis::cmd("PUBLISH")
                    .arg(&self.channel)
                    .arg(msg)
                    .query_async::<i64>(&mut conn),
            )
            .await?;
        }
        Ok(removed)
    }
}

// ===== impl SessionStore for RedisStore =====

impl SessionStore for RedisStore {
    fn load(&self, key: &SessionKey) -> SessionLookup {
        if let Some(s) = self.inner.cached(key) {
            return SessionLookup::Ready(Some(s));
        }
        SessionLookup::Pending(Box::pin(self.inner.clone().fetch(*key)))
    }

    fn load_fresh(&self, key: &SessionKey) -> SessionLookup {
        SessionLookup::Pending(Box::pin(self.inner.clone().fetch(*key)))
    }

    fn save(
        &self,
        key: SessionKey,
        session: Arc<Session>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let ttl_ms = session
                .expires_at
                .saturating_sub(inner.clock.now_secs())
                .saturating_mul(1000);
            if ttl_ms == 0 {
                return Ok(());
            }
            let name = inner.session_key(&key);
            let value = inner.encode_value(&name, &session);
            let member = hex(&key);
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("SET")
                .arg(&name)
                .arg(value)
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
            let indexes = [
                session
                    .sid
                    .as_deref()
                    .map(|sid| inner.index_key("sid", sid)),
                Some(inner.index_key("sub", &session.identity.subject)),
            ];
            for index in indexes.into_iter().flatten() {
                pipe.cmd("SADD").arg(&index).arg(&member).ignore();
                pipe.cmd("PEXPIRE").arg(&index).arg(ttl_ms).ignore();
            }
            let mut conn = inner.conn.clone();
            inner
                .run("redis SET", pipe.query_async::<()>(&mut conn))
                .await?;
            if let Some(c) = &inner.cache {
                c.insert(key, session);
            }
            Ok(())
        })
    }

    fn remove(&self, key: &SessionKey) -> BoxFuture<'static, Result<(), StoreError>> {
        let inner = self.inner.clone();
        let member = hex(key);
        Box::pin(async move { inner.delete(&[member]).await.map(|_| ()) })
    }

    fn remove_where(
        &self,
        sid: Option<&str>,
        subject: Option<&str>,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        let inner = self.inner.clone();
        let index = match (sid, subject) {
            (Some(sid), _) => Some(inner.index_key("sid", sid)),
            (None, Some(sub)) => Some(inner.index_key("sub", sub)),
            (None, None) => None,
        };
        Box::pin(async move {
            let Some(index) = index else { return Ok(0) };
            let mut conn = inner.conn.clone();
            let members: Vec<String> = inner
                .run(
                    "redis SMEMBERS",
                    redis::cmd("SMEMBERS").arg(&index).query_async(&mut conn),
                )
                .await?;
            let removed = inner.delete(&members).await?;
            if !members.is_empty() {
                inner
                    .run(
                        "redis SREM",
                        redis::cmd("SREM")
                            .arg(&index)
                            .arg(&members)
                            .query_async::<i64>(&mut conn),
                    )
                    .await?;
            }
            Ok(removed)
        })
    }

    /// Sessions in this process's local cache (the count in Redis is not
    /// kept).
    fn len(&self) -> u64 {
        match &self.inner.cache {
            Some(c) => {
                c.run_pending_tasks();
                c.entry_count()
            }
            None => 0,
        }
    }

    /// `SET <prefix>lock:<key> <random> NX PX <lock_ttl>`, retried every
    /// 50 ms until acquired (a holder that died lets go when the lock
    /// expires); released with a compare-and-delete script, so a lock that
    /// expired and was taken by another process is never deleted.
    fn lock_refresh(
        &self,
        key: &SessionKey,
    ) -> BoxFuture<'static, Result<RefreshLock, StoreError>> {
        let inner = self.inner.clone();
        let name = format!("{}lock:{}", inner.prefix, hex(key));
        Box::pin(async move {
            let token = crate::random::random_token();
            let ttl_ms = u64::try_from(inner.lock_ttl.as_millis()).unwrap_or(10_000);
            let deadline = tokio::time::Instant::now() + inner.lock_ttl + inner.timeout;
            let mut conn = inner.conn.clone();
            loop {
                let got: Option<String> = inner
                    .run(
                        "redis SET NX",
                        redis::cmd("SET")
                            .arg(&name)
                            .arg(&token)
                            .arg("NX")
                            .arg("PX")
                            .arg(ttl_ms)
                            .query_async(&mut conn),
                    )
                    .await?;
                if got.is_some() {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(StoreError::message("refresh lock not acquired in time"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(RefreshLock::with_release(move || {
                Box::pin(async move {
                    let script = redis::Script::new(
                        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                         return redis.call('DEL', KEYS[1]) else return 0 end",
                    );
                    let mut conn = inner.conn.clone();
                    let _ = inner
                        .run(
                            "redis unlock",
                            script.key(&name).arg(&token).invoke_async::<i64>(&mut conn),
                        )
                        .await;
                })
            }))
        })
    }

    fn is_available(&self) -> bool {
        self.inner.available.load(Ordering::Relaxed)
    }
}

/// Pings Redis every second while the store lives, for readiness.
async fn health(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(i) = inner.upgrade() else { return };
        let mut conn = i.conn.clone();
        let _ = i
            .run(
                "redis PING",
                redis::cmd("PING").query_async::<String>(&mut conn),
            )
            .await;
        drop(i);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Keeps a subscription to the invalidation channel, re-established after
/// any failure; the local cache is dropped whenever it (re)starts, since
/// messages may have been missed meanwhile.
async fn subscribe(client: redis::Client, inner: std::sync::Weak<Inner>) {
    loop {
        let Some(i) = inner.upgrade() else { return };
        let (timeout, channel) = (i.timeout, i.channel.clone());
        drop(i);
        let connected = tokio::time::timeout(timeout, async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(ps)
        })
        .await;
        if let Ok(Ok(ps)) = connected {
            if let Some(c) = inner.upgrade().and_then(|i| i.cache.clone()) {
                c.invalidate_all();
            }
            let mut stream = ps.into_on_message();
            while let Some(msg) = stream.next().await {
                let Some(i) = inner.upgrade() else { return };
                let payload = msg.get_payload_bytes();
                // Bounded: at most 100 keys per message are published.
                let keys: Vec<SessionKey> = std::str::from_utf8(payload)
                    .unwrap_or("")
                    .split(' ')
                    .take(1000)
                    .filter_map(unhex)
                    .collect();
                i.forget_locally(&keys);
            }
            tracing::warn!("redis invalidation subscription lost; reconnecting");
        }
        if let Some(c) = inner.upgrade().and_then(|i| i.cache.clone()) {
            c.invalidate_all();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn unhex(s: &str) -> Option<SessionKey> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        let d = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = d(pair[0])? << 4 | d(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::codec::tests::sample;

    fn store() -> RedisStore {
        let secret = SessionSecret::from_bytes(&[3; 32]).unwrap();
        RedisStore::connect(
            RedisStoreOptions::new(Secret::new("redis://127.0.0.1:1/")),
            &secret,
            &[],
            crate::clock::system(),
        )
        .unwrap()
    }

    #[test]
    fn redis_hex_round_trip() {
        let k = [0xa5u8; 32];
        assert_eq!(unhex(&hex(&k)), Some(k));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }

    #[tokio::test]
    async fn redis_value_holds_no_token_or_claim_bytes() {
        let s = store();
        let name = s.inner.session_key(&[1; 32]);
        assert!(name.starts_with("oidc-gateway:session:"));
        let value = s.inner.encode_value(&name, &sample(3));
        let text = String::from_utf8_lossy(&value);
        for needle in [
            "ACCESS-TOKEN",
            "REFRESH-TOKEN",
            "ID-TOKEN",
            "alice",
            "group-",
        ] {
            assert!(!text.contains(needle), "{needle} in the clear");
        }
        let back = s.inner.decode_value(&name, &value).unwrap();
        assert_eq!(
            back.refresh.unwrap().refresh_token.expose(),
            "REFRESH-TOKEN-secret"
        );
        // Bound to its key name: a value copied under another key does not open.
        let other = s.inner.session_key(&[2; 32]);
        assert!(s.inner.decode_value(&other, &value).is_none());
    }

    #[tokio::test]
    async fn redis_unreachable_is_an_error_not_no_session() {
        let s = store();
        match s.load(&[1; 32]) {
            SessionLookup::Pending(f) => assert!(f.await.is_err()),
            SessionLookup::Ready(_) => panic!("nothing cached"),
        }
        assert!(!s.is_available());
    }
}
