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

use crate::admin::AdminService;
use crate::auth::{MatchedRoute, Oidc, OidcLayer};
use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::proxy::headers::sanitize_request;
use crate::proxy::{ProxyOptions, ReverseProxy};
use crate::server::{self, ServeOptions};
use crate::telemetry;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
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
}

/// The main listener's service: strips hop-by-hop headers (including those
/// named in `Connection`) before the auth layer adds identity headers, sets
/// the request id and checks the trace context ([`telemetry`]), then
/// authenticates and proxies, and writes the access-log line.
#[derive(Clone, Debug)]
pub struct GatewayService {
    inner: Oidc<Upstreams>,
}

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
        crate::auth::ResponseFuture<
            <Upstreams as tower_service::Service<http::Request<Incoming>>>::Future,
            Infallible,
        >,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower_service::Service::<http::Request<Incoming>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut req: http::Request<Incoming>) -> Self::Future {
        sanitize_request(&mut req);
        let request_id = telemetry::ensure_request_id(req.headers_mut());
        telemetry::sanitize_trace_context(req.headers_mut());
        let start = telemetry::RequestStart::new(req.method(), req.uri(), request_id);
        telemetry::AccessLogFuture::new(self.inner.call(req), start)
    }
}

/// A gateway that is serving.
#[derive(Debug)]
pub struct RunningGateway {
    main_addr: SocketAddr,
    admin_addr: SocketAddr,
    layer: OidcLayer,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<io::Result<()>>>,
}

impl RunningGateway {
    /// Binds the listeners of `config` (port 0 picks a free port) and serves.
    pub async fn start(config: GatewayConfig) -> Result<RunningGateway, StartError> {
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => {
                Some(server::tls::load_server_config(cert, key).map_err(StartError::Tls)?)
            }
            _ => None,
        };
        let metrics = Arc::new(Metrics::new());
        let layer = OidcLayer::builder(config.oidc())
            .metrics(metrics.clone())
            .assertion_audience(config.upstream.url.origin().ascii_serialization())
            .build()
            .map_err(StartError::Auth)?;
        let upstreams = Upstreams::from_config(&config, &metrics)?;
        let tunnels = upstreams.tunnels();
        let service = GatewayService {
            inner: tower_layer::Layer::layer(&layer, upstreams),
        };
        let admin = AdminService::new(metrics.clone(), layer.readiness());

        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
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
        let tunnel_task = tokio::spawn(async move {
            let _ = tunnel_stop.wait_for(|s| *s).await;
            futures_util::future::join_all(tunnels.iter().map(|t| t.drain(drain_timeout))).await;
            Ok(())
        });
        // Keep the sessions gauge current as sessions expire.
        let gauge_layer = layer.clone();
        let gauge_metrics = metrics.clone();
        let mut gauge_stop = stop.subscribe();
        let gauge_task = tokio::spawn(async move {
            loop {
                gauge_metrics.set_sessions(gauge_layer.session_count());
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                    _ = gauge_stop.wait_for(|s| *s) => return Ok(()),
                }
            }
        });
        tracing::info!(%main_addr, %admin_addr, "oidc-gateway listening");
        Ok(RunningGateway {
            main_addr,
            admin_addr,
            layer,
            metrics,
            stop,
            tasks: vec![main_task, admin_task, tunnel_task, gauge_task],
        })
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
        self.layer.is_ready()
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> u64 {
        self.layer.session_count()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops accepting, drains in-flight requests (bounded by
    /// `server.shutdown_timeout`) and returns.
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
        result
    }
}
