//! Execute: runs a [`Plan`]'s steps against a [`CfApi`], records outputs in a [`Ledger`],
//! reports [`Event`]s, and on failure or cancellation before the commit point runs the undos
//! in reverse order (not-found counts as success; a failed undo is recorded and the rest still
//! run). After the commit point a failure stops the run and names the leftovers.
//!
//! Cancellation is checked between steps and inside every wait (`select!`); a mutating request
//! that has started is always awaited to its end.
//!
//! Depends on: deploy::{api, step, plan, event, smoke, error}. Must not: print.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::{
    ApiError, App, AppGuid, AppSource, BuildState, CfApi, Deployment, DeploymentGuid,
    DeploymentState, DeploymentStrategy, Destination, DestinationGuid, DropletGuid, InstanceState,
    MetadataUpdate, NetworkPolicy, NewDeployment, NewDestination, PackageGuid, ProcessGuid,
    ProgressSink, RouteGuid, UploadProgress,
};
use super::budget::{self, Phase};
use super::crash::{Crash, CrashWatch, Scope};
use super::error::Error;
use super::event::{Earlier, Event, Failure, Outcome, Reporter, StepTime, error_chain};
use super::interrupt::Interrupt;
use super::lock::{self, RunLock};
use super::logs::LogAccess;
use super::plan::Plan;
use super::request::RenderRequest;
use super::request::{AppSpec, DeployRequest};
use super::route::RouteAddress;
use super::smoke;
use super::step::{
    Action, AppRef, Ledger, NewApp, PolicyEnd, PolicyTemplate, RouteRef, Step, StepOutput, Undo,
};
use super::wait::Wait;

mod analysis;
mod apps;
mod bits;
mod concurrent;
mod deployment;
mod drain;
mod env;
mod logs;
mod routes;
mod smoke_test;
mod tasks;

/// A failed step: the error and whatever it did create before failing (to undo it).
struct StepFailure {
    error: Error,
    partial: Option<StepOutput>,
}

impl From<Error> for StepFailure {
    fn from(error: Error) -> Self {
        StepFailure {
            error,
            partial: None,
        }
    }
}

struct Exec<'a, A: CfApi> {
    api: &'a A,
    req: &'a DeployRequest,
    apps: &'a [AppSpec<A::Bits>],
    /// What ends a wait: the first interrupt before the switch, the second after it.
    cancel: &'a CancellationToken,
    /// Crash records older than this belong to earlier runs.
    since: SystemTime,
    /// Warnings already given (an unavailable crash-record source is named once).
    warned: &'a Mutex<BTreeSet<String>>,
    /// Whether log-cache was found missing (said once per deploy, then not asked again).
    logs: &'a LogAccess,
    /// The run's lock: the marks a created app carries, the apps the heartbeat refreshes.
    lock: &'a RunLock,
    /// The run's interrupts: a task step records its app there for the signal listener.
    interrupt: &'a Interrupt,
}

/// The call-budget phase of a step doing `action`.
fn phase_of(action: &Action) -> Phase {
    match action {
        Action::CheckRequestRecords { .. } => Phase::Preflight,
        Action::DeleteLeftover { .. }
        | Action::CreateRoute { .. }
        | Action::ApplyManifest { .. }
        | Action::SetSsh { .. }
        | Action::CopyMetadata { .. }
        | Action::CopyNetworkPolicies { .. }
        | Action::SnapshotEnv { .. }
        | Action::UpdateApp { .. }
        | Action::Reinstate { .. } => Phase::Candidate,
        Action::CreatePackage | Action::UploadBits | Action::Stage | Action::SetDroplet => {
            Phase::Bits
        }
        Action::Start
        | Action::WaitHealthy
        | Action::StartExisting { .. }
        | Action::ScaleCandidate { .. } => Phase::Health,
        Action::SmokeTest { .. } => Phase::Smoke,
        Action::RunTask { .. } => Phase::Task,
        Action::AnalyseCanary { .. } => Phase::Canary,
        Action::MapRoute { .. } | Action::UnmapRoute { .. } | Action::Deploy { .. } => {
            Phase::Switch
        }
        Action::Drain { .. } | Action::DrainAuto { .. } => Phase::Drain,
        Action::RenameApp { .. }
        | Action::StopApp { .. }
        | Action::DeleteApp { .. }
        | Action::UpdateMetadata { .. }
        | Action::DeleteRoute { .. } => Phase::Retire,
    }
}

