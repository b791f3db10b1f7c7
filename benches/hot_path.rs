//! Micro-benchmarks of the per-request hot path.
//!
//! ```sh
//! cargo bench --bench hot_path            # all
//! cargo bench --bench hot_path -- layer   # a group
//! ```
//!
//! Tokens are minted by the in-process development provider (loopback);
//! the verifier loads its keys from it once, before measuring.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use futures_util::FutureExt;
use http::{header, HeaderMap, HeaderValue, Request, Response};
use http_body_util::Empty;
use oidc_gateway::bench_internals::{
    normalize_path, now_secs, BearerCache, IdentityHeaders, Principal, Provider, ProviderHttp,
    ProviderRules, RouteTable, TokenVerifier,
};
use oidc_gateway::config::{GatewayConfig, ProcessEnv, SigningAlgorithm};
use oidc_gateway::devtools::provider::{DevProvider, SigningAlg};
use oidc_gateway::identity::IdentitySource;
use oidc_gateway::session::{key_for_cookie, new_session_id, MemoryStore, Session, SessionStore};
use oidc_gateway::{Identity, OidcLayer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// Everything the benchmarks share: a runtime, a provider, tokens.
struct Env {
    rt: tokio::runtime::Runtime,
    op: DevProvider,
    config: GatewayConfig,
    rs256: String,
    es256: String,
    id_token: String,
}

fn opts() -> Env {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let op = rt.block_on(async {
        DevProvider::builder()
            .client_id("bench")
            .client_secret("bench-secret")
            .access_token_ttl(Duration::from_secs(24 * 3600))
            .auto_login("alice")
            .start()
            .await
            .unwrap()
    });
    op.set_user_claims(
        "alice",
        serde_json::json!({"groups": ["users", "engineering", "oncall"], "name": "Alice Liddell"}),
    );
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:8080"
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:9"
[provider]
issuer = "{issuer}"
client_id = "bench"
client_secret = "bench-secret"
[session]
secret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
[[route]]
path = "/public/"
auth = "none"
[[route]]
path = "/admin/"
allowed_groups = ["admins"]
[[route]]
path = "/api/v2/"
allowed_email_domains = ["example.com"]
"#,
        issuer = op.issuer()
    );
    let config = GatewayConfig::from_toml_str(&toml, &ProcessEnv).unwrap();
    op.set_signing_alg(SigningAlg::Rs256);
    let rs256 = op.mint_access_token(serde_json::json!({"sub": "alice"}));
    let id_token = op.mint_id_token(serde_json::json!({"sub": "alice", "nonce": "n0nce"}));
    op.set_signing_alg(SigningAlg::Es256);
    let es256 = op.mint_access_token(serde_json::json!({"sub": "alice"}));
    op.set_signing_alg(SigningAlg::Rs256);
    Env {
        rt,
        op,
        config,
        rs256,
        es256,
        id_token,
    }
}

fn identity(source: IdentitySource) -> Identity {
    Identity {
        subject: "3f1c9a7e-0000-4b2d-9e11-5a6b7c8d9e0f".into(),
        email: Some("alice@example.com".into()),
        email_verified: Some(true),
        preferred_username: Some("alice".into()),
        groups: vec!["users".into(), "engineering".into()],
        name: Some("Alice Liddell".into()),
        issuer: "https://idp.example.com".into(),
        expires_at: Some(now_secs() + 3600),
        source,
        claims: Default::default(),
    }
}

/// Headers of a typical browser request.
fn browser_headers(cookie: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("app.example.com"));
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static(
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
    );
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    );
    h.insert(
        header::ACCEPT_LANGUAGE,
        HeaderValue::from_static("en-US,en;q=0.5"),
    );
    h.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("gzip, deflate, br, zstd"),
    );
    h.insert(
        header::REFERER,
        HeaderValue::from_static("https://app.example.com/"),
    );
    h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
    h.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
    h
}

