//! The serialized form of a [`Session`], as the cookie and Redis stores
//! seal it: compact JSON with a version field. It holds provider tokens,
//! so it is only ever written sealed ([`super::seal`]).
//!
//! The identity headers are not stored: they are computed again from the
//! identity on decode. The refresh lock is per process and not stored.

use super::{RefreshState, Session, SessionKey};
use crate::identity::{Identity, IdentitySource, PrecomputedHeaders};
use crate::secret::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    /// The session's store key (cookie store: the session's identity for
    /// revocation and single-flight refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    i: Identity,
    c: u64,
    e: u64,
    /// Last time the session was written (cookie store idle limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<WireRefresh>,
    /// The access token of a session without refresh, kept only when a
    /// header sends it upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct WireRefresh {
    at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ax: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ra: Option<u64>,
    rt: String,
}

/// What [`decode`] gives back.
pub(crate) struct Decoded {
    pub(crate) key: Option<SessionKey>,
    pub(crate) touched_at: Option<u64>,
    pub(crate) session: Session,
}

/// What to write besides the session.
#[derive(Clone, Copy, Default)]
pub(crate) struct Extras<'a> {
    pub(crate) key: Option<&'a SessionKey>,
    pub(crate) touched_at: Option<u64>,
    /// Leave the ID token out (to fit a cookie).
    pub(crate) without_id_token: bool,
}

/// The serialized form of `session`.
pub(crate) fn encode(session: &Session, extras: Extras<'_>) -> Vec<u8> {
    let wire = Wire {
        v: VERSION,
        k: extras.key.map(|k| URL_SAFE_NO_PAD.encode(k)),
        i: (*session.identity).clone(),
        c: session.created_at,
        e: session.expires_at,
        t: extras.touched_at,
        sid: session.sid.clone(),
        idt: if extras.without_id_token {
            None
        } else {
            session.id_token.as_ref().map(|t| t.expose().to_string())
        },
        at: session
            .access_token
            .as_ref()
            .map(|t| t.expose().to_string()),
        r: session.refresh.as_ref().map(|r| WireRefresh {
            at: r.access_token.expose().to_string(),
            ax: r.access_expires_at,
            ra: r.refresh_at,
            rt: r.refresh_token.expose().to_string(),
        }),
    };
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// The session in `bytes`; `None` for anything that is not a session of
/// this version.
pub(crate) fn decode(bytes: &[u8]) -> Option<Decoded> {
    let wire: Wire = serde_json::from_slice(bytes).ok()?;
    if wire.v != VERSION || wire.i.source != IdentitySource::Session {
        return None;
    }
    let key = match wire.k {
        Some(k) => {
            let mut raw = [0u8; 32];
            match URL_SAFE_NO_PAD.decode_slice(k.as_bytes(), &mut raw) {
                Ok(32) => Some(raw),
                _ => return None,
            }
        }
        None => None,
    };
    let headers = PrecomputedHeaders::of(&wire.i);
    let mut session = Session::new(Arc::new(wire.i), headers, wire.c, wire.e);
    session.sid = wire.sid;
    session.id_token = wire.idt.map(Secret::new);
    session.access_token = wire.at.map(|t| Box::new(Secret::new(t)));
    session.refresh = wire.r.map(|r| {
        Box::new(RefreshState {
            access_token: Secret::new(r.at),
            access_expires_at: r.ax,
            refresh_at: r.ra,
            refresh_token: Secret::new(r.rt),
            lock: tokio::sync::Mutex::new(()),
        })
    });
    Some(Decoded {
        key,
        touched_at: wire.t,
        session,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(groups: usize) -> Session {
        let identity = Identity {
            email: Some("alice@example.com".into()),
            email_verified: Some(true),
            preferred_username: Some("alice".into()),
            groups: (0..groups).map(|i| format!("group-{i:04}")).collect(),
            name: Some("Alice".into()),
            expires_at: Some(2_000),
            ..Identity::new("alice", "https://idp.example.com", IdentitySource::Session)
        };
        let headers = PrecomputedHeaders::of(&identity);
        let mut s = Session::new(Arc::new(identity), headers, 1_000, 2_000);
        s.sid = Some("sid-1".into());
        s.id_token = Some(Secret::new("ID-TOKEN-eyJhbGciOi"));
        s.set_tokens(
            Secret::new("ACCESS-TOKEN-secret"),
            Some(Secret::new("REFRESH-TOKEN-secret")),
            Some(300),
            1_000,
            60,
        );
        s
    }

    #[test]
    fn codec_round_trip_keeps_every_field() {
        let s = sample(3);
        let key = [7u8; 32];
        let bytes = encode(
            &s,
            Extras {
                key: Some(&key),
                touched_at: Some(1_500),
                without_id_token: false,
            },
        );
        let d = decode(&bytes).unwrap();
        assert_eq!(d.key, Some(key));
        assert_eq!(d.touched_at, Some(1_500));
        let back = d.session;
        assert_eq!(back.identity, s.identity);
        assert_eq!((back.created_at, back.expires_at), (1_000, 2_000));
        assert_eq!(back.sid.as_deref(), Some("sid-1"));
        assert_eq!(back.id_token.unwrap().expose(), "ID-TOKEN-eyJhbGciOi");
        let r = back.refresh.unwrap();
        let orig = s.refresh.as_ref().unwrap();
        assert_eq!(r.access_token.expose(), "ACCESS-TOKEN-secret");
        assert_eq!(r.refresh_token.expose(), "REFRESH-TOKEN-secret");
        assert_eq!(
            (r.access_expires_at, r.refresh_at),
            (orig.access_expires_at, orig.refresh_at)
        );
        assert_eq!(back.headers.len(), s.headers.len());
    }

    #[test]
    fn codec_without_id_token_and_garbage() {
        let s = sample(0);
        let bytes = encode(
            &s,
            Extras {
                without_id_token: true,
                ..Extras::default()
            },
        );
        let d = decode(&bytes).unwrap();
        assert!(d.session.id_token.is_none());
        assert!(d.key.is_none());
        assert!(decode(b"").is_none());
        assert!(decode(b"{\"v\":2}").is_none());
        assert!(decode(&bytes[..bytes.len() / 2]).is_none());
    }
}
