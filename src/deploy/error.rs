//! The deploy layer's error: what failed, for which app, in which step, and why.
//!
//! Depends on: deploy::api (ApiError), deploy::plan (PlanError), deploy::smoke. Must not: print.

use std::time::Duration;

use super::api::{ApiError, AppGuid};
use super::lock::Busy;
use super::plan::PlanError;
use super::smoke::SmokeError;
use super::step::fmt_duration;

/// Why a deploy step (or the preflight) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A Cloud Controller call failed during a step.
    #[error("{step} (app {app})")]
    Api {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// The step's description.
        step: String,
        /// The API error.
        #[source]
        source: Box<ApiError>,
    },
    /// Reading the current state failed (nothing was changed).
    #[error("reading the current state of space '{space}' failed")]
    Observe {
        /// Space name.
        space: String,
        /// The API error.
        #[source]
        source: Box<ApiError>,
    },
    /// No plan could be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The manifest layer could not render the candidate's manifest.
    #[error("rendering the manifest for app '{app}' failed: {message}")]
    Render {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        message: String,
    },
    #[error("staging app '{app}' failed: {reason}")]
    StagingFailed {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// The build's error.
        reason: String,
    },
    /// Staging did not finish in time.
    #[error("staging app '{app}' did not finish within {}", fmt_duration(*.timeout))]
    StagingTimeout {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// The bound.
        timeout: Duration,
    },
    /// A release task of the new version ended FAILED.
    #[error("task '{task}' of app '{app}' failed: {reason}")]
    TaskFailed {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// The task's name.
        task: String,
        /// Cloud Controller's failure reason.
        reason: String,
    },
    /// A release task of the new version did not end within `--task-timeout`.
    #[error("task '{task}' of app '{app}' did not finish within {} (--task-timeout)", fmt_duration(*.timeout))]
    TaskTimeout {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// The task's name.
        task: String,
        /// The bound.
        timeout: Duration,
    },
    /// An instance crashed.
    #[error("app '{name}': instance {index} of process '{process_type}' crashed: {reason}")]
    Crashed {
        /// The crashed app's name.
        name: String,
        /// The process type (`web`, `worker`, ...).
        process_type: String,
        /// Instance index.
        index: u32,
        /// The reported reason.
        reason: String,
    },
    /// Instances made no progress.
    #[error(
        "app '{name}': {running} of {total} instances running, no progress for {}{details}",
        fmt_duration(*.timeout)
    )]
    HealthTimeout {
        /// The app on the platform (the candidate's name during a swap).
        name: String,
        /// Running instances.
        running: u32,
        /// Desired instances.
        total: u32,
        /// The stall bound.
        timeout: Duration,
        /// Placement details (prefixed with `: `), if any.
        details: String,
    },
    /// A rolling or canary deployment ended without deploying (canceled or superseded by
    /// someone else, or a state this version does not know).
    #[error("the deployment of app '{app}' ended {state}{reason}")]
    DeploymentEnded {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// The deployment's state.
        state: String,
        /// The updater's error (prefixed with `: `), if any.
        reason: String,
    },
    /// A rolling or canary deployment made no progress.
    #[error("the deployment of app '{app}' made no progress for {} ({detail})", fmt_duration(*.timeout))]
    DeploymentStalled {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// The stall bound.
        timeout: Duration,
        /// Where it stood.
        detail: String,
    },
    /// A smoke test failed.
    #[error("smoke test of app '{app}' failed")]
    Smoke {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        #[source]
        source: SmokeError,
    },
    /// The new version does not fit in the space's or the org's quota next to the live one
    /// (found before any change): each limit with its numbers, and the way out.
    #[error("{0}")]
    Quota(String),
    /// Another run deploys the app (checked before any change, and again when the candidate
    /// name turned out to be taken).
    #[error("{}", locked(busy, waited))]
    Locked {
        /// Who holds the app.
        busy: Box<Busy>,
        /// How long `--wait-for-lock` waited for it (zero: it did not wait).
        waited: Duration,
    },
    /// An app this run had to create appeared under its name meanwhile, created by someone
    /// who left no lock on it (a `cf push` of the same name, say).
    #[error(
        "app '{app}': '{name}' (guid {guid}) was created by someone else while this deploy ran; it is never touched automatically: check who uses it, then delete or rename it"
    )]
    NameTaken {
        /// The app as the manifest names it.
        app: String,
        /// The name taken.
        name: String,
        /// The GUID of the app holding it.
        guid: AppGuid,
    },
    /// Ctrl-C / SIGTERM.
    #[error("interrupted")]
    Cancelled,
    /// A step needs an output no earlier step produced (a plan defect).
    #[error("step '{step}' of app '{app}' needs {what}, which no earlier step produced")]
    Missing {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        step: String,
        /// What is missing.
        what: String,
    },
    /// The canary analysis judged the new version worse than allowed.
    #[error(
        "canary analysis of app '{app}' failed at step {step} of {steps} ({share}% of the requests): {reasons}"
    )]
    CanaryFailed {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// 1-based step.
        step: usize,
        /// Number of steps.
        steps: usize,
        /// The candidate's share of requests, in percent.
        share: u32,
        /// Every failed check, joined with `; `.
        reasons: String,
    },
    /// The canary analysis cannot read the router's request records.
    #[error(
        "canary analysis of app '{app}' needs the router's request records of {live_name} from log-cache, which cannot be read ({reason}); deploy without --analysis and --canary-steps, or get read access to the app's logs"
    )]
    AnalysisUnavailable {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// The live app's name.
        live_name: String,
        /// The API's answer.
        reason: String,
    },
}

/// The message of [`Error::Locked`]: who holds the app, and what to do.
fn locked(busy: &Busy, waited: &Duration) -> String {
    if waited.is_zero() {
        format!("{busy}; wait for it or pass --wait-for-lock 10m")
    } else {
        format!(
            "{busy}, still after waiting {} (--wait-for-lock); try again later",
            fmt_duration(*waited)
        )
    }
}

impl Error {
    /// The hint of a failed rolling or canary deployment whose last log lines could not be
    /// shown: the app is kept, so are its logs.
    pub fn deployment_hint(&self) -> Option<String> {
        let name = match self {
            Error::Crashed { name, .. } => name,
            Error::DeploymentStalled { app, .. } | Error::DeploymentEnded { app, .. } => app,
            _ => return None,
        };
        Some(format!(
            "TIP: the app keeps its GUID and its logs: 'cf logs {name} --recent' shows why the new instances failed"
        ))
    }

    /// A hint to print on its own line, if one helps, when the failed app's last log lines
    /// could not be shown (log-cache missing or silent). A rollback deletes the failed app and
    /// its recent logs with it, so the hint points at the next attempt.
    pub fn hint(&self) -> Option<String> {
        if let Error::TaskFailed { task, .. } | Error::TaskTimeout { task, .. } = self {
            return Some(format!(
                "NOTE: the live version never ran against what task {task} did, but the rollback does not undo it (e.g. a half-applied migration): check it before the next deploy"
            ));
        }
        let name = match self {
            Error::Crashed { name, .. } | Error::HealthTimeout { name, .. } => name.clone(),
            Error::StagingFailed { app, .. } => format!("{app}-candidate"),
            _ => return None,
        };
        Some(format!(
            "TIP: the failed app is deleted by the rollback; watch 'cf logs {name}' in another terminal during the next push"
        ))
    }
}
