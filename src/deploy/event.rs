//! What a deploy reports while it runs: [`Event`]s sent to a [`Reporter`], ending with
//! [`Event::Finished`] carrying the [`Outcome`]. The `ui` layer renders them; nothing here prints.
//!
//! Events serialize to one JSON object each (`"event": "step_started"`, durations as
//! `*_ms` integers), which is the `--output json` format.
//!
//! Depends on: serde. Must not: print.

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::analysis::{VerdictKind, VersionStats};

fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How a deploy ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// The new version serves under the app's name; nothing left over.
    Deployed,
    /// The new version serves, but a step after the switch failed or was interrupted.
    DeployedWithLeftovers {
        /// What failed.
        error: Failure,
        /// `cf` commands that finish the clean-up.
        leftovers: Vec<String>,
    },
    /// The new version serves and the retire is done, but a `--task-after-switch` task
    /// failed, timed out or was interrupted; nothing is rolled back.
    AfterSwitchTaskFailed {
        /// What failed.
        error: Failure,
        /// `cf` commands of the after-switch tasks that did not run.
        not_run: Vec<String>,
    },
    /// `--dry-run`: the plan was printed.
    DryRun,
    /// Failed before anything was changed.
    NothingChanged {
        /// What failed.
        error: Failure,
    },
    /// Failed or interrupted; every change was undone and the old version serves.
    RolledBack {
        /// What failed.
        error: Failure,
    },
    /// Rolling/canary multi-app: the apps in `deployed` run their new version; the next app
    /// failed and was rolled back (or not changed); the apps after it were not touched.
    PartlyDeployed {
        /// What failed.
        error: Failure,
        /// Apps deployed by this run.
        deployed: Vec<String>,
    },
    /// Failed, and some undo failed too.
    RollbackIncomplete {
        /// What failed.
        error: Failure,
        /// `cf` commands that finish the rollback.
        manual_steps: Vec<String>,
    },
}

impl Outcome {
    /// The process exit code: 0 only when the final state is exactly what a successful deploy
    /// leaves (or for a dry run), else 1. A deploy whose retire did not finish serves the new
    /// version but exits 1: a pipeline must notice the leftover.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Deployed | Outcome::DryRun => 0,
            _ => 1,
        }
    }

    /// The last line of the text output.
    pub fn last_line(&self) -> String {
        match self {
            Outcome::Deployed => "deployed".into(),
            Outcome::DeployedWithLeftovers { leftovers, .. } => {
                format!(
                    "deployed with leftovers (the new version serves); to finish: {}",
                    leftovers.join("; ")
                )
            }
            Outcome::AfterSwitchTaskFailed { .. } => {
                "deployed, after-switch task failed (the new version serves)".into()
            }
            Outcome::DryRun => "dry run: nothing was changed".into(),
            Outcome::NothingChanged { .. } => "nothing was changed".into(),
            Outcome::RolledBack { .. } => "rolled back, the old version is serving".into(),
            Outcome::PartlyDeployed { deployed, .. } => format!(
                "partly deployed: {} run the new version; the failed app was rolled back and serves its old version",
                deployed.join(", ")
            ),
            Outcome::RollbackIncomplete { manual_steps, .. } => {
                format!("ROLLBACK INCOMPLETE: {}", manual_steps.join("; "))
            }
        }
    }

    /// The outcome of a run that failed before its first change with `error`.
    pub fn nothing_changed(error: &(dyn std::error::Error + 'static)) -> Outcome {
        Outcome::NothingChanged {
            error: Failure::of(error),
        }
    }

    /// The failure that ended the deploy, if any.
    pub fn error(&self) -> Option<&Failure> {
        match self {
            Outcome::Deployed | Outcome::DryRun => None,
            Outcome::DeployedWithLeftovers { error, .. }
            | Outcome::AfterSwitchTaskFailed { error, .. }
            | Outcome::NothingChanged { error }
            | Outcome::RolledBack { error }
            | Outcome::PartlyDeployed { error, .. }
            | Outcome::RollbackIncomplete { error, .. } => Some(error),
        }
    }
}

/// Why a deploy failed, as its [`Outcome`] carries it: the error with its causes, where to
/// look next, and, when earlier apps of the same run were deployed, which app failed and which
/// stay deployed. Displays (and serializes, as the `error` of `--output json`) as the lines
/// the text output prints: the error (`app <failed>: ` first after earlier apps), the hint,
/// then the apps that stay deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What failed: the error and its causes, joined with `": "` ([`error_chain`]).
    pub message: String,
    /// A line on where to look next (`TIP: ...`, `NOTE: ...`), given when the failed app's
    /// last log lines could not be shown.
    pub hint: Option<String>,
    /// The apps deployed before the failed one by the same run (rolling, canary).
    pub earlier: Option<Earlier>,
}

