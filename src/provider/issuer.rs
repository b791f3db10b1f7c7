//! `[[bearer.issuer]]`: a further issuer of JWT access tokens (a CI
//! system, another tenant), accepted alongside the login provider's.
//!
//! Each has its own JWKS ([`KeyCache`], with the same refetch rules as the
//! login provider's), from its configured `jwks_uri` or from the `jwks_uri`
//! of its OpenID discovery document (whose `issuer` must equal the
//! configured one exactly, Discovery §4.3). Nothing else of it is used: no
//! login, no introspection, no userinfo.

use super::http::ProviderHttp;
use super::keys::{KeyCache, KeySource};
use super::{fetch_jwks, KeySet, ProviderError};
use crate::config::{check_provider_url, BearerIssuerConfig};
use parking_lot::RwLock;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// One `[[bearer.issuer]]`: its issuer and keys.
pub(crate) struct BearerIssuer {
    issuer: String,
    configured_jwks_uri: Option<Url>,
    jwks_uri: RwLock<Option<Url>>,
    http: ProviderHttp,
    keys: KeyCache,
}

impl std::fmt::Debug for BearerIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerIssuer")
            .field("issuer", &self.issuer)
            .field("ready", &KeySource::is_ready(self))
            .finish()
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: Option<String>,
}

impl BearerIssuer {
    /// An issuer that has loaded nothing yet; call [`BearerIssuer::load`]
    /// (or [`BearerIssuer::maintain`]).
    pub(crate) fn new(
        config: &BearerIssuerConfig,
        http: ProviderHttp,
        min_refresh: Duration,
    ) -> Self {
        BearerIssuer {
            issuer: config.issuer.clone(),
            configured_jwks_uri: config.jwks_uri.clone(),
            jwks_uri: RwLock::new(config.jwks_uri.clone()),
            http,
            keys: KeyCache::new(min_refresh),
        }
    }

    /// The `iss` its tokens carry.
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Finds the JWKS (discovery, unless configured), then fetches it.
    pub(crate) async fn load(&self) -> Result<(), ProviderError> {
        let jwks_uri = match &self.configured_jwks_uri {
            Some(u) => u.clone(),
            None => self.discover().await?,
        };
        *self.jwks_uri.write() = Some(jwks_uri.clone());
        self.keys
            .refresh_now(|| fetch_jwks(&self.http, &jwks_uri, &[]))
            .await
    }

    async fn discover(&self) -> Result<Url, ProviderError> {
        let invalid = |reason: String| ProviderError::Invalid {
            what: "bearer issuer discovery",
            reason,
        };
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let resp = self.http.get(&url, &[]).await?;
        if !resp.status.is_success() {
            return Err(ProviderError::Status {
                what: "bearer issuer discovery",
                status: resp.status.as_u16(),
            });
        }
        let doc: Discovery =
            serde_json::from_slice(&resp.body).map_err(|e| invalid(e.to_string()))?;
        if doc.issuer != self.issuer {
            return Err(ProviderError::IssuerMismatch {
                expected: self.issuer.clone(),
                got: doc.issuer,
            });
        }
        let jwks = doc
            .jwks_uri
            .ok_or_else(|| invalid("jwks_uri missing".into()))?;
        let jwks = Url::parse(&jwks).map_err(|e| invalid(format!("jwks_uri: {e}")))?;
        check_provider_url(&jwks).map_err(|e| invalid(format!("jwks_uri: {e}")))?;
        Ok(jwks)
    }

    /// Loads (retrying with backoff), then refreshes the JWKS every
    /// `every`. Runs until the task is dropped.
    pub(crate) async fn maintain(self: Arc<Self>, every: Duration) {
        let mut backoff = Duration::from_millis(200);
        while let Err(e) = self.load().await {
            tracing::warn!(issuer = %self.issuer, error = %e, retry_in = ?backoff, "bearer issuer keys not loaded");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        tracing::info!(issuer = %self.issuer, "bearer issuer keys loaded");
        loop {
            tokio::time::sleep(every).await;
            let Some(jwks_uri) = self.jwks_uri.read().clone() else {
                continue;
            };
            if let Err(e) = self
                .keys
                .refresh_now(|| fetch_jwks(&self.http, &jwks_uri, &[]))
                .await
            {
                tracing::warn!(issuer = %self.issuer, error = %e, "periodic jwks refresh failed");
            }
        }
    }
}

impl KeySource for BearerIssuer {
    fn is_ready(&self) -> bool {
        !self.keys.keys().is_empty()
    }

    fn current_keys(&self) -> Arc<KeySet> {
        self.keys.keys()
    }

    async fn keys_after_miss(&self, seen: u64) -> Arc<KeySet> {
        let Some(jwks_uri) = self.jwks_uri.read().clone() else {
            return self.keys.keys();
        };
        self.keys
            .refresh_on_miss(seen, || fetch_jwks(&self.http, &jwks_uri, &[]))
            .await
    }
}

#[cfg(all(test, feature = "devtools"))]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic")]
mod tests {
    use super::*;
    use jsonwebtoken::Algorithm;

    async fn issuer_for(
        op: &crate::devtools::provider::DevProvider,
        jwks: Option<String>,
    ) -> BearerIssuer {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut toml = format!("issuer = \"{}\"\naudiences = [\"api\"]\n", op.issuer());
        if let Some(j) = jwks {
            toml.push_str(&format!("jwks_uri = \"{j}\"\n"));
        }
        let config: BearerIssuerConfig = toml::from_str(&toml).unwrap();
        let http = ProviderHttp::new(None, Duration::from_secs(5), 1 << 20).unwrap();
        BearerIssuer::new(&config, http, Duration::from_secs(3600))
    }

    #[tokio::test]
    async fn bearer_issuer_keys_from_discovery_then_unknown_kid_refetched_once() {
        let op = crate::devtools::provider::DevProvider::builder()
            .start()
            .await
            .unwrap();
        let issuer = issuer_for(&op, None).await;
        assert!(!KeySource::is_ready(&issuer));
        issuer.load().await.unwrap();
        assert!(KeySource::is_ready(&issuer));
        assert_eq!(op.counters().discovery, 1);
        op.rotate_keys().unwrap();
        let kid = op.rsa_kid();
        op.reset_counters();
        let keys = issuer
            .keys_after_miss(issuer.current_keys().generation)
            .await;
        assert_eq!(keys.candidates(Some(&kid), Algorithm::RS256).count(), 1);
        issuer.keys_after_miss(keys.generation).await;
        assert_eq!(
            op.counters().jwks,
            1,
            "a repeated miss waits for the window"
        );
    }

    #[tokio::test]
    async fn bearer_issuer_explicit_jwks_uri_skips_discovery() {
        let op = crate::devtools::provider::DevProvider::builder()
            .start()
            .await
            .unwrap();
        let issuer = issuer_for(&op, Some(format!("{}/jwks", op.issuer()))).await;
        issuer.load().await.unwrap();
        assert_eq!(op.counters().discovery, 0);
        assert_eq!(op.counters().jwks, 1);
    }
}
