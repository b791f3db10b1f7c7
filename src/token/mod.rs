//! Verification of ID tokens and bearer access tokens.
//!
//! The algorithm comes from the configured allow-list, never from the token:
//! the token's `alg` must be in the list and must fit the key's type, so
//! `alg: none` and HMAC with a public key as secret are refused. Signature
//! keys only come from the provider's JWKS (`jku`, `x5u` and embedded `jwk`
//! headers are ignored).

use crate::clock::SharedClock;
use crate::config::SigningAlgorithm;
use crate::identity::{Identity, IdentitySource};
use crate::provider::Provider;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

/// `typ` header values accepted on ID tokens (or none).
const ID_TOKEN_TYPES: &[&str] = &["JWT"];
/// `typ` header values accepted on bearer access tokens (or none); ID tokens
/// (`JWT`) are accepted when their `aud` is an accepted bearer audience.
const ACCESS_TOKEN_TYPES: &[&str] = &["JWT", "at+jwt", "application/at+jwt"];
/// `typ` header values accepted on back-channel logout tokens (or none).
const LOGOUT_TOKEN_TYPES: &[&str] = &["JWT", "logout+jwt", "application/logout+jwt"];

/// Default longest time since an ID token's `iat` at login: 10 minutes,
/// as mod_auth_openidc's `OIDCIDTokenIatSlack`.
pub(crate) const DEFAULT_MAX_ID_TOKEN_AGE_SECS: u64 = 600;

/// Longest token accepted, in bytes.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused. Messages never contain the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS, or its parts do not decode.
    Malformed,
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// `alg` is not in the configured allow-list.
    AlgorithmNotAllowed,
    /// No key in the JWKS fits the `kid` and `alg`.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iat` is missing or in the future.
    BadIssuedAt,
    /// `iat` is further in the past than the accepted ID-token age.
    TooOld,
    /// `iss` is not the provider's issuer.
    WrongIssuer,
    /// `aud` does not contain an accepted audience.
    WrongAudience,
    /// `azp` is missing (several audiences) or not the client id.
    WrongAuthorizedParty,
    /// `nonce` does not match the login attempt.
    WrongNonce,
    /// A required claim is missing (`sub`, `exp`, `iss`, `aud`).
    MissingClaim(&'static str),
    /// The `typ` header names another kind of token.
    WrongType,
    /// The provider's keys are not loaded.
    ProviderNotReady,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            TokenError::Malformed => "token is malformed",
            TokenError::TooLarge => "token is too large",
            TokenError::AlgorithmNotAllowed => "token algorithm is not allowed",
            TokenError::UnknownKey => "token signing key is unknown",
            TokenError::BadSignature => "token signature is invalid",
            TokenError::Expired => "token has expired",
            TokenError::NotYetValid => "token is not valid yet",
            TokenError::BadIssuedAt => "token iat is missing or in the future",
            TokenError::TooOld => "token was issued too long ago (iat)",
            TokenError::WrongIssuer => "token issuer is wrong",
            TokenError::WrongAudience => "token audience is wrong",
            TokenError::WrongAuthorizedParty => "token azp is wrong",
            TokenError::WrongNonce => "token nonce does not match",
            TokenError::MissingClaim(c) => return write!(f, "token claim {c} is missing"),
            TokenError::WrongType => "token type is not accepted here",
            TokenError::ProviderNotReady => "provider keys are not loaded",
        };
        f.write_str(s)
    }
}

impl std::error::Error for TokenError {}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BoolOrString {
    Bool(bool),
    String(String),
}

/// The claims the gateway reads.
#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: Option<String>,
    aud: Option<OneOrMany>,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<serde_json::Number>,
    nonce: Option<String>,
    azp: Option<String>,
    email: Option<String>,
    email_verified: Option<BoolOrString>,
    preferred_username: Option<String>,
    name: Option<String>,
    groups: Option<OneOrMany>,
    sid: Option<String>,
}

/// What else a verified ID token says, beyond the identity.
#[derive(Clone, Debug)]
pub struct IdTokenInfo {
    /// `sid`, for back-channel logout.
    pub sid: Option<String>,
    /// `exp`.
    pub expires_at: u64,
}

