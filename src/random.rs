//! Random values from the operating system's CSPRNG: session ids, `state`,
//! `nonce`, PKCE verifiers, `jti`s.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Fills `buf` from the operating system's CSPRNG.
pub fn fill_random(buf: &mut [u8]) {
    use rand::TryRngCore;
    if rand::rngs::OsRng.try_fill_bytes(buf).is_err() {
        // The OS RNG failing is unrecoverable: never hand out weak ids.
        std::process::abort();
    }
}

/// A random URL-safe token of 32 bytes (43 characters).
pub fn random_token() -> String {
    random_token_of(32)
}

/// A random URL-safe token with `bytes` bytes of entropy.
pub(crate) fn random_token_of(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    fill_random(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_43_url_safe_chars_and_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }
}
