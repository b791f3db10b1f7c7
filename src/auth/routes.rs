//! PLACEHOLDER until the routing branch lands.
use super::identity::Identity;
use crate::config::{RouteAuth, RouteConfig};
use std::borrow::Cow;

/// PLACEHOLDER
#[derive(Debug)]
pub struct PathError;
impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ambiguous path")
    }
}
/// PLACEHOLDER
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if raw.contains("%2f") || raw.contains("%2F") || raw.contains('\\') {
        return Err(PathError);
    }
    Ok(Cow::Borrowed(raw))
}
/// PLACEHOLDER
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<RouteConfig>,
}
/// PLACEHOLDER
#[derive(Debug, Clone, Copy)]
pub struct RoutePolicy<'a> {
    /// auth
    pub auth: RouteAuth,
    /// groups
    pub allowed_groups: &'a [String],
    /// domains
    pub allowed_email_domains: &'a [String],
    /// index
    pub index: Option<usize>,
}
impl RouteTable {
    /// PLACEHOLDER
    pub fn new(routes: &[RouteConfig]) -> Self {
        RouteTable { routes: routes.to_vec() }
    }
    /// PLACEHOLDER
    pub fn match_path(&self, p: &str) -> RoutePolicy<'_> {
        for (i, r) in self.routes.iter().enumerate() {
            if p.starts_with(&r.path) {
                return RoutePolicy {
                    auth: r.auth,
                    allowed_groups: &r.allowed_groups,
                    allowed_email_domains: &r.allowed_email_domains,
                    index: Some(i),
                };
            }
        }
        RoutePolicy { auth: RouteAuth::Required, allowed_groups: &[], allowed_email_domains: &[], index: None }
    }
}
impl RoutePolicy<'_> {
    /// PLACEHOLDER
    pub fn allows(&self, identity: &Identity) -> bool {
        (self.allowed_groups.is_empty() || identity.groups.iter().any(|g| self.allowed_groups.contains(g)))
            && (self.allowed_email_domains.is_empty()
                || identity.email.as_deref().and_then(|e| e.rsplit_once('@')).is_some_and(|(_, d)| self.allowed_email_domains.iter().any(|a| a.eq_ignore_ascii_case(d))))
    }
}
