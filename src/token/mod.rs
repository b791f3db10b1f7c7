//! Verification of ID tokens and bearer access tokens.
//!
//! The algorithm comes from the allow-list, never from the token: the
//! token's `alg` must be in the list and must fit the key's type, so
//! `alg: none` and HMAC with a public key as secret are refused (and logged
//! as a refused algorithm). Signature keys only come from the issuer's JWKS
//! (`jku`, `x5u` and embedded `jwk` headers are ignored).
//!
//! # Which algorithms
//!
//! By default ([`TokenVerifier::with_algorithms_from_discovery`]) the login
//! provider's tokens may use the algorithms its discovery document
//! advertises in `id_token_signing_alg_values_supported` that are in the
//! safe asymmetric set (RS256/384/512, PS256/384/512, ES256/384, EdDSA);
//! `RS256` when it advertises none or has no discovery (OpenID Connect Core
//! §15.1, Discovery §3). An explicit list replaces that. HMAC (`HS256`,
//! `HS384`, `HS512`) is accepted only when listed explicitly, only for ID
//! and logout tokens, keyed with the client secret (Core §10.1)
//! ([`TokenVerifier::with_hmac_id_tokens`]); never for bearer access
//! tokens, and `none` never.
//!
//! # Further issuers
//!
//! With `[[bearer.issuer]]` entries ([`TokenVerifier::with_bearer_issuer`]) a
//! bearer JWT's `iss` is read before verification (unverified) to pick the
//! issuer: the login provider's, or the entry with exactly that `iss`, whose
//! own keys, audiences and algorithms then verify it; any other `iss` is
//! refused. Nothing is trusted from the peek: the signature check against
//! that issuer's keys and its `iss` check follow.
//!
//! # Access tokens, not ID tokens
//!
//! An ID token is not an access token (RFC 9068 §4, RFC 8725 §3.11): unless
//! [`TokenVerifier::with_accept_id_tokens`] says otherwise, a bearer JWT that
//! is an ID token of this client is refused. A verified bearer JWT counts as
//! an ID token of this client when, in this order:
//!
//! 1. its header `typ` is `at+jwt` (RFC 9068 §2.1): an access token;
//! 2. its payload `typ` claim (Keycloak) is `ID`: an ID token, or `Bearer`:
//!    an access token;
//! 3. its `aud` does not contain the client id: not an ID token of this
//!    client (an ID token's `aud` always does, Core §2);
//! 4. it carries a claim only ID tokens carry (`nonce`, `at_hash`, `c_hash`,
//!    `s_hash`, Core §2 and §3.3.2.11): an ID token;
//! 5. it carries none of the claims an access token names its grant with
//!    (`scope`, `scp`, `client_id`, RFC 9068 §2.2): an ID token;
//! 6. otherwise: an access token.
//!
//! The same rule is applied to nothing else: introspected tokens are access
//! tokens by the provider's word (see [`TokenVerifier::check_introspection`]).

use crate::clock::SharedClock;
use crate::config::SigningAlgorithm;
use crate::identity::{Identity, IdentitySource};
use crate::provider::issuer::BearerIssuer;
use crate::provider::keys::KeySource;
use crate::provider::Provider;
use crate::secret::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::{Algorithm, Validation};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

/// `typ` header values accepted on ID tokens (or none).
const ID_TOKEN_TYPES: &[&str] = &["JWT"];
/// `typ` header values accepted on bearer access tokens (or none); a `JWT`
/// or untyped token is then told apart from an ID token by its claims
/// (module docs).
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
    /// An ID token presented as a bearer access token.
    IdTokenAsBearer,
    /// A `bearer.required_scopes` scope is not granted.
    InsufficientScope,
    /// The introspection endpoint says the token is not active, or the
    /// token is not a bearer access token by its answer.
    Inactive,
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
            TokenError::IdTokenAsBearer => "an id token is not an access token",
            TokenError::InsufficientScope => "token lacks a required scope",
            TokenError::Inactive => "token is not active",
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
    // What tells ID tokens and access tokens apart (module docs).
    at_hash: Option<IgnoredAny>,
    c_hash: Option<IgnoredAny>,
    s_hash: Option<IgnoredAny>,
    typ: Option<serde_json::Value>,
    scope: Option<serde_json::Value>,
    scp: Option<serde_json::Value>,
    client_id: Option<IgnoredAny>,
}

