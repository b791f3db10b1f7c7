//! Request-head rules every request must pass before the service sees it:
//! `Host` / `:authority` (RFC 9112 §3.2, RFC 9113 §8.3.1) and header names
//! with an underscore. A request that breaks a rule is answered
//! `400 {"error":"bad_request"}` by the server itself (HTTP/1 connections
//! are then closed), so that nothing behind it, neither authentication nor
//! the proxy, ever acts on an ambiguous request.
//!
//! # `Host`
//!
//! Refused with `400`:
//! - an HTTP/1.1 request without `Host` (HTTP/1.0 may omit it), or an
//!   HTTP/2 request with neither `:authority` nor `Host`;
//! - more than one `Host` header;
//! - a `Host` that is not `host[:port]`: userinfo (`user@host`), a path,
//!   query or fragment, an empty value, a non-numeric port;
//! - userinfo in the request target's authority (HTTP/1.1 absolute-form or
//!   HTTP/2 `:authority`);
//! - a `Host` naming another origin than the request target's authority
//!   (case-insensitive host, the scheme's default port may be omitted).
//!
//! # Header names with `_`
//!
//! CGI, WSGI, Rack and PHP map `-` and `_` in header names to the same
//! variable, so `Transfer_Encoding` or `X_Auth_Request_User` can pose as
//! headers the gateway checked or set. [`HeadersWithUnderscores`] chooses
//! what to do (`server.headers_with_underscores`); the default drops them,
//! as nginx does (`underscores_in_headers off`).

use futures_util::future::Either;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Version};
use serde::Deserialize;
use std::convert::Infallible;
use std::future::Ready;
use std::task::{Context, Poll};

use super::ConnInfo;
use crate::body::{self, ResponseBody};

/// What to do with request headers whose name contains `_`
/// (`server.headers_with_underscores`). The names follow Envoy's
/// `headers_with_underscores_action`. See the [module docs](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HeadersWithUnderscores {
    /// Remove them before anything else sees the request (the default;
    /// nginx's `underscores_in_headers off`, Envoy's `DROP_HEADER`).
    #[default]
    Drop,
    /// Answer `400` (Envoy's `REJECT_REQUEST`).
    Reject,
    /// Keep them (Envoy's default `ALLOW`). The gateway's identity headers
    /// are still protected: their `_` spellings are always removed.
    Allow,
}

/// Why a request head was refused (for the debug log line).
pub(crate) type Refusal = &'static str;

/// Applies the rules to `req`: `Err` when it must be refused; headers with
/// `_` are removed in place under [`HeadersWithUnderscores::Drop`].
pub(crate) fn check<B>(
    req: &mut Request<B>,
    underscores: HeadersWithUnderscores,
) -> Result<(), Refusal> {
    check_host(req)?;
    if underscores != HeadersWithUnderscores::Allow && has_underscored(req.headers()) {
        if underscores == HeadersWithUnderscores::Reject {
            return Err("header name with an underscore");
        }
        drop_underscored(req.headers_mut());
    }
    Ok(())
}

fn check_host<B>(req: &Request<B>) -> Result<(), Refusal> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one host header");
    }
    if let Some(host) = host {
        if !is_valid_host(host.as_bytes()) {
            return Err("invalid host header");
        }
    }
    match (req.uri().authority(), host) {
        (Some(target), _) if target.as_str().contains('@') => Err("userinfo in the request target"),
        (Some(target), Some(host)) => {
            if same_origin(target, host.as_bytes(), req.uri().scheme()) {
                Ok(())
            } else {
                Err("host header differs from the request target")
            }
        }
        // HTTP/2 (and HTTP/3) carry the authority in the target.
        (Some(_), None) if req.version() != Version::HTTP_11 => Ok(()),
        (Some(_), None) => Err("missing host header"),
        (None, Some(_)) => Ok(()),
        (None, None) if req.version() < Version::HTTP_11 => Ok(()),
        (None, None) => Err("missing host header"),
    }
}

/// `host [":" port]` of RFC 3986 §3.2.2/§3.2.3: a reg-name or IPv4
/// address, or an IPv6 literal in brackets; no userinfo, path, query,
/// fragment or whitespace; a port of at most five digits.
fn is_valid_host(v: &[u8]) -> bool {
    let port = if let Some(rest) = v.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &rest[..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        &rest[end + 1..]
    } else {
        let end = v.iter().position(|&b| b == b':').unwrap_or(v.len());
        let name = &v[..end];
        if name.is_empty() || !name.iter().all(|&b| is_reg_name_byte(b)) {
            return false;
        }
        &v[end..]
    };
    match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

/// unreserved / pct-encoded / sub-delims (RFC 3986 reg-name).
fn is_reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

/// Whether the (valid) `host` names the same origin as `target`.
fn same_origin(target: &Authority, host: &[u8], scheme: Option<&Scheme>) -> bool {
    if target.as_str().as_bytes().eq_ignore_ascii_case(host) {
        return true;
    }
    let split = if host.first() == Some(&b'[') {
        host.iter()
            .position(|&b| b == b']')
            .map_or(host.len(), |i| i + 1)
    } else {
        host.iter().position(|&b| b == b':').unwrap_or(host.len())
    };
    let (name, port) = host.split_at(split);
    if !target.host().as_bytes().eq_ignore_ascii_case(name) {
        return false;
    }
    let default = match scheme.map(Scheme::as_str) {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    };
    let port = match port.strip_prefix(b":") {
        Some(digits) if !digits.is_empty() => std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u16>().ok()),
        _ => default,
    };
    target.port_u16().or(default) == port
}