/// Verifies tokens against the provider's keys.
pub struct TokenVerifier {
    provider: Arc<Provider>,
    client_id: String,
    /// Audiences besides the client id that need no `azp` (Oracle IDCS puts
    /// its issuer in every ID token's `aud`).
    trusted_audiences: Vec<String>,
    skew: u64,
    /// Longest time since an ID token's `iat` at login.
    max_id_token_age: u64,
    clock: SharedClock,
    id_validations: Vec<(Algorithm, Validation)>,
    bearer_validations: Vec<(Algorithm, Validation)>,
    logout_validations: Vec<(Algorithm, Validation)>,
    /// Claim names kept on identities for route policies (`allowed_claims`).
    kept_claims: Arc<[String]>,
}

/// The claims of a verified back-channel logout token.
#[derive(Clone, Debug)]
pub struct LogoutClaims {
    /// `sid`, when present.
    pub sid: Option<String>,
    /// `sub`, when present.
    pub sub: Option<String>,
    /// `jti`.
    pub jti: String,
    /// `exp`, or `iat` plus a default lifetime.
    pub expires_at: u64,
}

#[derive(Deserialize)]
struct RawLogoutClaims {
    sid: Option<String>,
    sub: Option<String>,
    jti: Option<String>,
    iat: Option<serde_json::Number>,
    exp: Option<u64>,
    nbf: Option<u64>,
    nonce: Option<serde_json::Value>,
    events: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The event a logout token must carry (Back-Channel Logout 1.0 §2.4).
pub(crate) const BACKCHANNEL_LOGOUT_EVENT: &str =
    "http://schemas.openid.net/event/backchannel-logout";

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for `algorithms` (asymmetric only: the configuration's
    /// type has no HMAC), checking ID tokens against `client_id` and bearer
    /// tokens against `bearer_audiences`.
    pub fn new(
        provider: Arc<Provider>,
        algorithms: &[SigningAlgorithm],
        client_id: &str,
        bearer_audiences: &[String],
        skew_secs: u64,
    ) -> Self {
        let issuers = provider.accepted_issuers().to_vec();
        let build = |alg: Algorithm, auds: &[String]| {
            let mut v = Validation::new(alg);
            v.leeway = skew_secs;
            // `exp` and `nbf` are checked against the injected clock
            // (`check_times`); jsonwebtoken only checks their presence.
            v.validate_exp = false;
            v.validate_nbf = false;
            v.validate_aud = true;
            v.set_issuer(&issuers);
            v.set_audience(auds);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            v
        };
        let mut id_validations = Vec::new();
        let mut bearer_validations = Vec::new();
        let mut logout_validations = Vec::new();
        for alg in algorithms.iter().map(|a| a.jwt()) {
            id_validations.push((alg, build(alg, &[client_id.to_string()])));
            bearer_validations.push((alg, build(alg, bearer_audiences)));
            let mut logout = build(alg, &[client_id.to_string()]);
            logout.set_required_spec_claims(&["iss", "aud"]);
            logout_validations.push((alg, logout));
        }
        TokenVerifier {
            provider,
            client_id: client_id.to_string(),
            trusted_audiences: Vec::new(),
            skew: skew_secs,
            max_id_token_age: DEFAULT_MAX_ID_TOKEN_AGE_SECS,
            clock: crate::clock::system(),
            id_validations,
            bearer_validations,
            logout_validations,
            kept_claims: Arc::from(Vec::new()),
        }
    }

    /// Keeps the claims `names` of verified ID and access tokens on their
    /// identities ([`Identity::claims`], bounded), for `allowed_claims`.
    pub fn with_kept_claims(mut self, names: Vec<String>) -> Self {
        self.kept_claims = Arc::from(names);
        self
    }

    /// Fills `identity.claims` from the (verified) `token`'s payload.
    fn keep_claims(&self, token: &str, identity: &mut Identity) {
        if self.kept_claims.is_empty() {
            return;
        }
        let payload = token
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
            .and_then(|b| {
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&b).ok()
            });
        if let Some(payload) = payload {
            identity.claims =
                crate::identity::ExtraClaims::from_payload(&payload, &self.kept_claims);
        }
    }

    /// Audiences besides the client id that an ID token may carry without
    /// an `azp` claim (for Oracle IDCS: its issuer).
    pub fn with_trusted_audiences(mut self, audiences: Vec<String>) -> Self {
        self.trusted_audiences = audiences;
        self
    }

