//! Authentication: the OpenID Connect tower layer and its parts.
//!
//! [`OidcLayer`] is the public entry point; the submodules are its parts,
//! public so that benchmarks and embedders can use them directly.

pub mod bearer;
pub mod client_assertion;
pub mod code_flow;
pub mod cookies;
pub mod dialect;
mod endpoints;
pub mod error;
mod future;
pub mod http_client;
pub mod identity;
mod layer;
pub mod login;
pub mod provider;
pub mod return_to;
pub mod routes;
mod service;
pub mod session;
pub mod token;
pub mod userinfo;

pub use future::ResponseFuture;
pub use identity::Identity;
pub use layer::{LayerError, OidcLayer};
pub use service::Oidc;
