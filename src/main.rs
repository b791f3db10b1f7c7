//! `oidc-gateway`: load the configuration (exit 2 when it is bad), start,
//! serve until SIGTERM/SIGINT, drain, exit 0.

use clap::{Parser, Subcommand};
use oidc_gateway::config::{ConfigError, GatewayConfig};
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
    Check,
    /// Start a complete local setup: development OpenID Provider, echo
    /// upstream and the gateway with TLS from `certs/`.
    #[cfg_attr(
        not(feature = "devtools"),
        command(
            about = "Not in this build: it has no development tools (rebuild with the default `devtools` feature)"
        )
    )]
    Demo {
        /// Port of the gateway's HTTPS listener.
        #[arg(long, default_value_t = 8443)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&cli.config),
        Command::Run => {
            let config = match load(&cli.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_tracing();
            runtime(|| run(config))
        }
        #[cfg(feature = "devtools")]
        Command::Demo { port } => {
            init_tracing();
            runtime(|| demo::run(port))
        }
        #[cfg(not(feature = "devtools"))]
        Command::Demo { port: _ } => {
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

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("OIDC_GATEWAY_LOG_FORMAT").is_ok_and(|v| v == "json");
    // Colour only for a terminal: a pipe or file (a container's log, CI)
    // gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(config: GatewayConfig) -> ExitCode {
    let gateway = match RunningGateway::start(config).await {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::from(1);
        }
    };
    shutdown_signal().await;
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
