use super::*;
use crate::identity::IdentitySource;

fn norm(p: &str) -> Result<String, PathError> {
    normalize_path(p).map(Cow::into_owned)
}

fn assert_norm(input: &str, expected: &str) {
    assert_eq!(norm(input).as_deref(), Ok(expected), "input {input:?}");
}

fn assert_refused(input: &str, err: PathError) {
    assert_eq!(norm(input), Err(err), "input {input:?}");
}

// ===== normalize_path: fast path =====

#[test]
fn normalize_path_already_normal_is_borrowed() {
    for p in [
        "/",
        "/a",
        "/a/",
        "/a/b/c",
        "/public/x.css",
        "/a/.b",
        "/a/..b",
        "/a/b.",
        "/...",
        "/a/.../b",
        "/caf%C3%A9",
        "/a%20b",
        "/admin;x=y",
        "/a:b@c!$&'()*+,=",
        "/%25",
        "/%2525",
    ] {
        assert!(
            matches!(normalize_path(p), Ok(Cow::Borrowed(b)) if b == p),
            "{p:?} should be borrowed unchanged"
        );
    }
}

#[test]
fn normalize_path_changed_is_owned() {
    assert!(matches!(normalize_path("//a"), Ok(Cow::Owned(_))));
    assert!(matches!(normalize_path("/%61"), Ok(Cow::Owned(_))));
    assert!(matches!(normalize_path("/%c3%a9"), Ok(Cow::Owned(_))));
    assert!(matches!(normalize_path("/a/."), Ok(Cow::Owned(_))));
}

// ===== normalize_path: decoding =====

#[test]
fn normalize_path_encoded_unreserved_is_decoded() {
    assert_norm("/%61%62%63", "/abc");
    assert_norm("/%41%5A%30%39", "/AZ09");
    assert_norm("/%2D%2E%5F%7E", "/-._~");
    assert_norm("/%7euser", "/~user");
}

#[test]
fn normalize_path_reserved_escapes_are_uppercased_not_decoded() {
    assert_norm("/caf%c3%a9", "/caf%C3%A9");
    assert_norm("/a%3fb", "/a%3Fb");
    assert_norm("/a%3Fb", "/a%3Fb");
    assert_norm("/a%20b", "/a%20b");
    assert_norm("/a%3bb", "/a%3Bb");
    assert_norm("/%25", "/%25");
    assert_norm("/%2561", "/%2561");
    assert_norm("/%2e%25", "/.%25");
}

// ===== normalize_path: dot segments and slashes =====

#[test]
fn normalize_path_dot_segments_are_removed() {
    assert_norm("/a/./b", "/a/b");
    assert_norm("/a/../b", "/b");
    assert_norm("/a/b/../../c", "/c");
    assert_norm("/a/b/c/./../../g", "/a/g");
    assert_norm("/./a", "/a");
    assert_norm("/.", "/");
    assert_norm("/..", "/");
}

#[test]
fn normalize_path_trailing_dot_segments_end_with_slash() {
    assert_norm("/a/b/.", "/a/b/");
    assert_norm("/a/b/..", "/a/");
    assert_norm("/a/b/../", "/a/");
    assert_norm("/a/..", "/");
    assert_norm("/public/.", "/public/");
}

#[test]
fn normalize_path_climb_above_root_is_clamped() {
    assert_norm("/../x", "/x");
    assert_norm("/../../../etc/passwd", "/etc/passwd");
    assert_norm("/a/../../x", "/x");
    assert_norm("/%2e%2e/%2e%2e/x", "/x");
}

#[test]
fn normalize_path_encoded_dot_segments_are_removed() {
    assert_norm("/public/%2e%2e/admin", "/admin");
    assert_norm("/public/%2E%2E/admin", "/admin");
    assert_norm("/public/.%2e/admin", "/admin");
    assert_norm("/public/%2e./admin", "/admin");
    assert_norm("/public/%2e/admin", "/public/admin");
    assert_norm("/public/%2e%2e", "/");
}

#[test]
fn normalize_path_dot_like_segments_are_kept() {
    assert_norm("/a/.../b", "/a/.../b");
    assert_norm("/a/.b/..c", "/a/.b/..c");
    assert_norm("/a/%2e%2e%2e", "/a/...");
    assert_norm("/a/..x;/b", "/a/..x;/b");
    assert_norm("/a/;/b", "/a/;/b");
    assert_norm("/a/;../b", "/a/;../b");
}

