//! The smoke-test step of the new app (command or HTTP probe, see `deploy::smoke`).

use super::*;

impl<A: CfApi> Exec<'_, A> {
    /// Runs the smoke test of the new app.
    pub(super) async fn smoke_step(
        &self,
        step: &Step,
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, Failure> {
        let app = step.app_label();
        match &step.action {
            Action::SmokeTest { route } => {
                let base = smoke::route_url(&self.req.probe, route);
                let smoke_err = |source| Error::Smoke {
                    app: app.to_string(),
                    source,
                };
                let to_err = |e: smoke::SmokeError| match e {
                    smoke::SmokeError::Cancelled => Error::Cancelled,
                    e => smoke_err(e),
                };
                if let Some(path) = &self.req.smoke_test_path {
                    reporter.report(Event::Waiting {
                        app: app.to_string(),
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
                        app: app.to_string(),
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
            _ => Err(Self::missing(step, "a handler for this step").into()),
        }
    }
}
