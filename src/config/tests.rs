use super::*;

const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://app.example.com"

[upstream]
url = "http://127.0.0.1:8080"

[provider]
issuer = "https://idp.example.com"
client_id = "gateway"
client_secret = "${SECRET}"

[session]
secret = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
"#;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn problems(text: &str, e: &HashMap<String, String>) -> Vec<String> {
    match GatewayConfig::from_toml_str(text, e) {
        Ok(_) => vec![],
        Err(err) => err.problems().iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn config_minimal_loads_with_defaults() {
    let c = GatewayConfig::from_toml_str(MINIMAL, &env(&[("SECRET", "s3cr3t")])).unwrap();
    assert_eq!(
        c.provider.client_secret.as_ref().unwrap().expose(),
        "s3cr3t"
    );
    assert_eq!(c.session.lifetime, Duration::from_secs(8 * 3600));
    assert_eq!(c.provider.scopes, ["openid", "email", "profile"]);
    assert_eq!(c.bearer_audiences(), ["gateway"]);
    assert_eq!(c.session_cookie_name(), "__Host-oidc-gateway");
    assert_eq!(c.redirect_uri(), "https://app.example.com/oauth2/callback");
    assert!(c.bearer.enabled);
    assert_eq!(c.headers.user, "X-Auth-Request-User");
}

#[test]
fn config_missing_env_var_is_reported_with_key() {
    let p = problems(MINIMAL, &env(&[]));
    assert_eq!(
        p,
        ["provider.client_secret: environment variable SECRET is not set"]
    );
}

#[test]
fn config_unknown_key_is_rejected() {
    let text = MINIMAL.replace("[upstream]", "[upstream]\nbogus = 1");
    let p = problems(&text, &env(&[("SECRET", "x")]));
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("bogus"), "{p:?}");
}

#[test]
fn config_http_issuer_only_on_loopback() {
    let e = env(&[("SECRET", "x")]);
    let text = MINIMAL.replace("https://idp.example.com", "http://idp.example.com");
    assert!(problems(&text, &e)
        .iter()
        .any(|p| p.starts_with("provider.issuer: must be https://")));
    for ok in [
        "http://127.0.0.1:9000",
        "http://localhost:9000",
        "http://[::1]:9000",
    ] {
        let text = MINIMAL.replace("https://idp.example.com", ok);
        assert_eq!(problems(&text, &e), Vec::<String>::new(), "{ok}");
    }
}

#[test]
fn config_reports_every_problem_without_secrets() {
    let text = MINIMAL
        .replace("MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=", "c2hvcnQ=")
        .replace("[upstream]", "[[route]]\npath = \"nope\"\n\n[upstream]");
    let p = problems(&text, &env(&[("SECRET", "topsecretvalue")]));
    assert!(p.iter().any(|p| p.starts_with("session.secret:")), "{p:?}");
    assert!(p.iter().any(|p| p.starts_with("route[0].path:")), "{p:?}");
    assert!(!p.join("\n").contains("topsecretvalue"));
    assert!(!p.join("\n").contains("c2hvcnQ"));
}

#[test]
fn config_file_key_reads_and_trims_file() {
    let dir = std::env::temp_dir().join(format!("ogw-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secret");
    std::fs::write(&path, "from-file\n").unwrap();
    let text = MINIMAL.replace(
        "client_secret = \"${SECRET}\"",
        &format!("client_secret_file = \"{}\"", path.display()),
    );
    let c = GatewayConfig::from_toml_str(&text, &env(&[])).unwrap();
    assert_eq!(c.provider.client_secret.unwrap().expose(), "from-file");
    let both = MINIMAL.replace(
        "client_secret = \"${SECRET}\"",
        &format!(
            "client_secret = \"x\"\nclient_secret_file = \"{}\"",
            path.display()
        ),
    );
    assert!(problems(&both, &env(&[]))[0].contains("not both"));
}

#[test]
fn config_durations_are_strings() {
    let e = env(&[("SECRET", "x")]);
    let text = MINIMAL.replace(
        "[session]",
        "[session]\nlifetime = \"15m\"\nlogin_timeout = \"30s\"",
    );
    let c = GatewayConfig::from_toml_str(&text, &e).unwrap();
    assert_eq!(c.session.lifetime, Duration::from_secs(900));
    let bad = MINIMAL.replace("[session]", "[session]\nlifetime = \"soon\"");
    assert!(problems(&bad, &e)[0].contains("not a duration"));
}

#[test]
fn config_debug_never_shows_secrets() {
    let c = GatewayConfig::from_toml_str(MINIMAL, &env(&[("SECRET", "s3cr3t-value")])).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cr3t-value"));
    assert!(!dbg.contains("MDEyMzQ1"));
}

#[test]
fn config_expand_vars_handles_dollar_escapes() {
    let e = env(&[("A", "x")]);
    assert_eq!(expand_vars("a${A}b$$c$d", &e).unwrap(), "axb$c$d");
    assert!(expand_vars("${A", &e).is_err());
    assert!(expand_vars("${A-B}", &e).is_err());
}

#[test]
fn config_sample_gateway_toml_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let e = env(&[
        ("GATEWAY_CLIENT_SECRET", "example-secret"),
        (
            "GATEWAY_SESSION_SECRET",
            "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
        ),
    ]);
    let c = GatewayConfig::from_toml_str(&text, &e).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.routes.len(), 2);
}

