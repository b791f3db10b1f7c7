use super::*;

fn rt(rd: &str) -> String {
    safe_return_to(Some(rd)).into_owned()
}

fn assert_refused(rd: &str) {
    assert_eq!(rt(rd), "/", "{rd:?} must be refused");
}

fn assert_kept(rd: &str) {
    assert!(
        matches!(safe_return_to(Some(rd)), Cow::Borrowed(b) if b == rd),
        "{rd:?} must be kept as is"
    );
}

// ===== accepted =====

#[test]
fn safe_return_to_missing_or_empty_is_root() {
    assert_eq!(safe_return_to(None), "/");
    assert_refused("");
}

#[test]
fn safe_return_to_local_paths_are_kept() {
    for rd in [
        "/",
        "/a",
        "/a/b/",
        "/a?b=c",
        "/a?b=c&d=e",
        "/.evil.com",
        "/evil.com",
        "/javascript:alert(1)",
        "/a/../b",
        "/%2e%2e/x",
        "/caf%C3%A9",
        "/a;b=c",
        "/~user",
        "/a%20b",
        "/100%25",
        "/a%2541",
        "/?",
        "/a?next=%2F%2Fevil.com",
        "/a?x=%5C",
        "/a?x=%252F",
        "/a?x=https://evil.com",
    ] {
        assert_kept(rd);
    }
}

#[test]
fn safe_return_to_fragment_is_dropped() {
    assert_eq!(rt("/a#frag"), "/a");
    assert_eq!(rt("/a?b=c#frag"), "/a?b=c");
    assert_eq!(rt("/#"), "/");
    assert_refused("#/a");
    assert_eq!(rt("/a#//evil.com"), "/a");
}

#[test]
fn safe_return_to_raw_space_and_non_ascii_are_encoded() {
    assert_eq!(rt("/search?q=a b"), "/search?q=a%20b");
    assert_eq!(rt("/café"), "/caf%C3%A9");
    assert_eq!(rt("/ /evil.com"), "/%20/evil.com");
    assert_eq!(rt("/a\"<b>'`"), "/a%22%3Cb%3E%27%60");
}

// ===== refused: not a local path =====

#[test]
fn safe_return_to_scheme_is_refused() {
    for rd in [
        "https://evil.com",
        "https:evil.com",
        "http:/evil.com",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:x",
        "mailto:a@b",
    ] {
        assert_refused(rd);
    }
}

#[test]
fn safe_return_to_scheme_relative_is_refused() {
    for rd in [
        "//evil.com",
        "//evil.com/a",
        "///evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "\\/evil.com",
        "/\\/evil.com",
    ] {
        assert_refused(rd);
    }
}

#[test]
fn safe_return_to_relative_and_whitespace_leading_are_refused() {
    for rd in [
        "evil.com",
        "a/b",
        "./a",
        "../a",
        "?a=b",
        " /a",
        "\t/a",
        "\n/a",
        " //evil.com",
        "%2F",
        "%2F%2Fevil.com",
    ] {
        assert_refused(rd);
    }
}

#[test]
fn safe_return_to_backslash_anywhere_is_refused() {
    assert_refused("/a\\b");
    assert_refused("/a?b=\\");
}

// ===== refused: control characters =====

#[test]
fn safe_return_to_raw_control_characters_are_refused() {
    for b in (0u8..0x20).chain([0x7F]) {
        let c = char::from(b);
        assert_refused(&format!("/a{c}b"));
        assert_refused(&format!("/{c}/evil.com"));
        assert_refused(&format!("/a?x={c}"));
    }
}

#[test]
fn safe_return_to_encoded_control_characters_are_refused() {
    for b in (0u8..0x20).chain([0x7F]) {
        assert_refused(&format!("/a%{b:02x}b"));
        assert_refused(&format!("/a%{b:02X}b"));
        assert_refused(&format!("/a?x=%{b:02X}"));
    }
    assert_refused("/a%0d%0aSet-Cookie:%20x=y");
    assert_refused("/%00");
}

// ===== refused: known open redirect bypasses =====

#[test]
fn safe_return_to_cve_2020_4037_tab_is_refused() {
    assert_refused("/\t/evil.com");
    assert_refused("/\t\t/evil.com");
    assert_refused("/\n/evil.com");
    assert_refused("/\r/evil.com");
    assert_refused("/%09/evil.com");
    assert_refused("/%0a/evil.com");
    assert_refused("/%0D/evil.com");
}

