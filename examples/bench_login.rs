//! Login callbacks per second for `benches/load.sh`: runs N complete logins
//! through a gateway (`/oauth2/start` → the provider's auto-login authorize
//! endpoint → `/oauth2/callback`, which exchanges the code, verifies the ID
//! token and stores the session) with C at a time, over keep-alive
//! connections, and checks that every callback set a session cookie.
//!
//! ```sh
//! bench_login http://127.0.0.1:18083 2000 8
//! ```
//!
//! Prints `logins <n> in <seconds> s: <rate>/s`. The caller reads the
//! gateway's and the provider's CPU time around it.

use std::sync::Arc;
use std::time::Instant;

use http::header::{COOKIE, LOCATION, SET_COOKIE};
use http::HeaderMap;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 3 {
        return Err("usage: bench_login <gateway-base-url> <logins> <concurrency>".into());
    }
    let base = args[0].trim_end_matches('/').to_owned();
    let n: usize = args[1].parse()?;
    let c: usize = args[2].parse::<usize>()?.max(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Plain-HTTP gateway, but reqwest still wants a TLS config with a provider.
        let tls = oidc_gateway::server::tls::client_config(None)?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let start = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..c {
            let (client, base, next) = (client.clone(), base.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                    login(&client, &base).await?;
                }
                Ok::<_, BoxError>(())
            }));
        }
        for w in workers {
            w.await??;
        }
        let secs = start.elapsed().as_secs_f64();
        println!("logins {n} in {secs:.2} s: {:.0}/s", n as f64 / secs);
        Ok(())
    })
}

/// `name=value` of every `Set-Cookie` in `headers`.
fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_owned)
        .collect()
}

fn location(headers: &HeaderMap) -> Result<String, BoxError> {
    Ok(headers
        .get(LOCATION)
        .ok_or("redirect without Location")?
        .to_str()?
        .to_owned())
}

async fn login(client: &reqwest::Client, base: &str) -> Result<(), BoxError> {
    let start = client
        .get(format!("{base}/oauth2/start?rd=/app/"))
        .send()
        .await?;
    if !start.status().is_redirection() {
        return Err(format!("/oauth2/start: {}", start.status()).into());
    }
    let login_cookies = set_cookies(start.headers()).join("; ");
    let authorize = client.get(location(start.headers())?).send().await?;
    if !authorize.status().is_redirection() {
        return Err(format!("authorize: {}", authorize.status()).into());
    }
    let mut callback_url = location(authorize.headers())?;
    if callback_url.starts_with('/') {
        callback_url = format!("{base}{callback_url}");
    }
    let callback = client
        .get(callback_url)
        .header(COOKIE, login_cookies)
        .send()
        .await?;
    let session = set_cookies(callback.headers())
        .into_iter()
        .any(|c| c.contains("oidc-gateway=") && !c.ends_with('='));
    if !callback.status().is_redirection() || !session {
        return Err(format!("callback: {} without a session cookie", callback.status()).into());
    }
    Ok(())
}
