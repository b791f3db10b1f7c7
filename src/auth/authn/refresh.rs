//! Refreshing a session's access token before it expires (OpenID Connect
//! Core §12): single-flight per session (also across processes sharing a
//! store), and a refreshed ID token must name
//! the same issuer and subject.

use crate::clock::SharedClock;
use crate::identity::{IdentityHeaders, IdentitySource};
use crate::provider::client::{self, ClientCredentials, ExchangeError};
use crate::provider::http::HttpError;
use crate::provider::Provider;
use crate::secret::Secret;
use crate::session::{RefreshState, Session, SessionKey, SessionLookup, SessionStore, StoreError};
use crate::token::TokenVerifier;
use std::sync::Arc;

/// Seconds until a refresh that failed because the provider was unavailable
/// is tried again (never later than the access token's expiry).
const RETRY_AFTER_UNAVAILABLE: u64 = 5;

/// Refreshes sessions at the provider's token endpoint.
pub(crate) struct SessionRefresher {
    pub(crate) provider: Arc<Provider>,
    pub(crate) credentials: ClientCredentials,
    pub(crate) verifier: Arc<TokenVerifier>,
    pub(crate) identity_headers: Arc<IdentityHeaders>,
    /// Seconds before the access token's expiry at which it is refreshed.
    pub(crate) margin: u64,
    pub(crate) clock: SharedClock,
}

impl SessionRefresher {
    /// Refreshes the session's access token when it is about to expire.
    ///
    /// Single-flight: concurrent callers in this process wait on the
    /// session's lock, then every process sharing the store on
    /// [`SessionStore::lock_refresh`]; whoever comes after the refresh finds
    /// the refreshed session (read past any cache with
    /// [`SessionStore::load_fresh`]) and uses it. `from_cookie`: the session
    /// was opened from the cookie, so a store that does not know it is not
    /// a sign-out. A refresh the provider refuses, or whose answer fails
    /// validation, ends the session (`Ok(None)`). When the provider is
    /// unavailable (unreachable, timed out, HTTP 5xx), the session is kept
    /// while its access token is still valid, with the next attempt
    /// [`RETRY_AFTER_UNAVAILABLE`] seconds later (so that the requests in
    /// between do not wait for a provider that is down); once the access
    /// token has expired, it ends too. A store that cannot answer is an
    /// error.
    pub(crate) async fn refresh_if_needed(
        &self,
        store: &dyn SessionStore,
        key: &SessionKey,
        session: Arc<Session>,
        from_cookie: bool,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        if !session.needs_refresh(self.clock.now_secs()) {
            return Ok(Some(session));
        }
        let Some(state) = session.refresh.as_ref() else {
            return Ok(Some(session));
        };
        let _guard = state.lock.lock().await;
        // Refreshed by another request of this process meanwhile?
        if let SessionLookup::Ready(Some(c)) = store.load(key) {
            if !c.needs_refresh(self.clock.now_secs()) {
                return Ok(Some(c));
            }
        }
        let lock = store.lock_refresh(key).await?;
        let result = self.refresh_locked(store, key, &session, from_cookie).await;
        lock.release().await;
        result
    }

