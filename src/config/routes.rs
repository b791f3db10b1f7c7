//! `[[route]]`: path rules, first match wins.

use super::problems::{self, At, Problems, Section};
use serde::Deserialize;

/// Authentication a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RouteAuth {
    /// No authentication; identity headers are still stripped.
    None,
    /// A session or bearer token.
    #[default]
    Required,
}

/// `[[route]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix, matched after normalization.
    pub path: String,
    /// Default `required`.
    #[serde(default)]
    pub auth: RouteAuth,
    /// Authenticated users must be in one of these groups, else 403.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Authenticated users' email must be in one of these domains, else 403.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
}

impl Section for RouteConfig {
    fn validate(&self, at: &mut At<'_>) {
        if !self.path.starts_with('/') {
            at.add("path", "must start with `/`");
        }
        if self.auth == RouteAuth::None
            && (!self.allowed_groups.is_empty() || !self.allowed_email_domains.is_empty())
        {
            at.add(
                "auth",
                "allowed_groups / allowed_email_domains need auth = \"required\"",
            );
        }
    }
}

/// The `[[route]]` array (`None`: no routes), each table deserialized and
/// validated as `route[i]`. `None` when any route could not be built.
pub(super) fn parse(
    value: Option<toml::Value>,
    problems: &mut Problems,
) -> Option<Vec<RouteConfig>> {
    let items = match value {
        None => return Some(Vec::new()),
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            problems.add("route", "must be an array of tables ([[route]])");
            return None;
        }
    };
    let mut routes = Vec::with_capacity(items.len());
    let mut complete = true;
    for (i, item) in items.into_iter().enumerate() {
        match problems::section::<RouteConfig>(&format!("route[{i}]"), item, problems) {
            Some(route) => routes.push(route),
            None => complete = false,
        }
    }
    complete.then_some(routes)
}
