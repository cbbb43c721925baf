//! Cloud Controller v3 client: the only code that speaks HTTP to Cloud Controller.
//!
//! Depends on: external crates only. Must not: know about manifests, deploys or printing.

pub mod auth;
pub mod target;

pub use auth::{AuthError, TokenProvider};
pub use target::{NamedGuid, Target};