fn session_and_bearer(c: &mut Criterion) {
    let store = MemoryStore::new(100_000, Duration::from_secs(3600));
    let ids = IdentityHeaders::new(&Default::default()).unwrap();
    let (cookie, key) = new_session_id();
    let id = identity(IdentitySource::Session);
    let session = Session::new(
        Arc::new(id.clone()),
        ids.precompute(&id),
        now_secs(),
        now_secs() + 3600,
    );
    store
        .save(key, Arc::new(session))
        .now_or_never()
        .unwrap()
        .unwrap();
    // Other sessions, so the lookup is not in a one-entry map.
    for _ in 0..10_000 {
        let (_, k) = new_session_id();
        let id = identity(IdentitySource::Session);
        let s = Session::new(
            Arc::new(id.clone()),
            ids.precompute(&id),
            0,
            now_secs() + 3600,
        );
        store.save(k, Arc::new(s)).now_or_never().unwrap().unwrap();
    }
    let mut g = c.benchmark_group("session");
    g.bench_function("key_for_cookie", |b| {
        b.iter(|| key_for_cookie(black_box(&cookie)))
    });
    g.bench_function("cookie_decode+memory_store_load", |b| {
        b.iter(|| {
            let key = key_for_cookie(black_box(&cookie)).unwrap();
            black_box(store.load(&key))
        })
    });
    g.finish();

    let cache = BearerCache::new(100_000);
    let token = "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6InJzYS0xIn0.".to_string()
        + &"x".repeat(700);
    let id = identity(IdentitySource::Bearer);
    cache.insert(
        BearerCache::key(&token),
        Arc::new(Principal {
            headers: ids.precompute(&id),
            identity: Arc::new(id),
        }),
    );
    let mut g = c.benchmark_group("bearer_cached");
    g.bench_function("key+get (760-byte token)", |b| {
        b.iter(|| black_box(cache.get(&BearerCache::key(black_box(&token)))))
    });
    g.finish();
}

fn tokens(c: &mut Criterion) {
    let env = opts();
    let provider = env.rt.block_on(async {
        let p = &env.config.provider;
        let http = ProviderHttp::new(None, p.http_timeout, p.max_response_bytes).unwrap();
        let provider = Arc::new(Provider::new(
            ProviderRules::discovered(&env.config.provider),
            http,
        ));
        provider.load().await.unwrap();
        provider
    });
    let algs = [SigningAlgorithm::RS256, SigningAlgorithm::ES256];
    let verifier = TokenVerifier::new(provider, &algs, "bench", &["bench".to_string()], 60);
    let mut g = c.benchmark_group("token");
    g.bench_function("verify_access_token RS256 (uncached)", |b| {
        b.to_async(&env.rt).iter(|| async {
            verifier
                .verify_access_token(black_box(&env.rs256))
                .await
                .unwrap()
        })
    });
    g.bench_function("verify_access_token ES256 (uncached)", |b| {
        b.to_async(&env.rt).iter(|| async {
            verifier
                .verify_access_token(black_box(&env.es256))
                .await
                .unwrap()
        })
    });
    g.bench_function("verify_id_token RS256", |b| {
        b.to_async(&env.rt).iter(|| async {
            verifier
                .verify_id_token(black_box(&env.id_token), "n0nce")
                .await
                .unwrap()
        })
    });
    g.finish();
    drop(env.op);
}

