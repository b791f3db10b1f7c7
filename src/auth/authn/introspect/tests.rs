//! The introspector against the development provider's `/introspect`, on a
//! pinned clock: what is cached and for how long, single flight, the
//! concurrency bound, where the endpoint comes from, and hostile answers.

use super::*;

#[test]
fn jwt_shape_is_three_or_five_parts_with_a_json_header() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
    assert!(is_jwt_shaped(&format!("{header}.e30.sig")));
    assert!(is_jwt_shaped(&format!("{header}.k.iv.ct.tag")));
    assert!(!is_jwt_shaped("not.a.jwt"));
    assert!(!is_jwt_shaped(&format!("{header}.e30")));
    assert!(!is_jwt_shaped("ory_at_abc.def"));
    assert!(!is_jwt_shaped("2YotnFZFEjr1zCsicMWpAA"));
}

#[test]
fn b64token_is_rfc6750_characters_and_bounded() {
    assert!(is_b64token("2YotnFZFEjr1zCsicMWpAA"));
    assert!(is_b64token("a-b.c_d~e+f/g=="));
    for bad in ["", "==", "a b", "a,b", "a\"b", "ä", "a=b"] {
        assert!(!is_b64token(bad), "{bad:?}");
    }
    assert!(is_b64token(&"a".repeat(MAX_OPAQUE_TOKEN_BYTES)));
    assert!(!is_b64token(&"a".repeat(MAX_OPAQUE_TOKEN_BYTES + 1)));
}

#[cfg(feature = "devtools")]
mod against_the_dev_provider {
    use super::*;
    use crate::clock::{system_now_secs, Clock, ManualClock};
    use crate::config::{HeaderNamesConfig, ProviderConfig};
    use crate::devtools::provider::{ClientAuth, DevProvider, Fault};
    use crate::provider::http::ProviderHttp;
    use crate::provider::ProviderRules;
    use serde_json::json;

    const SKEW: u64 = 60;

    struct Env {
        op: DevProvider,
        clock: Arc<ManualClock>,
        introspector: Introspector,
    }

    fn settings() -> IntrospectionSettings {
        IntrospectionSettings {
            endpoint: None,
            cache_ttl: Duration::from_secs(60),
            capacity: 1000,
            limits: IntrospectionLimits::default(),
        }
    }

    async fn op() -> DevProvider {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        DevProvider::builder()
            .insecure_fixed_keys()
            .start()
            .await
            .unwrap()
    }

    async fn env_with(op: DevProvider, provider_extra: &str, s: IntrospectionSettings) -> Env {
        let config: ProviderConfig = toml::from_str(&format!(
            "issuer = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n{provider_extra}",
            op.issuer(),
            op.client_id(),
            op.client_secret()
        ))
        .unwrap();
        let http = ProviderHttp::new(None, Duration::from_millis(500), 64 * 1024).unwrap();
        let provider = Arc::new(Provider::new(ProviderRules::discovered(&config), http));
        provider.load().await.unwrap();
        let clock = Arc::new(ManualClock::new(system_now_secs()));
        let verifier = Arc::new(
            TokenVerifier::new(
                provider.clone(),
                &[crate::config::SigningAlgorithm::RS256],
                op.client_id(),
                &[op.client_id().to_string()],
                SKEW,
            )
            .with_clock(clock.clone()),
        );
        let headers = Arc::new(IdentityHeaders::new(&HeaderNamesConfig::default()).unwrap());
        let introspector = Introspector::new(
            provider,
            ClientCredentials::from_config(&config).unwrap(),
            verifier,
            headers,
            s,
            clock.clone(),
        );
        Env {
            op,
            clock,
            introspector,
        }
    }

    async fn env() -> Env {
        env_with(op().await, "", settings()).await
    }

    impl Env {
        fn calls(&self) -> usize {
            self.op.counters().introspection
        }

        async fn refused(&self, token: &str) -> TokenError {
            match self.introspector.authenticate(token).await {
                Err(IntrospectionFailure::Refused(e)) => e,
                Err(e) => panic!("unavailable instead of refused: {e}"),
                Ok(_) => panic!("accepted"),
            }
        }

        async fn unavailable(&self, token: &str) -> bool {
            matches!(
                self.introspector.authenticate(token).await,
                Err(IntrospectionFailure::Unavailable(_))
            )
        }
    }