fn ok_if_not_found(r: Result<(), ApiError>) -> Result<(), ApiError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        r => r,
    }
}

impl<A: CfApi> Exec<'_, A> {
    fn api_err(step: &Step, e: ApiError) -> Error {
        Error::Api {
            app: step.app_label().to_string(),
            step: step.describe().to_lowercase(),
            source: Box::new(e),
        }
    }

    /// Maps a failed call of `step` into its failure (nothing created to undo).
    fn api_failure(step: &Step) -> impl Fn(ApiError) -> StepFailure + '_ {
        move |e| StepFailure::from(Self::api_err(step, e))
    }

    fn missing(step: &Step, what: &str) -> Error {
        Error::Missing {
            app: step.app_label().to_string(),
            step: step.kind().to_string(),
            what: what.to_string(),
        }
    }

    fn spec(&self, step: &Step) -> Result<&AppSpec<A::Bits>, Error> {
        self.apps
            .iter()
            .find(|a| a.name == step.app_label())
            .ok_or_else(|| Self::missing(step, "the app's spec"))
    }

    /// The package created for the step's app.
    fn package<'l>(ledger: &'l Ledger, step: &Step) -> Result<&'l PackageGuid, Error> {
        ledger
            .package(step.app_label())
            .ok_or_else(|| Self::missing(step, "the package"))
    }

    /// The droplet staged for the step's app.
    fn droplet<'l>(ledger: &'l Ledger, step: &Step) -> Result<&'l DropletGuid, Error> {
        ledger
            .droplet(step.app_label())
            .ok_or_else(|| Self::missing(step, "the droplet"))
    }

    fn new_app<'l>(ledger: &'l Ledger, step: &Step) -> Result<NewApp<'l>, Error> {
        ledger
            .new_app(step.app_label())
            .ok_or_else(|| Self::missing(step, "the new app"))
    }

    fn app_ref(ledger: &Ledger, step: &Step, r: &AppRef) -> Result<AppGuid, Error> {
        match r {
            AppRef::Existing { guid, .. } => Ok(guid.clone()),
            AppRef::New { .. } => Ok(Self::new_app(ledger, step)?.guid.clone()),
        }
    }

    fn route_guid(ledger: &Ledger, step: &Step, r: &RouteRef) -> Result<RouteGuid, Error> {
        match &r.guid {
            Some(g) => Ok(g.clone()),
            None => ledger
                .created_route(&r.address)
                .cloned()
                .ok_or_else(|| Self::missing(step, "the route it maps")),
        }
    }

    /// A wait of a step: polls at the poll interval, stalls after `--timeout` without
    /// progress, ends at the cancel token.
    fn wait(&self) -> Wait<'_> {
        Wait::new(self.req.poll_interval, self.req.timeout, Some(self.cancel))
    }

    /// Sleeps, unless cancelled first.
    async fn pause(&self, d: Duration) -> Result<(), Error> {
        // Cancellation wins over the pause: a wait never outlives Ctrl-C.
        tokio::select! {
            () = self.cancel.cancelled() => Err(Error::Cancelled),
            () = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// A read inside a wait: abandoned (it changes nothing) when cancelled.
    async fn read<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ApiError>>,
        step: &Step,
    ) -> Result<T, Error> {
        tokio::select! {
            () = self.cancel.cancelled() => Err(Error::Cancelled),
            r = f => r.map_err(|e| Self::api_err(step, e)),
        }
    }

    /// Runs step `index` of `total` between its started and finished/failed events, records
    /// its output (or what it created before failing) in the ledger, and returns its time.
    async fn run_reported(
        &self,
        step: &Step,
        (index, total): (usize, usize),
        ledger: &mut Ledger,
        reporter: &mut dyn Reporter,
        committed: bool,
    ) -> (StepTime, Result<(), Error>) {
        let phase = phase_of(&step.action);
        self.api.enter_phase(phase);
        reporter.report(Event::StepStarted {
            index,
            total,
            kind: step.kind().into(),
            app: step.app_label().into(),
            description: step.describe(),
        });
        let started = Instant::now();
        // Counted to this step's phase even while another app's step runs (`--parallel`).
        let result = budget::in_phase(
            phase,
            self.run_step_with_retries(step, ledger, reporter, committed),
        )
        .await;
        let elapsed = started.elapsed();
        let warnings = self.api.take_warnings();
        let time = StepTime {
            kind: step.kind().into(),
            app: step.app_label().into(),
            elapsed,
        };
        match result {
            Ok(out) => {
                reporter.report(Event::StepFinished {
                    index,
                    kind: step.kind().into(),
                    app: step.app_label().into(),
                    elapsed,
                    warnings,
                });
                ledger.push(step.clone(), out);
                (time, Ok(()))
            }
            Err(f) => {
                reporter.report(Event::StepFailed {
                    index,
                    kind: step.kind().into(),
                    app: step.app_label().into(),
                    elapsed,
                    error: error_chain(&f.error),
                    warnings,
                });
                if let Some(p) = f.partial {
                    ledger.push(step.clone(), p);
                }
                (time, Err(f.error))
            }
        }
    }

    /// Runs a step; after the switch every step but a task is idempotent (rename, label,
    /// stop, delete) and giving up leaves the app half-retired: a failed request is tried
    /// again, beyond the client's own retries of one request, before naming leftovers. A
    /// task step is never tried again: a second create could run the command twice (its
    /// reads are retried inside it).
    async fn run_step_with_retries(
        &self,
        step: &Step,
        ledger: &Ledger,
        reporter: &mut dyn Reporter,
        committed: bool,
    ) -> Result<StepOutput, StepFailure> {
        let mut attempt = 0;
        loop {
            match self.run_step(step, ledger, reporter).await {
                Err(f)
                    if committed
                        && !step.is_task()
                        && attempt < AFTER_SWITCH_RETRIES
                        && matches!(f.error, Error::Api { .. }) =>
                {
                    attempt += 1;
                    reporter.report(Event::Warning {
                        app: Some(step.app_label().to_string()),
                        message: format!(
                            "{}; trying again ({attempt} of {AFTER_SWITCH_RETRIES})",
                            error_chain(&f.error)
                        ),
                    });
                    if self.pause(AFTER_SWITCH_PAUSE * attempt).await.is_err() {
                        return Err(f);
                    }
                }
                r => return r,
            }
        }
    }

    /// Runs one step: the one dispatch over [`Action`], exhaustive, to its handler in
    /// `execute/*.rs`.
    async fn run_step(
        &self,
        step: &Step,
        ledger: &Ledger,
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, StepFailure> {
        match &step.action {
            // apps.rs
            Action::DeleteLeftover { guid, .. } | Action::DeleteApp { guid, .. } => {
                self.delete_app(step, guid).await
            }
            Action::StopApp { guid, .. } => self.stop_app(step, guid).await,
            Action::RenameApp {
                target,
                to,
                metadata,
                ..
            } => self.rename_app(step, ledger, target, (to, metadata)).await,
            Action::ApplyManifest { render } => self.apply_manifest(step, render).await,
            Action::SetSsh { enabled } => self.set_ssh(step, ledger, *enabled).await,
            Action::CopyMetadata { update } => {
                let guid = Self::new_app(ledger, step)?.guid;
                self.update_metadata(step, guid, update).await
            }
            Action::UpdateMetadata { target, update, .. } => {
                let guid = Self::app_ref(ledger, step, target)?;
                self.update_metadata(step, &guid, update).await
            }
            Action::SetDroplet => self.set_droplet(step, ledger).await,
            Action::Start => self.start(step, ledger).await,
            Action::WaitHealthy => self.wait_new_app_healthy(step, ledger, reporter).await,
            Action::UpdateApp { guid, render } => self.update_app(step, guid, render).await,
            Action::Reinstate { guid, name } => Ok(Self::reinstate(guid, name)),
            Action::StartExisting { guid, .. } => self.start_existing(step, guid).await,
            // routes.rs
            Action::CreateRoute { route, temporary } => {
                self.create_route(step, route, *temporary).await
            }
            Action::CopyNetworkPolicies { policies } => {
                self.copy_network_policies(step, ledger, policies).await
            }
            Action::MapRoute {
                route,
                process_type,
                port,
                protocol,
            } => {
                let dest = (process_type.as_str(), *port, protocol);
                self.map_route(step, ledger, route, dest).await
            }
            Action::UnmapRoute {
                route, destination, ..
            } => self.unmap_route(step, ledger, route, destination).await,
            Action::Drain { duration } => self.drain(*duration, reporter).await,
            Action::DeleteRoute { route } => self.delete_route(step, ledger, route).await,
            // bits.rs
            Action::CreatePackage => self.create_package(step, ledger).await,
            Action::UploadBits => self.upload_bits(step, ledger, reporter).await,
            Action::Stage => self.stage(step, ledger, reporter).await,
            // smoke_test.rs, tasks.rs, env.rs, deployment.rs, drain.rs
            Action::SmokeTest { route } => self.smoke_step(step, route, reporter).await,
            // Boxed: its wait (log stream, task polls) would otherwise grow every deploy
            // future by its size, and the deploy future is already large.
            Action::RunTask {
                command,
                name,
                after_switch,
            } => {
                let task = (command.as_str(), name.as_str(), *after_switch);
                Box::pin(self.task_step(step, ledger, task, reporter)).await
            }
            Action::SnapshotEnv { guid } => self.snapshot_env(step, guid).await,
            Action::Deploy {
                strategy,
                smoke_route,
            } => {
                let how = (*strategy, smoke_route.as_deref());
                self.deployment_step(step, ledger, how, reporter).await
            }
            Action::DrainAuto { max } => self.auto_drain(*max, ledger, reporter).await,
            // analysis.rs
            Action::CheckRequestRecords { live, live_name } => {
                self.check_request_records(step, live, live_name).await
            }
            Action::ScaleCandidate { percent, live } => {
                self.scale_candidate(step, ledger, *percent, live, reporter)
                    .await
            }
            Action::AnalyseCanary {
                step: n,
                steps,
                live,
                live_name,
                ..
            } => {
                self.analyse(step, ledger, (*n, *steps), live, live_name, reporter)
                    .await
            }
        }
    }

    async fn undo(&self, u: &Undo) -> Result<(), ApiError> {
        let api = self.api;
        let r = match u {
            Undo::DeleteApp { guid, routes, .. } => {
                let mut r = ok_if_not_found(api.delete_app(guid).await);
                if r.is_ok() {
                    self.lock.forget(guid);
                }
                for route in routes {
                    let d = ok_if_not_found(api.delete_route(&route.guid).await);
                    r = r.and(d);
                }
                r
            }
            Undo::DeleteRoute { guid, .. } => api.delete_route(guid).await,
            Undo::RemoveDestination {
                route_guid,
                destination_guid,
                ..
            } => api.remove_destination(route_guid, destination_guid).await,
            Undo::AddDestination {
                route_guid,
                destination,
                ..
            } => api
                .add_destination(route_guid, destination)
                .await
                .map(|_| ()),
            Undo::DeleteNetworkPolicies(p) => api.delete_network_policies(p).await,
            Undo::RenameApp { guid, to, .. } => {
                api.rename_app(guid, to, &MetadataUpdate::default()).await
            }
            Undo::CancelDeployment { guid, .. } => self.cancel_deployment(guid).await,
            Undo::StopApp { guid, .. } => api.stop_app(guid).await,
            Undo::RestoreEnv {
                guid,
                vars,
                bindings,
                ..
            } => {
                // Bindings first; a failure there does not keep the variables from being restored.
                let unbound = match api.list_service_bindings(guid).await {
                    Ok(now) => {
                        let mut r = Ok(());
                        for b in now.iter().filter(|b| !bindings.contains(&b.guid)) {
                            r = r.and(ok_if_not_found(api.delete_service_binding(&b.guid).await));
                        }
                        r
                    }
                    Err(e) => Err(e),
                };
                let now = api.get_env_vars(guid).await?;
                let mut patch: BTreeMap<String, Option<String>> = vars
                    .iter()
                    .filter(|(k, v)| now.get(*k) != Some(*v))
                    .map(|(k, v)| (k.clone(), Some(v.clone())))
                    .collect();
                for k in now.keys().filter(|k| !vars.contains_key(*k)) {
                    patch.insert(k.clone(), None);
                }
                let env = if patch.is_empty() {
                    Ok(())
                } else {
                    api.update_env_vars(guid, &patch).await
                };
                unbound.and(env)
            }
        };
        ok_if_not_found(r)
    }
}

/// What counts as progress of a deployment: any change resets the stall timer.
#[derive(Debug, PartialEq, Eq)]
struct Progress {
    state: DeploymentState,
    canary_step: Option<(u32, u32)>,
    running: u32,
}

/// Forwards upload progress at most once per percent (or per MiB when the total is unknown),
/// and always the last update, so a chatty uploader does not flood JSON output.
#[derive(Default)]
struct ProgressThrottle {
    last: Option<u64>,
}

impl ProgressThrottle {
    fn forward(&mut self, app: &str, p: UploadProgress, reporter: &mut dyn Reporter) {
        let step = p.total.map_or(1 << 20, |t| (t / 100).max(1));
        let done = p.total.is_some_and(|t| p.sent >= t);
        let due = self.last.is_none_or(|l| p.sent >= l.saturating_add(step));
        if done || due {
            self.last = Some(p.sent);
            reporter.report(Event::UploadProgress {
                app: app.to_string(),
                sent: p.sent,
                total: p.total,
            });
        }
    }
}

fn warn_all(reporter: &mut dyn Reporter, app: Option<&str>, warnings: Vec<String>) {
    for message in warnings {
        reporter.report(Event::Warning {
            app: app.map(str::to_string),
            message,
        });
    }
}

/// Runs `plans` one after the other (one blue-green or rollback plan, or one rolling or
/// canary plan per app) and returns the outcome with per-step durations; stops at the first
/// plan that does not deploy. When it is not the first, the apps of the plans before stay
/// deployed with their new version (a finished deployment is not undone): the outcome says so
/// ([`Outcome::PartlyDeployed`], or `RollbackIncomplete` when that plan's own rollback
/// failed). [`Event::Finished`] is not sent here but by [`super::run`], which knows the total
/// duration.
pub(crate) async fn execute<A: CfApi>(
    api: &A,
    plans: &[Plan],
    req: &DeployRequest,
    apps: &[AppSpec<A::Bits>],
    reporter: &mut dyn Reporter,
    interrupt: &Interrupt,
    lock: &RunLock,
) -> (Outcome, Vec<StepTime>) {
    let logs = LogAccess::default();
    let run = Run {
        interrupt,
        logs: &logs,
        lock,
    };
    let mut times = Vec::new();
    let mut deployed: Vec<String> = Vec::new();
    for p in plans {
        let (outcome, t) = execute_plan(api, p, req, apps, reporter, &run).await;
        times.extend(t);
        let failed: Vec<&str> = p.apps.iter().map(|a| a.name.as_str()).collect();
        match outcome {
            Outcome::Deployed => deployed.extend(failed.iter().map(|s| s.to_string())),
            other => return (after_failure(other, &deployed, &failed.join(", ")), times),
        }
    }
    (Outcome::Deployed, times)
}

/// The outcome when app `failed` ended with `outcome` after the apps in `deployed` were
/// deployed by the same run.
fn after_failure(outcome: Outcome, deployed: &[String], failed: &str) -> Outcome {
    if deployed.is_empty() {
        return outcome;
    }
    let with_earlier = |error: Failure| Failure {
        earlier: Some(Earlier {
            failed: failed.to_string(),
            deployed: deployed.to_vec(),
        }),
        ..error
    };
    match outcome {
        Outcome::NothingChanged { error } | Outcome::RolledBack { error } => {
            Outcome::PartlyDeployed {
                error: with_earlier(error),
                deployed: deployed.to_vec(),
            }
        }
        Outcome::RollbackIncomplete {
            error,
            manual_steps,
        } => Outcome::RollbackIncomplete {
            error: with_earlier(error),
            manual_steps,
        },
        // The new version serves: the leftovers say what is left.
        other @ (Outcome::Deployed
        | Outcome::DryRun
        | Outcome::DeployedWithLeftovers { .. }
        | Outcome::AfterSwitchTaskFailed { .. }
        | Outcome::PartlyDeployed { .. }) => other,
    }
}

/// What the plans of one deploy share: its interrupts, what it learnt about log-cache (the
/// per-app plans of a rolling deploy say log-cache is missing once), and its lock.
struct Run<'a> {
    interrupt: &'a Interrupt,
    logs: &'a LogAccess,
    lock: &'a RunLock,
}

