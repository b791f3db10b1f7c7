//! Development tools: a built-in OpenID Provider and an echo upstream.
//!
//! Both run in-process on loopback and stop when their handle is dropped.
//! They back `oidc-gateway demo` and are the hostile fake provider of the
//! end-to-end tests:
//!
//! - [`provider::DevProvider`]: an OpenID Provider where any user name logs
//!   in, with request counters and injectable [`provider::Fault`]s (bad
//!   signatures, `alg: none`, key confusion, wrong `iss`/`aud`/`nonce`,
//!   token endpoint errors, …).
//! - [`echo::EchoUpstream`]: an upstream that answers every request with
//!   what it received (JSON, or an HTML page showing the identity headers).
//!
//! **Never expose these to a network you do not control**: the provider
//! logs in anyone (its keys are made at start; with
//! [`insecure_fixed_keys`](provider::DevProviderBuilder::insecure_fixed_keys)
//! it signs with a key that is published in the source tree).
//!
//! Only built with the `devtools` cargo feature (on by default). Release
//! builds for deployment can leave it out with `--no-default-features`: no
//! development provider, no `demo` subcommand, no test key in the binary.

pub mod echo;
mod http;
pub mod provider;
