//! Helpers for `benches/soak.sh` (issue 11, item 8).
//!
//! - `soak_client provider <addr> <token-file> <access-ttl-secs>`: the
//!   development OpenID Provider on `<addr>` (client `soak` / secret
//!   `soak-secret`, auto-login `alice`, refresh tokens, access tokens valid
//!   `<access-ttl-secs>`: sessions are refreshed from half-life), writes 64
//!   bearer access tokens (subjects `user-0`…`user-63`, valid 24 h), one a
//!   line, to `<token-file>`, prints the issuer and runs until stdin closes;
//!   its request counters (logins, token and refresh grants, logouts) are
//!   kept in `<token-file>.counters`, rewritten every 500 ms.
//! - `soak_client soak <gateway-url> <gateway-pid> <token-file> <requests> <conns> <session-requests>`:
//!   `<conns>` workers, each in a loop: log in through the gateway and the
//!   provider (start → authorize → callback), send `<session-requests>`
//!   authenticated requests over mixed routes (50 % `/app/…` with the
//!   session cookie, 20 % `/api/…` with one of the bearer tokens, 20 %
//!   forward-auth `/oauth2/auth`, 10 % `/oauth2/userinfo`; plus one
//!   unauthenticated `/public/…` request per ten, not counted), sign out,
//!   and check that the old cookie is refused. Stops after `<requests>`
//!   authenticated requests in all (login steps are not counted either). Every
//!   5 s it prints the gateway's RSS and open file descriptors (from
//!   `/proc/<gateway-pid>`); at the end the totals, the answers by kind
//!   (route and status, or transport error) and the RSS and descriptor
//!   figures after warm-up (the first 10 % of the requests). Exits 1 when
//!   an answer was not one of the expected ones.
//! - `soak_client slowloris <gateway-addr> <gateway-pid> <conns> <hold-secs> <token-file>`:
//!   holds `<conns>` connections that send a request head one header line
//!   per second and never finish it (reconnecting when the gateway closes
//!   one), for `<hold-secs>`; meanwhile an authenticated request every
//!   250 ms on a kept-alive connection and one per second on a new
//!   connection, with their latency. Prints RSS and descriptors before,
//!   during (max) and after, and the latencies.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oidc_gateway::devtools::provider::DevProvider;
use parking_lot::Mutex;
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use tokio::io::AsyncWriteExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: soak_client provider <addr> <token-file> <access-ttl-secs>\n\
    | soak <gateway-url> <gateway-pid> <token-file> <requests> <conns> <session-requests>\n\
    | slowloris <gateway-addr> <gateway-pid> <conns> <hold-secs> <token-file>";

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // reqwest is built without a default TLS crypto provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("provider") if args.len() == 4 => {
            rt.block_on(provider(&args[1], &args[2], args[3].parse()?))
        }
        Some("soak") if args.len() == 7 => rt.block_on(soak(SoakArgs {
            gateway: args[1].trim_end_matches('/').to_owned(),
            pid: args[2].parse()?,
            tokens: read_tokens(&args[3])?,
            requests: args[4].parse()?,
            conns: args[5].parse()?,
            session_requests: args[6].parse()?,
        })),
        Some("slowloris") if args.len() == 6 => rt.block_on(slowloris(
            args[1].parse()?,
            args[2].parse()?,
            args[3].parse()?,
            Duration::from_secs(args[4].parse()?),
            read_tokens(&args[5])?,
        )),
        _ => Err(USAGE.into()),
    }
}

fn read_tokens(path: &str) -> Result<Vec<String>, BoxError> {
    let tokens: Vec<String> = std::fs::read_to_string(path)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if tokens.is_empty() {
        return Err(format!("no token in {path}").into());
    }
    Ok(tokens)
}

// ===== provider =====