/// Runs one plan and returns the outcome with per-step durations.
///
/// Interrupts ([`Interrupt`]): a first one before the commit point rolls back; after it, the
/// remaining steps still run (the new version serves; the retire is finished). A second one
/// stops waiting at once, before or after the switch, and the outcome names what is left.
async fn execute_plan<A: CfApi>(
    api: &A,
    plan: &Plan,
    req: &DeployRequest,
    apps: &[AppSpec<A::Bits>],
    reporter: &mut dyn Reporter,
    run: &Run<'_>,
) -> (Outcome, Vec<StepTime>) {
    let Run {
        interrupt,
        logs,
        lock,
    } = *run;
    // Crash records are kept by the platform's clock: allow for a client clock ahead of it.
    let since = SystemTime::now()
        .checked_sub(CLOCK_SKEW)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let warned = Mutex::new(BTreeSet::new());
    let before_switch = Exec {
        api,
        req,
        apps,
        cancel: interrupt.stop_token(),
        since,
        warned: &warned,
        logs,
        lock,
        interrupt,
    };
    let after_switch = Exec {
        cancel: interrupt.abandon_token(),
        ..before_switch
    };
    let Ran {
        ledger,
        times,
        attempted_mutation,
        done,
        stop,
    } = run_steps(&before_switch, &after_switch, plan, reporter, interrupt).await;
    let Some(Stop {
        index,
        error,
        at: step_at,
    }) = stop
    else {
        return (Outcome::Deployed, times);
    };
    // The failed app's own words, read before the rollback deletes it (and its log with it).
    let logs_shown = index < plan.commit
        && logs::logs_tell(&error)
        && before_switch
            .last_logs(&ledger, &plan.steps[index], step_at, reporter)
            .await;
    let failed = failure(plan, &error, interrupt, logs_shown);
    if let Action::RunTask {
        after_switch: true,
        name,
        ..
    } = &plan.steps[index].action
    {
        let app = plan.steps[index].app_label();
        return (
            Outcome::AfterSwitchTaskFailed {
                error: after_switch_failure(failed, &error, (app, name)),
                not_run: not_run(plan, index),
            },
            times,
        );
    }
    if index >= plan.commit {
        // After the switch: the new version serves; name what is left to do (after a
        // concurrent retire, the steps of the other apps may be done).
        let leftovers = plan
            .steps
            .iter()
            .zip(&done)
            .skip(plan.commit)
            .filter(|(_, done)| !**done)
            .filter_map(|(s, _)| s.manual_command())
            .collect();
        return (
            Outcome::DeployedWithLeftovers {
                error: failed,
                leftovers,
            },
            times,
        );
    }
    if !attempted_mutation {
        return (Outcome::NothingChanged { error: failed }, times);
    }
    let manual_steps = rollback(&after_switch, &ledger, &failed, reporter, interrupt).await;
    if manual_steps.is_empty() {
        (Outcome::RolledBack { error: failed }, times)
    } else {
        (
            Outcome::RollbackIncomplete {
                error: failed,
                manual_steps,
            },
            times,
        )
    }
}

