//! The smoke tests of the new app: the step before the switch (through the temporary route)
//! and the check at every canary pause (through the production route, pinned to the canary's
//! process). One entry point, [`Exec::smoke_test`], over `deploy::smoke`.

use super::*;

/// Where a canary's smoke test is pinned: its new process GUID and the canary step (text).
pub(super) struct Pin<'p> {
    pub(super) process: &'p ProcessGuid,
    pub(super) step_text: String,
}

impl<A: CfApi> Exec<'_, A> {
    /// Runs the smoke-test step of the new app at `route`.
    pub(super) async fn smoke_step(
        &self,
        step: &Step,
        route: &str,
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, StepFailure> {
        self.smoke_test(step.app_label(), route, None, reporter)
            .await?;
        Ok(StepOutput::None)
    }

    /// The HTTP probe (`--smoke-test-path`) and then the command (`--smoke-test`) of `route`,
    /// each when configured; with a pin, the probe sends [`smoke::PROCESS_INSTANCE_HEADER`]
    /// and the command gets `$CF_ZDT_PROCESS_INSTANCE`.
    pub(super) async fn smoke_test(
        &self,
        app: &str,
        route: &str,
        pin: Option<Pin<'_>>,
        reporter: &mut dyn Reporter,
    ) -> Result<(), Error> {
        let base = smoke::route_url(&self.req.probe, route);
        let to_err = |e: smoke::SmokeError| match e {
            smoke::SmokeError::Cancelled => Error::Cancelled,
            source => Error::Smoke {
                app: app.to_string(),
                source,
            },
        };
        let mut waiting = |detail: String| {
            reporter.report(Event::Waiting {
                app: app.to_string(),
                what: "smoke_test".into(),
                elapsed: Duration::ZERO,
                detail,
            });
        };
        if let Some(path) = &self.req.smoke_test_path {
            let header = pin
                .as_ref()
                .map(|p| (smoke::PROCESS_INSTANCE_HEADER, p.process.as_str()));
            waiting(match &pin {
                Some(p) => format!(
                    "GET {base}{path} with {}: {}{}",
                    smoke::PROCESS_INSTANCE_HEADER,
                    p.process,
                    p.step_text
                ),
                None => format!("GET {base}{path}"),
            });
            smoke::probe(
                &self.req.probe,
                &format!("{base}{path}"),
                header,
                self.cancel,
            )
            .await
            .map_err(to_err)?;
        }
        if let Some(cmd) = &self.req.smoke_test {
            let connect_to = smoke::connect_to_env(&self.req.probe, route);
            let mut env: Vec<(&str, &str)> = pin
                .as_ref()
                .map(|p| ("CF_ZDT_PROCESS_INSTANCE", p.process.as_str()))
                .into_iter()
                .collect();
            if let Some(c) = &connect_to {
                env.push((smoke::CONNECT_TO_ENV, c));
            }
            waiting(match &pin {
                Some(p) => format!(
                    "running {cmd} {base} (CF_ZDT_PROCESS_INSTANCE={}){}",
                    p.process, p.step_text
                ),
                None => format!("running {cmd} {base}"),
            });
            smoke::run_command(cmd, &base, &env, self.req.smoke_timeout, self.cancel)
                .await
                .map_err(to_err)?;
        }
        Ok(())
    }
}
