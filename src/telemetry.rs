//! Per-request observability: the request id, W3C trace context checks and
//! the access log.
//!
//! - **Request id**: an incoming `X-Request-Id` is kept when it is one
//!   header of 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII characters; any
//!   other (absent, too long, control characters, repeated) is replaced by a
//!   generated one. It is sent upstream, returned in the response's
//!   `X-Request-Id`, shown on the gateway's error pages and logged.
//! - **Trace context** ([W3C Trace Context]): a `traceparent` of valid
//!   format is passed upstream unchanged (same trace id), with its
//!   `tracestate` when that is bounded ([`MAX_TRACESTATE_LEN`]) and well
//!   formed; an invalid `traceparent` is dropped together with `tracestate`
//!   (§3.3: a vendor must not forward a trace state without a valid parent).
//! - **Access log**: one line per request at info level with the target
//!   [`ACCESS_LOG_TARGET`] (filter it with `RUST_LOG`, e.g.
//!   `info,oidc_gateway::access=off`): method, path without the query,
//!   status, route kind, authentication outcome, user `sub`, duration,
//!   upstream time, request id, and the trace id of the `traceparent` sent
//!   upstream (`-` without one). Never a token, code, cookie or query string.
//!
//! [W3C Trace Context]: https://www.w3.org/TR/trace-context/

mod access_format;

pub use access_format::{AccessLineFormat, Rfc3339Micros};

use crate::identity::Identity;
use crate::metrics::{AuthOutcome, RouteKind};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, Uri};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

/// The `tracing` target of access-log lines.
pub const ACCESS_LOG_TARGET: &str = "oidc_gateway::access";

/// `X-Request-Id`.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Longest incoming `X-Request-Id` kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// Longest `tracestate` forwarded (all its lines together); the spec asks
/// for at least 512 characters to be propagated.
pub const MAX_TRACESTATE_LEN: usize = 512;

// ===== request id =====

/// Whether `v` is a request id the gateway keeps: 1..=128 visible ASCII.
pub fn is_valid_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN && v.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A fresh request id: a random per-process prefix and a counter (unique,
/// not secret: 16 + 16 hex digits, no system call per request).
pub fn generate_request_id() -> HeaderValue {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        crate::random::fill_random(&mut b);
        u64::from_le_bytes(b)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 32];
    hex_into(&mut buf[..16], prefix);
    hex_into(&mut buf[16..], n);
    // Hex digits only: always a valid header value. Owned by a reference-
    // counted `Bytes` from the start, so the clones the request and its
    // response take are counter increments, not copies.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

fn hex_into(out: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().enumerate() {
        let shift = 60 - 4 * i;
        *o = HEX[((v >> shift) & 0xf) as usize];
    }
}

/// Keeps a valid incoming `X-Request-Id` (exactly one) or sets a generated
/// one; returns the request's id.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    // One hashed lookup, whether the client sent an id or not.
    match headers.entry(REQUEST_ID) {
        http::header::Entry::Occupied(mut given) => {
            let mut values = given.iter();
            if let (Some(v), None) = (values.next(), values.next()) {
                if is_valid_request_id(v.as_bytes()) {
                    return v.clone();
                }
            }
            let id = generate_request_id();
            // Replaces every line the client sent.
            given.insert(id.clone());
            id
        }
        http::header::Entry::Vacant(slot) => slot.insert(generate_request_id()).clone(),
    }
}

/// The request id the gateway set on this request (for pages built deeper
/// in the stack), when it is one the gateway would keep.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(&REQUEST_ID)
        .filter(|v| is_valid_request_id(v.as_bytes()))
        .and_then(|v| v.to_str().ok())
}

// ===== trace context =====

/// A parsed, valid `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// 16-byte trace id (not all zero).
    pub trace_id: [u8; 16],
    /// 8-byte parent span id (not all zero).
    pub parent_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