/// Where the step loop stopped: the step, why, and when that step began.
struct Stop {
    index: usize,
    error: Error,
    at: SystemTime,
}

/// What the step loop leaves behind.
struct Ran {
    /// The outputs of the steps that ran (and what a failed step created).
    ledger: Ledger,
    /// Per-step durations.
    times: Vec<StepTime>,
    /// Whether a mutating step was started (else nothing changed but the lock's marks).
    attempted_mutation: bool,
    /// Per step of the plan: whether it ran to its end.
    done: Vec<bool>,
    /// `None` when every step ran.
    stop: Option<Stop>,
}

/// The step loop's state between steps.
struct Steps<'p> {
    plan: &'p Plan,
    ledger: Ledger,
    times: Vec<StepTime>,
    attempted_mutation: bool,
    /// Whether the warning that a first interrupt after the switch finishes it was given
    /// (shared with the lanes of a concurrent range).
    told_finishing: AtomicBool,
    done: Vec<bool>,
}

/// The two executors of a run: waits end at the first interrupt before the switch, at the
/// second after it.
struct Execs<'e, 'a, A: CfApi> {
    before_switch: &'e Exec<'a, A>,
    after_switch: &'e Exec<'a, A>,
}

// By hand: a derive would ask `A: Copy`.
impl<A: CfApi> Clone for Execs<'_, '_, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: CfApi> Copy for Execs<'_, '_, A> {}

