//! Request routing: path normalization and the `[[route]]` table.
//!
//! Every request path goes through [`normalize_path`] before it is matched
//! against the [`RouteTable`], so that one resource has exactly one spelling
//! and a policy cannot be bypassed with `/public/%2e%2e/admin`, `//admin` or
//! `/public/..%2Fadmin`. The normalized path is also the one to send upstream,
//! so that the gateway and the application agree on what was requested.
//!
//! Both functions run on every request: the common case (an already normal
//! path) is a single pass over the bytes and allocates nothing.

use crate::config::{RouteAuth, RouteConfig};
use crate::identity::Identity;
use http::Method;
use std::borrow::Cow;
use std::fmt;

/// Longest request path [`normalize_path`] accepts, in bytes (8 KiB).
pub(crate) const MAX_PATH_LEN: usize = 8 * 1024;

/// Why a request path was refused by [`normalize_path`].
///
/// Every variant is an ambiguous or hostile path: the gateway answers `400`
/// rather than guess what the upstream would make of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// Empty, `*`, or otherwise not starting with `/`.
    NotAbsolute,
    /// Longer than [`MAX_PATH_LEN`].
    TooLong,
    /// An encoded slash (`%2F`): would be one segment here and two upstream.
    EncodedSlash,
    /// A backslash, raw or encoded (`%5C`): some servers treat it as `/`.
    Backslash,
    /// A control character (0x00–0x1F, 0x7F), raw or percent-encoded.
    ControlCharacter,
    /// A `%` not followed by two hex digits.
    InvalidEscape,
    /// A raw (not percent-encoded) non-ASCII byte.
    NonAscii,
    /// A dot segment with a path parameter (`..;x`, `.;`): Java servlet
    /// containers strip the parameter and climb, so `/public/..;/admin`
    /// would be matched here as under `/public/` and served as `/admin`.
    DotSegmentParameter,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "path does not start with `/`",
            PathError::TooLong => "path is too long",
            PathError::EncodedSlash => "path contains an encoded slash",
            PathError::Backslash => "path contains a backslash",
            PathError::ControlCharacter => "path contains a control character",
            PathError::InvalidEscape => "path contains an invalid percent escape",
            PathError::NonAscii => "path contains a raw non-ascii byte",
            PathError::DotSegmentParameter => "path contains a dot segment with a parameter",
        })
    }
}

impl std::error::Error for PathError {}

/// Normalizes a request path (the URI's path, without the query).
///
/// The result is the canonical spelling used for route matching and sent
/// upstream:
///
/// - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
///   decoded; every other escape is kept, with its hex digits uppercased
///   (`%c3%a9` → `%C3%A9`);
/// - then dot segments are removed (RFC 3986 §5.2.4), which includes encoded
///   ones (`%2e%2E` is `..` once decoded); `..` at the root is dropped, so a
///   path cannot climb above `/` (`/../x` → `/x`, like RFC 3986, rather than
///   an error);
/// - repeated slashes are collapsed (`//a///b` → `/a/b`); this happens before
///   dot segments are resolved, so `/a//../b` is `/b`;
/// - a path ending in `/`, `/.` or `/..` ends in `/` (`/a/b/..` → `/a/`).
///
/// `;` has no special meaning: `/admin;x=y` is one segment, and
/// `/public;/../admin` normalizes to `/admin`. The exception is a dot segment
/// with a parameter (`..;`, `..;x=y`, `.;`, also encoded as `%2e%2e;`), which
/// is refused: servlet containers (Tomcat, Jetty) strip `;` parameters and
/// then resolve `..`, so the upstream would climb where the gateway did not.
///
/// Refused ([`PathError`]): paths not starting with `/` (including `*` and the
/// empty path), longer than [`MAX_PATH_LEN`], with an encoded slash (`%2F`), a
/// backslash (raw or `%5C`), a control character (raw or encoded, 0x00–0x1F
/// and 0x7F), an invalid escape (`%G1`, `%4`), a raw non-ASCII byte, or a dot
/// segment with a parameter.
///
/// Returns [`Cow::Borrowed`] when the path is already normal.
///
/// # Errors
///
/// The [`PathError`] saying why the path is refused.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if scan(raw.as_bytes())? {
        rewrite(raw).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

