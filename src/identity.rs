//! The authenticated user, and the identity headers sent upstream.
//!
//! # Header values
//!
//! Claims come from the identity provider (or a bearer token) and are not
//! trusted to be header-safe. Every value is percent-encoded, RFC 3986-style,
//! so that what the upstream receives is always visible ASCII:
//!
//! - every byte outside `0x21..=0x7E` is encoded: control characters (so
//!   `"alice\r\nX-Admin: true"` becomes `alice%0D%0AX-Admin:%20true`, one
//!   header, never two), space (leading/trailing spaces would otherwise be
//!   trimmed by HTTP parsers) and non-ASCII UTF-8 bytes (`José` → `Jos%C3%A9`);
//! - `%` itself is encoded as `%25`, so that the encoding is injective: two
//!   different claims never produce the same header value (a subject
//!   `%C3%A9` is sent as `%25C3%25A9`, not as the encoding of `é`);
//! - in the groups header, a group's `,` is encoded as `%2C`, so that a group
//!   named `admins,staff` cannot pose as two groups; groups are joined with
//!   `,` (no space) and empty groups are left out.
//!
//! Empty claims (and an empty group list) send no header at all.
//! Upstreams that only see ASCII claims receive them unchanged.
//!
//! # Stripping
//!
//! [`IdentityHeaders::strip`] removes every configured identity header from
//! the incoming request, on every route, also those with `auth = "none"`. It
//! also removes look-alike names that spell `-` as `_`
//! (`X-Auth-Request_User`): CGI, WSGI/Rack, PHP and some proxies map both to
//! the same variable (`HTTP_X_AUTH_REQUEST_USER`), which would let a client
//! smuggle an identity past a strip that compares names exactly.

use crate::config::HeaderNamesConfig;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, InvalidHeaderName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who made a request, once authenticated.
///
/// The tower layer puts it in the request's extensions as an
/// `Arc<Identity>` (`req.extensions().get::<Arc<Identity>>()`, or axum's
/// `Extension<Arc<Identity>>`) for every authenticated request, and the
/// session store keeps it; it is also the JSON of `/oauth2/userinfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Stable subject (`sub` claim, or the provider's equivalent).
    pub subject: String,
    /// `email` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `email_verified` claim; absent when the provider does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// `preferred_username` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// `groups` claim; empty when absent.
    #[serde(default)]
    pub groups: Vec<String>,
    /// `name` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Issuer that vouched for this identity (`iss`).
    pub issuer: String,
    /// When the session or token expires, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Whether this came from a browser session or a bearer token.
    pub source: IdentitySource,
    /// Further claims of the ID token (or bearer token), only those a
    /// route's `allowed_claims` names; empty otherwise. See [`ExtraClaims`].
    #[serde(default, skip_serializing_if = "ExtraClaims::is_empty")]
    pub claims: ExtraClaims,
}

/// Most values kept of one claim (elements of a list claim).
pub const MAX_CLAIM_VALUES: usize = 64;
/// Longest claim value kept, in bytes; longer values are dropped, never
/// truncated (a truncated value could match where the whole would not).
pub const MAX_CLAIM_VALUE_LEN: usize = 256;

/// Claims kept beyond the standard ones, for `allowed_claims` route
/// policies: bounded by the configuration, never the token.
///
/// Only the claim names the route table names are kept (see
/// [`ExtraClaims::from_payload`]), each as a list of strings: a string
/// claim is one value, a list claim its string (and number and boolean)
/// elements, a number or boolean its JSON spelling (`2`, `true`). Objects,
/// `null`, values longer than [`MAX_CLAIM_VALUE_LEN`] and list elements
/// beyond [`MAX_CLAIM_VALUES`] are left out. An identity without such
/// claims costs one pointer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
// Boxed: one pointer in every identity without such claims (most).
#[allow(clippy::box_collection)]
pub struct ExtraClaims(Option<Box<BTreeMap<String, Vec<String>>>>);

impl ExtraClaims {
    /// The claims of `payload` (a verified token's claims) that `names`
    /// lists, bounded as described on [`ExtraClaims`].
    #[must_use]
    pub fn from_payload(
        payload: &serde_json::Map<String, serde_json::Value>,
        names: &[String],
    ) -> Self {
        let mut kept = BTreeMap::new();
        for name in names {
            let Some(value) = payload.get(name) else {
                continue;
            };
            let values: Vec<String> = match value {
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(claim_scalar)
                    .take(MAX_CLAIM_VALUES)
                    .collect(),
                v => claim_scalar(v).into_iter().collect(),
            };
            if !values.is_empty() {
                kept.insert(name.clone(), values);
            }
        }
        if kept.is_empty() {
            ExtraClaims(None)
        } else {
            ExtraClaims(Some(Box::new(kept)))
        }
    }

