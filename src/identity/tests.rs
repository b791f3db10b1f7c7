use super::*;

fn alice() -> Identity {
    Identity {
        subject: "alice".into(),
        email: Some("alice@example.com".into()),
        email_verified: Some(true),
        preferred_username: Some("alice.a".into()),
        groups: vec!["admins".into(), "users".into()],
        name: Some("Alice A".into()),
        issuer: "https://idp.example.com".into(),
        expires_at: Some(1_700_000_000),
        source: IdentitySource::Session,
        claims: Default::default(),
    }
}

fn bare(subject: &str) -> Identity {
    Identity::new(subject, "https://idp.example.com", IdentitySource::Bearer)
}

fn headers() -> IdentityHeaders {
    IdentityHeaders::new(&HeaderNamesConfig::default()).unwrap()
}

fn get<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

fn spoofed() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in [
        ("x-auth-request-user", "mallory"),
        ("x-auth-request-user", "root"),
        ("X-Auth-Request-Email", "root@example.com"),
        ("x-auth-request-preferred-username", "root"),
        ("x-auth-request-groups", "admins"),
        ("x_auth_request_user", "root"),
        ("X-Auth-Request_Groups", "admins"),
        ("x-other", "kept"),
        ("x_other", "kept too"),
    ] {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_static(v),
        );
    }
    h
}

// ===== Identity =====

#[test]
fn identity_serde_roundtrip_is_lossless() {
    for id in [alice(), bare("bob")] {
        let json = serde_json::to_string(&id).unwrap();
        let back: Identity = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
    }
}

#[test]
fn identity_serialize_absent_claims_are_omitted() {
    let json = serde_json::to_value(bare("bob")).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "subject": "bob",
            "groups": [],
            "issuer": "https://idp.example.com",
            "source": "bearer",
        })
    );
}

