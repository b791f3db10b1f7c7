//! Sealing session data with AES-256-GCM, with key rotation.
//!
//! Every key is derived from a session secret with HKDF-SHA256 (one key
//! per purpose). The sealed form is
//!
//! ```text
//! version (1) | key id (4) | nonce (12) | ciphertext | tag (16)
//! ```
//!
//! The version and key id are authenticated as associated data together
//! with a caller-given context (the cookie name, the Redis key), so a sealed
//! value moved to another name does not open. The key id (itself derived
//! from the secret, so it reveals nothing) picks the key directly: opening
//! never tries keys in turn. [`Sealer::seal`] always uses the current
//! secret; the previous secrets only open.
//!
//! Nonces are random (96 bits): safe for far more seals per key (2³²) than
//! a session secret sees between rotations.

use crate::secret::SessionSecret;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

const VERSION: u8 = 1;
const HEADER: usize = 1 + 4 + 12;
const TAG: usize = 16;
/// Most previous secrets a sealer accepts.
pub const MAX_PREVIOUS_SECRETS: usize = 8;

struct SealKey {
    id: [u8; 4],
    aead: Aes256Gcm,
}

impl SealKey {
    fn derive(secret: &SessionSecret, purpose: &str) -> Self {
        let key = secret.derive(format!("oidc-gateway seal v1 key {purpose}").as_bytes());
        let id_bytes = secret.derive(format!("oidc-gateway seal v1 id {purpose}").as_bytes());
        SealKey {
            id: [id_bytes[0], id_bytes[1], id_bytes[2], id_bytes[3]],
            aead: Aes256Gcm::new(&key.into()),
        }
    }
}

/// Seals with the current secret; opens with it or any previous one.
pub struct Sealer {
    current: SealKey,
    previous: Vec<SealKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("previous_keys", &self.previous.len())
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer for `purpose` (e.g. `"cookie"`, `"redis"`): `current` seals,
    /// `previous` (at most [`MAX_PREVIOUS_SECRETS`], extra ones ignored)
    /// still open.
    pub fn new(purpose: &str, current: &SessionSecret, previous: &[SessionSecret]) -> Self {
        Sealer {
            current: SealKey::derive(current, purpose),
            previous: previous
                .iter()
                .take(MAX_PREVIOUS_SECRETS)
                .map(|s| SealKey::derive(s, purpose))
                .collect(),
        }
    }

    /// `plaintext` sealed under the current key, bound to `context`.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + plaintext.len() + TAG);
        out.push(VERSION);
        out.extend_from_slice(&self.current.id);
        let mut nonce = [0u8; 12];
        crate::random::fill_random(&mut nonce);
        out.extend_from_slice(&nonce);
        let aad = aad(&out[..5], context);
        match self.current.aead.encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        ) {
            Ok(ct) => out.extend_from_slice(&ct),
            // AES-GCM only fails on inputs beyond 64 GiB.
            Err(_) => out.clear(),
        }
        out
    }

    /// The plaintext of `sealed` if it was sealed for `context` under the
    /// current or a previous key, untouched; `None` otherwise.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < HEADER + TAG || sealed[0] != VERSION {
            return None;
        }
        let id = &sealed[1..5];
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)?;
        let aad = aad(&sealed[..5], context);
        key.aead
            .decrypt(
                Nonce::from_slice(&sealed[5..HEADER]),
                Payload {
                    msg: &sealed[HEADER..],
                    aad: &aad,
                },
            )
            .ok()
    }

    /// Whether `sealed` was sealed under the current key (else it should be
    /// sealed again when next written).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.get(1..5) == Some(&self.current.id[..])
    }
}

fn aad(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(header.len() + context.len());
    a.extend_from_slice(header);
    a.extend_from_slice(context);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> SessionSecret {
        SessionSecret::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn seal_round_trip_and_fresh_nonce() {
        let s = Sealer::new("cookie", &secret(1), &[]);
        let a = s.seal(b"ctx", b"hello");
        let b = s.seal(b"ctx", b"hello");
        assert_ne!(a, b, "random nonce");
        assert_eq!(s.open(b"ctx", &a).unwrap(), b"hello");
        assert!(s.is_current(&a));
    }

    #[test]
    fn seal_tampered_or_other_context_does_not_open() {
        let s = Sealer::new("cookie", &secret(1), &[]);
        let sealed = s.seal(b"name", b"payload");
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(s.open(b"name", &t).is_none(), "byte {i} flipped");
        }
        assert!(s.open(b"other", &sealed).is_none());
        assert!(s.open(b"name", &sealed[..sealed.len() - 1]).is_none());
        assert!(s.open(b"name", &[]).is_none());
        assert!(s.open(b"name", &[1; 20]).is_none());
    }

    #[test]
    fn seal_previous_secret_opens_but_never_seals() {
        let old = Sealer::new("cookie", &secret(1), &[]);
        let sealed_old = old.seal(b"c", b"x");
        let rotated = Sealer::new("cookie", &secret(2), &[secret(1)]);
        assert_eq!(rotated.open(b"c", &sealed_old).unwrap(), b"x");
        assert!(!rotated.is_current(&sealed_old));
        let sealed_new = rotated.seal(b"c", b"y");
        assert!(rotated.is_current(&sealed_new));
        assert!(old.open(b"c", &sealed_new).is_none(), "new key seals");
        let dropped = Sealer::new("cookie", &secret(2), &[]);
        assert!(dropped.open(b"c", &sealed_old).is_none());
    }

    #[test]
    fn seal_purposes_get_independent_keys() {
        let a = Sealer::new("cookie", &secret(1), &[]);
        let b = Sealer::new("redis", &secret(1), &[]);
        assert!(b.open(b"c", &a.seal(b"c", b"x")).is_none());
    }
}
