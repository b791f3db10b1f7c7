//! `[log]` of the running binary: the format, the filter (`level`, or
//! `RUST_LOG` in its place) and the access-log switch, which holds whatever
//! the filter's level.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;

/// A gateway binary in front of an echo upstream, with `log` as its `[log]`
/// section and `env` as its environment; serves one `/public/` request.
async fn gateway_with_log(
    log: &str,
    env: &[(&str, &str)],
) -> (GatewayProcess, DevProvider, DevEcho) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let op = DevProvider::builder()
        .insecure_fixed_keys()
        .client_secret(random_token(18))
        .start()
        .await
        .expect("start dev provider");
    let echo = echo_upstream().await;
    let gw = dev_gateway_process(&op, &echo.url(), "", &format!("[log]\n{log}"), env).await;
    let resp = api_client(None)
        .get(gw.url("/public/logged?code=secret-code"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    (gw, op, echo)
}

/// Waits (bounded) until the log has a line containing `needle`; the lines
/// are written by the gateway's log thread, a moment after the request.
async fn wait_for_line(gw: &GatewayProcess, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = gw.stderr().lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needle:?}\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn json_format_and_warn_level_keep_the_access_log() {
    let (gw, _op, _echo) = gateway_with_log("format = \"json\"", &[("RUST_LOG", "warn")]).await;
    let line = wait_for_line(&gw, "oidc_gateway::access").await;
    let entry: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(entry["target"], "oidc_gateway::access");
    assert_eq!(entry["fields"]["path"], "/public/logged");
    assert_eq!(entry["fields"]["status"], 200);
    assert!(
        !line.contains("secret-code"),
        "the query is never logged: {line}"
    );
    // `warn`: the start-up line (info) is not there.
    assert!(
        !gw.stderr().contains("oidc-gateway listening"),
        "info lines under RUST_LOG=warn:\n{}",
        gw.stderr()
    );
    for l in gw.stderr().lines() {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
    }
}

#[tokio::test]
async fn access_log_off_leaves_the_other_lines() {
    let (gw, _op, _echo) = gateway_with_log(
        "access_log = false\nlevel = \"info\"",
        &[("OIDC_GATEWAY_LOG_FORMAT", "json")],
    )
    .await;
    // A second request, then a line logged after both: the access lines
    // would be there by then.
    let resp = api_client(None)
        .get(gw.url("/public/again"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    wait_for_line(&gw, "oidc-gateway listening").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = gw.stderr();
    assert!(
        !log.contains("oidc_gateway::access") && !log.contains("/public/"),
        "access lines with access_log = false:\n{log}"
    );
    // `format` unset: OIDC_GATEWAY_LOG_FORMAT=json still applies.
    assert!(log.lines().all(|l| l.starts_with('{')), "not JSON:\n{log}");
}

#[tokio::test]
async fn text_format_is_the_default_without_colour_in_a_file() {
    let (gw, _op, _echo) = gateway_with_log("", &[]).await;
    let line = wait_for_line(&gw, "oidc_gateway::access").await;
    assert!(line.contains("path=\"/public/logged\""), "{line}");
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        !gw.stderr().contains('\u{1b}'),
        "ANSI codes in a file:\n{}",
        gw.stderr()
    );
}
