//! `[log]`: what the gateway writes to stderr.

use super::problems::{At, Section};
use serde::Deserialize;

/// `[log]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Line format. Default [`LogFormat::Text`]; when the key is not set,
    /// the environment variable `OIDC_GATEWAY_LOG_FORMAT=json` still picks
    /// JSON (as before the key existed).
    #[serde(default)]
    pub format: Option<LogFormat>,
    /// A `tracing` filter: a level (`info`) or directives
    /// (`info,oidc_gateway::provider=debug`). Default `info`. The
    /// environment variable `RUST_LOG`, when set, takes its place.
    #[serde(default)]
    pub level: Option<String>,
    /// One line per request on the main listener (target
    /// `oidc_gateway::access`), whatever `level` says. Default `true`.
    #[serde(default = "yes")]
    pub access_log: bool,
}

/// `log.format`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-12-02T19:34:22.174447Z  INFO target: message key=value …`
    Text,
    /// One JSON object per line.
    Json,
}

fn yes() -> bool {
    true
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: None,
            level: None,
            access_log: true,
        }
    }
}

impl Section for LogConfig {
    fn validate(&self, at: &mut At<'_>) {
        if let Some(level) = &self.level {
            if let Err(err) = tracing_subscriber::EnvFilter::builder().parse(level) {
                at.add("level", format!("not a log filter ({err}): e.g. `info` or `info,oidc_gateway::provider=debug`"));
            }
        }
    }
}

impl LogConfig {
    /// The filter directives in effect: `RUST_LOG` (`env_filter`) when set,
    /// else `level`, else `info`; then the access log switched on at info
    /// (unless the filter names its target itself) or off (replacing what
    /// the filter says of its target).
    pub fn filter_directives(&self, env_filter: Option<&str>) -> String {
        let base = env_filter
            .filter(|f| !f.trim().is_empty())
            .or(self.level.as_deref())
            .unwrap_or("info");
        let target = crate::telemetry::ACCESS_LOG_TARGET;
        if !self.access_log {
            let mut kept: Vec<&str> = base
                .split(',')
                .filter(|d| !d.trim_start().starts_with(target))
                .collect();
            let off = format!("{target}=off");
            kept.push(&off);
            kept.join(",")
        } else if base.contains(target) {
            base.to_string()
        } else {
            format!("{base},{target}=info")
        }
    }

    /// The format in effect: `format`, else `OIDC_GATEWAY_LOG_FORMAT`
    /// (`env_format`) when it says `json`, else text.
    pub fn effective_format(&self, env_format: Option<&str>) -> LogFormat {
        match (self.format, env_format) {
            (Some(format), _) => format,
            (None, Some("json")) => LogFormat::Json,
            (None, _) => LogFormat::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(level: Option<&str>, access_log: bool) -> LogConfig {
        LogConfig {
            format: None,
            level: level.map(str::to_string),
            access_log,
        }
    }

    #[test]
    fn rust_log_wins_over_level_and_the_access_log_follows_its_switch() {
        let c = config(Some("warn"), true);
        assert_eq!(c.filter_directives(None), "warn,oidc_gateway::access=info");
        assert_eq!(
            c.filter_directives(Some("debug")),
            "debug,oidc_gateway::access=info"
        );
        assert_eq!(
            c.filter_directives(Some(" ")),
            "warn,oidc_gateway::access=info"
        );
        let off = config(None, false);
        assert_eq!(off.filter_directives(None), "info,oidc_gateway::access=off");
        assert_eq!(
            off.filter_directives(Some("info,oidc_gateway::access=info")),
            "info,oidc_gateway::access=off"
        );
    }

    #[test]
    fn a_filter_naming_the_access_target_is_kept_as_it_is() {
        let c = config(None, true);
        assert_eq!(
            c.filter_directives(Some("info,oidc_gateway::access=off")),
            "info,oidc_gateway::access=off"
        );
    }

    #[test]
    fn format_key_wins_over_the_environment() {
        let mut c = config(None, true);
        assert_eq!(c.effective_format(None), LogFormat::Text);
        assert_eq!(c.effective_format(Some("json")), LogFormat::Json);
        assert_eq!(c.effective_format(Some("yaml")), LogFormat::Text);
        c.format = Some(LogFormat::Text);
        assert_eq!(c.effective_format(Some("json")), LogFormat::Text);
    }
}