#[test]
fn normalize_path_repeated_slashes_are_collapsed() {
    assert_norm("//a", "/a");
    assert_norm("//public/", "/public/");
    assert_norm("/a//b///c", "/a/b/c");
    assert_norm("/a//", "/a/");
    assert_norm("///", "/");
    assert_norm("//", "/");
}

#[test]
fn normalize_path_slashes_are_collapsed_before_dots() {
    assert_norm("/a//../b", "/b");
    assert_norm("/a/.//./b", "/a/b");
}

#[test]
fn normalize_path_semicolon_has_no_special_meaning() {
    assert_norm("/admin;x=y", "/admin;x=y");
    assert_norm("/public;/../admin", "/admin");
}

#[test]
fn normalize_path_dot_segment_with_parameter_is_refused() {
    for p in [
        "/public/..;/admin",
        "/public/..;x=y/admin",
        "/public/.;/admin",
        "/public/%2e%2e;/admin",
        "/public/.%2E;jsessionid=1/admin",
        "//public/..;",
        "/..;",
    ] {
        assert_refused(p, PathError::DotSegmentParameter);
    }
}

// ===== normalize_path: refusals =====

#[test]
fn normalize_path_not_absolute_is_refused() {
    assert_refused("", PathError::NotAbsolute);
    assert_refused("*", PathError::NotAbsolute);
    assert_refused("a/b", PathError::NotAbsolute);
    assert_refused("%2Fa", PathError::NotAbsolute);
    assert_refused("http://x/a", PathError::NotAbsolute);
    assert_refused("./a", PathError::NotAbsolute);
}

#[test]
fn normalize_path_encoded_slash_is_refused() {
    assert_refused("/public/..%2fadmin", PathError::EncodedSlash);
    assert_refused("/public/..%2Fadmin", PathError::EncodedSlash);
    assert_refused("/%2F", PathError::EncodedSlash);
    assert_refused("/a%2fb", PathError::EncodedSlash);
}

#[test]
fn normalize_path_backslash_is_refused() {
    assert_refused("/a\\b", PathError::Backslash);
    assert_refused("/public/..\\admin", PathError::Backslash);
    assert_refused("/a%5cb", PathError::Backslash);
    assert_refused("/a%5Cb", PathError::Backslash);
    assert_refused("\\a", PathError::NotAbsolute);
}

#[test]
fn normalize_path_control_characters_are_refused() {
    for b in (0u8..0x20).chain([0x7F]) {
        let raw = format!("/a{}b", char::from(b));
        assert_refused(&raw, PathError::ControlCharacter);
        assert_refused(&format!("/a%{b:02x}b"), PathError::ControlCharacter);
        assert_refused(&format!("/a%{b:02X}b"), PathError::ControlCharacter);
    }
    assert_refused("/a%00", PathError::ControlCharacter);
    assert_refused("/a%0d%0aX-Admin:%20true", PathError::ControlCharacter);
}

#[test]
fn normalize_path_invalid_escape_is_refused() {
    assert_refused("/%G1", PathError::InvalidEscape);
    assert_refused("/%1G", PathError::InvalidEscape);
    assert_refused("/%4", PathError::InvalidEscape);
    assert_refused("/%", PathError::InvalidEscape);
    assert_refused("/a%%41", PathError::InvalidEscape);
    assert_refused("/%%", PathError::InvalidEscape);
    assert_refused("/% 1", PathError::InvalidEscape);
}

#[test]
fn normalize_path_raw_non_ascii_is_refused() {
    assert_refused("/café", PathError::NonAscii);
    assert_refused("/a/\u{2215}b", PathError::NonAscii);
    assert_norm("/caf%C3%A9", "/caf%C3%A9");
}

#[test]
fn normalize_path_too_long_is_refused() {
    let ok = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
    assert!(normalize_path(&ok).is_ok());
    let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
    assert_refused(&long, PathError::TooLong);
}

#[test]
fn normalize_path_refusal_after_rewrite_trigger_is_still_refused() {
    // Something needing a rewrite first must not hide a later problem.
    assert_refused("//a/%2F", PathError::EncodedSlash);
    assert_refused("/%61/..\\x", PathError::Backslash);
    assert_refused("/./%00", PathError::ControlCharacter);
}