async fn provider(addr: &str, token_file: &str, access_ttl: u64) -> Result<(), BoxError> {
    let addr: SocketAddr = addr.parse()?;
    let op = DevProvider::builder()
        .bind(addr)
        .client_id("soak")
        .client_secret("soak-secret")
        .access_token_ttl(Duration::from_secs(access_ttl))
        .auto_login("alice")
        .start()
        .await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let tokens: Vec<String> = (0..64)
        .map(|i| {
            op.mint_access_token(serde_json::json!({
                "sub": format!("user-{i}"),
                "exp": now + 24 * 3600,
            }))
        })
        .collect();
    std::fs::write(token_file, tokens.join("\n") + "\n")?;
    println!("{}", op.issuer());
    // What the gateway asked for, for the script's report.
    let counters_file = format!("{token_file}.counters");
    let op = Arc::new(op);
    let watched = op.clone();
    tokio::spawn(async move {
        loop {
            let c = watched.counters();
            let line = format!(
                "provider requests: authorize {}, token {} (of which refresh grants {}), end_session {}, jwks {}, discovery {}\n",
                c.authorize, c.token, c.refresh, c.end_session, c.jwks, c.discovery
            );
            let _ = std::fs::write(&counters_file, line);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    drop(op);
    Ok(())
}

// ===== /proc =====

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ===== soak =====

struct SoakArgs {
    gateway: String,
    pid: u32,
    tokens: Vec<String>,
    requests: u64,
    conns: usize,
    session_requests: u64,
}

/// Answers by kind, e.g. `app 200`, `login callback 302`, `api error: timed out`.
#[derive(Default)]
struct Tally {
    kinds: Mutex<BTreeMap<String, u64>>,
    unexpected: AtomicU64,
}

impl Tally {
    fn count(&self, kind: String, expected: bool) {
        *self.kinds.lock().entry(kind).or_insert(0) += 1;
        if !expected {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Shared {
    args: SoakArgs,
    done: AtomicU64,
    tally: Tally,
    logins: AtomicU64,
}

async fn soak(args: SoakArgs) -> Result<(), BoxError> {
    let shared = Arc::new(Shared {
        args,
        done: AtomicU64::new(0),
        tally: Tally::default(),
        logins: AtomicU64::new(0),
    });
    let pid = shared.args.pid;
    let total = shared.args.requests;
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..shared.args.conns {
        let shared = shared.clone();
        workers.push(tokio::spawn(async move { worker(w, &shared).await }));
    }
    println!(
        "{:>6} {:>10} {:>8} {:>9} {:>5} {:>7}",
        "t_s", "requests", "req/s", "rss_mib", "fds", "logins"
    );
    // (requests done, rss KiB, fds) every 5 s.
    let mut samples: Vec<(u64, u64, usize)> = Vec::new();
    let mut last = (0u64, Instant::now());
    let sample = |samples: &mut Vec<(u64, u64, usize)>, last: &mut (u64, Instant)| {
        let done = shared.done.load(Ordering::Relaxed);
        let (rss, fd) = (rss_kib(pid), fds(pid));
        let rate = (done - last.0) as f64 / last.1.elapsed().as_secs_f64().max(1e-3);
        *last = (done, Instant::now());
        samples.push((done, rss, fd));
        println!(
            "{:>6.0} {:>10} {:>8.0} {:>9.1} {:>5} {:>7}",
            start.elapsed().as_secs_f64(),
            done,
            rate,
            mib(rss),
            fd,
            shared.logins.load(Ordering::Relaxed)
        );
    };
    sample(&mut samples, &mut last);
    while !workers.iter().all(|w| w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if last.1.elapsed() >= Duration::from_secs(5) {
            sample(&mut samples, &mut last);
        }
    }
    for w in workers {
        w.await??;
    }
    let elapsed = start.elapsed();
    // Idle for a moment: what is left once the load is gone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sample(&mut samples, &mut last);
    let done = shared.done.load(Ordering::Relaxed);

    println!();
    println!(
        "requests: {done} in {:.1} s ({:.0} req/s), {} logins (each: start, authorize, callback, sign-out, refused old cookie)",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        shared.logins.load(Ordering::Relaxed)
    );
    println!("answers by kind:");
    for (kind, n) in shared.tally.kinds.lock().iter() {
        println!("  {kind:<40} {n:>10}");
    }
    let warm: Vec<&(u64, u64, usize)> = samples.iter().filter(|s| s.0 >= total / 10).collect();
    if let (Some(first), Some(last)) = (warm.first(), warm.last()) {
        let max_rss = warm.iter().map(|s| s.1).max().unwrap_or(0);
        let min_rss = warm.iter().map(|s| s.1).min().unwrap_or(0);
        let max_fd = warm.iter().map(|s| s.2).max().unwrap_or(0);
        let min_fd = warm.iter().map(|s| s.2).min().unwrap_or(0);
        println!(
            "gateway RSS after warm-up (from {} requests): first {:.1} MiB, last {:.1} MiB, min {:.1}, max {:.1} MiB (spread {:.1} MiB)",
            first.0,
            mib(first.1),
            mib(last.1),
            mib(min_rss),
            mib(max_rss),
            mib(max_rss - min_rss)
        );
        println!(
            "gateway open fds after warm-up: min {min_fd}, max {max_fd}; at the end {}",
            last.2
        );
    }
    let unexpected = shared.tally.unexpected.load(Ordering::Relaxed);
    println!("unexpected answers: {unexpected}");
    if unexpected > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// Takes one request from the budget; `false` once it is spent.
fn take(shared: &Shared) -> bool {
    shared.done.fetch_add(1, Ordering::Relaxed) < shared.args.requests
}

async fn worker(w: usize, shared: &Shared) -> Result<(), reqwest::Error> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(4)
        .no_proxy()
        .build()?;
    let base = &shared.args.gateway;
    let tally = &shared.tally;
    let mut n: u64 = 0;
    'sessions: loop {
        let Some(cookie) = login(&client, shared).await else {
            if shared.done.load(Ordering::Relaxed) >= shared.args.requests {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        shared.logins.fetch_add(1, Ordering::Relaxed);
        for _ in 0..shared.args.session_requests {
            if !take(shared) {
                break 'sessions;
            }
            n += 1;
            let token = &shared.args.tokens[(n as usize + w) % shared.args.tokens.len()];
            let (kind, req, want) = match n % 10 {
                0..=4 => (
                    "app",
                    client
                        .get(format!("{base}/app/item/{n}"))
                        .header(COOKIE, &cookie),
                    200,
                ),
                5..=6 => (
                    "api",
                    client
                        .get(format!("{base}/api/v1/things?page={n}"))
                        .header(AUTHORIZATION, format!("Bearer {token}")),
                    200,
                ),
                7..=8 => (
                    "forward-auth",
                    client
                        .get(format!("{base}/oauth2/auth"))
                        .header(COOKIE, &cookie),
                    202,
                ),
                _ => (
                    "userinfo",
                    client
                        .get(format!("{base}/oauth2/userinfo"))
                        .header(COOKIE, &cookie),
                    200,
                ),
            };
            check(tally, kind, req.send().await, want).await;
            if n % 10 == 9 {
                // Not authenticated: outside the request budget.
                let resp = client.get(format!("{base}/public/asset.css")).send().await;
                check(tally, "public (not counted)", resp, 200).await;
            }
        }
        // Sign out; the old cookie must be refused afterwards.
        let resp = client
            .get(format!("{base}/oauth2/sign_out"))
            .header(COOKIE, &cookie)
            .send()
            .await;
        check(tally, "sign-out", resp, 302).await;
        let resp = client
            .get(format!("{base}/app/after-sign-out"))
            .header(COOKIE, &cookie)
            .send()
            .await;
        check(tally, "old cookie after sign-out", resp, 401).await;
    }
    Ok(())
}

/// Counts the answer; the body is read to its end (keep-alive).
async fn check(
    tally: &Tally,
    kind: &str,
    resp: Result<reqwest::Response, reqwest::Error>,
    want: u16,
) -> Option<reqwest::Response> {
    match resp {
        Ok(resp) => {
            let status = resp.status().as_u16();
            tally.count(format!("{kind} {status}"), status == want);
            Some(resp)
        }
        Err(e) => {
            let what = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "transport"
            };
            tally.count(format!("{kind} error: {what}"), false);
            None
        }
    }
}

/// The `name=value` pairs of a response's `Set-Cookie` lines with a value.
fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|l| l.split(';').next())
        .filter(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .map(str::to_owned)
        .collect()
}

fn location(resp: &reqwest::Response) -> Option<String> {
    let loc = resp.headers().get(LOCATION)?.to_str().ok()?;
    Some(resp.url().join(loc).ok()?.to_string())
}

/// Logs in: `/oauth2/start` → provider (auto-login) → `/oauth2/callback`.
/// Returns the `Cookie` header value of the session. Login requests are
/// counted by kind but not against the request budget.
async fn login(client: &reqwest::Client, shared: &Shared) -> Option<String> {
    let base = &shared.args.gateway;
    let tally = &shared.tally;
    let start = client
        .get(format!("{base}/oauth2/start?rd=/app/"))
        .send()
        .await;
    let start = check(tally, "login start", start, 302).await?;
    let login_cookies = set_cookies(&start).join("; ");
    let authorize = location(&start)?;
    let at_op = client.get(authorize).send().await;
    let at_op = check(tally, "login authorize (provider)", at_op, 302).await?;
    let callback = location(&at_op)?;
    let done = client
        .get(callback)
        .header(COOKIE, login_cookies)
        .send()
        .await;
    let done = check(tally, "login callback", done, 302).await?;
    let session: Vec<String> = set_cookies(&done)
        .into_iter()
        .filter(|c| c.starts_with("oidc-gateway="))
        .collect();
    if session.is_empty() {
        tally.count("login callback without session cookie".into(), false);
        return None;
    }
    Some(session.join("; "))
}

// ===== slowloris =====

async fn slowloris(
    addr: SocketAddr,
    pid: u32,
    conns: usize,
    hold: Duration,
    tokens: Vec<String>,
) -> Result<(), BoxError> {
    let url = format!("http://{addr}/api/slowloris-meanwhile");
    let token = tokens[0].clone();
    let kept = reqwest::Client::builder().no_proxy().build()?;
    let authed = |client: reqwest::Client, url: String, token: String| async move {
        let t = Instant::now();
        let resp = client
            .get(url)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        match resp {
            Ok(r) if r.status() == 200 => {
                let _ = r.bytes().await;
                Ok(t.elapsed())
            }
            Ok(r) => Err(format!("status {}", r.status())),
            Err(e) => Err(e.to_string()),
        }
    };
    authed(kept.clone(), url.clone(), token.clone()).await?;
    let (rss_before, fds_before) = (rss_kib(pid), fds(pid));

    let open = Arc::new(AtomicUsize::new(0));
    let reconnects = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + hold;
    let mut tasks = Vec::with_capacity(conns);
    for i in 0..conns {
        let open = open.clone();
        let reconnects = reconnects.clone();
        tasks.push(tokio::spawn(async move {
            let mut first = true;
            while Instant::now() < stop_at {
                let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                if !first {
                    reconnects.fetch_add(1, Ordering::Relaxed);
                }
                first = false;
                open.fetch_add(1, Ordering::Relaxed);
                let head = format!("GET /public/{i} HTTP/1.1\r\nHost: gw\r\n");
                let mut alive = s.write_all(head.as_bytes()).await.is_ok();
                let mut n = 0;
                while alive && Instant::now() < stop_at {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    n += 1;
                    alive = s
                        .write_all(format!("X-Slow-{n}: 1\r\n").as_bytes())
                        .await
                        .is_ok()
                        && !peer_closed(&s);
                }
                open.fetch_sub(1, Ordering::Relaxed);
            }
        }));
    }

    // The probes run on their own thread and runtime: their latency is the
    // gateway's, not this process's scheduling of the slow connections.
    let probe_open = open.clone();
    let (url2, token2) = (url.clone(), token.clone());
    let probe = tokio::task::spawn_blocking(move || {
        probe(
            &url2,
            &token2,
            stop_at,
            pid,
            rss_before,
            fds_before,
            &probe_open,
        )
    })
    .await??;
    let Probe {
        mut kept_lat,
        mut new_lat,
        failures,
        max_rss,
        max_fds,
        max_open,
    } = probe;
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_after, fds_after) = (rss_kib(pid), fds(pid));
    let stats = |v: &mut Vec<Duration>| -> String {
        if v.is_empty() {
            return "none".into();
        }
        v.sort();
        let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        format!(
            "n {} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            v.len(),
            p(0.5),
            p(0.99),
            p(1.0)
        )
    };
    println!();
    println!(
        "slowloris: {conns} connections held for {} s (max open at once {max_open}, {} reconnects after the gateway closed one)",
        hold.as_secs(),
        reconnects.load(Ordering::Relaxed)
    );
    println!(
        "gateway RSS: before {:.1} MiB, during (max) {:.1} MiB, after {:.1} MiB",
        mib(rss_before),
        mib(max_rss),
        mib(rss_after)
    );
    println!("gateway fds: before {fds_before}, during (max) {max_fds}, after {fds_after}");
    println!(
        "authenticated request, kept-alive connection: {}",
        stats(&mut kept_lat)
    );
    println!(
        "authenticated request, new connection:        {}",
        stats(&mut new_lat)
    );
    println!("authenticated request failures: {}", failures.len());
    for f in failures.iter().take(10) {
        println!("  {f}");
    }
    Ok(())
}

/// What the probes measured during the slowloris run.
struct Probe {
    kept_lat: Vec<Duration>,
    new_lat: Vec<Duration>,
    failures: Vec<String>,
    max_rss: u64,
    max_fds: usize,
    max_open: usize,
}

/// Until `stop_at`: an authenticated request every 250 ms on a kept-alive
/// connection, one per second on a new connection, and the gateway's RSS
/// and descriptors.
fn probe(
    url: &str,
    token: &str,
    stop_at: Instant,
    pid: u32,
    rss_before: u64,
    fds_before: usize,
    open: &AtomicUsize,
) -> Result<Probe, BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let authed = |client: reqwest::Client| async move {
            let t = Instant::now();
            let resp = client
                .get(url)
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            match resp {
                Ok(r) if r.status() == 200 => {
                    let _ = r.bytes().await;
                    Ok(t.elapsed())
                }
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        };
        let kept = reqwest::Client::builder().no_proxy().build()?;
        let _ = authed(kept.clone()).await;
        let mut kept_lat = Vec::new();
        let mut new_lat = Vec::new();
        let mut failures = Vec::new();
        let mut max_rss = rss_before;
        let mut max_fds = fds_before;
        let mut max_open = 0;
        let mut tick = 0u64;
        println!("{:>5} {:>6} {:>9} {:>6}", "t_s", "open", "rss_mib", "fds");
        let begin = Instant::now();
        while Instant::now() < stop_at {
            tokio::time::sleep(Duration::from_millis(250)).await;
            tick += 1;
            match authed(kept.clone()).await {
                Ok(t) => kept_lat.push(t),
                Err(e) => failures.push(format!("kept-alive: {e}")),
            }
            if tick % 4 == 0 {
                // A user arriving now: a new connection.
                let fresh = reqwest::Client::builder()
                    .no_proxy()
                    .pool_max_idle_per_host(0)
                    .build()?;
                match authed(fresh).await {
                    Ok(t) => new_lat.push(t),
                    Err(e) => failures.push(format!("new connection: {e}")),
                }
                let (rss, fd, o) = (rss_kib(pid), fds(pid), open.load(Ordering::Relaxed));
                max_rss = max_rss.max(rss);
                max_fds = max_fds.max(fd);
                max_open = max_open.max(o);
                if tick % 20 == 0 {
                    println!(
                        "{:>5.0} {:>6} {:>9.1} {:>6}",
                        begin.elapsed().as_secs_f64(),
                        o,
                        mib(rss),
                        fd
                    );
                }
            }
        }
        Ok(Probe {
            kept_lat,
            new_lat,
            failures,
            max_rss,
            max_fds,
            max_open,
        })
    })
}

/// Whether the peer closed the connection (a read would return EOF or an error).
fn peer_closed(s: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 256];
    match s.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}
