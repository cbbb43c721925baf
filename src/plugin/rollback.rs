//! The hand-over of `zero-downtime-rollback` to the deploy engine, with the push's signal
//! handling (first signal: safe stop; second: stop waiting) and its `ui` renderers.
//!
//! Depends on: `cf`, `cli`, `wiring::rollback`, `ui`. Prints only through `ui`.

use std::process::ExitCode;
use std::sync::Arc;

use crate::deploy::Interrupt;
use crate::wiring::rollback::{RollbackOptions, rollback};
use crate::{cf, cli, ui};

/// Runs a zero-downtime rollback against `target` with tokens from `token`. Returns the
/// process exit code: success only when the previous version serves under the app's name
/// (or for a dry run).
pub async fn run_rollback(
    target: cf::Target,
    token: Arc<dyn cf::TokenProvider>,
    args: cli::RollbackArgs,
) -> ExitCode {
    let interrupt = Interrupt::new();
    let signals = tokio::spawn(super::push::interrupt_on_signals(interrupt.clone()));
    let mut reporter = ui::stdout_reporter(args.output);
    let outcome = rollback(
        RollbackOptions::new(target, token, args),
        reporter.as_mut(),
        &interrupt,
    )
    .await;
    signals.abort();
    ExitCode::from(outcome.exit_code())
}
