//! oidc-gateway: OpenID Connect / OAuth 2.0 single sign-on in front of applications that have none.

pub mod admin;
pub mod auth;
pub mod body;
pub mod config;
pub mod devtools;
pub mod gateway;
pub mod metrics;
pub mod proxy;
pub mod secret;
pub mod server;