#[test]
fn normalize_path_result_is_idempotent() {
    for p in [
        "/a/./b/../c//d/",
        "/public/%2e%2e/admin",
        "/%7e%c3%a9/..",
        "//x/../..//y/.",
        "/a%252e%252e/b",
        "/a/%2e%2e%2e/..",
    ] {
        let once = norm(p).unwrap();
        let twice = norm(&once).unwrap();
        assert_eq!(once, twice, "input {p:?}");
        assert!(matches!(normalize_path(&once), Ok(Cow::Borrowed(_))));
    }
}

/// Deterministic pseudo-random paths over a hostile alphabet: every accepted
/// result is canonical.
#[test]
fn normalize_path_random_inputs_give_canonical_results() {
    const PIECES: &[&str] = &[
        "/", "/", "/", ".", "..", "a", "B", "%2e", "%2E", "%2f", "%5c", "%41", "%7e", "%c3", "%A9",
        "%25", "%", "%g", ";", "~", "\\", "\t", "x.", "-", "_",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut p = String::from("/");
        for _ in 0..(next() % 12) {
            p.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
        }
        let Ok(n) = normalize_path(&p) else {
            continue;
        };
        assert!(n.starts_with('/'), "{p:?} -> {n:?}");
        assert!(!n.contains("//"), "{p:?} -> {n:?}");
        assert!(
            !n.split('/').any(|s| s == "." || s == ".."),
            "{p:?} -> {n:?}"
        );
        assert!(!n.contains('\\'), "{p:?} -> {n:?}");
        assert!(
            matches!(normalize_path(&n), Ok(Cow::Borrowed(b)) if b == n),
            "{p:?} -> {n:?} is not canonical"
        );
    }
}

#[test]
fn normalize_path_double_encoded_dots_are_not_decoded_twice() {
    assert_norm("/public/%252e%252e/admin", "/public/%252e%252e/admin");
}

#[test]
fn path_error_display_is_lowercase() {
    for e in [
        PathError::NotAbsolute,
        PathError::TooLong,
        PathError::EncodedSlash,
        PathError::Backslash,
        PathError::ControlCharacter,
        PathError::InvalidEscape,
        PathError::NonAscii,
        PathError::DotSegmentParameter,
    ] {
        let s = e.to_string();
        assert!(s.starts_with("path "), "{s}");
        assert!(!s.ends_with('.'), "{s}");
        assert_eq!(s, s.to_lowercase());
    }
}

// ===== RouteTable =====

fn route(path: &str, auth: RouteAuth) -> RouteConfig {
    RouteConfig {
        path: path.into(),
        auth,
        allowed_groups: Vec::new(),
        allowed_email_domains: Vec::new(),
        ..RouteConfig::default()
    }
}

fn table(routes: &[RouteConfig]) -> RouteTable {
    RouteTable::new(routes)
}

/// The policy for a raw path, through normalization like a request.
fn policy_for<'t>(t: &'t RouteTable, raw: &str) -> Option<RoutePolicy<'t>> {
    let n = normalize_path(raw).ok()?;
    Some(t.match_path(&n))
}

#[test]
fn match_path_no_routes_is_default_required() {
    let t = table(&[]);
    assert!(t.is_empty());
    let p = t.match_path("/anything");
    assert_eq!(p, RoutePolicy::DEFAULT);
    assert_eq!(p.auth, RouteAuth::Required);
    assert_eq!(p.index, None);
    assert!(p.allowed_groups.is_empty() && p.allowed_email_domains.is_empty());
}

#[test]
fn match_path_trailing_slash_route_matches_under_it() {
    let t = table(&[route("/public/", RouteAuth::None)]);
    assert_eq!(t.match_path("/public/").index, Some(0));
    assert_eq!(t.match_path("/public/x").index, Some(0));
    assert_eq!(t.match_path("/public/x/y.css").index, Some(0));
    assert_eq!(t.match_path("/public/").auth, RouteAuth::None);
}

#[test]
fn match_path_trailing_slash_route_does_not_match_bare_name() {
    let t = table(&[route("/public/", RouteAuth::None)]);
    assert_eq!(t.match_path("/public"), RoutePolicy::DEFAULT);
    assert_eq!(t.match_path("/publicx"), RoutePolicy::DEFAULT);
    assert_eq!(t.match_path("/public.css"), RoutePolicy::DEFAULT);
}

