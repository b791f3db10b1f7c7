//! Login attempts: `state`, `nonce` and PKCE kept in a short-lived,
//! encrypted cookie per attempt (so parallel tabs work), and the
//! authorization request built from them.
//!
//! The cookie is named after a hash of its `state`, encrypted and
//! authenticated (AES-256-GCM, key derived from `session.secret`, the name
//! bound as associated data) and lives at most `login_timeout`. A browser
//! keeps at most `max_login_attempts` of them; the oldest go first. A `state`
//! is accepted once: replays within the login window are refused.

use crate::auth::cookies::{request_cookie, request_cookies, CookieSettings, SameSite};
use crate::clock::SharedClock;
use crate::provider::dialect::AttemptParams;
use crate::random::random_token;
use crate::secret::SessionSecret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// One login attempt, as kept in its cookie.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LoginAttempt {
    /// `state` sent to the provider.
    #[serde(rename = "s")]
    pub state: String,
    /// `nonce` the ID token must carry.
    #[serde(rename = "n")]
    pub nonce: String,
    /// PKCE `code_verifier`.
    #[serde(rename = "v")]
    pub code_verifier: String,
    /// Where to go after login (a local path).
    #[serde(rename = "r")]
    pub return_to: String,
    /// Unix seconds after which the attempt is void.
    #[serde(rename = "e")]
    pub expires_at: u64,
}

impl LoginAttempt {
    /// The secrets a provider dialect sends or checks.
    pub(crate) fn params(&self) -> AttemptParams<'_> {
        AttemptParams {
            state: &self.state,
            nonce: &self.nonce,
            code_verifier: &self.code_verifier,
        }
    }
}

/// Why a callback's `state` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum LoginError {
    /// No `state` parameter.
    #[error("the callback has no state")]
    MissingState,
    /// No login cookie for this `state`: another browser, or expired.
    #[error("no login in progress for this state (expired, or started in another browser)")]
    UnknownState,
    /// The cookie did not decrypt or does not match.
    #[error("the login state does not match")]
    StateMismatch,
    /// The attempt is older than `login_timeout`.
    #[error("the login attempt has expired")]
    Expired,
    /// This `state` was already used.
    #[error("this login response was already used")]
    Replayed,
}

/// Starts and finishes login attempts.
pub(crate) struct LoginManager {
    key: cookie::Key,
    cookies: CookieSettings,
    ttl: Duration,
    max_attempts: usize,
    same_site: SameSite,
    consumed: moka::sync::Cache<[u8; 32], ()>,
    clock: SharedClock,
}