fn with_provider(provider: &str) -> String {
    format!(
        r#"
[server]
public_url = "https://app.example.com"
[upstream]
url = "http://127.0.0.1:8080"
[provider]
client_id = "gateway"
client_secret = "s"
{provider}
[session]
secret = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
"#
    )
}

#[test]
fn config_dialect_kinds_load() {
    for provider in [
        "kind = \"janrain-capture\"\ncapture_domain = \"https://app.us.janraincapture.com\"\nclient_auth = \"janrain-signed\"",
        "kind = \"oracle-idcs\"\nissuer = \"https://idcs-1.identity.oraclecloud.com\"\njwks_auth = \"client_credentials\"",
        "kind = \"oauth2\"\nauthorization_endpoint = \"https://idp.example.com/oauth/authorize\"\ntoken_endpoint = \"https://idp.example.com/auth/token\"\nuserinfo_endpoint = \"https://idp.example.com/userinfo\"\nscopes = [\"user_profile\", \"additional_info\"]",
    ] {
        assert_eq!(problems(&with_provider(provider), &env(&[])), Vec::<String>::new(), "{provider}");
    }
}

#[test]
fn config_dialect_keys_are_checked() {
    let p = problems(&with_provider("kind = \"janrain-capture\""), &env(&[]));
    assert_eq!(
        p,
        ["provider.capture_domain: required for kind = \"janrain-capture\""]
    );
    let p = problems(
        &with_provider("issuer = \"https://idp.example.com\"\njwks_auth = \"client_credentials\"\nexpected_issuer = \"https://x\""),
        &env(&[]),
    );
    assert_eq!(
        p,
        [
            "provider.expected_issuer: only for kind = \"oracle-idcs\"",
            "provider.jwks_auth: only for kind = \"oracle-idcs\""
        ]
    );
    let p = problems(
        &with_provider("kind = \"oauth2\"\nauthorization_endpoint = \"https://i/a\"\ntoken_endpoint = \"https://i/t\"\nuserinfo_endpoint = \"https://i/u\"\njwks_uri = \"https://i/j\""),
        &env(&[]),
    );
    assert_eq!(
        p,
        ["provider.issuer: required with jwks_uri for kind = \"oauth2\" (the iss ID tokens carry)"]
    );
}

#[test]
fn config_form_post_with_http_public_url_is_config_error() {
    let e = env(&[("SECRET", "x")]);
    let form_post = MINIMAL.replace(
        "client_id = \"gateway\"",
        "client_id = \"gateway\"\nresponse_mode = \"form_post\"",
    );
    assert_ne!(form_post, MINIMAL);
    let http = form_post.replace("https://app.example.com", "http://127.0.0.1:8080");
    let err = GatewayConfig::from_toml_str(&http, &e).unwrap_err();
    let p: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("provider.response_mode:"), "{p:?}");
    assert!(p[0].contains("https"), "{p:?}");
    // Twin: https public_url.
    let c = GatewayConfig::from_toml_str(&form_post, &e).unwrap();
    assert_eq!(c.provider.response_mode, ResponseMode::FormPost);
}

