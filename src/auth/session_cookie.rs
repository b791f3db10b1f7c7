//! How the request and the response carry the session.
//!
//! With a store that keeps sessions itself (memory, Redis) the session
//! cookie holds a random id. With a store that seals the session into the
//! cookie ([`SessionSealer`](crate::session::SessionSealer)) it holds the
//! sealed session: one cookie `<name>` when it fits, else the chunks
//! `<name>-0`, `<name>-1`, …. The chunks a request presents must be exactly
//! `0..n` (no gap, no duplicate, not mixed with `<name>`), else the
//! request carries no session. Writing a session also deletes every cookie
//! of the session that the request presented and the new one does not
//! overwrite, so no stale chunk is left behind.

use super::cookies::{chunk_index, request_cookies, CookieSettings, SameSite};
use crate::session::{key_for_cookie, Opened, Session, SessionKey, SessionStore, StoreError};
use http::{HeaderMap, HeaderValue};
use std::sync::Arc;

/// Most chunks read from a request, whatever the store says.
const MAX_READ_CHUNKS: usize = 16;

/// What the request's session cookies present.
pub(crate) enum Presented {
    None,
    /// A session id: the store is looked up by its key.
    Reference(SessionKey),
    /// A sealed session, opened.
    Sealed(Opened),
}

/// Reads and writes the session cookie(s) for the configured store.
pub(crate) struct SessionCookies {
    pub(crate) settings: Arc<CookieSettings>,
    store: Arc<dyn SessionStore>,
}

impl SessionCookies {
    pub(crate) fn new(settings: Arc<CookieSettings>, store: Arc<dyn SessionStore>) -> Self {
        SessionCookies { settings, store }
    }

    fn name(&self) -> &str {
        &self.settings.session_name
    }

    /// The session the request presents (sealed sessions are opened here).
    pub(crate) fn read(&self, headers: &HeaderMap) -> Presented {
        let Some(sealer) = self.store.sealer() else {
            return match super::cookies::request_cookie(headers, self.name())
                .and_then(key_for_cookie)
            {
                Some(key) => Presented::Reference(key),
                None => Presented::None,
            };
        };
        let max = sealer.max_chunks().min(MAX_READ_CHUNKS);
        let mut single: Option<&str> = None;
        let mut slots: [Option<&str>; MAX_READ_CHUNKS] = [None; MAX_READ_CHUNKS];
        let mut count = 0;
        for (name, value) in request_cookies(headers) {
            if name == self.name() {
                if single.replace(value).is_some() {
                    return Presented::None;
                }
            } else if let Some(i) = chunk_index(name, self.name()) {
                if i >= max || slots[i].replace(value).is_some() {
                    return Presented::None;
                }
                count += 1;
            }
        }
        let opened = match (single, count) {
            (None, 0) => return Presented::None,
            (Some(v), 0) => sealer.open(self.name(), &[v]),
            (None, n) => {
                let mut chunks = [""; MAX_READ_CHUNKS];
                for (i, slot) in slots.iter().take(n).enumerate() {
                    match slot {
                        Some(v) => chunks[i] = v,
                        None => return Presented::None,
                    }
                }
                sealer.open(self.name(), &chunks[..n])
            }
            (Some(_), _) => return Presented::None,
        };
        match opened {
            Some(o) => Presented::Sealed(o),
            None => Presented::None,
        }
    }

    /// The store key of the session the request presents, if any.
    pub(crate) fn presented_key(&self, headers: &HeaderMap) -> Option<SessionKey> {
        match self.read(headers) {
            Presented::Reference(k) => Some(k),
            Presented::Sealed(o) => Some(o.key),
            Presented::None => None,
        }
    }

    /// `Set-Cookie` values that give the browser `session` (stored under
    /// `key`; `id` is the cookie value for a store that keeps sessions),
    /// and delete the request's session cookies they do not overwrite.
    pub(crate) fn issue(
        &self,
        request: &HeaderMap,
        id: &str,
        key: &SessionKey,
        session: &Session,
        now: u64,
    ) -> Result<Vec<HeaderValue>, StoreError> {
        let max_age = session.expires_at.saturating_sub(now);
        let Some(sealer) = self.store.sealer() else {
            return Ok(vec![self.settings.set(
                self.name(),
                id,
                max_age,
                SameSite::Lax,
            )]);
        };
        let chunks = sealer.seal(self.name(), key, session)?;
        let mut out = Vec::with_capacity(chunks.len() + 1);
        let chunked = chunks.len() > 1;
        if chunked {
            for (i, c) in chunks.iter().enumerate() {
                let name = format!("{}-{i}", self.name());
                out.push(self.settings.set(&name, c, max_age, SameSite::Lax));
            }
        } else if let Some(c) = chunks.first() {
            out.push(self.settings.set(self.name(), c, max_age, SameSite::Lax));
        }
        for (name, _) in request_cookies(request) {
            let stale = if name == self.name() {
                chunked
            } else {
                chunk_index(name, self.name()).is_some_and(|i| !chunked || i >= chunks.len())
            };
            if stale {
                out.push(self.settings.clear(name));
            }
        }
        Ok(out)
    }

