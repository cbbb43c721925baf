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

/// How long a test waits for a state before it fails: a guard against a hang, never a speed
/// check (what a test checks is the state reached).
pub(crate) const WAIT_BOUND: std::time::Duration = std::time::Duration::from_secs(60);

/// Polls `f` every 10 ms until it yields a value; fails the test naming `what` if it has not
/// within [`WAIT_BOUND`].
pub(crate) async fn poll<T, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> Fut,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT_BOUND;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached within {WAIT_BOUND:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
