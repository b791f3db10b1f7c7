use super::env::expand_vars;
use super::*;
use std::collections::HashMap;

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

// ===== key paths (issue 12) =====

#[test]
fn config_missing_required_key_names_that_key() {
    let e = env(&[("SECRET", "x")]);
    let text = MINIMAL.replace(
        "url = \"http://127.0.0.1:8080\"",
        "connect_timeout = \"1s\"",
    );
    assert_eq!(problems(&text, &e), ["upstream.url: missing"]);
    let text = MINIMAL.replace("client_id = \"gateway\"\n", "");
    assert_eq!(problems(&text, &e), ["provider.client_id: missing"]);
    let text = format!("{MINIMAL}\n[[route]]\npath = \"/a/\"\n[[route]]\nauth = \"none\"\n");
    assert_eq!(problems(&text, &e), ["route[1].path: missing"]);
    let text = MINIMAL.replace("[upstream]\nurl = \"http://127.0.0.1:8080\"\n", "");
    assert_eq!(problems(&text, &e), ["upstream: missing section"]);
}

#[test]
fn config_unknown_key_suggests_the_closest_key() {
    let e = env(&[("SECRET", "x")]);
    let text = MINIMAL.replace("[server]", "[server]\nlistn = \"0.0.0.0:8443\"");
    assert_eq!(
        problems(&text, &e),
        ["server.listn: unknown key, did you mean `listen`?"]
    );
    let text = MINIMAL.replace("[session]", "[session]\nlife_time = \"1h\"");
    assert_eq!(
        problems(&text, &e),
        ["session.life_time: unknown key, did you mean `lifetime`?"]
    );
    let text = MINIMAL.replace("[upstream]", "[upstreams]");
    assert_eq!(
        problems(&text, &e),
        [
            "upstreams: unknown key, did you mean `upstream`?",
            "upstream: missing section"
        ]
    );
    // Nothing close: the valid keys instead.
    let text = MINIMAL.replace("[upstream]", "[upstream]\nbogus = 1");
    let p = problems(&text, &e);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("upstream.bogus: unknown key (valid keys: url, timeout,"),
        "{p:?}"
    );
}

#[test]
fn config_unknown_key_does_not_hide_the_sections_other_problems() {
    let e = env(&[("SECRET", "x")]);
    let text = MINIMAL.replace(
        "[server]",
        "[server]\nprefx = \"/auth\"\nheader_read_timeout = \"soon\"",
    );
    let p = problems(&text, &e);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0], "server.prefx: unknown key, did you mean `prefix`?");
    assert!(
        p[1].starts_with("server.header_read_timeout: `soon` is not a duration"),
        "{p:?}"
    );
}

#[test]
fn config_type_problem_in_one_section_does_not_hide_rules_of_others() {
    let e = env(&[("SECRET", "x")]);
    let text = MINIMAL
        .replace("[session]", "[session]\nlifetime = \"forever\"")
        .replace("https://idp.example.com", "http://idp.example.com");
    let p = problems(&text, &e);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("provider.issuer: must be https://"),
        "{p:?}"
    );
    assert!(p[1].starts_with("session.lifetime: `forever`"), "{p:?}");
}

#[test]
fn config_syntax_error_names_line_without_quoting_it() {
    let text = MINIMAL.replace(
        "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=\"",
        "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
    );
    let p = problems(&text, &env(&[("SECRET", "x")]));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("TOML syntax error at line 15, column "),
        "{p:?}"
    );
    assert!(!p[0].contains("MDEyMzQ1"), "{p:?}");
}

