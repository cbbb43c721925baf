//! The bits steps: create the package, upload it (progress throttled, cancellable), stage
//! (the staging output streamed as it comes, see `logs.rs`).

use super::*;

impl<A: CfApi> Exec<'_, A> {
    /// Creates the new app's package (bits or docker).
    pub(super) async fn create_package(
        &self,
        step: &Step,
        ledger: &Ledger,
    ) -> Result<StepOutput, StepFailure> {
        let spec = self.spec(step)?;
        let guid = Self::new_app(ledger, step)?.guid;
        let p = self
            .api
            .create_package(guid, &spec.source)
            .await
            .map_err(Self::api_failure(step))?;
        Ok(StepOutput::Package(p))
    }

    /// Uploads the app's bits into its package, forwarding the progress; an interrupt drops
    /// the upload.
    pub(super) async fn upload_bits(
        &self,
        step: &Step,
        ledger: &Ledger,
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, StepFailure> {
        let app = step.app_label();
        let spec = self.spec(step)?;
        let AppSource::Bits(bits) = &spec.source else {
            return Err(Self::missing(step, "a bits source").into());
        };
        let package = Self::package(ledger, step)?;
        let (sink, mut rx) = ProgressSink::channel();
        let upload = self.api.upload_bits(package, bits, sink);
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
        r.map_err(Self::api_failure(step))?;
        Ok(StepOutput::None)
    }

    /// Stages the package and waits for the droplet, streaming the staging output.
    pub(super) async fn stage(
        &self,
        step: &Step,
        ledger: &Ledger,
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, StepFailure> {
        let package = Self::package(ledger, step)?;
        let app = step.app_label();
        // Cloud Controller answers the build's create with it STAGING (the create is the first
        // look at its state), so the first poll comes after a pause. The staging output is
        // read after each poll, the last read after the poll that saw it end (its last lines
        // are written as the state changes): one log-cache read per poll at most.
        let mut log = self.staging_log(ledger, app, reporter).await;
        let build = self
            .api
            .create_build(package)
            .await
            .map_err(Self::api_failure(step))?;
        let mut wait = self.wait();
        loop {
            let detail = format!("staging build {build}");
            wait.report_and_pause(reporter, app, "staging", detail)
                .await?;
            let state = self.read(self.api.get_build(&build), step).await?;
            let read = self.read_staging(log.as_mut()).await;
            Self::show_staging(read, app, reporter);
            match state {
                BuildState::Staged(d) => return Ok(StepOutput::Droplet(d)),
                BuildState::Failed(reason) => {
                    return Err(Error::StagingFailed {
                        app: app.to_string(),
                        reason,
                    }
                    .into());
                }
                BuildState::Staging => {}
            }
            if wait.stalled() {
                return Err(Error::StagingTimeout {
                    app: app.to_string(),
                    timeout: self.req.timeout,
                }
                .into());
            }
        }
    }
}
