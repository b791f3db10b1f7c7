//! Signing keys of the development provider, JWS signing and verification,
//! and the JWKS document.

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, KeyPair as _, RsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// RSA-2048 private key (PKCS#8 PEM) that
/// [`DevProviderBuilder::insecure_fixed_keys`](super::DevProviderBuilder::insecure_fixed_keys)
/// signs with, from `tests/fixtures/keys/dev-provider-rsa.pem`; also a
/// ready-made client key for `private_key_jwt` tests.
///
/// **Test-only.** This key is public knowledge (it is in the source tree);
/// never trust tokens signed with it outside tests. A binary that never
/// calls `insecure_fixed_keys` (or names this constant) does not carry it.
pub const TEST_RSA_PRIVATE_KEY_PEM: &str =
    include_str!("../../../tests/fixtures/keys/dev-provider-rsa.pem");

/// P-256 private key (PKCS#8 PEM) that
/// [`DevProviderBuilder::insecure_fixed_keys`](super::DevProviderBuilder::insecure_fixed_keys)
/// signs with, from `tests/fixtures/keys/dev-provider-ec.pem`.
///
/// **Test-only.** This key is public knowledge (it is in the source tree);
/// never trust tokens signed with it outside tests.
pub const TEST_EC_PRIVATE_KEY_PEM: &str =
    include_str!("../../../tests/fixtures/keys/dev-provider-ec.pem");

/// The public key (SPKI PEM, `-----BEGIN PUBLIC KEY-----`) of a PEM
/// private key: RSA in PKCS#8 or PKCS#1, EC P-256 in PKCS#8 or SEC1. For
/// [`ClientAuth::PrivateKeyJwt`](super::ClientAuth::PrivateKeyJwt) in tests
/// whose gateway is configured with the private key.
///
/// # Errors
/// When `private_pem` holds no such key.
pub fn public_key_pem(private_pem: &str) -> std::io::Result<String> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::PrivateKeyDer;
    let bad = |m: &'static str| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let der = PrivateKeyDer::from_pem_slice(private_pem.as_bytes())
        .map_err(|_| bad("no PEM private key"))?;
    let spki = match &der {
        PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der())
            .map_err(|_| bad("bad rsa key"))?
            .public_key()
            .as_der()
            .map(|d| d.as_ref().to_vec()),
        PrivateKeyDer::Sec1(k) => EcdsaKeyPair::from_private_key_der(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            k.secret_sec1_der(),
        )
        .map_err(|_| bad("bad ec key"))?
        .public_key()
        .as_der()
        .map(|d| d.as_ref().to_vec()),
        PrivateKeyDer::Pkcs8(k) => match RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()) {
            Ok(pair) => pair.public_key().as_der().map(|d| d.as_ref().to_vec()),
            Err(_) => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, k.secret_pkcs8_der())
                    .map_err(|_| bad("neither an rsa nor a p-256 key"))?
                    .public_key()
                    .as_der()
                    .map(|d| d.as_ref().to_vec())
            }
        },
        _ => return Err(bad("unsupported key type")),
    }
    .map_err(|_| bad("public key encoding failed"))?;
    Ok(der_to_pem("PUBLIC KEY", &spki))
}

/// How [`DevProvider::sign_with`](super::DevProvider::sign_with) signs a token.
///
/// The default JOSE header for each signer is `{"alg": .., "typ": "JWT"}`
/// plus the `kid` of the key it names (none for `Hs256` and `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signer {
    /// RS256 with the current RSA signing key.
    Rs256,
    /// ES256 with the current P-256 signing key.
    Es256,
    /// HS256 keyed with the given secret.
    Hs256(Vec<u8>),
    /// HS256 keyed with the bytes of the current RSA public key as an SPKI PEM
    /// (`-----BEGIN PUBLIC KEY-----`), with the RSA key's `kid` in the header:
    /// the classic algorithm-confusion attack.
    Hs256WithRsaPublicKey,
    /// `alg: none` with an empty signature.
    None,
}

/// Key material failed to load or the crypto library refused an operation.
#[derive(Debug)]
pub(crate) struct KeyError(&'static str);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for KeyError {}

impl From<KeyError> for std::io::Error {
    fn from(err: KeyError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, err)
    }
}

// ===== impl RsaKey =====

