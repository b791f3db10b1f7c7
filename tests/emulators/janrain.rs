//! Janrain Capture emulator (providers.md §1A, §4 `janrain_capture`).
//!
//! | endpoint | |
//! |---|---|
//! | `GET /oauth/signin`, `GET /oauth/legacy_register` | 302 `redirect_uri` + `code` (query kept), single use, 30 s |
//! | `POST\|GET /oauth/token` | `authorization_code` / `refresh_token`; Basic, body credentials or janrain-signed (HMAC and `Date` verified) |
//! | `POST /entity` | `Authorization: OAuth <at>` (or Bearer) → `{result:{..camelCase..}, stat:"ok"}`; code 414 when expired |
//! | `POST /access/getAuthorizationCode` | mints a code server-side: `uuid`, `redirect_uri`, `transaction_state`, `lifetime` (default 30 s) |
//!
//! Errors: `{stat:"error", code, error, error_description, request_token}`
//! with HTTP 400/401 on `/oauth/token` and 200 elsewhere.

use super::{html, json, param, redirect, token, Req, Resp, Server};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const UUID: &str = "5fd8c1c2-4b1a-4f0e-9d3e-0a1b2c3d4e5f";
pub const EMAIL: &str = "alice@example.com";

/// How the last token request authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthSeen {
    Basic,
    Body,
    Signed,
}

struct Code {
    redirect_uri: String,
    expires: Instant,
    transaction_state: Value,
}

#[derive(Default)]
pub struct Counters {
    pub signin: AtomicUsize,
    pub token: AtomicUsize,
    pub token_get: AtomicUsize,
    pub code_grants: AtomicUsize,
    pub refresh_grants: AtomicUsize,
    pub entity: AtomicUsize,
    pub entity_expired: AtomicUsize,
    pub minted: AtomicUsize,
}

#[derive(Default)]
struct State {
    codes: HashMap<String, Code>,
    access: HashMap<String, Instant>,
    refresh: HashMap<String, ()>,
    last_auth: Option<ClientAuthSeen>,
    last_redirect_uri: Option<String>,
    last_transaction_state: Option<Value>,
    errors: Vec<String>,
}

pub struct Shared {
    client_id: String,
    client_secret: String,
    state: Mutex<State>,
    pub counters: Counters,
    /// The next this many access tokens are issued already expired.
    pub expired_access_tokens: AtomicUsize,
}

pub struct Capture {
    pub shared: Arc<Shared>,
    server: Server,
}

