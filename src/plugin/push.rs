//! The one call from the plugin entry (and standalone mode) into the deploy engine.
//!
//! Depends on: `cf`, `cli`. The body is a placeholder until the deploy layer is wired in.

use std::process::ExitCode;
use std::sync::Arc;

use crate::{cf, cli};

/// Runs a zero-downtime push against `target` with tokens from `token`, once the target has
/// been fully gathered (endpoint, org, space, token). Returns the process exit code: success
/// only when the new version is deployed.
pub async fn run_push(
    target: cf::Target,
    token: Arc<dyn cf::TokenProvider>,
    args: cli::PushArgs,
) -> ExitCode {
    // The engine will use the token and the arguments; until then they are only held.
    let _ = (token, args);
    let org = target.org.as_ref().map_or("", |o| o.name.as_str());
    let space = target.space.as_ref().map_or("", |s| s.name.as_str());
    let user = target.user.as_deref().unwrap_or("unknown user");
    eprintln!(
        "cf-zero-downtime: targeting {} (org {org}, space {space}, as {user}), but the deploy engine is not wired into this build yet; nothing was changed",
        target.api_endpoint
    );
    ExitCode::FAILURE
}
