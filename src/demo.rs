//! `oidc-gateway demo`: development OpenID Provider + echo upstream +
//! gateway with TLS from `certs/` (or plain HTTP with `--plain-http`), all
//! on loopback. `--port 0` picks a free port, and the demo prints it.

use oidc_gateway::config::{GatewayConfig, ProcessEnv};
use oidc_gateway::devtools::echo::EchoUpstream;
use oidc_gateway::devtools::provider::DevProvider;
use oidc_gateway::gateway::{RunningGateway, StartError};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

/// How many times a free port picked for `--port 0` is tried (another
/// process may take it between the pick and the bind).
const PORT_ATTEMPTS: usize = 5;

pub(crate) async fn run(port: u16, plain_http: bool) -> ExitCode {
    match try_run(port, plain_http).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oidc-gateway demo: {e}");
            ExitCode::from(1)
        }
    }
}

/// A port nobody listens on now (the OS picks it).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

async fn try_run(port: u16, plain_http: bool) -> Result<(), Box<dyn std::error::Error>> {
    let cert = Path::new("certs/gateway.crt");
    let key = Path::new("certs/gateway.key");
    if !plain_http && (!cert.is_file() || !key.is_file()) {
        return Err("certs/gateway.crt and certs/gateway.key not found: run the demo from the repository root (or make them with certs/gen.sh), or use --plain-http".into());
    }
    let upstream = EchoUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let mut attempt = 0;
    let (gateway, provider, public_url) = loop {
        attempt += 1;
        let port = if port == 0 { free_port()? } else { port };
        match start(port, plain_http, cert, key, upstream.addr()).await {
            Err(Started::Bind(_)) if attempt < PORT_ATTEMPTS => continue,
            Err(Started::Bind(e)) => return Err(e.into()),
            Err(Started::Other(e)) => return Err(e),
            Ok(started) => break started,
        }
    };
    let admin = gateway.admin_addr();
    println!();
    println!("oidc-gateway demo is running.");
    println!();
    println!("  Open          {public_url}/   (any user name signs in)");
    println!("  Sign out      {public_url}/oauth2/sign_out");
    println!("  Identity      {public_url}/oauth2/userinfo");
    println!("  Public page   {public_url}/public/ (no login)");
    println!("  Provider      {}", provider.issuer());
    println!("  Admin         http://{admin}/metrics");
    println!();
    if plain_http {
        println!("Plain HTTP on loopback: no certificate to trust (cookies without Secure).");
    } else {
        println!("The certificate is signed by the test CA in certs/ca.pem, whose private key is public:");
        println!(
            "do not add it to your system or browser trust store. Accept the browser warning for"
        );
        println!("this one site, run with --plain-http, or use: curl --cacert certs/ca.pem {public_url}/public/");
    }
    println!("Stop with Ctrl-C.");
    crate::shutdown_signal().await;
    gateway.shutdown().await?;
    drop(upstream);
    drop(provider);
    Ok(())
}

/// Why one start attempt failed: the port was taken, or anything else.
enum Started {
    Bind(StartError),
    Other(Box<dyn std::error::Error>),
}

/// The provider and the gateway on `port`.
async fn start(
    port: u16,
    plain_http: bool,
    cert: &Path,
    key: &Path,
    upstream: SocketAddr,
) -> Result<(RunningGateway, DevProvider, String), Started> {
    let other = |e: Box<dyn std::error::Error>| Started::Other(e);
    let (scheme, tls) = if plain_http {
        ("http", String::new())
    } else {
        (
            "https",
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                cert.display(),
                key.display()
            ),
        )
    };
    let public_url = format!("{scheme}://localhost:{port}");
    let provider = DevProvider::builder()
        .client_id("demo")
        .client_secret(random_base64_32())
        .add_redirect_uri(format!("{public_url}/oauth2/callback"))
        .start()
        .await
        .map_err(|e| other(e.into()))?;
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
{tls}public_url = "{public_url}"
shutdown_timeout = "5s"

[admin]
listen = "127.0.0.1:0"

[upstream]
url = "http://{upstream}"

[provider]
issuer = "{issuer}"
client_id = "demo"
client_secret = "{secret}"

[session]
secret = "{session_secret}"

[[route]]
path = "/public/"
auth = "none"
"#,
        issuer = provider.issuer(),
        secret = provider.client_secret(),
        session_secret = random_base64_32(),
    );
    let config = GatewayConfig::from_toml_str(&toml, &ProcessEnv).map_err(|e| other(e.into()))?;
    match RunningGateway::start(config).await {
        Ok(gateway) => Ok((gateway, provider, public_url)),
        Err(e @ StartError::Bind { .. }) => Err(Started::Bind(e)),
        Err(e) => Err(other(e.into())),
    }
}

/// 32 random bytes (ThreadRng: a CSPRNG seeded by the OS), base64.
fn random_base64_32() -> String {
    use base64::Engine;
    let raw: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(raw)
}
