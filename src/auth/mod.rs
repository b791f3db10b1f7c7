//! Authentication: routing policy, identity and return targets.

pub mod identity;
pub mod return_to;
pub mod routes;
