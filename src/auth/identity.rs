//! PLACEHOLDER until the routing branch lands.
use serde::{Deserialize, Serialize};

/// Where an identity came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentitySource {
    /// Browser session.
    Session,
    /// Bearer token.
    Bearer,
}

/// The authenticated user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    /// sub
    pub subject: String,
    /// email
    pub email: Option<String>,
    /// email_verified
    pub email_verified: Option<bool>,
    /// preferred_username
    pub preferred_username: Option<String>,
    /// groups
    pub groups: Vec<String>,
    /// name
    pub name: Option<String>,
    /// iss
    pub issuer: String,
    /// exp
    pub expires_at: Option<u64>,
    /// source
    pub source: IdentitySource,
}

/// PLACEHOLDER
#[derive(Clone, Debug, Default)]
pub struct PrecomputedHeaders(pub Vec<(http::HeaderName, http::HeaderValue)>);

/// PLACEHOLDER
#[derive(Clone, Debug)]
pub struct IdentityHeaders {
    names: Vec<http::HeaderName>,
}

impl IdentityHeaders {
    /// PLACEHOLDER
    pub fn new(cfg: &crate::config::HeaderNamesConfig) -> Result<Self, http::header::InvalidHeaderName> {
        Ok(IdentityHeaders {
            names: [&cfg.user, &cfg.email, &cfg.preferred_username, &cfg.groups]
                .iter()
                .map(|n| http::HeaderName::from_bytes(n.as_bytes()))
                .collect::<Result<_, _>>()?,
        })
    }
    /// PLACEHOLDER
    pub fn strip(&self, headers: &mut http::HeaderMap) {
        for n in &self.names {
            headers.remove(n);
        }
    }
    /// PLACEHOLDER
    pub fn precompute(&self, identity: &Identity) -> PrecomputedHeaders {
        let mut v = Vec::new();
        if let Ok(val) = http::HeaderValue::from_str(&identity.subject) {
            v.push((self.names[0].clone(), val));
        }
        PrecomputedHeaders(v)
    }
}

impl PrecomputedHeaders {
    /// PLACEHOLDER
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for (k, v) in &self.0 {
            headers.insert(k.clone(), v.clone());
        }
    }
}
