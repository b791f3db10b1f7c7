//! The authentication layer: [`OidcLayer`], its builder, the [`Oidc`]
//! service and its [`ResponseFuture`].
//!
//! Inside, each part has one job:
//!
//! | part | job |
//! |---|---|
//! | `layer` | the builder: makes every part with only what it uses |
//! | `service` | per request: path, header stripping, endpoint or route, authenticate, admit |
//! | `policy` | path normalization, route table, the one route decision |
//! | `authn` | credential → identity (session cookie, bearer token, refresh) |
//! | `login` | start, callback, sign-out; login-attempt cookies; return URLs |
//! | `endpoints` | `/userinfo`, `/auth` (forward-auth), back-channel logout, dispatch |
//! | `session_cookie` | how the request and response carry the session (id or sealed chunks) |
//! | `cookies`, `params`, `responses` | cookie headers, endpoint parameters, pages |
//!
//! Arrows point down only: `auth` → [`provider`](crate::provider),
//! [`token`](crate::token), [`session`](crate::session) → `identity`,
//! `secret`, `clock`, `metrics`.

pub(crate) mod assertion;
pub(crate) mod authn;
pub(crate) mod cookies;
mod endpoints;
mod future;
mod layer;
pub(crate) mod login;
mod params;
pub(crate) mod policy;
pub(crate) mod responses;
mod service;
pub(crate) mod session_cookie;
pub(crate) mod upstream;

pub use assertion::{AssertionKeyError, AssertionSigner};
pub use future::ResponseFuture;
pub use layer::{LayerError, OidcLayer, OidcLayerBuilder};
pub use policy::MatchedRoute;
pub use service::Oidc;
pub use upstream::AuthorizationMode;
