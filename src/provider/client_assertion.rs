//! `private_key_jwt` client authentication (RFC 7523 §2.2, OpenID Connect
//! Core §9): every token endpoint request carries a fresh JWT signed with
//! the client's private key.
//!
//! The assertion has `iss` = `sub` = the client id, `aud` = the token
//! endpoint URL, a random `jti`, `iat` and `exp` = `iat` + 60 s; it is sent
//! as `client_assertion` with `client_assertion_type` =
//! [`JWT_BEARER_ASSERTION_TYPE`] and `client_id` in the form body.
//!
//! Keys (PEM): RSA in PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
//! (`BEGIN RSA PRIVATE KEY`), signing with RS256 (or RS384, RS512, PS256,
//! PS384, PS512 by `private_key_alg`); EC P-256 in SEC1
//! (`BEGIN EC PRIVATE KEY`) or PKCS#8, signing with ES256. The key is parsed
//! once, when the gateway starts; its material never appears in `Debug`
//! output or logs.

use std::path::Path;

use crate::config::SigningAlgorithm;

use aws_lc_rs::signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivateKeyDer;
use serde::Serialize;

/// `client_assertion_type` of a JWT bearer client assertion (RFC 7523 §2.2).
pub(crate) const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of one assertion.
pub(crate) const ASSERTION_LIFETIME_SECS: u64 = 60;

/// The client's signing key for `private_key_jwt`.
pub(crate) struct ClientAssertionKey {
    key: EncodingKey,
    alg: Algorithm,
    kid: Option<String>,
}

impl std::fmt::Debug for ClientAssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAssertionKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("key", &"[redacted]")
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

