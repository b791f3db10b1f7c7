//! Seed-C OAuth 2.0 provider emulator (providers.md §3, §4 `generic_c`).
//!
//! `GET|POST /oauth/authorize` (query parameters; the scope is recorded
//! verbatim), `POST /auth/token` (Basic only, no client_id in the body;
//! reply `{access_token, token_type:"Bearer", refresh_token, expires_in:599,
//! id_token}`), `GET /userinfo` (Bearer), `GET /jwks` for the optional ID
//! token check. Errors are standard OAuth `{error, error_description}`.

use super::{json, param, redirect, token, Req, Resp, RsaSigner, Server};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub const SUBJECT: &str = "c-user-31337";

/// How the ID token is spoiled, for refusal tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdTokenFault {
    #[default]
    None,
    BadSignature,
    WrongAudience,
    WrongSubject,
}

struct Code {
    redirect_uri: String,
    nonce: Option<String>,
}

#[derive(Default)]
pub struct Counters {
    pub authorize_get: AtomicUsize,
    pub authorize_post: AtomicUsize,
    pub token: AtomicUsize,
    pub userinfo: AtomicUsize,
    pub jwks: AtomicUsize,
}

#[derive(Default)]
struct State {
    codes: HashMap<String, Code>,
    access: HashMap<String, ()>,
    last_scope: Option<String>,
    last_authorize: Option<Vec<(String, String)>>,
    last_token_form: Option<Vec<(String, String)>>,
    token_error: Option<(u16, String)>,
    fault: IdTokenFault,
}

pub struct Shared {
    client_id: String,
    client_secret: String,
    signer: RsaSigner,
    issuer: Mutex<String>,
    state: Mutex<State>,
    pub counters: Counters,
}

pub struct SeedC {
    pub shared: Arc<Shared>,
    server: Server,
}