/// Validates the whole path; `Ok(true)` when it is not already normal.
fn scan(raw: &[u8]) -> Result<bool, PathError> {
    let mut rewrite = false;
    let mut seg_start = 0;
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'/' => {
                // `//` (an empty segment) or a `.`/`..` segment before this slash.
                if i > 0 && (raw.get(i - 1) == Some(&b'/') || check_segment(&raw[seg_start..i])?) {
                    rewrite = true;
                }
                seg_start = i + 1;
                i += 1;
            }
            b'%' => {
                let (hi, lo, v) = escape_at(raw, i).ok_or(PathError::InvalidEscape)?;
                check_decoded(v)?;
                if is_unreserved(v) || hi.is_ascii_lowercase() || lo.is_ascii_lowercase() {
                    rewrite = true;
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            0x00..=0x1F | 0x7F => return Err(PathError::ControlCharacter),
            0x80..=0xFF => return Err(PathError::NonAscii),
            _ => i += 1,
        }
    }
    if check_segment(&raw[seg_start..])? {
        rewrite = true;
    }
    Ok(rewrite)
}

/// Slow path: decode, drop empty and dot segments. `raw` passed [`scan`].
fn rewrite(raw: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    out.push('/');
    // `out` always ends with `/` here; whether the result keeps it depends on
    // the last segment.
    let mut ends_with_slash = true;
    for seg in raw.get(1..).unwrap_or("").split('/') {
        if seg.is_empty() {
            ends_with_slash = true;
            continue;
        }
        let start = out.len();
        push_decoded(seg.as_bytes(), &mut out)?;
        check_segment(out.as_bytes().get(start..).unwrap_or_default())?;
        match out.get(start..) {
            Some(".") => {
                out.truncate(start);
                ends_with_slash = true;
            }
            Some("..") => {
                out.truncate(start);
                pop_segment(&mut out);
                ends_with_slash = true;
            }
            _ => {
                out.push('/');
                ends_with_slash = false;
            }
        }
    }
    if !ends_with_slash && out.len() > 1 {
        out.pop();
    }
    Ok(out)
}

/// Removes the last segment of `out` (which ends with `/`); a no-op at the root.
fn pop_segment(out: &mut String) {
    let without_slash = out.len().saturating_sub(1);
    if let Some(p) = out.get(..without_slash).and_then(|s| s.rfind('/')) {
        out.truncate(p + 1);
    }
}

