//! In-process emulators of the three provider dialects of
//! `../shared/providers.md` §4, each on `127.0.0.1:0`:
//!
//! - [`janrain::Capture`]: Akamai Identity Cloud / Janrain Capture
//!   (`/oauth/signin`, `/oauth/token`, `/entity`, `/access/getAuthorizationCode`);
//! - [`idcs::Idcs`]: an Oracle IDCS tenant (discovery with the global
//!   issuer, `/oauth2/v1/*`, `/admin/v1/SigningCert/jwk`);
//! - [`oauth2::SeedC`]: the seed-C OAuth 2.0 provider (`/oauth/authorize`,
//!   `/auth/token`, `/userinfo`).
//!
//! Every emulator logs users in without a form (the test is the browser),
//! counts what it receives and answers with its dialect's error shapes.
#![allow(dead_code, unreachable_pub)]

pub mod idcs;
pub mod janrain;
pub mod oauth2;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// A request, fully read.
#[derive(Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    /// Query parameters, then (for form bodies) body parameters.
    pub fn params(&self) -> Vec<(String, String)> {
        let mut all = self.query.clone();
        all.extend(self.form());
        all
    }

    /// Form body parameters (empty unless form-encoded).
    pub fn form(&self) -> Vec<(String, String)> {
        let is_form = self
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Vec::new();
        }
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `(id, secret)` of an `Authorization: Basic` header (form-decoded).
    pub fn basic_auth(&self) -> Option<(String, String)> {
        let b64 = self.header("authorization")?.strip_prefix("Basic ")?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (id, secret) = s.split_once(':')?;
        let dec = |v: &str| -> String {
            form_urlencoded::parse(format!("x={v}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Some((dec(id), dec(secret)))
    }

    /// The token of `Authorization: <scheme> <token>`.
    pub fn auth_token(&self, scheme: &str) -> Option<String> {
        let v = self.header("authorization")?;
        let (s, t) = v.split_once(' ')?;
        s.eq_ignore_ascii_case(scheme).then(|| t.trim().to_string())
    }
}

/// First value of `name` in `params`.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub type Resp = Response<axum::body::Body>;

pub fn json(status: u16, value: &Value) -> Resp {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(axum::body::Body::from(value.to_string()))
        .unwrap()
}

pub fn redirect(location: &str) -> Resp {
    Response::builder()
        .status(302)
        .header("location", location)
        .body(axum::body::Body::empty())
        .unwrap()
}

pub fn html(status: u16, text: &str) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .body(axum::body::Body::from(format!(
            "<!doctype html><title>emulator</title><p>{text}</p>"
        )))
        .unwrap()
}

/// `url` with `pairs` appended to its query (keeping the query it has).
pub fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return url.to_string();
    }
    let mut u = url::Url::parse(url).unwrap();
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    u.into()
}

/// A random URL-safe token.
pub fn token(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A server on 127.0.0.1:0; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Binds 127.0.0.1:0 and serves `handler`.
    pub async fn start<F, Fut>(handler: F) -> Server
    where
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Resp> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(handler);
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let handler = handler.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let query = parts
                    .uri
                    .query()
                    .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                    .unwrap_or_default();
                handler(Req {
                    method: parts.method,
                    path: parts.uri.path().to_string(),
                    query,
                    headers: parts.headers,
                    body,
                })
                .await
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { addr, task }
    }
}

// ===== RSA signing for the OIDC-ish emulators =====

/// The test RSA key (public knowledge), its JWK and a self-signed
/// certificate for `x5c` / `x5t` / `x5t#S256`.
pub struct RsaSigner {
    pub kid: String,
    pub encoding: jsonwebtoken::EncodingKey,
    pub jwk: Value,
    pub x5t: String,
    pub x5t_s256: String,
}

impl RsaSigner {
    pub fn test_key(kid: &str) -> RsaSigner {
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::traits::PublicKeyParts;
        use sha2::Digest;
        let pem = oidc_gateway::devtools::provider::TEST_RSA_PRIVATE_KEY_PEM;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let n = b64(&key.n().to_bytes_be());
        let e = b64(&key.e().to_bytes_be());
        let kp = rcgen::KeyPair::from_pem_and_sign_algo(pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["idcs-emulator".to_string()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let der = cert.der().to_vec();
        let x5t = b64(&sha1::Sha1::digest(&der));
        let x5t_s256 = b64(&sha2::Sha256::digest(&der));
        let jwk = serde_json::json!({
            "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": n, "e": e,
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&der)],
            "x5t": x5t, "x5t#S256": x5t_s256, "key_ops": ["verify"],
        });
        RsaSigner {
            kid: kid.to_string(),
            encoding: jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            jwk,
            x5t,
            x5t_s256,
        }
    }

    /// RS256 with the given header fields.
    pub fn sign(&self, kid: Option<&str>, thumbprints: bool, claims: &Value) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = kid.map(str::to_string);
        if thumbprints {
            h.x5t = Some(self.x5t.clone());
            h.x5t_s256 = Some(self.x5t_s256.clone());
        }
        jsonwebtoken::encode(&h, claims, &self.encoding).unwrap()
    }
}

/// A token whose signature no longer verifies.
pub fn corrupt(token: &str) -> String {
    oidc_gateway::devtools::provider::corrupt_signature(token)
}