    /// An identity's claims from `(name, values)` pairs (tests, custom
    /// stores), bounded like [`ExtraClaims::from_payload`].
    #[must_use]
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [&'a str])>) -> Self {
        let mut kept = BTreeMap::new();
        for (name, values) in pairs {
            let values: Vec<String> = values
                .iter()
                .filter(|v| v.len() <= MAX_CLAIM_VALUE_LEN)
                .take(MAX_CLAIM_VALUES)
                .map(|v| (*v).to_string())
                .collect();
            if !values.is_empty() {
                kept.insert(name.to_string(), values);
            }
        }
        ExtraClaims((!kept.is_empty()).then(|| Box::new(kept)))
    }

    /// The values of claim `name`, if kept.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.0.as_ref()?.get(name).map(Vec::as_slice)
    }

    /// Whether no claim is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

fn claim_scalar(v: &serde_json::Value) -> Option<String> {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (s.len() <= MAX_CLAIM_VALUE_LEN).then_some(s)
}

impl Identity {
    /// An identity with only its subject and issuer; every optional claim
    /// absent, no expiry.
    pub fn new(
        subject: impl Into<String>,
        issuer: impl Into<String>,
        source: IdentitySource,
    ) -> Self {
        Identity {
            subject: subject.into(),
            email: None,
            email_verified: None,
            preferred_username: None,
            groups: Vec::new(),
            name: None,
            issuer: issuer.into(),
            expires_at: None,
            source,
            claims: ExtraClaims(None),
        }
    }
}

/// How an [`Identity`] was established.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentitySource {
    /// A browser session cookie (after an authorization-code login).
    Session,
    /// An `Authorization: Bearer <JWT>` header.
    Bearer,
}

/// The identity header names, parsed once from `[headers]`.
#[derive(Clone, Debug)]
pub struct IdentityHeaders {
    user: HeaderName,
    email: HeaderName,
    preferred_username: HeaderName,
    groups: HeaderName,
    /// Further names the gateway alone sets upstream (token and assertion
    /// headers), stripped like the identity headers; empty by default.
    also_stripped: Vec<HeaderName>,
}

impl IdentityHeaders {
    /// Parses the configured names.
    ///
    /// When two names are configured the same, the later value in
    /// `user`, `email`, `preferred_username`, `groups` order wins.
    ///
    /// # Errors
    ///
    /// When a configured name is not a valid header name.
    pub fn new(config: &HeaderNamesConfig) -> Result<Self, InvalidHeaderName> {
        Ok(IdentityHeaders {
            user: HeaderName::from_bytes(config.user.as_bytes())?,
            email: HeaderName::from_bytes(config.email.as_bytes())?,
            preferred_username: HeaderName::from_bytes(config.preferred_username.as_bytes())?,
            groups: HeaderName::from_bytes(config.groups.as_bytes())?,
            also_stripped: Vec::new(),
        })
    }

    /// Also strips `names` from every incoming request (and their `_`
    /// look-alikes): the headers the gateway sets besides the identity
    /// headers, such as the token and assertion headers.
    #[must_use]
    pub fn also_stripping(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        for name in names {
            if !self.also_stripped.contains(&name) && !self.names().contains(&&name) {
                self.also_stripped.push(name);
            }
        }
        self
    }

    /// Every name [`IdentityHeaders::strip`] removes.
    fn stripped(&self) -> impl Iterator<Item = &HeaderName> {
        self.names().into_iter().chain(self.also_stripped.iter())
    }

    /// The four names: user, email, preferred username, groups.
    #[must_use]
    pub fn names(&self) -> [&HeaderName; 4] {
        [
            &self.user,
            &self.email,
            &self.preferred_username,
            &self.groups,
        ]
    }

    /// Removes every value of every identity header from `headers`, and of
    /// the names that differ from one only by `_` instead of `-`.
    ///
    /// Must run on every proxied request, whatever its route.
    pub fn strip(&self, headers: &mut HeaderMap) {
        // Hashed removals only of names present (none on most requests).
        crate::proxy::headers::remove_names(headers, |name| self.is_stripped(name));
    }

    /// Whether `name` is one of ours, or one of ours with `_` for `-`.
    fn is_stripped(&self, name: &HeaderName) -> bool {
        let n = name.as_str().as_bytes();
        if n.contains(&b'_') {
            self.stripped()
                .any(|ours| same_but_underscores(ours.as_str().as_bytes(), n))
        } else {
            self.stripped().any(|ours| ours == name)
        }
    }

    /// Strips (see [`IdentityHeaders::strip`]), then sets the identity
    /// headers for `identity` (encoded as described in the
    /// [module documentation](self)).
    ///
    /// For requests of a stored session, prefer
    /// [`IdentityHeaders::precompute`] once and
    /// [`IdentityHeaders::apply_precomputed`] per request.
    pub fn apply(&self, identity: &Identity, headers: &mut HeaderMap) {
        self.apply_precomputed(&self.precompute(identity), headers);
    }

