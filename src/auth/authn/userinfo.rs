//! `bearer.userinfo = true`: the provider's userinfo for a validated bearer
//! token, so the upstream gets email and groups for API clients whose
//! access tokens carry only `sub`.
//!
//! The token itself is the credential (`Authorization: Bearer`, OpenID
//! Connect Core §5.3.1). The answer's `sub` must equal the token's (Core
//! §5.3.2); its `email`, `email_verified`, `preferred_username`, `name` and
//! `groups` are merged into the identity, which is then cached with the
//! token (the bearer cache or the introspection cache, never past `exp`).
//! Only tokens of the login provider are enriched (a `[[bearer.issuer]]`'s
//! are not: its userinfo is not the provider's).
//!
//! Bounded like introspection: concurrent requests with the same token
//! share one call (moka's `try_get_with`); at most
//! [`IntrospectionLimits::max_in_flight`] calls at once, at most
//! `max_waiting` more waiting for at most `max_wait` each, then refused at
//! once; every call has the provider client's timeout
//! (`provider.http_timeout`). A provider that does not answer makes the
//! request fail closed (503); nothing of an outage is cached.

use super::bearer::Principal;
use super::introspect::IntrospectionLimits;
use crate::identity::{Identity, IdentityHeaders};
use crate::provider::userinfo::{self, UserinfoError};
use crate::provider::Provider;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a fetched answer is shared with requests that arrive just
/// after it (the bearer cache keeps it from then on).
const SHARED_FOR: Duration = Duration::from_secs(2);

/// Why a bearer token's identity could not be enriched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UserinfoFailure {
    /// The provider refuses the token at userinfo (401/403), or its `sub`
    /// differs from the token's: the token is refused.
    #[error("userinfo refused the token: {0}")]
    Refused(&'static str),
    /// No answer (unreachable, timeout, 5xx, overloaded, no endpoint).
    #[error("userinfo unavailable: {0}")]
    Unavailable(String),
}

/// Fetches and merges userinfo for bearer tokens; see the module docs.
pub(crate) struct BearerUserinfo {
    provider: Arc<Provider>,
    identity_headers: Arc<IdentityHeaders>,
    shared: moka::future::Cache<[u8; 32], Arc<Principal>>,
    calls: Semaphore,
    waiting: AtomicUsize,
    limits: IntrospectionLimits,
}

impl std::fmt::Debug for BearerUserinfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerUserinfo")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Decrements the waiting count when a waiter leaves (also when cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl BearerUserinfo {
    pub(crate) fn new(
        provider: Arc<Provider>,
        identity_headers: Arc<IdentityHeaders>,
        capacity: u64,
        limits: IntrospectionLimits,
    ) -> Self {
        BearerUserinfo {
            provider,
            identity_headers,
            shared: moka::future::Cache::builder()
                .max_capacity(capacity.max(1))
                .time_to_live(SHARED_FOR)
                .build(),
            calls: Semaphore::new(limits.max_in_flight.max(1)),
            waiting: AtomicUsize::new(0),
            limits,
        }
    }

    /// The principal of `identity` (validated from `token`) with the
    /// provider's userinfo merged in.
    pub(crate) async fn enrich(
        &self,
        token: &str,
        identity: Identity,
    ) -> Result<Arc<Principal>, UserinfoFailure> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.shared
            .try_get_with(key, self.fetch(token, identity))
            .await
            .map_err(|e| match &*e {
                UserinfoFailure::Refused(r) => UserinfoFailure::Refused(r),
                UserinfoFailure::Unavailable(m) => UserinfoFailure::Unavailable(m.clone()),
            })
    }

    async fn fetch(
        &self,
        token: &str,
        mut identity: Identity,
    ) -> Result<Arc<Principal>, UserinfoFailure> {
        let _permit = {
            if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limits.max_waiting {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                return Err(UserinfoFailure::Unavailable(
                    "too many calls waiting".into(),
                ));
            }
            let _waiting = Waiting(&self.waiting);
            match tokio::time::timeout(self.limits.max_wait, self.calls.acquire()).await {
                Ok(Ok(permit)) => permit,
                _ => {
                    return Err(UserinfoFailure::Unavailable(
                        "too many calls in flight".into(),
                    ))
                }
            }
        };
        let Some(url) = self
            .provider
            .metadata()
            .and_then(|m| m.userinfo_endpoint.clone())
        else {
            return Err(UserinfoFailure::Unavailable(
                "the provider has no userinfo_endpoint".into(),
            ));
        };
        let info = userinfo::fetch(self.provider.http(), url.as_str(), token)
            .await
            .map_err(|e| match e {
                UserinfoError::Status(401 | 403) => {
                    UserinfoFailure::Refused("userinfo answered 401/403")
                }
                UserinfoError::SubjectMismatch => UserinfoFailure::Refused("userinfo sub differs"),
                other => UserinfoFailure::Unavailable(other.to_string()),
            })?;
        userinfo::merge(&mut identity, &info)
            .map_err(|_| UserinfoFailure::Refused("userinfo sub differs from the token's"))?;
        let headers = self.identity_headers.precompute(&identity);
        Ok(Arc::new(Principal {
            identity: Arc::new(identity),
            headers,
        }))
    }
}
