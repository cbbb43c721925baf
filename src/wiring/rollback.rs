//! `zero-downtime-rollback` from flags to outcome: the preflight (flags, client, API
//! discovery), then [`crate::deploy::rollback::run`] on a [`CfBackend`]. No manifest is read and no
//! bits are scanned: the previous version is already on the platform.
//!
//! A preflight failure ends like a push's: [`Event::Started`], then [`Event::Finished`] with
//! [`Outcome::NothingChanged`] and the error.
//!
//! Depends on: cf (client), cli (flags), deploy. Must not: print.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cf;
use crate::cli::RollbackArgs;

use super::adapter::CfBackend;
use crate::deploy::event::{Event, Outcome, Reporter, error_chain};
use crate::deploy::request::{DeployRequest, ProbeConfig, RequestError};
use crate::deploy::rollback::STRATEGY;

/// Everything a rollback needs besides the reporter and the interrupt.
pub struct RollbackOptions {
    /// The cf target (endpoint, org, space, user).
    pub target: cf::Target,
    /// Where access tokens come from.
    pub token: Arc<dyn cf::TokenProvider>,
    /// The command-line flags.
    pub args: RollbackArgs,
    /// Poll interval of the health wait and of the backend's job waits (1 s).
    pub poll_interval: Duration,
    /// Overrides the smoke probe's connection settings (e.g. the simulator's router).
    pub probe: Option<ProbeConfig>,
}

impl std::fmt::Debug for RollbackOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RollbackOptions")
            .field("target", &self.target)
            .field("args", &self.args)
            .field("poll_interval", &self.poll_interval)
            .field("probe", &self.probe)
            .finish_non_exhaustive()
    }
}

impl RollbackOptions {
    /// Options with a 1 s poll interval and the default probe.
    pub fn new(target: cf::Target, token: Arc<dyn cf::TokenProvider>, args: RollbackArgs) -> Self {
        RollbackOptions {
            target,
            token,
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
    Connect(#[from] super::ConnectError),
    #[error("interrupted before anything was changed")]
    Cancelled,
}

/// Runs a zero-downtime rollback of `opts.args.app_name`: preflight, then the rollback.
/// Reports every event to `reporter`, always ending with [`Event::Finished`], and returns
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
            let notices = super::LiveNotices::attach(backend.client());
            let shared = std::sync::Mutex::new(reporter);
            let run = async {
                let mut r = super::SharedReporter(&shared);
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
        Err(e) => {
            reporter.report(super::push::started_on(
                &opts.target,
                vec![opts.args.app_name.clone()],
                STRATEGY,
            ));
            let outcome = Outcome::NothingChanged {
                error: error_chain(&e),
            };
            reporter.report(Event::Finished {
                outcome: outcome.clone(),
                elapsed: started.elapsed(),
                steps: Vec::new(),
            });
            outcome
        }
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
    let mut request = DeployRequest::from_args(&opts.args.to_push_args(), &opts.target)?;
    request.poll_interval = opts.poll_interval;
    if let Some(probe) = &opts.probe {
        request.probe = probe.clone();
    }
    let client = super::connect(&opts.target, &opts.token, opts.args.api_outage_budget).await?;
    let backend = super::backend(client, &opts.target, &request, opts.poll_interval);
    Ok((backend, request))
}
