//! RFC 7662 token introspection, RFC 8414 authorization server metadata,
//! and the opaque access tokens they answer for.

use std::sync::atomic::Ordering;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::endpoints::discovery_document;
use super::faults::Fault;
use super::keys::merge;
use super::token::authenticated_form;
use super::{bump, now, Shared};
use crate::devtools::http::{self as h, Resp};

/// Most opaque tokens the provider remembers (the oldest half is dropped).
pub(crate) const MAX_OPAQUE_TOKENS: usize = 100_000;

/// `/.well-known/oauth-authorization-server` (RFC 8414): the same
/// endpoints as discovery, always with the introspection endpoint.
pub(crate) fn authorization_server_metadata(shared: &Shared) -> Resp {
    let mut doc = discovery_document(shared);
    doc["introspection_endpoint"] = json!(format!("{}/introspect", shared.issuer));
    doc["introspection_endpoint_auth_methods_supported"] =
        doc["token_endpoint_auth_methods_supported"].clone();
    h::json(StatusCode::OK, &doc)
}

/// Decrements the in-flight count when an introspection ends.
struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .counters
            .introspection_in_flight
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// `POST /introspect`: client-authenticated; answers for opaque tokens made
/// with [`DevProvider::mint_opaque_token`](super::DevProvider::mint_opaque_token)
/// and for the provider's own JWT access tokens; anything else is
/// `{"active": false}`. The introspection faults apply.
pub(crate) async fn introspect(shared: &Shared, req: Request<Incoming>) -> Resp {
    bump(&shared.counters.introspection);
    let counters = &shared.counters;
    let now_in_flight = counters
        .introspection_in_flight
        .fetch_add(1, Ordering::AcqRel)
        + 1;
    counters
        .introspection_max_in_flight
        .fetch_max(now_in_flight, Ordering::AcqRel);
    let _in_flight = InFlight(shared);

    if let Some(delay) = shared.faults.find(|f| match f {
        Fault::IntrospectionDelay(d) => Some(*d),
        _ => None,
    }) {
        tokio::time::sleep(delay).await;
    }
    let params = match authenticated_form(shared, req).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if shared.faults.has(&Fault::IntrospectionUnavailable) {
        return h::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "server_error"}),
        );
    }
    if shared.faults.has(&Fault::MalformedIntrospectionResponse) {
        return h::response(StatusCode::OK, "application/json", "<html>not json</html>");
    }
    let Ok(Some(token)) = h::single(&params, "token") else {
        return super::token::OAuthError::bad_request("invalid_request", "token is required")
            .into_response();
    };
    let mut answer = answer_for(shared, token);
    if answer["active"] == json!(true) {
        if let Some(patch) = shared.faults.find(|f| match f {
            Fault::IntrospectionClaims(v) => Some(v.clone()),
            _ => None,
        }) {
            merge(&mut answer, &patch);
        }
    }
    if let Some(size) = shared.faults.find(|f| match f {
        Fault::OversizedIntrospectionResponse(n) => Some(*n),
        _ => None,
    }) {
        let mut body = answer.to_string().into_bytes();
        body.pop();
        body.extend_from_slice(br#","padding":""#);
        body.resize(size.max(body.len()), b'x');
        body.extend_from_slice(br#""}"#);
        return h::response(StatusCode::OK, "application/json", body);
    }
    let mut resp = h::json(StatusCode::OK, &answer);
    h::no_store(&mut resp);
    resp
}

fn answer_for(shared: &Shared, token: &str) -> Value {
    if let Some(answer) = shared.opaque.lock().get(token).cloned() {
        let live = answer["exp"].as_u64().is_none_or(|exp| exp > now());
        return if live {
            answer
        } else {
            json!({"active": false})
        };
    }
    match shared.keys.read().verify(token) {
        Some(claims) if claims["exp"].as_u64().is_some_and(|exp| exp > now()) => {
            let mut answer = claims;
            answer["active"] = json!(true);
            answer["token_type"] = json!("Bearer");
            answer
        }
        _ => json!({"active": false}),
    }
}