impl ClientAssertionKey {
    /// Reads and parses the PEM file at `path`. The error says why, without
    /// any key material.
    pub(crate) fn load(
        path: &Path,
        alg: Option<SigningAlgorithm>,
        kid: Option<&str>,
    ) -> Result<Self, String> {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
        Self::from_pem(&pem, alg, kid).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a PEM private key (the first private key in `pem`).
    pub(crate) fn from_pem(
        pem: &[u8],
        alg: Option<SigningAlgorithm>,
        kid: Option<&str>,
    ) -> Result<Self, String> {
        let der = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|_| "no PEM private key found (RSA PKCS#8/PKCS#1 or EC P-256 SEC1/PKCS#8)")?;
        let (family, key) = match &der {
            PrivateKeyDer::Pkcs1(k) => {
                RsaKeyPair::from_der(k.secret_pkcs1_der())
                    .map_err(|e| format!("not a usable RSA private key: {e}"))?;
                (Family::Rsa, EncodingKey::from_rsa_der(k.secret_pkcs1_der()))
            }
            PrivateKeyDer::Sec1(k) => {
                let pair = EcdsaKeyPair::from_private_key_der(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    k.secret_sec1_der(),
                )
                .map_err(|_| "not a usable EC P-256 private key".to_string())?;
                let pkcs8 = pair
                    .to_pkcs8v1()
                    .map_err(|_| "EC key cannot be re-encoded".to_string())?;
                (Family::Ec, EncodingKey::from_ec_der(pkcs8.as_ref()))
            }
            PrivateKeyDer::Pkcs8(k) => {
                let der = k.secret_pkcs8_der();
                if RsaKeyPair::from_pkcs8(der).is_ok() {
                    // jsonwebtoken takes RSA keys as PKCS#1: the PKCS#8
                    // PrivateKeyInfo wraps exactly that (RFC 5208 §5).
                    let info = pkcs8::PrivateKeyInfo::try_from(der)
                        .map_err(|_| "PKCS#8 key does not decode".to_string())?;
                    (Family::Rsa, EncodingKey::from_rsa_der(info.private_key))
                } else if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).is_ok() {
                    (Family::Ec, EncodingKey::from_ec_der(der))
                } else {
                    return Err("PKCS#8 key is neither a usable RSA key nor an EC P-256 key".into());
                }
            }
            _ => return Err("unsupported private key type".into()),
        };
        let alg = match (family, alg) {
            (Family::Rsa, None) => Algorithm::RS256,
            (Family::Ec, None) => Algorithm::ES256,
            (Family::Rsa, Some(a)) => match a {
                SigningAlgorithm::RS256
                | SigningAlgorithm::RS384
                | SigningAlgorithm::RS512
                | SigningAlgorithm::PS256
                | SigningAlgorithm::PS384
                | SigningAlgorithm::PS512 => a.jwt(),
                other => {
                    return Err(format!(
                        "private_key_alg `{other}` does not fit an RSA key (RS256, RS384, RS512, PS256, PS384, PS512)"
                    ))
                }
            },
            (Family::Ec, Some(SigningAlgorithm::ES256)) => Algorithm::ES256,
            (Family::Ec, Some(other)) => {
                return Err(format!(
                    "private_key_alg `{other}` does not fit an EC P-256 key (ES256)"
                ))
            }
        };
        if kid.is_some_and(|k| k.is_empty()) {
            return Err("private_key_kid must not be empty".into());
        }
        let key = ClientAssertionKey {
            key,
            alg,
            kid: kid.map(str::to_string),
        };
        // Sign once now, so a key the signer refuses fails at start-up.
        key.assertion_at("probe", "https://probe.invalid/token", 0)
            .map_err(|e| format!("the key cannot sign {alg:?}: {e}"))?;
        Ok(key)
    }

    /// The JWS algorithm.
    #[cfg(test)]
    pub(crate) fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// A fresh assertion for `client_id` at `token_endpoint`, valid for
    /// [`ASSERTION_LIFETIME_SECS`] from now.
    pub(crate) fn assertion(
        &self,
        client_id: &str,
        token_endpoint: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.assertion_at(client_id, token_endpoint, crate::clock::system_now_secs())
    }

    fn assertion_at(
        &self,
        client_id: &str,
        token_endpoint: &str,
        iat: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(self.alg);
        header.typ = Some("JWT".into());
        header.kid = self.kid.clone();
        let claims = Claims {
            iss: client_id,
            sub: client_id,
            aud: token_endpoint,
            jti: crate::random::random_token(),
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic")]
mod tests {
    use super::*;

    fn der_to_pem(label: &str, der: &[u8]) -> String {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine as _;
        let b64 = STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }
    use jsonwebtoken::{DecodingKey, Validation};
    use std::path::PathBuf;

    fn cert(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("certs")
            .join(name)
    }

    fn decode(token: &str, key: &DecodingKey, alg: Algorithm) -> serde_json::Value {
        let mut v = Validation::new(alg);
        v.set_audience(&["https://op.example/token"]);
        v.set_issuer(&["gw"]);
        v.leeway = 0;
        jsonwebtoken::decode::<serde_json::Value>(token, key, &v)
            .unwrap()
            .claims
    }

    /// The published test keys of `tests/fixtures/keys/` (not the
    /// `devtools` feature's constants: these tests run without it too).
    const TEST_RSA_PRIVATE_KEY_PEM: &str =
        include_str!("../../tests/fixtures/keys/dev-provider-rsa.pem");
    const TEST_EC_PRIVATE_KEY_PEM: &str =
        include_str!("../../tests/fixtures/keys/dev-provider-ec.pem");

    /// The SPKI PEM (`BEGIN PUBLIC KEY`) of a PEM private key file: RSA
    /// PKCS#8 or PKCS#1, P-256 SEC1 or PKCS#8.
    fn public_pem_of(path: &Path) -> String {
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::KeyPair as _;
        let pem = std::fs::read(path).unwrap();
        let rsa = |pair: RsaKeyPair| pair.public_key().as_der().unwrap().as_ref().to_vec();
        let ec = |pair: EcdsaKeyPair| pair.public_key().as_der().unwrap().as_ref().to_vec();
        let spki = match PrivateKeyDer::from_pem_slice(&pem).unwrap() {
            PrivateKeyDer::Pkcs1(k) => rsa(RsaKeyPair::from_der(k.secret_pkcs1_der()).unwrap()),
            PrivateKeyDer::Sec1(k) => ec(EcdsaKeyPair::from_private_key_der(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                k.secret_sec1_der(),
            )
            .unwrap()),
            PrivateKeyDer::Pkcs8(k) => match RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()) {
                Ok(pair) => rsa(pair),
                Err(_) => ec(EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    k.secret_pkcs8_der(),
                )
                .unwrap()),
            },
            other => panic!("unexpected key type {other:?}"),
        };
        der_to_pem("PUBLIC KEY", &spki)
    }

    #[test]
    fn rsa_pkcs8_and_pkcs1_sign_rs256() {
        for file in ["gateway.key", "gateway.pkcs1.key"] {
            let k = ClientAssertionKey::load(&cert(file), None, Some("k1")).unwrap();
            assert_eq!(k.algorithm(), Algorithm::RS256);
            let jwt = k.assertion("gw", "https://op.example/token").unwrap();
            let header = jsonwebtoken::decode_header(&jwt).unwrap();
            assert_eq!(header.kid.as_deref(), Some("k1"));
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            let dk = DecodingKey::from_rsa_pem(public_pem_of(&cert(file)).as_bytes()).unwrap();
            let c = decode(&jwt, &dk, Algorithm::RS256);
            assert_eq!(c["sub"], "gw");
            assert_eq!(c["aud"], "https://op.example/token");
            let iat = c["iat"].as_u64().unwrap();
            assert_eq!(c["exp"].as_u64().unwrap(), iat + 60);
            assert!(c["jti"].as_str().unwrap().len() >= 32);
        }
    }

    #[test]
    fn ec_sec1_signs_es256_and_jti_is_fresh() {
        let k = ClientAssertionKey::load(&cert("gateway-ec.key"), None, None).unwrap();
        assert_eq!(k.algorithm(), Algorithm::ES256);
        let a = k.assertion("gw", "https://op.example/token").unwrap();
        let b = k.assertion("gw", "https://op.example/token").unwrap();
        let dk =
            DecodingKey::from_ec_pem(public_pem_of(&cert("gateway-ec.key")).as_bytes()).unwrap();
        let (ca, cb) = (
            decode(&a, &dk, Algorithm::ES256),
            decode(&b, &dk, Algorithm::ES256),
        );
        assert_ne!(ca["jti"], cb["jti"]);
        assert!(jsonwebtoken::decode_header(&a).unwrap().kid.is_none());
    }

    #[test]
    fn ec_pkcs8_and_alg_choice() {
        let pem = TEST_EC_PRIVATE_KEY_PEM.as_bytes();
        assert_eq!(
            ClientAssertionKey::from_pem(pem, Some(SigningAlgorithm::ES256), None)
                .unwrap()
                .algorithm(),
            Algorithm::ES256
        );
        assert!(
            ClientAssertionKey::from_pem(pem, Some(SigningAlgorithm::RS256), None)
                .unwrap_err()
                .contains("EC P-256")
        );
        let rsa = TEST_RSA_PRIVATE_KEY_PEM.as_bytes();
        assert_eq!(
            ClientAssertionKey::from_pem(rsa, Some(SigningAlgorithm::PS256), None)
                .unwrap()
                .algorithm(),
            Algorithm::PS256
        );
        assert!(ClientAssertionKey::from_pem(rsa, Some(SigningAlgorithm::ES256), None).is_err());
        assert!(ClientAssertionKey::from_pem(rsa, None, Some("")).is_err());
    }

    #[test]
    fn bad_files_are_reported_without_key_material() {
        let e =
            ClientAssertionKey::load(Path::new("/nonexistent/key.pem"), None, None).unwrap_err();
        assert!(e.contains("/nonexistent/key.pem"), "{e}");
        let e = ClientAssertionKey::load(&cert("gateway.crt"), None, None).unwrap_err();
        assert!(e.contains("no PEM private key"), "{e}");
        let e = ClientAssertionKey::from_pem(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            None,
            None,
        )
        .unwrap_err();
        assert!(!e.is_empty());
    }

    #[test]
    fn debug_redacts_the_key() {
        let pem = TEST_RSA_PRIVATE_KEY_PEM;
        let k = ClientAssertionKey::from_pem(pem.as_bytes(), None, Some("kid-1")).unwrap();
        let d = format!("{k:?}");
        assert!(d.contains("redacted") && d.contains("kid-1"), "{d}");
        assert!(!d.contains("MII"), "{d}");
    }
}