    /// Refuses ID tokens at login whose `iat` is more than `secs` (plus the
    /// clock skew) in the past.
    pub fn with_max_id_token_age(mut self, secs: u64) -> Self {
        self.max_id_token_age = secs;
        self
    }

    /// Reads the time from `clock` (tests pin it).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// `exp` (when present) has not passed and `nbf` (when present) has,
    /// both with the configured leeway, as RFC 7519 §4.1.4–4.1.5 say.
    fn check_times(&self, exp: Option<u64>, nbf: Option<u64>) -> Result<u64, TokenError> {
        let now = self.clock.now_secs();
        if exp.is_some_and(|exp| exp < now.saturating_sub(self.skew)) {
            return Err(TokenError::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now + self.skew) {
            return Err(TokenError::NotYetValid);
        }
        Ok(now)
    }

    /// Verifies an ID token from the code exchange (OpenID Connect Core
    /// §3.1.3.7): signature, `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`, `sub`.
    pub async fn verify_id_token(
        &self,
        token: &str,
        expected_nonce: &str,
    ) -> Result<(Identity, IdTokenInfo), TokenError> {
        self.verify_id_token_inner(token, Some(expected_nonce))
            .await
    }

    /// Verifies an ID token from a refresh (Core §12.2): as at login, but
    /// without a nonce, and its `iss` and `sub` must equal `previous`'s.
    pub async fn verify_refreshed_id_token(
        &self,
        token: &str,
        previous: &Identity,
    ) -> Result<(Identity, IdTokenInfo), TokenError> {
        let (identity, info) = self.verify_id_token_inner(token, None).await?;
        if identity.issuer != previous.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if identity.subject != previous.subject {
            return Err(TokenError::MissingClaim("sub"));
        }
        Ok((identity, info))
    }

    async fn verify_id_token_inner(
        &self,
        token: &str,
        expected_nonce: Option<&str>,
    ) -> Result<(Identity, IdTokenInfo), TokenError> {
        let claims: Claims = self
            .verify(token, &self.id_validations, ID_TOKEN_TYPES)
            .await?;
        let now = self.check_times(claims.exp, claims.nbf)?;
        let iat = claims
            .iat
            .as_ref()
            .and_then(|n| n.as_f64())
            .ok_or(TokenError::BadIssuedAt)?;
        if iat > (now + self.skew) as f64 {
            return Err(TokenError::BadIssuedAt);
        }
        // Core §3.1.3.7 step 10: the client may refuse tokens issued too
        // far from now. At login the token was just minted for this
        // attempt; an old one is a replayed or stockpiled token.
        if expected_nonce.is_some()
            && iat + ((self.max_id_token_age + self.skew) as f64) < now as f64
        {
            return Err(TokenError::TooOld);
        }
        if let Some(expected) = expected_nonce {
            let nonce = claims.nonce.as_deref().ok_or(TokenError::WrongNonce)?;
            if !crate::secret::constant_time_eq(nonce.as_bytes(), expected.as_bytes()) {
                return Err(TokenError::WrongNonce);
            }
        }
        let auds = claims.aud.as_ref().map(OneOrMany::as_slice).unwrap_or(&[]);
        match claims.azp.as_deref() {
            Some(azp) if azp != self.client_id => return Err(TokenError::WrongAuthorizedParty),
            None if auds
                .iter()
                .any(|a| *a != self.client_id && !self.trusted_audiences.contains(a)) =>
            {
                return Err(TokenError::WrongAuthorizedParty)
            }
            _ => {}
        }
        if !auds.contains(&self.client_id) {
            return Err(TokenError::WrongAudience);
        }
        let info = IdTokenInfo {
            sid: claims.sid.clone(),
            expires_at: claims.exp.unwrap_or(0),
        };
        let mut identity = identity_from(claims, IdentitySource::Session)?;
        self.keep_claims(token, &mut identity);
        Ok((identity, info))
    }

    /// Verifies a bearer access token: signature, `iss`, `aud` among the
    /// accepted audiences, `exp`, `nbf`, `sub`.
    pub async fn verify_access_token(&self, token: &str) -> Result<Identity, TokenError> {
        let claims: Claims = self
            .verify(token, &self.bearer_validations, ACCESS_TOKEN_TYPES)
            .await?;
        self.check_times(claims.exp, claims.nbf)?;
        let mut identity = identity_from(claims, IdentitySource::Bearer)?;
        self.keep_claims(token, &mut identity);
        Ok(identity)
    }

    /// Verifies a back-channel logout token (Back-Channel Logout 1.0 §2.6):
    /// signature, `iss`, `aud`, `iat`, `jti`, the logout `events` member,
    /// `sid` or `sub`, and no `nonce`. Single use of `jti` is the caller's.
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutClaims, TokenError> {
        let raw: RawLogoutClaims = self
            .verify(token, &self.logout_validations, LOGOUT_TOKEN_TYPES)
            .await?;
        let now = self.check_times(raw.exp, raw.nbf)?;
        let iat = raw
            .iat
            .as_ref()
            .and_then(|n| n.as_f64())
            .ok_or(TokenError::BadIssuedAt)?;
        if iat > (now + self.skew) as f64 || iat + 600.0 + (self.skew as f64) < now as f64 {
            return Err(TokenError::BadIssuedAt);
        }
        if raw.nonce.is_some() {
            return Err(TokenError::Malformed);
        }
        let events_ok = raw
            .events
            .as_ref()
            .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
            .is_some_and(|v| v.is_object());
        if !events_ok {
            return Err(TokenError::MissingClaim("events"));
        }
        let jti = raw
            .jti
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or(TokenError::MissingClaim("jti"))?;
        let sid = raw.sid.filter(|s| !s.is_empty());
        let sub = raw.sub.filter(|s| !s.is_empty());
        if sid.is_none() && sub.is_none() {
            return Err(TokenError::MissingClaim("sid"));
        }
        Ok(LogoutClaims {
            sid,
            sub,
            jti,
            expires_at: raw.exp.unwrap_or(iat as u64 + 600),
        })
    }

    async fn verify<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        validations: &[(Algorithm, Validation)],
        types: &[&str],
    ) -> Result<T, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        // RFC 7515 §4.1.11: no `crit` extension is understood here, and an
        // encrypted (JWE) or compressed token is not a signed ID/access token.
        if header.crit.is_some() || header.enc.is_some() || header.zip.is_some() {
            return Err(TokenError::Malformed);
        }
        // RFC 8725 §3.11: an explicitly typed token of another kind (a
        // logout token as a bearer token, an access token as an ID token)
        // is refused.
        if let Some(typ) = header.typ.as_deref() {
            if !types.iter().any(|t| t.eq_ignore_ascii_case(typ)) {
                return Err(TokenError::WrongType);
            }
        }
        let validation = validations
            .iter()
            .find(|(a, _)| *a == header.alg)
            .map(|(_, v)| v)
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        if !self.provider.is_ready() {
            return Err(TokenError::ProviderNotReady);
        }
        let mut keys = self.provider.keys();
        if keys.candidates_for(&header).next().is_none() {
            let generation = self.provider.key_generation();
            keys = self.provider.refresh_keys(generation).await;
        }
        let mut last = TokenError::UnknownKey;
        // Without a kid, try the (few) keys that fit the algorithm.
        for key in keys.candidates_for(&header).take(5) {
            match jsonwebtoken::decode::<T>(token, key.decoding_key(), validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    last = map_error(e.kind());
                    if last != TokenError::BadSignature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm => TokenError::AlgorithmNotAllowed,
        ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(match c.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "aud" => "aud",
            "sub" => "sub",
            _ => "other",
        }),
        _ => TokenError::Malformed,
    }
}

fn identity_from(claims: Claims, source: IdentitySource) -> Result<Identity, TokenError> {
    let subject = claims
        .sub
        .filter(|s| !s.is_empty())
        .ok_or(TokenError::MissingClaim("sub"))?;
    let email_verified = match claims.email_verified {
        Some(BoolOrString::Bool(b)) => Some(b),
        Some(BoolOrString::String(s)) => Some(s.eq_ignore_ascii_case("true")),
        None => None,
    };
    let groups = match claims.groups {
        Some(OneOrMany::One(g)) => vec![g],
        Some(OneOrMany::Many(v)) => v.into_iter().take(256).collect(),
        None => Vec::new(),
    };
    Ok(Identity {
        subject,
        email: claims.email.filter(|e| !e.is_empty()),
        email_verified,
        preferred_username: claims.preferred_username.filter(|e| !e.is_empty()),
        groups,
        name: claims.name,
        issuer: claims.iss,
        expires_at: claims.exp,
        source,
        claims: Default::default(),
    })
}

#[cfg(test)]
mod tests;