impl<'e, 'a, A: CfApi> Execs<'e, 'a, A> {
    /// The executor of `step`, run committed or not. An after-switch task is cancelled by a
    /// first interrupt (the switch is done, the task is not part of it): its waits end at
    /// the first stage's token.
    fn of(&self, step: &Step, committed: bool) -> &'e Exec<'a, A> {
        if committed && !step.is_task() {
            self.after_switch
        } else {
            self.before_switch
        }
    }
}

impl Steps<'_> {
    /// Marks the apps with the run's lock before the first mutating step (`index`).
    async fn lock_before<A: CfApi>(
        &mut self,
        exec: &Exec<'_, A>,
        index: usize,
    ) -> Result<(), Stop> {
        if self.attempted_mutation {
            return Ok(());
        }
        exec.lock.acquire(exec.api).await.map_err(|(app, source)| {
            // Nothing changed yet but the marks, which the caller's release removes.
            Stop {
                index,
                error: Error::Api {
                    app,
                    step: "marking the app as being deployed by this run".into(),
                    source: Box::new(source),
                },
                at: SystemTime::now(),
            }
        })
    }

    /// Runs step `index` alone.
    async fn run_one<A: CfApi>(
        &mut self,
        execs: Execs<'_, '_, A>,
        index: usize,
        reporter: &mut dyn Reporter,
        interrupt: &Interrupt,
    ) -> Result<(), Stop> {
        let plan = self.plan;
        let step = &plan.steps[index];
        let committed = index >= plan.commit;
        if interrupted(committed, interrupt, &self.told_finishing, reporter) {
            return Err(Stop {
                index,
                error: Error::Cancelled,
                at: SystemTime::now(),
            });
        }
        let exec = execs.of(step, committed);
        if step.is_mutating() {
            self.lock_before(exec, index).await?;
            self.attempted_mutation = true;
        }
        let at = SystemTime::now();
        let (time, result) = exec
            .run_reported(
                step,
                (index, plan.steps.len()),
                &mut self.ledger,
                reporter,
                committed,
            )
            .await;
        self.times.push(time);
        match result {
            Ok(()) => {
                self.done[index] = true;
                Ok(())
            }
            Err(error) => Err(Stop { index, error, at }),
        }
    }
}

