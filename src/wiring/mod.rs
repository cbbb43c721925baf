//! Wiring: the one place that joins the layers. The deploy layer decides and knows only its
//! [`CfApi`](crate::deploy::CfApi) seam; this module gives it the real Cloud Controller
//! ([`adapter::CfBackend`] over `cf::Client` and `package`), turns manifest apps into
//! [`AppSpec`](crate::deploy::AppSpec)s ([`from_manifest`]), and runs a command from flags to
//! outcome ([`push`]: manifest, flags, bits, client, discovery, then `deploy::run`).
//!
//! Depends on: cli, manifest, package, cf, deploy. Must not: print (events go to a
//! [`Reporter`](crate::deploy::Reporter)).

pub mod adapter;
pub mod from_manifest;
pub mod push;
pub mod rollback;
