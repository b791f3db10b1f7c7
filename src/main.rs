//! `oidc-gateway`: load the configuration (exit 2 when it is bad), start,
//! serve until SIGTERM/SIGINT (reloading the configuration at each SIGHUP),
//! drain, exit 0.

use clap::{Parser, Subcommand};
use oidc_gateway::config::{ConfigError, GatewayConfig, LogConfig, LogFormat};
use oidc_gateway::gateway::RunningGateway;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[cfg(feature = "devtools")]
mod demo;

/// OpenID Connect / OAuth 2.0 authentication gateway.
#[derive(Parser, Debug)]
#[command(name = "oidc-gateway", version, about, long_about = None)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        default_value = "gateway.toml",
        value_name = "PATH"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Load and validate the configuration, print `config ok` or every problem.
    Check {
        /// Also contact the provider and report its discovery, endpoints,
        /// keys, the algorithms that will be accepted, and the URIs to
        /// register (exit 2 when a login could not work).
        #[arg(long)]
        provider: bool,
    },
    /// Start a complete local setup: development OpenID Provider, echo
    /// upstream and the gateway with TLS from `certs/`.
    #[cfg_attr(
        not(feature = "devtools"),
        command(
            about = "Not in this build: it has no development tools (rebuild with the default `devtools` feature)"
        )
    )]
    Demo {
        /// Port of the gateway's listener (0: a free port, printed).
        #[arg(long, default_value_t = 8443)]
        port: u16,
        /// Serve plain HTTP on loopback instead of TLS with the test
        /// certificate (nothing to trust).
        #[arg(long)]
        plain_http: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check { provider: false } => check(&cli.config),
        Command::Check { provider: true } => match check(&cli.config) {
            code if code != ExitCode::SUCCESS => code,
            _ => match load(&cli.config) {
                Ok(config) => runtime(|| check_provider(config)),
                Err(code) => code,
            },
        },
        Command::Run => {
            let config = match load(&cli.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let log = init_tracing(&config.log);
            raise_open_file_limit();
            runtime(|| run(config, &cli.config, &log))
        }
        #[cfg(feature = "devtools")]
        Command::Demo { port, plain_http } => {
            let _log = init_tracing(&LogConfig::default());
            runtime(|| demo::run(port, plain_http))
        }
        #[cfg(not(feature = "devtools"))]
        Command::Demo { .. } => {
            eprintln!("{NO_DEVTOOLS}");
            ExitCode::from(2)
        }
    }
}

/// What `demo` says in a build without the `devtools` feature.
#[cfg(not(feature = "devtools"))]
const NO_DEVTOOLS: &str = "oidc-gateway demo: this build has no development tools \
(no development OpenID Provider, no echo upstream): it was built without the `devtools` \
feature. Rebuild with the default features (`cargo run -- demo`) to run the demo.";

/// The number of runtime workers: `TOKIO_WORKER_THREADS` when it is set
/// (`None` when it is not a number: the multi-thread builder reports it), else
/// the CPUs this process may run on (affinity and cgroup quota included).
fn worker_threads() -> Option<usize> {
    match std::env::var("TOKIO_WORKER_THREADS") {
        Ok(n) => n.trim().parse().ok(),
        Err(_) => std::thread::available_parallelism().ok().map(|n| n.get()),
    }
}

