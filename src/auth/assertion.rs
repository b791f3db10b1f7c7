//! The signed identity assertion: a short-lived JWT the gateway signs for
//! each request it admits, so that an upstream can verify who the user is
//! instead of trusting a plain header (Pomerium's `X-Pomerium-Jwt-Assertion`).
//!
//! - Signed ES256 with the gateway's key: read from a PEM file (EC P-256,
//!   SEC1 or PKCS#8), or generated at start (then it changes on every
//!   restart, which only suits a single gateway process).
//! - Header: `alg` ES256, `typ` JWT, `kid` the key's RFC 7638 thumbprint.
//! - Claims: `iss` (the gateway's public URL), `aud` (the upstream's
//!   origin, or as configured), `sub`, `email`, `preferred_username` and
//!   `groups` when the identity has them, `iat`, `exp` (`iat` + lifetime).
//! - The public key is served as a JWKS at `GET <prefix>/jwks.json`.
//!
//! Signing costs an ECDSA signature; a signed assertion is reused for the
//! same identity and audience while at least half its lifetime is left
//! (bounded cache, keyed by the identity's allocation, which the entry
//! keeps alive so the key cannot be reused by another identity).

use crate::clock::SharedClock;
use crate::identity::Identity;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Most signed assertions kept for reuse.
const CACHE_CAPACITY: u64 = 10_000;

/// Why the assertion key could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionKeyError {
    /// The file could not be read.
    #[error("cannot read {path}: {kind}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        kind: std::io::ErrorKind,
    },
    /// The file holds no usable EC P-256 private key.
    #[error("{0}: no EC P-256 private key (PEM, SEC1 or PKCS#8)")]
    NotP256(String),
    /// A new key could not be generated or encoded.
    #[error("cannot generate an EC P-256 key")]
    Generate,
}

/// The gateway's signing key and the assertions it signs. See the
/// [module docs](self).
pub struct AssertionSigner {
    key: EncodingKey,
    header: Header,
    jwks: Bytes,
    issuer: String,
    lifetime: u64,
    clock: SharedClock,
    cache: moka::sync::Cache<(usize, usize), Signed>,
}

#[derive(Clone)]
struct Signed {
    /// Keeps the identity alive, so that its address (the key) is not reused.
    identity: Arc<Identity>,
    value: HeaderValue,
    exp: u64,
}

impl fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("kid", &self.header.kid)
            .field("issuer", &self.issuer)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preferred_username: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
    iat: u64,
    exp: u64,
}

