//! The environment snapshot of rolling/canary (undone by `Undo::RestoreEnv`).

use super::*;

impl<A: CfApi> Exec<'_, A> {
    /// Records the live app's environment variables and service bindings.
    pub(super) async fn snapshot_env(
        &self,
        step: &Step,
        guid: &AppGuid,
    ) -> Result<StepOutput, StepFailure> {
        let vars = self.read(self.api.get_env_vars(guid), step).await?;
        let bindings = self
            .read(self.api.list_service_bindings(guid), step)
            .await?
            .into_iter()
            .map(|b| b.guid)
            .collect();
        Ok(StepOutput::Env {
            guid: guid.clone(),
            name: step.app_label().to_string(),
            vars,
            bindings,
        })
    }
}