/// An RS256 signing key with its public parts pre-encoded.
pub(crate) struct RsaKey {
    pub(crate) kid: String,
    pair: RsaKeyPair,
    n: Vec<u8>,
    e: Vec<u8>,
    spki_pem: String,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl RsaKey {
    pub(crate) fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let der = pem_to_der(pem).ok_or(KeyError("rsa key: bad pem"))?;
        let pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| KeyError("rsa key: bad pkcs8"))?;
        Self::from_pair(pair)
    }

    pub(crate) fn generate() -> Result<Self, KeyError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| KeyError("rsa key: generation failed"))?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: RsaKeyPair) -> Result<Self, KeyError> {
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let spki = public
            .as_der()
            .map_err(|_| KeyError("rsa key: spki encoding failed"))?;
        let spki_pem = der_to_pem("PUBLIC KEY", spki.as_ref());
        let thumbprint_input = format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(&e),
            URL_SAFE_NO_PAD.encode(&n)
        );
        let kid = format!("rsa-{}", thumbprint(&thumbprint_input));
        Ok(Self {
            kid,
            pair,
            n,
            e,
            spki_pem,
        })
    }

    pub(crate) fn public_pem(&self) -> &str {
        &self.spki_pem
    }

    pub(crate) fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(&self.n),
            "e": URL_SAFE_NO_PAD.encode(&self.e),
        })
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                msg,
                &mut sig,
            )
            .map_err(|_| KeyError("rsa signing failed"))?;
        Ok(sig)
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.pair.public_key().as_ref(),
        )
        .verify(msg, sig)
        .is_ok()
    }
}

// ===== impl EcKey =====

/// An ES256 signing key with its public coordinates.
pub(crate) struct EcKey {
    pub(crate) kid: String,
    pair: EcdsaKeyPair,
    x: Vec<u8>,
    y: Vec<u8>,
}

impl std::fmt::Debug for EcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl EcKey {
    pub(crate) fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let der = pem_to_der(pem).ok_or(KeyError("ec key: bad pem"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|_| KeyError("ec key: bad pkcs8"))?;
        Self::from_pair(pair)
    }

    pub(crate) fn generate() -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| KeyError("ec key: generation failed"))?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: EcdsaKeyPair) -> Result<Self, KeyError> {
        // Uncompressed SEC1 point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(KeyError("ec key: unexpected public key encoding"));
        }
        let x = point[1..33].to_vec();
        let y = point[33..].to_vec();
        let thumbprint_input = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(&x),
            URL_SAFE_NO_PAD.encode(&y)
        );
        let kid = format!("ec-{}", thumbprint(&thumbprint_input));
        Ok(Self { kid, pair, x, y })
    }

    pub(crate) fn jwk(&self) -> Value {
        json!({
            "kty": "EC",
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&self.x),
            "y": URL_SAFE_NO_PAD.encode(&self.y),
        })
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.pair
            .sign(&SystemRandom::new(), msg)
            .map(|sig| sig.as_ref().to_vec())
            .map_err(|_| KeyError("ecdsa signing failed"))
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.pair.public_key().as_ref())
            .verify(msg, sig)
            .is_ok()
    }
}

// ===== impl KeySet =====

/// The provider's current signing keys plus the retired ones still published.
#[derive(Debug, Clone)]
pub(crate) struct KeySet {
    pub(crate) rsa: Arc<RsaKey>,
    pub(crate) ec: Arc<EcKey>,
    pub(crate) retired_rsa: Vec<Arc<RsaKey>>,
    pub(crate) retired_ec: Vec<Arc<EcKey>>,
}

impl KeySet {
    /// Keys from PKCS#8 PEMs (RSA-2048 or larger, P-256).
    pub(crate) fn from_pkcs8_pems(rsa_pem: &str, ec_pem: &str) -> Result<Self, KeyError> {
        Ok(Self::new(
            RsaKey::from_pkcs8_pem(rsa_pem)?,
            EcKey::from_pkcs8_pem(ec_pem)?,
        ))
    }

    /// Fresh random keys.
    pub(crate) fn generate() -> Result<Self, KeyError> {
        Ok(Self::new(RsaKey::generate()?, EcKey::generate()?))
    }

    fn new(rsa: RsaKey, ec: EcKey) -> Self {
        Self {
            rsa: Arc::new(rsa),
            ec: Arc::new(ec),
            retired_rsa: Vec::new(),
            retired_ec: Vec::new(),
        }
    }