#[test]
fn identity_deserialize_minimal_defaults_optional_claims() {
    let id: Identity =
        serde_json::from_str(r#"{"subject":"s","issuer":"https://i","source":"session"}"#).unwrap();
    assert_eq!(id.source, IdentitySource::Session);
    assert!(id.groups.is_empty() && id.email.is_none() && id.expires_at.is_none());
}

// ===== IdentityHeaders::new =====

#[test]
fn identity_headers_new_invalid_name_is_error() {
    let cfg = HeaderNamesConfig {
        user: "X Bad".into(),
        ..HeaderNamesConfig::default()
    };
    assert!(IdentityHeaders::new(&cfg).is_err());
    let cfg = HeaderNamesConfig {
        groups: String::new(),
        ..HeaderNamesConfig::default()
    };
    assert!(IdentityHeaders::new(&cfg).is_err());
}

#[test]
fn identity_headers_new_custom_names_are_used() {
    let cfg = HeaderNamesConfig {
        user: "Remote-User".into(),
        email: "Remote-Email".into(),
        preferred_username: "Remote-Name".into(),
        groups: "Remote-Groups".into(),
        ..HeaderNamesConfig::default()
    };
    let ih = IdentityHeaders::new(&cfg).unwrap();
    let mut h = HeaderMap::new();
    h.insert("x-auth-request-user", HeaderValue::from_static("untouched"));
    h.insert("remote-user", HeaderValue::from_static("mallory"));
    ih.apply(&alice(), &mut h);
    assert_eq!(get(&h, "remote-user"), ["alice"]);
    assert_eq!(get(&h, "remote-groups"), ["admins,users"]);
    assert_eq!(get(&h, "x-auth-request-user"), ["untouched"]);
}

// ===== strip =====

#[test]
fn strip_every_value_of_every_identity_header_is_removed() {
    let mut h = spoofed();
    headers().strip(&mut h);
    for n in headers().names() {
        assert!(h.get(n).is_none(), "{n}");
    }
    assert!(h.get("x_auth_request_user").is_none());
    assert!(h.get("x-auth-request_groups").is_none());
    assert_eq!(get(&h, "x-other"), ["kept"]);
    assert_eq!(get(&h, "x_other"), ["kept too"]);
    assert_eq!(h.len(), 2);
}

#[test]
fn strip_without_identity_headers_changes_nothing() {
    let mut h = HeaderMap::new();
    h.insert("accept", HeaderValue::from_static("*/*"));
    h.insert("x_y", HeaderValue::from_static("z"));
    let before = h.clone();
    headers().strip(&mut h);
    assert_eq!(h, before);
}

// ===== apply =====

#[test]
fn apply_spoofed_headers_are_replaced() {
    let mut h = spoofed();
    headers().apply(&alice(), &mut h);
    assert_eq!(get(&h, "x-auth-request-user"), ["alice"]);
    assert_eq!(get(&h, "x-auth-request-email"), ["alice@example.com"]);
    assert_eq!(get(&h, "x-auth-request-preferred-username"), ["alice.a"]);
    assert_eq!(get(&h, "x-auth-request-groups"), ["admins,users"]);
    assert!(h.get("x_auth_request_user").is_none());
    assert!(h.get("x-auth-request_groups").is_none());
    assert_eq!(get(&h, "x-other"), ["kept"]);
}

#[test]
fn apply_absent_claims_send_no_header() {
    let mut h = spoofed();
    headers().apply(&bare("bob"), &mut h);
    assert_eq!(get(&h, "x-auth-request-user"), ["bob"]);
    assert!(h.get("x-auth-request-email").is_none());
    assert!(h.get("x-auth-request-preferred-username").is_none());
    assert!(h.get("x-auth-request-groups").is_none());
}

#[test]
fn apply_empty_claims_send_no_header() {
    let mut id = bare("");
    id.email = Some(String::new());
    id.preferred_username = Some(String::new());
    id.groups = vec![String::new(), String::new()];
    let mut h = spoofed();
    headers().apply(&id, &mut h);
    for n in headers().names() {
        assert!(h.get(n).is_none(), "{n}");
    }
}

#[test]
fn apply_crlf_injection_is_percent_encoded() {
    let mut id = bare("alice\r\nX-Admin: true");
    id.email = Some("a@example.com\r\n\r\nGET / HTTP/1.1".into());
    id.preferred_username = Some("bob\nX-Auth-Request-User: root".into());
    id.groups = vec!["users\r\nX-Admin: true".into()];
    let mut h = HeaderMap::new();
    headers().apply(&id, &mut h);
    assert_eq!(
        get(&h, "x-auth-request-user"),
        ["alice%0D%0AX-Admin:%20true"]
    );
    assert_eq!(
        get(&h, "x-auth-request-email"),
        ["a@example.com%0D%0A%0D%0AGET%20/%20HTTP/1.1"]
    );
    assert_eq!(
        get(&h, "x-auth-request-preferred-username"),
        ["bob%0AX-Auth-Request-User:%20root"]
    );
    assert_eq!(
        get(&h, "x-auth-request-groups"),
        ["users%0D%0AX-Admin:%20true"]
    );
    assert!(h.get("x-admin").is_none());
    assert_eq!(h.len(), 4);
}

#[test]
fn apply_every_control_character_is_encoded() {
    for b in (0u8..0x20).chain([0x7F]) {
        let id = bare(&format!("a{}b", char::from(b)));
        let mut h = HeaderMap::new();
        headers().apply(&id, &mut h);
        assert_eq!(
            get(&h, "x-auth-request-user"),
            [format!("a%{b:02X}b").as_str()]
        );
    }
}

#[test]
fn apply_non_ascii_is_percent_encoded_utf8() {
    let mut id = bare("José");
    id.preferred_username = Some("日本".into());
    let mut h = HeaderMap::new();
    headers().apply(&id, &mut h);
    assert_eq!(get(&h, "x-auth-request-user"), ["Jos%C3%A9"]);
    assert_eq!(
        get(&h, "x-auth-request-preferred-username"),
        ["%E6%97%A5%E6%9C%AC"]
    );
}

#[test]
fn apply_percent_and_space_are_encoded_injectively() {
    let mut h = HeaderMap::new();
    headers().apply(&bare("%C3%A9"), &mut h);
    assert_eq!(get(&h, "x-auth-request-user"), ["%25C3%25A9"]);
    headers().apply(&bare("é"), &mut h);
    assert_eq!(get(&h, "x-auth-request-user"), ["%C3%A9"]);
    headers().apply(&bare(" alice "), &mut h);
    assert_eq!(get(&h, "x-auth-request-user"), ["%20alice%20"]);
}

#[test]
fn apply_visible_ascii_is_unchanged() {
    let visible: String = (0x21u8..=0x7E)
        .filter(|&b| b != b'%')
        .map(char::from)
        .collect();
    let mut h = HeaderMap::new();
    headers().apply(&bare(&visible), &mut h);
    assert_eq!(get(&h, "x-auth-request-user"), [visible.as_str()]);
}

#[test]
fn apply_group_with_comma_is_encoded_not_split() {
    let mut id = bare("a");
    id.groups = vec![
        "users,admins".into(),
        String::new(),
        "ops team".into(),
        "a%b".into(),
    ];
    let mut h = HeaderMap::new();
    headers().apply(&id, &mut h);
    assert_eq!(
        get(&h, "x-auth-request-groups"),
        ["users%2Cadmins,ops%20team,a%25b"]
    );
    let sent = get(&h, "x-auth-request-groups")[0];
    assert!(!sent.split(',').any(|g| g == "admins"));
}

#[test]
fn apply_comma_outside_groups_is_kept() {
    let mut h = HeaderMap::new();
    headers().apply(&bare("a,b"), &mut h);
    assert_eq!(get(&h, "x-auth-request-user"), ["a,b"]);
}

#[test]
fn apply_same_name_configured_twice_last_wins() {
    let cfg = HeaderNamesConfig {
        user: "X-Id".into(),
        email: "X-Id".into(),
        ..HeaderNamesConfig::default()
    };
    let ih = IdentityHeaders::new(&cfg).unwrap();
    let mut h = HeaderMap::new();
    ih.apply(&alice(), &mut h);
    assert_eq!(get(&h, "x-id"), ["alice@example.com"]);
}

// ===== precompute =====

#[test]
fn precompute_matches_apply() {
    let ih = headers();
    for id in [alice(), bare("bob"), bare("x\r\ny")] {
        let mut direct = spoofed();
        ih.apply(&id, &mut direct);
        let pre = ih.precompute(&id);
        let mut via = spoofed();
        ih.apply_precomputed(&pre, &mut via);
        assert_eq!(direct, via);
    }
}

#[test]
fn precompute_lists_headers_in_order() {
    let pre = headers().precompute(&alice());
    assert_eq!(pre.len(), 4);
    let ih = headers();
    let names: Vec<&str> = ih.iter_precomputed(&pre).map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "x-auth-request-user",
            "x-auth-request-email",
            "x-auth-request-preferred-username",
            "x-auth-request-groups"
        ]
    );
    let empty = headers().precompute(&bare(""));
    assert!(empty.is_empty());
    assert!(PrecomputedHeaders::default().is_empty());
}

