//! Opaque bearer tokens: RFC 7662 introspection at the provider, cached and
//! bounded.
//!
//! A bearer token that is not JWT-shaped ([`is_jwt_shaped`]) is, when
//! `bearer.introspection = true`, sent to the provider's introspection
//! endpoint and its answer checked by
//! [`TokenVerifier::check_introspection`]. An outsider can send any number
//! of made-up tokens, so every step is bounded:
//!
//! - **Shape first.** Only RFC 6750 `b64token` characters, at most
//!   [`MAX_OPAQUE_TOKEN_BYTES`]; anything else is refused without a call.
//! - **Cache by token hash.** Answers are kept under the SHA-256 of the
//!   token: an active one for at most `bearer.introspection_cache` and never
//!   past its `exp`; a refusal (inactive, wrong audience…) for
//!   [`NEGATIVE_CACHE`] (or `introspection_cache` when shorter). At most
//!   `bearer.cache_capacity` entries. Failed calls (provider down) are not
//!   cached.
//! - **Single flight.** Concurrent requests with the same token share one
//!   call (moka's `try_get_with`).
//! - **Bounded concurrency.** At most [`IntrospectionLimits::max_in_flight`]
//!   calls at once (a semaphore); at most
//!   [`IntrospectionLimits::max_waiting`] more requests wait for one, each
//!   for at most [`IntrospectionLimits::max_wait`]. A request beyond that is
//!   refused at once, without a call. So a flood of random tokens reaches
//!   the provider as at most `max_in_flight` concurrent calls, whatever its
//!   size.
//!
//! The endpoint is `bearer.introspection_endpoint` when configured, else
//! the OpenID discovery document's `introspection_endpoint`, else the one in
//! the provider's RFC 8414 metadata (`/.well-known/oauth-authorization-server`,
//! fetched on first need, retried at most every [`ENDPOINT_RETRY`]).

use super::bearer::Principal;
use super::userinfo::{BearerUserinfo, UserinfoFailure};
use crate::clock::SharedClock;
use crate::identity::IdentityHeaders;
use crate::provider::client::ClientCredentials;
use crate::provider::introspection::{self, IntrospectError};
use crate::provider::Provider;
use crate::token::{Introspection, TokenError, TokenVerifier};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use url::Url;

/// Longest opaque token sent to the introspection endpoint, in bytes.
pub(crate) const MAX_OPAQUE_TOKEN_BYTES: usize = 4096;
/// How long a refused token's answer is reused.
pub(crate) const NEGATIVE_CACHE: Duration = Duration::from_secs(10);
/// Least time between two attempts to find the endpoint in RFC 8414 metadata.
pub(crate) const ENDPOINT_RETRY: Duration = Duration::from_secs(30);

/// Whether `token` looks like a JWS or JWE compact serialization: three or
/// five dot-separated parts whose first decodes to a JSON object. Such
/// tokens are only ever verified locally.
pub(crate) fn is_jwt_shaped(token: &str) -> bool {
    let parts = token.split('.').count();
    if parts != 3 && parts != 5 {
        return false;
    }
    let header = token.split('.').next().unwrap_or("");
    URL_SAFE_NO_PAD
        .decode(header)
        .is_ok_and(|h| h.first() == Some(&b'{'))
}

/// RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
/// "+" / "/" ) *"="`, and not longer than [`MAX_OPAQUE_TOKEN_BYTES`].
pub(crate) fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && token.len() <= MAX_OPAQUE_TOKEN_BYTES
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// The bounds on calls to the introspection endpoint.
#[derive(Clone, Debug)]
pub(crate) struct IntrospectionLimits {
    /// Calls in flight at once. Default 16.
    pub(crate) max_in_flight: usize,
    /// Requests waiting for a call slot. Default 256.
    pub(crate) max_waiting: usize,
    /// Longest wait for a call slot. Default 5 s.
    pub(crate) max_wait: Duration,
}

impl Default for IntrospectionLimits {
    fn default() -> Self {
        IntrospectionLimits {
            max_in_flight: 16,
            max_waiting: 256,
            max_wait: Duration::from_secs(5),
        }
    }
}

