//! Authentication: the OpenID Connect tower layer and its parts.

pub mod bearer;
pub mod code_flow;
pub mod cookies;
pub mod error;
pub mod http_client;
pub mod identity;
pub mod login;
pub mod provider;
pub mod session;
pub mod token;