/// Appends one segment, decoding unreserved escapes and uppercasing the rest.
fn push_decoded(seg: &[u8], out: &mut String) -> Result<(), PathError> {
    let mut i = 0;
    while let Some(&b) = seg.get(i) {
        if b == b'%' {
            let (_, _, v) = escape_at(seg, i).ok_or(PathError::InvalidEscape)?;
            check_decoded(v)?;
            if is_unreserved(v) {
                out.push(char::from(v));
            } else {
                out.push('%');
                out.push(char::from(HEX_UPPER[usize::from(v >> 4)]));
                out.push(char::from(HEX_UPPER[usize::from(v & 0x0F)]));
            }
            i += 3;
        } else if b.is_ascii() {
            out.push(char::from(b));
            i += 1;
        } else {
            return Err(PathError::NonAscii);
        }
    }
    Ok(())
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The escape at `raw[i]` (which is `%`): its two hex digits and its value.
fn escape_at(raw: &[u8], i: usize) -> Option<(u8, u8, u8)> {
    let hi = *raw.get(i + 1)?;
    let lo = *raw.get(i + 2)?;
    Some((hi, lo, (hex_val(hi)? << 4) | hex_val(lo)?))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Refuses decoded bytes that make a path ambiguous.
fn check_decoded(v: u8) -> Result<(), PathError> {
    match v {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::Backslash),
        0x00..=0x1F | 0x7F => Err(PathError::ControlCharacter),
        _ => Ok(()),
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_dot_segment(seg: &[u8]) -> bool {
    seg == b"." || seg == b".."
}

/// Whether `seg` is a dot segment; refuses a dot segment with a parameter.
fn check_segment(seg: &[u8]) -> Result<bool, PathError> {
    if let Some(semi) = seg.iter().position(|&b| b == b';') {
        if is_dot_segment(&seg[..semi]) {
            return Err(PathError::DotSegmentParameter);
        }
        return Ok(false);
    }
    Ok(is_dot_segment(seg))
}

/// The `[[route]]` rules, ready for matching normalized paths.
///
/// Built once from the configuration. Route paths are normalized with
/// [`normalize_path`] like request paths are, and allowed email domains are
/// lowercased (a leading `@` is ignored).
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

#[derive(Clone, Debug)]
struct Route {
    /// Normalized prefix; `None` when the configured path cannot be
    /// normalized: such a route never matches.
    prefix: Option<String>,
    auth: RouteAuth,
    /// The route matches only these methods; `None`: every method.
    methods: Option<Box<[Method]>>,
    allowed_groups: Vec<String>,
    allowed_email_domains: Vec<String>,
    /// Lowercase.
    allowed_emails: Vec<String>,
    allowed_claims: Vec<ClaimRule>,
    /// The prefix removed before forwarding (no trailing `/`), when set.
    strip_prefix: Option<String>,
    /// The route has an upstream of its own.
    own_upstream: bool,
}

/// One entry of a route's `allowed_claims`: the claim `name` must equal one
/// of `values`, or, for a list claim, contain one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRule {
    /// Claim name, e.g. `acr`.
    pub name: String,
    /// Accepted values.
    pub values: Vec<String>,
}

/// What a [`RoutePolicy`] found missing: the reason for a `403`.
///
/// It names the rule, and for groups, email domains and claims the
/// values the route accepts (configuration, not another user's data); for
/// `allowed_emails` only that the address is not listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denied<'a> {
    /// Not in any of these groups.
    Groups(&'a [String]),
    /// No (verified) email in one of these domains.
    EmailDomains(&'a [String]),
    /// The email is not one of the route's `allowed_emails`.
    Email,
    /// Claim `name` has none of `values`.
    Claim(&'a ClaimRule),
}

impl fmt::Display for Denied<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Groups(g) => write!(f, "membership in one of the groups: {}", g.join(", ")),
            Denied::EmailDomains(d) => {
                write!(f, "a verified email address at: {}", d.join(", "))
            }
            Denied::Email => f.write_str("an email address this page is shared with"),
            Denied::Claim(rule) => write!(
                f,
                "the claim `{}` with one of: {}",
                rule.name,
                rule.values.join(", ")
            ),
        }
    }
}

impl Denied<'_> {
    /// Short machine-readable name of the rule (`groups`, `email_domains`,
    /// `emails`, `claims`).
    #[must_use]
    pub fn rule(&self) -> &'static str {
        match self {
            Denied::Groups(_) => "groups",
            Denied::EmailDomains(_) => "email_domains",
            Denied::Email => "emails",
            Denied::Claim(_) => "claims",
        }
    }
}

impl RouteTable {
    /// Builds the table, keeping the configuration's order (first match wins).
    ///
    /// A route whose path [`normalize_path`] refuses never matches; use
    /// [`RouteTable::try_new`] to report such routes as configuration errors.
    #[must_use]
    pub fn new(routes: &[RouteConfig]) -> Self {
        RouteTable {
            routes: routes
                .iter()
                .map(|r| Route::new(r, normalize_path(&r.path).ok()))
                .collect(),
        }
    }

    /// Like [`RouteTable::new`], but fails on the first route whose path is
    /// refused by [`normalize_path`].
    ///
    /// # Errors
    ///
    /// The index of that route and why its path is refused.
    pub fn try_new(routes: &[RouteConfig]) -> Result<Self, (usize, PathError)> {
        let mut table = Vec::with_capacity(routes.len());
        for (i, r) in routes.iter().enumerate() {
            let prefix = normalize_path(&r.path).map_err(|e| (i, e))?;
            table.push(Route::new(r, Some(prefix)));
        }
        Ok(RouteTable { routes: table })
    }

