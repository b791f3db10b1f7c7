//! Request routing, and the small endpoints: discovery, JWKS, userinfo,
//! end_session.

use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::claims::profile;
use super::faults::{Fault, ATTACKER_ISSUER};
use super::{authorize, bump, introspect, now, token, Shared};
use crate::devtools::http::{self as h, escape_html, Resp};

/// Largest form body the provider reads.
pub(crate) const MAX_FORM_BODY: usize = 64 * 1024;

pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let delay = shared.faults.find(|f| match f {
        Fault::ResponseDelay(d) => Some(*d),
        _ => None,
    });
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    match path.as_str() {
        "/.well-known/openid-configuration" if get => discovery(&shared),
        "/jwks" if get => jwks(&shared),
        "/authorize" if get || post => authorize::authorize(&shared, req).await,
        "/authorize/login" if post => authorize::login(&shared, req).await,
        "/token" if post => token::token(&shared, req).await,
        "/userinfo" if get || post => {
            if let Some(delay) = shared.faults.find(|f| match f {
                Fault::UserinfoDelay(d) => Some(*d),
                _ => None,
            }) {
                tokio::time::sleep(delay).await;
            }
            userinfo(&shared, &req)
        }
        "/end_session" if get || post => end_session(&shared, req).await,
        "/introspect" if post => introspect::introspect(&shared, req).await,
        "/.well-known/oauth-authorization-server" if get => {
            introspect::authorization_server_metadata(&shared)
        }
        "/" if get => index(&shared),
        "/.well-known/openid-configuration"
        | "/jwks"
        | "/authorize"
        | "/authorize/login"
        | "/token"
        | "/userinfo"
        | "/end_session"
        | "/introspect"
        | "/.well-known/oauth-authorization-server"
        | "/" => h::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => h::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn token_auth_methods(shared: &Shared) -> Value {
    match shared.client_auth {
        super::ClientAuth::PrivateKeyJwt(_) => json!(["private_key_jwt"]),
        super::ClientAuth::ClientSecretBasic => json!(["client_secret_basic"]),
        super::ClientAuth::ClientSecretPost => json!(["client_secret_post"]),
        _ => json!(["client_secret_basic", "client_secret_post"]),
    }
}

/// The discovery document (ignoring faults).
pub(crate) fn discovery_document(shared: &Shared) -> Value {
    let iss = &shared.issuer;
    json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "jwks_uri": format!("{iss}/jwks"),
        "end_session_endpoint": format!("{iss}/end_session"),
        "scopes_supported": ["openid", "email", "profile", "groups", "offline_access"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "userinfo_signing_alg_values_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": token_auth_methods(shared),
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "PS256"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "at_hash",
            "email", "email_verified", "preferred_username", "name", "groups"
        ],
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": false,
        "request_parameter_supported": false,
        "claims_parameter_supported": false,
    })
}

fn discovery(shared: &Shared) -> Resp {
    bump(&shared.counters.discovery);
    if shared.faults.has(&Fault::DiscoveryUnavailable) {
        return h::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "server_error"}),
        );
    }
    let mut doc = discovery_document(shared);
    if shared.faults.has(&Fault::DiscoveryIssuerMismatch) {
        doc["issuer"] = json!(ATTACKER_ISSUER);
    }
    if let Some(algs) = shared.faults.find(|f| match f {
        Fault::AdvertisedIdTokenAlgs(a) => Some(a.clone()),
        _ => None,
    }) {
        match algs {
            Some(algs) => doc["id_token_signing_alg_values_supported"] = json!(algs),
            None => {
                if let Some(o) = doc.as_object_mut() {
                    o.remove("id_token_signing_alg_values_supported");
                }
            }
        }
    }
    if !shared.faults.has(&Fault::IntrospectionOnlyInRfc8414) {
        doc["introspection_endpoint"] = json!(format!("{}/introspect", shared.issuer));
    }
    h::json(StatusCode::OK, &doc)
}

