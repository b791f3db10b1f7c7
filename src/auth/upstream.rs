//! What the gateway hands the upstream besides the identity headers: the
//! user's tokens and the signed identity assertion (all off unless
//! configured; `[headers] access_token`, `id_token`, `authorization`,
//! `assertion`).
//!
//! # Tokens
//!
//! - Session requests: the session's current access token (the refreshed
//!   one once a refresh happened: the session is refreshed before the
//!   request is admitted) and its ID token.
//! - Bearer requests: the access token is the bearer token the client
//!   presented; there is no ID token.
//!
//! # `Authorization`
//!
//! With `authorization = "none"` (the default) the client's own
//! `Authorization` header goes upstream unchanged: on bearer requests
//! that is the bearer token, on session requests whatever the client sent
//! (such as `Basic` credentials for the application itself).
//!
//! With `"access_token"` or `"id_token"` the gateway owns the header: the
//! client's is always removed, on every route (public ones too), and on
//! admitted requests replaced by `Bearer <token>` when there is such a
//! token (a bearer request has no ID token: no header then).
//!
//! Every configured header name (tokens, assertion) is removed from
//! incoming requests on every route, like the identity headers.

use super::assertion::AssertionSigner;
use super::authn::Authenticated;
use http::header::{HeaderName, AUTHORIZATION};
use http::{HeaderMap, HeaderValue};
use std::sync::Arc;

/// Which token `Authorization: Bearer …` upstream carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// The client's own header passes unchanged.
    #[default]
    None,
    /// The access token.
    AccessToken,
    /// The ID token.
    IdToken,
}

/// The token and assertion headers, as the layer applies them.
#[derive(Debug, Default)]
pub(crate) struct UpstreamCredentials {
    pub(crate) access_token: Option<HeaderName>,
    pub(crate) id_token: Option<HeaderName>,
    pub(crate) authorization: AuthorizationMode,
    pub(crate) assertion: Option<Assertion>,
}

/// The assertion header and who signs it for which audience.
#[derive(Debug)]
pub(crate) struct Assertion {
    pub(crate) header: HeaderName,
    pub(crate) signer: Arc<AssertionSigner>,
    /// `aud` for requests of no route with an upstream of its own.
    pub(crate) default_audience: String,
    /// `aud` per route index, where it differs from the default.
    pub(crate) route_audiences: Vec<Option<String>>,
}

impl UpstreamCredentials {
    /// Whether nothing is configured (the layer then keeps none).
    pub(crate) fn is_off(&self) -> bool {
        self.access_token.is_none()
            && self.id_token.is_none()
            && self.authorization == AuthorizationMode::None
            && self.assertion.is_none()
    }

    /// Whether the session must keep its ID token (a header sends it
    /// upstream).
    pub(crate) fn needs_id_token(&self) -> bool {
        self.id_token.is_some() || self.authorization == AuthorizationMode::IdToken
    }

    /// Whether the session must keep its access token.
    pub(crate) fn needs_access_token(&self) -> bool {
        self.access_token.is_some() || self.authorization == AuthorizationMode::AccessToken
    }

    /// The configured header names, stripped from every incoming request.
    pub(crate) fn names(&self) -> Vec<HeaderName> {
        self.access_token
            .iter()
            .chain(&self.id_token)
            .chain(self.assertion.as_ref().map(|a| &a.header))
            .cloned()
            .collect()
    }

    /// A request on a public route: the client's `Authorization` is
    /// removed when the gateway owns it.
    pub(crate) fn public(&self, headers: &mut HeaderMap) {
        if self.authorization != AuthorizationMode::None {
            headers.remove(AUTHORIZATION);
        }
    }

    /// Sets the token and assertion headers of an admitted request
    /// (`headers` has had the names stripped already; its `Authorization`
    /// is the client's). `route` is the matched route's index.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, who: &Authenticated, route: Option<usize>) {
        let (access, id) = match who {
            Authenticated::Session(s) => (
                s.current_access_token().map(|t| t.expose().to_string()),
                s.id_token.as_ref().map(|t| t.expose().to_string()),
            ),
            Authenticated::Bearer(_) => (bearer_token(headers).map(str::to_string), None),
        };
        if let (Some(name), Some(token)) = (&self.access_token, &access) {
            if let Some(v) = sensitive(token) {
                headers.insert(name.clone(), v);
            }
        }
        if let (Some(name), Some(token)) = (&self.id_token, &id) {
            if let Some(v) = sensitive(token) {
                headers.insert(name.clone(), v);
            }
        }
        let bearer = match self.authorization {
            AuthorizationMode::None => None,
            AuthorizationMode::AccessToken => Some(access),
            AuthorizationMode::IdToken => Some(id),
        };
        if let Some(token) = bearer {
            headers.remove(AUTHORIZATION);
            if let Some(v) = token.and_then(|t| sensitive(&format!("Bearer {t}"))) {
                headers.insert(AUTHORIZATION, v);
            }
        }
        if let Some(a) = &self.assertion {
            let (aud, slot) = match route.and_then(|i| {
                a.route_audiences
                    .get(i)
                    .and_then(Option::as_deref)
                    .map(|aud| (aud, i + 1))
            }) {
                Some(per_route) => per_route,
                None => (a.default_audience.as_str(), 0),
            };
            if let Some(v) = a.signer.assertion(who.identity(), aud, slot) {
                headers.insert(a.header.clone(), v);
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let scheme = v.get(..7)?;
    scheme
        .eq_ignore_ascii_case("bearer ")
        .then(|| v.get(7..).map(str::trim))
        .flatten()
        .filter(|t| !t.is_empty())
}

/// A header value marked sensitive (kept out of HPACK tables and debug
/// output); `None` for a token that is not a valid header value.
fn sensitive(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(token).ok()?;
    v.set_sensitive(true);
    Some(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_reads_the_bearer_scheme_only() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("bEaReR  abc "));
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&h), None);
    }
}
