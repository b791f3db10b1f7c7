//! `oidc-gateway check --provider`: contact the provider the configuration
//! names, the way the gateway will (same client, CA file, timeouts, dialect),
//! and report what a login needs: discovery, the endpoints, the signing
//! keys and which of `provider.allowed_algorithms` they can verify, and the
//! URIs to register at the provider.

use crate::config::{AllowedAlgorithm, GatewayConfig, SigningAlgorithm};
use crate::provider::http::ProviderHttp;
use crate::provider::{dialect, Provider, ProviderError, ProviderMetadata};
use std::sync::Arc;

/// Why the provider could not be checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The HTTP client could not be built (`provider.ca_file`).
    #[error("provider client: {0}")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Discovery or the JWKS failed.
    #[error("{0}")]
    Load(#[source] ProviderError),
}

/// One key of the provider's JWKS, as published.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// `kid`.
    pub kid: Option<String>,
    /// `kty` (`RSA`, `EC`, `OKP`, ...).
    pub kty: String,
    /// `crv` of EC and OKP keys.
    pub crv: Option<String>,
    /// `alg`, when the key names one.
    pub alg: Option<String>,
    /// `use` (`sig`, `enc`), when given.
    pub key_use: Option<String>,
    /// The allowed algorithms this key can verify.
    pub verifies: Vec<SigningAlgorithm>,
}

/// What the check found.
#[derive(Debug)]
#[non_exhaustive]
pub struct ProviderReport {
    /// The discovered (or configured) metadata.
    pub metadata: Arc<ProviderMetadata>,
    /// How many keys the gateway loaded and can use.
    pub usable_keys: usize,
    /// The JWKS's keys (`Err` when they could not be listed: the text says why).
    pub keys: Result<Vec<KeyInfo>, String>,
    /// Allowed algorithms with at least one key; tokens signed otherwise fail.
    pub accepted: Vec<SigningAlgorithm>,
    /// Allowed algorithms no key can verify.
    pub without_key: Vec<SigningAlgorithm>,
    /// The redirect URI to register.
    pub redirect_uri: String,
    /// The post-logout redirect URI to register.
    pub post_logout_redirect_uri: String,
}

impl ProviderReport {
    /// Whether a login can work: keys (or no JWKS at all) and at least one
    /// allowed algorithm they verify.
    pub fn is_usable(&self) -> bool {
        self.metadata.jwks_uri.is_none() || (self.usable_keys > 0 && !self.accepted.is_empty())
    }
}

/// The algorithms of `allowed` a JWK with these parameters can verify.
fn verifies(
    kty: &str,
    crv: Option<&str>,
    alg: Option<&str>,
    key_use: Option<&str>,
    allowed: &[SigningAlgorithm],
) -> Vec<SigningAlgorithm> {
    use SigningAlgorithm::*;
    if key_use.is_some_and(|u| u != "sig") {
        return Vec::new();
    }
    let family: &[SigningAlgorithm] = match (kty, crv) {
        ("RSA", _) => &[RS256, RS384, RS512, PS256, PS384, PS512],
        ("EC", Some("P-256")) => &[ES256],
        ("EC", Some("P-384")) => &[ES384],
        ("OKP", Some("Ed25519")) => &[EdDSA],
        _ => &[],
    };
    allowed
        .iter()
        .copied()
        .filter(|a| family.contains(a) && alg.is_none_or(|n| n == a.to_string()))
        .collect()
}

/// The keys of a JWKS document, as published.
fn list_keys(body: &[u8], allowed: &[SigningAlgorithm]) -> Result<Vec<KeyInfo>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("no \"keys\" array")?;
    let text =
        |k: &serde_json::Value, name: &str| k.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(keys
        .iter()
        .take(100)
        .map(|k| {
            let kty = text(k, "kty").unwrap_or_default();
            let crv = text(k, "crv");
            let alg = text(k, "alg");
            let key_use = text(k, "use");
            KeyInfo {
                verifies: verifies(
                    &kty,
                    crv.as_deref(),
                    alg.as_deref(),
                    key_use.as_deref(),
                    allowed,
                ),
                kid: text(k, "kid"),
                kty,
                crv,
                alg,
                key_use,
            }
        })
        .collect())
}

