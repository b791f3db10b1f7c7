//! `oidc-gateway demo`: development OpenID Provider + echo upstream +
//! gateway with TLS from `certs/`, all on loopback.

use oidc_gateway::config::{GatewayConfig, ProcessEnv};
use oidc_gateway::devtools::echo::EchoUpstream;
use oidc_gateway::devtools::provider::DevProvider;
use oidc_gateway::gateway::RunningGateway;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

pub(crate) async fn run(port: u16) -> ExitCode {
    match try_run(port).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oidc-gateway demo: {e}");
            ExitCode::from(1)
        }
    }
}

async fn try_run(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let cert = Path::new("certs/gateway.crt");
    let key = Path::new("certs/gateway.key");
    if !cert.is_file() || !key.is_file() {
        return Err("certs/gateway.crt and certs/gateway.key not found: run the demo from the repository root (or make them with certs/gen.sh)".into());
    }
    let public_url = format!("https://localhost:{port}");
    let provider = DevProvider::builder()
        .client_id("demo")
        .client_secret(random_base64_32())
        .add_redirect_uri(format!("{public_url}/oauth2/callback"))
        .start()
        .await?;
    let upstream = EchoUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
tls_cert = "{cert}"
tls_key = "{key}"
public_url = "{public_url}"
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
        cert = cert.display(),
        key = key.display(),
        upstream = upstream.addr(),
        issuer = provider.issuer(),
        secret = provider.client_secret(),
        session_secret = random_base64_32(),
    );
    let config = GatewayConfig::from_toml_str(&toml, &ProcessEnv)?;
    let gateway = RunningGateway::start(config).await?;
    println!();
    println!("oidc-gateway demo is running.");
    println!();
    println!("  Open          {public_url}/   (any user name signs in)");
    println!("  Sign out      {public_url}/oauth2/sign_out");
    println!("  Identity      {public_url}/oauth2/userinfo");
    println!("  Public page   {public_url}/public/ (no login)");
    println!("  Provider      {}", provider.issuer());
    println!("  Admin         http://{}/metrics", gateway.admin_addr());
    println!();
    println!(
        "The certificate is the self-signed test CA in certs/ca.pem: accept the browser warning,"
    );
    println!("or use: curl --cacert certs/ca.pem {public_url}/public/");
    println!("Stop with Ctrl-C.");
    crate::shutdown_signal().await;
    gateway.shutdown().await?;
    drop(upstream);
    drop(provider);
    Ok(())
}

/// 32 random bytes (ThreadRng: a CSPRNG seeded by the OS), base64.
fn random_base64_32() -> String {
    use base64::Engine;
    let raw: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(raw)
}