impl Capture {
    pub async fn start(client_id: &str, client_secret: &str) -> Capture {
        let shared = Arc::new(Shared {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            state: Mutex::new(State::default()),
            counters: Counters::default(),
            expired_access_tokens: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let server = Server::start(move |req| {
            let s = s.clone();
            async move { s.handle(req) }
        })
        .await;
        Capture { shared, server }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn count(&self, f: impl Fn(&Counters) -> &AtomicUsize) -> usize {
        f(&self.shared.counters).load(Ordering::SeqCst)
    }

    pub fn last_client_auth(&self) -> Option<ClientAuthSeen> {
        self.shared.state.lock().last_auth
    }

    pub fn last_token_redirect_uri(&self) -> Option<String> {
        self.shared.state.lock().last_redirect_uri.clone()
    }

    pub fn last_transaction_state(&self) -> Option<Value> {
        self.shared.state.lock().last_transaction_state.clone()
    }

    /// Why token requests were refused (for failure messages).
    pub fn errors(&self) -> Vec<String> {
        self.shared.state.lock().errors.clone()
    }

    pub fn expire_next_access_tokens(&self, n: usize) {
        self.shared.expired_access_tokens.store(n, Ordering::SeqCst);
    }
}

/// Capture's error body.
pub fn capture_error(http: u16, code: i64, error: &str, description: &str) -> Resp {
    json(
        http,
        &json!({
            "stat": "error",
            "code": code,
            "error": error,
            "error_description": description,
            "request_token": token(12).chars().take(16).collect::<String>(),
        }),
    )
}

/// `%Y-%m-%d %H:%M:%S` (UTC) → Unix seconds.
fn parse_capture_date(s: &str) -> Option<i64> {
    let (date, time) = s.split_once(' ')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 || t.len() != 3 || date.len() != 10 || time.len() != 8 {
        return None;
    }
    let (y, m, day) = (d[0], d[1], d[2]);
    // days_from_civil (Howard Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2])
}

impl Shared {
    fn handle(&self, req: Req) -> Resp {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/oauth/signin") | ("GET", "/oauth/legacy_register") => self.signin(&req),
            ("POST", "/oauth/token") | ("GET", "/oauth/token") => self.token(&req),
            ("POST", "/entity") => self.entity(&req),
            ("POST", "/access/getAuthorizationCode") => self.mint(&req),
            _ => capture_error(200, 100, "missing_argument", "unknown endpoint"),
        }
    }

    fn signin(&self, req: &Req) -> Resp {
        self.counters.signin.fetch_add(1, Ordering::SeqCst);
        let p = req.params();
        if param(&p, "client_id") != Some(&self.client_id) {
            return html(400, "unknown client_id");
        }
        if param(&p, "response_type") != Some("code") {
            return html(400, "response_type must be code");
        }
        if param(&p, "state").is_some() {
            // Capture has no state parameter; the gateway must not rely on it.
            return html(400, "unexpected parameter state");
        }
        let Some(redirect_uri) = param(&p, "redirect_uri") else {
            return html(400, "redirect_uri is required");
        };
        let code = self.new_code(
            redirect_uri,
            Duration::from_secs(30),
            json!({"capture": {"action": "finish-signin", "session_expires": null}}),
        );
        redirect(&super::with_query(redirect_uri, &[("code", &code)]))
    }

    fn new_code(&self, redirect_uri: &str, lifetime: Duration, ts: Value) -> String {
        let code = token(12);
        self.state.lock().codes.insert(
            code.clone(),
            Code {
                redirect_uri: redirect_uri.to_string(),
                expires: Instant::now() + lifetime,
                transaction_state: ts,
            },
        );
        code
    }

    /// Basic, body credentials, or janrain-signed; `Err` when none verifies
    /// (the reason is recorded in `errors`).
    fn client_auth(&self, req: &Req, path: &str) -> Result<ClientAuthSeen, ()> {
        let bad = |why: &str| {
            self.state.lock().errors.push(why.to_string());
            Err(())
        };
        if let Some((id, secret)) = req.basic_auth() {
            if id == self.client_id && secret == self.client_secret {
                return Ok(ClientAuthSeen::Basic);
            }
            return bad("basic credentials wrong");
        }
        if let Some(sig) = req.auth_token("Signature") {
            let Some((id, sig)) = sig.split_once(':') else {
                return bad("signature header malformed");
            };
            if id != self.client_id {
                return bad("signature client_id unknown");
            }
            let Some(date) = req.header("date") else {
                return bad("signature without Date");
            };
            let Some(ts) = parse_capture_date(date) else {
                return bad("Date is not %Y-%m-%d %H:%M:%S");
            };
            if (ts - super::now() as i64).abs() > 300 {
                return bad("Date too far from now");
            }
            let params = req.params();
            let mut data = format!("{path}\n{date}\n");
            let mut kv: Vec<String> = params
                .iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "client_id" | "client_secret" | "access_token")
                })
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            kv.sort();
            for l in kv {
                data.push_str(&l);
                data.push('\n');
            }
            let mut mac =
                Hmac::<sha1::Sha1>::new_from_slice(self.client_secret.as_bytes()).unwrap();
            mac.update(data.as_bytes());
            let expected =
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            if expected != sig {
                return bad("signature does not verify");
            }
            return Ok(ClientAuthSeen::Signed);
        }
        let p = req.params();
        match (param(&p, "client_id"), param(&p, "client_secret")) {
            (Some(id), Some(secret)) if id == self.client_id && secret == self.client_secret => {
                Ok(ClientAuthSeen::Body)
            }
            _ => bad("no valid client credentials"),
        }
    }

    fn issue_tokens(&self, ts: Option<Value>) -> Resp {
        let at = token(16);
        let rt = token(16);
        let expired = self
            .expired_access_tokens
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let expires = if expired {
            Instant::now() - Duration::from_secs(1)
        } else {
            Instant::now() + Duration::from_secs(3600)
        };
        let mut st = self.state.lock();
        st.access.insert(at.clone(), expires);
        st.refresh.insert(rt.clone(), ());
        let mut body = json!({
            "access_token": at,
            "expires_in": 3600,
            "refresh_token": rt,
            "stat": "ok",
        });
        if let Some(ts) = ts {
            body["transaction_state"] = ts;
        }
        json(200, &body)
    }

    fn token(&self, req: &Req) -> Resp {
        self.counters.token.fetch_add(1, Ordering::SeqCst);
        if req.method == http::Method::GET {
            self.counters.token_get.fetch_add(1, Ordering::SeqCst);
        }
        let Ok(seen) = self.client_auth(req, "/oauth/token") else {
            return capture_error(
                401,
                402,
                "invalid_client_credentials",
                "client_id or client_secret are invalid",
            );
        };
        self.state.lock().last_auth = Some(seen);
        let p = req.params();
        match param(&p, "grant_type") {
            Some("authorization_code") => {
                self.counters.code_grants.fetch_add(1, Ordering::SeqCst);
                let (Some(code), Some(redirect_uri)) =
                    (param(&p, "code"), param(&p, "redirect_uri"))
                else {
                    return capture_error(
                        400,
                        100,
                        "missing_argument",
                        "code and redirect_uri are required",
                    );
                };
                self.state.lock().last_redirect_uri = Some(redirect_uri.to_string());
                let Some(entry) = self.state.lock().codes.remove(code) else {
                    let mut r = json!({
                        "argument_name": "authorization_code", "code": 200, "error": "invalid_grant",
                        "error_description": "authorization_code is not valid", "stat": "error",
                        "sub_error": "invalid_argument", "request_token": "abcdefgh01234567",
                    });
                    r["request_token"] = json!(token(12).chars().take(16).collect::<String>());
                    return json(400, &r);
                };
                if entry.expires < Instant::now() {
                    return capture_error(
                        400,
                        415,
                        "authorization_code_expired",
                        "authorization_code is expired",
                    );
                }
                if entry.redirect_uri != redirect_uri {
                    return capture_error(
                        400,
                        420,
                        "redirect_uri_mismatch",
                        "redirect_uri does not match the one used to get the code",
                    );
                }
                self.state.lock().last_transaction_state = Some(entry.transaction_state.clone());
                self.issue_tokens(Some(entry.transaction_state))
            }
            Some("refresh_token") => {
                let Some(rt) = param(&p, "refresh_token") else {
                    return capture_error(
                        400,
                        100,
                        "missing_argument",
                        "refresh_token is required",
                    );
                };
                // Rotating: each refresh token is good once.
                if self.state.lock().refresh.remove(rt).is_none() {
                    return capture_error(400, 200, "invalid_grant", "refresh_token is not valid");
                }
                self.counters.refresh_grants.fetch_add(1, Ordering::SeqCst);
                self.issue_tokens(Some(
                    json!({"capture": {"action": "token_refresh", "session_expires": null}}),
                ))
            }
            _ => capture_error(400, 200, "invalid_argument", "grant_type is not valid"),
        }
    }

    fn entity(&self, req: &Req) -> Resp {
        self.counters.entity.fetch_add(1, Ordering::SeqCst);
        let Some(at) = req.auth_token("OAuth").or_else(|| req.auth_token("Bearer")) else {
            return capture_error(
                200,
                205,
                "invalid_auth_method",
                "use OAuth or Basic authentication",
            );
        };
        let expires = self.state.lock().access.get(&at).copied();
        match expires {
            None => capture_error(200, 200, "invalid_argument", "access_token is not valid"),
            Some(e) if e < Instant::now() => {
                self.counters.entity_expired.fetch_add(1, Ordering::SeqCst);
                json(
                    200,
                    &json!({"code": 414, "error": "access_token_expired",
                            "error_description": "access_token expired", "stat": "error"}),
                )
            }
            Some(_) => json(
                200,
                &json!({
                    "result": {
                        "uuid": UUID,
                        "id": 1147,
                        "email": EMAIL,
                        "emailVerified": "2011-11-05 19:00:08.339082 +0000",
                        "displayName": "alice",
                        "givenName": "Alice",
                        "familyName": "Liddell",
                        "birthday": null,
                        "created": "2011-11-05 19:00:08.339082 +0000",
                        "lastLogin": "2024-01-01 10:00:00.000000 +0000",
                        "lastUpdated": "2024-01-01 10:00:00.000000 +0000",
                        "primaryAddress": {"city": null, "country": "GB", "zip": null},
                        "profiles": [{"domain": "google.com", "identifier": "https://www.google.com/profiles/1040"}],
                        "photos": [],
                        "statuses": [],
                    },
                    "stat": "ok",
                }),
            ),
        }
    }

    /// `/access/getAuthorizationCode`: owner-client API minting a code for a user.
    fn mint(&self, req: &Req) -> Resp {
        if self
            .client_auth(req, "/access/getAuthorizationCode")
            .is_err()
        {
            return capture_error(
                200,
                402,
                "invalid_client_credentials",
                "client_id or client_secret are invalid",
            );
        }
        let p = req.params();
        if param(&p, "uuid").or(param(&p, "id")).is_none() {
            return capture_error(200, 100, "missing_argument", "uuid or id is required");
        }
        let Some(redirect_uri) = param(&p, "redirect_uri") else {
            return capture_error(200, 100, "missing_argument", "redirect_uri is required");
        };
        let lifetime = match param(&p, "lifetime").map(str::parse::<u64>) {
            None => 30,
            Some(Ok(s)) if s > 0 => s,
            _ => return capture_error(200, 200, "invalid_argument", "lifetime is not valid"),
        };
        let ts = match param(&p, "transaction_state") {
            None => json!({"capture": {"action": "getAuthorizationCode", "session_expires": null}}),
            Some(s) => match serde_json::from_str::<Value>(s) {
                Ok(v) => v,
                Err(_) => {
                    return capture_error(
                        200,
                        200,
                        "invalid_argument",
                        "transaction_state is not JSON",
                    )
                }
            },
        };
        self.counters.minted.fetch_add(1, Ordering::SeqCst);
        let code = self.new_code(redirect_uri, Duration::from_secs(lifetime), ts);
        json(200, &json!({"authorizationCode": code, "stat": "ok"}))
    }
}