fn jwks(shared: &Shared) -> Resp {
    bump(&shared.counters.jwks);
    if shared.faults.has(&Fault::JwksUnavailable) {
        return h::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "server_error"}),
        );
    }
    if shared.faults.has(&Fault::MalformedJwks) {
        // A document cut short, as a proxy or a half-written file would serve.
        return h::response(
            StatusCode::OK,
            "application/jwk-set+json",
            r#"{"keys":[{"kty":"RSA","kid":"#.to_owned(),
        );
    }
    let doc = shared.keys.read().jwks();
    let mut resp = h::response(StatusCode::OK, "application/jwk-set+json", doc.to_string());
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

fn invalid_token(description: &'static str) -> Resp {
    let mut resp = h::json(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "invalid_token", "error_description": description}),
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer error="invalid_token""#),
    );
    resp
}

fn userinfo(shared: &Shared, req: &Request<Incoming>) -> Resp {
    bump(&shared.counters.userinfo);
    if shared.faults.has(&Fault::UserinfoUnavailable) {
        return h::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "server_error"}),
        );
    }
    let Some(token) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
    else {
        let mut resp = h::json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_request", "error_description": "bearer token required"}),
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    };
    // An opaque access token (`mint_opaque_token`) stands for its
    // introspection answer; anything else must be a JWT of ours.
    let opaque = shared.opaque.lock().get(token).cloned();
    let claims = match opaque {
        Some(answer) if answer.get("active") == Some(&Value::Bool(true)) => answer,
        Some(_) => return invalid_token("inactive"),
        None => match shared.keys.read().verify(token) {
            Some(claims) => claims,
            None => return invalid_token("bad signature"),
        },
    };
    if claims.get("iss").and_then(Value::as_str) != Some(shared.issuer.as_str()) {
        return invalid_token("wrong issuer");
    }
    if claims
        .get("exp")
        .and_then(Value::as_u64)
        .is_none_or(|exp| exp <= now())
    {
        return invalid_token("expired");
    }
    let Some(sub) = claims.get("sub").and_then(Value::as_str) else {
        return invalid_token("no subject");
    };
    let mut info = profile(shared, sub);
    if shared.faults.has(&Fault::UserinfoSubMismatch) {
        info["sub"] = json!("someone-else");
    }
    let mut resp = h::json(StatusCode::OK, &info);
    h::no_store(&mut resp);
    resp
}

async fn end_session(shared: &Shared, req: Request<Incoming>) -> Resp {
    bump(&shared.counters.end_session);
    let query = req.uri().query().unwrap_or("").to_owned();
    let mut params = h::parse_form(query.as_bytes());
    if req.method() == Method::POST {
        match h::read_body(req.into_body(), MAX_FORM_BODY).await {
            Ok(body) => params.extend(h::parse_form(&body)),
            Err(_) => return h::text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
        }
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(target) = get("post_logout_redirect_uri") {
        let Ok(mut url) = url::Url::parse(&target) else {
            return h::text(
                StatusCode::BAD_REQUEST,
                "invalid post_logout_redirect_uri\n",
            );
        };
        if let Some(state) = get("state") {
            url.query_pairs_mut().append_pair("state", &state);
        }
        return h::redirect(url.as_str());
    }
    h::html(
        StatusCode::OK,
        page(
            "Signed out",
            "<p>You are signed out of the development provider.</p>",
        ),
    )
}

fn index(shared: &Shared) -> Resp {
    let iss = escape_html(&shared.issuer);
    h::html(
        StatusCode::OK,
        page(
            "Development OpenID Provider",
            &format!(
                "<p>Issuer: <code>{iss}</code></p>\
                 <p><a href=\"/.well-known/openid-configuration\">Discovery document</a> · \
                 <a href=\"/jwks\">JWKS</a></p>\
                 <p>Any user name logs in. Not for production use.</p>"
            ),
        ),
    )
}

/// A minimal HTML page.
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}\
         input,button{{font-size:1rem;padding:.4rem}} .warn{{color:#a40}}</style>\
         </head><body><h1>{t}</h1>{body}</body></html>\n",
        t = escape_html(title)
    )
}
