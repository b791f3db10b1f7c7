//! Where to send the browser after login or sign-out.
//!
//! The target comes from the `rd` query parameter (or the login state), which
//! an attacker controls: a careless check makes the gateway an open redirect
//! (oauth2-proxy CVE-2020-4037, CVE-2020-5233, CVE-2021-21291). Only local
//! absolute paths survive [`safe_return_to`]; anything else becomes `/`.

use crate::auth::policy::normalize_path;
use http::Uri;
use std::borrow::Cow;

/// Longest return target accepted, in bytes (2 KiB).
pub(crate) const MAX_RETURN_TO_LEN: usize = 2048;

/// The redirect target for `rd` (already decoded once from the query, as
/// query parameters are), or `/` when it is missing or not safe.
///
/// Accepted: a local absolute path, with an optional query. The fragment is
/// dropped. Refused (→ `/`):
///
/// - anything not starting with `/`: scheme-relative and absolute URLs
///   (`https:evil.com`, `javascript:…`, `data:…`), leading whitespace, `\\host`;
/// - `//host` and `/\host` (the second character is `/` or `\`), and any
///   backslash at all;
/// - any control character, raw or percent-encoded (`%0d%0a`, `%09`, `%00`):
///   browsers strip raw tabs and newlines, so `/\t/evil.com` is `//evil.com`;
/// - in the path part, an encoded slash or backslash (`/%2F%2Fevil.com`,
///   `/%5c/evil.com`), and double-encoded dangerous bytes (`%25` followed by
///   the escape of `/`, `\`, `%` or a control character, such as `%252F`),
///   against a later decode turning them into `//`;
/// - a `%` not followed by two hex digits;
/// - more than [`MAX_RETURN_TO_LEN`] bytes.
///
/// Raw spaces, quotes, `<`, `>`, `` ` `` and non-ASCII characters of an
/// accepted target are percent-encoded (the only case that allocates), so the
/// result is always a valid `Location` value.
#[must_use]
pub(crate) fn safe_return_to(rd: Option<&str>) -> Cow<'_, str> {
    const ROOT: Cow<'static, str> = Cow::Borrowed("/");
    let Some(rd) = rd else {
        return ROOT;
    };
    if rd.len() > MAX_RETURN_TO_LEN {
        return ROOT;
    }
    let target = match rd.find('#') {
        Some(i) => rd.get(..i).unwrap_or("/"),
        None => rd,
    };
    if !is_local_path(target.as_bytes()) {
        return ROOT;
    }
    if target.bytes().any(must_escape) {
        let mut out = String::with_capacity(target.len() + 16);
        for b in target.bytes() {
            if must_escape(b) {
                out.push('%');
                out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
                out.push(char::from(HEX_UPPER[usize::from(b & 0x0F)]));
            } else {
                out.push(char::from(b));
            }
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(target)
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn must_escape(b: u8) -> bool {
    b >= 0x80 || matches!(b, b' ' | b'"' | b'\'' | b'<' | b'>' | b'`')
}

fn is_local_path(s: &[u8]) -> bool {
    if s.first() != Some(&b'/') || matches!(s.get(1), Some(b'/' | b'\\')) {
        return false;
    }
    let path_end = s.iter().position(|&b| b == b'?').unwrap_or(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            0x00..=0x1F | 0x7F | b'\\' => return false,
            b'%' => {
                let Some(v) = hex_pair(s, i + 1) else {
                    return false;
                };
                if is_control(v) {
                    return false;
                }
                if i < path_end {
                    if dangerous_in_path(v) && v != b'%' {
                        return false;
                    }
                    // `%25XX`: what a second decode would see.
                    if v == b'%' && hex_pair(s, i + 3).is_some_and(dangerous_in_path) {
                        return false;
                    }
                }
                i += 3;
            }
            _ => i += 1,
        }
    }
    true
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7F
}

fn dangerous_in_path(b: u8) -> bool {
    is_control(b) || matches!(b, b'/' | b'\\' | b'%')
}

/// The byte that the two hex digits at `s[i..i + 2]` stand for.
fn hex_pair(s: &[u8], i: usize) -> Option<u8> {
    let hi = char::from(*s.get(i)?).to_digit(16)?;
    let lo = char::from(*s.get(i + 1)?).to_digit(16)?;
    u8::try_from((hi << 4) | lo).ok()
}

/// The return target for a protected request that is sent to log in: its
/// normalized path (see [`normalize_path`]) and its query, already passed
/// through [`safe_return_to`]. A path that cannot be normalized gives `/`.
#[must_use]
pub(crate) fn original_url(uri: &Uri) -> String {
    let Ok(path) = normalize_path(uri.path()) else {
        return "/".to_owned();
    };
    let query = uri.query();
    let mut url = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    url.push_str(&path);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    let changed = match safe_return_to(Some(&url)) {
        Cow::Borrowed(b) if b.len() == url.len() => None,
        other => Some(other.into_owned()),
    };
    changed.unwrap_or(url)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