    /// `Set-Cookie` values that delete the session cookie and every chunk
    /// the request presented.
    pub(crate) fn clear(&self, request: &HeaderMap) -> Vec<HeaderValue> {
        let mut out = vec![self.settings.clear(self.name())];
        for (name, _) in request_cookies(request) {
            if chunk_index(name, self.name()).is_some() {
                out.push(self.settings.clear(name));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SessionSecret;
    use crate::session::{CookieStore, MemoryStore};
    use http::header::COOKIE;
    use std::time::Duration;

    const NAME: &str = "__Host-oidc-gateway";

    fn cookie_store() -> SessionCookies {
        let secret = SessionSecret::from_bytes(&[1; 32]).unwrap();
        let store = CookieStore::new(&secret, &[], Duration::from_secs(3600));
        SessionCookies::new(Arc::new(CookieSettings::new(NAME, true)), Arc::new(store))
    }

    fn session(groups: usize) -> Session {
        let identity = crate::identity::Identity {
            groups: (0..groups).map(|i| format!("group-number-{i}")).collect(),
            ..crate::identity::Identity::new(
                "alice",
                "https://idp",
                crate::identity::IdentitySource::Session,
            )
        };
        let headers = crate::identity::PrecomputedHeaders::of(&identity);
        let now = crate::clock::system_now_secs();
        Session::new(Arc::new(identity), headers, now, now + 3600)
    }

    /// The request `Cookie` header a browser sends after `set_cookies`.
    fn browser(set_cookies: &[HeaderValue]) -> HeaderMap {
        let pairs: Vec<String> = set_cookies
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .filter(|p| !p.ends_with('='))
            .collect();
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
        h
    }

    #[test]
    fn session_cookie_chunk_index_only_matches_numbered_names() {
        assert_eq!(chunk_index("n-0", "n"), Some(0));
        assert_eq!(chunk_index("n-12", "n"), Some(12));
        assert_eq!(chunk_index("n-login-abc", "n"), None);
        assert_eq!(chunk_index("n-", "n"), None);
        assert_eq!(chunk_index("n-123", "n"), None);
        assert_eq!(chunk_index("n", "n"), None);
    }

    #[test]
    fn session_cookie_sealed_round_trip_single_and_chunked() {
        let c = cookie_store();
        let now = crate::clock::system_now_secs();
        for groups in [1, 500] {
            let set = c
                .issue(&HeaderMap::new(), "", &[5; 32], &session(groups), now)
                .unwrap();
            assert_eq!(set.len() > 1, groups == 500);
            match c.read(&browser(&set)) {
                Presented::Sealed(o) => assert_eq!(o.session.identity.groups.len(), groups),
                _ => panic!("does not open"),
            }
        }
    }

    #[test]
    fn session_cookie_missing_duplicate_or_mixed_chunks_present_nothing() {
        let c = cookie_store();
        let now = crate::clock::system_now_secs();
        let set = c
            .issue(&HeaderMap::new(), "", &[5; 32], &session(500), now)
            .unwrap();
        let full = browser(&set);
        let text = full.get(COOKIE).unwrap().to_str().unwrap().to_string();
        let pairs: Vec<&str> = text.split("; ").collect();
        let variants = [
            pairs[1..].join("; "),                                          // first missing
            pairs[..pairs.len() - 1].join("; "),                            // last missing
            format!("{text}; {}", pairs[0]),                                // duplicate
            format!("{text}; {NAME}=abc"),                                  // mixed with single
            format!("{text}; {NAME}-{}=AAAA", pairs.len()),                 // extra
            text.replacen(&format!("{NAME}-0="), &format!("{NAME}-9="), 1), // gap
        ];
        for v in variants {
            let mut h = HeaderMap::new();
            h.insert(COOKIE, HeaderValue::from_str(&v).unwrap());
            assert!(
                matches!(c.read(&h), Presented::None),
                "{}",
                &v[..60.min(v.len())]
            );
        }
    }

    #[test]
    fn session_cookie_issue_and_clear_delete_stale_chunks() {
        let c = cookie_store();
        let now = crate::clock::system_now_secs();
        let big = c
            .issue(&HeaderMap::new(), "", &[5; 32], &session(500), now)
            .unwrap();
        let n = big.len();
        let request = browser(&big);
        let small = c.issue(&request, "", &[5; 32], &session(1), now).unwrap();
        // One new cookie, and every chunk deleted.
        assert_eq!(small.len(), 1 + n);
        assert!(small[1..]
            .iter()
            .all(|v| v.to_str().unwrap().contains("Max-Age=0")));
        let cleared = c.clear(&request);
        assert_eq!(cleared.len(), 1 + n);
    }

    #[test]
    fn session_cookie_reference_store_reads_the_id() {
        let c = SessionCookies::new(
            Arc::new(CookieSettings::new(NAME, true)),
            Arc::new(MemoryStore::new(10, Duration::from_secs(60))),
        );
        let (id, key) = crate::session::new_session_id();
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("{NAME}={id}")).unwrap(),
        );
        assert!(matches!(c.read(&h), Presented::Reference(k) if k == key));
        let set = c.issue(&h, &id, &key, &session(0), 0).unwrap();
        assert_eq!(set.len(), 1);
    }
}