#[test]
fn config_from_path_missing_file_says_so_and_suggests_config_and_demo() {
    let err =
        GatewayConfig::from_path(Path::new("/nonexistent/oidc-gateway/gateway.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");
    assert!(err.problems().is_empty());
    let msg = err.to_string();
    assert!(
        msg.starts_with("no configuration file at /nonexistent/oidc-gateway/gateway.toml"),
        "{msg}"
    );
    assert!(
        msg.contains("--config PATH") && msg.contains("oidc-gateway demo"),
        "{msg}"
    );
}

// ===== typed values =====

#[test]
fn config_allowed_algorithms_are_typed_and_default_to_discovery() {
    let e = env(&[("SECRET", "x")]);
    let text = MINIMAL.replace(
        "client_id = \"gateway\"",
        "client_id = \"gateway\"\nallowed_algorithms = [\"PS384\", \"EdDSA\", \"HS256\"]",
    );
    let c = GatewayConfig::from_toml_str(&text, &e).unwrap();
    assert_eq!(
        c.provider.allowed_algorithms,
        Some(vec![
            AllowedAlgorithm::Signing(SigningAlgorithm::PS384),
            AllowedAlgorithm::Signing(SigningAlgorithm::EdDSA),
            AllowedAlgorithm::HS256,
        ])
    );
    let c = GatewayConfig::from_toml_str(MINIMAL, &e).unwrap();
    assert_eq!(
        c.provider.allowed_algorithms, None,
        "default: from discovery"
    );
}

#[test]
fn config_hmac_without_client_secret_none_or_unknown_algorithm_is_a_problem() {
    let e = env(&[("SECRET", "")]);
    let text = MINIMAL.replace(
        "client_id = \"gateway\"",
        "client_id = \"gateway\"\nallowed_algorithms = [\"RS256\", \"HS512\"]",
    );
    let p = problems(&text, &e);
    assert!(
        p.iter()
            .any(|p| p.starts_with("provider.allowed_algorithms: HS512 needs client_secret")),
        "{p:?}"
    );
    let e = env(&[("SECRET", "x")]);
    assert!(problems(&text, &e).is_empty());
    let text = MINIMAL.replace(
        "client_id = \"gateway\"",
        "client_id = \"gateway\"\nallowed_algorithms = [\"none\"]",
    );
    let p = problems(&text, &e);
    assert!(
        p.len() == 1 && p[0].contains("`none` is not accepted (supported: RS256,"),
        "{p:?}"
    );
    let text = MINIMAL.replace(
        "client_id = \"gateway\"",
        "client_id = \"gateway\"\nallowed_algorithms = []",
    );
    let p = problems(&text, &e);
    assert!(
        p.len() == 1 && p[0].starts_with("provider.allowed_algorithms: must not be empty"),
        "{p:?}"
    );
}

#[test]
fn config_discovery_false_needs_jwks_uri_and_both_or_no_login_endpoints() {
    let e = env(&[("SECRET", "x")]);
    let with = |extra: &str| {
        MINIMAL.replace(
            "client_id = \"gateway\"",
            &format!("client_id = \"gateway\"\ndiscovery = false\n{extra}"),
        )
    };
    assert_eq!(
        problems(&with(""), &e),
        ["provider.jwks_uri: required with discovery = false"]
    );
    let bearer_only = with("jwks_uri = \"https://idp.example.com/jwks\"");
    let c = GatewayConfig::from_toml_str(&bearer_only, &e).unwrap();
    assert!(!c.provider.has_browser_login());
    // Bearer-only needs no client secret, unless it introspects.
    let no_secret = env(&[("SECRET", "")]);
    assert!(problems(&bearer_only, &no_secret).is_empty());
    let introspecting = format!("{bearer_only}\n[bearer]\nintrospection = true\n");
    let p = problems(&introspecting, &no_secret);
    assert!(
        p.len() == 1 && p[0].starts_with("bearer.introspection: needs provider.client_secret"),
        "{p:?}"
    );
    assert!(problems(&with(""), &no_secret)
        .iter()
        .all(|p| !p.starts_with("provider.client_secret")));
    let half = with(
        "jwks_uri = \"https://idp.example.com/jwks\"\nauthorization_endpoint = \"https://idp.example.com/a\"",
    );
    let p = problems(&half, &e);
    assert!(
        p.len() == 1
            && p[0].starts_with(
                "provider.token_endpoint: authorization_endpoint and token_endpoint go together"
            ),
        "{p:?}"
    );
    let full = with(
        "jwks_uri = \"https://idp.example.com/jwks\"\nauthorization_endpoint = \"https://idp.example.com/a\"\ntoken_endpoint = \"https://idp.example.com/t\"",
    );
    let c = GatewayConfig::from_toml_str(&full, &e).unwrap();
    assert!(c.provider.has_browser_login());
    assert!(GatewayConfig::from_toml_str(MINIMAL, &e)
        .unwrap()
        .provider
        .has_browser_login());
}

#[test]
fn config_bearer_issuers_are_checked_with_their_index() {
    let e = env(&[("SECRET", "x")]);
    let text = format!(
        "{MINIMAL}\n[bearer]\nuserinfo = true\n\n[[bearer.issuer]]\nissuer = \"https://ci.example.com\"\naudiences = [\"api\"]\n\n[[bearer.issuer]]\nissuer = \"http://ci.example.com\"\naudiences = []\n\n[[bearer.issuer]]\nissuer = \"https://ci.example.com\"\naudiences = [\"x\"]\njwks_uri = \"https://ci.example.com/keys\"\n"
    );
    let p = problems(&text, &e);
    assert!(
        p.iter()
            .any(|p| p.starts_with("bearer.issuer[1].issuer: must be https")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.starts_with("bearer.issuer[1].audiences:")),
        "{p:?}"
    );
    let hmac = format!("{MINIMAL}\n[[bearer.issuer]]\nissuer = \"https://ci.example.com\"\naudiences = [\"api\"]\nallowed_algorithms = [\"HS256\"]\n");
    let p = problems(&hmac, &e);
    assert!(
        p.len() == 1
            && p[0].starts_with("bearer.issuer[0].allowed_algorithms[0]: `HS256` is not accepted"),
        "{p:?}"
    );
    let ok = text
        .replace("issuer = \"http://ci.example.com\"\naudiences = []", "issuer = \"https://tenant.example.com\"\naudiences = [\"api\"]\nallowed_algorithms = [\"ES256\"]");
    let p = problems(&ok, &e);
    assert_eq!(p, ["bearer.issuer[2].issuer: repeats an earlier entry"]);
    let ok = ok.replace(
        "issuer = \"https://ci.example.com\"\naudiences = [\"x\"]",
        "issuer = \"https://third.example.com\"\naudiences = [\"x\"]",
    );
    let c = GatewayConfig::from_toml_str(&ok, &e).unwrap();
    assert_eq!(c.bearer.issuers.len(), 3);
    assert!(c.bearer.userinfo);
    assert_eq!(
        c.bearer.issuers[2].jwks_uri.as_ref().unwrap().as_str(),
        "https://ci.example.com/keys"
    );
}

#[test]
fn config_jwks_auth_and_private_key_alg_are_typed() {
    let c = GatewayConfig::from_toml_str(
        &with_provider(
            "kind = \"oracle-idcs\"\nissuer = \"https://idcs-1.identity.oraclecloud.com\"\njwks_auth = \"client_credentials\"",
        ),
        &env(&[]),
    )
    .unwrap();
    assert_eq!(c.provider.jwks_auth, Some(JwksAuth::ClientCredentials));
    let p = problems(
        &with_provider(
            "kind = \"oracle-idcs\"\nissuer = \"https://idcs-1.identity.oraclecloud.com\"\njwks_auth = \"basic\"",
        ),
        &env(&[]),
    );
    assert!(
        p.len() == 1
            && p[0].starts_with("provider.jwks_auth: ")
            && p[0].contains("client_credentials"),
        "{p:?}"
    );
    let p = problems(
        &with_provider(&format!(
            "issuer = \"https://idp.example.com\"\nclient_auth = \"private_key_jwt\"\nprivate_key_file = \"{}\"\nprivate_key_alg = \"HS256\"",
            cert_path("gateway.key")
        )),
        &env(&[]),
    );
    assert!(
        p.len() == 1 && p[0].starts_with("provider.private_key_alg: `HS256` is not accepted"),
        "{p:?}"
    );
}

#[test]
fn config_session_secret_is_decoded_once_at_load() {
    let e = env(&[("SECRET", "x")]);
    let c = GatewayConfig::from_toml_str(MINIMAL, &e).unwrap();
    assert_eq!(
        format!("{:?}", c.session.secret),
        "SessionSecret([redacted])"
    );
    // Unpadded and URL-safe base64 are accepted too.
    let text = MINIMAL.replace(
        "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
        "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE",
    );
    assert_eq!(problems(&text, &e), Vec::<String>::new());
    let text = MINIMAL.replace(
        "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
        "not base64!",
    );
    assert_eq!(problems(&text, &e), ["session.secret: must be base64"]);
}

// ===== OidcConfig =====

const LAYER: &str = r#"
public_url = "https://app.example.com"

[provider]
issuer = "https://idp.example.com"
client_id = "gateway"
client_secret = "s"

[session]
secret = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
"#;

fn layer_problems(text: &str) -> Vec<String> {
    match OidcConfig::from_toml_str(text, &env(&[])) {
        Ok(c) => {
            assert!(c.validate().is_ok());
            vec![]
        }
        Err(err) => err.problems().iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn oidc_config_loads_the_layer_sections_only() {
    let c = OidcConfig::from_toml_str(LAYER, &env(&[])).unwrap();
    assert_eq!(c.prefix, "/oauth2");
    assert_eq!(c.redirect_uri(), "https://app.example.com/oauth2/callback");
    assert_eq!(c.bearer_audiences(), ["gateway"]);
    assert!(c.routes.is_empty());
    let gateway = GatewayConfig::from_toml_str(MINIMAL, &env(&[("SECRET", "x")])).unwrap();
    assert!(gateway.validate().is_ok());
    assert!(gateway.oidc().validate().is_ok());
}

#[test]
fn oidc_config_top_level_keys_have_top_level_paths() {
    assert_eq!(
        layer_problems(&LAYER.replace("public_url = \"https://app.example.com\"", "")),
        ["public_url: missing"]
    );
    assert_eq!(
        layer_problems(&format!("prefix = \"/auth/\"\n{LAYER}")),
        ["prefix: must start with `/` and not end with `/`"]
    );
    assert_eq!(
        layer_problems(&format!("prefx = \"/auth\"\n{LAYER}")),
        ["prefx: unknown key, did you mean `prefix`?"]
    );
    assert_eq!(
        layer_problems(&format!("{LAYER}\n[server]\nlisten = \"0.0.0.0:1\"\n")),
        ["server: unknown key (public_url and prefix are top-level keys here)"]
    );
}

#[test]
fn oidc_config_applies_the_gateway_rules_with_the_same_key_paths() {
    let text = LAYER
        .replace("https://idp.example.com", "http://idp.example.com")
        .replace("https://app.example.com", "http://127.0.0.1:8080")
        .replace(
            "client_secret = \"s\"",
            "client_secret = \"s\"\nresponse_mode = \"form_post\"",
        )
        + "\n[bearer]\naudiences = []\n[[route]]\npath = \"nope\"\n";
    let p = layer_problems(&text);
    assert_eq!(
        p,
        [
            "provider.issuer: must be https:// (http:// only on loopback hosts)",
            "bearer.audiences: must not be empty (omit it for [client_id])",
            "route[0].path: must start with `/`",
            "provider.response_mode: form_post needs an https public_url (the login cookie must be SameSite=None; Secure)",
        ]
    );
    assert_eq!(
        layer_problems(&LAYER.replace("client_id = \"gateway\"\n", "")),
        ["provider.client_id: missing"]
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
    assert_eq!(c.session.previous_secrets.len(), 1);
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

#[test]
fn config_bearer_token_discipline_and_introspection_keys() {
    let e = env(&[("SECRET", "s")]);
    let c = GatewayConfig::from_toml_str(MINIMAL, &e).unwrap();
    assert!(
        !c.bearer.accept_id_tokens,
        "ID tokens are refused by default"
    );
    assert!(!c.bearer.introspection);
    assert_eq!(c.bearer.introspection_endpoint, None);
    assert_eq!(c.bearer.introspection_cache, Duration::from_secs(60));
    assert!(c.bearer.required_scopes.is_empty());

    let text = MINIMAL.to_string()
        + "\n[bearer]\naccept_id_tokens = true\nintrospection = true\n\
           introspection_endpoint = \"https://idp.example.com/introspect\"\n\
           introspection_cache = \"5m\"\nrequired_scopes = [\"api:read\"]\n";
    let c = GatewayConfig::from_toml_str(&text, &e).unwrap();
    assert!(c.bearer.accept_id_tokens && c.bearer.introspection);
    assert_eq!(
        c.bearer.introspection_endpoint.as_ref().map(|u| u.as_str()),
        Some("https://idp.example.com/introspect")
    );
    assert_eq!(c.bearer.introspection_cache, Duration::from_secs(300));
    assert_eq!(c.bearer.required_scopes, ["api:read"]);
}

#[test]
fn config_introspection_access_tokens_only_needs_introspection() {
    let e = env(&[("SECRET", "s")]);
    let c = GatewayConfig::from_toml_str(MINIMAL, &e).unwrap();
    assert!(!c.bearer.introspection_access_tokens_only);
    let on = MINIMAL.to_string()
        + "\n[bearer]\nintrospection = true\nintrospection_access_tokens_only = true\n";
    let c = GatewayConfig::from_toml_str(&on, &e).unwrap();
    assert!(c.bearer.introspection_access_tokens_only);
    let alone = MINIMAL.to_string() + "\n[bearer]\nintrospection_access_tokens_only = true\n";
    let p = problems(&alone, &e);
    assert!(
        p.iter()
            .any(|m| m.starts_with("bearer.introspection_access_tokens_only")),
        "{p:?}"
    );
}

#[test]
fn config_bad_introspection_keys_are_problems() {
    let text = MINIMAL.to_string()
        + "\n[bearer]\nintrospection_endpoint = \"http://idp.example.com/introspect\"\n\
           introspection_cache = \"2h\"\nrequired_scopes = [\"a b\"]\n";
    let p = problems(&text, &env(&[("SECRET", "s")]));
    let has = |key: &str| p.iter().any(|m| m.starts_with(key));
    assert!(has("bearer.introspection_endpoint"), "{p:?}");
    assert!(has("bearer.introspection_cache"), "{p:?}");
    assert!(has("bearer.required_scopes"), "{p:?}");
}

// ===== upstream identity, routes, cookies =====

fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

#[test]
fn config_upstream_identity_keys_default_off() {
    let c = GatewayConfig::from_toml_str(MINIMAL, &env(&[("SECRET", "s")])).unwrap();
    assert_eq!(c.headers.access_token, None);
    assert_eq!(c.headers.id_token, None);
    assert_eq!(c.headers.authorization, AuthorizationConfig::None);
    assert_eq!(c.headers.assertion, None);
    assert_eq!(c.headers.assertion_lifetime, Duration::from_secs(60));
    assert_eq!(c.session.same_site, SameSiteConfig::Lax);
    assert_eq!(c.session_cookie_name(), "__Host-oidc-gateway");
}

#[test]
fn config_cookie_domain_drops_host_prefix_and_must_contain_host() {
    let e = env(&[("SECRET", "s")]);
    let c = GatewayConfig::from_toml_str(&with("cookie_domain = \"example.com\"\n"), &e).unwrap();
    assert_eq!(c.session_cookie_name(), "__Secure-oidc-gateway");
    assert_eq!(
        problems(&with("cookie_domain = \"other.org\"\n"), &e),
        ["session.cookie_domain: `other.org` does not contain the public_url host `app.example.com`"]
    );
    let p = problems(
        &with("cookie_domain = \"example.com\"\ncookie_name = \"__Host-x\"\n"),
        &e,
    );
    assert!(
        p[0].starts_with("session.cookie_name: a __Host- cookie cannot have a Domain"),
        "{p:?}"
    );
    let http = MINIMAL.replace("https://app.example.com", "http://localhost:8080");
    let p = problems(&format!("{http}same_site = \"none\"\n"), &e);
    assert!(
        p[0].starts_with("session.same_site: \"none\" needs an https"),
        "{p:?}"
    );
}

#[test]
fn config_token_header_names_checked() {
    let e = env(&[("SECRET", "s")]);
    let p = problems(
        &with("[headers]\naccess_token = \"Authorization\"\nid_token = \"X-Auth-Request-User\"\nassertion_audience = \"x\"\n"),
        &e,
    );
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p[0].starts_with("headers.access_token: `Authorization` cannot carry it"));
    assert!(p[1].starts_with("headers.id_token: `X-Auth-Request-User` is already used"));
    assert_eq!(
        p[2],
        "headers.assertion_audience: only with headers.assertion"
    );
    let p = problems(
        &with("[headers]\nassertion = \"X-Auth-Request-Jwt\"\nassertion_key_file = \"/nonexistent.pem\"\n"),
        &e,
    );
    assert!(
        p[0].starts_with("headers.assertion_key_file: cannot read"),
        "{p:?}"
    );
}

#[test]
fn config_route_keys_parse_and_are_checked() {
    let e = env(&[("SECRET", "s")]);
    let c = GatewayConfig::from_toml_str(
        &with(
            "[[route]]\npath = \"/app2/\"\nupstream = \"http://127.0.0.1:8082\"\nstrip_prefix = true\n\
             methods = [\"OPTIONS\"]\nauth = \"none\"\n\
             [[route]]\npath = \"/admin/\"\nallowed_emails = [\"a@example.com\"]\n\
             allowed_claims = { acr = [\"urn:mfa\"] }\n",
        ),
        &e,
    )
    .unwrap();
    assert_eq!(c.routes[0].methods, ["OPTIONS"]);
    assert!(c.routes[0].strip_prefix);
    assert_eq!(c.routes[1].allowed_claims["acr"], ["urn:mfa"]);
    let p = problems(
        &with(
            "[[route]]\npath = \"/x/\"\nauth = \"none\"\nallowed_emails = [\"nobody\"]\n\
             pass_host_header = false\nallowed_claims = { acr = [] }\n",
        ),
        &e,
    );
    assert_eq!(p.len(), 4, "{p:?}");
}

#[test]
fn config_shadowed_route_is_reported() {
    let e = env(&[("SECRET", "s")]);
    let p = problems(
        &with("[[route]]\npath = \"/app/\"\n[[route]]\npath = \"/app/admin\"\nallowed_groups = [\"a\"]\n"),
        &e,
    );
    assert_eq!(
        p,
        ["route[1].path: unreachable: every request it matches is matched first by route[0] (`/app/`)"]
    );
}

#[test]
fn log_section_defaults_and_problems() {
    let e = env(&[("SECRET", "x")]);
    let config = GatewayConfig::from_toml_str(MINIMAL, &e).expect("minimal config");
    assert_eq!(config.log, LogConfig::default());
    assert!(config.log.access_log);
    let text = format!("{MINIMAL}\n[log]\nformat = \"json\"\nlevel = \"warn,oidc_gateway=debug\"\naccess_log = false\n");
    let config = GatewayConfig::from_toml_str(&text, &e).expect("log section");
    assert_eq!(config.log.format, Some(LogFormat::Json));
    assert!(!config.log.access_log);
    let text = format!("{MINIMAL}\n[log]\nformt = \"json\"\n");
    assert_eq!(
        problems(&text, &e),
        ["log.formt: unknown key, did you mean `format`?"]
    );
    let text = format!("{MINIMAL}\n[log]\nlevel = \"info,oidc_gateway=loud\"\n");
    let p = problems(&text, &e);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("log.level: not a log filter"), "{p:?}");
    let text = format!("{MINIMAL}\n[log]\nformat = \"yaml\"\n");
    let p = problems(&text, &e);
    assert!(p.len() == 1 && p[0].starts_with("log.format"), "{p:?}");
}

#[test]
fn config_tracing_defaults_to_no_export() {
    let c = GatewayConfig::from_toml_str(MINIMAL, &env(&[("SECRET", "s")])).unwrap();
    assert!(!c.tracing.is_enabled());
    assert_eq!(c.tracing.traces_url(), None);
    assert_eq!(c.tracing.service_name, "oidc-gateway");
    assert_eq!(c.tracing.sample_ratio, 1.0);
}

#[test]
fn config_tracing_endpoint_needs_the_otel_feature() {
    let text = format!("{MINIMAL}\n[tracing]\notlp_endpoint = \"http://127.0.0.1:4318\"\n");
    let e = env(&[("SECRET", "s")]);
    if cfg!(feature = "otel") {
        let c = GatewayConfig::from_toml_str(&text, &e).unwrap();
        assert_eq!(
            c.tracing.traces_url().as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
    } else {
        assert_eq!(
            problems(&text, &e),
            [format!("tracing.otlp_endpoint: {NO_OTEL}")]
        );
        assert!(NO_OTEL.contains("rebuild with --features otel"));
    }
}

#[test]
fn config_tracing_values_are_checked() {
    let e = env(&[("SECRET", "s")]);
    let text = format!(
        "{MINIMAL}\n[tracing]\nsample_ratio = 1.5\nservice_name = \" \"\notlp_timeout = \"0s\"\nsample_rate = 1\n"
    );
    assert_eq!(
        problems(&text, &e),
        [
            "tracing.sample_rate: unknown key, did you mean `sample_ratio`?",
            "tracing.sample_ratio: must be between 0.0 and 1.0",
            "tracing.service_name: must not be empty",
            "tracing.otlp_timeout: must be more than 0s",
        ]
    );
    let c = GatewayConfig::from_toml_str(&format!("{MINIMAL}\n[tracing]\nsample_ratio = 0\n"), &e)
        .unwrap();
    assert_eq!(c.tracing.sample_ratio, 0.0);
    let text = format!("{MINIMAL}\n[tracing]\notlp_endpoint = \"ftp://u:p@collector/?x=1\"\n");
    let p = problems(&text, &e);
    for want in [
        "tracing.otlp_endpoint: must be an absolute http(s) URL",
        "tracing.otlp_endpoint: must not have a query or fragment",
        "tracing.otlp_endpoint: must not carry credentials (use OTEL_EXPORTER_OTLP_HEADERS)",
    ] {
        assert!(p.iter().any(|x| x == want), "{want}: {p:?}");
    }
}

#[test]
fn config_tracing_url_keeps_an_explicit_traces_path() {
    let mut t = TracingConfig {
        otlp_endpoint: Some("https://otel.example.com:4318/v1/traces".parse().unwrap()),
        ..TracingConfig::default()
    };
    assert_eq!(
        t.traces_url().as_deref(),
        Some("https://otel.example.com:4318/v1/traces")
    );
    t.otlp_endpoint = Some("https://otel.example.com/otlp/".parse().unwrap());
    assert_eq!(
        t.traces_url().as_deref(),
        Some("https://otel.example.com/otlp/v1/traces")
    );
}
