//! The authorization endpoint: request validation, the login form, and the
//! redirect (or form_post) back to the client.

use std::time::{Duration, Instant};

use http::{header, Method, Request, StatusCode};
use hyper::body::Incoming;

use super::endpoints::{page, MAX_FORM_BODY};
use super::faults::{Fault, ATTACKER_ISSUER};
use super::{bump, now, AuthRequest, CodeGrant, Shared};
use crate::devtools::http::{self as h, escape_html, random_token, Resp};

/// How long a login form stays valid.
const PENDING_TTL: Duration = Duration::from_secs(600);

/// An error that is shown to the user, because the redirect URI cannot be
/// trusted (RFC 6749 §4.1.2.1).
fn error_page(message: &str) -> Resp {
    h::html(
        StatusCode::BAD_REQUEST,
        page(
            "Authorization error",
            &format!("<p class=\"warn\">{}</p>", escape_html(message)),
        ),
    )
}

pub(crate) async fn authorize(shared: &Shared, req: Request<Incoming>) -> Resp {
    bump(&shared.counters.authorize);
    let mut params = h::parse_form(req.uri().query().unwrap_or("").as_bytes());
    if req.method() == Method::POST {
        if !is_form(&req) {
            return error_page("authorization POST must be application/x-www-form-urlencoded");
        }
        match h::read_body(req.into_body(), MAX_FORM_BODY).await {
            Ok(body) => params.extend(h::parse_form(&body)),
            Err(_) => return error_page("request body too large"),
        }
    }
    *shared.last_authorize.lock() = Some(params.clone());

    let request = match validate(shared, &params) {
        Ok(request) => request,
        Err(resp) => return *resp,
    };

    let prompt_none =
        matches!(h::single(&params, "prompt"), Ok(Some(p)) if p.split(' ').any(|p| p == "none"));
    let auto_login = shared.auto_login.lock().clone();
    match auto_login {
        Some(user) => finish(shared, &request, &user),
        None if prompt_none => deliver(
            shared,
            &request,
            vec![
                ("error", "login_required".to_owned()),
                ("error_description", "no session at the provider".to_owned()),
            ],
        ),
        None => {
            let id = random_token(24);
            {
                let mut grants = shared.grants.lock();
                grants.prune(PENDING_TTL);
                grants.pending.insert(id.clone(), request);
            }
            login_form(&id, None)
        }
    }
}

fn is_form(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
}

/// Validates the request; errors are either a page (bad client or redirect
/// URI) or an error redirect.
fn validate(shared: &Shared, params: &[(String, String)]) -> Result<AuthRequest, Box<Resp>> {
    let get = |name: &str| {
        h::single(params, name)
            .map_err(|()| Box::new(error_page(&format!("parameter {name} is repeated"))))
    };
    match get("client_id")? {
        Some(id) if id == shared.client_id => {}
        Some(_) => return Err(bpage("unknown client_id")),
        None => return Err(bpage("client_id is required")),
    }
    let Some(redirect_uri) = get("redirect_uri")? else {
        return Err(bpage("redirect_uri is required"));
    };
    let redirect_ok = match url::Url::parse(redirect_uri) {
        Ok(url) => {
            matches!(url.scheme(), "http" | "https")
                && url.fragment().is_none()
                && (shared.redirect_uris.is_empty()
                    || shared.redirect_uris.iter().any(|r| r == redirect_uri))
        }
        Err(_) => false,
    };
    if !redirect_ok {
        return Err(bpage("redirect_uri is not registered"));
    }
    // Every other parameter can be reported back to the client.
    let state = get("state")?.map(str::to_owned);
    let form_post = match get("response_mode")? {
        None | Some("query") => false,
        Some("form_post") => true,
        Some(_) => {
            return Err(Box::new(error_redirect(
                redirect_uri,
                false,
                state.as_deref(),
                &shared.issuer,
                "invalid_request",
                "unsupported response_mode",
            )))
        }
    };
    let fail = |error: &str, description: &str| {
        Box::new(error_redirect(
            redirect_uri,
            form_post,
            state.as_deref(),
            &shared.issuer,
            error,
            description,
        ))
    };
    match get("response_type")? {
        Some("code") => {}
        Some(_) => return Err(fail("unsupported_response_type", "only code is supported")),
        None => return Err(fail("invalid_request", "response_type is required")),
    }
    let code_challenge = match (get("code_challenge")?, get("code_challenge_method")?) {
        (Some(c), Some("S256")) if is_pkce_value(c) && c.len() == 43 => Some(c.to_owned()),
        (Some(_), Some("S256")) => return Err(fail("invalid_request", "malformed code_challenge")),
        (Some(_), _) => {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256",
            ))
        }
        (None, Some(_)) => return Err(fail("invalid_request", "code_challenge is missing")),
        (None, None) if shared.require_pkce => {
            return Err(fail("invalid_request", "PKCE code_challenge is required"))
        }
        (None, None) => None,
    };
    let scope = get("scope")?.unwrap_or("").to_owned();
    let nonce = get("nonce")?.map(str::to_owned);
    Ok(AuthRequest {
        redirect_uri: redirect_uri.to_owned(),
        state,
        nonce,
        scope,
        code_challenge,
        form_post,
        created: Instant::now(),
    })
}

