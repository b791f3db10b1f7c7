//! OpenID Connect (`kind = "oidc"`): the reference dialect.
//!
//! Discovery at `issuer`, the standard authorization request (state,
//! nonce, PKCE S256, optional `response_mode=form_post`), and the standard
//! sequence: code exchange, ID token verification, userinfo merged when
//! `provider.userinfo = true`. Sessions keep the refresh token.

use super::{AttemptParams, Dialect, UserinfoUse};
use url::Url;

/// OpenID Connect Core 1.0, as certified providers speak it.
#[derive(Debug)]
pub(crate) struct OpenIdConnect {
    /// Merge the userinfo endpoint's claims at login (the endpoint must exist).
    pub(crate) userinfo: bool,
}

impl Dialect for OpenIdConnect {
    fn refreshes_sessions(&self) -> bool {
        true
    }

    fn userinfo_use(&self) -> UserinfoUse {
        if self.userinfo {
            UserinfoUse::Merge { required: true }
        } else {
            UserinfoUse::Off
        }
    }
}

/// Parameters of an authorization request (RFC 6749 §4.1.1, Core §3.1.2.1).
#[derive(Debug)]
pub(crate) struct AuthorizationRequest<'a> {
    /// The provider's authorization endpoint.
    pub(crate) endpoint: &'a Url,
    /// OAuth client id.
    pub(crate) client_id: &'a str,
    /// Our callback.
    pub(crate) redirect_uri: &'a str,
    /// Scopes, sent space-separated, verbatim.
    pub(crate) scopes: &'a [String],
    /// Ask for `response_mode=form_post`.
    pub(crate) form_post: bool,
    /// Send the attempt's `nonce`.
    pub(crate) nonce: bool,
}

impl AuthorizationRequest<'_> {
    /// The URL the browser is sent to for `attempt`.
    pub(crate) fn url(&self, attempt: &AttemptParams<'_>) -> String {
        let mut url = self.endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", self.client_id)
                .append_pair("redirect_uri", self.redirect_uri)
                .append_pair("scope", &self.scopes.join(" "))
                .append_pair("state", attempt.state);
            if self.nonce {
                q.append_pair("nonce", attempt.nonce);
            }
            q.append_pair("code_challenge", &attempt.code_challenge())
                .append_pair("code_challenge_method", "S256");
            if self.form_post {
                q.append_pair("response_mode", "form_post");
            }
        }
        url.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_url_has_every_parameter() {
        let attempt = AttemptParams {
            state: "st",
            nonce: "no",
            code_verifier: "verifier-verifier-verifier-verifier-verifier",
        };
        let endpoint = Url::parse("https://idp.example.com/authorize?tenant=a").unwrap();
        let scopes = vec!["openid".to_string(), "email".to_string()];
        let url = AuthorizationRequest {
            endpoint: &endpoint,
            client_id: "gw",
            redirect_uri: "https://app/oauth2/callback",
            scopes: &scopes,
            form_post: false,
            nonce: true,
        }
        .url(&attempt);
        let url = Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["tenant"], "a");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "gw");
        assert_eq!(q["redirect_uri"], "https://app/oauth2/callback");
        assert_eq!(q["scope"], "openid email");
        assert_eq!(q["state"], "st");
        assert_eq!(q["nonce"], "no");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], attempt.code_challenge());
        assert_ne!(q["code_challenge"], attempt.code_verifier);
        assert!(!q.contains_key("response_mode"));
    }

    #[test]
    fn authorization_url_without_nonce_and_with_form_post() {
        let attempt = AttemptParams {
            state: "st",
            nonce: "no",
            code_verifier: "v",
        };
        let endpoint = Url::parse("https://idp.example.com/authorize").unwrap();
        let url = AuthorizationRequest {
            endpoint: &endpoint,
            client_id: "gw",
            redirect_uri: "https://app/cb",
            scopes: &[],
            form_post: true,
            nonce: false,
        }
        .url(&attempt);
        let url = Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert!(!q.contains_key("nonce"));
        assert_eq!(q["response_mode"], "form_post");
    }
}
