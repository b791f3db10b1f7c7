//! The assembled gateway: main listener (TLS or plain) running
//! hop-by-hop sanitizing → [`OidcLayer`] → [`Upstreams`] (a
//! [`ReverseProxy`] per `[[route]]` with an `upstream` of its own, with its
//! own pool and timeouts, and the `[upstream]` one for the rest), and the admin
//! listener with health, readiness and metrics. On shutdown the proxy's
//! WebSocket tunnels are drained alongside the listeners, within the same
//! `server.shutdown_timeout`.
//!
//! Two-phase start: the configuration is validated first (nothing bound);
//! [`RunningGateway::start`] then binds both listeners and serves until
//! [`RunningGateway::shutdown`].
//!
//! Reload: [`RunningGateway::reload`] builds a whole new service (layer,
//! routes, policies, provider, header names, upstreams) from a new
//! configuration on the same session store and metrics, waits until its
//! provider is loaded, and swaps it in: each request takes the service that
//! is current when it arrives, so requests in flight finish on the old one
//! and open connections stay open. The TLS certificate is behind a
//! [`ReloadingCert`] that the reload replaces and a watcher re-reads every
//! [`CERT_POLL_PERIOD`]. Settings bound at start ([`RESTART_ONLY`]) keep
//! their running values.
//!
//! Trace export (cargo feature `otel`, `[tracing]`): the export pipeline
//! starts with the gateway and is flushed by [`RunningGateway::shutdown`]
//! (within [`TRACE_FLUSH_TIMEOUT`]); each request gets a server span
//! ([`crate::otel`]). `[tracing]` is restart-only.

