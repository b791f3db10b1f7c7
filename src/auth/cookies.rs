//! The gateway's cookies: reading them from `Cookie` headers, removing them
//! before a request goes upstream, and writing `Set-Cookie`.

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

/// `SameSite` attribute values of the gateway's cookies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SameSite {
    /// `Lax`: sent on top-level GET navigations (query-mode callbacks).
    Lax,
    /// `Strict`: never sent on cross-site requests, not even navigations
    /// (a link from elsewhere arrives without the session).
    Strict,
    /// `None`: sent on cross-site requests too; needed for `form_post`
    /// callbacks (cross-site POST); always with `Secure`, so https only.
    None,
}

/// Names and attributes of the gateway's cookies.
#[derive(Clone, Debug)]
pub(crate) struct CookieSettings {
    /// Session cookie name (`__Host-oidc-gateway` or `oidc-gateway`).
    pub session_name: String,
    /// Prefix of per-attempt login cookies: `<session_name>-login-`.
    pub login_prefix: String,
    /// Add `Secure`.
    pub secure: bool,
    /// `Domain` of the session cookie (shared with subdomains); host-only
    /// when `None`. Login cookies are always host-only.
    pub domain: Option<String>,
    /// `SameSite` of the session cookie. Default `Lax`.
    pub session_same_site: SameSite,
}

impl CookieSettings {
    /// Settings for the session cookie `session_name`.
    pub(crate) fn new(session_name: &str, secure: bool) -> Self {
        CookieSettings {
            session_name: session_name.to_string(),
            login_prefix: format!("{session_name}-login-"),
            secure,
            domain: None,
            session_same_site: SameSite::Lax,
        }
    }

    /// The session cookie with `Domain=domain` (no `__Host-` name then).
    pub(crate) fn with_domain(mut self, domain: Option<String>) -> Self {
        self.domain = domain;
        self
    }

    /// The session cookie with `SameSite=same_site`.
    pub(crate) fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.session_same_site = same_site;
        self
    }

    /// Whether `name` is one of the gateway's cookies.
    pub(crate) fn is_gateway_cookie(&self, name: &str) -> bool {
        name == self.session_name
            || name.starts_with(&self.login_prefix)
            || chunk_index(name, &self.session_name).is_some()
    }

    /// [`CookieSettings::is_gateway_cookie`] of a name as sent: one that is
    /// not UTF-8 is not ours.
    fn is_gateway_cookie_name(&self, name: &[u8]) -> bool {
        std::str::from_utf8(name).is_ok_and(|name| self.is_gateway_cookie(name))
    }

    /// `Set-Cookie` value for a cookie `name=value` living `max_age` seconds.
    ///
    /// The session cookie (`name == session_name`) always gets the
    /// configured [`CookieSettings::session_same_site`] and
    /// [`CookieSettings::domain`], whatever `same_site` says, so that
    /// setting and clearing it address the same cookie.
    pub(crate) fn set(
        &self,
        name: &str,
        value: &str,
        max_age: u64,
        same_site: SameSite,
    ) -> HeaderValue {
        let is_session = name == self.session_name;
        let same_site = match if is_session {
            self.session_same_site
        } else {
            same_site
        } {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        };
        let secure = if self.secure || same_site == "None" {
            "; Secure"
        } else {
            ""
        };
        let domain = match (&self.domain, is_session) {
            (Some(d), true) => format!("; Domain={d}"),
            _ => String::new(),
        };
        let s = format!(
            "{name}={value}; Path=/{domain}; HttpOnly; SameSite={same_site}{secure}; Max-Age={max_age}"
        );
        HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// `Set-Cookie` value that deletes cookie `name`.
    pub(crate) fn clear(&self, name: &str) -> HeaderValue {
        self.set(name, "", 0, SameSite::Lax)
    }
}

/// Index of a session chunk cookie `<base>-<n>` (one or two digits).
pub(crate) fn chunk_index(name: &str, base: &str) -> Option<usize> {
    let digits = name.strip_prefix(base)?.strip_prefix('-')?;
    if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Every `name=value` pair in the `Cookie` headers, as sent (bytes: a
/// header value may carry obs-text, and the pairs around such a byte are
/// still cookies the gateway must see and strip).
fn raw_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| Pairs { rest: v.as_bytes() })
}

/// The `name=value` pairs of one `Cookie` line, split with `memchr` (this
/// runs on every request, once to read the session cookie and once to
/// strip it); pieces without `=` are skipped.
struct Pairs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let pair = match memchr::memchr(b';', self.rest) {
                Some(i) => {
                    let pair = &self.rest[..i];
                    self.rest = &self.rest[i + 1..];
                    pair
                }
                None => std::mem::take(&mut self.rest),
            };
            if let Some(eq) = memchr::memchr(b'=', pair) {
                return Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()));
            }
        }
        None
    }
}

/// Every `name=value` pair in the request's `Cookie` headers (quotes
/// around a value removed); pairs that are not UTF-8 are left out.
pub(crate) fn request_cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    raw_pairs(headers).filter_map(|(name, value)| {
        let name = std::str::from_utf8(name).ok()?;
        let value = std::str::from_utf8(value).ok()?;
        Some((name, value.trim_matches('"')))
    })
}

/// The value of cookie `name`, if the request carries exactly one.
pub(crate) fn request_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = raw_pairs(headers).filter(|(n, _)| *n == name.as_bytes());
    let first = found.next()?.1;
    // Two cookies of our name means someone planted one: trust neither.
    if found.next().is_some() {
        return None;
    }
    Some(std::str::from_utf8(first).ok()?.trim_matches('"'))
}

