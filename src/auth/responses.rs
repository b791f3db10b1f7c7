//! Responses the gateway produces itself: error pages, JSON errors, redirects.

use super::policy::Denied;
use crate::body::{full, ResponseBody};
use crate::html::escape_html;
use http::header::ACCEPT;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

/// The link on an error page: where to go next.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageLink<'a> {
    pub(crate) href: &'a str,
    pub(crate) text: &'a str,
}

impl PageLink<'static> {
    /// "Try again": the site's root.
    pub(crate) const TRY_AGAIN: PageLink<'static> = PageLink {
        href: "/",
        text: "Try again",
    };
}

/// The gateway's one error page: what happened (`title`, `message`), a link
/// on, and the request id that is also in the access log. Every text is
/// escaped; none of it comes from the request except the request id, which
/// is visible ASCII and escaped too.
pub(crate) fn error_page(
    status: StatusCode,
    title: &str,
    message: &str,
    link: PageLink<'_>,
    request_id: Option<&str>,
) -> Response<ResponseBody> {
    let mut body = String::with_capacity(1024);
    body.push_str(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>",
    );
    body.push_str(&escape_html(title));
    body.push_str(
        "</title><style>body{font:16px/1.5 system-ui,sans-serif;color:#222;background:#f4f5f7;margin:0}\
         main{max-width:32em;margin:10vh auto;background:#fff;padding:2em;border-radius:8px;\
         box-shadow:0 1px 4px rgba(0,0,0,.15)}h1{font-size:1.4em;margin-top:0}\
         a{color:#0b5cad}small{color:#666}</style></head><body><main><h1>",
    );
    body.push_str(&escape_html(title));
    body.push_str("</h1>");
    if !message.is_empty() {
        body.push_str("<p>");
        body.push_str(&escape_html(message));
        body.push_str("</p>");
    }
    body.push_str("<p><a href=\"");
    body.push_str(&escape_html(link.href));
    body.push_str("\">");
    body.push_str(&escape_html(link.text));
    body.push_str("</a></p>");
    if let Some(id) = request_id {
        body.push_str("<p><small>Request id: <code>");
        body.push_str(&escape_html(id));
        body.push_str("</code></small></p>");
    }
    body.push_str("</main></body></html>\n");
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Inline style only; no script, no other origin.
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// An error page with a "try again" link, made by a caller without the
/// request at hand: [`with_request_id`] adds the request id on the way out.
pub(crate) fn html_page(status: StatusCode, title: &str, message: &str) -> Response<ResponseBody> {
    page_without_request_id(status, title, message, PageLink::TRY_AGAIN)
}

/// The text of a page made before the request id was at hand, kept in the
/// response's extensions so that [`with_request_id`] can render it again.
#[derive(Clone, Debug)]
struct PageWithoutRequestId {
    title: Box<str>,
    message: Box<str>,
    href: Box<str>,
    link_text: Box<str>,
}

/// [`error_page`] without the request id, to be completed by
/// [`with_request_id`] where the request's headers are known.
pub(crate) fn page_without_request_id(
    status: StatusCode,
    title: &str,
    message: &str,
    link: PageLink<'_>,
) -> Response<ResponseBody> {
    let mut resp = error_page(status, title, message, link, None);
    resp.extensions_mut().insert(PageWithoutRequestId {
        title: title.into(),
        message: message.into(),
        href: link.href.into(),
        link_text: link.text.into(),
    });
    resp
}

/// Renders a page of [`page_without_request_id`] again with the request
/// id of `request_id` (the request's `X-Request-Id`, set by the gateway),
/// keeping its status and headers (`Set-Cookie` included). Any other
/// response, or no valid id, is returned as it is.
pub(crate) fn with_request_id(
    mut resp: Response<ResponseBody>,
    request_id: Option<&HeaderValue>,
) -> Response<ResponseBody> {
    let Some(page) = resp.extensions_mut().remove::<PageWithoutRequestId>() else {
        return resp;
    };
    let Some(id) = request_id
        .filter(|v| crate::telemetry::is_valid_request_id(v.as_bytes()))
        .and_then(|v| v.to_str().ok())
    else {
        return resp;
    };
    let link = PageLink {
        href: &page.href,
        text: &page.link_text,
    };
    let fresh = error_page(resp.status(), &page.title, &page.message, link, Some(id));
    *resp.body_mut() = fresh.into_body();
    resp
}

/// A page for browser navigation, else `{"error": code}`: the gateway's
/// answer to an error the client can act on.
pub(crate) fn error_for(
    method: &Method,
    headers: &HeaderMap,
    status: StatusCode,
    code: &str,
    title: &str,
    message: &str,
) -> Response<ResponseBody> {
    if is_navigation(method, headers) {
        error_page(
            status,
            title,
            message,
            PageLink::TRY_AGAIN,
            crate::telemetry::request_id(headers),
        )
    } else {
        json_error(status, code)
    }
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
    let mut resp = error_for(
        method,
        headers,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "Temporarily unavailable",
        "Your session cannot be checked right now. Please try again in a moment.",
    );
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
        error_page(
            StatusCode::FORBIDDEN,
            "Access denied",
            &format!(
                "You are signed in, but this page needs {denied}, which your account does not have."
            ),
            PageLink::TRY_AGAIN,
            crate::telemetry::request_id(headers),
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
    fn error_page_shows_escaped_request_id_and_link_and_no_json() {
        use http_body_util::BodyExt;
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static("text/html"));
        h.insert("x-request-id", HeaderValue::from_static("id-<b>&"));
        let r = error_for(
            &Method::GET,
            &h,
            StatusCode::NOT_FOUND,
            "not_found",
            "Not found",
            "No <such> page.",
        );
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let body = futures_util::FutureExt::now_or_never(r.into_body().collect())
            .unwrap()
            .unwrap()
            .to_bytes();
        let body = std::str::from_utf8(&body).unwrap();
        assert!(
            body.contains("Request id: <code>id-&lt;b&gt;&amp;</code>"),
            "{body}"
        );
        assert!(body.contains("No &lt;such&gt; page."), "{body}");
        assert!(body.contains("<a href=\"/\">Try again</a>"), "{body}");
        assert!(!body.contains("{\"error\""), "{body}");

        // An API client gets JSON.
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let r = error_for(
            &Method::GET,
            &h,
            StatusCode::NOT_FOUND,
            "not_found",
            "Not found",
            "x",
        );
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn html_page_escapes_text() {
        assert_eq!(
            escape_html("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
