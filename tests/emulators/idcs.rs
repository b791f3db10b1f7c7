//! Oracle IDCS tenant emulator (providers.md §2, §4 `oracle_idcs`).
//!
//! Discovery at the tenant URL advertises the global issuer
//! `https://identity.oraclecloud.com/`; endpoints are
//! `/oauth2/v1/{authorize,token,userinfo,userlogout}`, keys at
//! `/admin/v1/SigningCert/jwk` (optionally protected: the SCIM 401 unless a
//! client-credentials token is presented). ID tokens are RS256 with `kid`,
//! `x5t` and `x5t#S256` headers, `aud = [client_id, issuer]`, no `azp`,
//! and IDCS's `user_*` claims. Userinfo sends `""` for unset claims.

use super::{json, param, redirect, token, Req, Resp, RsaSigner, Server};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

pub const GLOBAL_ISSUER: &str = "https://identity.oraclecloud.com/";
pub const USER_ID: &str = "9c1e3c3a2f4d4a6f8b0e1d2c3b4a5f60";
pub const USERNAME: &str = "alice@example.com";

struct Code {
    redirect_uri: String,
    nonce: Option<String>,
    challenge: Option<String>,
    scope: String,
}

#[derive(Default)]
pub struct Counters {
    pub discovery: AtomicUsize,
    pub jwks: AtomicUsize,
    pub jwks_unauthorized: AtomicUsize,
    pub client_credentials: AtomicUsize,
    pub token: AtomicUsize,
    pub userinfo: AtomicUsize,
    pub logout: AtomicUsize,
}

pub struct Settings {
    /// `issuer` in discovery.
    pub discovery_issuer: String,
    /// `iss` in ID tokens.
    pub token_issuer: String,
    /// `kid` in the token header (`None`: only `x5t` / `x5t#S256`).
    pub header_kid: Option<String>,
    /// `kid` in the JWKS.
    pub jwks_kid: String,
}

#[derive(Default)]
struct State {
    codes: HashMap<String, Code>,
    access: HashMap<String, ()>,
    client_tokens: HashMap<String, ()>,
    last_logout: Option<Vec<(String, String)>>,
    last_authorize: Option<Vec<(String, String)>>,
}

pub struct Shared {
    client_id: String,
    client_secret: String,
    signer: RsaSigner,
    pub settings: Mutex<Settings>,
    pub protected_jwks: AtomicBool,
    state: Mutex<State>,
    pub counters: Counters,
    base: Mutex<String>,
}

pub struct Idcs {
    pub shared: Arc<Shared>,
    server: Server,
}

impl Idcs {
    pub async fn start(client_id: &str, client_secret: &str) -> Idcs {
        let shared = Arc::new(Shared {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            signer: RsaSigner::test_key("SIGNING_KEY"),
            settings: Mutex::new(Settings {
                discovery_issuer: GLOBAL_ISSUER.into(),
                token_issuer: GLOBAL_ISSUER.into(),
                header_kid: Some("SIGNING_KEY".into()),
                jwks_kid: "SIGNING_KEY".into(),
            }),
            protected_jwks: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            counters: Counters::default(),
            base: Mutex::new(String::new()),
        });
        let s = shared.clone();
        let server = Server::start(move |req| {
            let s = s.clone();
            async move { s.handle(req) }
        })
        .await;
        *shared.base.lock() = server.url();
        Idcs { shared, server }
    }