    /// Number of routes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes (every path gets [`RoutePolicy::DEFAULT`]).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The policy for a path already normalized by [`normalize_path`].
    ///
    /// The first route whose path is a prefix of `normalized` wins, with
    /// segment semantics: a route path ending in `/` (such as `/public/`)
    /// matches `/public/` and everything under it, but not `/public`; a route
    /// path without the trailing slash (such as `/api`) matches `/api` and
    /// `/api/…`, but not `/apix`. Matching is case-sensitive. When no route
    /// matches, the result is [`RoutePolicy::DEFAULT`] (authentication
    /// required, no group or domain constraint).
    ///
    /// Segment parameters (`;…` up to the next `/`) mean nothing to most
    /// upstreams but are dropped by servlet containers (Tomcat, Jetty)
    /// before they route. A path with parameters is matched both ways and
    /// the stricter policy wins: `/admin;x/secret` gets the `/admin/` rule
    /// (a servlet serves `/admin/secret`), while `/public;x/page` does not
    /// become public through the `/public/` rule. (The request is forwarded
    /// as it came.)
    #[must_use]
    ///
    /// Routes restricted to some `methods` are skipped (the method is not
    /// known); see [`RouteTable::match_request`].
    pub fn match_path(&self, normalized: &str) -> RoutePolicy<'_> {
        self.match_with(None, normalized)
    }

    /// Like [`RouteTable::match_path`], for a request with `method`: a
    /// route with `methods` matches only requests with one of them.
    #[must_use]
    pub fn match_request(&self, method: &Method, normalized: &str) -> RoutePolicy<'_> {
        self.match_with(Some(method), normalized)
    }

    fn match_with(&self, method: Option<&Method>, normalized: &str) -> RoutePolicy<'_> {
        let raw = self.match_plain(method, normalized);
        if !normalized.contains(';') {
            return raw;
        }
        let stripped = self.match_plain(method, &strip_segment_parameters(normalized));
        let constrained = |p: &RoutePolicy<'_>| p.is_constrained();
        if raw.index == stripped.index || stripped.auth == RouteAuth::None {
            raw
        } else if raw.auth == RouteAuth::None || constrained(&stripped) || !constrained(&raw) {
            stripped
        } else {
            raw
        }
    }

    fn match_plain(&self, method: Option<&Method>, normalized: &str) -> RoutePolicy<'_> {
        for (i, route) in self.routes.iter().enumerate() {
            let Some(prefix) = &route.prefix else {
                continue;
            };
            if let Some(methods) = &route.methods {
                if !method.is_some_and(|m| methods.contains(m)) {
                    continue;
                }
            }
            if prefix_matches(prefix, normalized) {
                return RoutePolicy {
                    auth: route.auth,
                    allowed_groups: &route.allowed_groups,
                    allowed_email_domains: &route.allowed_email_domains,
                    allowed_emails: &route.allowed_emails,
                    allowed_claims: &route.allowed_claims,
                    strip_prefix: route.strip_prefix.as_deref(),
                    own_upstream: route.own_upstream,
                    index: Some(i),
                };
            }
        }
        RoutePolicy::DEFAULT
    }

    /// The claim names some route's `allowed_claims` names: the only
    /// claims identities keep ([`crate::identity::ExtraClaims`]).
    #[must_use]
    pub fn claim_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .routes
            .iter()
            .flat_map(|r| r.allowed_claims.iter().map(|c| c.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether some route forwards to an upstream of its own.
    #[must_use]
    pub fn has_own_upstreams(&self) -> bool {
        self.routes.iter().any(|r| r.own_upstream)
    }

    /// Routes no request can reach: `(shadowed, by)` pairs of indexes,
    /// where every path and method route `shadowed` matches is matched
    /// first by the earlier route `by` (a prefix of it, for the same or
    /// more methods).
    #[must_use]
    pub fn shadowed(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, later) in self.routes.iter().enumerate() {
            let Some(lp) = &later.prefix else { continue };
            let by = self.routes[..i].iter().position(|earlier| {
                let Some(ep) = &earlier.prefix else {
                    return false;
                };
                let methods_covered = match (&earlier.methods, &later.methods) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(e), Some(l)) => l.iter().all(|m| e.contains(m)),
                };
                methods_covered && prefix_matches(ep, lp)
            });
            if let Some(j) = by {
                out.push((i, j));
            }
        }
        out
    }
}

