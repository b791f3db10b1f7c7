//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) that works
//! with any provider.
//!
//! Providers accept only an exactly registered `post_logout_redirect_uri`
//! (§2–3), so the gateway always sends the same one:
//! `public_url + prefix + /signed_out`. Where the browser goes afterwards
//! (the local `rd` given at `/sign_out`) travels in the logout `state`:
//! sealed with a key derived from `session.secret` (AES-256-GCM, bound to
//! its purpose), valid for [`LOGOUT_STATE_TTL`], and accepted once.
//! `/signed_out` then redirects to that `rd`, or, without a valid `state`
//! (none, expired, forged, used), shows a "signed out" page with a link to
//! sign in again. Nothing here can point outside the gateway's origin: `rd`
//! passed [`safe_return_to`](super::return_to::safe_return_to) when sealed
//! and is checked again when opened.

use super::return_to::safe_return_to;
use crate::auth::responses::{page_without_request_id, redirect, PageLink};
use crate::body::ResponseBody;
use crate::clock::SharedClock;
use crate::random::random_token;
use crate::secret::SessionSecret;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long a logout `state` stays valid: time enough for a provider's
/// "do you want to sign out?" page.
pub(crate) const LOGOUT_STATE_TTL: Duration = Duration::from_secs(30 * 60);
/// Longest `state` accepted back.
const MAX_STATE_LEN: usize = 4096;
/// The associated data that binds the sealed value to this purpose (the
/// login-attempt cookies use the same key with their own names).
const PURPOSE: &str = "oidc-gateway-logout-state";

#[derive(Serialize, Deserialize)]
struct Sealed {
    /// Where to go after sign-out (a local path).
    #[serde(rename = "r")]
    return_to: String,
    /// Unix seconds after which the state is void.
    #[serde(rename = "e")]
    expires_at: u64,
    /// Makes every state unique (single use).
    #[serde(rename = "j")]
    id: String,
}

/// Why a logout `state` was not followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LogoutStateError {
    #[error("no logout state")]
    Missing,
    #[error("the logout state does not open")]
    Invalid,
    #[error("the logout state has expired")]
    Expired,
    #[error("the logout state was already used")]
    Replayed,
}

/// Seals and opens logout states.
pub(crate) struct LogoutStates {
    key: cookie::Key,
    consumed: moka::sync::Cache<[u8; 32], ()>,
    clock: SharedClock,
}

impl std::fmt::Debug for LogoutStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutStates").finish_non_exhaustive()
    }
}

impl LogoutStates {
    pub(crate) fn new(secret: &SessionSecret, clock: SharedClock) -> Self {
        LogoutStates {
            key: secret.derive_cookie_key(),
            consumed: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(LOGOUT_STATE_TTL + Duration::from_secs(60))
                .build(),
            clock,
        }
    }

    /// A fresh `state` carrying `return_to` (already a safe local path).
    pub(crate) fn seal(&self, return_to: &str) -> String {
        let sealed = Sealed {
            return_to: return_to.to_string(),
            expires_at: self.clock.now_secs() + LOGOUT_STATE_TTL.as_secs(),
            id: random_token(),
        };
        let json = serde_json::to_string(&sealed).unwrap_or_default();
        let mut jar = cookie::CookieJar::new();
        jar.private_mut(&self.key)
            .add(cookie::Cookie::new(PURPOSE, json));
        jar.get(PURPOSE)
            .map(|c| c.value().to_string())
            .unwrap_or_default()
    }

    /// The `return_to` of a `state` sealed here, unexpired and not used
    /// before (each state opens once).
    pub(crate) fn open(&self, state: Option<&str>) -> Result<String, LogoutStateError> {
        let state = state
            .filter(|s| !s.is_empty())
            .ok_or(LogoutStateError::Missing)?;
        if state.len() > MAX_STATE_LEN {
            return Err(LogoutStateError::Invalid);
        }
        let mut jar = cookie::CookieJar::new();
        jar.add_original(cookie::Cookie::new(PURPOSE, state.to_string()));
        let plain = jar
            .private(&self.key)
            .get(PURPOSE)
            .ok_or(LogoutStateError::Invalid)?;
        let sealed: Sealed =
            serde_json::from_str(plain.value()).map_err(|_| LogoutStateError::Invalid)?;
        if sealed.expires_at <= self.clock.now_secs() {
            return Err(LogoutStateError::Expired);
        }
        let digest: [u8; 32] = Sha256::digest(sealed.id.as_bytes()).into();
        if !self.consumed.entry(digest).or_insert(()).is_fresh() {
            return Err(LogoutStateError::Replayed);
        }
        Ok(safe_return_to(Some(&sealed.return_to)).into_owned())
    }