/// What configures the introspector.
#[derive(Clone, Debug)]
pub(crate) struct IntrospectionSettings {
    /// `bearer.introspection_endpoint`; `None`: from the provider's metadata.
    pub(crate) endpoint: Option<Url>,
    /// `bearer.introspection_cache`: longest reuse of an answer.
    pub(crate) cache_ttl: Duration,
    /// Most cached answers (`bearer.cache_capacity`).
    pub(crate) capacity: u64,
    /// The call bounds.
    pub(crate) limits: IntrospectionLimits,
}

/// A cached answer: who, or why not; and until when it may be reused.
#[derive(Clone)]
enum Answer {
    Active {
        principal: Arc<Principal>,
        until: u64,
    },
    Refused {
        reason: TokenError,
        until: u64,
    },
}

impl Answer {
    fn until(&self) -> u64 {
        match self {
            Answer::Active { until, .. } | Answer::Refused { until, .. } => *until,
        }
    }
}

struct UntilAnswerEnds(SharedClock);

impl moka::Expiry<[u8; 32], Answer> for UntilAnswerEnds {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Answer,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            value.until().saturating_sub(self.0.now_secs()),
        ))
    }
}

/// Why an opaque token was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IntrospectionFailure {
    /// The provider's answer refuses it (or it is not a token at all).
    #[error(transparent)]
    Refused(TokenError),
    /// No answer: the provider is unreachable, overloaded, or unknown.
    #[error(transparent)]
    Unavailable(Arc<IntrospectError>),
}

/// Asks the provider about opaque bearer tokens; see the module docs.
pub(crate) struct Introspector {
    provider: Arc<Provider>,
    credentials: ClientCredentials,
    verifier: Arc<TokenVerifier>,
    identity_headers: Arc<IdentityHeaders>,
    configured_endpoint: Option<Url>,
    discovered_endpoint: RwLock<Option<Url>>,
    last_discovery: tokio::sync::Mutex<Option<Instant>>,
    cache: moka::future::Cache<[u8; 32], Answer>,
    cache_ttl: u64,
    negative_ttl: u64,
    calls: Semaphore,
    waiting: AtomicUsize,
    limits: IntrospectionLimits,
    clock: SharedClock,
    /// `bearer.userinfo = true`: merged into active answers before caching.
    userinfo: Option<Arc<BearerUserinfo>>,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("endpoint", &self.configured_endpoint)
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

impl Introspector {
    pub(crate) fn new(
        provider: Arc<Provider>,
        credentials: ClientCredentials,
        verifier: Arc<TokenVerifier>,
        identity_headers: Arc<IdentityHeaders>,
        settings: IntrospectionSettings,
        clock: SharedClock,
    ) -> Self {
        let cache_ttl = settings.cache_ttl.as_secs();
        Introspector {
            provider,
            credentials,
            verifier,
            identity_headers,
            configured_endpoint: settings.endpoint,
            discovered_endpoint: RwLock::new(None),
            last_discovery: tokio::sync::Mutex::new(None),
            cache: moka::future::Cache::builder()
                .max_capacity(settings.capacity)
                .expire_after(UntilAnswerEnds(clock.clone()))
                .build(),
            cache_ttl,
            negative_ttl: NEGATIVE_CACHE.as_secs().min(cache_ttl),
            calls: Semaphore::new(settings.limits.max_in_flight.max(1)),
            waiting: AtomicUsize::new(0),
            limits: settings.limits,
            clock,
            userinfo: None,
        }
    }

    /// Merges the provider's userinfo into every active answer before it
    /// is cached (`bearer.userinfo = true`); a refusal there refuses the
    /// token, an outage is not cached.
    pub(crate) fn with_userinfo(mut self, userinfo: Option<Arc<BearerUserinfo>>) -> Self {
        self.userinfo = userinfo;
        self
    }