    /// Replaces the current keys with fresh ones; the old ones stay published
    /// when `keep_old` is true.
    pub(crate) fn rotate(&mut self, keep_old: bool) -> Result<(), KeyError> {
        let rsa = Arc::new(RsaKey::generate()?);
        let ec = Arc::new(EcKey::generate()?);
        let old_rsa = std::mem::replace(&mut self.rsa, rsa);
        let old_ec = std::mem::replace(&mut self.ec, ec);
        if keep_old {
            self.retired_rsa.insert(0, old_rsa);
            self.retired_ec.insert(0, old_ec);
        } else {
            self.retired_rsa.clear();
            self.retired_ec.clear();
        }
        Ok(())
    }

    /// The JWKS document: current keys first, then retired ones.
    pub(crate) fn jwks(&self) -> Value {
        let mut keys = vec![self.rsa.jwk(), self.ec.jwk()];
        keys.extend(self.retired_rsa.iter().map(|k| k.jwk()));
        keys.extend(self.retired_ec.iter().map(|k| k.jwk()));
        json!({ "keys": keys })
    }

    fn rsa_by_kid(&self, kid: Option<&str>) -> Option<&RsaKey> {
        match kid {
            None => Some(&self.rsa),
            Some(kid) => std::iter::once(&self.rsa)
                .chain(self.retired_rsa.iter())
                .find(|k| k.kid == kid)
                .map(|k| &**k),
        }
    }

    fn ec_by_kid(&self, kid: Option<&str>) -> Option<&EcKey> {
        match kid {
            None => Some(&self.ec),
            Some(kid) => std::iter::once(&self.ec)
                .chain(self.retired_ec.iter())
                .find(|k| k.kid == kid)
                .map(|k| &**k),
        }
    }

    /// Signs `claims` with `signer`; `header` is merged over the signer's
    /// default header (a `null` member removes the default).
    pub(crate) fn sign(
        &self,
        signer: &Signer,
        header: &Value,
        claims: &Value,
    ) -> Result<String, KeyError> {
        let (alg, kid) = match signer {
            Signer::Rs256 => ("RS256", Some(self.rsa.kid.as_str())),
            Signer::Es256 => ("ES256", Some(self.ec.kid.as_str())),
            Signer::Hs256(_) => ("HS256", None),
            Signer::Hs256WithRsaPublicKey => ("HS256", Some(self.rsa.kid.as_str())),
            Signer::None => ("none", None),
        };
        let mut full = json!({ "alg": alg, "typ": "JWT" });
        if let Some(kid) = kid {
            full["kid"] = Value::from(kid);
        }
        merge(&mut full, header);
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(full.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = match signer {
            Signer::Rs256 => self.rsa.sign(input.as_bytes())?,
            Signer::Es256 => self.ec.sign(input.as_bytes())?,
            Signer::Hs256(secret) => hs256(secret, input.as_bytes()),
            Signer::Hs256WithRsaPublicKey => {
                hs256(self.rsa.public_pem().as_bytes(), input.as_bytes())
            }
            Signer::None => Vec::new(),
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// Verifies an RS256/ES256 token signed by one of our keys and returns its
    /// claims. Does not check any claim.
    pub(crate) fn verify(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
        let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
        let input = &token[..h.len() + 1 + p.len()];
        let kid = header.get("kid").and_then(Value::as_str);
        let ok = match header.get("alg").and_then(Value::as_str)? {
            "RS256" => self.rsa_by_kid(kid)?.verify(input.as_bytes(), &sig),
            "ES256" => self.ec_by_kid(kid)?.verify(input.as_bytes(), &sig),
            _ => false,
        };
        if !ok {
            return None;
        }
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
    }
}

/// Merges the members of `patch` (an object) into `target` (an object):
/// `null` removes a member, anything else replaces it.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let (Some(target), Some(patch)) = (target.as_object_mut(), patch.as_object()) else {
        return;
    };
    for (k, v) in patch {
        if v.is_null() {
            target.remove(k);
        } else {
            target.insert(k.clone(), v.clone());
        }
    }
}

/// Returns `token` with its signature bytes altered (first byte flipped, or
/// one byte added when the signature is empty). Header and payload are kept.
pub fn corrupt_signature(token: &str) -> String {
    let Some((input, sig)) = token.rsplit_once('.') else {
        return format!("{token}.AA");
    };
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap_or_default();
    match bytes.first_mut() {
        Some(b) => *b ^= 0xff,
        None => bytes.push(0),
    }
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn hs256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length: new_from_slice cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(msg);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// `base64url(SHA-256(input))`, the RFC 7638 thumbprint of canonical JSON.
fn thumbprint(input: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(input.as_bytes()))
}

/// The left half of SHA-256 of `token`, base64url: OIDC `at_hash` / `c_hash`.
pub(crate) fn half_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    STANDARD.decode(body).ok()
}

