//! The app steps: apply the manifest (or update the live app), rename, label, SSH, droplet,
//! start, the health wait with crash detection, stop and delete.

use super::*;

/// A health wait reads the crash records at least every this many polls, even when the
/// stats give no reason to (see [`Exec::wait_healthy`]).
const RECORDS_EVERY: u32 = 2;

impl<A: CfApi> Exec<'_, A> {
    /// Deletes an app (gone already counts as deleted); the lock's release then skips it.
    pub(super) async fn delete_app(
        &self,
        step: &Step,
        guid: &AppGuid,
    ) -> Result<StepOutput, StepFailure> {
        ok_if_not_found(self.api.delete_app(guid).await).map_err(Self::api_failure(step))?;
        self.lock.forget(guid);
        Ok(StepOutput::None)
    }

    /// Stops an app (gone counts as stopped).
    pub(super) async fn stop_app(
        &self,
        step: &Step,
        guid: &AppGuid,
    ) -> Result<StepOutput, StepFailure> {
        ok_if_not_found(self.api.stop_app(guid).await).map_err(Self::api_failure(step))?;
        Ok(StepOutput::None)
    }

    /// Renames `target` to `to`, with the metadata change in the same request.
    pub(super) async fn rename_app(
        &self,
        step: &Step,
        ledger: &Ledger,
        target: &AppRef,
        (to, metadata): (&str, &MetadataUpdate),
    ) -> Result<StepOutput, StepFailure> {
        let guid = Self::app_ref(ledger, step, target)?;
        let rename = self.api.rename_app(&guid, to, metadata);
        let unmarks = metadata
            .annotations
            .get(lock::RUN_ID_ANNOTATION)
            .is_some_and(Option::is_none);
        if unmarks {
            self.lock.unmark_with(&guid, rename).await
        } else {
            rename.await
        }
        .map_err(Self::api_failure(step))?;
        Ok(StepOutput::Renamed { guid })
    }

    /// Sets the new app's SSH flag.
    pub(super) async fn set_ssh(
        &self,
        step: &Step,
        ledger: &Ledger,
        enabled: bool,
    ) -> Result<StepOutput, StepFailure> {
        let guid = Self::new_app(ledger, step)?.guid;
        self.api
            .set_ssh_enabled(guid, enabled)
            .await
            .map_err(Self::api_failure(step))?;
        Ok(StepOutput::None)
    }

    /// Sets or removes labels and annotations of app `guid`.
    pub(super) async fn update_metadata(
        &self,
        step: &Step,
        guid: &AppGuid,
        update: &MetadataUpdate,
    ) -> Result<StepOutput, StepFailure> {
        self.api
            .update_metadata(guid, update)
            .await
            .map_err(Self::api_failure(step))?;
        Ok(StepOutput::None)
    }

    /// Sets the staged droplet as the new app's current one.
    pub(super) async fn set_droplet(
        &self,
        step: &Step,
        ledger: &Ledger,
    ) -> Result<StepOutput, StepFailure> {
        let guid = Self::new_app(ledger, step)?.guid;
        let droplet = Self::droplet(ledger, step)?;
        self.api
            .set_current_droplet(guid, droplet)
            .await
            .map_err(Self::api_failure(step))?;
        Ok(StepOutput::None)
    }

    /// Starts the new app.
    pub(super) async fn start(
        &self,
        step: &Step,
        ledger: &Ledger,
    ) -> Result<StepOutput, StepFailure> {
        let guid = Self::new_app(ledger, step)?.guid;
        self.api
            .start_app(guid)
            .await
            .map_err(Self::api_failure(step))?;
        Ok(StepOutput::None)
    }

    /// Waits until the new app is healthy ([`Exec::wait_healthy`]).
    pub(super) async fn wait_new_app_healthy(
        &self,
        step: &Step,
        ledger: &Ledger,
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, StepFailure> {
        let NewApp { guid, name } = Self::new_app(ledger, step)?;
        self.wait_healthy(step, step.app_label(), guid, name, reporter)
            .await?;
        Ok(StepOutput::None)
    }

    /// Applies the rendered manifest to the live app itself (rolling, canary), recording it as
    /// the app the later steps act on.
    pub(super) async fn update_app(
        &self,
        step: &Step,
        guid: &AppGuid,
        render: &RenderRequest,
    ) -> Result<StepOutput, StepFailure> {
        let spec = self.spec(step)?;
        let yaml = (spec.render)(render).map_err(|message| Error::Render {
            app: step.app_label().to_string(),
            message,
        })?;
        self.api
            .apply_manifest(&self.req.space_guid, &yaml)
            .await
            .map_err(Self::api_failure(step))?;
        Ok(StepOutput::App {
            guid: guid.clone(),
            name: render.name.clone(),
            server_routes: Vec::new(),
        })
    }

    /// Records an existing app as the one the later steps act on (rollback); changes nothing.
    pub(super) fn reinstate(guid: &AppGuid, name: &str) -> StepOutput {
        StepOutput::App {
            guid: guid.clone(),
            name: name.to_string(),
            server_routes: Vec::new(),
        }
    }

    /// Starts an existing app; a failed start is recorded too (it may have taken effect), so
    /// that the rollback stops it.
    pub(super) async fn start_existing(
        &self,
        step: &Step,
        guid: &AppGuid,
    ) -> Result<StepOutput, StepFailure> {
        match self.api.start_app(guid).await {
            Ok(()) => Ok(StepOutput::None),
            Err(e) => Err(StepFailure {
                error: Self::api_err(step, e),
                partial: Some(StepOutput::None),
            }),
        }
    }

    /// Creates the new app exclusively (with this run's lock marks), then applies the rendered
    /// manifest to it, recording the app (and the routes the server created for it under
    /// `random-route`) even when a later call failed, so that the rollback deletes it.
    pub(super) async fn apply_manifest(
        &self,
        step: &Step,
        render: &RenderRequest,
    ) -> Result<StepOutput, StepFailure> {
        let api = self.api;
        let space = &self.req.space_guid;
        let spec = self.spec(step)?;
        let yaml = (spec.render)(render).map_err(|message| Error::Render {
            app: step.app_label().to_string(),
            message,
        })?;
        let created = self.create_app(step, spec, render).await?;
        let mut server_routes = Vec::new();
        let mut applied = api.apply_manifest(space, &yaml).await;
        // With random-route the server creates the route: record it so a rollback
        // deletes it with the app.
        if applied.is_ok() && render.random_route {
            match api.list_app_routes(&created.guid).await {
                Ok(r) => server_routes = r.routes.into_iter().map(|s| s.route).collect(),
                Err(e) => applied = Err(e),
            }
        }
        let out = StepOutput::App {
            guid: created.guid,
            name: created.name,
            server_routes,
        };
        match applied {
            Ok(()) => Ok(out),
            Err(e) => Err(StepFailure {
                error: Self::api_err(step, e),
                partial: Some(out),
            }),
        }
    }

    /// `POST /v3/apps` for the new app, with the run's lock marks: exclusive, as app names are
    /// unique in a space. When it fails, the name is looked up: an app carrying this run's id
    /// is ours (the answer was lost); one that another run holds, or anyone else's, is never
    /// touched and ends the step.
    async fn create_app(
        &self,
        step: &Step,
        spec: &AppSpec<A::Bits>,
        render: &RenderRequest,
    ) -> Result<App, StepFailure> {
        let api = self.api;
        let space = &self.req.space_guid;
        let mut annotations = render.annotations.clone();
        annotations.extend(self.lock.annotations(lock::now_secs()));
        let new = crate::deploy::api::NewApp {
            name: render.name.clone(),
            lifecycle: spec.lifecycle(),
            labels: render.labels.clone(),
            annotations,
        };
        let error = match api.create_app(space, &new).await {
            Ok(app) => {
                self.lock.hold(&app.guid);
                return Ok(app);
            }
            Err(e) => e,
        };
        let names = [render.name.clone()];
        let Ok(found) = api.find_apps_by_name(space, &names).await else {
            return Err(Self::api_err(step, error).into());
        };
        let Some(app) = found
            .into_iter()
            .find(|a| a.name.eq_ignore_ascii_case(&render.name))
        else {
            return Err(Self::api_err(step, error).into());
        };
        let marker = lock::Marker::of(&app.annotations);
        if marker.is_some_and(|m| m.run_id == self.lock.run_id()) {
            self.lock.hold(&app.guid);
            return Ok(app);
        }
        if !error.is_uniqueness() {
            return Err(Self::api_err(step, error).into());
        }
        let label = step.app_label().to_string();
        let busy = lock::busy_among(&label, [&app], self.lock.run_id(), lock::now_secs());
        Err(match busy {
            Some(busy) => Error::Locked {
                busy: Box::new(busy),
                waited: Duration::ZERO,
            },
            None => Error::NameTaken {
                app: label,
                name: app.name,
                guid: app.guid,
            },
        }
        .into())
    }

    /// Waits until every instance of every process of the new app is running and routable.
    /// The first crash of any instance fails the wait, whether polling saw `CRASHED` or only
    /// its traces (see [`crate::deploy::crash`]); no progress for `--timeout` fails it too.
    ///
    /// The call budget: the app's processes are read once (a started app's processes do not
    /// change while it starts), each poll reads each process's stats, and the crash records
    /// are read only when the stats give a reason (a replaced instance, a crashed or down
    /// one, fewer running than the poll before), before each verdict (all running, or the
    /// timeout), and every [`RECORDS_EVERY`]th poll besides.
    pub(super) async fn wait_healthy(
        &self,
        step: &Step,
        app: &str,
        guid: &AppGuid,
        name: &str,
        reporter: &mut dyn Reporter,
    ) -> Result<(), Error> {
        let mut wait = self.wait();
        let mut best: Option<u32> = None;
        let mut watch = CrashWatch::new(self.since);
        let processes = self.read(self.api.list_processes(guid), step).await?;
        let mut before = 0u32;
        let mut poll = 0u32;
        loop {
            poll = poll.wrapping_add(1);
            let type_of = |g: &Option<ProcessGuid>| {
                processes
                    .iter()
                    .find(|p| Some(&p.guid) == g.as_ref())
                    .map_or_else(|| "web".to_string(), |p| p.process_type.clone())
            };
            let (mut running, mut total) = (0u32, 0u32);
            let mut details = Vec::new();
            let mut crash: Option<Crash> = None;
            let mut suspicious = false;
            for p in &processes {
                total += p.instances;
                let stats = self.read(self.api.process_stats(&p.guid), step).await?;
                if crash.is_none() {
                    crash = watch.check_stats(&p.guid, &stats);
                }
                for s in &stats {
                    suspicious |= matches!(s.state, InstanceState::Crashed | InstanceState::Down);
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
            let running = running.min(total);
            suspicious |= watch.pending() || running < before;
            before = running;
            let verdict = running == total || wait.stalled();
            if crash.is_none() && (suspicious || verdict || poll.is_multiple_of(RECORDS_EVERY)) {
                crash = self
                    .crash_records(&mut watch, guid, name, Scope::WholeApp, reporter)
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
            // A replaced instance is judged (moved or crashed) before the wait ends.
            if running == total && !watch.pending() {
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

    /// The app's crash records that concern `scope` (abandoned when interrupted), with the
    /// verdict on replaced instances: a moved one is said in a notice. An unavailable source
    /// is named once in a warning.
    pub(super) async fn crash_records(
        &self,
        watch: &mut CrashWatch,
        app_guid: &AppGuid,
        name: &str,
        scope: Scope<'_>,
        reporter: &mut dyn Reporter,
    ) -> Option<Crash> {
        let check = tokio::select! {
            () = self.cancel.cancelled() => return None,
            r = watch.check_records(self.api, app_guid, scope) => r,
        };
        for gap in check.unavailable {
            let first = self
                .warned
                .lock()
                .map(|mut w| w.insert(gap.clone()))
                .unwrap_or(false);
            if first {
                reporter.report(Event::Warning {
                    app: None,
                    message: format!(
                        "{gap}; a replaced instance is judged by the rules in the README (\"When the platform misbehaves\")"
                    ),
                });
            }
        }
        for m in check.moved {
            reporter.report(Event::Notice {
                app: Some(name.to_string()),
                message: format!(
                    "instance {} was moved to another cell, not crashed ({}); going on",
                    m.index, m.why
                ),
            });
        }
        check.crash
    }
}
