//! `zero-downtime-rollback` (plugin, alias `zdr`; standalone `cf-zero-downtime rollback`): its
//! flags ([`RollbackArgs`]: the push's [`CommonFlags`] and `--current-app`), the preflight (flags,
//! client, API discovery), then [`crate::deploy::rollback::run`] on a [`CfBackend`]. No manifest is read and no
//! bits are scanned: the previous version is already on the platform.
//!
//! A preflight failure ends like a push's: [`Event::Started`](crate::deploy::Event::Started), then [`Event::Finished`](crate::deploy::Event::Finished) with
//! [`Outcome::NothingChanged`] and the error.
//!
//! Depends on: cf (client), deploy, ui (the reporter of [`run`]). Prints only through `ui`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cf;

use clap::{Args, Parser};

use super::Login;
use super::adapter::CfBackend;
use super::flags::{CommonFlags, DEPLOY_HEADING};
use super::push::PushArgs;
use super::push::request::{RequestError, deploy_request};
use super::session::{self, ConnectError, LiveNotices, SharedReporter, refuse};
use crate::deploy::event::{Outcome, Reporter};
use crate::deploy::request::{DeployRequest, ProbeConfig};
use crate::deploy::rollback::STRATEGY;
use crate::deploy::{Interrupt, OldApp};

/// Arguments of a zero-downtime rollback: `<app>-venerable` (kept by a deploy with
/// `--old-app stop|keep`) serves again under the app's name.
#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// App to roll back to its kept previous version (APP_NAME-venerable).
    #[arg(value_name = "APP_NAME", required = true)]
    pub app_name: String,

    /// What to do with the current version after the switch (stop keeps it as the
    /// venerable, so a second rollback brings it back).
    #[arg(long = "current-app", value_enum, default_value_t = OldApp::Stop, help_heading = DEPLOY_HEADING)]
    pub current_app: OldApp,

    /// The smoke test, drain, waits and output, as for the push.
    #[command(flatten)]
    pub common: CommonFlags,
}

impl RollbackArgs {
    /// Arguments for `app` with the flags' defaults.
    pub fn new(app: impl Into<String>) -> Self {
        RollbackArgs {
            app_name: app.into(),
            current_app: OldApp::Stop,
            common: CommonFlags::default(),
        }
    }

    /// The same settings as push flags, so that the deploy request is built and checked in
    /// one place (`DeployRequest::from_args`); `--current-app` becomes `--old-app`.
    pub fn to_push_args(&self) -> PushArgs {
        PushArgs {
            app_name: Some(self.app_name.clone()),
            old_app: self.current_app,
            common: self.common.clone(),
            ..PushArgs::default()
        }
    }
}

/// What the rollback's help says about release tasks.
pub(crate) const ROLLBACK_RUNS_NO_TASKS: &str = "Runs no release tasks: the push's --task-before-switch and --task-after-switch are not run again, and what they did (e.g. a migration) is not undone; the previous version comes back as it was. Undo such changes yourself if the previous version needs it (e.g. cf run-task APP_NAME --command ...).";

/// The arguments cf passes to `cf zero-downtime-rollback` (cf replaces the alias `zdr` with
/// the command name before starting the plugin).
#[derive(Debug, Parser)]
#[command(
    name = "zero-downtime-rollback",
    bin_name = "cf zero-downtime-rollback",
    about = "Put the previous version of an app back without downtime (the APP_NAME-venerable kept by --old-app stop|keep)",
    after_help = ROLLBACK_RUNS_NO_TASKS,
    disable_version_flag = true
)]
pub struct PluginRollback {
    /// The rollback flags.
    #[command(flatten)]
    pub args: RollbackArgs,
}

/// Everything a rollback needs besides the reporter and the interrupt.
#[derive(Debug)]
pub struct RollbackOptions {
    /// The target and its tokens.
    pub login: Login,
    /// The command-line flags.
    pub args: RollbackArgs,
    /// Poll interval of the health wait and of the backend's job waits (1 s).
    pub poll_interval: Duration,
    /// Overrides the smoke probe's connection settings (e.g. the simulator's router).
    pub probe: Option<ProbeConfig>,
}

impl RollbackOptions {
    /// Options with a 1 s poll interval and the default probe.
    pub fn new(target: cf::Target, token: Arc<dyn cf::TokenProvider>, args: RollbackArgs) -> Self {
        RollbackOptions {
            login: Login { target, token },
            args,
            poll_interval: Duration::from_secs(1),
            probe: None,
        }
    }
}

