//! Memory figures for the performance issue: RSS idle, per memory-store
//! session (10k and 100k sessions with realistic identities and precomputed
//! identity headers), and after 1M distinct cached bearer tokens in a
//! `BearerCache` of the default capacity (which must stay bounded).
//!
//! ```sh
//! cargo run --release --example bench_memory
//! ```

use oidc_gateway::auth::bearer::{BearerCache, Principal};
use oidc_gateway::auth::identity::{IdentityHeaders, IdentitySource};
use oidc_gateway::auth::session::{new_session_id, MemoryStore, Session, SessionStore};
use oidc_gateway::auth::token::now_secs;
use oidc_gateway::auth::Identity;
use oidc_gateway::config::HeaderNamesConfig;
use oidc_gateway::secret::Secret;
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
    }
}

fn main() -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> Result<(), BoxError> {
    let ids = IdentityHeaders::new(&HeaderNamesConfig::default())?;
    let exp = now_secs() + 8 * 3600;
    let idle = rss();
    println!("rss_idle {} ({idle} bytes)", mib(idle));

    // A realistic ID token is ~900 bytes; sessions keep it for logout.
    let id_token = "e".repeat(900);
    for target in [10_000usize, 100_000] {
        let store = MemoryStore::new(1_000_000, Duration::from_secs(8 * 3600));
        let before = rss();
        for i in 0..target {
            let identity = identity(i, IdentitySource::Session, exp);
            let headers = ids.precompute(&identity);
            let session = Session {
                identity: Arc::new(identity),
                headers,
                created_at: now_secs(),
                expires_at: exp,
                id_token: Some(Secret::new(id_token.clone())),
                sid: Some(format!("sid-{i:016x}")),
            };
            let (_, key) = new_session_id();
            store.save(key, Arc::new(session)).await?;
        }
        let n = store.len();
        let after = rss();
        let per = after.saturating_sub(before) / n.max(1);
        println!(
            "sessions {n}: rss {} (+{}), {per} bytes/session (with a 900-byte id_token)",
            mib(after),
            mib(after.saturating_sub(before))
        );
        drop(store);
    }
    // Without the ID token (providers that need no id_token_hint at logout).
    {
        let store = MemoryStore::new(1_000_000, Duration::from_secs(8 * 3600));
        let before = rss();
        for i in 0..100_000 {
            let identity = identity(i, IdentitySource::Session, exp);
            let headers = ids.precompute(&identity);
            let session = Session {
                identity: Arc::new(identity),
                headers,
                created_at: now_secs(),
                expires_at: exp,
                id_token: None,
                sid: Some(format!("sid-{i:016x}")),
            };
            let (_, key) = new_session_id();
            store.save(key, Arc::new(session)).await?;
        }
        let n = store.len();
        let after = rss();
        println!(
            "sessions {n} (no id_token): {} bytes/session",
            after.saturating_sub(before) / n.max(1)
        );
    }

    let capacity = oidc_gateway::config::BearerConfig::default().cache_capacity;
    let cache = BearerCache::new(capacity);
    let before = rss();
    for i in 0..1_000_000usize {
        let identity = identity(i, IdentitySource::Bearer, exp);
        let headers = ids.precompute(&identity);
        let p = Arc::new(Principal {
            identity: Arc::new(identity),
            headers,
        });
        cache.insert(BearerCache::key(&format!("token-{i}")), p);
    }
    let n = cache.len();
    let after = rss();
    println!(
        "bearer 1M distinct tokens, capacity {capacity}: {n} entries, rss {} (+{}), bounded: {}",
        mib(after),
        mib(after.saturating_sub(before)),
        n <= capacity + capacity / 10
    );
    Ok(())
}