/// The app that failed in a run that deployed other apps before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earlier {
    /// The app (or apps) that failed, as the text output names them.
    pub failed: String,
    /// The apps deployed before it; they stay deployed with their new version.
    pub deployed: Vec<String>,
}

impl Failure {
    /// The failure of `error`, with its causes and without a hint.
    pub fn of(error: &(dyn std::error::Error + 'static)) -> Failure {
        Failure::from(error_chain(error))
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            message,
            hint: None,
            earlier: None,
        }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::from(message.to_string())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(e) = &self.earlier {
            write!(f, "app {}: ", e.failed)?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n{h}")?;
        }
        if let Some(e) = &self.earlier {
            write!(
                f,
                "\napps deployed before {} stay deployed with their new version: {}",
                e.failed,
                e.deployed.join(", ")
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

impl Serialize for Failure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Time spent in one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepTime {
    /// Step kind.
    pub kind: String,
    /// The app as the manifest names it (not the candidate name).
    pub app: String,
    /// Duration.
    #[serde(rename = "elapsed_ms", serialize_with = "ms")]
    pub elapsed: Duration,
}

/// A progress event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The deploy starts (before any API call).
    Started {
        /// Org name.
        org: String,
        /// Space name.
        space: String,
        /// User name.
        user: Option<String>,
        /// Apps, in manifest order.
        apps: Vec<String>,
        /// `blue-green`, `rolling`, `canary`, `auto`, or `rollback` for `zero-downtime-rollback`.
        strategy: String,
    },
    /// The plan (always sent; the whole output of a dry run).
    Plan {
        /// One line per app.
        apps: Vec<String>,
        /// One line per step.
        steps: Vec<String>,
        /// Whether this is a dry run.
        dry_run: bool,
    },
    /// A warning (plan warnings and CC warnings outside steps).
    Warning {
        /// Manifest app, if any.
        app: Option<String>,
        /// Text.
        message: String,
    },
    /// Something the run is waiting out and will say again when it is over, e.g. a Cloud
    /// Controller outage or rate limiting ("waiting up to 60s for it"), or an instance moved by
    /// a Diego cell evacuation. Not a problem by itself.
    Notice {
        /// Manifest app, if any.
        app: Option<String>,
        /// Text.
        message: String,
    },
    /// A step starts.
    StepStarted {
        /// Index in the plan (0-based).
        index: usize,
        /// Number of steps.
        total: usize,
        /// Step kind.
        kind: String,
        /// The app as the manifest names it (not the candidate name).
        app: String,
        description: String,
    },
    StepFinished {
        index: usize,
        /// Step kind.
        kind: String,
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// Duration.
        #[serde(rename = "elapsed_ms", serialize_with = "ms")]
        elapsed: Duration,
        /// CC warnings collected during the step.
        warnings: Vec<String>,
    },
    StepFailed {
        index: usize,
        /// Step kind.
        kind: String,
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// Duration.
        #[serde(rename = "elapsed_ms", serialize_with = "ms")]
        elapsed: Duration,
        /// The error, with its causes.
        error: String,
        /// CC warnings collected during the step.
        warnings: Vec<String>,
    },
    UploadProgress {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// Bytes sent.
        sent: u64,
        /// Total bytes, if known.
        total: Option<u64>,
    },
    /// A wait is in progress.
    Waiting {
        /// Manifest app (empty for the drain).
        app: String,
        /// What is waited for: `staging`, `instances`, `smoke_test`, `drain`.
        what: String,
        /// Time waited so far.
        #[serde(rename = "elapsed_ms", serialize_with = "ms")]
        elapsed: Duration,
        /// Progress detail, e.g. `2 of 4 instances running`.
        detail: String,
    },
    /// Rollback starts.
    RollbackStarted { reason: String },
    /// An undo starts.
    UndoStarted {
        /// What it does.
        description: String,
    },
    UndoFinished {
        /// What it did.
        description: String,
        /// Duration.
        #[serde(rename = "elapsed_ms", serialize_with = "ms")]
        elapsed: Duration,
    },
    UndoFailed {
        /// What it tried.
        description: String,
        /// Duration.
        #[serde(rename = "elapsed_ms", serialize_with = "ms")]
        elapsed: Duration,
        error: String,
        /// The `cf` command to do it by hand.
        manual: String,
    },
    /// The requests the deploy sent, in total and by phase (the call budget): sent right
    /// before [`Event::Finished`] by a run whose backend counts them.
    Requests(super::budget::Requests),
    /// The deploy ended. Always the last event.
    Finished {
        outcome: Outcome,
        /// Total duration.
        #[serde(rename = "elapsed_ms", serialize_with = "ms")]
        elapsed: Duration,
        /// Per-step durations, in order.
        steps: Vec<StepTime>,
    },
    /// An auto drain (`--drain auto`) ended: after how long and why (the old version is quiet
    /// and the routers dropped it, the maximum was reached, or why it fell back to the fixed
    /// maximum).
    DrainEnded {
        /// How long it drained.
        #[serde(rename = "elapsed_ms", serialize_with = "ms")]
        elapsed: Duration,
        /// Whether it ended before its maximum because the old version was quiet.
        early: bool,
        /// What ended it, e.g. `old app quiet for 1s, routers dropped it (...)`.
        reason: String,
    },
    /// A line of the staging output of an app's build, streamed while it stages (the lines
    /// `cf push` shows).
    Log {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        #[serde(flatten)]
        line: LogLine,
    },
    /// The newest telling lines of the platform's log of an app that failed (staging, cell
    /// and Cloud Controller lines, the app's stderr), read before a rollback deletes it.
    LastLogs {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// The platform app the lines are from (e.g. `web-candidate`).
        name: String,
        /// Oldest first.
        lines: Vec<LogLine>,
    },
    /// The verdict of one canary analysis step (blue-green `--canary-steps`, or a pause of a
    /// canary deployment with `--analysis`).
    CanaryAnalysis {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// 1-based step.
        step: usize,
        /// Number of steps.
        steps: usize,
        /// The new version's share of the requests (by instances), in percent.
        traffic_share_pct: u32,
        /// The new version's instances serving the routes.
        candidate_instances: u32,
        /// The live version's instances serving the routes.
        live_instances: u32,
        /// How long the step was observed.
        #[serde(rename = "interval_ms", serialize_with = "ms")]
        interval: Duration,
        /// The new version's numbers.
        candidate: VersionStats,
        /// The live version's numbers.
        live: VersionStats,
        /// The decision.
        verdict: VerdictKind,
        /// Why: failed checks, or what was not judged and why.
        reasons: Vec<String>,
    },
    /// `--strategy auto` chose how to deploy (after the quota check, before the plan).
    StrategyChosen {
        /// `blue-green`, `rolling` or `canary`.
        strategy: String,
        /// The deployment's `max_in_flight` (rolling and canary).
        max_in_flight: Option<u32>,
        /// Why, e.g. `the space quota 'small' (space 'dev') leaves room for 2 more instances
        /// of 128 MB, not for the blue-green candidate`.
        reason: String,
    },
    /// Every canary step passed: the new version gets all traffic.
    CanaryPromoted {
        /// The app as the manifest names it (not the candidate name).
        app: String,
        /// Why it is promoted.
        reason: String,
    },
}

/// One line of an app's platform log, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Where it comes from, as `cf logs` says it: `STG/0`, `CELL/1`, `APP/PROC/WEB/0`.
    pub source: String,
    /// Written to standard error.
    pub stderr: bool,
    /// The text: control characters replaced, at most 4 KiB.
    pub text: String,
}

/// Receives events. `ui` implements it; tests collect into a `Vec<Event>`.
pub trait Reporter: Send {
    /// Handles one event.
    fn report(&mut self, event: Event);
}

impl Reporter for Vec<Event> {
    fn report(&mut self, event: Event) {
        self.push(event);
    }
}

/// An error and its causes, joined with `": "`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.ends_with(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_reads_and_serializes_as_its_lines() {
        let error = Failure {
            message: "app 'web-candidate': instance 0 of process 'web' crashed: exit status 1"
                .into(),
            hint: Some("TIP: watch 'cf logs web-candidate'".into()),
            earlier: Some(Earlier {
                failed: "web".into(),
                deployed: vec!["api".into(), "worker".into()],
            }),
        };
        let text = "app web: app 'web-candidate': instance 0 of process 'web' crashed: exit status 1\nTIP: watch 'cf logs web-candidate'\napps deployed before web stay deployed with their new version: api, worker";
        assert_eq!(error.to_string(), text);
        let json = serde_json::to_value(Outcome::PartlyDeployed {
            error,
            deployed: vec!["api".into(), "worker".into()],
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "result": "partly_deployed",
                "error": text,
                "deployed": ["api", "worker"],
            })
        );
        let plain = Outcome::nothing_changed(&Failure::from("no app"));
        assert_eq!(
            plain.error().map(ToString::to_string).as_deref(),
            Some("no app")
        );
    }
}