fn has_underscored(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|n| n.as_str().as_bytes().contains(&b'_'))
}

fn drop_underscored(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().as_bytes().contains(&b'_'))
        .cloned()
        .collect();
    for name in &names {
        headers.remove(name);
    }
}

fn bad_request(version: Version) -> Response<ResponseBody> {
    let mut resp = Response::new(body::full(&br#"{"error":"bad_request"}"#[..]));
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if version < Version::HTTP_2 {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

// === impl Checked ===

/// The per-connection service wrapper: inserts [`ConnInfo`], applies the
/// rules, and answers refused requests itself.
#[derive(Clone)]
pub(crate) struct Checked<S> {
    pub(crate) inner: S,
    pub(crate) info: ConnInfo,
    pub(crate) underscores: HeadersWithUnderscores,
}

type Ready400 = Ready<Result<Response<ResponseBody>, Infallible>>;

impl<S, B> tower::Service<Request<B>> for Checked<S>
where
    S: tower::Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Either<Ready400, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Err(reason) = check(&mut req, self.underscores) {
            tracing::debug!(remote_addr = %self.info.remote_addr, reason, "bad request refused");
            return Either::Left(std::future::ready(Ok(bad_request(req.version()))));
        }
        req.extensions_mut().insert(self.info);
        Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn is_valid_host_accepts_host_and_port_only() {
        for ok in [
            "a.test",
            "a.test:8443",
            "a.test:",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::1]",
            "xn--bcher-kva.example",
            "under_score.test",
        ] {
            assert!(is_valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "user@a.test",
            "u:p@a.test:80",
            "a.test/x",
            "a.test?x",
            "a.test#x",
            "a.test:x",
            "a.test:123456",
            "a test",
            ":80",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:8o",
            "a.test:80:80",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn same_origin_ignores_case_and_default_port() {
        let a: Authority = "A.Test".parse().unwrap();
        let http = Some(&Scheme::HTTP);
        assert!(same_origin(&a, b"a.test", http));
        assert!(same_origin(&a, b"a.test:80", http));
        assert!(!same_origin(&a, b"a.test:443", http));
        assert!(same_origin(&a, b"a.test:443", Some(&Scheme::HTTPS)));
        assert!(!same_origin(&a, b"b.test", http));
        let p: Authority = "a.test:8080".parse().unwrap();
        assert!(same_origin(&p, b"a.test:8080", http));
        assert!(!same_origin(&p, b"a.test", http));
        let v6: Authority = "[::1]:8080".parse().unwrap();
        assert!(same_origin(&v6, b"[::1]:8080", http));
        assert!(!same_origin(&v6, b"[::2]:8080", http));
    }

    fn req(version: Version, target: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::get(target).version(version);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn check_host_table() {
        use Version as V;
        let ok = [
            (V::HTTP_11, "/", &["a.test"][..]),
            (V::HTTP_10, "/", &[][..]),
            (V::HTTP_2, "http://a.test/", &[][..]),
            (V::HTTP_2, "http://a.test/", &["a.test"][..]),
            (V::HTTP_11, "http://a.test/", &["a.test"][..]),
        ];
        for (v, t, h) in ok {
            assert_eq!(check_host(&req(v, t, h)), Ok(()), "{v:?} {t} {h:?}");
        }
        let bad = [
            (V::HTTP_11, "/", &[][..]),
            (V::HTTP_2, "/", &[][..]),
            (V::HTTP_11, "/", &["a.test", "a.test"][..]),
            (V::HTTP_11, "http://a.test/", &[][..]),
            (V::HTTP_11, "http://b.test/", &["a.test"][..]),
            (V::HTTP_2, "http://u@a.test/", &[][..]),
            (V::HTTP_2, "http://a.test/", &["b.test"][..]),
        ];
        for (v, t, h) in bad {
            assert!(check_host(&req(v, t, h)).is_err(), "{v:?} {t} {h:?}");
        }
    }

    #[test]
    fn underscores_drop_reject_allow() {
        let make = || {
            Request::get("/")
                .header("host", "a.test")
                .header("transfer_encoding", "chunked")
                .header("x_auth_request_user", "mallory")
                .header("x-kept", "1")
                .body(())
                .unwrap()
        };
        let mut r = make();
        check(&mut r, HeadersWithUnderscores::Drop).unwrap();
        let left: Vec<_> = r.headers().keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["host", "x-kept"]);
        let mut r = make();
        assert!(check(&mut r, HeadersWithUnderscores::Reject).is_err());
        let mut r = make();
        check(&mut r, HeadersWithUnderscores::Allow).unwrap();
        assert_eq!(r.headers().len(), 4);
    }
}