fn der_to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic")]
mod tests {
    use super::*;

    /// The published test keys (fast and deterministic).
    fn fixed() -> KeySet {
        KeySet::from_pkcs8_pems(TEST_RSA_PRIVATE_KEY_PEM, TEST_EC_PRIVATE_KEY_PEM).unwrap()
    }

    fn claims() -> Value {
        json!({"sub": "alice", "exp": 4_000_000_000u64})
    }

    #[test]
    fn test_keys_load_and_have_stable_kids() {
        let a = fixed();
        let b = fixed();
        assert_eq!(a.rsa.kid, b.rsa.kid);
        assert_eq!(a.ec.kid, b.ec.kid);
        assert!(a.rsa.kid.starts_with("rsa-"));
    }

    #[test]
    fn rs256_token_verifies_with_jwks_via_jsonwebtoken() {
        let keys = fixed();
        let token = keys.sign(&Signer::Rs256, &json!({}), &claims()).unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(keys.jwks()).unwrap();
        let jwk = jwks.find(&keys.rsa.kid).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims["sub"], "alice");
        assert_eq!(data.header.kid.as_deref(), Some(keys.rsa.kid.as_str()));
        assert!(keys.verify(&token).is_some());
    }

    #[test]
    fn es256_token_verifies_with_jwks_via_jsonwebtoken() {
        let keys = KeySet::generate().unwrap();
        let token = keys.sign(&Signer::Es256, &json!({}), &claims()).unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(keys.jwks()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&keys.ec.kid).unwrap()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.validate_aud = false;
        jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
        assert!(keys.verify(&token).is_some());
    }

    #[test]
    fn corrupted_signature_fails_verification() {
        let keys = fixed();
        let token = keys.sign(&Signer::Rs256, &json!({}), &claims()).unwrap();
        assert!(keys.verify(&corrupt_signature(&token)).is_none());
    }

    #[test]
    fn alg_none_token_has_empty_signature_and_is_not_accepted() {
        let keys = fixed();
        let token = keys.sign(&Signer::None, &json!({}), &claims()).unwrap();
        assert!(token.ends_with('.'));
        let header = jsonwebtoken::decode_header(&token);
        // jsonwebtoken refuses to even parse alg none, which is the point.
        assert!(header.is_err());
        assert!(keys.verify(&token).is_none());
    }

    #[test]
    fn hs256_with_rsa_public_key_verifies_with_hmac_of_pem() {
        let keys = fixed();
        let token = keys
            .sign(&Signer::Hs256WithRsaPublicKey, &json!({}), &claims())
            .unwrap();
        let pem = keys.rsa.public_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let key = jsonwebtoken::DecodingKey::from_secret(pem.as_bytes());
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some(keys.rsa.kid.as_str()));
        assert!(keys.verify(&token).is_none());
        // The PEM is a valid RSA public key for the JWKS key.
        jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    }

    #[test]
    fn header_override_null_removes_member() {
        let keys = fixed();
        let token = keys
            .sign(
                &Signer::Rs256,
                &json!({"kid": null, "typ": "at+jwt"}),
                &claims(),
            )
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert!(header.kid.is_none());
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        // Without a kid the current key is used for verification.
        assert!(keys.verify(&token).is_some());
    }

    #[test]
    fn rotate_keep_old_publishes_both_and_verifies_old_tokens() {
        let mut keys = fixed();
        let old = keys.sign(&Signer::Rs256, &json!({}), &claims()).unwrap();
        let old_kid = keys.rsa.kid.clone();
        keys.rotate(true).unwrap();
        assert_ne!(keys.rsa.kid, old_kid);
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 4);
        assert!(keys.verify(&old).is_some());
        keys.rotate(false).unwrap();
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 2);
        assert!(keys.verify(&old).is_none());
    }
}