#[test]
fn match_path_no_trailing_slash_route_respects_segment_boundary() {
    let t = table(&[route("/api", RouteAuth::None)]);
    assert_eq!(t.match_path("/api").index, Some(0));
    assert_eq!(t.match_path("/api/").index, Some(0));
    assert_eq!(t.match_path("/api/v1/x").index, Some(0));
    assert_eq!(t.match_path("/apix"), RoutePolicy::DEFAULT);
    assert_eq!(t.match_path("/api.json"), RoutePolicy::DEFAULT);
    assert_eq!(t.match_path("/api;x"), RoutePolicy::DEFAULT);
    assert_eq!(t.match_path("/ap"), RoutePolicy::DEFAULT);
}

#[test]
fn match_path_is_case_sensitive() {
    let t = table(&[route("/public/", RouteAuth::None)]);
    assert_eq!(t.match_path("/PUBLIC/x"), RoutePolicy::DEFAULT);
    assert_eq!(t.match_path("/Public/x"), RoutePolicy::DEFAULT);
}

#[test]
fn match_path_first_match_wins() {
    let t = table(&[
        route("/public/private/", RouteAuth::Required),
        route("/public/", RouteAuth::None),
        route("/public/other/", RouteAuth::Required),
    ]);
    assert_eq!(t.match_path("/public/private/x").index, Some(0));
    assert_eq!(t.match_path("/public/private/x").auth, RouteAuth::Required);
    assert_eq!(t.match_path("/public/other/x").index, Some(1));
    assert_eq!(t.match_path("/public/other/x").auth, RouteAuth::None);
}

#[test]
fn match_path_root_route_matches_everything() {
    let t = table(&[route("/", RouteAuth::None)]);
    assert_eq!(t.match_path("/").index, Some(0));
    assert_eq!(t.match_path("/x/y").index, Some(0));
}

#[test]
fn match_path_encoded_dot_traversal_does_not_match_public() {
    let t = table(&[route("/public/", RouteAuth::None)]);
    let p = policy_for(&t, "/public/%2e%2e/admin").unwrap();
    assert_eq!(p, RoutePolicy::DEFAULT);
    let p = policy_for(&t, "/public/../admin").unwrap();
    assert_eq!(p, RoutePolicy::DEFAULT);
    let p = policy_for(&t, "/public/./../../admin").unwrap();
    assert_eq!(p, RoutePolicy::DEFAULT);
    let p = policy_for(&t, "/public;/../admin").unwrap();
    assert_eq!(p, RoutePolicy::DEFAULT);
    let p = policy_for(&t, "/public/..").unwrap();
    assert_eq!(p, RoutePolicy::DEFAULT);
    assert!(policy_for(&t, "/public/..;/admin").is_none());
}

#[test]
fn match_path_encoded_slash_traversal_is_refused() {
    let t = table(&[route("/public/", RouteAuth::None)]);
    assert!(policy_for(&t, "/public/..%2fadmin").is_none());
    assert!(policy_for(&t, "/public/..%5cadmin").is_none());
    assert!(policy_for(&t, "/public/..\\admin").is_none());
}

#[test]
fn match_path_double_slash_is_normalized_before_matching() {
    let t = table(&[
        route("/admin/", RouteAuth::Required),
        route("/", RouteAuth::None),
    ]);
    assert_eq!(policy_for(&t, "//admin/x").unwrap().index, Some(0));
    assert_eq!(policy_for(&t, "/.//admin/x").unwrap().index, Some(0));
    assert_eq!(policy_for(&t, "/%61dmin/x").unwrap().index, Some(0));
    assert_eq!(policy_for(&t, "/x/../admin/").unwrap().index, Some(0));
}

#[test]
fn match_path_protected_route_cannot_be_escaped_into_public() {
    let t = table(&[route("/public/", RouteAuth::None)]);
    // `/x/../public/` really is the public resource: that is fine.
    assert_eq!(policy_for(&t, "/x/../public/a").unwrap().index, Some(0));
    // Staying inside public after a detour is fine too.
    assert_eq!(policy_for(&t, "/public/a/../b").unwrap().index, Some(0));
}