    async fn refresh_locked(
        &self,
        store: &dyn SessionStore,
        key: &SessionKey,
        session: &Arc<Session>,
        from_cookie: bool,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        let current = match store.load_fresh(key) {
            SessionLookup::Ready(s) => s,
            SessionLookup::Pending(f) => f.await?,
        };
        let session = match current {
            Some(c) if !c.needs_refresh(self.clock.now_secs()) => return Ok(Some(c)),
            Some(c) => c,
            None if from_cookie => session.clone(),
            None => return Ok(None),
        };
        let Some(state) = session.refresh.as_ref() else {
            return Ok(Some(session));
        };
        let Some(token_endpoint) = self
            .provider
            .metadata()
            .and_then(|m| m.token_endpoint.clone())
        else {
            return Ok(None);
        };
        let result = client::refresh(
            self.provider.http(),
            token_endpoint.as_str(),
            &self.credentials,
            state.refresh_token.expose(),
        )
        .await;
        let tokens = match result {
            Ok(t) => t,
            Err(e) if provider_unavailable(&e) => {
                let now = self.clock.now_secs();
                let Some(expires) = state.access_expires_at.filter(|&exp| exp > now) else {
                    tracing::info!(error = %e, "refresh failed, access token expired: session ended");
                    let _ = store.remove(key).await;
                    return Ok(None);
                };
                let retry_at = (now + RETRY_AFTER_UNAVAILABLE).min(expires);
                tracing::warn!(error = %e, retry_in_secs = retry_at - now,
                    "refresh failed, provider unavailable: session kept while its access token is valid");
                let kept = Arc::new(with_refresh_at(&session, state, retry_at));
                if let Err(e) = store.save(*key, kept.clone()).await {
                    tracing::error!(error = %e, "session store write failed after a failed refresh");
                    return Err(e);
                }
                return Ok(Some(kept));
            }
            Err(e) => {
                tracing::info!(error = %e, "refresh failed: session ended");
                let _ = store.remove(key).await;
                return Ok(None);
            }
        };
        let now = self.clock.now_secs();
        let (identity, headers, id_token, sid) = match tokens.id_token.as_deref() {
            Some(id_token) => {
                match self
                    .verifier
                    .verify_refreshed_id_token(id_token, &session.identity)
                    .await
                {
                    Ok((mut identity, info)) => {
                        identity.source = IdentitySource::Session;
                        let headers = self.identity_headers.precompute(&identity);
                        (
                            Arc::new(identity),
                            headers,
                            Some(Secret::new(id_token)),
                            info.sid.or_else(|| session.sid.clone()),
                        )
                    }
                    Err(e) => {
                        tracing::warn!(reason = %e, "refreshed id token refused: session ended");
                        let _ = store.remove(key).await;
                        return Ok(None);
                    }
                }
            }
            None => (
                session.identity.clone(),
                session.headers.clone(),
                session.id_token.clone(),
                session.sid.clone(),
            ),
        };
        let mut fresh = Session::new(identity, headers, session.created_at, session.expires_at);
        fresh.id_token = id_token;
        fresh.sid = sid;
        // Keep the old refresh token when the provider does not rotate it.
        let refresh_token = tokens
            .refresh_token
            .or_else(|| Some(state.refresh_token.clone()));
        fresh.set_tokens(
            tokens.access_token,
            refresh_token,
            tokens.expires_in,
            now,
            self.margin,
        );
        let fresh = Arc::new(fresh);
        if let Err(e) = store.save(*key, fresh.clone()).await {
            tracing::error!(error = %e, "session store write failed after refresh");
            return Err(e);
        }
        Ok(Some(fresh))
    }
}

/// Whether a failed refresh says nothing about the session: the provider
/// could not answer (unreachable, timed out, HTTP 5xx), as opposed to a
/// refusal (`invalid_grant`) or an answer that fails validation.
fn provider_unavailable(err: &ExchangeError) -> bool {
    match err {
        ExchangeError::Http(HttpError::Unreachable(_) | HttpError::Timeout) => true,
        ExchangeError::Refused { status, .. } => *status >= 500,
        _ => false,
    }
}

/// A copy of `session` (whose refresh state is `state`) that is refreshed
/// from `refresh_at`.
fn with_refresh_at(session: &Session, state: &RefreshState, refresh_at: u64) -> Session {
    let mut kept = Session::new(
        session.identity.clone(),
        session.headers.clone(),
        session.created_at,
        session.expires_at,
    );
    kept.id_token = session.id_token.clone();
    kept.sid = session.sid.clone();
    kept.access_token = session.access_token.clone();
    kept.refresh = Some(Box::new(RefreshState {
        access_token: state.access_token.clone(),
        access_expires_at: state.access_expires_at,
        refresh_at: Some(refresh_at),
        refresh_token: state.refresh_token.clone(),
        lock: tokio::sync::Mutex::new(()),
    }));
    kept
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn only_an_unanswering_provider_keeps_the_session() {
        assert!(provider_unavailable(&ExchangeError::Http(
            HttpError::Timeout
        )));
        assert!(provider_unavailable(&ExchangeError::Http(
            HttpError::Unreachable("connection refused".into())
        )));
        let refused = |status| ExchangeError::Refused {
            status,
            error: "x".into(),
        };
        assert!(provider_unavailable(&refused(503)));
        assert!(!provider_unavailable(&refused(400)));
        assert!(!provider_unavailable(&refused(401)));
        assert!(!provider_unavailable(&ExchangeError::Http(
            HttpError::TooLarge(10)
        )));
        assert!(!provider_unavailable(&ExchangeError::Malformed("no token")));
    }
}