    /// The tenant URL (`https://idcs-<id>.identity.oraclecloud.com` in real life).
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn settings(&self) -> parking_lot::MutexGuard<'_, Settings> {
        self.shared.settings.lock()
    }

    pub fn protect_jwks(&self, on: bool) {
        self.shared.protected_jwks.store(on, Ordering::SeqCst);
    }

    pub fn count(&self, f: impl Fn(&Counters) -> &AtomicUsize) -> usize {
        f(&self.shared.counters).load(Ordering::SeqCst)
    }

    pub fn last_logout(&self) -> Option<Vec<(String, String)>> {
        self.shared.state.lock().last_logout.clone()
    }

    pub fn last_authorize(&self) -> Option<Vec<(String, String)>> {
        self.shared.state.lock().last_authorize.clone()
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
            ("GET", "/.well-known/openid-configuration") => self.discovery(),
            ("GET", "/admin/v1/SigningCert/jwk") => self.jwks(&req),
            ("GET", "/oauth2/v1/authorize") => self.authorize(&req),
            ("POST", "/oauth2/v1/token") => self.token(&req),
            ("GET", "/oauth2/v1/userinfo") | ("POST", "/oauth2/v1/userinfo") => self.userinfo(&req),
            ("GET", "/oauth2/v1/userlogout") => self.logout(&req),
            _ => oauth_error(404, "not_found", "no such endpoint"),
        }
    }

    fn discovery(&self) -> Resp {
        self.counters.discovery.fetch_add(1, Ordering::SeqCst);
        let b = self.base.lock().clone();
        let issuer = self.settings.lock().discovery_issuer.clone();
        json(
            200,
            &json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{b}/oauth2/v1/authorize"),
                "token_endpoint": format!("{b}/oauth2/v1/token"),
                "userinfo_endpoint": format!("{b}/oauth2/v1/userinfo"),
                "revocation_endpoint": format!("{b}/oauth2/v1/revoke"),
                "introspection_endpoint": format!("{b}/oauth2/v1/introspect"),
                "end_session_endpoint": format!("{b}/oauth2/v1/userlogout"),
                "jwks_uri": format!("{b}/admin/v1/SigningCert/jwk"),
                "scopes_supported": ["openid","profile","offline_access","email","address","phone","groups","get_groups","approles","get_approles"],
                "response_types_supported": ["code","token","id_token","code token","code id_token","token id_token","code token id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "userinfo_signing_alg_values_supported": ["none"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic","private_key_jwt","client_secret_post"],
                "grant_types_supported": ["client_credentials","password","refresh_token","authorization_code","urn:ietf:params:oauth:grant-type:jwt-bearer"],
                "claims_parameter_supported": false,
                "request_parameter_supported": false,
                "request_uri_parameter_supported": false,
            }),
        )
    }

    fn jwks(&self, req: &Req) -> Resp {
        self.counters.jwks.fetch_add(1, Ordering::SeqCst);
        if self.protected_jwks.load(Ordering::SeqCst) {
            let ok = req
                .auth_token("Bearer")
                .is_some_and(|t| self.state.lock().client_tokens.contains_key(&t));
            if !ok {
                self.counters
                    .jwks_unauthorized
                    .fetch_add(1, Ordering::SeqCst);
                return json(
                    401,
                    &json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error",
                                    "urn:ietf:params:scim:api:oracle:idcs:extension:messages:Error"],
                        "detail": "Operation failed due to unauthorized access.",
                        "status": "401",
                        "urn:ietf:params:scim:api:oracle:idcs:extension:messages:Error": {
                            "messageId": "error.common.exception.unauthorizedAccess"
                        }
                    }),
                );
            }
        }
        let mut jwk = self.signer.jwk.clone();
        jwk["kid"] = json!(self.settings.lock().jwks_kid.clone());
        json(200, &json!({"keys": [jwk]}))
    }

    fn authorize(&self, req: &Req) -> Resp {
        let p = req.params();
        self.state.lock().last_authorize = Some(p.clone());
        if param(&p, "client_id") != Some(&self.client_id) {
            return oauth_error(400, "invalid_client", "Client is not registered");
        }
        let Some(redirect_uri) = param(&p, "redirect_uri") else {
            return oauth_error(400, "invalid_request", "redirect_uri is required");
        };
        let state = param(&p, "state").unwrap_or("");
        let scope = param(&p, "scope").unwrap_or("").to_string();
        if param(&p, "response_type") != Some("code") {
            return redirect(&super::with_query(
                redirect_uri,
                &[("error", "unsupported_response_type"), ("state", state)],
            ));
        }
        if !scope.split(' ').any(|s| s == "openid") {
            return redirect(&super::with_query(
                redirect_uri,
                &[("error", "invalid_scope"), ("state", state)],
            ));
        }
        let code = token(24);
        self.state.lock().codes.insert(
            code.clone(),
            Code {
                redirect_uri: redirect_uri.into(),
                nonce: param(&p, "nonce").map(str::to_string),
                challenge: param(&p, "code_challenge").map(str::to_string),
                scope,
            },
        );
        redirect(&super::with_query(
            redirect_uri,
            &[("code", &code), ("state", state)],
        ))
    }

    fn client_ok(&self, req: &Req) -> bool {
        let p = req.params();
        match req.basic_auth() {
            Some((id, secret)) => id == self.client_id && secret == self.client_secret,
            None => {
                param(&p, "client_id") == Some(&self.client_id)
                    && param(&p, "client_secret") == Some(&self.client_secret)
            }
        }
    }

    fn token(&self, req: &Req) -> Resp {
        self.counters.token.fetch_add(1, Ordering::SeqCst);
        if !self.client_ok(req) {
            return oauth_error(401, "invalid_client", "Client authentication failed.");
        }
        let p = req.form();
        let now = super::now();
        let issuer = self.settings.lock().token_issuer.clone();
        match param(&p, "grant_type") {
            Some("client_credentials") => {
                self.counters
                    .client_credentials
                    .fetch_add(1, Ordering::SeqCst);
                let at = token(24);
                self.state.lock().client_tokens.insert(at.clone(), ());
                json(
                    200,
                    &json!({"access_token": at, "token_type": "Bearer", "expires_in": 3600}),
                )
            }
            Some("authorization_code") => {
                let Some(code) = param(&p, "code").and_then(|c| self.state.lock().codes.remove(c))
                else {
                    return oauth_error(
                        400,
                        "invalid_grant",
                        "The authorization code is invalid or has expired.",
                    );
                };
                // redirect_uri is optional at IDCS's token endpoint; when sent it must match.
                if param(&p, "redirect_uri").is_some_and(|r| r != code.redirect_uri) {
                    return oauth_error(400, "invalid_grant", "redirect_uri does not match");
                }
                if let Some(challenge) = &code.challenge {
                    use base64::Engine as _;
                    use sha2::Digest as _;
                    let ok = param(&p, "code_verifier").is_some_and(|v| {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .encode(sha2::Sha256::digest(v.as_bytes()))
                            == *challenge
                    });
                    if !ok {
                        return oauth_error(400, "invalid_grant", "PKCE verification failed");
                    }
                }
                let at = token(24);
                self.state.lock().access.insert(at.clone(), ());
                let session_exp = now + 8 * 3600;
                let mut claims = json!({
                    "iss": issuer,
                    "sub": USERNAME,
                    "aud": [self.client_id, issuer],
                    "exp": session_exp,
                    "iat": now,
                    "auth_time": now,
                    "jti": token(12),
                    "sid": token(12),
                    "amr": ["USERNAME_PASSWORD"],
                    "tok_type": "IT",
                    "sub_mappingattr": "userName",
                    "user_id": USER_ID,
                    "user_displayname": "Alice Liddell",
                    "user_tz": "Europe/London",
                    "user_locale": "en",
                    "user_lang": "en",
                    "user_tenantname": "idcs-emulator",
                    "user_csr": false,
                    "session_exp": session_exp,
                    "authn_strength": "2",
                });
                if let Some(n) = &code.nonce {
                    claims["nonce"] = json!(n);
                }
                let kid = self.settings.lock().header_kid.clone();
                let id_token = self.signer.sign(kid.as_deref(), true, &claims);
                let mut body = json!({
                    "access_token": at,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "id_token": id_token,
                });
                if code.scope.split(' ').any(|s| s == "offline_access") {
                    body["refresh_token"] = json!(token(24));
                }
                json(200, &body)
            }
            _ => oauth_error(400, "unsupported_grant_type", "grant_type is not supported"),
        }
    }

    fn userinfo(&self, req: &Req) -> Resp {
        self.counters.userinfo.fetch_add(1, Ordering::SeqCst);
        let ok = req
            .auth_token("Bearer")
            .is_some_and(|t| self.state.lock().access.contains_key(&t));
        if !ok {
            return oauth_error(401, "invalid_token", "The access token is invalid");
        }
        json(
            200,
            &json!({
                "birthdate": "", "email": USERNAME, "email_verified": false, "family_name": "Liddell",
                "gender": "", "given_name": "Alice", "appRoles": [], "name": "",
                "preferred_username": USERNAME, "sub": USERNAME, "updated_at": 1495136783, "website": ""
            }),
        )
    }

    fn logout(&self, req: &Req) -> Resp {
        self.counters.logout.fetch_add(1, Ordering::SeqCst);
        let p = req.params();
        self.state.lock().last_logout = Some(p.clone());
        match param(&p, "post_logout_redirect_uri") {
            Some(uri) => {
                let mut pairs = Vec::new();
                if let Some(s) = param(&p, "state") {
                    pairs.push(("state", s));
                }
                redirect(&super::with_query(uri, &pairs))
            }
            None => super::html(200, "You have signed out (tenant landing page)."),
        }
    }
}
