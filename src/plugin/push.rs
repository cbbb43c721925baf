//! The one call from the plugin entry (and standalone mode) into the deploy engine: the push
//! runs with a cancellation token tied to Ctrl-C and SIGTERM, and reports through the `ui`
//! renderer chosen by `--output`.
//!
//! Depends on: `cf`, `cli`, `deploy::push`, `ui`. Prints only through the `ui` reporter.

use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::deploy::push::{PushOptions, push};
use crate::{cf, cli, ui};

/// Runs a zero-downtime push against `target` with tokens from `token`, once the target has
/// been fully gathered (endpoint, org, space, token). Returns the process exit code: success
/// only when the new version is deployed (or for a dry run).
pub async fn run_push(
    target: cf::Target,
    token: Arc<dyn cf::TokenProvider>,
    args: cli::PushArgs,
) -> ExitCode {
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signals(cancel.clone()));
    let mut reporter = ui::stdout_reporter(args.output);
    // Without a working directory, relative paths resolve against "." as the OS does.
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let outcome = push(
        PushOptions::new(target, token, args, cwd),
        reporter.as_mut(),
        &cancel,
    )
    .await;
    signals.abort();
    ExitCode::from(outcome.exit_code())
}

/// Cancels `cancel` on the first Ctrl-C or SIGTERM. A signal handler that cannot be installed
/// only means that signal does not cancel.
async fn cancel_on_signals(cancel: CancellationToken) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    cancel.cancel();
}
