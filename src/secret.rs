//! Secret values: redacted `Debug`, constant-time comparison.

use std::fmt;
use subtle::ConstantTimeEq;

/// A secret string (client secret, session secret, token). `Debug` and
/// `Display` never show the value.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value.
    ///
    /// # Security warning
    /// Never log or format the returned value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with `other` in constant time (length may leak).
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), other)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// The decoded session secret: the key material that seals login-attempt
/// cookies (and, with the cookie store, sessions). At least 32 bytes;
/// `Debug` never shows it.
#[derive(Clone)]
pub struct SessionSecret(Vec<u8>);

/// The session secret is shorter than 32 bytes or not base64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionSecretError {
    /// Fewer than 32 bytes.
    #[error("must decode to at least 32 bytes")]
    TooShort,
    /// Not base64 (standard or URL-safe, padded or not).
    #[error("must be base64")]
    NotBase64,
}

impl SessionSecret {
    /// Least number of bytes a session secret has.
    pub const MIN_BYTES: usize = 32;

    /// A secret from raw key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SessionSecretError> {
        if bytes.len() < Self::MIN_BYTES {
            return Err(SessionSecretError::TooShort);
        }
        Ok(SessionSecret(bytes.to_vec()))
    }

    /// A secret from its base64 text (standard or URL-safe alphabet, with
    /// or without padding), as `session.secret` holds it.
    pub fn from_base64(text: &str) -> Result<Self, SessionSecretError> {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        use base64::Engine;
        let t = text.trim();
        let bytes = [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(t).ok())
            .ok_or(SessionSecretError::NotBase64)?;
        Self::from_bytes(&bytes)
    }

    /// The key for the `cookie` crate's private (AES-256-GCM) jar, derived
    /// from the secret with HKDF.
    pub(crate) fn derive_cookie_key(&self) -> cookie::Key {
        cookie::Key::derive_from(&self.0)
    }

    /// 32 bytes derived from the secret with HKDF-SHA256 for the purpose
    /// named by `info` (distinct purposes get independent keys).
    pub(crate) fn derive(&self, info: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit: cannot fail.
        let _ = hkdf::Hkdf::<sha2::Sha256>::new(None, &self.0).expand(info, &mut out);
        out
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret([redacted])")
    }
}

/// Constant-time equality of two byte strings (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_and_display_are_redacted() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(format!("{s}"), "[redacted]");
        assert!(!format!("{s:?}{s}").contains("hunter2"));
    }

    #[test]
    fn session_secret_needs_32_bytes_of_base64() {
        let ok = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";
        assert!(SessionSecret::from_base64(ok).is_ok());
        assert!(SessionSecret::from_base64(ok.trim_end_matches('=')).is_ok());
        assert_eq!(
            SessionSecret::from_base64("c2hvcnQ=").unwrap_err(),
            SessionSecretError::TooShort
        );
        assert_eq!(
            SessionSecret::from_base64("not base64!").unwrap_err(),
            SessionSecretError::NotBase64
        );
        let s = SessionSecret::from_base64(ok).unwrap();
        assert_eq!(format!("{s:?}"), "SessionSecret([redacted])");
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(Secret::new("x").ct_eq(b"x"));
    }
}