    /// The identity headers for `identity`, ready to be applied many times
    /// with [`IdentityHeaders::apply_precomputed`]: every value encoded
    /// once into a single shared buffer.
    #[must_use]
    pub fn precompute(&self, identity: &Identity) -> PrecomputedHeaders {
        PrecomputedHeaders::of(identity)
    }

    /// Strips (see [`IdentityHeaders::strip`]), then sets precomputed
    /// headers. Applying is slicing one reference-counted buffer.
    ///
    /// `precomputed` must come from this `IdentityHeaders` (or one with the
    /// same names), else stale names could survive the strip.
    pub fn apply_precomputed(&self, precomputed: &PrecomputedHeaders, headers: &mut HeaderMap) {
        self.strip(headers);
        self.insert_precomputed(precomputed, headers);
    }

    /// Sets precomputed headers on `headers` that [`IdentityHeaders::strip`]
    /// has already been applied to (the middleware strips every request
    /// first; stripping again would only cost time).
    pub(crate) fn insert_precomputed(
        &self,
        precomputed: &PrecomputedHeaders,
        headers: &mut HeaderMap,
    ) {
        for (name, value) in self.iter_precomputed(precomputed) {
            headers.insert(name.clone(), value);
        }
    }

    /// The headers of `precomputed`, in user, email, preferred username,
    /// groups order (absent claims have no entry).
    pub fn iter_precomputed<'a>(
        &'a self,
        precomputed: &'a PrecomputedHeaders,
    ) -> impl Iterator<Item = (&'a HeaderName, HeaderValue)> + 'a {
        let names = self.names();
        precomputed
            .spans
            .iter()
            .zip(names)
            .filter(|((start, end), _)| start < end)
            .filter_map(|((start, end), name)| {
                let value = precomputed
                    .buf
                    .slice(usize::from(*start)..usize::from(*end));
                HeaderValue::from_maybe_shared(value)
                    .ok()
                    .map(|v| (name, v))
            })
    }
}

/// A span of the shared buffer; values beyond 64 KiB (which no header
/// limit admits) are dropped rather than truncated.
fn span(start: usize, end: usize) -> (u16, u16) {
    match (u16::try_from(start), u16::try_from(end)) {
        (Ok(s), Ok(e)) => (s, e),
        _ => (0, 0),
    }
}

/// Identity headers computed once (for a session) by
/// [`IdentityHeaders::precompute`]: the encoded values in one shared buffer
/// and where each starts and ends. Cheap to clone and to apply, and small to
/// keep per session.
#[derive(Clone, Debug, Default)]
pub struct PrecomputedHeaders {
    buf: Bytes,
    spans: [(u16, u16); 4],
}

impl PrecomputedHeaders {
    /// The encoded identity headers of `identity` (they depend on the
    /// claims only; the names are applied by [`IdentityHeaders`]).
    #[must_use]
    pub fn of(identity: &Identity) -> PrecomputedHeaders {
        let mut buf = Vec::with_capacity(128);
        let mut spans = [(0u16, 0u16); 4];
        let claims = [
            Some(identity.subject.as_str()),
            identity.email.as_deref(),
            identity.preferred_username.as_deref(),
        ];
        for (slot, value) in claims.into_iter().enumerate() {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                let start = buf.len();
                encode_into(v, false, &mut buf);
                spans[slot] = span(start, buf.len());
            }
        }
        let start = buf.len();
        for g in identity.groups.iter().filter(|g| !g.is_empty()) {
            if buf.len() > start {
                buf.push(b',');
            }
            encode_into(g, true, &mut buf);
        }
        spans[3] = span(start, buf.len());
        buf.shrink_to_fit();
        PrecomputedHeaders {
            buf: Bytes::from(buf),
            spans,
        }
    }

    /// Number of headers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.spans.iter().filter(|(s, e)| s < e).count()
    }

    /// Whether there is no header (an identity without any claim to send).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn same_but_underscores(ours: &[u8], theirs: &[u8]) -> bool {
    ours.len() == theirs.len()
        && ours.iter().zip(theirs).all(|(&a, &b)| {
            let a = if a == b'_' { b'-' } else { a };
            let b = if b == b'_' { b'-' } else { b };
            a == b
        })
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `b` is percent-encoded in a header value.
fn must_encode(b: u8, in_group: bool) -> bool {
    !(0x21..=0x7E).contains(&b) || b == b'%' || (in_group && b == b',')
}

fn encode_into(s: &str, in_group: bool, out: &mut Vec<u8>) {
    for b in s.bytes() {
        if must_encode(b, in_group) {
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[usize::from(b >> 4)],
                HEX_UPPER[usize::from(b & 0x0F)],
            ]);
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