impl Claims {
    fn audiences(&self) -> &[String] {
        self.aud.as_ref().map(OneOrMany::as_slice).unwrap_or(&[])
    }

    /// Whether this verified bearer JWT is an ID token of `client_id`, by the
    /// rule in the module docs.
    fn is_id_token_of(&self, header_typ: Option<&str>, client_id: &str) -> bool {
        if header_typ.is_some_and(is_access_token_type) {
            return false;
        }
        match self.typ.as_ref().and_then(serde_json::Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case("ID") => return true,
            Some(t) if t.eq_ignore_ascii_case("Bearer") => return false,
            _ => {}
        }
        if !self.audiences().iter().any(|a| a == client_id) {
            return false;
        }
        if self.nonce.is_some()
            || self.at_hash.is_some()
            || self.c_hash.is_some()
            || self.s_hash.is_some()
        {
            return true;
        }
        self.scope.is_none() && self.scp.is_none() && self.client_id.is_none()
    }

    /// The granted scopes: `scope` (a space-separated string, RFC 8693
    /// §4.2) or `scp` (a list or a string, as Azure and Okta send it).
    fn scopes(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for v in [&self.scope, &self.scp].into_iter().flatten() {
            collect_scopes(v, &mut out);
        }
        out
    }
}

/// `at+jwt` or `application/at+jwt` (RFC 9068 §2.1).
fn is_access_token_type(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

/// Scopes from a `scope` string or an `scp` list, at most 256.
fn collect_scopes<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.extend(s.split(' ').filter(|s| !s.is_empty())),
        serde_json::Value::Array(a) => out.extend(a.iter().filter_map(|x| x.as_str())),
        _ => {}
    }
    out.truncate(256);
}

/// Whether every one of `required` is among `granted`.
pub(crate) fn has_scopes(granted: &[&str], required: &[String]) -> bool {
    required.iter().all(|r| granted.iter().any(|g| g == r))
}

/// An RFC 7662 §2.2 introspection answer, as the gateway reads it: the
/// standard members plus the profile claims providers add. `active` is
/// required and must be a JSON boolean.
#[derive(Deserialize)]
pub(crate) struct Introspection {
    active: bool,
    scope: Option<serde_json::Value>,
    client_id: Option<String>,
    username: Option<String>,
    token_type: Option<String>,
    token_use: Option<String>,
    typ: Option<String>,
    cnf: Option<IgnoredAny>,
    exp: Option<serde_json::Number>,
    nbf: Option<serde_json::Number>,
    sub: Option<String>,
    aud: Option<OneOrMany>,
    iss: Option<String>,
    email: Option<String>,
    email_verified: Option<BoolOrString>,
    preferred_username: Option<String>,
    name: Option<String>,
    groups: Option<OneOrMany>,
}

impl Introspection {
    /// Parses an answer body; anything but a JSON object with a boolean
    /// `active` (and well-typed members) is malformed.
    pub(crate) fn from_json(body: &[u8]) -> Result<Self, TokenError> {
        serde_json::from_slice(body).map_err(|_| TokenError::Malformed)
    }

    /// Whether the answer says it is about a bearer access token (see
    /// [`TokenVerifier::check_introspection`]).
    fn is_bearer_access_token(&self, untyped_is_access_token: bool) -> bool {
        let bearer = |t: &Option<String>| t.as_deref().map(|t| t.eq_ignore_ascii_case("bearer"));
        let access = self.token_use.as_deref().map(|t| t == "access_token");
        let says = [bearer(&self.token_type), access, bearer(&self.typ)];
        self.cnf.is_none()
            && !says.contains(&Some(false))
            && (says.contains(&Some(true)) || untyped_is_access_token)
    }

