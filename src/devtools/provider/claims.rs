//! Claims of the tokens the provider issues, and the ID token faults.

use serde_json::{json, Value};

use super::faults::{Fault, ATTACKER_ISSUER, OTHER_AUDIENCE};
use super::keys::{corrupt_signature, half_hash, merge, Signer};
use super::{now, Shared};
use crate::devtools::http::random_token;

/// Profile claims for `user`: defaults merged with `set_user_claims`.
pub(crate) fn profile(shared: &Shared, user: &str) -> Value {
    let mut name = String::new();
    let mut chars = user.chars();
    if let Some(first) = chars.next() {
        name.extend(first.to_uppercase());
        name.push_str(chars.as_str());
    }
    let mut claims = json!({
        "sub": user,
        "email": format!("{user}@example.com"),
        "email_verified": true,
        "preferred_username": user,
        "name": name,
        "groups": ["users"],
    });
    if let Some(extra) = shared.users.lock().get(user) {
        merge(&mut claims, extra);
    }
    claims
}

/// What an ID token is issued for.
#[derive(Debug, Default)]
pub(crate) struct IdTokenContext<'a> {
    pub(crate) nonce: Option<&'a str>,
    pub(crate) sid: Option<&'a str>,
    pub(crate) auth_time: Option<u64>,
    pub(crate) access_token: Option<&'a str>,
}

/// Valid ID token claims (no faults).
pub(crate) fn id_token_claims(shared: &Shared, user: &str, ctx: &IdTokenContext<'_>) -> Value {
    let now = now();
    let mut claims = profile(shared, user);
    let protocol = json!({
        "iss": shared.issuer,
        "aud": shared.client_id,
        "iat": now,
        "exp": now + shared.id_token_ttl.as_secs(),
        "auth_time": ctx.auth_time.unwrap_or(now),
        "nonce": ctx.nonce,
        "sid": ctx.sid,
        "at_hash": ctx.access_token.map(half_hash),
    });
    merge(&mut claims, &protocol);
    claims
}

/// The ID token as the token endpoint returns it, with the active faults
/// applied.
pub(crate) fn id_token(shared: &Shared, user: &str, ctx: &IdTokenContext<'_>) -> String {
    let mut claims = id_token_claims(shared, user, ctx);
    let faults = &shared.faults;
    let now = now();
    let ttl = shared.id_token_ttl.as_secs();
    if faults.has(&Fault::WrongIssuer) {
        claims["iss"] = json!(ATTACKER_ISSUER);
    }
    if faults.has(&Fault::WrongAudience) {
        claims["aud"] = json!(OTHER_AUDIENCE);
    }
    if faults.has(&Fault::MultipleAudiencesWithoutAzp) {
        claims["aud"] = json!([shared.client_id, OTHER_AUDIENCE]);
        merge(&mut claims, &json!({ "azp": null }));
    }
    if faults.has(&Fault::WrongAzp) {
        claims["aud"] = json!([shared.client_id, OTHER_AUDIENCE]);
        claims["azp"] = json!(OTHER_AUDIENCE);
    }
    if faults.has(&Fault::WrongNonce) {
        claims["nonce"] = json!(format!("wrong-{}", random_token(12)));
    }
    if faults.has(&Fault::MissingNonce) {
        merge(&mut claims, &json!({ "nonce": null }));
    }
    if faults.has(&Fault::Expired) {
        claims["iat"] = json!(now - 7200);
        claims["auth_time"] = json!(now - 7200);
        claims["exp"] = json!(now - 3600);
    }
    if faults.has(&Fault::IssuedInFuture) {
        let future = now + 86_400;
        claims["iat"] = json!(future);
        claims["exp"] = json!(future + ttl);
    }
    if faults.has(&Fault::MissingSub) {
        merge(&mut claims, &json!({ "sub": null }));
    }
    if faults.has(&Fault::WrongAtHash) {
        claims["at_hash"] = json!(half_hash(&random_token(16)));
    }

    let (signer, header) = if faults.has(&Fault::AlgNone) {
        (Signer::None, Value::Null)
    } else if faults.has(&Fault::Hs256WithRsaPublicKey) {
        (Signer::Hs256WithRsaPublicKey, Value::Null)
    } else if faults.has(&Fault::UnknownKid) {
        (
            shared.signer(),
            json!({ "kid": format!("unknown-kid-{}", random_token(6)) }),
        )
    } else {
        (shared.signer(), Value::Null)
    };
    let token = shared.sign(&signer, &header, &claims);
    if faults.has(&Fault::BadSignature) {
        corrupt_signature(&token)
    } else {
        token
    }
}

/// Valid access token claims.
pub(crate) fn access_token_claims(shared: &Shared, user: &str, scope: &str) -> Value {
    let now = now();
    let mut claims = profile(shared, user);
    let protocol = json!({
        "iss": shared.issuer,
        "aud": shared.client_id,
        "client_id": shared.client_id,
        "iat": now,
        "nbf": now,
        "exp": now + shared.access_token_ttl.as_secs(),
        "jti": random_token(12),
        "scope": scope,
    });
    merge(&mut claims, &protocol);
    claims
}

/// The JOSE header of access tokens (RFC 9068 `at+jwt`).
pub(crate) fn access_token_header() -> Value {
    json!({ "typ": "at+jwt" })
}

/// Back-Channel Logout token claims.
pub(crate) fn logout_token_claims(shared: &Shared, sub: Option<&str>, sid: Option<&str>) -> Value {
    let now = now();
    json!({
        "iss": shared.issuer,
        "aud": shared.client_id,
        "iat": now,
        "exp": now + 120,
        "jti": random_token(12),
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        "sub": sub,
        "sid": sid,
    })
    .as_object()
    .map(|o| {
        Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    })
    .unwrap_or(Value::Null)
}