/// Removes the gateway's cookies from the `Cookie` headers; other cookies
/// pass. One parse when the request carries only the gateway's cookies or
/// none (the usual cases); the header is rebuilt only when both kinds are there.
pub(crate) fn strip_gateway_cookies(headers: &mut HeaderMap, settings: &CookieSettings) {
    let (mut ours, mut others) = (0usize, 0usize);
    for (name, _) in raw_pairs(headers) {
        if settings.is_gateway_cookie_name(name) {
            ours += 1;
        } else {
            others += 1;
        }
    }
    if ours == 0 {
        return;
    }
    if others == 0 {
        headers.remove(COOKIE);
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for (name, value) in raw_pairs(headers) {
        if settings.is_gateway_cookie_name(name) {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(name);
        kept.push(b'=');
        kept.extend_from_slice(value);
    }
    headers.remove(COOKIE);
    // Pieces of valid header values joined by "; ": valid.
    if let Ok(v) = HeaderValue::from_bytes(&kept) {
        headers.insert(COOKIE, v);
    }
}

/// Appends a `Set-Cookie` header.
pub(crate) fn add_set_cookie(headers: &mut HeaderMap, value: HeaderValue) {
    headers.append(SET_COOKIE, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CookieSettings {
        CookieSettings::new("__Host-oidc-gateway", true)
    }

    /// The pairs by the plain definition: split on `;`, keep the pieces
    /// with `=`, name and value trimmed.
    fn reference_pairs(line: &[u8]) -> Vec<(&[u8], &[u8])> {
        line.split(|&b| b == b';')
            .filter_map(|pair| {
                let eq = pair.iter().position(|&b| b == b'=')?;
                Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
            })
            .collect()
    }

    #[test]
    fn cookies_pairs_split_as_defined() {
        for line in [
            &b""[..],
            b";",
            b"a=1",
            b" a = 1 ;b=2;",
            b"noeq; a=1;; =x; b==2 ;c=",
            b"x=\"q\"; \xff=\xfe",
        ] {
            let pairs: Vec<_> = Pairs { rest: line }.collect();
            assert_eq!(
                pairs,
                reference_pairs(line),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn cookies_pairs_match_the_definition(line in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just(b';'),
                proptest::strategy::Just(b'='),
                proptest::strategy::Just(b' '),
                proptest::num::u8::ANY,
            ],
            0..64,
        )) {
            let pairs: Vec<_> = Pairs { rest: &line }.collect();
            proptest::prop_assert_eq!(pairs, reference_pairs(&line));
        }
    }

    #[test]
    fn cookies_gateway_cookies_are_stripped_others_pass() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; __Host-oidc-gateway=secret; b=2"),
        );
        h.append(
            COOKIE,
            HeaderValue::from_static(
                "__Host-oidc-gateway-login-abc=x; c=3; __Host-oidc-gateway-1=y",
            ),
        );
        strip_gateway_cookies(&mut h, &settings());
        let all: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
    }

    #[test]
    fn cookies_gateway_cookies_are_stripped_beside_obs_text() {
        // A byte that is not visible ASCII elsewhere in the header does not
        // hide the session cookie from stripping.
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_bytes(b"pref=caf\xe9; __Host-oidc-gateway=secret").unwrap(),
        );
        assert_eq!(request_cookie(&h, "__Host-oidc-gateway"), Some("secret"));
        strip_gateway_cookies(&mut h, &settings());
        assert_eq!(h[COOKIE].as_bytes(), b"pref=caf\xe9");

        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_bytes(b"__Host-oidc-gateway=\xff\xfe").unwrap(),
        );
        assert_eq!(request_cookie(&h, "__Host-oidc-gateway"), None);
        strip_gateway_cookies(&mut h, &settings());
        assert!(h.get(COOKIE).is_none());
    }

    #[test]
    fn cookies_only_gateway_cookies_removes_header() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("__Host-oidc-gateway=x"));
        strip_gateway_cookies(&mut h, &settings());
        assert!(h.get(COOKIE).is_none());
    }

    #[test]
    fn cookies_duplicate_session_cookie_is_ignored() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("__Host-oidc-gateway=a; __Host-oidc-gateway=b"),
        );
        assert_eq!(request_cookie(&h, "__Host-oidc-gateway"), None);
        h.insert(
            COOKIE,
            HeaderValue::from_static("x=1;__Host-oidc-gateway=a"),
        );
        assert_eq!(request_cookie(&h, "__Host-oidc-gateway"), Some("a"));
    }

    #[test]
    fn cookies_set_cookie_has_required_attributes() {
        let v = settings().set("__Host-oidc-gateway", "id", 60, SameSite::Lax);
        assert_eq!(
            v,
            "__Host-oidc-gateway=id; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=60"
        );
        let plain = CookieSettings::new("oidc-gateway", false).clear("oidc-gateway");
        assert_eq!(
            plain,
            "oidc-gateway=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
        );
    }

    #[test]
    fn cookies_session_cookie_gets_domain_and_same_site_login_cookies_do_not() {
        let s = CookieSettings::new("__Secure-sso", true)
            .with_domain(Some("example.com".into()))
            .with_same_site(SameSite::Strict);
        assert_eq!(
            s.set("__Secure-sso", "id", 60, SameSite::Lax),
            "__Secure-sso=id; Path=/; Domain=example.com; HttpOnly; SameSite=Strict; Secure; Max-Age=60"
        );
        assert_eq!(
            s.clear("__Secure-sso"),
            "__Secure-sso=; Path=/; Domain=example.com; HttpOnly; SameSite=Strict; Secure; Max-Age=0"
        );
        assert_eq!(
            s.set("__Secure-sso-login-abc", "x", 60, SameSite::Lax),
            "__Secure-sso-login-abc=x; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=60"
        );
    }
}