use crate::admin::AdminService;
use crate::auth::{MatchedRoute, Oidc, OidcLayer};
use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::proxy::headers::sanitize_request;
use crate::proxy::{ProxyOptions, ReverseProxy};
use crate::server::reloading_cert::{CertPoll, ReloadingCert};
use crate::server::{self, ServeOptions};
use crate::telemetry;
use arc_swap::ArcSwap;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// TLS certificate or key could not be loaded.
    #[error("tls: {0}")]
    Tls(#[source] crate::server::tls::TlsError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The authentication layer could not be built.
    #[error("auth: {0}")]
    Auth(#[source] crate::auth::LayerError),
    /// The upstream URL is unusable.
    #[error("upstream: {0}")]
    Upstream(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Trace export could not be set up.
    #[cfg(feature = "otel")]
    #[error("tracing: {0}")]
    Tracing(#[source] crate::otel::OtelError),
}

/// The longest [`RunningGateway::shutdown`] waits for queued spans to be
/// exported (after the drain).
pub const TRACE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the TLS certificate files are re-read for a change.
pub const CERT_POLL_PERIOD: Duration = Duration::from_secs(2);

/// The settings a reload cannot apply (they are bound at start: listeners,
/// the serving loop's limits, and the session store with its keys); a
/// reload that changes them says so in a log line and keeps the running
/// values.
pub const RESTART_ONLY: &[&str] = &[
    "server.listen",
    "admin.listen",
    "server.tls_cert/tls_key (turning TLS on or off; new paths do apply)",
    "server.shutdown_timeout",
    "server.header_read_timeout",
    "server.keepalive_timeout",
    "server.headers_with_underscores",
    "session.store",
    "session.secret",
    "session.previous_secrets",
    "session.lifetime",
    "session.max_sessions",
    "session.redis_url",
    "session.redis_key_prefix",
    "session.redis_cache_ttl",
    "log (format, level, access_log)",
    "tracing (every key)",
];

/// Why a reload was refused (the running configuration keeps serving).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The new certificate or key cannot be used.
    #[error("tls: {0}")]
    Tls(#[source] crate::server::tls::TlsError),
    /// The new authentication layer could not be built.
    #[error("auth: {0}")]
    Auth(#[source] crate::auth::LayerError),
    /// A new upstream URL is unusable.
    #[error("upstream: {0}")]
    Upstream(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The provider's metadata and keys could not be loaded with the new
    /// configuration within the bound.
    #[error(
        "the provider's metadata and keys did not load within {0:?} with the new configuration"
    )]
    ProviderNotReady(Duration),
}

/// What a reload applied.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Restart-only settings that changed and were not applied.
    pub not_applied: Vec<&'static str>,
}

/// The main listener's service: strips hop-by-hop headers (including those
/// named in `Connection`) before the auth layer adds identity headers, sets
/// the request id and checks the trace context ([`telemetry`]), then
/// authenticates and proxies, and writes the access-log line.
#[derive(Clone, Debug)]
pub struct GatewayService {
    inner: Oidc<Upstreams>,
    /// Starts the request's span when trace export is on.
    #[cfg(feature = "otel")]
    tracer: Option<crate::otel::RequestTracer>,
}

/// The response future of the auth layer, ending the request's span first
/// when the build has trace export.
#[cfg(feature = "otel")]
type Traced<F> = crate::otel::SpanFuture<F>;
#[cfg(not(feature = "otel"))]
type Traced<F> = F;

/// The proxies behind the layer: the route's own (chosen by the
/// [`MatchedRoute`] the layer sets for routes with an `upstream`), else
/// the `[upstream]` one.
#[derive(Clone, Debug)]
pub struct Upstreams {
    default: ReverseProxy,
    /// By route index; `None` for routes without their own upstream.
    routes: Arc<[Option<ReverseProxy>]>,
}

impl Upstreams {
    /// Builds the `[upstream]` proxy and one per route with an `upstream`.
    fn from_config(config: &GatewayConfig, metrics: &Arc<Metrics>) -> Result<Self, StartError> {
        let build = |upstream: &crate::config::UpstreamConfig| {
            let opts = ProxyOptions::from_config(upstream, &config.server.public_url)
                .map_err(|e| StartError::Upstream(Box::new(e)))?;
            ReverseProxy::try_new(opts, Some(metrics.clone()))
                .map_err(|e| StartError::Upstream(Box::new(e)))
        };
        let default = build(&config.upstream)?;
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            routes.push(match &route.upstream {
                None => None,
                Some(url) => {
                    let d = &config.upstream;
                    Some(build(&crate::config::UpstreamConfig {
                        url: url.clone(),
                        timeout: route.upstream_timeout.unwrap_or(d.timeout),
                        connect_timeout: route
                            .upstream_connect_timeout
                            .unwrap_or(d.connect_timeout),
                        pass_host_header: route.pass_host_header.unwrap_or(d.pass_host_header),
                        tunnel_idle_timeout: d.tunnel_idle_timeout,
                    })?)
                }
            });
        }
        Ok(Upstreams {
            default,
            routes: routes.into(),
        })
    }

    /// The WebSocket tunnels of every proxy.
    fn tunnels(&self) -> Vec<crate::proxy::Tunnels> {
        std::iter::once(&self.default)
            .chain(self.routes.iter().flatten())
            .map(ReverseProxy::tunnels)
            .collect()
    }
}

impl<B> tower_service::Service<http::Request<B>> for Upstreams
where
    ReverseProxy: tower_service::Service<http::Request<B>>,
{
    type Response = <ReverseProxy as tower_service::Service<http::Request<B>>>::Response;
    type Error = <ReverseProxy as tower_service::Service<http::Request<B>>>::Error;
    type Future = <ReverseProxy as tower_service::Service<http::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<http::Request<B>>::poll_ready(&mut self.default, cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let own = req
            .extensions()
            .get::<MatchedRoute>()
            .and_then(|m| self.routes.get(m.0))
            .and_then(Option::as_ref);
        match own {
            Some(proxy) => proxy.clone().call(req),
            None => self.default.call(req),
        }
    }
}

impl tower_service::Service<http::Request<Incoming>> for GatewayService {
    type Response = http::Response<crate::body::ResponseBody>;
    type Error = Infallible;
    type Future = crate::telemetry::AccessLogFuture<
        Traced<
            crate::auth::ResponseFuture<
                <Upstreams as tower_service::Service<http::Request<Incoming>>>::Future,
                Infallible,
            >,
        >,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower_service::Service::<http::Request<Incoming>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut req: http::Request<Incoming>) -> Self::Future {
        sanitize_request(&mut req);
        let request_id = telemetry::ensure_request_id(req.headers_mut());
        let parent = telemetry::sanitize_trace_context(req.headers_mut());
        #[cfg(feature = "otel")]
        let span = self.tracer.as_ref().map(|t| t.start(&mut req, parent));
        // The trace id going upstream: the span's when there is one (it
        // continues the parent's trace or starts one), else the parent's.
        #[cfg(feature = "otel")]
        let trace_id = span
            .as_ref()
            .map(crate::otel::RequestSpan::span_context)
            .filter(|sc| sc.is_valid())
            .map(|sc| sc.trace_id().to_bytes())
            .or(parent.map(|p| p.trace_id));
        #[cfg(not(feature = "otel"))]
        let trace_id = parent.map(|p| p.trace_id);
        let start = telemetry::RequestStart::new(req.method(), req.uri(), request_id, trace_id);
        let fut = self.inner.call(req);
        #[cfg(feature = "otel")]
        let fut = crate::otel::SpanFuture::new(fut, span);
        telemetry::AccessLogFuture::new(fut, start)
    }
}

