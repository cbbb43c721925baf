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
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::{
    ApiError, AppSource, BuildState, CfApi, Deployment, DeploymentState, DeploymentStrategy,
    InstanceState, NetworkPolicy, NewDeployment, NewDestination, ProgressSink, UploadProgress,
};
use super::crash::{Crash, CrashWatch, Scope};
use super::error::Error;
use super::event::{Event, Outcome, Reporter, StepTime, error_chain};
use super::interrupt::Interrupt;
use super::observe::{ROLE_CANDIDATE, ROLE_LABEL};
use super::plan::Plan;
use super::request::{AppSpec, DeployRequest};
use super::smoke;
use super::step::{Action, AppRef, Ledger, PolicyEnd, RouteRef, Step, StepOutput, Undo};
use super::wait::Wait;

/// A failed step: the error and whatever it did create before failing (to undo it).
struct Failure {
    error: Error,
    partial: Option<StepOutput>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
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

    fn new_app<'l>(ledger: &'l Ledger, step: &Step) -> Result<(&'l str, &'l str), Error> {
        ledger
            .new_app(step.app_label())
            .ok_or_else(|| Self::missing(step, "the new app"))
    }

    fn app_ref(ledger: &Ledger, step: &Step, r: &AppRef) -> Result<String, Error> {
        match r {
            AppRef::Existing { guid, .. } => Ok(guid.clone()),
            AppRef::New { .. } => Ok(Self::new_app(ledger, step)?.0.to_string()),
        }
    }

    fn route_guid(ledger: &Ledger, step: &Step, r: &RouteRef) -> Result<String, Error> {
        match &r.guid {
            Some(g) => Ok(g.clone()),
            None => ledger
                .created_route(&r.address)
                .map(str::to_string)
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

    async fn run_step(
        &self,
        step: &Step,
        ledger: &Ledger,
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, Failure> {
        let api = self.api;
        let space = &self.req.space_guid;
        let err = |e: ApiError| Failure::from(Self::api_err(step, e));
        let no_app = String::new();
        let app = step.app.as_ref().unwrap_or(&no_app);
        match &step.action {
            Action::DeleteLeftover { guid, .. } | Action::DeleteApp { guid, .. } => {
                ok_if_not_found(api.delete_app(guid).await).map_err(err)?;
                Ok(StepOutput::None)
            }
            Action::StopApp { guid, .. } => {
                ok_if_not_found(api.stop_app(guid).await).map_err(err)?;
                Ok(StepOutput::None)
            }
            Action::RenameApp { target, to, .. } => {
                let guid = Self::app_ref(ledger, step, target)?;
                api.rename_app(&guid, to).await.map_err(err)?;
                Ok(StepOutput::Renamed { guid })
            }
            Action::CreateRoute { route, .. } => {
                match api.create_route(space, &route.new_route()).await {
                    Ok(r) => Ok(StepOutput::Route(r)),
                    Err(e) => {
                        // The request may have created it before failing: record it for undo.
                        let partial = match api.find_route(&route.new_route()).await {
                            Ok(Some(r)) => Some(StepOutput::Route(r)),
                            _ => None,
                        };
                        Err(Failure {
                            error: Self::api_err(step, e),
                            partial,
                        })
                    }
                }
            }
            Action::ApplyManifest { render, .. } => {
                let spec = self.spec(step)?;
                let yaml = (spec.render)(render).map_err(|message| Error::Render {
                    app: step.app_label().to_string(),
                    message,
                })?;
                let applied = api.apply_manifest(space, &yaml).await;
                let names = [render.name.clone()];
                let is_candidate =
                    render.labels.get(ROLE_LABEL).map(String::as_str) == Some(ROLE_CANDIDATE);
                let found = api.find_apps_by_name(space, &names).await;
                let app = match &found {
                    Ok(apps) => apps
                        .iter()
                        .find(|a| {
                            a.name == render.name
                                && (!is_candidate
                                    || a.labels.get(ROLE_LABEL).map(String::as_str)
                                        == Some(ROLE_CANDIDATE))
                        })
                        .map(|a| StepOutput::App {
                            guid: a.guid.clone(),
                            name: a.name.clone(),
                            server_routes: Vec::new(),
                        }),
                    Err(_) => None,
                };
                // With random-route the server creates the route: record it so a rollback
                // deletes it with the app.
                let mut app = app;
                let mut listing = Ok(());
                if render.random_route
                    && let Some(StepOutput::App {
                        guid,
                        server_routes,
                        ..
                    }) = &mut app
                {
                    match api.list_app_routes(guid).await {
                        Ok(r) => *server_routes = r,
                        Err(e) => listing = Err(e),
                    }
                }
                if let (Ok(()), Err(e)) = (&applied, listing) {
                    return Err(Failure {
                        error: Self::api_err(step, e),
                        partial: app,
                    });
                }
                match (applied, found, app) {
                    (Ok(()), _, Some(out)) => Ok(out),
                    (Ok(()), Err(e), None) => Err(err(e)),
                    (Ok(()), Ok(_), None) => Err(Error::AppMissing {
                        name: render.name.clone(),
                    }
                    .into()),
                    (Err(e), _, partial) => Err(Failure {
                        error: Self::api_err(step, e),
                        partial,
                    }),
                }
            }
            Action::SetSsh { enabled, .. } => {
                let (guid, _) = Self::new_app(ledger, step)?;
                api.set_ssh_enabled(guid, *enabled).await.map_err(err)?;
                Ok(StepOutput::None)
            }
            Action::CopyMetadata { update, .. } => {
                let (guid, _) = Self::new_app(ledger, step)?;
                api.update_metadata(guid, update).await.map_err(err)?;
                Ok(StepOutput::None)
            }
            Action::UpdateMetadata { target, update, .. } => {
                let guid = Self::app_ref(ledger, step, target)?;
                api.update_metadata(&guid, update).await.map_err(err)?;
                Ok(StepOutput::None)
            }
            Action::CopyNetworkPolicies { policies, .. } => {
                let (guid, _) = Self::new_app(ledger, step)?;
                let end = |e: &PolicyEnd| match e {
                    PolicyEnd::Candidate => guid.to_string(),
                    PolicyEnd::App(g) => g.clone(),
                };
                let ps: Vec<NetworkPolicy> = policies
                    .iter()
                    .map(|p| NetworkPolicy {
                        source_app: end(&p.source),
                        destination_app: end(&p.destination),
                        protocol: p.protocol.clone(),
                        start_port: p.start_port,
                        end_port: p.end_port,
                    })
                    .collect();
                match api.create_network_policies(&ps).await {
                    Ok(()) => Ok(StepOutput::Policies(ps)),
                    Err(e) => Err(Failure {
                        error: Self::api_err(step, e),
                        // Creation is not known to be atomic: deleting absent policies is harmless.
                        partial: Some(StepOutput::Policies(ps)),
                    }),
                }
            }
            Action::CreatePackage => {
                let spec = self.spec(step)?;
                let (guid, _) = Self::new_app(ledger, step)?;
                let p = api.create_package(guid, &spec.source).await.map_err(err)?;
                Ok(StepOutput::Package(p))
            }
            Action::UploadBits => {
                let spec = self.spec(step)?;
                let AppSource::Bits(bits) = &spec.source else {
                    return Err(Self::missing(step, "a bits source").into());
                };
                let package = ledger
                    .package(app)
                    .ok_or_else(|| Self::missing(step, "the package"))?;
                let (sink, mut rx) = ProgressSink::channel();
                let upload = api.upload_bits(package, bits, sink);
                tokio::pin!(upload);
                // An interrupted upload is dropped: the package belongs to the new app, which the
                // rollback deletes with everything in it.
                let mut throttle = ProgressThrottle::default();
                let r = loop {
                    tokio::select! {
                        () = self.cancel.cancelled() => return Err(Error::Cancelled.into()),
                        r = &mut upload => break r,
                        Some(p) = rx.recv() => throttle.forward(app, p, reporter),
                    }
                };
                // Updates sent just before the upload finished.
                while let Ok(p) = rx.try_recv() {
                    throttle.forward(app, p, reporter);
                }
                r.map_err(err)?;
                Ok(StepOutput::None)
            }
            Action::Stage => {
                let package = ledger
                    .package(app)
                    .ok_or_else(|| Self::missing(step, "the package"))?;
                let build = api.create_build(package).await.map_err(err)?;
                let mut wait = self.wait();
                loop {
                    match self.read(api.get_build(&build), step).await? {
                        BuildState::Staged(d) => return Ok(StepOutput::Droplet(d)),
                        BuildState::Failed(reason) => {
                            return Err(Error::StagingFailed {
                                app: app.clone(),
                                reason,
                            }
                            .into());
                        }
                        BuildState::Staging => {}
                    }
                    if wait.stalled() {
                        return Err(Error::StagingTimeout {
                            app: app.clone(),
                            timeout: self.req.timeout,
                        }
                        .into());
                    }
                    let detail = format!("staging build {build}");
                    wait.report_and_pause(reporter, app, "staging", detail)
                        .await?;
                }
            }
            Action::SetDroplet => {
                let (guid, _) = Self::new_app(ledger, step)?;
                let droplet = ledger
                    .droplet(app)
                    .ok_or_else(|| Self::missing(step, "the droplet"))?;
                api.set_current_droplet(guid, droplet).await.map_err(err)?;
                Ok(StepOutput::None)
            }
            Action::Start => {
                let (guid, _) = Self::new_app(ledger, step)?;
                api.start_app(guid).await.map_err(err)?;
                Ok(StepOutput::None)
            }
            Action::WaitHealthy => {
                let (guid, name) = Self::new_app(ledger, step)?;
                self.wait_healthy(step, app, guid, name, reporter).await?;
                Ok(StepOutput::None)
            }
            Action::SmokeTest { route } => {
                let base = smoke::route_url(&self.req.probe, route);
                let smoke_err = |source| Error::Smoke {
                    app: app.clone(),
                    source,
                };
                let to_err = |e: smoke::SmokeError| match e {
                    smoke::SmokeError::Cancelled => Error::Cancelled,
                    e => smoke_err(e),
                };
                if let Some(path) = &self.req.smoke_test_path {
                    reporter.report(Event::Waiting {
                        app: app.clone(),
                        what: "smoke_test".into(),
                        elapsed: Duration::ZERO,
                        detail: format!("GET {base}{path}"),
                    });
                    smoke::probe(&self.req.probe, &format!("{base}{path}"), self.cancel)
                        .await
                        .map_err(to_err)?;
                }
                if let Some(cmd) = &self.req.smoke_test {
                    reporter.report(Event::Waiting {
                        app: app.clone(),
                        what: "smoke_test".into(),
                        elapsed: Duration::ZERO,
                        detail: format!("running {cmd} {base}"),
                    });
                    smoke::run_command(cmd, &base, self.req.smoke_timeout, self.cancel)
                        .await
                        .map_err(to_err)?;
                }
                Ok(StepOutput::None)
            }
            Action::MapRoute {
                route,
                process_type,
                port,
                protocol,
                ..
            } => {
                let (guid, name) = Self::new_app(ledger, step)?;
                let route_guid = Self::route_guid(ledger, step, route)?;
                let d = api
                    .add_destination(
                        &route_guid,
                        &NewDestination {
                            app_guid: guid.to_string(),
                            process_type: process_type.clone(),
                            port: *port,
                            protocol: protocol.clone(),
                        },
                    )
                    .await
                    .map_err(err)?;
                Ok(StepOutput::Mapped {
                    route_guid,
                    destination_guid: d.guid,
                    app_name: name.to_string(),
                })
            }
            Action::UnmapRoute {
                route, destination, ..
            } => {
                let route_guid = Self::route_guid(ledger, step, route)?;
                match ok_if_not_found(api.remove_destination(&route_guid, &destination.guid).await)
                {
                    Ok(()) => Ok(StepOutput::Unmapped { route_guid }),
                    Err(e) => Err(Failure {
                        error: Self::api_err(step, e),
                        // It may be gone anyway; re-mapping is idempotent.
                        partial: Some(StepOutput::Unmapped { route_guid }),
                    }),
                }
            }
            Action::Drain { duration } => {
                reporter.report(Event::Waiting {
                    app: String::new(),
                    what: "drain".into(),
                    elapsed: Duration::ZERO,
                    detail: format!(
                        "both versions serve for {}",
                        super::step::fmt_duration(*duration)
                    ),
                });
                self.pause(*duration).await?;
                Ok(StepOutput::None)
            }
            Action::DeleteRoute { route, .. } => {
                let route_guid = Self::route_guid(ledger, step, route)?;
                ok_if_not_found(api.delete_route(&route_guid).await).map_err(err)?;
                Ok(StepOutput::None)
            }
            Action::SnapshotEnv { guid } => {
                let vars = self.read(api.get_env_vars(guid), step).await?;
                let bindings = self
                    .read(api.list_service_bindings(guid), step)
                    .await?
                    .into_iter()
                    .map(|b| b.guid)
                    .collect();
                Ok(StepOutput::Env {
                    guid: guid.clone(),
                    name: app.clone(),
                    vars,
                    bindings,
                })
            }
            Action::UpdateApp { guid, render, .. } => {
                let spec = self.spec(step)?;
                let yaml = (spec.render)(render).map_err(|message| Error::Render {
                    app: step.app_label().to_string(),
                    message,
                })?;
                api.apply_manifest(space, &yaml).await.map_err(err)?;
                Ok(StepOutput::App {
                    guid: guid.clone(),
                    name: render.name.clone(),
                    server_routes: Vec::new(),
                })
            }
            Action::Deploy {
                strategy,
                smoke_route,
            } => {
                let (guid, name) = Self::new_app(ledger, step)?;
                let droplet = ledger
                    .droplet(app)
                    .ok_or_else(|| Self::missing(step, "the droplet"))?;
                let new = NewDeployment {
                    app_guid: guid.to_string(),
                    droplet_guid: droplet.to_string(),
                    strategy: *strategy,
                    max_in_flight: self.req.max_in_flight,
                    canary_steps: match strategy {
                        DeploymentStrategy::Canary => self.req.instance_steps.clone(),
                        DeploymentStrategy::Rolling => Vec::new(),
                    },
                };
                let d = api.create_deployment(&new).await.map_err(err)?;
                let dguid = d.guid.clone();
                match self
                    .monitor(step, guid, name, d, smoke_route.as_deref(), reporter)
                    .await
                {
                    Ok(()) => Ok(StepOutput::None),
                    Err(error) => Err(Failure {
                        error,
                        partial: Some(StepOutput::Deployment {
                            guid: dguid,
                            app_name: name.to_string(),
                        }),
                    }),
                }
            }
        }
    }

    /// Watches a deployment until it is DEPLOYED. Any CRASHED instance of the new process, no
    /// progress (state, canary step, running new instances) for `--timeout`, a failed canary
    /// smoke test or an interrupt ends the watch with an error; the caller's rollback cancels
    /// the deployment. At each canary pause the smoke test runs against the new process
    /// (router header), then the deployment is continued.
    async fn monitor(
        &self,
        step: &Step,
        app_guid: &str,
        name: &str,
        first: Deployment,
        smoke_route: Option<&str>,
        reporter: &mut dyn Reporter,
    ) -> Result<(), Error> {
        let app = step.app_label();
        let mut wait = self.wait();
        // Progress: the state, the canary step and the running new instances.
        let mut last_key: Option<Progress> = None;
        let mut continued: Option<Option<(u32, u32)>> = None;
        let mut watch = CrashWatch::new(self.since);
        let mut dep = first;
        loop {
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            match &dep.state {
                DeploymentState::Deployed => return Ok(()),
                DeploymentState::Paused if continued != Some(dep.canary_step) => {
                    if let Some(route) = smoke_route {
                        self.canary_smoke(app, route, &dep, reporter).await?;
                    }
                    // Mutating: awaited to its end.
                    self.api
                        .continue_deployment(&dep.guid)
                        .await
                        .map_err(|e| Self::api_err(step, e))?;
                    continued = Some(dep.canary_step);
                    wait.restart();
                    dep = self.read(self.api.get_deployment(&dep.guid), step).await?;
                    continue;
                }
                DeploymentState::Deploying | DeploymentState::Paused => {}
                DeploymentState::Canceling
                | DeploymentState::Canceled
                | DeploymentState::Superseded
                | DeploymentState::Other(_) => {
                    return Err(Error::DeploymentEnded {
                        app: app.to_string(),
                        state: dep.state.to_string(),
                        reason: dep
                            .error
                            .as_ref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default(),
                    });
                }
            }
            let (mut running, mut total) = (0u32, 0u32);
            let mut crash: Option<Crash> = None;
            for p in &dep.new_processes {
                let stats = self.read(self.api.process_stats(p), step).await?;
                if crash.is_none() {
                    crash = watch.check_stats(p, &stats);
                }
                for s in &stats {
                    total += 1;
                    if s.state == InstanceState::Running && s.routable != Some(false) {
                        running += 1;
                    }
                }
            }
            if crash.is_none() {
                crash = self
                    .crash_records(
                        &watch,
                        app_guid,
                        Scope::Processes(&dep.new_processes),
                        reporter,
                    )
                    .await;
            }
            if let Some(c) = crash {
                return Err(Error::Crashed {
                    name: name.to_string(),
                    process_type: "web (new)".into(),
                    index: c.index.unwrap_or(0),
                    reason: c.reason,
                });
            }
            let detail = match dep.canary_step {
                Some((c, t)) => format!(
                    "{}, canary step {c} of {t}, {running} of {total} new instances running",
                    dep.state
                ),
                None => format!("{}, {running} of {total} new instances running", dep.state),
            };
            let key = Progress {
                state: dep.state.clone(),
                canary_step: dep.canary_step,
                running,
            };
            if last_key.as_ref() != Some(&key) {
                last_key = Some(key);
                wait.progressed();
            }
            if wait.stalled() {
                return Err(Error::DeploymentStalled {
                    app: app.to_string(),
                    timeout: self.req.timeout,
                    detail,
                });
            }
            wait.report_and_pause(reporter, app, "deployment", detail)
                .await?;
            dep = self.read(self.api.get_deployment(&dep.guid), step).await?;
        }
    }

    /// The smoke test of a paused canary: through the production route, pinned to the new
    /// process with `X-Cf-Process-Instance` (the command gets the header value in
    /// `$CF_ZDT_PROCESS_INSTANCE`).
    async fn canary_smoke(
        &self,
        app: &str,
        route: &str,
        dep: &Deployment,
        reporter: &mut dyn Reporter,
    ) -> Result<(), Error> {
        let Some(process) = dep.new_processes.first() else {
            return Err(Error::Missing {
                app: app.to_string(),
                step: "deploy".into(),
                what: "the canary's new process".into(),
            });
        };
        let base = smoke::route_url(&self.req.probe, route);
        let to_err = |e: smoke::SmokeError| match e {
            smoke::SmokeError::Cancelled => Error::Cancelled,
            source => Error::Smoke {
                app: app.to_string(),
                source,
            },
        };
        let step_text = dep
            .canary_step
            .map(|(c, t)| format!(" (canary step {c} of {t})"))
            .unwrap_or_default();
        if let Some(path) = &self.req.smoke_test_path {
            reporter.report(Event::Waiting {
                app: app.to_string(),
                what: "smoke_test".into(),
                elapsed: Duration::ZERO,
                detail: format!(
                    "GET {base}{path} with {}: {process}{step_text}",
                    smoke::PROCESS_INSTANCE_HEADER
                ),
            });
            smoke::probe_with_header(
                &self.req.probe,
                &format!("{base}{path}"),
                Some((smoke::PROCESS_INSTANCE_HEADER, process)),
                self.cancel,
            )
            .await
            .map_err(to_err)?;
        }
        if let Some(cmd) = &self.req.smoke_test {
            reporter.report(Event::Waiting {
                app: app.to_string(),
                what: "smoke_test".into(),
                elapsed: Duration::ZERO,
                detail: format!(
                    "running {cmd} {base} (CF_ZDT_PROCESS_INSTANCE={process}){step_text}"
                ),
            });
            smoke::run_command_with_env(
                cmd,
                &base,
                &[("CF_ZDT_PROCESS_INSTANCE", process)],
                self.req.smoke_timeout,
                self.cancel,
            )
            .await
            .map_err(to_err)?;
        }
        Ok(())
    }

    /// Cancels a deployment and waits (bounded by `--timeout`, not by Ctrl-C: this is a
    /// rollback) until it is over.
    async fn cancel_deployment(&self, guid: &str) -> Result<(), ApiError> {
        let finished = |d: &Deployment| match d.state {
            DeploymentState::Canceled | DeploymentState::Superseded => Some(Ok(())),
            DeploymentState::Deployed => Some(Err(ApiError::new(
                422,
                "CF-UnprocessableEntity",
                format!("deployment {guid} had already finished: the new version serves"),
            ))),
            _ => None,
        };
        if let Err(e) = self.api.cancel_deployment(guid).await {
            // Not cancelable any more: fine when it is over already.
            return match self
                .api
                .get_deployment(guid)
                .await
                .ok()
                .as_ref()
                .and_then(finished)
            {
                Some(r) => r,
                None => Err(e),
            };
        }
        // A rollback: not ended by Ctrl-C, bounded by the timeout.
        let mut wait = Wait::new(self.req.poll_interval, self.req.timeout, None);
        loop {
            let d = self.api.get_deployment(guid).await?;
            if let Some(r) = finished(&d) {
                return r;
            }
            if wait.stalled() {
                return Err(ApiError::transport(format!(
                    "deployment {guid} was still {} {} after the cancel",
                    d.state,
                    super::step::fmt_duration(self.req.timeout)
                )));
            }
            // Without a token the pause cannot be cancelled.
            let _ = wait.pause().await;
        }
    }

    /// Waits until every instance of every process of the new app is running and routable.
    /// The first crash of any instance fails the wait, whether polling saw `CRASHED` or only
    /// its traces (see [`super::crash`]); no progress for `--timeout` fails it too.
    async fn wait_healthy(
        &self,
        step: &Step,
        app: &str,
        guid: &str,
        name: &str,
        reporter: &mut dyn Reporter,
    ) -> Result<(), Error> {
        let mut wait = self.wait();
        let mut best: Option<u32> = None;
        let mut watch = CrashWatch::new(self.since);
        loop {
            let processes = self.read(self.api.list_processes(guid), step).await?;
            let type_of = |g: &Option<String>| {
                processes
                    .iter()
                    .find(|p| Some(&p.guid) == g.as_ref())
                    .map_or_else(|| "web".to_string(), |p| p.process_type.clone())
            };
            let (mut running, mut total) = (0u32, 0u32);
            let mut details = Vec::new();
            let mut crash: Option<Crash> = None;
            for p in &processes {
                total += p.instances;
                let stats = self.read(self.api.process_stats(&p.guid), step).await?;
                if crash.is_none() {
                    crash = watch.check_stats(&p.guid, &stats);
                }
                for s in &stats {
                    match s.state {
                        InstanceState::Running if s.routable != Some(false) => running += 1,
                        _ => {
                            if let Some(d) = &s.details
                                && !details.contains(d)
                            {
                                details.push(d.clone());
                            }
                        }
                    }
                }
            }
            if crash.is_none() {
                crash = self
                    .crash_records(&watch, guid, Scope::WholeApp, reporter)
                    .await;
            }
            if let Some(c) = crash {
                return Err(Error::Crashed {
                    name: name.to_string(),
                    process_type: type_of(&c.process_guid),
                    index: c.index.unwrap_or(0),
                    reason: c.reason,
                });
            }
            let running = running.min(total);
            if running == total {
                return Ok(());
            }
            if best.is_none_or(|b| running > b) {
                best = Some(running);
                wait.progressed();
            }
            if wait.stalled() {
                return Err(Error::HealthTimeout {
                    name: name.to_string(),
                    running,
                    total,
                    timeout: self.req.timeout,
                    details: if details.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", details.join("; "))
                    },
                });
            }
            let detail = format!("{running} of {total} instances running");
            wait.report_and_pause(reporter, app, "instances", detail)
                .await?;
        }
    }

    /// The app's crash records that concern `scope` (abandoned when interrupted). An
    /// unavailable source is named once in a warning.
    async fn crash_records(
        &self,
        watch: &CrashWatch,
        app_guid: &str,
        scope: Scope<'_>,
        reporter: &mut dyn Reporter,
    ) -> Option<Crash> {
        let (crash, unavailable) = tokio::select! {
            () = self.cancel.cancelled() => return None,
            r = watch.check_records(self.api, app_guid, scope) => r,
        };
        for gap in unavailable {
            let first = self
                .warned
                .lock()
                .map(|mut w| w.insert(gap.clone()))
                .unwrap_or(false);
            if first {
                reporter.report(Event::Warning {
                    app: None,
                    message: format!(
                        "{gap}; crashes between two polls are detected from instance GUIDs and uptime only"
                    ),
                });
            }
        }
        crash
    }

    async fn undo(&self, u: &Undo) -> Result<(), ApiError> {
        let api = self.api;
        let r = match u {
            Undo::DeleteApp { guid, routes, .. } => {
                let mut r = ok_if_not_found(api.delete_app(guid).await);
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
            Undo::RenameApp { guid, to, .. } => api.rename_app(guid, to).await,
            Undo::CancelDeployment { guid, .. } => self.cancel_deployment(guid).await,
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

/// Runs the plan and returns the outcome with per-step durations. [`Event::Finished`] is not
/// sent here but by [`super::run`], which knows the total duration.
///
/// Interrupts ([`Interrupt`]): a first one before the commit point rolls back; after it, the
/// remaining steps still run (the new version serves; the retire is finished). A second one
/// stops waiting at once, before or after the switch, and the outcome names what is left.
pub async fn execute<A: CfApi>(
    api: &A,
    plan: &Plan,
    req: &DeployRequest,
    apps: &[AppSpec<A::Bits>],
    reporter: &mut dyn Reporter,
    interrupt: &Interrupt,
) -> (Outcome, Vec<StepTime>) {
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
    };
    let after_switch = Exec {
        cancel: interrupt.abandon_token(),
        ..before_switch
    };
    let mut ledger = Ledger::default();
    let mut times = Vec::new();
    let total = plan.steps.len();
    let mut failure: Option<(usize, Error)> = None;
    let mut attempted_mutation = false;
    let mut told_finishing = false;

    for (index, step) in plan.steps.iter().enumerate() {
        let committed = index >= plan.commit;
        if committed {
            interrupt.mark_switched();
        }
        if interrupt.is_abandoned() || (!committed && interrupt.is_stopped()) {
            failure = Some((index, Error::Cancelled));
            break;
        }
        if committed && interrupt.is_stopped() && !told_finishing {
            told_finishing = true;
            reporter.report(Event::Warning {
                app: None,
                message: "interrupted after the switch: the new version serves; finishing the switch (interrupt again to stop waiting)".into(),
            });
        }
        let exec = if committed {
            &after_switch
        } else {
            &before_switch
        };
        reporter.report(Event::StepStarted {
            index,
            total,
            kind: step.kind().into(),
            app: step.app_label().into(),
            description: step.describe(),
        });
        attempted_mutation |= step.is_mutating();
        let started = Instant::now();
        let mut attempt = 0;
        let result = loop {
            match exec.run_step(step, &ledger, reporter).await {
                // After the switch every step is idempotent (rename, label, stop, delete) and
                // giving up leaves the app half-retired: try again, beyond the client's own
                // retries of one request, before naming leftovers.
                Err(f)
                    if committed
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
                    if exec.pause(AFTER_SWITCH_PAUSE * attempt).await.is_err() {
                        break Err(f);
                    }
                }
                r => break r,
            }
        };
        let elapsed = started.elapsed();
        let warnings = api.take_warnings();
        times.push(StepTime {
            kind: step.kind().into(),
            app: step.app_label().into(),
            elapsed,
        });
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
                failure = Some((index, f.error));
                break;
            }
        }
    }

    let Some((index, error)) = failure else {
        return (Outcome::Deployed, times);
    };
    let mut message = error_chain(&error);
    if interrupt.is_abandoned() {
        message.push_str(" (interrupted twice: stopped waiting)");
    }
    let in_place = plan
        .steps
        .iter()
        .any(|s| matches!(s.action, Action::Deploy { .. }));
    let hint = if in_place {
        error.deployment_hint()
    } else {
        error.hint()
    };
    if let Some(h) = hint {
        message.push('\n');
        message.push_str(&h);
    }

    if index >= plan.commit {
        // After the switch: the new version serves; name what is left to do.
        let leftovers = plan.steps[index..]
            .iter()
            .filter_map(Step::manual_command)
            .collect();
        return (
            Outcome::DeployedWithLeftovers {
                error: message,
                leftovers,
            },
            times,
        );
    }
    if !attempted_mutation {
        return (Outcome::NothingChanged { error: message }, times);
    }

    reporter.report(Event::RollbackStarted {
        reason: message.clone(),
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
            r = after_switch.undo(&u) => r,
        };
        let elapsed = started.elapsed();
        warn_all(reporter, None, api.take_warnings());
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
    if manual_steps.is_empty() {
        (Outcome::RolledBack { error: message }, times)
    } else {
        (
            Outcome::RollbackIncomplete {
                error: message,
                manual_steps,
            },
            times,
        )
    }
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
}