fn headers_and_routes(c: &mut Criterion) {
    let ids = IdentityHeaders::new(&Default::default()).unwrap();
    let pre = ids.precompute(&identity(IdentitySource::Session));
    let base = browser_headers("a=1; oidc-gateway=abc; b=2");
    let mut g = c.benchmark_group("identity_headers");
    g.bench_function("strip", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |h| ids.strip(black_box(h)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("apply_precomputed", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |h| ids.apply_precomputed(black_box(&pre), h),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("strip+apply_precomputed", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |h| {
                ids.strip(h);
                ids.apply_precomputed(black_box(&pre), h)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("precompute (login)", |b| {
        let id = identity(IdentitySource::Session);
        b.iter(|| black_box(ids.precompute(black_box(&id))))
    });
    g.finish();

    let env_routes = {
        let toml = r#"
[server]
public_url = "http://127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:9"
[provider]
issuer = "http://127.0.0.1:1"
client_id = "bench"
client_secret = "x"
[session]
secret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
[[route]]
path = "/public/"
auth = "none"
[[route]]
path = "/admin/"
allowed_groups = ["admins"]
[[route]]
path = "/api/v2/"
allowed_email_domains = ["example.com"]
[[route]]
path = "/static"
auth = "none"
"#;
        GatewayConfig::from_toml_str(toml, &ProcessEnv).unwrap()
    };
    let table = RouteTable::new(&env_routes.routes);
    let mut g = c.benchmark_group("routes");
    for path in [
        "/app/dashboard/settings",
        "/public/css/site.css",
        "/a/./b//c/%7Euser/../d",
    ] {
        g.bench_function(format!("normalize+match {path}"), |b| {
            b.iter(|| {
                let p = normalize_path(black_box(path)).unwrap();
                black_box(table.match_path(&p).auth)
            })
        });
    }
    g.finish();
}

type Body = Empty<Bytes>;

fn noop_service() -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<Body>, Infallible>>,
> + Clone {
    tower::service_fn(|_req: Request<Body>| std::future::ready(Ok(Response::new(Body::new()))))
}

/// Logs `alice` in through the layer and the provider; returns the session cookie.
async fn login<S>(svc: &S) -> String
where
    S: tower::Service<Request<Body>, Response = Response<oidc_gateway::body::ResponseBody>> + Clone,
    S::Error: std::fmt::Debug,
{
    let start = svc
        .clone()
        .oneshot(
            Request::get("/oauth2/start?rd=/app/")
                .body(Body::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let authorize = start.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    let login_cookie = start.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client.get(&authorize).send().await.unwrap();
    let callback = resp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    let url = url::Url::parse(&callback).unwrap();
    let pq = format!("{}?{}", url.path(), url.query().unwrap_or(""));
    let done = svc
        .clone()
        .oneshot(
            Request::get(pq)
                .header(header::COOKIE, login_cookie)
                .body(Body::new())
                .unwrap(),
        )
        .await
        .unwrap();
    done.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("oidc-gateway="))
        .unwrap_or_else(|| panic!("no session cookie: {:?}", done.headers()))
}

fn layer(c: &mut Criterion) {
    let env = opts();
    let (svc, cookie) = env.rt.block_on(async {
        let layer = OidcLayer::builder(env.config.oidc())
            .metrics(Arc::new(oidc_gateway::metrics::Metrics::new()))
            .build()
            .unwrap();
        for _ in 0..500 {
            if layer.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(layer.is_ready());
        let svc = tower_layer::Layer::layer(&layer, noop_service());
        let cookie = login(&svc).await;
        // Validate the bearer token once so that it is cached.
        let warm = svc
            .clone()
            .oneshot(
                Request::get("/api/x")
                    .header(header::AUTHORIZATION, format!("Bearer {}", env.rs256))
                    .body(Body::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(warm.status(), 200);
        (svc, cookie)
    });
    let session_req = {
        let mut h = browser_headers(&format!("_ga=GA1.1.123; {cookie}; theme=dark"));
        h.remove(header::HOST);
        h
    };
    let bearer = format!("Bearer {}", env.rs256);
    let _guard = env.rt.enter();
    let mut g = c.benchmark_group("layer");
    let mut case = |name: &str, make: &dyn Fn() -> Request<Body>| {
        let check = svc.clone().oneshot(make()).now_or_never().unwrap().unwrap();
        assert_eq!(check.status(), 200, "{name}");
        g.bench_function(name, |b| {
            b.iter_batched(
                make,
                |req| {
                    svc.clone()
                        .oneshot(req)
                        .now_or_never()
                        .expect("synchronous path")
                        .unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    };
    case("session cookie", &|| {
        let mut r = Request::get("http://app.example.com/app/dashboard")
            .body(Body::new())
            .unwrap();
        *r.headers_mut() = session_req.clone();
        r
    });
    case("cached bearer", &|| {
        Request::get("http://app.example.com/api/items?page=2")
            .header(header::AUTHORIZATION, &bearer)
            .header(header::ACCEPT, "application/json")
            .body(Body::new())
            .unwrap()
    });
    case("public route", &|| {
        Request::get("http://app.example.com/public/css/site.css")
            .header(header::ACCEPT, "text/css,*/*;q=0.1")
            .body(Body::new())
            .unwrap()
    });
    g.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = session_and_bearer, headers_and_routes, tokens, layer
);
criterion_main!(benches);