/// The service of the running configuration and its layer.
#[derive(Debug)]
struct Active {
    layer: OidcLayer,
    service: GatewayService,
}

/// The main listener's service across reloads: each request is handed to
/// the service current when it arrives.
#[derive(Clone, Debug)]
struct CurrentService {
    active: Arc<ArcSwap<Active>>,
}

impl tower_service::Service<http::Request<Incoming>> for CurrentService {
    type Response = http::Response<crate::body::ResponseBody>;
    type Error = Infallible;
    type Future = <GatewayService as tower_service::Service<http::Request<Incoming>>>::Future;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The service is chosen per request in `call`, which polls it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Incoming>) -> Self::Future {
        let mut service = self.active.load().service.clone();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Always ready (the layer and the proxies hold no capacity).
        let _ =
            tower_service::Service::<http::Request<Incoming>>::poll_ready(&mut service, &mut cx);
        service.call(req)
    }
}

/// The trace export pipeline when the build has one and `[tracing]` turns
/// it on.
#[derive(Debug, Default)]
struct Tracing {
    #[cfg(feature = "otel")]
    export: Option<crate::otel::TraceExport>,
}

impl Tracing {
    /// Starts export as `config` says (within the runtime).
    fn start(config: &GatewayConfig) -> Result<Self, StartError> {
        #[cfg(feature = "otel")]
        return Ok(Tracing {
            export: crate::otel::TraceExport::start(config).map_err(StartError::Tracing)?,
        });
        #[cfg(not(feature = "otel"))]
        {
            // Validation refused an `otlp_endpoint` in this build.
            let _ = config;
            Ok(Tracing {})
        }
    }

    /// Flushes queued spans (at most [`TRACE_FLUSH_TIMEOUT`]).
    async fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(export) = self.export {
            export.shutdown(TRACE_FLUSH_TIMEOUT).await;
        }
    }
}

/// Builds the layer and the service of `config`, on `store` when given.
fn build_active(
    config: &GatewayConfig,
    metrics: &Arc<Metrics>,
    store: Option<Arc<dyn crate::session::SessionStore>>,
    tracing: &Tracing,
) -> Result<(Active, Vec<crate::proxy::Tunnels>), StartError> {
    #[cfg(not(feature = "otel"))]
    let _ = tracing;
    let mut builder = OidcLayer::builder(config.oidc())
        .metrics(metrics.clone())
        .assertion_audience(config.upstream.url.origin().ascii_serialization());
    if let Some(store) = store {
        builder = builder.shared_session_store(store);
    }
    let layer = builder.build().map_err(StartError::Auth)?;
    let upstreams = Upstreams::from_config(config, metrics)?;
    let tunnels = upstreams.tunnels();
    let service = GatewayService {
        inner: tower_layer::Layer::layer(&layer, upstreams),
        #[cfg(feature = "otel")]
        tracer: tracing.export.as_ref().map(|e| e.request_tracer(config)),
    };
    Ok((Active { layer, service }, tunnels))
}

/// Gives `new` the running values of the restart-only settings and names
/// those that differed.
fn keep_restart_only(old: &GatewayConfig, new: &mut GatewayConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($name:literal, $($field:tt)+) => {
            if old.$($field)+ != new.$($field)+ {
                changed.push($name);
                new.$($field)+ = old.$($field)+.clone();
            }
        };
    }
    keep!("server.listen", server.listen);
    keep!("admin.listen", admin.listen);
    keep!("server.shutdown_timeout", server.shutdown_timeout);
    keep!("server.header_read_timeout", server.header_read_timeout);
    keep!("server.keepalive_timeout", server.keepalive_timeout);
    keep!(
        "server.headers_with_underscores",
        server.headers_with_underscores
    );
    keep!("session.store", session.store);
    keep!("session.lifetime", session.lifetime);
    keep!("session.max_sessions", session.max_sessions);
    keep!("session.redis_key_prefix", session.redis_key_prefix);
    keep!("session.redis_cache_ttl", session.redis_cache_ttl);
    keep!("log", log);
    keep!("tracing (every key)", tracing);
    let tls_on = |c: &GatewayConfig| c.server.tls_cert.is_some() && c.server.tls_key.is_some();
    if tls_on(old) != tls_on(new) {
        changed.push("server.tls_cert/tls_key (TLS on or off)");
        new.server.tls_cert.clone_from(&old.server.tls_cert);
        new.server.tls_key.clone_from(&old.server.tls_key);
    }
    // Secrets: compared through a derived value, never by their text.
    let fingerprint = |s: &crate::secret::SessionSecret| s.derive(b"oidc-gateway reload compare");
    let s = (&old.session, &mut new.session);
    if fingerprint(&s.0.secret) != fingerprint(&s.1.secret) {
        changed.push("session.secret");
        s.1.secret = s.0.secret.clone();
    }
    let fingerprints =
        |v: &[crate::secret::SessionSecret]| v.iter().map(fingerprint).collect::<Vec<_>>();
    if fingerprints(&s.0.previous_secrets) != fingerprints(&s.1.previous_secrets) {
        changed.push("session.previous_secrets");
        s.1.previous_secrets.clone_from(&s.0.previous_secrets);
    }
    let url = |u: &Option<crate::secret::Secret>| u.as_ref().map(|u| u.expose().to_owned());
    if url(&s.0.redis_url) != url(&s.1.redis_url) {
        changed.push("session.redis_url");
        s.1.redis_url.clone_from(&s.0.redis_url);
    }
    changed
}