fn runtime<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    // One worker (pinned to one CPU, a one-CPU container, or
    // TOKIO_WORKER_THREADS=1): the current-thread scheduler, whose wake-ups
    // and task switches cost less than a one-worker multi-thread scheduler's
    // (~1–2 µs per proxied request on the load benchmark). Otherwise one
    // worker per CPU (Tokio reads TOKIO_WORKER_THREADS itself).
    let mut builder = if worker_threads() == Some(1) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    match builder.enable_all().build() {
        Ok(rt) => rt.block_on(f()),
        Err(e) => {
            eprintln!("oidc-gateway: cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    }
}

fn print_problems(path: &Path, e: &ConfigError) {
    match e {
        ConfigError::Invalid { problems, .. } => {
            eprintln!("{}: configuration is not valid:", path.display());
            for p in problems {
                eprintln!("  {p}");
            }
        }
        // No file, or an unreadable one: say so plainly (with what to do).
        _ => eprintln!("oidc-gateway: {e}"),
    }
}

fn load(path: &Path) -> Result<GatewayConfig, ExitCode> {
    GatewayConfig::from_path(path).map_err(|e| {
        print_problems(path, &e);
        ExitCode::from(2)
    })
}

fn check(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // What start-up would load besides the file itself.
    if let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key) {
        if let Err(e) = oidc_gateway::server::tls::load_server_config(cert, key) {
            eprintln!("{}: configuration is not valid:", path.display());
            eprintln!("  server.tls_cert: {e}");
            return ExitCode::from(2);
        }
    }
    println!("config ok");
    ExitCode::SUCCESS
}

/// `check --provider`: what the provider says, and what to register there.
async fn check_provider(config: GatewayConfig) -> ExitCode {
    let issuer = config
        .provider
        .issuer
        .clone()
        .unwrap_or_else(|| "(the dialect's issuer)".to_owned());
    let report = match oidc_gateway::probe::probe(&config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("provider {issuer}: {e}");
            return ExitCode::from(2);
        }
    };
    let m = &report.metadata;
    let opt = |u: &Option<url::Url>| u.as_ref().map_or("(none)".to_owned(), |u| u.to_string());
    println!("provider {issuer}: discovery ok");
    println!("  issuer                  {}", m.issuer);
    println!(
        "  authorization_endpoint  {}",
        opt(&m.authorization_endpoint)
    );
    println!("  token_endpoint          {}", opt(&m.token_endpoint));
    println!("  userinfo_endpoint       {}", opt(&m.userinfo_endpoint));
    println!("  jwks_uri                {}", opt(&m.jwks_uri));
    println!("  end_session_endpoint    {}", opt(&m.end_session_endpoint));
    println!(
        "  introspection_endpoint  {}",
        opt(&m.introspection_endpoint)
    );
    println!("keys: {} usable", report.usable_keys);
    match &report.keys {
        Ok(keys) => {
            for k in keys {
                let verifies: Vec<String> = k.verifies.iter().map(|a| a.to_string()).collect();
                println!(
                    "  kid={} kty={}{} alg={}{} verifies: {}",
                    k.kid.as_deref().unwrap_or("(none)"),
                    k.kty,
                    k.crv
                        .as_ref()
                        .map_or(String::new(), |c| format!(" crv={c}")),
                    k.alg.as_deref().unwrap_or("(any)"),
                    k.key_use
                        .as_ref()
                        .map_or(String::new(), |u| format!(" use={u}")),
                    if verifies.is_empty() {
                        "nothing allowed".to_owned()
                    } else {
                        verifies.join(", ")
                    },
                );
            }
        }
        Err(why) => println!("  (cannot list them: {why})"),
    }
    let names = |v: &[oidc_gateway::config::SigningAlgorithm]| {
        v.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("accepted algorithms: {}", names(&report.accepted));
    if !report.without_key.is_empty() {
        println!(
            "allowed but no key verifies them: {}",
            names(&report.without_key)
        );
    }
    println!(
        "register at the provider for client_id {}:",
        config.provider.client_id
    );
    println!("  redirect URI              {}", report.redirect_uri);
    println!(
        "  post-logout redirect URI  {}",
        report.post_logout_redirect_uri
    );
    if report.is_usable() {
        println!("provider ok");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "provider {issuer}: no key verifies any accepted algorithm ({}): logins will fail",
            names(&report.accepted)
        );
        ExitCode::from(2)
    }
}

/// Lines the log writer may hold while stderr is slow or blocked; beyond
/// them, lines are dropped and counted (`oidc_gateway_log_lines_dropped_total`)
/// rather than blocking requests. About 4 MiB at most.
const LOG_BUFFERED_LINES: usize = 16_384;

/// The log writer's thread: what it holds until exit, and its count of
/// dropped lines.
struct LogWriter {
    /// Flushes the lines still queued when dropped.
    _guard: tracing_appender::non_blocking::WorkerGuard,
    dropped: tracing_appender::non_blocking::ErrorCounter,
}

