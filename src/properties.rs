//! Property-based fuzzing (proptest, stable toolchain) of everything that
//! parses what an outsider sends: request paths and route matching, return
//! URLs, cookie headers, the login-state cookie, JWKS documents, token
//! endpoint and dialect responses, JWT-shaped strings, and configuration
//! text.
//!
//! Each property runs `PROPTEST_CASES` cases (proptest's default, 256, in
//! `cargo test`: a few seconds in all). A long run:
//!
//! ```sh
//! PROPTEST_CASES=200000 cargo test --release --lib properties
//! ```
//!
//! A failure is shrunk and its seed written to
//! `proptest-regressions/properties.txt`, which is kept in the repository
//! and replayed first on every run; the `SEEDS` below are the hand-kept
//! corpus (open-redirect and path-confusion classics) checked every time.

use crate::auth::cookies::{request_cookies, CookieSettings};
use crate::auth::login::return_to::safe_return_to;
use crate::auth::login::state::LoginManager;
use crate::auth::policy::{normalize_path, RouteTable};
use crate::config::{GatewayConfig, RouteAuth, RouteConfig};
use crate::provider::KeySet;
use crate::secret::SessionSecret;
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

/// Path and return-URL strings built from the pieces attacks are made of.
fn hostile_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just("//".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E".to_string()),
        Just("%2f".to_string()),
        Just("%5c".to_string()),
        Just("\\".to_string()),
        Just(";".to_string()),
        Just(";x=1".to_string()),
        Just("%".to_string()),
        Just("%00".to_string()),
        Just("%25".to_string()),
        Just("?".to_string()),
        Just("#".to_string()),
        Just("@".to_string()),
        Just(":".to_string()),
        Just("public".to_string()),
        Just("admin".to_string()),
        Just("evil.com".to_string()),
        Just("\t".to_string()),
        Just("é".to_string()),
        "[a-z0-9]{1,4}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

/// Inputs every run checks, from public open-redirect and path-confusion
/// corpora.
const SEEDS: &[&str] = &[
    "//evil.com",
    "/\\evil.com",
    "/%5cevil.com",
    "/%2f%2fevil.com",
    "/%252f%252fevil.com",
    "https://evil.com",
    "/\t/evil.com",
    "/%09/evil.com",
    "/.//evil.com",
    "/public/..;/admin",
    "/public/%2e%2e/admin",
    "/public/..%2fadmin",
    "/public/%2e%2e%2fadmin",
    "/./public/../admin",
    "/admin;jsessionid=x",
    "/%00admin",
    "///admin",
    "/admin/",
    "",
    "*",
];

fn routes() -> RouteTable {
    let route = |path: &str| -> RouteConfig {
        toml::from_str(&format!("path = \"{path}\"\nauth = \"none\""))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    RouteTable::new(&[route("/public/"), route("/static/")])
}

/// What must hold of any path the gateway accepts.
fn check_path(raw: &str, table: &RouteTable) -> Result<(), TestCaseError> {
    let Ok(normalized) = normalize_path(raw) else {
        return Ok(());
    };
    let p: &str = &normalized;
    prop_assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
    prop_assert!(!p.contains("//"), "{raw:?} -> {p:?}");
    prop_assert!(!p.contains('\\'), "{raw:?} -> {p:?}");
    for segment in p.split('/') {
        let bare = segment.split(';').next().unwrap_or("");
        prop_assert!(
            bare != "." && bare != "..",
            "dot segment in {p:?} from {raw:?}"
        );
    }
    // Canonical: normalizing again changes nothing, so the matched path is
    // the forwarded path.
    let again = normalize_path(p);
    prop_assert!(
        matches!(again, Ok(Cow::Borrowed(q)) if q == p),
        "{p:?} is not a fixed point"
    );
    // A path that decodes to something under /admin is never public.
    let lower = p.to_ascii_lowercase();
    if lower.starts_with("/admin") || lower.contains("/../admin") {
        prop_assert_eq!(table.match_path(p).auth, RouteAuth::Required, "{}", p);
    }
    Ok(())
}

/// What must hold of any return target.
fn check_return_to(raw: &str) -> Result<(), TestCaseError> {
    let out = safe_return_to(Some(raw));
    let b = out.as_bytes();
    prop_assert!(b.first() == Some(&b'/'), "{raw:?} -> {out:?}");
    prop_assert!(
        !matches!(b.get(1), Some(b'/') | Some(b'\\')),
        "{raw:?} -> {out:?}"
    );
    prop_assert!(b.iter().all(|c| c.is_ascii_graphic()), "{raw:?} -> {out:?}");
    prop_assert!(HeaderValue::from_str(&out).is_ok());
    let lower = out.to_ascii_lowercase();
    prop_assert!(
        !lower.starts_with("/%2f") && !lower.starts_with("/%5c"),
        "{out:?}"
    );
    // Idempotent: a target we produced is kept as it is.
    let again = safe_return_to(Some(&out)).into_owned();
    prop_assert_eq!(again.as_str(), out.as_ref());
    Ok(())
}

#[test]
fn seeds_hold_the_path_and_return_url_properties() {
    let table = routes();
    for seed in SEEDS {
        check_path(seed, &table).unwrap();
        check_return_to(seed).unwrap();
    }
}

proptest! {
    #[test]
    fn normalized_paths_are_canonical_and_never_climb(raw in hostile_path()) {
        check_path(&raw, &routes())?;
    }

    #[test]
    fn return_targets_are_always_local(raw in hostile_path()) {
        check_return_to(&raw)?;
    }

    #[test]
    fn cookie_headers_parse_into_clean_pairs(raw in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&raw) {
            headers.append(COOKIE, v);
        }
        for (name, value) in request_cookies(&headers) {
            prop_assert!(!name.contains(';') && !name.contains('='), "{name:?}");
            prop_assert!(!value.contains(';'), "{value:?}");
        }
    }

    #[test]
    fn login_state_cookie_refuses_every_forgery(
        value in "[A-Za-z0-9+/=%_-]{0,300}",
        flip in 0usize..400,
    ) {
        let secret = SessionSecret::from_bytes(&[9u8; 32]).unwrap_or_else(|_| unreachable!());
        let m = LoginManager::new(
            &secret,
            CookieSettings::new("oidc-gateway", false),
            Duration::from_secs(600),
            5,
            false,
            crate::clock::system(),
        );
        let (attempt, set) = m.begin("/".into(), &HeaderMap::new());
        let pair = set[0].to_str().unwrap_or_default().split(';').next().unwrap_or_default().to_string();
        let (name, sealed) = pair.split_once('=').unwrap_or_default();
        // A random value under the attempt's cookie name never opens.
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(&format!("{name}={value}")).unwrap_or_else(|_| unreachable!()));
        prop_assert!(m.finish(Some(&attempt.state), &h).is_err());
        // Nor does the real value with one character changed.
        let mut bytes = sealed.as_bytes().to_vec();
        let i = flip % bytes.len().max(1);
        if let Some(b) = bytes.get_mut(i) {
            *b = if *b == b'A' { b'B' } else { b'A' };
        }
        let forged = String::from_utf8(bytes).unwrap_or_default();
        if forged != sealed {
            let mut h = HeaderMap::new();
            h.insert(COOKIE, HeaderValue::from_str(&format!("{name}={forged}")).unwrap_or_else(|_| unreachable!()));
            prop_assert!(m.finish(Some(&attempt.state), &h).is_err());
        }
    }

    #[test]
    fn jwks_documents_never_panic_and_never_yield_symmetric_keys(
        kty in prop_oneof![Just("RSA".to_string()), Just("EC".to_string()), Just("OKP".to_string()), Just("oct".to_string()), "[A-Z]{0,4}"],
        crv in prop_oneof![Just("P-256".to_string()), Just("P-384".to_string()), Just("Ed25519".to_string()), "[A-Za-z0-9-]{0,8}"],
        n in "[A-Za-z0-9_-]{0,64}",
        e in prop_oneof![Just("AQAB".to_string()), "[A-Za-z0-9_-]{0,8}"],
        alg in prop_oneof![Just("RS256".to_string()), Just("HS256".to_string()), Just("none".to_string()), "[A-Z0-9]{0,6}"],
        junk in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let doc = format!(
            r#"{{"keys":[{{"kty":"{kty}","crv":"{crv}","n":"{n}","e":"{e}","x":"{n}","y":"{n}","k":"{n}","alg":"{alg}","kid":"k"}}]}}"#
        );
        if let Ok(set) = KeySet::from_jwks_json(doc.as_bytes()) {
            prop_assert!(kty != "oct", "a symmetric key was accepted");
            prop_assert!(set.len() == 1);
        }
        let _ = KeySet::from_jwks_json(&junk);
    }

    #[test]
    fn token_responses_never_panic(body in prop::collection::vec(any::<u8>(), 0..300), json in json_value(3)) {
        let _ = crate::provider::client::parse_token_response(&body);
        let text = json.to_string();
        if let Ok(t) = crate::provider::client::parse_token_response(text.as_bytes()) {
            // Accepted only with a non-empty access token.
            prop_assert!(!t.access_token.expose().is_empty());
        }
    }

    #[test]
    fn config_text_never_panics(lines in prop::collection::vec(config_line(), 0..16)) {
        let text = lines.join("\n");
        let _ = GatewayConfig::from_toml_str(&text, &HashMap::new());
        let _ = crate::config::OidcConfig::from_toml_str(&text, &HashMap::new());
    }
}