/// The asymmetric algorithms the gateway accepts from this provider: the
/// configured list, else the advertised ones that are supported, else RS256
/// (as the token verifier decides; HMAC algorithms need no key).
fn accepted_algorithms(
    configured: Option<&[AllowedAlgorithm]>,
    advertised: Option<&[String]>,
) -> Vec<SigningAlgorithm> {
    match configured {
        Some(list) => list.iter().filter_map(|a| a.signing()).collect(),
        None => {
            let from_discovery: Vec<SigningAlgorithm> = advertised
                .unwrap_or_default()
                .iter()
                .filter_map(|name| name.parse().ok())
                .collect();
            if from_discovery.is_empty() {
                vec![SigningAlgorithm::RS256]
            } else {
                from_discovery
            }
        }
    }
}

/// Loads the provider of `config` as the gateway would and reports.
pub async fn probe(config: &GatewayConfig) -> Result<ProviderReport, ProbeError> {
    let p = &config.provider;
    let http = ProviderHttp::new(p.ca_file.as_deref(), p.http_timeout, p.max_response_bytes)
        .map_err(ProbeError::Client)?;
    let dialect = dialect::for_config(p);
    let provider = Provider::new(dialect.provider_rules(p), http.clone());
    provider.load().await.map_err(ProbeError::Load)?;
    let Some(metadata) = provider.metadata() else {
        return Err(ProbeError::Client("no metadata after loading".into()));
    };
    let allowed = &accepted_algorithms(
        p.allowed_algorithms.as_deref(),
        metadata.id_token_signing_algs.as_deref(),
    );
    let keys = match &metadata.jwks_uri {
        None => Ok(Vec::new()),
        Some(uri) => match http.get(uri.as_str(), &[]).await {
            Ok(resp) if resp.status.is_success() => list_keys(&resp.body, allowed),
            Ok(resp) => Err(format!("{uri} answered {}", resp.status)),
            Err(e) => Err(format!("{uri}: {e}")),
        },
    };
    let (accepted, without_key) = match &keys {
        Ok(keys) => allowed
            .iter()
            .copied()
            .partition(|a| keys.iter().any(|k| k.verifies.contains(a))),
        Err(_) => (allowed.to_vec(), Vec::new()),
    };
    let oidc = config.oidc();
    Ok(ProviderReport {
        usable_keys: provider.keys().len(),
        metadata,
        keys,
        accepted,
        without_key,
        redirect_uri: config.redirect_uri(),
        post_logout_redirect_uri: format!(
            "{}{}/signed_out",
            oidc.public_url.as_str().trim_end_matches('/'),
            oidc.prefix
        ),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use SigningAlgorithm::*;

    #[test]
    fn keys_verify_only_their_family_and_named_alg() {
        let allowed = [RS256, PS256, ES256, EdDSA];
        assert_eq!(verifies("RSA", None, None, None, &allowed), [RS256, PS256]);
        assert_eq!(
            verifies("RSA", None, Some("PS256"), None, &allowed),
            [PS256]
        );
        assert_eq!(
            verifies("EC", Some("P-256"), None, Some("sig"), &allowed),
            [ES256]
        );
        assert!(verifies("EC", Some("P-384"), None, None, &allowed).is_empty());
        assert!(verifies("RSA", None, None, Some("enc"), &allowed).is_empty());
        assert!(verifies("oct", None, Some("HS256"), None, &allowed).is_empty());
        assert_eq!(
            verifies("OKP", Some("Ed25519"), None, None, &allowed),
            [EdDSA]
        );
    }

    #[test]
    fn list_keys_reads_the_published_fields() {
        let body = br#"{"keys":[{"kty":"RSA","kid":"a","alg":"RS256","use":"sig","n":"x","e":"AQAB"},{"kty":"EC","crv":"P-384","kid":"b"}]}"#;
        let keys = list_keys(body, &[RS256]).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
        assert_eq!(keys[0].verifies, [RS256]);
        assert_eq!(keys[1].crv.as_deref(), Some("P-384"));
        assert!(keys[1].verifies.is_empty());
        assert!(list_keys(b"[]", &[RS256]).is_err());
    }
}