/// `/a;x/b;y=1` → `/a/b`: every segment cut at its first `;`.
fn strip_segment_parameters(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or(""));
    }
    out
}

impl Route {
    fn new(config: &RouteConfig, prefix: Option<Cow<'_, str>>) -> Self {
        let prefix = prefix.map(Cow::into_owned);
        Route {
            auth: config.auth,
            methods: None,
            allowed_groups: config.allowed_groups.clone(),
            allowed_email_domains: config
                .allowed_email_domains
                .iter()
                .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
                .collect(),
            allowed_emails: Vec::new(),
            allowed_claims: Vec::new(),
            strip_prefix: None,
            own_upstream: config.upstream.is_some(),
            prefix,
        }
        .with_methods(&config.methods)
        .with_emails(&config.allowed_emails)
        .with_claims(&config.allowed_claims)
        .with_strip_prefix(config.strip_prefix)
    }

    /// Restricts the route to `methods` (an empty list: every method).
    fn with_methods(mut self, methods: &[String]) -> Self {
        let parsed: Vec<Method> = methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).ok())
            .collect();
        self.methods = (!parsed.is_empty()).then(|| parsed.into_boxed_slice());
        self
    }

    fn with_emails(mut self, emails: &[String]) -> Self {
        self.allowed_emails = emails
            .iter()
            .map(|e| e.trim().to_ascii_lowercase())
            .collect();
        self
    }

    fn with_claims<'a>(
        mut self,
        claims: impl IntoIterator<Item = (&'a String, &'a Vec<String>)>,
    ) -> Self {
        self.allowed_claims = claims
            .into_iter()
            .map(|(name, values)| ClaimRule {
                name: name.clone(),
                values: values.clone(),
            })
            .collect();
        self
    }

    fn with_strip_prefix(mut self, strip: bool) -> Self {
        self.strip_prefix = self
            .prefix
            .as_deref()
            .filter(|_| strip)
            .map(|p| p.trim_end_matches('/').to_string());
        self
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(_) if prefix.ends_with('/') => true,
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
    }
}

/// What a request path requires: the result of [`RouteTable::match_path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutePolicy<'a> {
    /// Whether authentication is needed.
    pub auth: RouteAuth,
    /// When not empty, the identity must be in one of these groups.
    pub allowed_groups: &'a [String],
    /// When not empty, the identity's email must be in one of these domains
    /// (lowercase).
    pub allowed_email_domains: &'a [String],
    /// When not empty, the identity's email must be one of these (lowercase).
    pub allowed_emails: &'a [String],
    /// Every rule must hold ([`ClaimRule`]).
    pub allowed_claims: &'a [ClaimRule],
    /// The path prefix removed before the request is forwarded (no
    /// trailing `/`): `/app2/x` goes on as `/x`.
    pub strip_prefix: Option<&'a str>,
    /// Whether the route forwards to an upstream of its own (then the
    /// request carries a [`MatchedRoute`] extension).
    pub own_upstream: bool,
    /// Index of the matching `[[route]]`; `None` for the default policy.
    pub index: Option<usize>,
}

/// The `[[route]]` a request matched, by index in the configuration: put
/// in the request's extensions for the service behind the layer when the
/// route has an upstream of its own (the gateway's proxy picks it by this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchedRoute(pub usize);

impl RoutePolicy<'static> {
    /// The policy of paths no route matches: authentication required, no
    /// group or domain constraint.
    pub const DEFAULT: RoutePolicy<'static> = RoutePolicy {
        auth: RouteAuth::Required,
        allowed_groups: &[],
        allowed_email_domains: &[],
        allowed_emails: &[],
        allowed_claims: &[],
        strip_prefix: None,
        own_upstream: false,
        index: None,
    };
}