    /// The principal for an opaque `token`, from the cache or a call, and
    /// whether it came from the cache.
    pub(crate) async fn authenticate(
        &self,
        token: &str,
    ) -> Result<(Arc<Principal>, bool), IntrospectionFailure> {
        if !is_b64token(token) {
            return Err(IntrospectionFailure::Refused(TokenError::Malformed));
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // At most one retry: an entry whose time passed on the (injected)
        // clock before moka dropped it is replaced.
        for _ in 0..2 {
            let fresh = AtomicBool::new(false);
            let answer = self
                .cache
                .try_get_with(key, async {
                    fresh.store(true, Ordering::Relaxed);
                    self.ask(token).await
                })
                .await
                .map_err(IntrospectionFailure::Unavailable)?;
            let fresh = fresh.load(Ordering::Relaxed);
            if !fresh && answer.until() <= self.clock.now_secs() {
                self.cache.invalidate(&key).await;
                continue;
            }
            return match answer {
                Answer::Active { principal, .. } => Ok((principal, !fresh)),
                Answer::Refused { reason, .. } => Err(IntrospectionFailure::Refused(reason)),
            };
        }
        Err(IntrospectionFailure::Refused(TokenError::Expired))
    }

    /// One call to the endpoint (within the bounds) and its checked answer.
    async fn ask(&self, token: &str) -> Result<Answer, IntrospectError> {
        let _permit = {
            if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limits.max_waiting {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                return Err(IntrospectError::Overloaded);
            }
            let _waiting = Waiting(&self.waiting);
            match tokio::time::timeout(self.limits.max_wait, self.calls.acquire()).await {
                Ok(Ok(permit)) => permit,
                _ => return Err(IntrospectError::Overloaded),
            }
        };
        let endpoint = self.endpoint().await?;
        let audience = self
            .provider
            .metadata()
            .and_then(|m| m.token_endpoint.as_ref().map(Url::to_string))
            .unwrap_or_else(|| endpoint.to_string());
        let body = introspection::introspect(
            self.provider.http(),
            &endpoint,
            &self.credentials,
            &audience,
            token,
        )
        .await?;
        let answer = self.judge(&body);
        let (Some(userinfo), Answer::Active { principal, until }) = (&self.userinfo, &answer)
        else {
            return Ok(answer);
        };
        match userinfo.enrich(token, (*principal.identity).clone()).await {
            Ok(principal) => Ok(Answer::Active {
                principal,
                until: *until,
            }),
            Err(e @ UserinfoFailure::Refused(_)) => {
                tracing::info!(reason = %e, "opaque bearer token refused at userinfo");
                Ok(Answer::Refused {
                    reason: TokenError::Inactive,
                    until: self.clock.now_secs() + self.negative_ttl,
                })
            }
            Err(e) => Err(IntrospectError::Userinfo(e.to_string())),
        }
    }

    /// The cached form of an answer body.
    fn judge(&self, body: &[u8]) -> Answer {
        let now = self.clock.now_secs();
        let checked = Introspection::from_json(body).and_then(|a| {
            let exp = a.exp();
            self.verifier.check_introspection(a).map(|i| (i, exp))
        });
        match checked {
            Ok((identity, exp)) => {
                let until = exp
                    .unwrap_or(u64::MAX)
                    .min(now.saturating_add(self.cache_ttl));
                let headers = self.identity_headers.precompute(&identity);
                Answer::Active {
                    principal: Arc::new(Principal {
                        identity: Arc::new(identity),
                        headers,
                    }),
                    until,
                }
            }
            Err(reason) => Answer::Refused {
                reason,
                until: now + self.negative_ttl,
            },
        }
    }

    /// The endpoint: configured, from discovery, or from RFC 8414 metadata.
    async fn endpoint(&self) -> Result<Url, IntrospectError> {
        if let Some(u) = &self.configured_endpoint {
            return Ok(u.clone());
        }
        if let Some(u) = self.discovered_endpoint.read().clone() {
            return Ok(u);
        }
        let Some(meta) = self.provider.metadata() else {
            return Err(IntrospectError::NoEndpoint(
                "provider metadata not loaded yet".into(),
            ));
        };
        if let Some(u) = &meta.introspection_endpoint {
            return Ok(u.clone());
        }
        let mut last = self.last_discovery.lock().await;
        if let Some(u) = self.discovered_endpoint.read().clone() {
            return Ok(u);
        }
        if last.is_some_and(|t| t.elapsed() < ENDPOINT_RETRY) {
            return Err(IntrospectError::NoEndpoint(
                "not in the provider's metadata".into(),
            ));
        }
        *last = Some(Instant::now());
        match introspection::discover_rfc8414(&self.provider).await {
            Ok(u) => {
                tracing::info!(endpoint = %u, "introspection endpoint from RFC 8414 metadata");
                *self.discovered_endpoint.write() = Some(u.clone());
                Ok(u)
            }
            Err(e) => {
                tracing::warn!(error = %e, "no introspection endpoint in RFC 8414 metadata");
                Err(IntrospectError::NoEndpoint(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests;
