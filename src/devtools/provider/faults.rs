//! Faults: deliberate misbehaviour of the development provider, so tests can
//! check that the gateway refuses each hostile artefact.

use std::time::Duration;

use parking_lot::Mutex;

/// The issuer used by faults that need "some other issuer".
pub const ATTACKER_ISSUER: &str = "https://attacker.example";

/// The audience used by faults that need "some other client".
pub const OTHER_AUDIENCE: &str = "some-other-client";

/// A deliberate misbehaviour of the [`DevProvider`](super::DevProvider).
///
/// Install with [`DevProvider::set_fault`](super::DevProvider::set_fault); it
/// applies to every later response until
/// [`clear_faults`](super::DevProvider::clear_faults). Several faults of
/// different variants can be active at once.
///
/// Unless stated otherwise, token faults affect the **ID token** returned by
/// the token endpoint (authorization-code and refresh grants); access tokens
/// are left intact so that each fault tests one thing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    // --- ID token signature and header ---
    /// The ID token's signature bytes are corrupted.
    BadSignature,
    /// The ID token header says `alg: none` and the signature is empty.
    AlgNone,
    /// The ID token is HS256, keyed with the RSA public key's SPKI PEM bytes,
    /// with the RSA key's `kid` (algorithm-confusion attack).
    Hs256WithRsaPublicKey,
    /// The ID token header names a `kid` that is not in the JWKS (still
    /// signed with the current RSA key).
    UnknownKid,

    // --- ID token claims ---
    /// `iss` is [`ATTACKER_ISSUER`].
    WrongIssuer,
    /// `aud` is [`OTHER_AUDIENCE`].
    WrongAudience,
    /// `aud` is `[client_id, OTHER_AUDIENCE]` with no `azp`.
    MultipleAudiencesWithoutAzp,
    /// `aud` is `[client_id, OTHER_AUDIENCE]` and `azp` is [`OTHER_AUDIENCE`].
    WrongAzp,
    /// `nonce` differs from the one in the authorization request.
    WrongNonce,
    /// `nonce` is absent.
    MissingNonce,
    /// `exp` (and `iat`) lie an hour or more in the past.
    Expired,
    /// `iat` lies a day in the future (`exp` is `iat` + the ID token
    /// lifetime; no `nbf`), so only an `iat` check catches it.
    IssuedInFuture,
    /// `sub` is absent.
    MissingSub,
    /// `at_hash` does not match the access token.
    WrongAtHash,

    // --- token endpoint ---
    /// The token endpoint answers with this status and body
    /// (`Content-Type: application/json`).
    TokenEndpointError {
        /// HTTP status code (invalid codes become 500).
        status: u16,
        /// Response body, sent as is.
        body: String,
    },
    /// The token endpoint answers 200 with a body that is not JSON.
    MalformedTokenResponse,
    /// The token endpoint answers 200 with a JSON body of this many bytes
    /// (a valid token response padded with a huge member).
    OversizedTokenResponse(usize),
    /// The token endpoint waits this long before answering.
    TokenEndpointDelay(Duration),
    /// The token response has no `id_token`.
    MissingIdToken,

    // --- authorization redirect ---
    /// The redirect back to the client carries a different `state`.
    WrongState,
    /// The redirect's RFC 9207 `iss` parameter is [`ATTACKER_ISSUER`].
    WrongIssParam,
    /// The redirect carries `error=access_denied` (with the right `state`)
    /// instead of a code.
    ErrorRedirect,

    // --- discovery, JWKS, userinfo ---
    /// `/jwks` answers 500.
    JwksUnavailable,
    /// `/jwks` answers 200 with a truncated, unparsable document.
    MalformedJwks,
    /// `/.well-known/openid-configuration` answers 500.
    DiscoveryUnavailable,
    /// The discovery document's `issuer` is [`ATTACKER_ISSUER`] (endpoints
    /// are still the real ones).
    DiscoveryIssuerMismatch,
    /// `/userinfo` answers 500.
    UserinfoUnavailable,
    /// `/userinfo` returns a `sub` that differs from the token's.
    UserinfoSubMismatch,
    /// `/userinfo` waits this long before answering.
    UserinfoDelay(Duration),
    /// The discovery document's `id_token_signing_alg_values_supported` is
    /// this list; `None` leaves the member out.
    AdvertisedIdTokenAlgs(Option<Vec<String>>),

    // --- introspection (RFC 7662) and RFC 8414 metadata ---
    /// The discovery document does not name the introspection endpoint
    /// (only `/.well-known/oauth-authorization-server` does).
    IntrospectionOnlyInRfc8414,
    /// `/introspect` answers 500.
    IntrospectionUnavailable,
    /// `/introspect` waits this long before answering.
    IntrospectionDelay(Duration),
    /// `/introspect` answers 200 with a body that is not JSON.
    MalformedIntrospectionResponse,
    /// `/introspect` answers 200 with a JSON body of at least this many
    /// bytes (the real answer padded with a huge member).
    OversizedIntrospectionResponse(usize),
    /// These members are merged over every active introspection answer
    /// (e.g. `{"active": false}`, `{"aud": "other"}`, `{"exp": 1}`); a
    /// `null` member removes one.
    IntrospectionClaims(serde_json::Value),

    // --- the whole provider ---
    /// Every endpoint waits this long before answering (a provider that is
    /// overloaded or hangs). See also
    /// [`DevProvider::stop_serving`](super::DevProvider::stop_serving) for a
    /// provider that is down.
    ResponseDelay(Duration),
}

/// The set of active faults.
#[derive(Debug, Default)]
pub(crate) struct Faults(Mutex<Vec<Fault>>);

impl Faults {
    /// Adds `fault`, replacing an active fault of the same variant.
    pub(crate) fn set(&self, fault: Fault) {
        let mut faults = self.0.lock();
        let d = std::mem::discriminant(&fault);
        faults.retain(|f| std::mem::discriminant(f) != d);
        faults.push(fault);
    }

    pub(crate) fn clear(&self) {
        self.0.lock().clear();
    }

    pub(crate) fn snapshot(&self) -> Vec<Fault> {
        self.0.lock().clone()
    }

    /// Whether `fault` (compared by value) is active.
    pub(crate) fn has(&self, fault: &Fault) -> bool {
        self.0.lock().contains(fault)
    }

    /// The first active fault for which `f` returns `Some`.
    pub(crate) fn find<T>(&self, f: impl Fn(&Fault) -> Option<T>) -> Option<T> {
        self.0.lock().iter().find_map(f)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic")]
mod tests {
    use super::*;

    #[test]
    fn set_same_variant_replaces() {
        let faults = Faults::default();
        faults.set(Fault::TokenEndpointDelay(Duration::from_secs(1)));
        faults.set(Fault::WrongNonce);
        faults.set(Fault::TokenEndpointDelay(Duration::from_secs(2)));
        assert_eq!(
            faults.snapshot(),
            vec![
                Fault::WrongNonce,
                Fault::TokenEndpointDelay(Duration::from_secs(2))
            ]
        );
        assert!(faults.has(&Fault::WrongNonce));
        faults.clear();
        assert!(faults.snapshot().is_empty());
    }
}