/// Whether the interrupts stop the run before a step (`committed`: after the switch, where
/// only a second interrupt stops it); says once (`told`) that a first interrupt after the
/// switch finishes it.
fn interrupted(
    committed: bool,
    interrupt: &Interrupt,
    told: &AtomicBool,
    reporter: &mut dyn Reporter,
) -> bool {
    if committed {
        interrupt.mark_switched();
    }
    if interrupt.is_abandoned() || (!committed && interrupt.is_stopped()) {
        return true;
    }
    if committed && interrupt.is_stopped() && !told.swap(true, Ordering::SeqCst) {
        reporter.report(finishing_warning());
    }
    false
}

/// The warning of a first interrupt after the switch.
fn finishing_warning() -> Event {
    Event::Warning {
        app: None,
        message: "interrupted after the switch: the new version serves; finishing the switch (interrupt again to stop waiting)".into(),
    }
}

/// Runs the plan's steps in order with `before_switch` (up to the commit point) and
/// `after_switch`, until one fails or an interrupt stops the run; marks the apps with the
/// run's lock before the first mutating step. The steps of a concurrent range of the plan
/// run app by app, up to `--parallel` apps at a time ([`concurrent`]).
async fn run_steps<A: CfApi>(
    before_switch: &Exec<'_, A>,
    after_switch: &Exec<'_, A>,
    plan: &Plan,
    reporter: &mut dyn Reporter,
    interrupt: &Interrupt,
) -> Ran {
    let execs = Execs {
        before_switch,
        after_switch,
    };
    let mut st = Steps {
        plan,
        ledger: Ledger::default(),
        times: Vec::new(),
        attempted_mutation: false,
        told_finishing: AtomicBool::new(false),
        done: vec![false; plan.steps.len()],
    };
    let parallel = before_switch.req.parallel;
    let mut index = 0;
    let mut stop = None;
    while index < plan.steps.len() {
        let r = match concurrent::lanes_at(plan, index, parallel) {
            Some((end, lanes)) => {
                let r = concurrent::run(&mut st, execs, lanes, parallel, reporter, interrupt).await;
                index = end;
                r
            }
            None => {
                let r = st.run_one(execs, index, reporter, interrupt).await;
                index += 1;
                r
            }
        };
        if let Err(s) = r {
            stop = Some(s);
            break;
        }
    }
    Ran {
        ledger: st.ledger,
        times: st.times,
        attempted_mutation: st.attempted_mutation,
        done: st.done,
        stop,
    }
}

