//! Bearer tokens: the cache of validated tokens, keyed by the SHA-256 of
//! the whole token, each entry living no longer than the token's `exp`.

use crate::clock::SharedClock;
use crate::identity::{Identity, PrecomputedHeaders};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An authenticated principal: identity and its encoded headers.
#[derive(Debug)]
pub struct Principal {
    /// Who.
    pub identity: Arc<Identity>,
    /// Identity headers, encoded once.
    pub headers: PrecomputedHeaders,
}

struct UntilExp(SharedClock);

impl moka::Expiry<[u8; 32], Arc<Principal>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Principal>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let exp = value.identity.expires_at.unwrap_or(0);
        Some(Duration::from_secs(exp.saturating_sub(self.0.now_secs())))
    }
}

/// Validated bearer tokens. Bounded; entries never outlive `exp`.
pub struct BearerCache {
    cache: moka::sync::Cache<[u8; 32], Arc<Principal>>,
    clock: SharedClock,
}

impl std::fmt::Debug for BearerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerCache")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl BearerCache {
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: u64) -> Self {
        Self::with_clock(capacity, crate::clock::system())
    }

    /// A cache of at most `capacity` tokens whose `exp` is read against `clock`.
    pub fn with_clock(capacity: u64, clock: SharedClock) -> Self {
        BearerCache {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExp(clock.clone()))
                .build(),
            clock,
        }
    }

    /// Cache key of `token`.
    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The principal for a token validated earlier, if still unexpired.
    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<Principal>> {
        self.cache.get(key).filter(|p| {
            p.identity
                .expires_at
                .is_some_and(|exp| exp > self.clock.now_secs())
        })
    }

    /// Remembers a validated token.
    pub fn insert(&self, key: [u8; 32], principal: Arc<Principal>) {
        self.cache.insert(key, principal);
    }

    /// Approximate number of entries.
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::system_now_secs as now_secs;
    use crate::identity::IdentitySource;

    fn principal(exp: u64) -> Arc<Principal> {
        Arc::new(Principal {
            identity: Arc::new(Identity {
                expires_at: Some(exp),
                ..Identity::new("alice", "https://idp", IdentitySource::Bearer)
            }),
            headers: PrecomputedHeaders::default(),
        })
    }

    #[test]
    fn bearer_cache_hit_until_exp() {
        let c = BearerCache::new(10);
        let k = BearerCache::key("tok");
        c.insert(k, principal(now_secs() + 60));
        assert!(c.get(&k).is_some());
        assert!(c.get(&BearerCache::key("tok2")).is_none());
    }

    #[test]
    fn bearer_cache_never_serves_expired_token() {
        let c = BearerCache::new(10);
        let k = BearerCache::key("old");
        c.insert(k, principal(now_secs() - 1));
        assert!(c.get(&k).is_none());
    }

    #[test]
    fn bearer_cache_entry_ends_at_exp_on_a_pinned_clock() {
        let clock = Arc::new(crate::clock::ManualClock::new(10_000));
        let c = BearerCache::with_clock(10, clock.clone());
        let k = BearerCache::key("tok");
        c.insert(k, principal(10_060));
        clock.set(10_059);
        assert!(c.get(&k).is_some());
        clock.set(10_060);
        assert!(c.get(&k).is_none(), "exp is exclusive");
    }

    #[test]
    fn bearer_cache_is_bounded() {
        let c = BearerCache::new(100);
        for i in 0..1000 {
            c.insert(
                BearerCache::key(&format!("t{i}")),
                principal(now_secs() + 60),
            );
        }
        assert!(c.len() <= 110, "{}", c.len());
    }
}