fn lower_hex(s: &[u8], out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

impl TraceParent {
    /// Parses `traceparent` as W3C Trace Context §3.2 specifies: lowercase
    /// hex, version `ff` invalid, version `00` exactly 55 characters, a
    /// later version at least 55 with a `-` after the flags, trace id and
    /// parent id not all zeros.
    pub fn parse(v: &[u8]) -> Option<TraceParent> {
        if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let mut version = [0u8; 1];
        lower_hex(&v[..2], &mut version)?;
        match version[0] {
            0xff => return None,
            0 if v.len() != 55 => return None,
            0 => {}
            _ if v.len() > 55 && v[55] != b'-' => return None,
            _ => {}
        }
        let mut tp = TraceParent {
            trace_id: [0; 16],
            parent_id: [0; 8],
            flags: 0,
        };
        lower_hex(&v[3..35], &mut tp.trace_id)?;
        lower_hex(&v[36..52], &mut tp.parent_id)?;
        let mut flags = [0u8; 1];
        lower_hex(&v[53..55], &mut flags)?;
        tp.flags = flags[0];
        if tp.trace_id == [0; 16] || tp.parent_id == [0; 8] {
            return None;
        }
        Some(tp)
    }
}

/// Whether a `tracestate` list is one the gateway forwards: printable
/// ASCII (no control characters), bounded, and every non-empty member of
/// the form `key=value`.
fn is_valid_tracestate(values: &[&HeaderValue]) -> bool {
    let total: usize = values.iter().map(|v| v.len()).sum();
    total <= MAX_TRACESTATE_LEN
        && values.iter().all(|v| {
            v.as_bytes().split(|b| *b == b',').all(|member| {
                let m = member.trim_ascii();
                m.is_empty()
                    || (m.iter().all(|b| (0x20..=0x7e).contains(b))
                        && m.iter()
                            .position(|b| *b == b'=')
                            .is_some_and(|i| i > 0 && i + 1 < m.len()))
            })
        })
}

/// A trace id as its 32 lowercase hex digits, in `out`.
fn trace_id_hex<'a>(id: &[u8; 16], out: &'a mut [u8; 32]) -> &'a str {
    let (high, low) = id.split_at(8);
    let word = |half: &[u8]| u64::from_be_bytes(half.try_into().unwrap_or_default());
    hex_into(&mut out[..16], word(high));
    hex_into(&mut out[16..], word(low));
    std::str::from_utf8(out).unwrap_or("-")
}

/// Drops an invalid (or repeated) `traceparent` together with `tracestate`,
/// and an invalid or oversized `tracestate`. Returns the valid parent.
pub fn sanitize_trace_context(headers: &mut HeaderMap) -> Option<TraceParent> {
    // Most requests carry neither: one pass over the names, no hashing.
    let (mut parent_given, mut state_given) = (false, false);
    for name in headers.keys() {
        parent_given |= name == TRACEPARENT;
        state_given |= name == TRACESTATE;
    }
    if !parent_given {
        if state_given {
            headers.remove(&TRACESTATE);
        }
        return None;
    }
    let parent = {
        let mut values = headers.get_all(&TRACEPARENT).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => TraceParent::parse(v.as_bytes()),
            _ => None,
        }
    };
    if parent.is_none() {
        headers.remove(&TRACEPARENT);
        headers.remove(&TRACESTATE);
        return None;
    }
    if headers.contains_key(&TRACESTATE) {
        let values: Vec<&HeaderValue> = headers.get_all(&TRACESTATE).iter().collect();
        if !is_valid_tracestate(&values) {
            headers.remove(&TRACESTATE);
        }
    }
    parent
}

// ===== access log =====

/// What the auth layer learned about a request, put in the response's
/// extensions for the access log.
#[derive(Clone, Debug)]
pub struct AccessNote {
    /// The route kind that served the request.
    pub route: RouteKind,
    /// The authentication outcome, when one was reached.
    pub outcome: Option<AuthOutcome>,
    /// The authenticated identity (its `sub` is logged).
    pub identity: Option<Arc<Identity>>,
}

/// Time to the upstream's response headers, put in the response's
/// extensions by the proxy.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamTime(pub Duration);

/// What the access log keeps from the request until the response.
#[derive(Debug)]
pub struct RequestStart {
    start: Instant,
    method: Method,
    /// A reference-counted copy of the URI (only its path is logged).
    uri: Uri,
    request_id: HeaderValue,
    /// The trace id of the `traceparent` going upstream.
    trace_id: Option<[u8; 16]>,
}

impl RequestStart {
    /// Starts the clock for a request; `request_id` from [`ensure_request_id`],
    /// `trace_id` that of the `traceparent` going upstream (the valid parent
    /// [`sanitize_trace_context`] returned, or the gateway's own span's).
    pub fn new(
        method: &Method,
        uri: &Uri,
        request_id: HeaderValue,
        trace_id: Option<[u8; 16]>,
    ) -> Self {
        RequestStart {
            start: Instant::now(),
            method: method.clone(),
            uri: uri.clone(),
            request_id,
            trace_id,
        }
    }

