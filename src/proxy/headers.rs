//! Pure header manipulation for the reverse proxy: hop-by-hop removal
//! (RFC 9110 §7.6.1) and `X-Forwarded-*`.
//!
//! # Ordering rule
//!
//! [`sanitize_request`] must run on a request **before** anything adds headers
//! the upstream should trust. A client may name any header in `Connection`,
//! and the RFC makes such headers hop-by-hop; if the identity headers were set
//! first, `Connection: X-Auth-Request-User` would make the proxy delete the
//! header the gateway set. The gateway therefore calls [`sanitize_request`] as
//! its first step, and [`ReverseProxy`](super::ReverseProxy) calls it again,
//! which is a no-op once the [`HopByHopStripped`] extension is present.
//!
//! # Upgrades
//!
//! Only a WebSocket opening handshake (RFC 6455 §4.1: `GET`, HTTP/1.1,
//! `Connection: upgrade`, `websocket` among the `Upgrade` protocols) is
//! recorded as an upgrade to forward, and it is forwarded as exactly
//! `Upgrade: websocket`. Any other `Upgrade` (`h2c`, `TLS/1.2`, unknown
//! tokens) is removed with the other hop-by-hop headers and the request
//! goes upstream as an ordinary request, which RFC 9110 §7.8 allows (a
//! server may ignore `Upgrade`) and which is what nginx does without an
//! explicit `proxy_set_header Upgrade` and Envoy does for `h2c`.
//! `HTTP2-Settings` is always hop-by-hop (RFC 7540 §3.2.1).

use http::Method;
use http::Version;

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Request;

/// Headers that are hop-by-hop whether or not `Connection` names them.
pub const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HTTP2_SETTINGS,
];

/// `HTTP2-Settings` (RFC 7540 §3.2.1): only meaningful with `Upgrade: h2c`.
pub const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// The only upgrade the proxy forwards.
pub const WEBSOCKET: HeaderValue = HeaderValue::from_static("websocket");

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Request extension recording that [`sanitize_request`] ran, and the
/// upgrade to forward: `Some("websocket")` for a WebSocket opening
/// handshake, `None` for anything else (see [Upgrades](self#upgrades)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HopByHopStripped(pub Option<HeaderValue>);

/// Removes hop-by-hop headers: `Connection`, every header `Connection` names
/// (comma-separated, case-insensitive, any number of `Connection` lines), and
/// [`HOP_BY_HOP`]. `Host` is never removed, even when named.
///
/// Returns the `Upgrade` value when the message asked for an upgrade, that is
/// `Connection` contains the `upgrade` token and an `Upgrade` header is present.
///
/// Cost: one pass over the header names, and hashed removals only of the
/// names that are there (none for most messages: a header named by
/// `Connection` is hop-by-hop only while `Connection` itself is present).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    if !any_hop_by_hop(headers) {
        return None;
    }
    let mut wants_upgrade = false;
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        // A value that is not visible ASCII names nothing we could match.
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if token.eq_ignore_ascii_case("upgrade") {
                wants_upgrade = true;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                if name != header::HOST {
                    named.push(name);
                }
            }
        }
    }
    let upgrade = if wants_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    remove_names(headers, |name| {
        HOP_BY_HOP.contains(name) || named.contains(name)
    });
    upgrade
}

/// Removes every header whose name `doomed` picks: one pass over the
/// names, hashed removals only of those present.
pub(crate) fn remove_names(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let present: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
    for name in &present {
        headers.remove(name);
    }
}

/// Whether any of [`HOP_BY_HOP`] is present (one pass over the names).
fn any_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| HOP_BY_HOP.contains(name))
}

/// Runs [`strip_hop_by_hop`] on `req` once and records the result in a
/// [`HopByHopStripped`] extension. Idempotent: does nothing when the
/// extension is already present. See the [module docs](self) for why this
/// must run before identity headers are added.
///
/// Only a WebSocket upgrade is recorded; see [Upgrades](self#upgrades).
pub fn sanitize_request<B>(req: &mut Request<B>) {
    if req.extensions().get::<HopByHopStripped>().is_some() {
        return;
    }
    // `Upgrade` is one of HOP_BY_HOP: without any of them there is
    // nothing to strip and no upgrade (one pass over the names, once).
    if !any_hop_by_hop(req.headers()) {
        req.extensions_mut().insert(HopByHopStripped(None));
        return;
    }
    let websocket = req.method() == Method::GET
        && req.version() == Version::HTTP_11
        && req
            .headers()
            .get_all(header::UPGRADE)
            .iter()
            .any(lists_websocket);
    let upgrade = strip_hop_by_hop(req.headers_mut());
    let forward = (websocket && upgrade.is_some()).then_some(WEBSOCKET);
    req.extensions_mut().insert(HopByHopStripped(forward));
}