/// Logs to stderr as `[log]` says. Lines are formatted on the thread that
/// logs and written by a thread of their own, so that a request never waits
/// for a `write(2)`; under load that thread writes many lines at a time
/// (through a 64 KiB buffer, flushed whenever its queue is empty).
fn init_tracing(log: &LogConfig) -> LogWriter {
    use tracing_subscriber::EnvFilter;
    let env_filter = std::env::var("RUST_LOG").ok();
    let directives = log.filter_directives(env_filter.as_deref());
    let filter = EnvFilter::builder()
        .parse(&directives)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let env_format = std::env::var("OIDC_GATEWAY_LOG_FORMAT").ok();
    // Colour only for a terminal: a pipe or file (a container's log, CI)
    // gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_BUFFERED_LINES)
        .thread_name("oidc-gateway-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match log.effective_format(env_format.as_deref()) {
        LogFormat::Json => builder.json().init(),
        // Access-log lines written without the generic field formatting
        // (the same bytes; see `AccessLineFormat`).
        LogFormat::Text => builder
            .event_format(oidc_gateway::telemetry::AccessLineFormat::default())
            .init(),
    }
    LogWriter {
        _guard: guard,
        dropped,
    }
}

/// Open files the gateway may need: its connections (at most 10,000), as
/// many to the upstream, and a margin for the provider, Redis, certificates
/// and logs.
const OPEN_FILES_WANTED: u64 = 2 * 10_000 + 1_024;

/// Raises the soft limit on open files to the hard limit. The common default
/// soft limit (1024) would make `accept` fail with EMFILE long before the
/// connection limit; the hard limit is what the administrator allows.
#[cfg(unix)]
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < OPEN_FILES_WANTED => tracing::warn!(
            limit,
            wanted = OPEN_FILES_WANTED,
            "the open-file limit is low: connections beyond it are refused (raise `ulimit -Hn`)"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open-file limit"),
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit() {}

async fn run(config: GatewayConfig, path: &Path, log: &LogWriter) -> ExitCode {
    let gateway = match RunningGateway::start(config).await {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::from(1);
        }
    };
    let dropped_task = tokio::spawn(count_dropped_log_lines(
        log.dropped.clone(),
        gateway.metrics().clone(),
    ));
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let mut hangup = hangup_signals();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = hangup.recv() => {
                // A reload waits for the new provider: SIGTERM still stops
                // at once (a reload cut short applies nothing).
                tokio::select! {
                    () = &mut shutdown => break,
                    () = reload(&gateway, path) => {}
                }
            }
        }
    }
    dropped_task.abort();
    tracing::info!("shutting down: draining in-flight requests");
    match gateway.shutdown().await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server error");
            ExitCode::from(1)
        }
    }
}

/// Adds the log lines the writer dropped (stderr blocked) to the metric,
/// every 5 s, with a warning when there were any.
async fn count_dropped_log_lines(
    dropped: tracing_appender::non_blocking::ErrorCounter,
    metrics: std::sync::Arc<oidc_gateway::metrics::Metrics>,
) {
    let mut counted = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let now = dropped.dropped_lines();
        if now > counted {
            metrics.record_log_lines_dropped((now - counted) as u64);
            tracing::warn!(
                dropped = now - counted,
                "log lines dropped: stderr is not keeping up"
            );
            counted = now;
        }
    }
}

/// One message per SIGHUP (none where there are no signals).
fn hangup_signals() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut s) => {
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    // Signals during a reload fold into one more reload.
                    let _ = tx.try_send(());
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "no SIGHUP handler: reload needs a restart"),
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

/// Reloads the configuration file at `path` (SIGHUP): one log line for
/// the outcome, one more naming restart-only settings that changed.
async fn reload(gateway: &RunningGateway, path: &Path) {
    let metrics = gateway.metrics();
    let config = match GatewayConfig::from_path(path) {
        Ok(c) => c,
        Err(e) => {
            metrics.record_config_reload(false);
            let problems = e.to_string().replace('\n', "; ");
            tracing::error!(
                config = %path.display(),
                error = %problems,
                "reload refused: the running configuration keeps serving"
            );
            return;
        }
    };
    match gateway.reload(config).await {
        Ok(report) => {
            metrics.record_config_reload(true);
            tracing::info!(config = %path.display(), "configuration reloaded: new requests use it");
            if !report.not_applied.is_empty() {
                tracing::warn!(
                    settings = %report.not_applied.join(", "),
                    "changed settings need a restart: the running values are kept"
                );
            }
        }
        Err(e) => {
            metrics.record_config_reload(false);
            tracing::error!(
                config = %path.display(),
                error = %e,
                "reload refused: the running configuration keeps serving"
            );
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