    /// `exp`, when it is a valid time.
    pub(crate) fn exp(&self) -> Option<u64> {
        self.exp.as_ref().and_then(|n| secs(n).ok())
    }
}

/// A NumericDate (RFC 7519 §2): non-negative seconds, fractions dropped.
fn secs(n: &serde_json::Number) -> Result<u64, TokenError> {
    match (n.as_u64(), n.as_f64()) {
        (Some(v), _) => Ok(v),
        (None, Some(f)) if (0.0..1e15).contains(&f) => Ok(f as u64),
        _ => Err(TokenError::Malformed),
    }
}

/// What else a verified ID token says, beyond the identity.
#[derive(Clone, Debug)]
pub struct IdTokenInfo {
    /// `sid`, for back-channel logout.
    pub sid: Option<String>,
    /// `exp`.
    pub expires_at: u64,
}

/// A set of JWS algorithms (one bit each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AlgSet(u16);

impl AlgSet {
    /// RS256/384/512, PS256/384/512, ES256/384, EdDSA.
    pub(crate) const SAFE_ASYMMETRIC: AlgSet = AlgSet(0b1111_1111_1000);
    const HMAC: AlgSet = AlgSet(0b111);

    fn bit(alg: Algorithm) -> u16 {
        1 << match alg {
            Algorithm::HS256 => 0,
            Algorithm::HS384 => 1,
            Algorithm::HS512 => 2,
            Algorithm::RS256 => 3,
            Algorithm::RS384 => 4,
            Algorithm::RS512 => 5,
            Algorithm::PS256 => 6,
            Algorithm::PS384 => 7,
            Algorithm::PS512 => 8,
            Algorithm::ES256 => 9,
            Algorithm::ES384 => 10,
            Algorithm::EdDSA => 11,
            // An algorithm this list does not name is in no set.
            _ => return 0,
        }
    }

    pub(crate) fn of(algs: impl IntoIterator<Item = Algorithm>) -> Self {
        AlgSet(algs.into_iter().fold(0, |m, a| m | Self::bit(a)))
    }

    pub(crate) fn contains(self, alg: Algorithm) -> bool {
        self.0 & Self::bit(alg) != 0
    }

    fn without_hmac(self) -> Self {
        AlgSet(self.0 & !Self::HMAC.0)
    }

    fn union(self, other: AlgSet) -> Self {
        AlgSet(self.0 | other.0)
    }

    /// The accepted set for advertised names (`id_token_signing_alg_values_supported`):
    /// those in the safe asymmetric set; `RS256` when none are advertised.
    pub(crate) fn from_advertised(names: Option<&[String]>) -> Self {
        match names {
            None => AlgSet::of([Algorithm::RS256]),
            Some(names) => AlgSet::of(
                names
                    .iter()
                    .filter_map(|n| n.parse::<SigningAlgorithm>().ok())
                    .map(SigningAlgorithm::jwt),
            ),
        }
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Every algorithm the verifier has a validation for.
const ALL_ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Where the login provider's accepted algorithms come from.
#[derive(Clone, Copy, Debug)]
enum AlgorithmPolicy {
    /// The configured list (asymmetric part).
    Explicit(AlgSet),
    /// Discovery's `id_token_signing_alg_values_supported` ∩ the safe set.
    FromDiscovery,
}

/// A `[[bearer.issuer]]` as the verifier sees it.
struct ExtraIssuer {
    keys: Arc<BearerIssuer>,
    algorithms: AlgSet,
    validations: Vec<(Algorithm, Validation)>,
}

/// The keys and rules a token is checked with.
struct Check<'a, K> {
    keys: &'a K,
    validations: &'a [(Algorithm, Validation)],
    algorithms: AlgSet,
    /// The client secret as HMAC key (ID and logout tokens, when allowed).
    hmac: Option<&'a DecodingKey>,
    types: &'a [&'a str],
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
    /// Accepted `aud` values of bearer tokens.
    bearer_audiences: Vec<String>,
    /// Accept ID tokens of this client as bearer tokens (default: no).
    accept_id_tokens: bool,
    introspection_access_tokens_only: bool,
    /// Scopes every bearer token must have been granted.
    required_scopes: Vec<String>,
    id_validations: Vec<(Algorithm, Validation)>,
    bearer_validations: Vec<(Algorithm, Validation)>,
    logout_validations: Vec<(Algorithm, Validation)>,
    /// Where the login provider's algorithms come from.
    policy: AlgorithmPolicy,
    /// HMAC algorithms allowed for ID and logout tokens, and their key.
    hmac: Option<(AlgSet, DecodingKey)>,
    /// `[[bearer.issuer]]`s.
    extra_issuers: Vec<ExtraIssuer>,
    /// Claim names kept on identities for route policies (`allowed_claims`).
    kept_claims: Arc<[String]>,
}