/// The outcome's failure: the error chain with what a second interrupt did, and a hint where
/// to find the failed app's log (none when its last lines were shown).
fn failure(plan: &Plan, error: &Error, interrupt: &Interrupt, logs_shown: bool) -> Failure {
    let mut message = error_chain(error);
    if interrupt.is_abandoned() {
        message.push_str(" (interrupted twice: stopped waiting)");
    }
    let in_place = plan
        .steps
        .iter()
        .any(|s| matches!(s.action, Action::Deploy { .. }));
    let hint = match (logs_shown, in_place) {
        (true, _) => None,
        (false, true) => error.deployment_hint(),
        (false, false) => error.hint(),
    };
    Failure {
        message,
        hint,
        earlier: None,
    }
}

/// The failure of after-switch task `name` of `app`: the deploy stays deployed, and the hint
/// says so (a before-switch task's hint speaks of a rollback).
fn after_switch_failure(failed: Failure, error: &Error, (app, name): (&str, &str)) -> Failure {
    let message = if matches!(error, Error::Cancelled) {
        format!(
            "{} at task {name} of app '{app}' (cancelled, or not started); the deploy stays deployed (the switch is done)",
            failed.message
        )
    } else {
        failed.message
    };
    Failure {
        message,
        hint: Some(format!(
            "NOTE: the new version serves and is not rolled back; what task {name} did is not undone: check it ('cf tasks {app}', 'cf logs {app} --recent') and run what is left by hand"
        )),
        earlier: None,
    }
}