/// A gateway that is serving.
#[derive(Debug)]
pub struct RunningGateway {
    main_addr: SocketAddr,
    admin_addr: SocketAddr,
    active: Arc<ArcSwap<Active>>,
    /// The running configuration (what a reload compares with).
    config: Mutex<GatewayConfig>,
    cert: Option<Arc<ReloadingCert>>,
    tunnels: Arc<Mutex<Vec<crate::proxy::Tunnels>>>,
    metrics: Arc<Metrics>,
    tracing: Tracing,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<io::Result<()>>>,
}

impl RunningGateway {
    /// Binds the listeners of `config` (port 0 picks a free port) and serves.
    pub async fn start(config: GatewayConfig) -> Result<RunningGateway, StartError> {
        let cert = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(
                ReloadingCert::load(cert, key).map_err(StartError::Tls)?,
            )),
            _ => None,
        };
        let tls = match &cert {
            Some(cert) => Some(
                server::tls::server_config_with_resolver(cert.clone()).map_err(StartError::Tls)?,
            ),
            None => None,
        };
        let metrics = Arc::new(Metrics::new());
        let tracing = Tracing::start(&config)?;
        let (active, tunnels) = build_active(&config, &metrics, None, &tracing)?;
        let active = Arc::new(ArcSwap::from_pointee(active));
        let tunnels = Arc::new(Mutex::new(tunnels));
        let service = CurrentService {
            active: active.clone(),
        };
        let readiness = {
            let active = active.clone();
            Arc::new(move || active.load().layer.is_ready())
        };
        let admin = AdminService::new(metrics.clone(), readiness);

        let bind = |addr: SocketAddr| async move {
            server::bind(addr).map_err(|source| StartError::Bind { addr, source })
        };
        let main_listener = bind(config.server.listen).await?;
        let admin_listener = bind(config.admin.listen).await?;
        let local = |l: &TcpListener, addr: SocketAddr| {
            l.local_addr()
                .map_err(|source| StartError::Bind { addr, source })
        };
        let main_addr = local(&main_listener, config.server.listen)?;
        let admin_addr = local(&admin_listener, config.admin.listen)?;

        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let opts = ServeOptions::from_config(&config.server);
        let main_task = tokio::spawn(server::serve(
            main_listener,
            tls,
            service,
            opts.clone(),
            until_stopped(stopped.clone()),
        ));
        let admin_task = tokio::spawn(server::serve(
            admin_listener,
            None,
            admin,
            ServeOptions {
                drain_timeout: std::time::Duration::from_secs(1),
                ..opts
            },
            until_stopped(stopped),
        ));
        // WebSocket tunnels are not hyper's to drain: same bound, in parallel.
        let drain_timeout = config.server.shutdown_timeout;
        let mut tunnel_stop = stop.subscribe();
        let all_tunnels = tunnels.clone();
        let tunnel_task = tokio::spawn(async move {
            let _ = tunnel_stop.wait_for(|s| *s).await;
            let tunnels = all_tunnels
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            futures_util::future::join_all(tunnels.iter().map(|t| t.drain(drain_timeout))).await;
            Ok(())
        });
        let mut tasks = vec![main_task, admin_task, tunnel_task];
        if let Some(cert) = &cert {
            tasks.push(tokio::spawn(watch_cert(
                cert.clone(),
                metrics.clone(),
                stop.subscribe(),
            )));
        }
        // Keep the sessions gauge current as sessions expire.
        let gauge_active = active.clone();
        let gauge_metrics = metrics.clone();
        let mut gauge_stop = stop.subscribe();
        let gauge_task = tokio::spawn(async move {
            loop {
                gauge_metrics.set_sessions(gauge_active.load().layer.session_count());
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                    _ = gauge_stop.wait_for(|s| *s) => return Ok(()),
                }
            }
        });
        tasks.push(gauge_task);
        tracing::info!(%main_addr, %admin_addr, "oidc-gateway listening");
        Ok(RunningGateway {
            main_addr,
            admin_addr,
            active,
            config: Mutex::new(config),
            cert,
            tunnels,
            metrics,
            tracing,
            stop,
            tasks,
        })
    }

    /// Applies `new` (already validated as `check` does): the certificate,
    /// then routes, policies, provider, header names and upstreams, on the
    /// same session store. Restart-only settings ([`RESTART_ONLY`]) keep
    /// their running values and are listed in the report. On an error
    /// nothing changed. Does not log or count: the caller does.
    pub async fn reload(&self, mut new: GatewayConfig) -> Result<ReloadReport, ReloadError> {
        let old = self
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let not_applied = keep_restart_only(&old, &mut new);
        let cert = match (&self.cert, &new.server.tls_cert, &new.server.tls_key) {
            (Some(_), Some(cert), Some(key)) => {
                let (cert, key) = (cert.clone(), key.clone());
                let files = tokio::task::spawn_blocking(move || {
                    let files = server::tls::CertFiles::read(&cert, &key)?;
                    let certified = files.certified_key()?;
                    Ok((files, certified))
                })
                .await
                .map_err(|e| {
                    ReloadError::Tls(server::tls::TlsError::Read {
                        path: Default::default(),
                        source: io::Error::other(e),
                    })
                })?
                .map_err(ReloadError::Tls)?;
                Some(files)
            }
            _ => None,
        };
        let store = self.active.load().layer.shared_session_store();
        let (active, tunnels) = build_active(&new, &self.metrics, Some(store), &self.tracing)
            .map_err(|e| match e {
                StartError::Auth(e) => ReloadError::Auth(e),
                StartError::Upstream(e) => ReloadError::Upstream(e),
                other => ReloadError::Upstream(Box::new(other)),
            })?;
        // The new provider loads its metadata and keys before it serves.
        let bound = new.provider.http_timeout * 2 + Duration::from_secs(1);
        let deadline = tokio::time::Instant::now() + bound;
        while !active.layer.is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return Err(ReloadError::ProviderNotReady(bound));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let (Some(reloading), Some((files, certified))) = (&self.cert, cert) {
            reloading.replace(&files, certified);
        }
        self.tunnels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(tunnels);
        self.active.store(Arc::new(active));
        *self.config.lock().unwrap_or_else(PoisonError::into_inner) = new;
        Ok(ReloadReport { not_applied })
    }

    /// Address of the main listener.
    pub fn main_addr(&self) -> SocketAddr {
        self.main_addr
    }

    /// Address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Whether provider metadata and keys are loaded.
    pub fn is_ready(&self) -> bool {
        self.active.load().layer.is_ready()
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> u64 {
        self.active.load().layer.session_count()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops accepting, drains in-flight requests (bounded by
    /// `server.shutdown_timeout`), exports the spans still queued (bounded
    /// by [`TRACE_FLUSH_TIMEOUT`]) and returns.
    pub async fn shutdown(self) -> io::Result<()> {
        let _ = self.stop.send(true);
        let mut result = Ok(());
        for task in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(e) => result = Err(io::Error::other(e)),
            }
        }
        self.tracing.shutdown().await;
        result
    }
}

/// Re-reads the certificate files every [`CERT_POLL_PERIOD`] until `stop`,
/// swapping a changed, usable certificate in (one log line and a count
/// either way; an unusable change is reported once).
async fn watch_cert(
    cert: Arc<ReloadingCert>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CERT_POLL_PERIOD) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        let polled = cert.clone();
        let Ok(outcome) = tokio::task::spawn_blocking(move || polled.poll()).await else {
            continue;
        };
        match outcome {
            CertPoll::Unchanged => {}
            CertPoll::Reloaded => {
                metrics.record_tls_reload(true);
                tracing::info!("tls certificate reloaded: new connections use the new certificate");
            }
            CertPoll::Refused(e) => {
                metrics.record_tls_reload(false);
                tracing::error!(error = %e, "tls certificate reload refused: the running certificate keeps serving");
            }
        }
    }
}
