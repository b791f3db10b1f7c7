//! `deploy/kubernetes/`: the `gateway.toml` in the base ConfigMap passes
//! `oidc-gateway check` with the files the Deployment mounts, the manifests
//! agree with it (mount paths, ports, termination grace), and the redis
//! variant's `gateway.toml` passes `check` too.
//!
//! The YAML itself is checked against the Kubernetes schemas (and every pod
//! spec against the "restricted" Pod Security Standard) by
//! `deploy/kubernetes/validate.sh`, which `.ci/run` runs; here the YAML is
//! only read line by line (no YAML parser among the dependencies).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the Deployment mounts the Secrets; every file the config names lives
/// under it, so a test can point it at a temp dir.
const SECRETS_DIR: &str = "/var/run/secrets/oidc-gateway/";
/// Where the Deployment mounts the ConfigMap, and the `--config` it passes.
const CONFIG_PATH: &str = "/etc/oidc-gateway/gateway.toml";
/// 32 bytes, base64: a session secret for `check`.
const SESSION_SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The block scalar `key: |` of a YAML document, de-indented: the lines after
/// it that are blank or indented deeper than the key, up to the first that is
/// not.
fn yaml_block(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines();
    let key_indent = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("no `{key}: |` block"));
        if line.trim_start() == format!("{key}: |") {
            break line.len() - line.trim_start().len();
        }
    };
    let mut block_indent = None;
    let mut out = String::new();
    for line in lines {
        if line.trim().is_empty() {
            out.push('\n');
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let block = *block_indent.get_or_insert(indent);
        if indent <= key_indent || indent < block {
            break;
        }
        out.push_str(&line[block..]);
        out.push('\n');
    }
    assert!(!out.trim().is_empty(), "`{key}: |` block is empty");
    out
}