#[test]
fn route_table_route_paths_are_normalized() {
    let t = table(&[
        route("//public//", RouteAuth::None),
        route("/%7euser/", RouteAuth::None),
        route("/caf%c3%a9/", RouteAuth::None),
    ]);
    assert_eq!(t.match_path("/public/x").index, Some(0));
    assert_eq!(policy_for(&t, "/~user/x").unwrap().index, Some(1));
    assert_eq!(policy_for(&t, "/%7Euser/x").unwrap().index, Some(1));
    assert_eq!(policy_for(&t, "/caf%C3%A9/x").unwrap().index, Some(2));
}

#[test]
fn route_table_invalid_route_path_never_matches() {
    let t = table(&[
        route("", RouteAuth::None),
        route("public/", RouteAuth::None),
        route("/a%2Fb/", RouteAuth::None),
        route("/x/", RouteAuth::None),
    ]);
    assert_eq!(t.len(), 4);
    assert_eq!(t.match_path("/"), RoutePolicy::DEFAULT);
    assert_eq!(t.match_path("/public/x"), RoutePolicy::DEFAULT);
    assert_eq!(t.match_path("/x/y").index, Some(3));
}

#[test]
fn route_table_try_new_reports_invalid_route() {
    let routes = [
        route("/ok/", RouteAuth::None),
        route("/a%2Fb/", RouteAuth::None),
    ];
    assert_eq!(
        RouteTable::try_new(&routes).err(),
        Some((1, PathError::EncodedSlash))
    );
    assert!(RouteTable::try_new(&routes[..1]).is_ok());
}

// ===== RoutePolicy::allows =====

fn identity(email: Option<&str>, verified: Option<bool>, groups: &[&str]) -> Identity {
    Identity {
        email: email.map(Into::into),
        email_verified: verified,
        groups: groups.iter().map(|g| (*g).to_string()).collect(),
        ..Identity::new("alice", "https://idp.example.com", IdentitySource::Session)
    }
}

fn constrained(groups: &[&str], domains: &[&str]) -> RouteTable {
    table(&[RouteConfig {
        path: "/".into(),
        auth: RouteAuth::Required,
        allowed_groups: groups.iter().map(|g| (*g).to_string()).collect(),
        allowed_email_domains: domains.iter().map(|d| (*d).to_string()).collect(),
        ..RouteConfig::default()
    }])
}

#[test]
fn allows_no_constraints_allows_anyone() {
    let id = identity(None, None, &[]);
    assert!(RoutePolicy::DEFAULT.allows(&id));
    assert!(constrained(&[], &[]).match_path("/").allows(&id));
}

#[test]
fn allows_group_overlap_is_allowed() {
    let t = constrained(&["admins", "ops"], &[]);
    let p = t.match_path("/");
    assert!(p.allows(&identity(None, None, &["users", "ops"])));
    assert!(p.allows(&identity(None, None, &["admins"])));
}

#[test]
fn allows_group_without_overlap_is_refused() {
    let t = constrained(&["admins"], &[]);
    let p = t.match_path("/");
    assert!(!p.allows(&identity(None, None, &[])));
    assert!(!p.allows(&identity(None, None, &["users"])));
    assert!(!p.allows(&identity(None, None, &["Admins"])));
    assert!(!p.allows(&identity(None, None, &["admins "])));
    assert!(!p.allows(&identity(None, None, &["admin"])));
    assert!(!p.allows(&identity(None, None, &["admins,users"])));
}

#[test]
fn allows_email_domain_match_is_allowed() {
    let t = constrained(&[], &["example.com"]);
    let p = t.match_path("/");
    assert!(p.allows(&identity(Some("a@example.com"), Some(true), &[])));
    assert!(p.allows(&identity(Some("a@example.com"), None, &[])));
    assert!(p.allows(&identity(Some("a@EXAMPLE.Com"), None, &[])));
}

#[test]
fn allows_configured_domain_case_and_at_are_ignored() {
    let t = constrained(&[], &["@Example.COM"]);
    let p = t.match_path("/");
    assert_eq!(p.allowed_email_domains, ["example.com".to_string()]);
    assert!(p.allows(&identity(Some("a@example.com"), None, &[])));
}

