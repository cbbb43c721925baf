//! What the integration tests share. Each submodule is one kind of stand-in:
//!
//! - [`fake_cf`]: `FakeCf`, an in-memory Cloud Controller behind the deploy core's `CfApi`
//!   trait with fault injection, and the deploy fixtures built on it (the `deploy` tests).
//! - [`mock_api`]: helpers for a wiremock Cloud Controller (the `cf_client` and `push` tests).
//! - [`sim_world`]: a [`sim_world::World`], the in-process simulator under load with app
//!   versions to push (the `e2e*`, `secrets` and `sim_quota` tests).
//! - [`cf_cli`]: the plugin binary run by tests/go, a fake cf CLI written in Go (the `plugin`
//!   tests and the end-to-end tests that press Ctrl-C).

pub(crate) mod cf_cli;
pub(crate) mod fake_cf;
pub(crate) mod mock_api;
pub(crate) mod sim_world;

/// The SHA-1 of `data` in lower-case hex, as Cloud Controller's resource matching names files.
pub(crate) fn sha1_hex(data: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    hex::encode(Sha1::digest(data))
}
