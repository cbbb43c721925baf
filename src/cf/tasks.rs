//! Tasks: one-off processes run from an app's droplet with its environment and bindings
//! (`cf run-task`). Create, get, cancel, and a bounded wait until the task ends.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, app: cf_zero_downtime::cf::AppGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! use cf_zero_downtime::cf::{NewTask, PollOptions, TaskState};
//! let task = client.create_task(&app, &NewTask::new("bin/rails db:migrate")).await?;
//! let done = client.wait_for_task(&task.guid, PollOptions::default()).await?;
//! if done.state == TaskState::Failed {
//!     eprintln!("{}", done.failure_reason().unwrap_or("no reason given"));
//! }
//! # Ok(()) }
//! ```
//!
//! Depends on: the client core, poll. Must not: decide what a failed task means (deploy does).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::Idempotency;
use super::guid::{AppGuid, DropletGuid, TaskGuid};
use super::nullable::null_as_default;
use super::poll::{PollOptions, poll_until};
use super::relationships::ToOne;
use super::request::Body;
use super::{Client, Error};

/// The state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Accepted, not yet placed on a cell.
    Pending,
    /// Its process runs.
    Running,
    /// Exited with status 0.
    Succeeded,
    /// A cancel was asked for; it ends `FAILED`.
    Canceling,
    /// Exited non-zero, could not run, or was cancelled; `result.failure_reason` says which.
    Failed,
    /// A state this client does not know (treated as not yet ended).
    #[serde(other)]
    Unknown,
}

impl TaskState {
    /// `SUCCEEDED` or `FAILED`: the task will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed)
    }
}

/// `result` of a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Why a `FAILED` task failed, e.g. `APP/TASK/migrate: Exited with status 1`.
    #[serde(default)]
    pub failure_reason: Option<String>,
}

/// `relationships` of a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRelationships {
    /// The app it runs for.
    #[serde(default, deserialize_with = "null_as_default")]
    pub app: ToOne<AppGuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Its GUID, as in `/v3/tasks/:guid`.
    pub guid: TaskGuid,
    /// Its name (Cloud Controller makes one up when none was given).
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// The app-scoped sequence number `cf tasks` shows as `id`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub sequence_id: u64,
    /// The command; left out for users who may not see the app's environment.
    #[serde(default)]
    pub command: Option<String>,
    pub state: TaskState,
    /// Memory limit, MB.
    #[serde(default)]
    pub memory_in_mb: Option<u64>,
    /// Disk limit, MB.
    #[serde(default)]
    pub disk_in_mb: Option<u64>,
    /// Why it failed, when `FAILED`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub result: TaskResult,
    /// The droplet it runs.
    #[serde(default)]
    pub droplet_guid: Option<DropletGuid>,
    /// The app it runs for.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationships: TaskRelationships,
}

impl Task {
    /// `result.failure_reason`, when given.
    pub fn failure_reason(&self) -> Option<&str> {
        self.result.failure_reason.as_deref()
    }
}

/// The body of `POST /v3/apps/:guid/tasks`; unset fields take the platform's defaults (the
/// app's droplet, the platform's task memory and disk, a generated name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NewTask {
    /// The command, run by the droplet's shell as `cf run-task --command` runs it.
    pub command: String,
    /// Its name, e.g. `zdt-migrate-1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Memory limit, MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_in_mb: Option<u64>,
    /// Disk limit, MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_in_mb: Option<u64>,
    /// A droplet other than the app's current one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub droplet_guid: Option<DropletGuid>,
}

impl NewTask {
    /// A task running `command` with every other field left to the platform.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            ..Self::default()
        }
    }
}

impl Client {
    /// `POST /v3/apps/:guid/tasks`. Not retried: a second create would run the command twice.
    pub async fn create_task(&self, app: &AppGuid, task: &NewTask) -> Result<Task, Error> {
        self.send_json_as(
            Method::POST,
            self.url(&format!("/v3/apps/{app}/tasks"))?,
            task,
            Idempotency::NotIdempotent,
        )
        .await
    }

    /// `GET /v3/tasks/:guid`.
    pub async fn get_task(&self, guid: &TaskGuid) -> Result<Task, Error> {
        self.get_json(self.url(&format!("/v3/tasks/{guid}"))?).await
    }

    /// `POST /v3/tasks/:guid/actions/cancel`, or `PUT /v3/tasks/:guid/cancel` where the
    /// action endpoint answers 404 (Cloud Controllers before the `actions` form). Returns the
    /// task as Cloud Controller answers it (`CANCELING`, or already `FAILED`).
    pub async fn cancel_task(&self, guid: &TaskGuid) -> Result<Task, Error> {
        let action = self.url(&format!("/v3/tasks/{guid}/actions/cancel"))?;
        match self.send(Method::POST, action, Body::Empty).await {
            Ok(r) => r.json(),
            Err(e) if e.is_not_found() => {
                let legacy = self.url(&format!("/v3/tasks/{guid}/cancel"))?;
                self.send(Method::PUT, legacy, Body::Empty).await?.json()
            }
            Err(e) => Err(e),
        }
    }

    /// Polls until the task is `SUCCEEDED` or `FAILED` and returns it; the caller decides what
    /// `FAILED` means. Bounded by `opts.timeout` ([`Error::PollTimeout`]).
    pub async fn wait_for_task(&self, guid: &TaskGuid, opts: PollOptions) -> Result<Task, Error> {
        poll_until(opts, &format!("task {guid} to end"), || async {
            let t = self.get_task(guid).await?;
            Ok(t.state.is_terminal().then_some(t))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_task_sends_only_what_was_set() {
        let body = serde_json::to_value(NewTask::new("rake db:migrate")).unwrap();
        assert_eq!(body, serde_json::json!({"command": "rake db:migrate"}));
        let body = serde_json::to_value(NewTask {
            name: Some("zdt-migrate-1".into()),
            memory_in_mb: Some(256),
            disk_in_mb: Some(512),
            droplet_guid: Some(DropletGuid::new("d")),
            ..NewTask::new("x")
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"command": "x", "name": "zdt-migrate-1", "memory_in_mb": 256,
                "disk_in_mb": 512, "droplet_guid": "d"})
        );
    }

    #[test]
    fn unknown_states_are_not_terminal() {
        let t: Task = serde_json::from_str(r#"{"guid":"t","state":"QUEUED"}"#).unwrap();
        assert_eq!(t.state, TaskState::Unknown);
        assert!(!t.state.is_terminal());
        assert_eq!(t.failure_reason(), None);
    }
}