/// Whether an `Upgrade` value lists the `websocket` protocol.
fn lists_websocket(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

/// Whether an upstream's `101` switched to WebSocket: its `Upgrade` is
/// exactly `websocket` (RFC 6455 §4.2.2), nothing else and no list.
pub fn is_websocket(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .trim_ascii()
        .eq_ignore_ascii_case(b"websocket")
}

/// The authority the client asked for: the request target's authority
/// (HTTP/2 `:authority`, HTTP/1.1 absolute-form) when present, which RFC 9112
/// §3.2.2 and RFC 9113 §8.3.1 make take precedence, else the `Host` header.
/// This is what the proxy sends as `X-Forwarded-Host`.
pub fn original_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| req.headers().get(header::HOST).cloned())
}

/// Appends `client` to `X-Forwarded-For`, like nginx's
/// `$proxy_add_x_forwarded_for`: existing values (all lines, joined with
/// `, `) are kept and the result is one header line.
pub fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let client = client.to_canonical();
    // The common case, the value is the address alone: one hashed lookup.
    if let header::Entry::Vacant(slot) = headers.entry(X_FORWARDED_FOR) {
        slot.insert(address_value(client));
        return;
    }
    let mut value: Vec<u8> = Vec::new();
    for existing in headers.get_all(&X_FORWARDED_FOR) {
        let existing = existing.as_bytes().trim_ascii();
        if existing.is_empty() {
            continue;
        }
        if !value.is_empty() {
            value.extend_from_slice(b", ");
        }
        value.extend_from_slice(existing);
    }
    if !value.is_empty() {
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(address_value(client).as_bytes());
    // Bytes from valid header values plus an IP address are always valid.
    if let Ok(value) = HeaderValue::from_bytes(&value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

/// `addr` as a header value. The last one made on this thread is reused:
/// requests come in runs from one address (a connection's keep-alive
/// requests, or every request behind a load balancer), so most requests
/// neither format the address nor allocate.
fn address_value(addr: IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((a, v)) if *a == addr => v.clone(),
        _ => {
            use std::io::Write;
            // The longest address text (IPv6 with an embedded IPv4) is 45 bytes.
            let mut buf = [0u8; 64];
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cur, "{addr}");
            let len = usize::try_from(cur.position()).unwrap_or(0);
            // An address's text is always a valid header value.
            let v = HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static(""));
            *last = Some((addr, v.clone()));
            v
        }
    })
}

/// Sets `X-Forwarded-Proto` (replacing any client value).
pub fn set_forwarded_proto(headers: &mut HeaderMap, proto: &'static str) {
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
}

/// Sets `X-Forwarded-Host` to `host` (replacing any client value), or removes
/// it when the request had no host.
pub fn set_forwarded_host(headers: &mut HeaderMap, host: Option<HeaderValue>) {
    match host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host);
        }
        // No hashed removal when there is none (the common case).
        None => remove_names(headers, |name| name == X_FORWARDED_HOST),
    }
}

