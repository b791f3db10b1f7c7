//! `[tracing]`: OpenTelemetry trace export over OTLP/HTTP. Only the
//! binary's [`GatewayConfig`] has it.
//!
//! The section is parsed in every build; a build without the cargo feature
//! `otel` refuses an `otlp_endpoint` (never ignores it silently).
//!
//! [`GatewayConfig`]: super::GatewayConfig

use super::duration;
use super::problems::{At, Section};
use serde::Deserialize;
use std::time::Duration;
use url::Url;

/// The path an OTLP/HTTP collector receives traces at.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";

/// What `check` says of an `otlp_endpoint` in a build without the `otel`
/// feature.
pub const NO_OTEL: &str =
    "this build has no OpenTelemetry export: rebuild with --features otel (or remove the key)";

/// `[tracing]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Base URL of an OTLP/HTTP (protobuf) collector, e.g.
    /// `http://127.0.0.1:4318`: spans are posted to
    /// `<otlp_endpoint>/v1/traces` (a URL that already ends in `/v1/traces`
    /// is used as it is). Unset (default): no export, `traceparent` passes
    /// through unchanged.
    pub otlp_endpoint: Option<Url>,
    /// The resource's `service.name`. Default `oidc-gateway`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of new traces that are sampled, 0.0 to 1.0. Parent-based: an
    /// incoming `traceparent`'s sampled flag is always followed. Default `1.0`.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Time allowed for one export request (connect, send, response). Default `10s`.
    #[serde(default = "default_otlp_timeout", deserialize_with = "duration")]
    pub otlp_timeout: Duration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            service_name: default_service_name(),
            sample_ratio: default_sample_ratio(),
            otlp_timeout: default_otlp_timeout(),
        }
    }
}

impl TracingConfig {
    /// Whether spans are exported (an `otlp_endpoint` is set).
    pub fn is_enabled(&self) -> bool {
        self.otlp_endpoint.is_some()
    }

    /// The URL spans are posted to: `otlp_endpoint` + `/v1/traces`.
    pub fn traces_url(&self) -> Option<String> {
        let base = self.otlp_endpoint.as_ref()?.as_str().trim_end_matches('/');
        Some(if base.ends_with(OTLP_TRACES_PATH) {
            base.to_owned()
        } else {
            format!("{base}{OTLP_TRACES_PATH}")
        })
    }
}

impl Section for TracingConfig {
    fn validate(&self, at: &mut At<'_>) {
        if let Some(url) = &self.otlp_endpoint {
            if !cfg!(feature = "otel") {
                at.add("otlp_endpoint", NO_OTEL);
            }
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                at.add("otlp_endpoint", "must be an absolute http(s) URL");
            }
            if url.query().is_some() || url.fragment().is_some() {
                at.add("otlp_endpoint", "must not have a query or fragment");
            }
            if !url.username().is_empty() || url.password().is_some() {
                at.add(
                    "otlp_endpoint",
                    "must not carry credentials (use OTEL_EXPORTER_OTLP_HEADERS)",
                );
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            at.add("sample_ratio", "must be between 0.0 and 1.0");
        }
        if self.service_name.trim().is_empty() {
            at.add("service_name", "must not be empty");
        }
        if self.otlp_timeout.is_zero() {
            at.add("otlp_timeout", "must be more than 0s");
        }
    }
}

fn default_service_name() -> String {
    "oidc-gateway".into()
}
fn default_sample_ratio() -> f64 {
    1.0
}
fn default_otlp_timeout() -> Duration {
    Duration::from_secs(10)
}
