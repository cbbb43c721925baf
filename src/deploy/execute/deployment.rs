//! Rolling/canary: the Cloud Controller deployment, its monitor (crashes, stalls, canary
//! pauses with the canary smoke test) and its cancel on rollback.

use super::*;

impl<A: CfApi> Exec<'_, A> {
    /// Creates the deployment of the staged droplet and watches it to the end.
    pub(super) async fn deployment_step(
        &self,
        step: &Step,
        ledger: &Ledger,
        (strategy, smoke_route): (DeploymentStrategy, Option<&str>),
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, StepFailure> {
        let NewApp { guid, name } = Self::new_app(ledger, step)?;
        let droplet = Self::droplet(ledger, step)?;
        let new = NewDeployment {
            app_guid: guid.clone(),
            droplet_guid: droplet.clone(),
            strategy,
            max_in_flight: self.req.max_in_flight,
            canary_steps: match strategy {
                DeploymentStrategy::Canary => self.req.instance_steps.clone(),
                DeploymentStrategy::Rolling => Vec::new(),
            },
        };
        let d = self
            .api
            .create_deployment(&new)
            .await
            .map_err(Self::api_failure(step))?;
        let dguid = d.guid.clone();
        match self
            .monitor(step, guid, name, d, smoke_route, reporter)
            .await
        {
            Ok(()) => Ok(StepOutput::None),
            Err(error) => Err(StepFailure {
                error,
                partial: Some(StepOutput::Deployment {
                    guid: dguid,
                    app_name: name.to_string(),
                }),
            }),
        }
    }

    /// Watches a deployment until it is DEPLOYED. Any CRASHED instance of the new process, no
    /// progress (state, canary step, running new instances) for `--timeout`, a failed canary
    /// smoke test or an interrupt ends the watch with an error; the caller's rollback cancels
    /// the deployment. At each canary pause the smoke test runs against the new process
    /// (router header), then the deployment is continued.
    pub(super) async fn monitor(
        &self,
        step: &Step,
        app_guid: &AppGuid,
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
                    self.deployment_analysis(step, app_guid, name, &dep, reporter)
                        .await?;
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
            let running = self
                .new_instances_running(step, &mut watch, app_guid, name, &dep, reporter)
                .await?;
            let mut detail = deployment_detail(&dep, running);
            let key = Progress {
                state: dep.state.clone(),
                canary_step: dep.canary_step,
                running: running.0,
            };
            if last_key.as_ref() != Some(&key) {
                last_key = Some(key);
                wait.progressed();
            }
            if wait.stalled() {
                if let Some(t) = &dep.last_successful_healthcheck {
                    detail.push_str(&format!("; last successful health check {t}"));
                }
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

    /// The running and all new instances of a deployment (`(running, total)`), or the crash of
    /// one of them (stats, crash records).
    async fn new_instances_running(
        &self,
        step: &Step,
        watch: &mut CrashWatch,
        app_guid: &AppGuid,
        name: &str,
        dep: &Deployment,
        reporter: &mut dyn Reporter,
    ) -> Result<(u32, u32), Error> {
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
                    watch,
                    app_guid,
                    name,
                    Scope::Processes(&dep.new_processes),
                    reporter,
                )
                .await;
        }
        match crash {
            Some(c) => Err(Error::Crashed {
                name: name.to_string(),
                process_type: "web (new)".into(),
                index: c.index.unwrap_or(0),
                reason: c.reason,
            }),
            None => Ok((running, total)),
        }
    }

    /// The smoke test of a paused canary: through the production route, pinned to the new
    /// process with `X-Cf-Process-Instance` (the command gets the header value in
    /// `$CF_ZDT_PROCESS_INSTANCE`).
    pub(super) async fn canary_smoke(
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
        let step_text = dep
            .canary_step
            .map(|(c, t)| format!(" (canary step {c} of {t})"))
            .unwrap_or_default();
        let pin = smoke_test::Pin { process, step_text };
        self.smoke_test(app, route, Some(pin), reporter).await?;
        Ok(())
    }

    /// Cancels a deployment and waits (bounded by `--timeout`, not by Ctrl-C: this is a
    /// rollback) until it is over.
    pub(super) async fn cancel_deployment(&self, guid: &DeploymentGuid) -> Result<(), ApiError> {
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
                    crate::deploy::step::fmt_duration(self.req.timeout)
                )));
            }
            // Without a token the pause cannot be cancelled.
            let _ = wait.pause().await;
        }
    }
}

/// Where a deployment stands with `(running, total)` new instances, and why it does not move
/// on as Cloud Controller's updater says (CAPI 3.192+).
fn deployment_detail(dep: &Deployment, (running, total): (u32, u32)) -> String {
    let mut detail = match dep.canary_step {
        Some((c, t)) => format!(
            "{}, canary step {c} of {t}, {running} of {total} new instances running",
            dep.state
        ),
        None => format!("{}, {running} of {total} new instances running", dep.state),
    };
    if let Some(e) = &dep.error {
        detail.push_str(&format!("; Cloud Controller: {e}"));
    }
    detail
}
