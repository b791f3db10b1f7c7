//! The `devtools` cargo feature as the binary shows it: with it (the default)
//! `demo` is a working subcommand; without it (`--no-default-features`,
//! `cargo test --no-default-features --test devtools_feature`) `demo` says
//! the build has no development tools and exits 2. Needs no provider, so it
//! builds in both configurations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oidc-gateway"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run oidc-gateway")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_demo_in_every_build() {
    let out = gateway(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("demo"), "{}", text(&out.stdout));
}

#[cfg(feature = "devtools")]
#[test]
fn demo_help_with_devtools_describes_the_local_setup_and_exits_0() {
    let out = gateway(&["demo", "--help"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for word in ["development OpenID Provider", "echo", "--port"] {
        assert!(stdout.contains(word), "{word} missing:\n{stdout}");
    }
}

#[cfg(feature = "devtools")]
#[test]
fn demo_with_devtools_rejects_bad_port_with_exit_2() {
    // Argument errors are clap's (exit 2) before anything starts.
    let out = gateway(&["demo", "--port", "not-a-port"]);
    assert_eq!(out.status.code(), Some(2));
}

#[cfg(not(feature = "devtools"))]
#[test]
fn demo_without_devtools_says_so_and_exits_2() {
    let out = gateway(&["demo"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no development tools") && stderr.contains("devtools"),
        "{stderr}"
    );
    assert!(text(&out.stdout).is_empty());
    let help = text(&gateway(&["demo", "--help"]).stdout);
    assert!(help.contains("Not in this build"), "{help}");
}
