//! The one call from the plugin entry (and standalone mode) into the deploy engine: the push
//! runs with an [`Interrupt`] driven by SIGINT, SIGTERM and SIGHUP, and reports through the `ui`
//! renderer chosen by `--output`.
//!
//! Under the cf CLI, Ctrl-C ends cf at once (it has no signal handler while a plugin runs) and
//! the shell prompt may be back before the rollback is done: the first signal is acknowledged
//! on stderr at once. The second one abandons the waits and the outcome lists what is left.
//!
//! Depends on: `cf`, `cli`, `wiring::push`, `ui`. Prints only through `ui`.

use std::process::ExitCode;
use std::sync::Arc;

use crate::deploy::Interrupt;
use crate::wiring::push::{PushOptions, push};
use crate::{cf, cli, ui};

/// Runs a zero-downtime push against `target` with tokens from `token`, once the target has
/// been fully gathered (endpoint, org, space, token). Returns the process exit code: success
/// only when the new version is deployed (or for a dry run).
pub async fn run_push(
    target: cf::Target,
    token: Arc<dyn cf::TokenProvider>,
    args: cli::PushArgs,
) -> ExitCode {
    let interrupt = Interrupt::new();
    let signals = tokio::spawn(interrupt_on_signals(interrupt.clone()));
    let mut reporter = ui::stdout_reporter(args.output);
    // Without a working directory, relative paths resolve against "." as the OS does.
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let outcome = push(
        PushOptions::new(target, token, args, cwd),
        reporter.as_mut(),
        &interrupt,
    )
    .await;
    signals.abort();
    ExitCode::from(outcome.exit_code())
}

/// The first SIGINT, SIGTERM or SIGHUP stops the deploy safely, the second abandons the
/// waits. A handler that cannot be installed only means that signal keeps its default action.
pub(crate) async fn interrupt_on_signals(interrupt: Interrupt) {
    let mut signals = Signals::install();
    signals.next().await;
    ui::interrupted_notice(false, interrupt.is_switched());
    interrupt.stop();
    signals.next().await;
    ui::interrupted_notice(true, interrupt.is_switched());
    interrupt.abandon();
}

/// The interrupting signals of this platform, as one stream.
struct Signals {
    #[cfg(unix)]
    streams: Vec<tokio::signal::unix::Signal>,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ]
        .into_iter()
        .filter_map(|k| signal(k).ok())
        .collect();
        Signals { streams }
    }

    #[cfg(not(unix))]
    fn install() -> Self {
        Signals {}
    }

    /// Waits for the next signal (for ever when none could be installed).
    #[cfg(unix)]
    async fn next(&mut self) {
        if self.streams.is_empty() {
            std::future::pending::<()>().await;
        }
        let waits = self.streams.iter_mut().map(|s| Box::pin(s.recv()));
        let _ = futures::future::select_all(waits).await;
    }

    #[cfg(not(unix))]
    async fn next(&mut self) {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