    #[tokio::test]
    async fn introspection_active_token_gives_identity_and_is_cached_for_the_cache_ttl() {
        let e = env().await;
        let token = e.op.mint_opaque_token(json!({"sub": "bob"}));
        let (p, cached) = e.introspector.authenticate(&token).await.unwrap();
        assert!(!cached);
        assert_eq!(p.identity.subject, "bob");
        assert_eq!(p.identity.email.as_deref(), Some("bob@example.com"));
        assert_eq!(p.identity.groups, vec!["users".to_string()]);
        assert_eq!(e.calls(), 1);

        e.clock.advance(59);
        let (_, cached) = e.introspector.authenticate(&token).await.unwrap();
        assert!(cached);
        assert_eq!(e.calls(), 1, "served from the cache");

        e.clock.advance(1);
        let (_, cached) = e.introspector.authenticate(&token).await.unwrap();
        assert!(!cached);
        assert_eq!(e.calls(), 2, "introspection_cache has passed: asked again");
    }

    #[tokio::test]
    async fn introspection_answer_is_never_reused_past_exp() {
        let e = env().await;
        let exp = e.clock.now_secs() + 10;
        let token = e.op.mint_opaque_token(json!({"exp": exp}));
        assert!(e.introspector.authenticate(&token).await.is_ok());
        e.clock.set(exp - 1);
        assert!(e.introspector.authenticate(&token).await.unwrap().1);
        assert_eq!(e.calls(), 1);
        e.clock.set(exp);
        let _ = e.introspector.authenticate(&token).await;
        assert_eq!(e.calls(), 2, "exp reached: the cached answer is not used");
        e.clock.set(exp + SKEW + 1);
        assert_eq!(e.refused(&token).await, TokenError::Expired);
    }

    #[tokio::test]
    async fn introspection_refusal_is_cached_briefly() {
        let e = env().await;
        assert_eq!(e.refused("unknown-token").await, TokenError::Inactive);
        assert_eq!(e.refused("unknown-token").await, TokenError::Inactive);
        assert_eq!(e.calls(), 1, "negative answer reused");
        e.clock.advance(NEGATIVE_CACHE.as_secs());
        assert_eq!(e.refused("unknown-token").await, TokenError::Inactive);
        assert_eq!(e.calls(), 2);
    }

    #[tokio::test]
    async fn introspection_of_a_token_that_is_no_b64token_makes_no_call() {
        let e = env().await;
        let long = "a".repeat(MAX_OPAQUE_TOKEN_BYTES + 1);
        for bad in ["a b", "tok\"en", long.as_str()] {
            assert_eq!(e.refused(bad).await, TokenError::Malformed);
        }
        assert_eq!(e.calls(), 0);
    }

