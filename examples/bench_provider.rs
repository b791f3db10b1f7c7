//! Helpers for `benches/load.sh`.
//!
//! - `bench_provider serve <addr> <token-file>`: runs the development OpenID
//!   Provider on `<addr>` (client `bench` / secret `bench-secret`, every
//!   login is `alice`, access tokens valid 24 h), writes a long-lived RS256
//!   access token for `alice` to `<token-file>`, its RSA public key (SPKI
//!   PEM, for peers that verify JWTs with a local key: mod_auth_openidc) to
//!   `<token-file>.pem` and that key's `kid` to `<token-file>.kid`, prints
//!   the issuer, and runs until stdin closes or SIGTERM.
//! - `bench_provider startup <runs> <admin-addr> <cmd> [args…]`: starts
//!   `<cmd>` `<runs>` times and measures the time from spawn to the first
//!   `200` from `http://<admin-addr>/readyz` (polled every 200 µs), then
//!   kills it; prints every run and the median.

use oidc_gateway::devtools::provider::DevProvider;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") if args.len() == 3 => serve(&args[1], &args[2]),
        Some("startup") if args.len() >= 4 => startup(&args[1], &args[2], &args[3..]),
        _ => Err("usage: bench_provider serve <addr> <token-file> | startup <runs> <admin-addr> <cmd> [args...]".into()),
    }
}

fn serve(addr: &str, token_file: &str) -> Result<(), BoxError> {
    let addr: SocketAddr = addr.parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let op = DevProvider::builder()
            .bind(addr)
            .client_id("bench")
            .client_secret("bench-secret")
            .access_token_ttl(Duration::from_secs(24 * 3600))
            .id_token_ttl(Duration::from_secs(24 * 3600))
            .auto_login("alice")
            .start()
            .await?;
        op.set_user_claims(
            "alice",
            serde_json::json!({
                "email": "alice@example.com",
                "name": "Alice Liddell",
                "groups": ["users", "engineering", "oncall"],
            }),
        );
        let token = op.mint_access_token(serde_json::json!({ "sub": "alice" }));
        std::fs::write(format!("{token_file}.pem"), op.rsa_public_key_pem())?;
        std::fs::write(format!("{token_file}.kid"), op.rsa_kid())?;
        std::fs::write(token_file, token)?;
        println!("{}", op.issuer());
        // Runs until stdin closes (or the process is killed).
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await?;
        drop(op);
        Ok::<_, BoxError>(())
    })
}

fn readyz(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(50)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => return false,
            Ok(k) => n += k,
        }
    }
    buf.starts_with(b"HTTP/1.1 200")
}

fn startup(runs: &str, admin: &str, cmd: &[String]) -> Result<(), BoxError> {
    let runs: usize = runs.parse()?;
    let admin: SocketAddr = admin.parse()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let mut child = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let ready = loop {
            if readyz(admin) {
                break Some(start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(10) {
                break None;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let _ = child.kill();
        let _ = child.wait();
        let Some(t) = ready else {
            return Err("gateway not ready within 10 s".into());
        };
        times.push(t);
        // Let the ports be released.
        std::thread::sleep(Duration::from_millis(50));
    }
    let ms: Vec<String> = times
        .iter()
        .map(|t| format!("{:.1}", t.as_secs_f64() * 1e3))
        .collect();
    times.sort();
    let median = times[times.len() / 2];
    println!("startup_runs_ms {}", ms.join(" "));
    println!("startup_median_ms {:.1}", median.as_secs_f64() * 1e3);
    Ok(())
}