#[test]
fn safe_return_to_encoded_slash_or_backslash_in_path_is_refused() {
    for rd in [
        "/%2F%2Fevil.com",
        "/%2f%2fevil.com",
        "/%2F/evil.com",
        "/%5c/evil.com",
        "/%5C/evil.com",
        "/%5c%5cevil.com",
        "/a/%2F",
        "/%2fevil.com",
    ] {
        assert_refused(rd);
    }
}

#[test]
fn safe_return_to_double_encoding_is_refused() {
    for rd in [
        "/%252F%252Fevil.com",
        "/%252f/evil.com",
        "/%255C/evil.com",
        "/%255c%255cevil.com",
        "/%2509/evil.com",
        "/%250d%250a",
        "/%25252F",
        "/%257F",
    ] {
        assert_refused(rd);
    }
}

#[test]
fn safe_return_to_invalid_escape_is_refused() {
    for rd in ["/%", "/%4", "/%G1", "/a%zz", "/a?b=%", "/a?b=%%"] {
        assert_refused(rd);
    }
}

#[test]
fn safe_return_to_too_long_is_refused() {
    let ok = format!("/{}", "a".repeat(MAX_RETURN_TO_LEN - 1));
    assert_kept(&ok);
    let long = format!("/{}", "a".repeat(MAX_RETURN_TO_LEN));
    assert_refused(&long);
    let long_fragment = format!("/a#{}", "a".repeat(MAX_RETURN_TO_LEN));
    assert_refused(&long_fragment);
}

#[test]
fn safe_return_to_result_is_always_a_local_path() {
    // Whatever the input, the result resolves on our own origin.
    let base = url::Url::parse("https://app.example.com/x/y").unwrap();
    let pieces = [
        "/", "\\", "%2F", "%5C", "%09", "\t", " ", "evil.com", "@", ":", "%25", "2F", "?", "#",
        ".", "%2e", "https:", "\n", "é",
    ];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut rd = String::new();
        for _ in 0..(1 + next() % 6) {
            rd.push_str(pieces[(next() % pieces.len() as u64) as usize]);
        }
        let out = safe_return_to(Some(&rd));
        let joined = base.join(&out).unwrap();
        assert_eq!(
            joined.host_str(),
            Some("app.example.com"),
            "{rd:?} -> {out:?}"
        );
        assert_eq!(joined.scheme(), "https", "{rd:?} -> {out:?}");
        assert!(out.starts_with('/'), "{rd:?} -> {out:?}");
        assert!(
            out.bytes().all(|b| (0x21..=0x7E).contains(&b)),
            "{rd:?} -> {out:?}"
        );
        // Stable: a kept target is kept again.
        assert_eq!(safe_return_to(Some(&out)), out, "{rd:?}");
    }
}

// ===== original_url =====

fn orig(uri: &str) -> String {
    original_url(&uri.parse::<Uri>().unwrap())
}

#[test]
fn original_url_path_and_query_are_kept() {
    assert_eq!(orig("/a/b?c=d&e=f"), "/a/b?c=d&e=f");
    assert_eq!(orig("/"), "/");
    assert_eq!(orig("/a?"), "/a?");
    assert_eq!(orig("https://app.example.com/a?b=c"), "/a?b=c");
    assert_eq!(orig("https://app.example.com"), "/");
}

#[test]
fn original_url_path_is_normalized() {
    assert_eq!(orig("//evil.com/a"), "/evil.com/a");
    assert_eq!(orig("/a/../b?x=1"), "/b?x=1");
    assert_eq!(orig("/public/%2e%2e/admin"), "/admin");
    assert_eq!(orig("/%7euser"), "/~user");
}

#[test]
fn original_url_unsafe_path_is_root() {
    assert_eq!(orig("/a%2Fb"), "/");
    assert_eq!(orig("/a%00"), "/");
    assert_eq!(orig("/a%252F"), "/");
    assert_eq!(orig("*"), "/");
}

#[test]
fn original_url_unsafe_query_is_root() {
    assert_eq!(orig("/a?x=%0d%0a"), "/");
}
