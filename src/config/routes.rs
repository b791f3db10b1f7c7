//! `[[route]]`: path rules, first match wins.

use super::duration_opt;
use super::problems::{self, At, Problems, Section};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

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
#[derive(Clone, Debug, Default, Deserialize)]
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
    /// The route matches only requests with one of these methods (e.g.
    /// `["OPTIONS"]` for CORS preflight without login). Default: all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Authenticated users' email must be one of these (ignoring ASCII
    /// case), else 403.
    #[serde(default)]
    pub allowed_emails: Vec<String>,
    /// Every claim named must equal one of its values (or, for a list
    /// claim, contain one), else 403.
    #[serde(default)]
    pub allowed_claims: BTreeMap<String, Vec<String>>,
    /// Where this route's requests go. Default: `[upstream] url`.
    pub upstream: Option<Url>,
    /// Forward `/app2/x` as `/x` (the route's path removed). Default `false`.
    #[serde(default)]
    pub strip_prefix: bool,
    /// This route's upstream: response-header timeout. Default `[upstream] timeout`.
    #[serde(default, deserialize_with = "duration_opt")]
    pub upstream_timeout: Option<Duration>,
    /// This route's upstream: connect timeout. Default `[upstream] connect_timeout`.
    #[serde(default, deserialize_with = "duration_opt")]
    pub upstream_connect_timeout: Option<Duration>,
    /// This route's upstream: send the client's `Host`. Default `[upstream] pass_host_header`.
    pub pass_host_header: Option<bool>,
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
        if self.auth == RouteAuth::None
            && (!self.allowed_emails.is_empty() || !self.allowed_claims.is_empty())
        {
            at.add(
                "auth",
                "allowed_emails / allowed_claims need auth = \"required\"",
            );
        }
        for m in &self.methods {
            if m.is_empty() || http::Method::from_bytes(m.as_bytes()).is_err() {
                at.add("methods", format!("`{m}` is not an HTTP method"));
            }
        }
        for e in &self.allowed_emails {
            if e.trim()
                .split_once('@')
                .is_none_or(|(l, d)| l.is_empty() || d.is_empty())
            {
                at.add("allowed_emails", format!("`{e}` is not an email address"));
            }
        }
        for (name, values) in &self.allowed_claims {
            if values.is_empty() {
                at.add(
                    &format!("allowed_claims.{name}"),
                    "must list at least one value",
                );
            }
        }
        if let Some(url) = &self.upstream {
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                at.add("upstream", "must be an absolute http(s) URL");
            } else if url.query().is_some() || url.fragment().is_some() {
                at.add("upstream", "must not have a query or fragment");
            }
        } else {
            for (key, set) in [
                ("upstream_timeout", self.upstream_timeout.is_some()),
                (
                    "upstream_connect_timeout",
                    self.upstream_connect_timeout.is_some(),
                ),
                ("pass_host_header", self.pass_host_header.is_some()),
            ] {
                if set {
                    at.add(key, "only with this route's own upstream");
                }
            }
        }
    }
}

/// Routes no request reaches (an earlier route's prefix covers them).
fn report_shadowed(routes: &[RouteConfig], problems: &mut Problems) {
    let table = crate::auth::policy::RouteTable::new(routes);
    for (i, by) in table.shadowed() {
        let earlier = routes.get(by).map_or("", |r| r.path.as_str());
        problems.add(
            format!("route[{i}].path"),
            format!(
                "unreachable: every request it matches is matched first by route[{by}] (`{earlier}`)"
            ),
        );
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
    report_shadowed(&routes, problems);
    complete.then_some(routes)
}