    #[tokio::test]
    async fn introspection_concurrent_requests_for_one_token_share_one_call() {
        let e = Arc::new(env().await);
        e.op.set_fault(Fault::IntrospectionDelay(Duration::from_millis(150)));
        let token = e.op.mint_opaque_token(json!({}));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (e, token) = (e.clone(), token.clone());
            set.spawn(async move { e.introspector.authenticate(&token).await.is_ok() });
        }
        while let Some(ok) = set.join_next().await {
            assert!(ok.unwrap());
        }
        assert_eq!(e.calls(), 1);
    }

    #[tokio::test]
    async fn introspection_flood_of_random_tokens_is_bounded() {
        let limits = IntrospectionLimits {
            max_in_flight: 4,
            max_waiting: 8,
            max_wait: Duration::from_secs(5),
        };
        let e = Arc::new(
            env_with(
                op().await,
                "",
                IntrospectionSettings {
                    limits,
                    ..settings()
                },
            )
            .await,
        );
        e.op.set_fault(Fault::IntrospectionDelay(Duration::from_millis(200)));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..200 {
            let e = e.clone();
            set.spawn(async move {
                e.introspector
                    .authenticate(&format!("random-{i}"))
                    .await
                    .is_ok()
            });
        }
        while let Some(ok) = set.join_next().await {
            assert!(!ok.unwrap(), "no random token is accepted");
        }
        let c = e.op.counters();
        assert!(c.introspection_max_in_flight <= 4, "{c:?}");
        assert!(
            c.introspection <= 4 + 8 + 4,
            "{} calls for 200 random tokens",
            c.introspection
        );
    }

    #[tokio::test]
    async fn introspection_waits_at_most_max_wait_for_a_slot() {
        let limits = IntrospectionLimits {
            max_in_flight: 1,
            max_waiting: 10,
            max_wait: Duration::from_millis(50),
        };
        let e = Arc::new(
            env_with(
                op().await,
                "",
                IntrospectionSettings {
                    limits,
                    ..settings()
                },
            )
            .await,
        );
        e.op.set_fault(Fault::IntrospectionDelay(Duration::from_millis(300)));
        let slow = {
            let e = e.clone();
            tokio::spawn(async move { e.introspector.authenticate("first").await.is_err() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        assert!(e.unavailable("second").await);
        assert!(started.elapsed() < Duration::from_millis(250));
        assert!(slow.await.unwrap());
    }

    #[tokio::test]
    async fn introspection_hostile_answers_are_refused() {
        let e = env().await;
        let now = e.clock.now_secs();
        let cases = [
            (json!({"active": false}), TokenError::Inactive),
            (json!({"aud": "some-other-api"}), TokenError::WrongAudience),
            (
                json!({"iss": "https://attacker.example"}),
                TokenError::WrongIssuer,
            ),
            (
                json!({"exp": now - SKEW - 1, "iat": now - 7200}),
                TokenError::Expired,
            ),
            (json!({"nbf": now + SKEW + 60}), TokenError::NotYetValid),
            (json!({"sub": null}), TokenError::MissingClaim("sub")),
            (
                json!({"token_type": "refresh_token"}),
                TokenError::WrongType,
            ),
            (json!({"active": "true"}), TokenError::Malformed),
        ];
        for (patch, expected) in cases {
            e.op.set_fault(Fault::IntrospectionClaims(patch.clone()));
            let token = e.op.mint_opaque_token(json!({}));
            assert_eq!(e.refused(&token).await, expected, "{patch}");
        }
        e.op.clear_faults();
        e.op.set_fault(Fault::MalformedIntrospectionResponse);
        let token = e.op.mint_opaque_token(json!({}));
        assert_eq!(e.refused(&token).await, TokenError::Malformed);
    }

    #[tokio::test]
    async fn introspection_provider_trouble_is_unavailable_and_not_cached() {
        let e = env().await;
        let token = e.op.mint_opaque_token(json!({}));
        for fault in [
            Fault::IntrospectionUnavailable,
            Fault::IntrospectionDelay(Duration::from_secs(2)),
            Fault::OversizedIntrospectionResponse(256 * 1024),
        ] {
            e.op.set_fault(fault.clone());
            assert!(e.unavailable(&token).await, "{fault:?}");
            e.op.clear_faults();
        }
        assert!(e.introspector.authenticate(&token).await.is_ok());
    }

    #[tokio::test]
    async fn introspection_endpoint_from_rfc8414_metadata_when_discovery_lacks_it() {
        let op = op().await;
        op.set_fault(Fault::IntrospectionOnlyInRfc8414);
        let e = env_with(op, "", settings()).await;
        let token = e.op.mint_opaque_token(json!({}));
        assert!(e.introspector.authenticate(&token).await.is_ok());
        assert_eq!(e.calls(), 1);
    }

    #[tokio::test]
    async fn introspection_endpoint_from_configuration_wins() {
        let op = op().await;
        let e = env_with(
            op,
            "",
            IntrospectionSettings {
                endpoint: Some(Url::parse("http://127.0.0.1:9/introspect").unwrap()),
                ..settings()
            },
        )
        .await;
        let token = e.op.mint_opaque_token(json!({}));
        assert!(e.unavailable(&token).await);
        assert_eq!(e.calls(), 0);
    }

    #[tokio::test]
    async fn introspection_authenticates_with_client_secret_post_and_private_key_jwt() {
        let op = DevProvider::builder()
            .insecure_fixed_keys()
            .client_auth(ClientAuth::ClientSecretPost)
            .start()
            .await
            .unwrap();
        let e = env_with(op, "client_auth = \"client_secret_post\"", settings()).await;
        let token = e.op.mint_opaque_token(json!({}));
        assert!(e.introspector.authenticate(&token).await.is_ok());
        assert_eq!(e.op.counters().token_client_secret_post, 1);

        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/gateway.key");
        let pem = std::fs::read_to_string(key).unwrap();
        let public = crate::devtools::provider::public_key_pem(&pem).unwrap();
        let op = DevProvider::builder()
            .insecure_fixed_keys()
            .client_auth(ClientAuth::PrivateKeyJwt(public))
            .start()
            .await
            .unwrap();
        let e = env_with(
            op,
            &format!("client_auth = \"private_key_jwt\"\nprivate_key_file = {key:?}"),
            settings(),
        )
        .await;
        let token = e.op.mint_opaque_token(json!({}));
        assert!(e.introspector.authenticate(&token).await.is_ok());
        assert_eq!(e.op.counters().token_private_key_jwt, 1);
        // A second token: a fresh assertion (single-use jti).
        let token = e.op.mint_opaque_token(json!({}));
        assert!(e.introspector.authenticate(&token).await.is_ok());
    }
}