    /// `/signed_out?state=…`: on to the sealed `rd`, or the signed-out page
    /// with a link to `sign_in` (the gateway's `/start`).
    pub(crate) fn signed_out(&self, state: Option<&str>, sign_in: &str) -> Response<ResponseBody> {
        match self.open(state) {
            Ok(return_to) => redirect(&return_to),
            Err(e) => {
                if e != LogoutStateError::Missing {
                    tracing::info!(reason = %e, "logout state not followed");
                }
                signed_out_page(sign_in)
            }
        }
    }
}

/// "You are signed out", with a link to sign in again.
pub(crate) fn signed_out_page(sign_in: &str) -> Response<ResponseBody> {
    page_without_request_id(
        StatusCode::OK,
        "Signed out",
        "You are signed out.",
        PageLink {
            href: sign_in,
            text: "Sign in again",
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn states(clock: Arc<ManualClock>) -> LogoutStates {
        LogoutStates::new(&SessionSecret::from_bytes(&[9u8; 32]).unwrap(), clock)
    }

    #[test]
    fn logout_state_carries_rd_and_opens_once() {
        let s = states(Arc::new(ManualClock::new(1_000)));
        let state = s.seal("/bye?x=1");
        assert!(!state.contains("bye"), "the rd is sealed, not readable");
        assert_eq!(s.open(Some(&state)).unwrap(), "/bye?x=1");
        assert_eq!(
            s.open(Some(&state)).unwrap_err(),
            LogoutStateError::Replayed
        );
        // Two sign-outs to the same rd have different states.
        assert_ne!(s.seal("/a"), s.seal("/a"));
    }

    #[test]
    fn logout_state_expires_on_a_pinned_clock() {
        let clock = Arc::new(ManualClock::new(1_000));
        let s = states(clock.clone());
        let state = s.seal("/bye");
        let late = s.seal("/bye");
        clock.set(1_000 + LOGOUT_STATE_TTL.as_secs() - 1);
        assert_eq!(s.open(Some(&state)).unwrap(), "/bye");
        clock.set(1_000 + LOGOUT_STATE_TTL.as_secs());
        assert_eq!(s.open(Some(&late)).unwrap_err(), LogoutStateError::Expired);
    }

    #[test]
    fn logout_state_forged_missing_or_from_another_key_is_refused() {
        let clock = Arc::new(ManualClock::new(1_000));
        let s = states(clock.clone());
        let other = LogoutStates::new(&SessionSecret::from_bytes(&[8u8; 32]).unwrap(), clock);
        assert_eq!(s.open(None).unwrap_err(), LogoutStateError::Missing);
        assert_eq!(s.open(Some("")).unwrap_err(), LogoutStateError::Missing);
        assert_eq!(
            s.open(Some("forged")).unwrap_err(),
            LogoutStateError::Invalid
        );
        assert_eq!(
            s.open(Some(&other.seal("/x"))).unwrap_err(),
            LogoutStateError::Invalid
        );
        let mut tampered = s.seal("/x");
        tampered.replace_range(..1, if tampered.starts_with('A') { "B" } else { "A" });
        assert_eq!(
            s.open(Some(&tampered)).unwrap_err(),
            LogoutStateError::Invalid
        );
        assert_eq!(
            s.open(Some(&"A".repeat(MAX_STATE_LEN + 1))).unwrap_err(),
            LogoutStateError::Invalid
        );
    }

    #[test]
    fn signed_out_redirects_to_the_sealed_rd_or_shows_the_page() {
        let s = states(Arc::new(ManualClock::new(1_000)));
        let state = s.seal("/bye");
        let r = s.signed_out(Some(&state), "/oauth2/start");
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "/bye");
        let again = s.signed_out(Some(&state), "/oauth2/start");
        assert_eq!(again.status(), 200, "a used state shows the page");
        let page = s.signed_out(None, "/oauth2/start");
        assert_eq!(page.status(), 200);
        assert!(page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert_eq!(page.headers()["cache-control"], "no-store");
    }
}