#[test]
fn apply_precomputed_strips_even_when_empty() {
    let mut h = spoofed();
    headers().apply_precomputed(&PrecomputedHeaders::default(), &mut h);
    for n in headers().names() {
        assert!(h.get(n).is_none(), "{n}");
    }
    assert!(h.get("x_auth_request_user").is_none());
}

#[test]
fn apply_precomputed_repeated_is_stable() {
    let ih = headers();
    let pre = ih.precompute(&alice());
    let mut h = HeaderMap::new();
    ih.apply_precomputed(&pre, &mut h);
    ih.apply_precomputed(&pre, &mut h);
    assert_eq!(get(&h, "x-auth-request-user"), ["alice"]);
    assert_eq!(h.len(), 4);
}

// ===== ExtraClaims =====

#[test]
fn extra_claims_keep_only_named_claims_bounded() {
    let long = "x".repeat(MAX_CLAIM_VALUE_LEN + 1);
    let many: Vec<String> = (0..MAX_CLAIM_VALUES + 10)
        .map(|i| format!("g{i}"))
        .collect();
    let payload = serde_json::json!({
        "acr": "urn:mfa",
        "department": ["eng", 7, true, {"nested": 1}, null, long.clone()],
        "level": 3,
        "huge": long,
        "many": many,
        "secret": "not named",
    });
    let names: Vec<String> = ["acr", "department", "level", "huge", "many", "absent"]
        .map(String::from)
        .to_vec();
    let c = ExtraClaims::from_payload(payload.as_object().unwrap(), &names);
    assert_eq!(c.get("acr").unwrap(), ["urn:mfa"]);
    assert_eq!(c.get("department").unwrap(), ["eng", "7", "true"]);
    assert_eq!(c.get("level").unwrap(), ["3"]);
    assert_eq!(c.get("huge"), None, "too long: dropped, not truncated");
    assert_eq!(c.get("many").unwrap().len(), MAX_CLAIM_VALUES);
    assert_eq!(c.get("secret"), None, "not named by any route");
    assert_eq!(c.get("absent"), None);
}

#[test]
fn extra_claims_empty_cost_nothing_and_are_not_serialized() {
    let none = ExtraClaims::from_payload(&serde_json::Map::new(), &["acr".into()]);
    assert!(none.is_empty());
    assert_eq!(
        std::mem::size_of::<ExtraClaims>(),
        std::mem::size_of::<usize>()
    );
    let json = serde_json::to_value(alice()).unwrap();
    assert!(json.get("claims").is_none());
    let mut id = alice();
    id.claims = ExtraClaims::from_pairs([("acr", &["urn:mfa"][..])]);
    let json = serde_json::to_string(&id).unwrap();
    let back: Identity = serde_json::from_str(&json).unwrap();
    assert_eq!(back, id);
}

#[test]
fn strip_also_removes_extra_names_and_lookalikes() {
    let h = headers().also_stripping([
        HeaderName::from_static("x-forwarded-access-token"),
        HeaderName::from_static("x-auth-request-jwt"),
    ]);
    let mut m = spoofed();
    m.insert(
        "x-forwarded-access-token",
        HeaderValue::from_static("forged"),
    );
    m.insert(
        HeaderName::from_static("x_auth_request_jwt"),
        HeaderValue::from_static("forged"),
    );
    h.strip(&mut m);
    assert!(m.get("x-forwarded-access-token").is_none());
    assert!(m.get("x_auth_request_jwt").is_none());
    assert_eq!(get(&m, "x-other"), ["kept"]);
}