impl SeedC {
    pub async fn start(client_id: &str, client_secret: &str) -> SeedC {
        let shared = Arc::new(Shared {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            signer: RsaSigner::test_key("seed-c-1"),
            issuer: Mutex::new(String::new()),
            state: Mutex::new(State::default()),
            counters: Counters::default(),
        });
        let s = shared.clone();
        let server = Server::start(move |req| {
            let s = s.clone();
            async move { s.handle(req) }
        })
        .await;
        *shared.issuer.lock() = server.url();
        SeedC { shared, server }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The `iss` of its ID tokens (its base URL).
    pub fn issuer(&self) -> String {
        self.shared.issuer.lock().clone()
    }

    pub fn count(&self, f: impl Fn(&Counters) -> &AtomicUsize) -> usize {
        f(&self.shared.counters).load(Ordering::SeqCst)
    }

    pub fn last_scope(&self) -> Option<String> {
        self.shared.state.lock().last_scope.clone()
    }

    pub fn last_authorize(&self) -> Option<Vec<(String, String)>> {
        self.shared.state.lock().last_authorize.clone()
    }

    pub fn last_token_form(&self) -> Option<Vec<(String, String)>> {
        self.shared.state.lock().last_token_form.clone()
    }

    /// The next token request fails with this status and OAuth error.
    pub fn fail_next_token(&self, status: u16, error: &str) {
        self.shared.state.lock().token_error = Some((status, error.into()));
    }

    pub fn set_id_token_fault(&self, fault: IdTokenFault) {
        self.shared.state.lock().fault = fault;
    }
}

fn oauth_error(status: u16, error: &str, description: &str) -> Resp {
    json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

impl Shared {
    fn handle(&self, req: Req) -> Resp {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/oauth/authorize") | ("POST", "/oauth/authorize") => self.authorize(&req),
            ("POST", "/auth/token") => self.token(&req),
            ("GET", "/userinfo") => self.userinfo(&req),
            ("GET", "/jwks") => {
                self.counters.jwks.fetch_add(1, Ordering::SeqCst);
                json(200, &json!({"keys": [self.signer.jwk.clone()]}))
            }
            _ => oauth_error(404, "not_found", "no such endpoint"),
        }
    }

    fn authorize(&self, req: &Req) -> Resp {
        if req.method == http::Method::POST {
            self.counters.authorize_post.fetch_add(1, Ordering::SeqCst);
        } else {
            self.counters.authorize_get.fetch_add(1, Ordering::SeqCst);
        }
        let p = req.params();
        {
            let mut st = self.state.lock();
            st.last_authorize = Some(p.clone());
            st.last_scope = param(&p, "scope").map(str::to_string);
        }
        if param(&p, "client_id") != Some(&self.client_id) {
            return oauth_error(400, "invalid_client", "unknown client");
        }
        let Some(redirect_uri) = param(&p, "redirect_uri") else {
            return oauth_error(400, "invalid_request", "redirect_uri is required");
        };
        let state = param(&p, "state").unwrap_or("");
        if param(&p, "response_type") != Some("code") {
            return redirect(&super::with_query(
                redirect_uri,
                &[("error", "unsupported_response_type"), ("state", state)],
            ));
        }
        let code = token(16);
        self.state.lock().codes.insert(
            code.clone(),
            Code {
                redirect_uri: redirect_uri.into(),
                nonce: param(&p, "nonce").map(str::to_string),
            },
        );
        redirect(&super::with_query(
            redirect_uri,
            &[("code", &code), ("state", state)],
        ))
    }

    fn token(&self, req: &Req) -> Resp {
        self.counters.token.fetch_add(1, Ordering::SeqCst);
        let p = req.form();
        self.state.lock().last_token_form = Some(p.clone());
        if let Some((status, error)) = self.state.lock().token_error.take() {
            return oauth_error(status, &error, "injected failure");
        }
        // Basic only: body credentials are refused.
        if param(&p, "client_id").is_some() || param(&p, "client_secret").is_some() {
            return oauth_error(
                401,
                "invalid_client",
                "client credentials must use HTTP Basic",
            );
        }
        match req.basic_auth() {
            Some((id, secret)) if id == self.client_id && secret == self.client_secret => {}
            _ => return oauth_error(401, "invalid_client", "bad client credentials"),
        }
        if param(&p, "grant_type") != Some("authorization_code") {
            return oauth_error(400, "unsupported_grant_type", "grant_type");
        }
        let Some(code) = param(&p, "code").and_then(|c| self.state.lock().codes.remove(c)) else {
            return oauth_error(400, "invalid_grant", "code is invalid");
        };
        if param(&p, "redirect_uri") != Some(code.redirect_uri.as_str()) {
            return oauth_error(400, "invalid_grant", "redirect_uri mismatch");
        }
        let at = token(24);
        self.state.lock().access.insert(at.clone(), ());
        let fault = self.state.lock().fault;
        let now = super::now();
        let mut claims = json!({
            "iss": self.issuer.lock().clone(),
            "sub": if fault == IdTokenFault::WrongSubject { "someone-else" } else { SUBJECT },
            "aud": if fault == IdTokenFault::WrongAudience { "another-client".to_string() } else { self.client_id.clone() },
            "exp": now + 600,
            "iat": now,
        });
        if let Some(n) = &code.nonce {
            claims["nonce"] = json!(n);
        }
        let mut id_token = self.signer.sign(Some(&self.signer.kid), false, &claims);
        if fault == IdTokenFault::BadSignature {
            id_token = super::corrupt(&id_token);
        }
        json(
            200,
            &json!({
                "access_token": at,
                "token_type": "Bearer",
                "refresh_token": token(24),
                "expires_in": 599,
                "id_token": id_token,
            }),
        )
    }

    fn userinfo(&self, req: &Req) -> Resp {
        self.counters.userinfo.fetch_add(1, Ordering::SeqCst);
        let ok = req
            .auth_token("Bearer")
            .is_some_and(|t| self.state.lock().access.contains_key(&t));
        if !ok {
            return oauth_error(401, "invalid_token", "bad access token");
        }
        let info: Value = json!({
            "sub": SUBJECT,
            "email": "carol@example.net",
            "preferred_username": "carol",
            "name": "Carol C",
            "phone_number": "",
        });
        json(200, &info)
    }
}