impl std::fmt::Debug for LoginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginManager")
            .field("ttl", &self.ttl)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl LoginManager {
    /// A manager whose cookies are keyed from `secret`.
    pub(crate) fn new(
        secret: &SessionSecret,
        cookies: CookieSettings,
        ttl: Duration,
        max_attempts: usize,
        form_post: bool,
        clock: SharedClock,
    ) -> Self {
        LoginManager {
            key: secret.derive_cookie_key(),
            cookies,
            ttl,
            max_attempts: max_attempts.max(1),
            same_site: if form_post {
                SameSite::None
            } else {
                SameSite::Lax
            },
            consumed: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(ttl + Duration::from_secs(60))
                .build(),
            clock,
        }
    }

    fn cookie_name(&self, state: &str) -> String {
        let digest = Sha256::digest(state.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(&digest[..9]);
        format!("{}{tag}", self.cookies.login_prefix)
    }

    /// A new attempt returning to `return_to`, and the `Set-Cookie` values
    /// to send: the attempt's cookie, plus deletions that keep the browser
    /// within `max_login_attempts`.
    pub(crate) fn begin(
        &self,
        return_to: String,
        request: &HeaderMap,
    ) -> (LoginAttempt, Vec<HeaderValue>) {
        let attempt = LoginAttempt {
            state: random_token(),
            nonce: random_token(),
            code_verifier: random_token(),
            return_to,
            expires_at: self.clock.now_secs() + self.ttl.as_secs(),
        };
        let mut set_cookies = Vec::new();

        // Existing attempts: drop undecryptable or expired ones, and the
        // oldest beyond the cap (leaving room for the new one).
        let now = self.clock.now_secs();
        let mut live: Vec<(String, u64)> = Vec::new();
        for (name, value) in request_cookies(request).take(64) {
            if !name.starts_with(&self.cookies.login_prefix) {
                continue;
            }
            match self.open(name, value) {
                Some(a) if a.expires_at > now => live.push((name.to_string(), a.expires_at)),
                _ => set_cookies.push(self.cookies.clear(name)),
            }
        }
        if live.len() >= self.max_attempts {
            live.sort_by_key(|(_, exp)| *exp);
            let excess = live.len() + 1 - self.max_attempts;
            for (name, _) in live.drain(..excess) {
                set_cookies.push(self.cookies.clear(&name));
            }
        }

        let name = self.cookie_name(&attempt.state);
        let sealed = self.seal(&name, &attempt);
        set_cookies.push(
            self.cookies
                .set(&name, &sealed, self.ttl.as_secs(), self.same_site),
        );
        (attempt, set_cookies)
    }

    /// The attempt a callback's `state` belongs to, and the `Set-Cookie`
    /// that deletes its cookie. Each `state` is accepted once.
    pub(crate) fn finish(
        &self,
        state: Option<&str>,
        request: &HeaderMap,
    ) -> Result<(LoginAttempt, HeaderValue), LoginError> {
        let state = state
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or(LoginError::MissingState)?;
        let name = self.cookie_name(state);
        let value = request_cookie(request, &name).ok_or(LoginError::UnknownState)?;
        let attempt = self.open(&name, value).ok_or(LoginError::StateMismatch)?;
        let clear = self.cookies.clear(&name);
        if !crate::secret::constant_time_eq(attempt.state.as_bytes(), state.as_bytes()) {
            return Err(LoginError::StateMismatch);
        }
        if attempt.expires_at <= self.clock.now_secs() {
            return Err(LoginError::Expired);
        }
        let digest: [u8; 32] = Sha256::digest(state.as_bytes()).into();
        if !self.consumed.entry(digest).or_insert(()).is_fresh() {
            return Err(LoginError::Replayed);
        }
        Ok((attempt, clear))
    }

    /// The `Set-Cookie` that deletes the cookie of the attempt for `state`.
    pub(crate) fn clear_for_state(&self, state: &str) -> HeaderValue {
        self.cookies.clear(&self.cookie_name(state))
    }

    fn seal(&self, name: &str, attempt: &LoginAttempt) -> String {
        let json = serde_json::to_string(attempt).unwrap_or_default();
        let mut jar = cookie::CookieJar::new();
        jar.private_mut(&self.key)
            .add(cookie::Cookie::new(name.to_string(), json));
        jar.get(name)
            .map(|c| c.value().to_string())
            .unwrap_or_default()
    }

    fn open(&self, name: &str, value: &str) -> Option<LoginAttempt> {
        if value.len() > 4096 {
            return None;
        }
        let mut jar = cookie::CookieJar::new();
        jar.add_original(cookie::Cookie::new(name.to_string(), value.to_string()));
        let plain = jar.private(&self.key).get(name)?;
        serde_json::from_str(plain.value()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::COOKIE;
    use std::sync::Arc;

    fn manager(max: usize) -> LoginManager {
        manager_at(max, crate::clock::system())
    }

    fn manager_at(max: usize, clock: SharedClock) -> LoginManager {
        LoginManager::new(
            &SessionSecret::from_bytes(&[7u8; 32]).unwrap(),
            CookieSettings::new("__Host-oidc-gateway", true),
            Duration::from_secs(600),
            max,
            false,
            clock,
        )
    }

    fn cookie_header(set_cookies: &[HeaderValue]) -> HeaderMap {
        let pairs: Vec<String> = set_cookies
            .iter()
            .map(|v| v.to_str().unwrap())
            .filter(|v| !v.contains("Max-Age=0"))
            .map(|v| v.split(';').next().unwrap().to_string())
            .collect();
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
        h
    }

    #[test]
    fn login_state_round_trips_once() {
        let m = manager(5);
        let (attempt, cookies) = m.begin("/app?x=1".into(), &HeaderMap::new());
        let h = cookie_header(&cookies);
        let (back, clear) = m.finish(Some(&attempt.state), &h).unwrap();
        assert_eq!(back.nonce, attempt.nonce);
        assert_eq!(back.return_to, "/app?x=1");
        assert!(clear.to_str().unwrap().contains("Max-Age=0"));
        assert_eq!(
            m.finish(Some(&attempt.state), &h).unwrap_err(),
            LoginError::Replayed
        );
    }

    #[test]
    fn login_state_wrong_or_missing_state_is_refused() {
        let m = manager(5);
        let (_attempt, cookies) = m.begin("/".into(), &HeaderMap::new());
        let h = cookie_header(&cookies);
        assert_eq!(m.finish(None, &h).unwrap_err(), LoginError::MissingState);
        assert_eq!(
            m.finish(Some("forged"), &h).unwrap_err(),
            LoginError::UnknownState
        );
        assert_eq!(
            m.finish(Some("x"), &HeaderMap::new()).unwrap_err(),
            LoginError::UnknownState
        );
    }

    #[test]
    fn login_state_cookie_from_other_key_is_refused() {
        let m = manager(5);
        let other = LoginManager::new(
            &SessionSecret::from_bytes(&[8u8; 32]).unwrap(),
            CookieSettings::new("__Host-oidc-gateway", true),
            Duration::from_secs(600),
            5,
            false,
            crate::clock::system(),
        );
        let (attempt, cookies) = other.begin("/".into(), &HeaderMap::new());
        let h = cookie_header(&cookies);
        assert_eq!(
            m.finish(Some(&attempt.state), &h).unwrap_err(),
            LoginError::StateMismatch
        );
    }

    #[test]
    fn login_state_parallel_attempts_are_capped() {
        let m = manager(2);
        let mut jar: Vec<HeaderValue> = Vec::new();
        let mut states = Vec::new();
        for _ in 0..3 {
            let h = cookie_header(&jar);
            let (a, set) = m.begin("/".into(), &h);
            states.push(a.state);
            // Apply deletions, then additions, like a browser.
            for v in set {
                let s = v.to_str().unwrap();
                let name = s.split('=').next().unwrap().to_string();
                jar.retain(|c| !c.to_str().unwrap().starts_with(&format!("{name}=")));
                if !s.contains("Max-Age=0") {
                    jar.push(v.clone());
                }
            }
        }
        assert_eq!(jar.len(), 2);
        let h = cookie_header(&jar);
        // The two newest tabs can finish; the oldest was dropped.
        assert!(m.finish(Some(&states[2]), &h).is_ok());
        assert!(m.finish(Some(&states[1]), &h).is_ok());
        assert_eq!(
            m.finish(Some(&states[0]), &h).unwrap_err(),
            LoginError::UnknownState
        );
    }

    #[test]
    fn attempt_expires_after_login_timeout_on_a_pinned_clock() {
        let clock = Arc::new(crate::clock::ManualClock::new(50_000));
        let m = manager_at(5, clock.clone());
        let (attempt, set) = m.begin("/".into(), &HeaderMap::new());
        let h = cookie_header(&set);
        assert_eq!(attempt.expires_at, 50_600);
        clock.set(50_600);
        assert_eq!(
            m.finish(Some(&attempt.state), &h).unwrap_err(),
            LoginError::Expired
        );
        // Within the window it works (a new attempt: the expired one was not consumed).
        let (attempt, set) = m.begin("/".into(), &HeaderMap::new());
        clock.set(50_600 + 599);
        assert!(m.finish(Some(&attempt.state), &cookie_header(&set)).is_ok());
    }
}
