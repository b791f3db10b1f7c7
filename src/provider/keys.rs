//! The JWKS cache one issuer's keys live in, and its refetch rules.
//!
//! A token whose key is not in the set triggers at most one refetch per
//! `jwks_min_refresh_interval` ([`KeyCache::refresh_on_miss`]), so a flood
//! of random `kid`s cannot become a flood of JWKS fetches. Only those
//! on-demand fetches count against the limit: the start-up and periodic
//! fetches ([`KeyCache::refresh_now`]) do not, so a provider that rotates
//! its keys right after a scheduled fetch is followed at the first unknown
//! `kid`, and only repeated misses wait. The login provider
//! ([`Provider`](super::Provider)) and every `[[bearer.issuer]]`
//! ([`BearerIssuer`](super::issuer::BearerIssuer)) have one each.

use super::{KeySet, ProviderError};
use parking_lot::RwLock;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Where a token verifier finds an issuer's keys.
pub(crate) trait KeySource: Send + Sync {
    /// Whether the keys are loaded (or, for a provider without a JWKS,
    /// its metadata is).
    fn is_ready(&self) -> bool;
    /// The current keys.
    fn current_keys(&self) -> Arc<KeySet>;
    /// The keys after a refetch for a key not in generation `seen`
    /// (rate-limited, see the module docs).
    fn keys_after_miss(&self, seen: u64) -> impl Future<Output = Arc<KeySet>> + Send;
}

/// One issuer's keys and the state of its refetch limit.
pub(crate) struct KeyCache {
    keys: RwLock<Arc<KeySet>>,
    /// The last fetch caused by an unknown `kid` (scheduled fetches do not
    /// count: they must not delay following a key rotation). The lock also
    /// serialises fetches.
    last_miss_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_refresh: Duration,
}

impl KeyCache {
    /// An empty cache whose on-demand refetches are at least `min_refresh` apart.
    pub(crate) fn new(min_refresh: Duration) -> Self {
        KeyCache {
            keys: RwLock::new(Arc::new(KeySet::default())),
            last_miss_fetch: tokio::sync::Mutex::new(None),
            min_refresh,
        }
    }

    /// The current keys.
    pub(crate) fn keys(&self) -> Arc<KeySet> {
        self.keys.read().clone()
    }

    /// Generation of the current key set (changes on every successful fetch).
    pub(crate) fn generation(&self) -> u64 {
        self.keys.read().generation
    }

    /// Replaces the keys (a new generation).
    pub(crate) fn store(&self, mut set: KeySet) {
        let mut keys = self.keys.write();
        set.generation = keys.generation + 1;
        tracing::debug!(keys = set.len(), "jwks loaded");
        *keys = Arc::new(set);
    }

    /// A scheduled (start-up or periodic) fetch: it neither counts against
    /// nor waits for the unknown-`kid` limit, only for a fetch in progress.
    pub(crate) async fn refresh_now<F, Fut>(&self, fetch: F) -> Result<(), ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<KeySet, ProviderError>>,
    {
        let _serial = self.last_miss_fetch.lock().await;
        self.store(fetch().await?);
        Ok(())
    }

    /// Refetches for a token whose key is not in generation `seen`, unless
    /// another such refetch happened less than `min_refresh` ago, or the
    /// keys changed while this caller waited. Returns the current keys
    /// either way.
    pub(crate) async fn refresh_on_miss<F, Fut>(&self, seen: u64, fetch: F) -> Arc<KeySet>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<KeySet, ProviderError>>,
    {
        let mut last = self.last_miss_fetch.lock().await;
        let current = self.keys();
        if current.generation != seen {
            return current;
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return current;
        }
        *last = Some(Instant::now());
        match fetch().await {
            Ok(set) => self.store(set),
            Err(e) => tracing::warn!(error = %e, "jwks refresh failed"),
        }
        self.keys()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic")]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const RSA_JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"r1","use":"sig","alg":"RS256","n":"u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw","e":"AQAB"}]}"#;

    async fn fetcher(count: &AtomicUsize) -> Result<KeySet, ProviderError> {
        count.fetch_add(1, Ordering::SeqCst);
        KeySet::from_jwks_json(RSA_JWKS.as_bytes()).map_err(ProviderError::Jwks)
    }

    #[tokio::test(start_paused = true)]
    async fn key_cache_first_miss_after_scheduled_fetch_is_followed_repeats_wait() {
        let cache = KeyCache::new(Duration::from_secs(30));
        let count = AtomicUsize::new(0);
        cache.refresh_now(|| fetcher(&count)).await.unwrap();
        cache.refresh_now(|| fetcher(&count)).await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);
        // Right after two scheduled fetches, the first miss is followed.
        let keys = cache
            .refresh_on_miss(cache.generation(), || fetcher(&count))
            .await;
        assert_eq!(count.load(Ordering::SeqCst), 3);
        assert_eq!(keys.generation, 3);
        // A repeated miss within the window is not.
        cache
            .refresh_on_miss(cache.generation(), || fetcher(&count))
            .await;
        assert_eq!(count.load(Ordering::SeqCst), 3);
        // A miss against an older generation gets the newer keys, no fetch.
        let keys = cache.refresh_on_miss(1, || fetcher(&count)).await;
        assert_eq!((count.load(Ordering::SeqCst), keys.generation), (3, 3));
        tokio::time::advance(Duration::from_secs(31)).await;
        cache
            .refresh_on_miss(cache.generation(), || fetcher(&count))
            .await;
        assert_eq!(count.load(Ordering::SeqCst), 4, "the window has passed");
    }

    #[tokio::test(start_paused = true)]
    async fn key_cache_failed_fetch_keeps_the_old_keys() {
        let cache = KeyCache::new(Duration::from_secs(30));
        let count = AtomicUsize::new(0);
        cache.refresh_now(|| fetcher(&count)).await.unwrap();
        let keys = cache
            .refresh_on_miss(cache.generation(), || async {
                Err(ProviderError::NotReady)
            })
            .await;
        assert_eq!((keys.generation, keys.len()), (1, 1));
    }
}