fn bpage(message: &str) -> Box<Resp> {
    Box::new(error_page(message))
}

/// RFC 7636 unreserved characters.
pub(crate) fn is_pkce_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn error_redirect(
    redirect_uri: &str,
    form_post: bool,
    state: Option<&str>,
    issuer: &str,
    error: &str,
    description: &str,
) -> Resp {
    let mut params = vec![
        ("error", error.to_owned()),
        ("error_description", description.to_owned()),
    ];
    if let Some(state) = state {
        params.push(("state", state.to_owned()));
    }
    params.push(("iss", issuer.to_owned()));
    send(redirect_uri, form_post, &params)
}

fn login_form(pending: &str, error: Option<&str>) -> Resp {
    let warn = error
        .map(|e| format!("<p class=\"warn\">{}</p>", escape_html(e)))
        .unwrap_or_default();
    let body = format!(
        "{warn}<p>Development provider: any user name logs in.</p>\
         <form method=\"post\" action=\"/authorize/login\">\
         <input type=\"hidden\" name=\"pending\" value=\"{pending}\">\
         <label>User name <input name=\"username\" autofocus autocomplete=\"username\" required></label> \
         <button type=\"submit\">Sign in</button></form>",
        pending = escape_html(pending)
    );
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    h::html(status, page("Sign in", &body))
}

pub(crate) async fn login(shared: &Shared, req: Request<Incoming>) -> Resp {
    bump(&shared.counters.login);
    if !is_form(&req) {
        return error_page("login must be application/x-www-form-urlencoded");
    }
    let body = match h::read_body(req.into_body(), MAX_FORM_BODY).await {
        Ok(body) => body,
        Err(_) => return error_page("request body too large"),
    };
    let params = h::parse_form(&body);
    let (Ok(Some(pending)), Ok(username)) = (
        h::single(&params, "pending"),
        h::single(&params, "username"),
    ) else {
        return error_page("the login form is incomplete");
    };
    let username = username.unwrap_or("").trim();
    if username.is_empty() || username.len() > 256 {
        let still_pending = shared.grants.lock().pending.contains_key(pending);
        if !still_pending {
            return error_page("the login request expired; start again");
        }
        return login_form(pending, Some("enter a user name"));
    }
    let request = shared.grants.lock().pending.remove(pending);
    match request {
        Some(request) if request.created.elapsed() < PENDING_TTL => {
            finish(shared, &request, username)
        }
        _ => error_page("the login request expired; start again"),
    }
}

/// Issues a code for `user` and sends the response to the client.
fn finish(shared: &Shared, request: &AuthRequest, user: &str) -> Resp {
    if shared.faults.has(&Fault::ErrorRedirect) {
        return deliver(
            shared,
            request,
            vec![
                ("error", "access_denied".to_owned()),
                (
                    "error_description",
                    "the user denied the request".to_owned(),
                ),
            ],
        );
    }
    let code = random_token(32);
    let sid = random_token(16);
    *shared.last_sid.lock() = Some(sid.clone());
    let grant = CodeGrant {
        request: request.clone(),
        user: user.to_owned(),
        sid,
        auth_time: now(),
        expires: Instant::now() + shared.code_ttl,
        family: random_token(12),
    };
    {
        let mut grants = shared.grants.lock();
        grants.prune(PENDING_TTL);
        grants.codes.insert(code.clone(), grant);
    }
    deliver(shared, request, vec![("code", code)])
}

/// Adds `state` and `iss` (with the redirect faults) and sends.
fn deliver(shared: &Shared, request: &AuthRequest, mut params: Vec<(&str, String)>) -> Resp {
    let state = if shared.faults.has(&Fault::WrongState) {
        Some(format!("tampered-{}", random_token(16)))
    } else {
        request.state.clone()
    };
    if let Some(state) = state {
        params.push(("state", state));
    }
    let iss = if shared.faults.has(&Fault::WrongIssParam) {
        ATTACKER_ISSUER.to_owned()
    } else {
        shared.issuer.clone()
    };
    params.push(("iss", iss));
    send(&request.redirect_uri, request.form_post, &params)
}

/// A 302 to `redirect_uri` with `params` in the query, or an auto-submitting
/// form POSTing them (form_post response mode).
fn send(redirect_uri: &str, form_post: bool, params: &[(&str, String)]) -> Resp {
    if form_post {
        let inputs: String = params
            .iter()
            .map(|(k, v)| {
                format!(
                    "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                    escape_html(k),
                    escape_html(v)
                )
            })
            .collect();
        let body = format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Submit</title></head>\
             <body onload=\"document.forms[0].submit()\">\
             <form method=\"post\" action=\"{action}\">{inputs}\
             <noscript><button type=\"submit\">Continue</button></noscript></form></body></html>\n",
            action = escape_html(redirect_uri)
        );
        return h::html(StatusCode::OK, body);
    }
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page("redirect_uri is invalid");
    };
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in params {
            pairs.append_pair(k, v);
        }
    }
    h::redirect(url.as_str())
}