/// Arbitrary JSON of bounded depth, with the member names token and
/// profile responses use.
fn json_value(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        Just(serde_json::json!(1e300)),
        Just(serde_json::json!(-1)),
        "[a-zA-Z0-9._ -]{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 32, 6, |inner| {
        let key = prop_oneof![
            Just("access_token".to_string()),
            Just("token_type".to_string()),
            Just("expires_in".to_string()),
            Just("id_token".to_string()),
            Just("refresh_token".to_string()),
            Just("sub".to_string()),
            Just("stat".to_string()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Lines of a gateway.toml, well-formed or not.
fn config_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[server]".to_string()),
        Just("[provider]".to_string()),
        Just("[session]".to_string()),
        Just("[[route]]".to_string()),
        Just("[upstream]".to_string()),
        Just("public_url = \"https://app.example.com\"".to_string()),
        Just("url = \"http://127.0.0.1:8080\"".to_string()),
        Just("issuer = \"https://idp.example.com\"".to_string()),
        Just("client_id = \"x\"".to_string()),
        Just("secret = \"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=\"".to_string()),
        Just("lifetime = \"1e300h\"".to_string()),
        Just("path = \"/public/\"".to_string()),
        Just("auth = \"none\"".to_string()),
        Just("client_secret = \"${NOPE}\"".to_string()),
        Just("client_secret_file = \"/nonexistent\"".to_string()),
        "[a-z_]{1,10} = \"[^\"\\\\]{0,12}\"",
        "[a-z_]{1,10} = [0-9]{1,20}",
        any::<String>(),
    ]
}