#[test]
fn allows_email_domain_suffix_is_refused() {
    let t = constrained(&[], &["example.com"]);
    let p = t.match_path("/");
    for email in [
        "a@evil-example.com",
        "a@sub.example.com",
        "a@example.com.evil.com",
        "a@example.co",
        "a@xample.com",
        "a@example.com.",
        "a@example.com ",
        "example.com",
        "a.example.com",
    ] {
        assert!(!p.allows(&identity(Some(email), None, &[])), "{email}");
    }
}

#[test]
fn allows_email_with_several_at_is_refused() {
    let t = constrained(&[], &["example.com"]);
    let p = t.match_path("/");
    for email in [
        "a@b@example.com",
        "a@example.com@example.com",
        "@example.com",
        "a@",
        "@",
    ] {
        assert!(!p.allows(&identity(Some(email), None, &[])), "{email}");
    }
}

#[test]
fn allows_email_missing_or_unverified_is_refused() {
    let t = constrained(&[], &["example.com"]);
    let p = t.match_path("/");
    assert!(!p.allows(&identity(None, Some(true), &[])));
    assert!(!p.allows(&identity(Some(""), None, &[])));
    assert!(!p.allows(&identity(Some("a@example.com"), Some(false), &[])));
}

#[test]
fn allows_both_constraints_must_hold() {
    let t = constrained(&["admins"], &["example.com"]);
    let p = t.match_path("/");
    assert!(p.allows(&identity(Some("a@example.com"), None, &["admins"])));
    assert!(!p.allows(&identity(Some("a@example.com"), None, &["users"])));
    assert!(!p.allows(&identity(Some("a@other.com"), None, &["admins"])));
    assert!(!p.allows(&identity(None, None, &["admins"])));
}

#[test]
fn allows_any_of_several_domains() {
    let t = constrained(&[], &["example.com", "example.org"]);
    let p = t.match_path("/");
    assert!(p.allows(&identity(Some("a@example.org"), None, &[])));
    assert!(!p.allows(&identity(Some("a@example.net"), None, &[])));
}

#[test]
fn match_path_segment_parameters_do_not_escape_a_route() {
    let t = RouteTable::new(&[
        route("/admin/", RouteAuth::Required),
        route("/public/", RouteAuth::None),
    ]);
    assert_eq!(t.match_path("/admin;x/secret").index, Some(0));
    assert_eq!(t.match_path("/admin;jsessionid=1/").index, Some(0));
    // Never made public by dropping parameters.
    assert_eq!(t.match_path("/public;x/page"), RoutePolicy::DEFAULT);
    assert_eq!(t.match_path("/public/x;y").index, Some(1));
    assert_eq!(t.match_path("/adminx;y/secret").index, None);
    assert_eq!(strip_segment_parameters("/a;x/b;y=1/c"), "/a/b/c");
}

// ===== methods, allowed_emails, allowed_claims, shadowing =====

/// A table of routes built with the richer options.
fn rich(routes: Vec<Route>) -> RouteTable {
    RouteTable { routes }
}

fn r(path: &str, auth: RouteAuth) -> Route {
    Route::new(&route(path, auth), normalize_path(path).ok())
}

fn with_claims(mut id: Identity, claims: &[(&str, &[&str])]) -> Identity {
    id.claims = crate::identity::ExtraClaims::from_pairs(claims.iter().copied());
    id
}

#[test]
fn match_request_method_route_matches_only_its_methods() {
    let t = rich(vec![
        r("/api/", RouteAuth::None).with_methods(&["options".into()]),
        r("/api/", RouteAuth::Required),
    ]);
    assert_eq!(t.match_request(&Method::OPTIONS, "/api/x").index, Some(0));
    assert_eq!(
        t.match_request(&Method::OPTIONS, "/api/x").auth,
        RouteAuth::None
    );
    assert_eq!(t.match_request(&Method::GET, "/api/x").index, Some(1));
    assert_eq!(
        t.match_request(&Method::GET, "/api/x").auth,
        RouteAuth::Required
    );
    // Without a method, method routes never match.
    assert_eq!(t.match_path("/api/x").index, Some(1));
}