    /// Sets the response's `X-Request-Id` and writes the access-log line.
    pub fn finish<B>(self, resp: &mut Response<B>) {
        resp.headers_mut()
            .insert(REQUEST_ID, self.request_id.clone());
        let note = resp.extensions_mut().remove::<AccessNote>();
        let upstream = resp.extensions_mut().remove::<UpstreamTime>();
        if !tracing::enabled!(target: ACCESS_LOG_TARGET, tracing::Level::INFO) {
            return;
        }
        let (route, outcome, identity) = match &note {
            Some(n) => (
                n.route.as_str(),
                n.outcome.map_or("none", AuthOutcome::as_str),
                n.identity.as_deref(),
            ),
            None => ("none", "none", None),
        };
        let sub = identity.map_or("-", |i| i.subject.as_str());
        let mut hex = [0u8; 32];
        let trace_id = self.trace_id.map_or("-", |id| trace_id_hex(&id, &mut hex));
        // Milliseconds to the microsecond (what a line can say; also what
        // `AccessLineFormat` writes without float formatting).
        let duration_ms = millis_to_the_micro(self.start.elapsed());
        let upstream_ms = upstream.map_or(-1.0, |u| millis_to_the_micro(u.0));
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            method = %self.method,
            path = self.uri.path(),
            status = resp.status().as_u16(),
            route,
            auth = outcome,
            // Debug: quoted and escaped (a subject is provider data).
            sub = ?sub,
            duration_ms,
            upstream_ms,
            request_id = self.request_id.to_str().unwrap_or("-"),
            trace_id,
            "request"
        );
    }
}

/// `d` in milliseconds, rounded down to the microsecond.
#[allow(clippy::cast_precision_loss)] // exact below 2^53 µs (285 years)
fn millis_to_the_micro(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

pin_project! {
    /// A response future that finishes the access log line of its request.
    pub struct AccessLogFuture<F> {
        #[pin]
        fut: F,
        start: Option<RequestStart>,
    }
}

impl<F> AccessLogFuture<F> {
    /// Wraps `fut`, the response future of the request `start` describes.
    pub fn new(fut: F, start: RequestStart) -> Self {
        AccessLogFuture {
            fut,
            start: Some(start),
        }
    }
}

impl<F, B, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.fut.poll(cx));
        if let (Ok(resp), Some(start)) = (&mut result, this.start.take()) {
            start.finish(resp);
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_of_version_00_parses() {
        let tp = TraceParent::parse(VALID.as_bytes()).unwrap();
        assert_eq!(tp.trace_id[0], 0x4b);
        assert_eq!(tp.parent_id[7], 0xb7);
        assert_eq!(tp.flags, 1);
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad}");
        }
        // A later version may carry more fields after a dash.
        assert!(TraceParent::parse(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more"
        )
        .is_some());
    }

    #[test]
    fn invalid_traceparent_is_dropped_with_its_tracestate() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static("00-zz-00-01"));
        h.insert(TRACESTATE, HeaderValue::from_static("a=b"));
        assert_eq!(sanitize_trace_context(&mut h), None);
        assert!(h.is_empty());

        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        h.append(TRACEPARENT, HeaderValue::from_static(VALID));
        assert_eq!(sanitize_trace_context(&mut h), None);
        assert!(h.is_empty());

        let mut h = HeaderMap::new();
        h.insert(TRACESTATE, HeaderValue::from_static("a=b"));
        sanitize_trace_context(&mut h);
        assert!(
            h.is_empty(),
            "a tracestate without a parent is not forwarded"
        );
    }

    #[test]
    fn valid_trace_context_is_kept_and_bad_tracestate_dropped() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        h.insert(
            TRACESTATE,
            HeaderValue::from_static("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"),
        );
        assert!(sanitize_trace_context(&mut h).is_some());
        assert_eq!(h[TRACEPARENT], VALID);
        assert_eq!(h[TRACESTATE], "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7");

        let long = format!("a={}", "x".repeat(MAX_TRACESTATE_LEN));
        for bad in [long.as_str(), "novalue", "=x"] {
            let mut h = HeaderMap::new();
            h.insert(TRACEPARENT, HeaderValue::from_static(VALID));
            h.insert(TRACESTATE, HeaderValue::from_str(bad).unwrap());
            assert!(sanitize_trace_context(&mut h).is_some());
            assert!(!h.contains_key(TRACESTATE), "{bad}");
            assert_eq!(h[TRACEPARENT], VALID);
        }
    }

    #[test]
    fn request_id_is_kept_only_when_short_visible_ascii() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(ensure_request_id(&mut h), "abc-123");

        let too_long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in [too_long.as_str(), "has space", ""] {
            let mut h = HeaderMap::new();
            h.insert(REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = ensure_request_id(&mut h);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32);
            assert_eq!(h[REQUEST_ID], id);
        }
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("a"));
        h.append(REQUEST_ID, HeaderValue::from_static("b"));
        let id = ensure_request_id(&mut h);
        assert_eq!(id.len(), 32);
        assert_eq!(h.get_all(REQUEST_ID).iter().count(), 1);
    }

    #[test]
    fn generated_request_ids_differ() {
        let (a, b) = (generate_request_id(), generate_request_id());
        assert_ne!(a, b);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }
}