/// The `cf` commands of the after-switch tasks after step `index` that did not run.
fn not_run(plan: &Plan, index: usize) -> Vec<String> {
    plan.steps[index + 1..]
        .iter()
        .filter_map(Step::manual_command)
        .collect()
}

/// Runs the undos of everything recorded, newest first, and returns the `cf` commands of
/// those that failed (or were not started after a second interrupt).
async fn rollback<A: CfApi>(
    exec: &Exec<'_, A>,
    ledger: &Ledger,
    why: &Failure,
    reporter: &mut dyn Reporter,
    interrupt: &Interrupt,
) -> Vec<String> {
    exec.api.enter_phase(Phase::Rollback);
    reporter.report(Event::RollbackStarted {
        reason: why.to_string(),
    });
    let mut manual_steps = Vec::new();
    for u in ledger.undos() {
        let description = u.describe();
        if interrupt.is_abandoned() {
            // Not even started: the user stopped waiting.
            manual_steps.push(u.manual_command());
            continue;
        }
        reporter.report(Event::UndoStarted {
            description: description.clone(),
        });
        let started = Instant::now();
        let r = tokio::select! {
            () = interrupt.abandon_token().cancelled() => Err(ApiError::transport(
                "interrupted twice: stopped waiting (the request may or may not have taken effect)",
            )),
            r = exec.undo(&u) => r,
        };
        let elapsed = started.elapsed();
        warn_all(reporter, None, exec.api.take_warnings());
        match r {
            Ok(()) => reporter.report(Event::UndoFinished {
                description,
                elapsed,
            }),
            Err(e) => {
                let manual = u.manual_command();
                reporter.report(Event::UndoFailed {
                    description,
                    elapsed,
                    error: e.to_string(),
                    manual: manual.clone(),
                });
                manual_steps.push(manual);
            }
        }
    }
    manual_steps
}

/// How often a failed step after the switch is tried again, and the pause before the first
/// retry (doubled for the next).
const AFTER_SWITCH_RETRIES: u32 = 2;
const AFTER_SWITCH_PAUSE: Duration = Duration::from_secs(2);

/// How far ahead of Cloud Controller's clock the client's may be for crash records to count.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_progress_is_throttled_to_one_event_per_percent() {
        let mut events: Vec<Event> = Vec::new();
        let mut t = ProgressThrottle::default();
        for sent in (0..=10_000u64).step_by(10) {
            t.forward(
                "web",
                UploadProgress {
                    sent,
                    total: Some(10_000),
                },
                &mut events,
            );
        }
        assert_eq!(events.len(), 101);
        assert_eq!(
            events.last(),
            Some(&Event::UploadProgress {
                app: "web".into(),
                sent: 10_000,
                total: Some(10_000)
            })
        );
    }

    #[test]
    fn a_later_app_failing_names_the_apps_that_stay_deployed() {
        let o = after_failure(
            Outcome::RolledBack { error: "x".into() },
            &["a".to_string()],
            "b",
        );
        let Outcome::PartlyDeployed { error, deployed } = &o else {
            panic!("{o:?}");
        };
        assert_eq!(deployed, &["a".to_string()]);
        assert_eq!(
            error.to_string(),
            "app b: x\napps deployed before b stay deployed with their new version: a"
        );
        assert_eq!(o.exit_code(), 1);
        let first = after_failure(Outcome::RolledBack { error: "x".into() }, &[], "a");
        assert_eq!(first, Outcome::RolledBack { error: "x".into() });
    }
}