/// Why a rollback stopped before changing anything.
#[derive(Debug, thiserror::Error)]
enum Preflight {
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The client could not be set up or the API not reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("interrupted before anything was changed")]
    Cancelled,
}

/// Runs a zero-downtime rollback of `opts.args.app_name`: preflight, then the rollback.
/// Reports every event to `reporter`, always ending with [`Event::Finished`](crate::deploy::Event::Finished), and returns
/// the outcome (`Deployed` when the previous version serves under the app's name).
pub async fn rollback(
    opts: RollbackOptions,
    reporter: &mut dyn Reporter,
    interrupt: impl Into<crate::deploy::Interrupt>,
) -> Outcome {
    let interrupt = interrupt.into();
    let started = Instant::now();
    match prepare(&opts, interrupt.stop_token()).await {
        Ok((backend, request)) => {
            let notices = LiveNotices::attach(backend.client());
            let shared = std::sync::Mutex::new(reporter);
            let run = async {
                let mut r = SharedReporter(&shared);
                crate::deploy::rollback::run(
                    &backend,
                    &request,
                    &opts.args.app_name,
                    &mut r,
                    &interrupt,
                )
                .await
            };
            notices.around(&shared, run).await
        }
        Err(e) => refuse(
            reporter,
            &opts.login.target,
            vec![opts.args.app_name.clone()],
            STRATEGY,
            Vec::new(),
            &e,
            started,
        ),
    }
}

async fn prepare(
    opts: &RollbackOptions,
    cancel: &CancellationToken,
) -> Result<(CfBackend, DeployRequest), Preflight> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(Preflight::Cancelled),
        r = prepare_inner(opts) => r,
    }
}

async fn prepare_inner(opts: &RollbackOptions) -> Result<(CfBackend, DeployRequest), Preflight> {
    let mut request = deploy_request(&opts.args.to_push_args(), &opts.login.target)?;
    request.poll_interval = opts.poll_interval;
    if let Some(probe) = &opts.probe {
        request.probe = probe.clone();
    }
    let client = session::connect(
        &opts.login.target,
        &opts.login.token,
        opts.args.common.api_outage_budget,
    )
    .await?;
    let backend = session::backend(client, &opts.login.target, &request, opts.poll_interval);
    Ok((backend, request))
}

/// Runs a zero-downtime rollback for `login` and returns the process exit code: success only
/// when the previous version serves under the app's name (or for a dry run). Signals and
/// output as for [`super::push::run`].
pub async fn run(args: RollbackArgs, login: Login) -> ExitCode {
    let interrupt = Interrupt::new();
    let signals = tokio::spawn(session::interrupt_on_signals(interrupt.clone()));
    let mut reporter = crate::ui::stdout_reporter(args.common.output);
    let opts = RollbackOptions::new(login.target, login.token, args);
    let outcome = rollback(opts, reporter.as_mut(), &interrupt).await;
    signals.abort();
    ExitCode::from(outcome.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::flags::DrainArg;
    use crate::ui::OutputFormat;

    #[test]
    fn the_help_says_that_no_release_task_runs() {
        use clap::CommandFactory;
        let help = PluginRollback::command().render_long_help().to_string();
        assert!(help.contains("Runs no release tasks"), "{help}");
        let standalone = crate::command::Cli::command()
            .find_subcommand_mut("rollback")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(standalone.contains("Runs no release tasks"), "{standalone}");
        assert!(
            crate::command::plugin::metadata::ROLLBACK_HELP_TEXT.ends_with("runs no release tasks")
        );
    }

    #[test]
    fn defaults_match_the_constructor_and_map_to_push_flags() {
        let parsed = PluginRollback::try_parse_from(["zero-downtime-rollback", "web"])
            .map(|p| p.args)
            .unwrap();
        let new = RollbackArgs::new("web");
        assert_eq!(format!("{parsed:?}"), format!("{new:?}"));
        let p = PluginRollback::try_parse_from([
            "zero-downtime-rollback",
            "web",
            "--smoke-test-path",
            "/health",
            "--current-app",
            "delete",
            "--drain",
            "2s",
            "--dry-run",
            "--output",
            "json",
        ])
        .map(|p| p.args)
        .unwrap();
        let push = p.to_push_args();
        assert_eq!(push.common.smoke_test_path.as_deref(), Some("/health"));
        assert_eq!(push.old_app, OldApp::Delete);
        assert_eq!(push.common.drain, DrainArg::fixed(Duration::from_secs(2)));
        assert!(push.common.dry_run);
        assert_eq!(push.common.output, OutputFormat::Json);
        assert!(PluginRollback::try_parse_from(["zero-downtime-rollback"]).is_err());
    }
}
