//! Memory figures for the performance issue: RSS idle, per memory-store
//! session (10k and 100k sessions with realistic identities and precomputed
//! identity headers), and after 1M distinct cached bearer tokens in a
//! `BearerCache` of the default capacity (which must stay bounded).
//!
//! ```sh
//! cargo run --release --example bench_memory
//! ```

use oidc_gateway::bench_internals::{now_secs, BearerCache, IdentityHeaders, Principal};
use oidc_gateway::config::HeaderNamesConfig;
use oidc_gateway::identity::{Identity, IdentitySource};
use oidc_gateway::secret::Secret;
use oidc_gateway::session::{new_session_id, MemoryStore, Session, SessionStore};
use std::sync::Arc;
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn identity(i: usize, source: IdentitySource, exp: u64) -> Identity {
    Identity {
        subject: format!("3f1c9a7e-{i:08x}-4b2d-9e11-5a6b7c8d9e0f"),
        email: Some(format!("user{i}@example.com")),
        email_verified: Some(true),
        preferred_username: Some(format!("user{i}")),
        groups: vec!["users".into(), "engineering".into()],
        name: Some(format!("User Number {i}")),
        issuer: "https://idp.example.com".into(),
        expires_at: Some(exp),
        source,
        claims: Default::default(),
    }
}

fn main() -> Result<(), BoxError> {
    // Each figure in a fresh process: freed memory is not returned to the OS.
    let scenario = std::env::args().nth(1);
    let Some(scenario) = scenario else {
        let exe = std::env::current_exe()?;
        for s in [
            "idle",
            "sessions-10000",
            "sessions-100000",
            "sessions-100000-no-id-token",
            "bearer",
        ] {
            let status = std::process::Command::new(&exe).arg(s).status()?;
            if !status.success() {
                return Err(format!("{s}: {status}").into());
            }
        }
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(&scenario))
}

fn session(ids: &IdentityHeaders, i: usize, exp: u64, id_token: Option<&str>) -> Session {
    let identity = identity(i, IdentitySource::Session, exp);
    let headers = ids.precompute(&identity);
    let mut s = Session::new(Arc::new(identity), headers, now_secs(), exp);
    s.id_token = id_token.map(Secret::new);
    s.sid = Some(format!("{i:08x}-5d1c-4e2f-8a3b-9c0d1e2f3a4b"));
    s
}

async fn run(scenario: &str) -> Result<(), BoxError> {
    let ids = IdentityHeaders::new(&HeaderNamesConfig::default())?;
    let exp = now_secs() + 8 * 3600;
    let idle = rss();
    if scenario == "idle" {
        println!("rss idle (this process, runtime started): {}", mib(idle));
        return Ok(());
    }
    // A typical RS256 ID token is ~900 bytes; sessions keep it for the
    // id_token_hint of RP-initiated logout.
    let id_token = "e".repeat(900);
    if let Some(n) = scenario.strip_prefix("sessions-") {
        let (n, with_token) = match n.strip_suffix("-no-id-token") {
            Some(n) => (n.parse::<usize>()?, false),
            None => (n.parse::<usize>()?, true),
        };
        let store = MemoryStore::new(1_000_000, Duration::from_secs(8 * 3600));
        let before = rss();
        for i in 0..n {
            let s = session(&ids, i, exp, with_token.then_some(id_token.as_str()));
            let (_, key) = new_session_id();
            store.save(key, Arc::new(s)).await?;
        }
        let count = store.len();
        let after = rss();
        let grown = after.saturating_sub(before);
        println!(
            "memory store, {count} sessions{}: rss {} (+{}), {} bytes/session",
            if with_token {
                " (with a 900-byte id_token)"
            } else {
                " (no id_token)"
            },
            mib(after),
            mib(grown),
            grown / count.max(1)
        );
        return Ok(());
    }
    let capacity = oidc_gateway::config::BearerConfig::default().cache_capacity;
    let cache = BearerCache::new(capacity);
    let before = rss();
    let mut at_capacity = 0;
    for i in 0..1_000_000usize {
        let identity = identity(i, IdentitySource::Bearer, exp);
        let headers = ids.precompute(&identity);
        let p = Arc::new(Principal {
            identity: Arc::new(identity),
            headers,
        });
        cache.insert(BearerCache::key(&format!("token-{i}")), p);
        if i + 1 == capacity as usize {
            at_capacity = rss();
        }
    }
    let n = cache.len();
    let after = rss();
    println!(
        "bearer cache (capacity {capacity}), 1M distinct tokens: {n} entries; rss +{} at {capacity} tokens, +{} after 1M; bounded: {}",
        mib(at_capacity.saturating_sub(before)),
        mib(after.saturating_sub(before)),
        n <= capacity + capacity / 10
    );
    Ok(())
}