fn cert_path(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn config_private_key_jwt_loads_rsa_and_ec_keys() {
    for (file, extra) in [
        ("gateway.key", ""),
        ("gateway.pkcs1.key", "private_key_alg = \"PS256\"\n"),
        ("gateway-ec.key", "private_key_kid = \"k1\"\n"),
    ] {
        let text = format!(
            "[server]\npublic_url = \"https://app.example.com\"\n[upstream]\nurl = \"http://127.0.0.1:8080\"\n\
             [provider]\nissuer = \"https://idp.example.com\"\nclient_id = \"gateway\"\n\
             client_auth = \"private_key_jwt\"\nprivate_key_file = \"{}\"\n{extra}\
             [session]\nsecret = \"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=\"\n",
            cert_path(file)
        );
        let c = GatewayConfig::from_toml_str(&text, &env(&[]))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(c.provider.client_auth, ClientAuth::PrivateKeyJwt);
    }
}

#[test]
fn config_private_key_jwt_problems_name_the_key() {
    let p = problems(
        &with_provider("issuer = \"https://idp.example.com\"\nclient_auth = \"private_key_jwt\""),
        &env(&[]),
    );
    assert_eq!(
        p,
        ["provider.private_key_file: required for client_auth = \"private_key_jwt\""]
    );
    let p = problems(
        &with_provider(&format!(
            "issuer = \"https://idp.example.com\"\nclient_auth = \"private_key_jwt\"\nprivate_key_file = \"{}\"",
            cert_path("gateway.crt")
        )),
        &env(&[]),
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("provider.private_key_file: ") && p[0].contains("gateway.crt"),
        "{p:?}"
    );
    let p = problems(
        &with_provider(&format!(
            "issuer = \"https://idp.example.com\"\nclient_auth = \"private_key_jwt\"\nprivate_key_file = \"{}\"\nprivate_key_alg = \"RS256\"",
            cert_path("gateway-ec.key")
        )),
        &env(&[]),
    );
    assert!(
        p.len() == 1 && p[0].contains("does not fit an EC P-256 key"),
        "{p:?}"
    );
    let p = problems(
        &with_provider(&format!(
            "issuer = \"https://idp.example.com\"\nprivate_key_file = \"{}\"",
            cert_path("gateway.key")
        )),
        &env(&[]),
    );
    assert_eq!(
        p,
        ["provider.private_key_file: only for client_auth = \"private_key_jwt\""]
    );
    let p = problems(
        &with_provider(&format!(
            "kind = \"janrain-capture\"\ncapture_domain = \"https://app.us.janraincapture.com\"\nclient_auth = \"private_key_jwt\"\nprivate_key_file = \"{}\"",
            cert_path("gateway.key")
        )),
        &env(&[]),
    );
    assert_eq!(
        p,
        ["provider.client_auth: private_key_jwt is not supported by kind = \"janrain-capture\""]
    );
}

fn with_session(extra: &str) -> String {
    MINIMAL.replace("[session]\n", &format!("[session]\n{extra}\n"))
}

#[test]
fn config_session_stores_load_with_defaults() {
    let e = env(&[("SECRET", "s")]);
    let c = GatewayConfig::from_toml_str(&with_session("store = \"cookie\""), &e).unwrap();
    assert_eq!(c.session.store, SessionStoreKind::Cookie);
    assert!(c.session.previous_secrets.is_empty());
    let c = GatewayConfig::from_toml_str(
        &with_session(
            "store = \"redis\"\nredis_url = \"rediss://:pw@redis.internal:6380/2\"\n\
             previous_secrets = [\"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=\"]",
        ),
        &e,
    )
    .unwrap();
    assert_eq!(c.session.redis_key_prefix, "oidc-gateway:");
    assert_eq!(c.session.redis_cache_ttl, Duration::from_secs(2));
    assert_eq!(c.session.previous_session_secrets().unwrap().len(), 1);
}

#[test]
fn config_session_store_problems_name_the_key_without_secrets() {
    let e = env(&[("SECRET", "s")]);
    for (extra, expected) in [
        (
            "store = \"redis\"",
            "session.redis_url: is required with store = \"redis\"",
        ),
        (
            "store = \"redis\"\nredis_url = \"http://:hunter2@h:1\"",
            "session.redis_url: must start with redis:// or rediss://",
        ),
        (
            "store = \"redis\"\nredis_url = \"hunter2\"",
            "session.redis_url: is not a URL",
        ),
        (
            "previous_secrets = [\"aHVudGVyMg==\"]",
            "session.previous_secrets[0]: must decode to at least 32 bytes",
        ),
        (
            "redis_key_prefix = \"\"",
            "session.redis_key_prefix: must be 1 to 64 visible ASCII characters",
        ),
        (
            "redis_cache_ttl = \"2m\"",
            "session.redis_cache_ttl: must be at most 60s",
        ),
    ] {
        let p = problems(&with_session(extra), &e);
        assert_eq!(p, [expected], "{extra}");
        assert!(!p.concat().contains("hunter2"));
    }
}