#[test]
fn check_allowed_emails_exact_ignoring_case_and_unverified_refused() {
    let t = rich(vec![
        r("/", RouteAuth::Required).with_emails(&["Alice@Example.com".into()])
    ]);
    let p = t.match_path("/");
    assert!(p
        .check(&identity(Some("alice@example.com"), None, &[]))
        .is_ok());
    assert!(p
        .check(&identity(Some("ALICE@example.com"), Some(true), &[]))
        .is_ok());
    assert_eq!(
        p.check(&identity(Some("alice@example.com"), Some(false), &[])),
        Err(Denied::Email)
    );
    assert_eq!(
        p.check(&identity(Some("bob@example.com"), None, &[])),
        Err(Denied::Email)
    );
    assert_eq!(
        p.check(&identity(Some("alice@example.com.evil"), None, &[])),
        Err(Denied::Email)
    );
    assert_eq!(p.check(&identity(None, None, &[])), Err(Denied::Email));
    // The reason never lists the allowed addresses.
    assert!(!Denied::Email.to_string().contains("alice"));
}

#[test]
fn check_allowed_claims_value_or_list_element_every_rule_must_hold() {
    let acr = ("acr".to_string(), vec!["urn:mfa".to_string()]);
    let dept = (
        "department".to_string(),
        vec!["eng".to_string(), "ops".to_string()],
    );
    let t = rich(vec![
        r("/", RouteAuth::Required).with_claims([(&acr.0, &acr.1), (&dept.0, &dept.1)])
    ]);
    let p = t.match_path("/");
    let base = identity(None, None, &[]);
    let ok = with_claims(
        base.clone(),
        &[("acr", &["urn:mfa"]), ("department", &["sales", "eng"])],
    );
    assert!(p.check(&ok).is_ok());
    let no_mfa = with_claims(
        base.clone(),
        &[("acr", &["urn:pwd"]), ("department", &["eng"])],
    );
    let denied = p.check(&no_mfa).unwrap_err();
    assert_eq!(denied.rule(), "claims");
    assert_eq!(denied.to_string(), "the claim `acr` with one of: urn:mfa");
    let missing = with_claims(base.clone(), &[("acr", &["urn:mfa"])]);
    assert!(matches!(p.check(&missing), Err(Denied::Claim(rule)) if rule.name == "department"));
    assert!(p.check(&base).is_err(), "no claims at all");
    // Case-sensitive, no substring.
    let near = with_claims(
        base,
        &[("acr", &["URN:MFA", "urn:mfa2"]), ("department", &["eng"])],
    );
    assert!(p.check(&near).is_err());
    assert_eq!(t.claim_names(), ["acr", "department"]);
}

#[test]
fn check_groups_denial_names_the_groups() {
    let t = constrained(&["admins"], &[]);
    let d = t
        .match_path("/")
        .check(&identity(None, None, &["users"]))
        .unwrap_err();
    assert_eq!(d, Denied::Groups(&["admins".to_string()]));
    assert_eq!(d.rule(), "groups");
}

#[test]
fn shadowed_routes_are_found_with_their_shadow() {
    let t = rich(vec![
        r("/app/", RouteAuth::Required),
        r("/app/admin/", RouteAuth::Required),
        r("/app", RouteAuth::None),
        r("/api", RouteAuth::Required).with_methods(&["GET".into()]),
        r("/api/v1", RouteAuth::Required).with_methods(&["GET".into()]),
        r("/api/v2", RouteAuth::Required),
        r("/x", RouteAuth::Required),
        r("/x/y", RouteAuth::Required),
    ]);
    // `/app` is not under `/app/` (the bare name); `/api/v2` for all
    // methods is only partly shadowed by GET-only `/api`.
    assert_eq!(t.shadowed(), [(1, 0), (4, 3), (7, 6)]);
    assert!(
        table(&[route("/a", RouteAuth::None), route("/b", RouteAuth::None)])
            .shadowed()
            .is_empty()
    );
}

#[test]
fn strip_prefix_is_the_route_path_without_trailing_slash() {
    let t = rich(vec![
        r("/app2/", RouteAuth::None).with_strip_prefix(true),
        r("/app3", RouteAuth::None).with_strip_prefix(true),
        r("/app4/", RouteAuth::None).with_strip_prefix(false),
    ]);
    assert_eq!(t.match_path("/app2/x").strip_prefix, Some("/app2"));
    assert_eq!(t.match_path("/app3").strip_prefix, Some("/app3"));
    assert_eq!(t.match_path("/app4/x").strip_prefix, None);
}
