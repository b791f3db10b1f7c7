//! Prometheus metrics: requests by route kind and status, auth outcomes,
//! upstream latency and live sessions.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::time::Duration;

/// Statuses with a cached counter per route kind: 100..=599.
const STATUSES: usize = 500;
/// [`RouteKind`] variants with cached counters (others use the family).
const ROUTE_KINDS: usize = 5;
/// [`AuthOutcome`] variants with cached counters (others use the family).
const AUTH_OUTCOMES: usize = 9;

/// What kind of route served a request.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RouteKind {
    /// A route with `auth = "none"`.
    Public,
    /// A route that requires authentication.
    Protected,
    /// The gateway's own `/oauth2/*` endpoints.
    Endpoint,
    /// The forward-auth endpoint.
    ForwardAuth,
    /// Refused before routing (bad path, bad request).
    Rejected,
}

/// Outcome of authenticating one request.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum AuthOutcome {
    /// A valid session cookie.
    Session,
    /// A bearer token served from the validation cache.
    BearerCached,
    /// A bearer token validated now.
    BearerValidated,
    /// A bearer token refused.
    BearerInvalid,
    /// Browser sent to the provider.
    LoginRedirect,
    /// Non-browser request without credentials.
    Unauthenticated,
    /// Authenticated but refused by route policy.
    Forbidden,
    /// Login completed, session created.
    LoginSucceeded,
    /// Callback refused (bad state, token, provider error).
    LoginFailed,
}

impl RouteKind {
    /// The metric label value (and access-log field): snake_case.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Public => "public",
            RouteKind::Protected => "protected",
            RouteKind::Endpoint => "endpoint",
            RouteKind::ForwardAuth => "forward_auth",
            RouteKind::Rejected => "rejected",
        }
    }
}

impl AuthOutcome {
    /// The metric label value (and access-log field): snake_case.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthOutcome::Session => "session",
            AuthOutcome::BearerCached => "bearer_cached",
            AuthOutcome::BearerValidated => "bearer_validated",
            AuthOutcome::BearerInvalid => "bearer_invalid",
            AuthOutcome::LoginRedirect => "login_redirect",
            AuthOutcome::Unauthenticated => "unauthenticated",
            AuthOutcome::Forbidden => "forbidden",
            AuthOutcome::LoginSucceeded => "login_succeeded",
            AuthOutcome::LoginFailed => "login_failed",
        }
    }
}

impl EncodeLabelValue for RouteKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl EncodeLabelValue for AuthOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: RouteKind,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    outcome: AuthOutcome,
}

/// The gateway's metrics registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    auth: Family<AuthLabels, Counter>,
    upstream_latency: Histogram,
    sessions: Gauge,
    /// The family's counters, looked up once per label set: a family lookup
    /// takes a lock and hashes the labels, on every request. Filled lazily,
    /// so that series appear in the output only once used, as before.
    request_cells: Box<[OnceLock<Counter>]>,
    auth_cells: Box<[OnceLock<Counter>]>,
    reloads: Reloads,
    log_lines_dropped: Counter,
}

/// The `result` label of the reload counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

/// Configuration (SIGHUP) and certificate reloads, by result.
#[derive(Default)]
struct Reloads {
    config: Family<ReloadLabels, Counter>,
    tls: Family<ReloadLabels, Counter>,
}

fn reload_labels(ok: bool) -> ReloadLabels {
    ReloadLabels {
        result: if ok { "ok" } else { "error" },
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("oidc_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        let auth = Family::<AuthLabels, Counter>::default();
        let upstream_latency = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        let sessions = Gauge::default();
        registry.register(
            "requests",
            "Requests served, by route kind and status",
            requests.clone(),
        );
        registry.register("auth_outcomes", "Authentication outcomes", auth.clone());
        registry.register(
            "upstream_duration_seconds",
            "Time to the upstream's response headers",
            upstream_latency.clone(),
        );
        registry.register("sessions", "Live server-side sessions", sessions.clone());
        let reloads = Reloads::default();
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP), by result (ok, error: refused, the running configuration kept)",
            reloads.config.clone(),
        );
        registry.register(
            "tls_reloads",
            "TLS certificate reloads, by result (ok, error: refused, the running certificate kept)",
            reloads.tls.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stderr did not keep up",
            log_lines_dropped.clone(),
        );
        Metrics {
            log_lines_dropped,
            registry,
            requests,
            auth,
            upstream_latency,
            sessions,
            request_cells: (0..ROUTE_KINDS * STATUSES)
                .map(|_| OnceLock::new())
                .collect(),
            auth_cells: (0..AUTH_OUTCOMES).map(|_| OnceLock::new()).collect(),
            reloads,
        }
    }

    /// Counts one served request.
    pub fn record_request(&self, route: RouteKind, status: u16) {
        let labels = RequestLabels { route, status };
        let cell = usize::from(status)
            .checked_sub(100)
            .filter(|s| *s < STATUSES)
            .and_then(|s| self.request_cells.get(route as usize * STATUSES + s));
        match cell {
            Some(cell) => cell
                .get_or_init(|| self.requests.get_or_create(&labels).clone())
                .inc(),
            None => self.requests.get_or_create(&labels).inc(),
        };
    }

    /// Counts one authentication outcome.
    pub fn record_auth(&self, outcome: AuthOutcome) {
        let labels = AuthLabels { outcome };
        match self.auth_cells.get(outcome as usize) {
            Some(cell) => cell
                .get_or_init(|| self.auth.get_or_create(&labels).clone())
                .inc(),
            None => self.auth.get_or_create(&labels).inc(),
        };
    }

    /// Observes one upstream round trip (to response headers).
    pub fn observe_upstream(&self, elapsed: Duration) {
        self.upstream_latency.observe(elapsed.as_secs_f64());
    }

    /// Sets the number of live sessions.
    pub fn set_sessions(&self, count: u64) {
        self.sessions.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts one configuration reload, applied (`ok`) or refused.
    pub fn record_config_reload(&self, ok: bool) {
        self.reloads.config.get_or_create(&reload_labels(ok)).inc();
    }

    /// Counts one TLS certificate reload, applied (`ok`) or refused.
    pub fn record_tls_reload(&self, ok: bool) {
        self.reloads.tls.get_or_create(&reload_labels(ok)).inc();
    }

    /// Counts log lines the log writer dropped.
    pub fn record_log_lines_dropped(&self, lines: u64) {
        self.log_lines_dropped.inc_by(lines);
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_counts_by_label() {
        let m = Metrics::new();
        m.record_request(RouteKind::Protected, 200);
        m.record_request(RouteKind::Protected, 200);
        m.record_auth(AuthOutcome::BearerInvalid);
        m.observe_upstream(Duration::from_millis(3));
        m.set_sessions(7);
        let text = m.encode();
        assert!(
            text.contains(r#"oidc_gateway_requests_total{route="protected",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"oidc_gateway_auth_outcomes_total{outcome="bearer_invalid"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("oidc_gateway_upstream_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("oidc_gateway_sessions 7"), "{text}");
        // Unused label sets are not in the output.
        assert!(!text.contains("public"), "{text}");
        m.record_request(RouteKind::Public, 999);
        m.record_request(RouteKind::Public, 599);
        let text = m.encode();
        assert!(
            text.contains(r#"oidc_gateway_requests_total{route="public",status="999"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"oidc_gateway_requests_total{route="public",status="599"} 1"#),
            "{text}"
        );
    }
}