impl Default for RoutePolicy<'static> {
    fn default() -> Self {
        RoutePolicy::DEFAULT
    }
}

impl<'a> RoutePolicy<'a> {
    /// Whether an authenticated `identity` passes this policy's constraints
    /// (a `false` means `403`); see [`RoutePolicy::check`].
    #[cfg(test)]
    #[must_use]
    pub(crate) fn allows(&self, identity: &Identity) -> bool {
        self.check(identity).is_ok()
    }

    /// Whether the policy has any constraint besides authentication.
    fn is_constrained(&self) -> bool {
        !self.allowed_groups.is_empty()
            || !self.allowed_email_domains.is_empty()
            || !self.allowed_emails.is_empty()
            || !self.allowed_claims.is_empty()
    }

    /// Checks an authenticated `identity` against this policy's
    /// constraints; every constraint that is set must hold:
    ///
    /// - groups: at least one of the identity's groups is in
    ///   `allowed_groups` (exact, case-sensitive);
    /// - email domains: the identity has an email, it is not explicitly
    ///   unverified (`email_verified == Some(false)` is refused; an absent
    ///   claim is accepted), it has exactly one `@` with something on both
    ///   sides, and the part after the `@` equals one of
    ///   `allowed_email_domains`, ignoring ASCII case. No suffix or subdomain
    ///   match: `evil-example.com` and `sub.example.com` are not
    ///   `example.com`;
    /// - emails: the same email rules, and the whole address equals one of
    ///   `allowed_emails`, ignoring ASCII case;
    /// - claims: for each [`ClaimRule`], the identity's claim (kept in
    ///   [`Identity::claims`]) equals one of the values, or is a list with
    ///   an element equal to one of them (exact, case-sensitive). A missing
    ///   claim fails.
    ///
    /// A policy without constraints allows every identity. Whether
    /// authentication is needed at all is [`RoutePolicy::auth`].
    ///
    /// # Errors
    ///
    /// The first constraint that fails, for the `403` page.
    pub fn check(&self, identity: &Identity) -> Result<(), Denied<'a>> {
        if !self.allowed_groups.is_empty()
            && !identity
                .groups
                .iter()
                .any(|g| self.allowed_groups.iter().any(|a| a == g))
        {
            return Err(Denied::Groups(self.allowed_groups));
        }
        if !self.allowed_email_domains.is_empty() {
            let domain = usable_email(identity).and_then(email_domain);
            let Some(domain) = domain else {
                return Err(Denied::EmailDomains(self.allowed_email_domains));
            };
            if !self
                .allowed_email_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
            {
                return Err(Denied::EmailDomains(self.allowed_email_domains));
            }
        }
        if !self.allowed_emails.is_empty() {
            let email = usable_email(identity).filter(|e| email_domain(e).is_some());
            if !email.is_some_and(|e| {
                self.allowed_emails
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(e))
            }) {
                return Err(Denied::Email);
            }
        }
        for rule in self.allowed_claims {
            let held = identity
                .claims
                .get(&rule.name)
                .is_some_and(|have| have.iter().any(|v| rule.values.contains(v)));
            if !held {
                return Err(Denied::Claim(rule));
            }
        }
        Ok(())
    }
}

/// The identity's email, unless the provider says it is unverified.
fn usable_email(identity: &Identity) -> Option<&str> {
    if identity.email_verified == Some(false) {
        return None;
    }
    identity.email.as_deref()
}

impl RoutePolicy<'_> {
    /// The one route decision, for the layer and for forward-auth alike:
    /// whether an authenticated `identity` may have the path. Public routes
    /// admit everyone; protected ones apply [`RoutePolicy::check`].
    pub(crate) fn admit(&self, identity: &Identity) -> Result<(), Denied<'_>> {
        if self.auth == RouteAuth::None {
            return Ok(());
        }
        self.check(identity)
    }
}

/// The domain of an email with exactly one `@` and non-empty parts.
fn email_domain(email: &str) -> Option<&str> {
    let (local, domain) = email.split_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return None;
    }
    Some(domain)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