/// Joins multiple `Cookie` lines into one with `; `, as RFC 9113 §8.2.3
/// requires before forwarding an HTTP/2 request over HTTP/1.1.
pub fn merge_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strip_hop_by_hop_removes_standard_set() {
        let mut h = map(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ("content-type", "text/plain"),
            ("authorization", "Bearer abc"),
        ]);
        assert_eq!(strip_hop_by_hop(&mut h), None);
        // The order of different field names carries no meaning (RFC 9110 §5.3).
        let mut left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "content-type"]);
    }

    #[test]
    fn strip_hop_by_hop_removes_headers_named_in_connection() {
        let mut h = map(&[
            ("connection", "close, X-Secret ,x-other"),
            ("connection", "X-Third"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("x-other", "3"),
            ("x-third", "4"),
            ("x-kept", "5"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn strip_hop_by_hop_never_removes_host() {
        let mut h = map(&[("connection", "Host, close"), ("host", "example.com")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get("host").unwrap(), "example.com");
        assert!(h.get("connection").is_none());
    }

    #[test]
    fn strip_hop_by_hop_ignores_invalid_tokens() {
        let mut h = map(&[
            ("connection", "bad header, ,x-a"),
            ("x-a", "1"),
            ("x-b", "2"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-b"]);
    }

    #[test]
    fn strip_hop_by_hop_upgrade_request_returns_upgrade_value() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(strip_hop_by_hop(&mut h).unwrap(), "websocket");
        assert!(h.is_empty());
    }

    #[test]
    fn strip_hop_by_hop_upgrade_without_connection_token_is_none() {
        let mut h = map(&[("connection", "keep-alive"), ("upgrade", "websocket")]);
        assert_eq!(strip_hop_by_hop(&mut h), None);
        let mut h = map(&[("connection", "upgrade")]);
        assert_eq!(strip_hop_by_hop(&mut h), None);
    }

    #[test]
    fn sanitize_request_runs_once() {
        let mut req = Request::builder()
            .header("connection", "upgrade, x-auth-request-user")
            .header("upgrade", "websocket")
            .header("x-auth-request-user", "mallory")
            .body(())
            .unwrap();
        sanitize_request(&mut req);
        assert_eq!(
            req.extensions()
                .get::<HopByHopStripped>()
                .unwrap()
                .0
                .as_ref()
                .unwrap(),
            "websocket"
        );
        assert!(req.headers().get("x-auth-request-user").is_none());

        // The gateway now sets identity headers; a second pass (the proxy's)
        // must not strip them even if Connection somehow reappeared.
        req.headers_mut()
            .insert("x-auth-request-user", HeaderValue::from_static("alice"));
        req.headers_mut().insert(
            "connection",
            HeaderValue::from_static("x-auth-request-user"),
        );
        sanitize_request(&mut req);
        assert_eq!(req.headers().get("x-auth-request-user").unwrap(), "alice");
        assert!(req
            .extensions()
            .get::<HopByHopStripped>()
            .unwrap()
            .0
            .is_some());
    }

    #[test]
    fn sanitize_request_records_only_websocket_upgrades() {
        let upgrade = |method: Method, version: Version, value: &str| {
            let mut req = Request::builder()
                .method(method)
                .version(version)
                .header("connection", "Upgrade")
                .header("upgrade", value)
                .body(())
                .unwrap();
            sanitize_request(&mut req);
            assert!(req.headers().get("upgrade").is_none());
            req.extensions()
                .get::<HopByHopStripped>()
                .unwrap()
                .0
                .clone()
        };
        for ws in ["websocket", "WebSocket", "h2c, websocket", " websocket "] {
            assert_eq!(
                upgrade(Method::GET, Version::HTTP_11, ws),
                Some(WEBSOCKET),
                "{ws}"
            );
        }
        for other in ["h2c", "websocketx", "TLS/1.2", "foo, bar", ""] {
            assert_eq!(
                upgrade(Method::GET, Version::HTTP_11, other),
                None,
                "{other}"
            );
        }
        assert_eq!(upgrade(Method::POST, Version::HTTP_11, "websocket"), None);
        assert_eq!(upgrade(Method::GET, Version::HTTP_10, "websocket"), None);
    }

    #[test]
    fn is_websocket_wants_exactly_websocket() {
        assert!(is_websocket(&HeaderValue::from_static("WebSocket")));
        assert!(!is_websocket(&HeaderValue::from_static("h2c")));
        assert!(!is_websocket(&HeaderValue::from_static("websocket, h2c")));
    }

    #[test]
    fn append_forwarded_for_appends_to_all_lines() {
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
        ]);
        append_forwarded_for(&mut h, "10.0.0.1".parse().unwrap());
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(
            h.get(X_FORWARDED_FOR).unwrap(),
            "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1"
        );
    }

    #[test]
    fn append_forwarded_for_sets_when_absent_and_unmaps_v4() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, "::ffff:192.0.2.7".parse().unwrap());
        assert_eq!(h.get(X_FORWARDED_FOR).unwrap(), "192.0.2.7");
        let mut h = map(&[("x-forwarded-for", " ")]);
        append_forwarded_for(&mut h, "2001:db8::1".parse().unwrap());
        assert_eq!(h.get(X_FORWARDED_FOR).unwrap(), "2001:db8::1");
    }

    #[test]
    fn append_forwarded_for_alternating_addresses_each_get_their_own() {
        let longest: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        for addr in [
            "192.0.2.1",
            "192.0.2.1",
            "2001:db8::2",
            "192.0.2.1",
            "10.0.0.9",
        ] {
            let mut h = HeaderMap::new();
            append_forwarded_for(&mut h, addr.parse().unwrap());
            assert_eq!(h.get(X_FORWARDED_FOR).unwrap(), addr);
        }
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, longest);
        assert_eq!(
            h.get(X_FORWARDED_FOR).unwrap(),
            longest.to_string().as_str()
        );
    }

    #[test]
    fn set_forwarded_proto_and_host_overwrite() {
        let mut h = map(&[
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "evil.example"),
        ]);
        set_forwarded_proto(&mut h, "https");
        set_forwarded_host(&mut h, Some(HeaderValue::from_static("app.example.com")));
        assert_eq!(h.get(X_FORWARDED_PROTO).unwrap(), "https");
        assert_eq!(h.get(X_FORWARDED_HOST).unwrap(), "app.example.com");
        set_forwarded_host(&mut h, None);
        assert!(h.get(X_FORWARDED_HOST).is_none());
    }

    #[test]
    fn original_host_prefers_target_authority() {
        let req = Request::get("/x")
            .header("host", "h.example")
            .body(())
            .unwrap();
        assert_eq!(original_host(&req).unwrap(), "h.example");
        let req = Request::get("https://a.example:8443/x")
            .header("host", "h.example")
            .body(())
            .unwrap();
        assert_eq!(original_host(&req).unwrap(), "a.example:8443");
        assert_eq!(original_host(&Request::get("/x").body(()).unwrap()), None);
    }

    #[test]
    fn merge_cookies_joins_lines() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        merge_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; b=2");
        let mut h = map(&[("cookie", "a=1")]);
        merge_cookies(&mut h);
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1");
    }
}
