//! Responses the gateway produces itself: error pages, JSON errors, redirects.

use super::policy::Denied;
use crate::body::{full, ResponseBody};
use crate::html::escape_html;
use http::header::ACCEPT;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

/// A small HTML page: `title` and `message` are escaped.
pub(crate) fn html_page(status: StatusCode, title: &str, message: &str) -> Response<ResponseBody> {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1><p>{m}</p></body></html>\n",
        t = escape_html(title),
        m = escape_html(message)
    );
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `{"error": error}` with `status`.
pub(crate) fn json_error(status: StatusCode, error: &str) -> Response<ResponseBody> {
    json_response(status, &serde_json::json!({ "error": error }))
}

/// `value` as an uncacheable JSON response with `status`.
fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ResponseBody> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3), naming
/// `error="invalid_token"` when a presented token was refused.
pub(crate) fn unauthorized(invalid_token: bool) -> Response<ResponseBody> {
    let (error, challenge) = if invalid_token {
        ("invalid_token", "Bearer error=\"invalid_token\"")
    } else {
        ("unauthorized", "Bearer")
    };
    let mut resp = json_error(StatusCode::UNAUTHORIZED, error);
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    resp
}

/// 401 for a browser when the gateway has no browser sign-in (a
/// bearer-only provider: `discovery = false` without login endpoints):
/// a page saying so for navigation, JSON otherwise; never a redirect.
pub(crate) fn no_browser_sign_in(headers: &HeaderMap) -> Response<ResponseBody> {
    let mut resp = if is_navigation(&Method::GET, headers) {
        html_page(
            StatusCode::UNAUTHORIZED,
            "Sign-in not available",
            "This service accepts API clients with bearer tokens only; it has no browser sign-in.",
        )
    } else {
        json_error(StatusCode::UNAUTHORIZED, "unauthorized")
    };
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// 302 to `location` (already a valid URL or local path).
pub(crate) fn redirect(location: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = StatusCode::FOUND;
    let loc = HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"));
    resp.headers_mut().insert(LOCATION, loc);
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// 503 when the session store cannot answer: a page for browser
/// navigation, JSON otherwise; `Retry-After: 1` either way.
pub(crate) fn store_unavailable(method: &Method, headers: &HeaderMap) -> Response<ResponseBody> {
    let mut resp = if is_navigation(method, headers) {
        html_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Temporarily unavailable",
            "Your session cannot be checked right now. Please try again in a moment.",
        )
    } else {
        json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
    };
    resp.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    resp
}

/// Browser navigation: GET/HEAD whose `Accept` includes `text/html`.
pub(crate) fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && headers.get_all(ACCEPT).iter().any(|v| {
            v.as_bytes()
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"text/html"))
        })
}

/// 403 naming the route rule the identity did not meet: the page says
/// what is needed (`Denied`'s text: the route's configuration, never
/// another user's data); JSON adds `"missing": "<rule>"`.
pub(crate) fn forbidden_because(
    method: &Method,
    headers: &HeaderMap,
    denied: &Denied<'_>,
) -> Response<ResponseBody> {
    if is_navigation(method, headers) {
        html_page(
            StatusCode::FORBIDDEN,
            "Access denied",
            &format!(
                "You are signed in, but this page needs {denied}, which your account does not have."
            ),
        )
    } else {
        json_response(
            StatusCode::FORBIDDEN,
            &serde_json::json!({ "error": "forbidden", "missing": denied.rule() }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_names_invalid_token_only_when_one_was_refused() {
        let r = unauthorized(true);
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        assert_eq!(unauthorized(false).headers()[WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn html_page_cannot_be_framed_or_sniffed() {
        let r = html_page(StatusCode::BAD_REQUEST, "t", "m");
        assert!(r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }

    #[test]
    fn html_page_escapes_text() {
        assert_eq!(
            escape_html("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