impl AssertionSigner {
    /// A signer with the EC P-256 key in the PEM file at `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or holds no EC P-256 private key.
    pub fn from_file(
        path: &Path,
        issuer: &str,
        lifetime: Duration,
        clock: SharedClock,
    ) -> Result<Self, AssertionKeyError> {
        let pem = std::fs::read(path).map_err(|e| AssertionKeyError::Read {
            path: path.display().to_string(),
            kind: e.kind(),
        })?;
        let not_p256 = || AssertionKeyError::NotP256(path.display().to_string());
        let pair = match PrivateKeyDer::from_pem_slice(&pem).map_err(|_| not_p256())? {
            PrivateKeyDer::Sec1(k) => EcdsaKeyPair::from_private_key_der(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                k.secret_sec1_der(),
            ),
            PrivateKeyDer::Pkcs8(k) => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, k.secret_pkcs8_der())
            }
            _ => return Err(not_p256()),
        }
        .map_err(|_| not_p256())?;
        Self::from_pair(&pair, issuer, lifetime, clock).ok_or_else(not_p256)
    }

    /// A signer with a key generated now (lost on restart: for a single
    /// gateway process only).
    ///
    /// # Errors
    ///
    /// When the key cannot be generated.
    pub fn generate(
        issuer: &str,
        lifetime: Duration,
        clock: SharedClock,
    ) -> Result<Self, AssertionKeyError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| AssertionKeyError::Generate)?;
        Self::from_pair(&pair, issuer, lifetime, clock).ok_or(AssertionKeyError::Generate)
    }

    fn from_pair(
        pair: &EcdsaKeyPair,
        issuer: &str,
        lifetime: Duration,
        clock: SharedClock,
    ) -> Option<Self> {
        let pkcs8 = pair.to_pkcs8v1().ok()?;
        let key = EncodingKey::from_ec_der(pkcs8.as_ref());
        // Uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point.first() != Some(&4) {
            return None;
        }
        let x = URL_SAFE_NO_PAD.encode(point.get(1..33)?);
        let y = URL_SAFE_NO_PAD.encode(point.get(33..65)?);
        // RFC 7638: the required members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let jwks = serde_json::json!({
            "keys": [{
                "kty": "EC", "crv": "P-256", "x": x, "y": y,
                "use": "sig", "alg": "ES256", "kid": kid,
            }]
        });
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".into());
        header.kid = Some(kid);
        let lifetime = lifetime.as_secs().max(1);
        Some(AssertionSigner {
            key,
            header,
            jwks: Bytes::from(jwks.to_string()),
            issuer: issuer.trim_end_matches('/').to_string(),
            lifetime,
            clock,
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(Duration::from_secs(lifetime.div_ceil(2)))
                .build(),
        })
    }

    /// The public key as a JWKS document (`{"keys":[…]}`).
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// The key id (`kid`) assertions carry.
    pub fn kid(&self) -> &str {
        self.header.kid.as_deref().unwrap_or("")
    }

    /// The assertion for `identity` and audience `aud` (`slot` tells
    /// audiences apart in the cache), as a header value; `None` when it
    /// cannot be signed (logged).
    pub(crate) fn assertion(
        &self,
        identity: &Arc<Identity>,
        aud: &str,
        slot: usize,
    ) -> Option<HeaderValue> {
        let now = self.clock.now_secs();
        let key = (Arc::as_ptr(identity) as usize, slot);
        if let Some(hit) = self.cache.get(&key) {
            if Arc::ptr_eq(&hit.identity, identity) && hit.exp >= now + self.lifetime / 2 {
                return Some(hit.value);
            }
        }
        let exp = now + self.lifetime;
        let claims = Claims {
            iss: &self.issuer,
            aud,
            sub: &identity.subject,
            email: identity.email.as_deref(),
            preferred_username: identity.preferred_username.as_deref(),
            groups: &identity.groups,
            iat: now,
            exp,
        };
        let token = match jsonwebtoken::encode(&self.header, &claims, &self.key) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "identity assertion could not be signed");
                return None;
            }
        };
        let mut value = HeaderValue::from_maybe_shared(Bytes::from(token)).ok()?;
        value.set_sensitive(true);
        self.cache.insert(
            key,
            Signed {
                identity: identity.clone(),
                value: value.clone(),
                exp,
            },
        );
        Some(value)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::identity::IdentitySource;
    use jsonwebtoken::{DecodingKey, Validation};

    fn identity() -> Arc<Identity> {
        Arc::new(Identity {
            subject: "alice".into(),
            email: Some("alice@example.com".into()),
            email_verified: Some(true),
            preferred_username: None,
            groups: vec!["admins".into()],
            name: None,
            issuer: "https://idp".into(),
            expires_at: None,
            source: IdentitySource::Session,
            claims: Default::default(),
        })
    }

    fn decoding_key(signer: &AssertionSigner) -> DecodingKey {
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&signer.jwks()).unwrap();
        DecodingKey::from_jwk(&jwks.keys[0]).unwrap()
    }

    fn validation(aud: &str) -> Validation {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[aud]);
        v.set_issuer(&["https://gw.example.com"]);
        v.validate_exp = false;
        v
    }

    #[test]
    fn assertion_verifies_with_published_jwks() {
        let clock = Arc::new(ManualClock::new(1_000));
        let s =
            AssertionSigner::generate("https://gw.example.com/", Duration::from_secs(60), clock)
                .unwrap();
        let token = s.assertion(&identity(), "http://app:8080", 0).unwrap();
        let data = jsonwebtoken::decode::<serde_json::Value>(
            token.to_str().unwrap(),
            &decoding_key(&s),
            &validation("http://app:8080"),
        )
        .unwrap();
        assert_eq!(data.header.kid.as_deref(), Some(s.kid()));
        assert_eq!(
            data.claims,
            serde_json::json!({
                "iss": "https://gw.example.com", "aud": "http://app:8080", "sub": "alice",
                "email": "alice@example.com", "groups": ["admins"], "iat": 1000, "exp": 1060,
            })
        );
    }

    #[test]
    fn assertion_with_other_key_or_audience_fails() {
        let clock: SharedClock = Arc::new(ManualClock::new(1_000));
        let s = AssertionSigner::generate(
            "https://gw.example.com",
            Duration::from_secs(60),
            clock.clone(),
        )
        .unwrap();
        let other =
            AssertionSigner::generate("https://gw.example.com", Duration::from_secs(60), clock)
                .unwrap();
        let token = s.assertion(&identity(), "http://app", 0).unwrap();
        let token = token.to_str().unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(
            token,
            &decoding_key(&other),
            &validation("http://app")
        )
        .is_err());
        assert!(jsonwebtoken::decode::<serde_json::Value>(
            token,
            &decoding_key(&s),
            &validation("http://other")
        )
        .is_err());
    }

    #[test]
    fn assertion_is_reused_for_half_its_life_then_renewed() {
        let clock = Arc::new(ManualClock::new(1_000));
        let s = AssertionSigner::generate("https://gw", Duration::from_secs(60), clock.clone())
            .unwrap();
        let id = identity();
        let first = s.assertion(&id, "a", 0).unwrap();
        clock.set(1_030);
        assert_eq!(s.assertion(&id, "a", 0).unwrap(), first);
        assert_ne!(s.assertion(&id, "b", 1).unwrap(), first, "another audience");
        assert_ne!(
            s.assertion(&identity(), "a", 0).unwrap(),
            first,
            "another identity"
        );
        clock.set(1_031);
        assert_ne!(s.assertion(&id, "a", 0).unwrap(), first);
    }

    #[test]
    fn key_file_sec1_and_pkcs8_load_and_rsa_is_refused() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        let clock: SharedClock = Arc::new(ManualClock::new(0));
        let s = AssertionSigner::from_file(
            &dir.join("gateway-ec.key"),
            "https://gw",
            Duration::from_secs(60),
            clock.clone(),
        );
        assert!(s.is_ok(), "{s:?}");
        let e = AssertionSigner::from_file(
            &dir.join("missing.key"),
            "https://gw",
            Duration::from_secs(60),
            clock,
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