/// The validation of one algorithm: issuers, audiences, required claims;
/// `exp`/`nbf` are checked against the injected clock (`check_times`).
fn validation(alg: Algorithm, issuers: &[String], audiences: &[String], skew: u64) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = skew;
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = true;
    v.set_issuer(issuers);
    v.set_audience(audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v
}

/// The `iss` of a JWS payload, read without verifying anything.
fn peek_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Peek>(&bytes).ok()?.iss
}

/// The `alg` a header names, when the header is a JSON object that
/// jsonwebtoken could not read (`none`, an unknown name).
fn peek_algorithm(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(|a| a.chars().take(32).collect())
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
    /// A verifier for the asymmetric `algorithms` (see
    /// [`TokenVerifier::with_algorithms_from_discovery`] and
    /// [`TokenVerifier::with_hmac_id_tokens`] for the others), checking ID
    /// tokens against `client_id` and bearer tokens against `bearer_audiences`.
    pub fn new(
        provider: Arc<Provider>,
        algorithms: &[SigningAlgorithm],
        client_id: &str,
        bearer_audiences: &[String],
        skew_secs: u64,
    ) -> Self {
        let issuers = provider.accepted_issuers().to_vec();
        let build = |alg: Algorithm, auds: &[String]| validation(alg, &issuers, auds, skew_secs);
        let mut id_validations = Vec::new();
        let mut bearer_validations = Vec::new();
        let mut logout_validations = Vec::new();
        for alg in ALL_ALGORITHMS {
            id_validations.push((alg, build(alg, &[client_id.to_string()])));
            let mut logout = build(alg, &[client_id.to_string()]);
            logout.set_required_spec_claims(&["iss", "aud"]);
            logout_validations.push((alg, logout));
            if AlgSet::SAFE_ASYMMETRIC.contains(alg) {
                bearer_validations.push((alg, build(alg, bearer_audiences)));
            }
        }
        let explicit = AlgSet::of(algorithms.iter().map(|a| a.jwt()));
        TokenVerifier {
            provider,
            client_id: client_id.to_string(),
            trusted_audiences: Vec::new(),
            skew: skew_secs,
            max_id_token_age: DEFAULT_MAX_ID_TOKEN_AGE_SECS,
            clock: crate::clock::system(),
            bearer_audiences: bearer_audiences.to_vec(),
            accept_id_tokens: false,
            introspection_access_tokens_only: false,
            required_scopes: Vec::new(),
            id_validations,
            bearer_validations,
            logout_validations,
            policy: AlgorithmPolicy::Explicit(explicit),
            hmac: None,
            extra_issuers: Vec::new(),
            kept_claims: Arc::from(Vec::new()),
        }
    }

    /// Accepts the login provider's advertised algorithms instead of the
    /// list given to [`TokenVerifier::new`] (see the [module docs](self)).
    pub fn with_algorithms_from_discovery(mut self) -> Self {
        self.policy = AlgorithmPolicy::FromDiscovery;
        self
    }

    /// Accepts ID and logout tokens MACed with the client secret with the
    /// HMAC algorithms among `algorithms` (OpenID Connect Core §10.1).
    /// Never bearer tokens. An empty secret allows none.
    pub fn with_hmac_id_tokens(mut self, algorithms: &[Algorithm], secret: &Secret) -> Self {
        let set = AlgSet::of(
            algorithms
                .iter()
                .copied()
                .filter(|a| AlgSet::HMAC.contains(*a)),
        );
        self.hmac = (!set.is_empty() && !secret.is_empty())
            .then(|| (set, DecodingKey::from_secret(secret.expose().as_bytes())));
        self
    }

    /// Accepts bearer JWTs of a `[[bearer.issuer]]`: `iss` exactly
    /// `keys.issuer()`, `aud` one of `audiences`, signed with one of
    /// `algorithms` by a key of its JWKS.
    pub(crate) fn with_bearer_issuer(
        mut self,
        keys: Arc<BearerIssuer>,
        audiences: &[String],
        algorithms: &[SigningAlgorithm],
    ) -> Self {
        let issuers = [keys.issuer().to_string()];
        let validations = ALL_ALGORITHMS
            .into_iter()
            .filter(|a| AlgSet::SAFE_ASYMMETRIC.contains(*a))
            .map(|a| (a, validation(a, &issuers, audiences, self.skew)))
            .collect();
        self.extra_issuers.push(ExtraIssuer {
            keys,
            algorithms: AlgSet::of(algorithms.iter().map(|a| a.jwt())),
            validations,
        });
        self
    }

    /// The asymmetric algorithms the login provider's tokens may use now.
    fn provider_algorithms(&self) -> AlgSet {
        match self.policy {
            AlgorithmPolicy::Explicit(set) => set,
            AlgorithmPolicy::FromDiscovery => AlgSet::from_advertised(
                self.provider
                    .metadata()
                    .as_ref()
                    .and_then(|m| m.id_token_signing_algs.as_deref()),
            ),
        }
        .without_hmac()
    }

    /// What ID and logout tokens are checked with.
    fn id_check<'a>(
        &'a self,
        validations: &'a [(Algorithm, Validation)],
        types: &'a [&'a str],
    ) -> Check<'a, Provider> {
        let (hmac_algs, hmac) = match &self.hmac {
            Some((set, key)) => (*set, Some(key)),
            None => (AlgSet::default(), None),
        };
        Check {
            keys: &*self.provider,
            validations,
            algorithms: self.provider_algorithms().union(hmac_algs),
            hmac,
            types,
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

    /// Whether bearer tokens that are ID tokens of this client (by the rule
    /// in the [module docs](self)) are accepted. Default `false`.
    pub fn with_accept_id_tokens(mut self, accept: bool) -> Self {
        self.accept_id_tokens = accept;
        self
    }

    /// Whether the provider's introspection endpoint answers `active` for
    /// access tokens only (django-oauth-toolkit): then an answer that names
    /// no token type is an access token's, and `username` stands in for a
    /// missing `sub`. Default `false`.
    pub fn with_introspection_access_tokens_only(mut self, only: bool) -> Self {
        self.introspection_access_tokens_only = only;
        self
    }

    /// Scopes every bearer token (JWT or introspected) must carry in its
    /// `scope` (or `scp`). Default: none.
    pub fn with_required_scopes(mut self, scopes: Vec<String>) -> Self {
        self.required_scopes = scopes;
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
        let (claims, _) = self
            .verify::<Claims, _>(token, self.id_check(&self.id_validations, ID_TOKEN_TYPES))
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
        let auds = claims.audiences();
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
    /// accepted audiences, `exp`, `nbf`, `sub`; that it is not an ID token
    /// of this client (unless accepted) and has the required scopes.
    pub async fn verify_access_token(&self, token: &str) -> Result<Identity, TokenError> {
        let (claims, typ) = self.verify_bearer_jwt(token).await?;
        self.check_times(claims.exp, claims.nbf)?;
        if !self.accept_id_tokens && claims.is_id_token_of(typ.as_deref(), &self.client_id) {
            return Err(TokenError::IdTokenAsBearer);
        }
        if !has_scopes(&claims.scopes(), &self.required_scopes) {
            return Err(TokenError::InsufficientScope);
        }
        let mut identity = identity_from(claims, IdentitySource::Bearer)?;
        self.keep_claims(token, &mut identity);
        Ok(identity)
    }

    /// The signature and `iss`/`aud` check of a bearer JWT, against the
    /// login provider or the `[[bearer.issuer]]` its `iss` names.
    async fn verify_bearer_jwt(&self, token: &str) -> Result<(Claims, Option<String>), TokenError> {
        let provider = Check {
            keys: &*self.provider,
            validations: &self.bearer_validations,
            algorithms: self.provider_algorithms(),
            hmac: None,
            types: ACCESS_TOKEN_TYPES,
        };
        if self.extra_issuers.is_empty() {
            return self.verify::<Claims, _>(token, provider).await;
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let iss = peek_issuer(token).ok_or(TokenError::Malformed)?;
        if self.provider.accepted_issuers().contains(&iss) {
            return self.verify::<Claims, _>(token, provider).await;
        }
        let Some(extra) = self.extra_issuers.iter().find(|e| e.keys.issuer() == iss) else {
            return Err(TokenError::WrongIssuer);
        };
        let check = Check {
            keys: &*extra.keys,
            validations: &extra.validations,
            algorithms: extra.algorithms,
            hmac: None,
            types: ACCESS_TOKEN_TYPES,
        };
        self.verify::<Claims, _>(token, check).await
    }

    /// Whether `issuer` is the login provider's (not a `[[bearer.issuer]]`).
    pub(crate) fn is_provider_issuer(&self, issuer: &str) -> bool {
        self.provider.accepted_issuers().iter().any(|i| i == issuer)
    }

    /// Checks an RFC 7662 introspection answer for an opaque bearer token
    /// (RFC 7662 §2.2, and RFC 9068's rules where they carry over):
    ///
    /// - `active` must be `true`;
    /// - it must say it is about a bearer access token: `token_type` is
    ///   `Bearer`, or (without `token_type`) `token_use` is `access_token`
    ///   (Ory Hydra) or the `typ` claim is `Bearer` (Keycloak); any of them
    ///   naming something else refuses it. RFC 7662 makes `token_type`
    ///   optional, but an answer that names no type cannot be told from a
    ///   refresh token's (oidc-provider sends none for refresh tokens),
    ///   unless the endpoint is known to answer for access tokens only
    ///   ([`Self::with_introspection_access_tokens_only`]);
    /// - a sender-constrained token (`cnf`: DPoP, mTLS) is refused, as the
    ///   gateway cannot check its proof;
    /// - `exp` and `nbf`, when present, as for JWTs (with the clock skew);
    /// - `iss`, when present, must be the provider's issuer;
    /// - `aud`, when present, must contain an accepted bearer audience; a
    ///   token without `aud` is accepted only when its `client_id` is one of
    ///   them (by default: issued to the gateway's own client);
    /// - the required scopes must be granted (`scope`);
    /// - `sub` is required: it is the identity (with an endpoint for
    ///   access tokens only, `username` when `sub` is missing).
    pub(crate) fn check_introspection(
        &self,
        answer: Introspection,
    ) -> Result<Identity, TokenError> {
        if !answer.active {
            return Err(TokenError::Inactive);
        }
        let access_tokens_only = self.introspection_access_tokens_only;
        if !answer.is_bearer_access_token(access_tokens_only) {
            return Err(TokenError::WrongType);
        }
        let exp = answer.exp.as_ref().map(secs).transpose()?;
        let nbf = answer.nbf.as_ref().map(secs).transpose()?;
        self.check_times(exp, nbf)?;
        let issuer = match answer.iss {
            Some(iss) if self.provider.accepted_issuers().contains(&iss) => iss,
            Some(_) => return Err(TokenError::WrongIssuer),
            None => self.provider.issuer().to_string(),
        };
        let audience_ok = match &answer.aud {
            Some(aud) => aud
                .as_slice()
                .iter()
                .any(|a| self.bearer_audiences.contains(a)),
            None => answer
                .client_id
                .as_ref()
                .is_some_and(|c| self.bearer_audiences.contains(c)),
        };
        if !audience_ok {
            return Err(TokenError::WrongAudience);
        }
        let mut granted = Vec::new();
        if let Some(scope) = &answer.scope {
            collect_scopes(scope, &mut granted);
        }
        if !has_scopes(&granted, &self.required_scopes) {
            return Err(TokenError::InsufficientScope);
        }
        let sub = match answer.sub {
            Some(sub) => Some(sub),
            None if access_tokens_only => answer.username.clone(),
            None => None,
        };
        let claims = Claims {
            iss: issuer,
            sub,
            aud: None,
            exp,
            nbf,
            iat: None,
            nonce: None,
            azp: None,
            email: answer.email,
            email_verified: answer.email_verified,
            preferred_username: answer.preferred_username.or(answer.username),
            name: answer.name,
            groups: answer.groups,
            sid: None,
            at_hash: None,
            c_hash: None,
            s_hash: None,
            typ: None,
            scope: None,
            scp: None,
            client_id: None,
        };
        identity_from(claims, IdentitySource::Bearer)
    }

    /// Verifies a back-channel logout token (Back-Channel Logout 1.0 §2.6):
    /// signature, `iss`, `aud`, `iat`, `jti`, the logout `events` member,
    /// `sid` or `sub`, and no `nonce`. Single use of `jti` is the caller's.
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutClaims, TokenError> {
        let (raw, _) = self
            .verify::<RawLogoutClaims, _>(
                token,
                self.id_check(&self.logout_validations, LOGOUT_TOKEN_TYPES),
            )
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

    /// The verified claims and the header's `typ`.
    async fn verify<T: serde::de::DeserializeOwned, K: KeySource>(
        &self,
        token: &str,
        check: Check<'_, K>,
    ) -> Result<(T, Option<String>), TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            // A readable header naming an algorithm jsonwebtoken does not
            // know (`none`, `HS999`) is a refused algorithm, not garbage.
            Err(_) => {
                return Err(match peek_algorithm(token) {
                    Some(alg) => {
                        tracing::info!(%alg, "token algorithm refused");
                        TokenError::AlgorithmNotAllowed
                    }
                    None => TokenError::Malformed,
                })
            }
        };
        let types = check.types;
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
        let validation = check
            .validations
            .iter()
            .find(|(a, _)| *a == header.alg && check.algorithms.contains(*a))
            .map(|(_, v)| v)
            .ok_or_else(|| {
                tracing::info!(alg = ?header.alg, "token algorithm refused");
                TokenError::AlgorithmNotAllowed
            })?;
        if AlgSet::HMAC.contains(header.alg) {
            let key = check.hmac.ok_or(TokenError::AlgorithmNotAllowed)?;
            return jsonwebtoken::decode::<T>(token, key, validation)
                .map(|data| (data.claims, header.typ.clone()))
                .map_err(|e| map_error(e.kind()));
        }
        if !check.keys.is_ready() {
            return Err(TokenError::ProviderNotReady);
        }
        let mut keys = check.keys.current_keys();
        if keys.candidates_for(&header).next().is_none() {
            keys = check.keys.keys_after_miss(keys.generation).await;
        }
        let mut last = TokenError::UnknownKey;
        // Without a kid, try the (few) keys that fit the algorithm.
        for key in keys.candidates_for(&header).take(5) {
            match jsonwebtoken::decode::<T>(token, key.decoding_key(), validation) {
                Ok(data) => return Ok((data.claims, header.typ.clone())),
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