/// Every string value in the TOML document.
fn strings(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::String(s) => out.push(s.clone()),
        toml::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        toml::Value::Table(t) => t.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// A temp dir laid out like the pod's Secret mounts, removed on drop.
struct Mounts(PathBuf);

impl Mounts {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "oidc-gateway-deploy-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        for sub in ["tls", "oidc"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // The Secret keys, as the kubelet writes them (app-tls, app-oidc).
        std::fs::copy(repo().join("certs/gateway.crt"), dir.join("tls/tls.crt")).unwrap();
        std::fs::copy(repo().join("certs/gateway.key"), dir.join("tls/tls.key")).unwrap();
        std::fs::write(
            dir.join("oidc/client-secret"),
            "client-secret-from-the-idp\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("oidc/session-secret"),
            format!("{SESSION_SECRET}\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("oidc/redis-url"),
            "redis://:password@redis:6379/0\n",
        )
        .unwrap();
        Mounts(dir)
    }

    /// `toml` with the Secret mount directory replaced by this temp dir,
    /// written next to it; returns the config's path.
    fn config(&self, toml: &str) -> PathBuf {
        let prefix = format!("{}/", self.0.display());
        let path = self.0.join("gateway.toml");
        std::fs::write(&path, toml.replace(SECRETS_DIR, &prefix)).unwrap();
        path
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oidc-gateway"))
        .args(["check", "--config"])
        .arg(config)
        .env_remove("GATEWAY_CLIENT_SECRET")
        .env_remove("GATEWAY_SESSION_SECRET")
        .stdin(Stdio::null())
        .output()
        .expect("run oidc-gateway check")
}

fn base_toml() -> String {
    yaml_block(
        &read("deploy/kubernetes/base/configmap.yaml"),
        "gateway.toml",
    )
}

/// The absolute paths in the config all lie under the Secret mounts (so the
/// test's rewrite covers them) and each one's directory is mounted.
fn assert_paths_mounted(toml_text: &str, deployment: &str) {
    let doc: toml::Value = toml::from_str(toml_text).expect("gateway.toml parses");
    let mut values = Vec::new();
    strings(&doc, &mut values);
    let paths: Vec<&String> = values.iter().filter(|s| s.starts_with('/')).collect();
    assert!(!paths.is_empty(), "no file paths in gateway.toml");
    for p in paths {
        assert!(p.starts_with(SECRETS_DIR), "{p} is not under {SECRETS_DIR}");
        let dir = Path::new(p).parent().unwrap().display().to_string();
        assert!(
            deployment.contains(&format!("mountPath: {dir}\n")),
            "{p}: its directory {dir} is not a mountPath in deployment.yaml"
        );
    }
}

#[test]
fn base_configmap_gateway_toml_passes_check() {
    let mounts = Mounts::new();
    let out = check(&mounts.config(&base_toml()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "config ok");
}

#[test]
fn base_configmap_without_the_secret_files_is_refused() {
    // The files are really read: without them `check` names the keys.
    let dir =
        std::env::temp_dir().join(format!("oidc-gateway-deploy-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        base_toml().replace(SECRETS_DIR, &format!("{}/", dir.display())),
    )
    .unwrap();
    let out = check(&config);
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("client_secret"), "{stderr}");
}

#[test]
fn base_manifests_agree_with_gateway_toml() {
    let toml_text = base_toml();
    let deployment = read("deploy/kubernetes/base/deployment.yaml");
    assert_paths_mounted(&toml_text, &deployment);
    assert!(
        deployment.contains(&format!(r#"args: ["--config", "{CONFIG_PATH}"]"#)),
        "the gateway container must run with --config {CONFIG_PATH}"
    );
    let config_dir = Path::new(CONFIG_PATH)
        .parent()
        .unwrap()
        .display()
        .to_string();
    assert!(deployment.contains(&format!("mountPath: {config_dir}\n")));

    let doc: toml::Table = toml::from_str(&toml_text).unwrap();
    let port = |section: &str| -> String {
        let listen = doc[section]["listen"].as_str().unwrap();
        listen.rsplit(':').next().unwrap().to_string()
    };
    // The admin listener is on the pod IP (probes, Prometheus) and its port
    // is the one the manifests name.
    let admin = doc["admin"]["listen"].as_str().unwrap();
    assert!(admin.starts_with("0.0.0.0:"), "admin.listen = {admin}");
    let admin_port = port("admin");
    assert!(deployment.contains(&format!("containerPort: {admin_port}\n")));
    assert!(deployment.contains(&format!("prometheus.io/port: \"{admin_port}\"")));
    let netpol = read("deploy/kubernetes/base/networkpolicy.yaml");
    assert!(netpol.contains(&format!("port: {admin_port}\n")));
    for probe in ["path: /healthz", "path: /readyz", "port: admin"] {
        assert!(
            deployment.contains(probe),
            "no `{probe}` in deployment.yaml"
        );
    }
    let https_port = port("server");
    assert!(deployment.contains(&format!("containerPort: {https_port}\n")));
    assert!(netpol.contains(&format!("port: {https_port}\n")));

    // terminationGracePeriodSeconds covers the preStop sleep plus the drain.
    let number_after = |text: &str, key: &str| -> Vec<u64> {
        let lines: Vec<&str> = text.lines().collect();
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.trim_start().starts_with(key))
            .map(|(i, l)| {
                let rest = l.trim_start()[key.len()..].trim();
                let rest = if rest.is_empty() {
                    lines[i + 1].trim_start()
                } else {
                    rest
                };
                rest.trim_start_matches("seconds:")
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap_or_else(|e| panic!("{key} {rest}: {e}"))
            })
            .collect()
    };
    let grace = number_after(&deployment, "terminationGracePeriodSeconds:");
    let sleeps = number_after(&deployment, "sleep:");
    assert_eq!(grace.len(), 1);
    assert_eq!(sleeps.len(), 2, "a preStop sleep on both containers");
    let drain = humantime_secs(doc["server"]["shutdown_timeout"].as_str().unwrap());
    let pre_stop = *sleeps.iter().max().unwrap();
    assert!(
        grace[0] >= pre_stop + drain,
        "terminationGracePeriodSeconds {} < preStop {pre_stop} + shutdown_timeout {drain}",
        grace[0]
    );

    // The caches are sized, not the defaults (1 000 000 / 100 000).
    assert!(doc["session"]["max_sessions"].as_integer().unwrap() <= 100_000);
    assert!(doc["bearer"]["cache_capacity"].as_integer().unwrap() <= 50_000);
}

/// `"20s"` → 20 (seconds and minutes are all the manifests use).
fn humantime_secs(s: &str) -> u64 {
    if let Some(n) = s.strip_suffix('s') {
        n.parse().unwrap()
    } else if let Some(n) = s.strip_suffix('m') {
        n.parse::<u64>().unwrap() * 60
    } else {
        panic!("duration {s}")
    }
}

#[test]
fn redis_variant_gateway_toml_passes_check() {
    let toml_text = yaml_block(
        &read("deploy/kubernetes/redis/configmap.yaml"),
        "gateway.toml",
    );
    let doc: toml::Table = toml::from_str(&toml_text).expect("redis gateway.toml parses");
    assert_eq!(doc["session"]["store"].as_str(), Some("redis"));
    assert!(doc["session"].get("redis_url_file").is_some());
    assert_paths_mounted(&toml_text, &read("deploy/kubernetes/base/deployment.yaml"));
    let kustomization = read("deploy/kubernetes/redis/kustomization.yaml");
    assert!(kustomization.contains("value: 2"), "two replicas");

    // This build has the Redis store: `config ok` (check never connects).
    let mounts = Mounts::new();
    let out = check(&mounts.config(&toml_text));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "config ok");
}
