//! Asynchronous jobs: `GET /v3/jobs/:guid` and a bounded wait for `COMPLETE`/`FAILED`.
//!
//! Calls that answer `202 Accepted` + `Location: .../v3/jobs/<guid>` (apply_manifest, app and
//! route deletion, managed service bindings) return the [`JobGuid`]. Waiting adds the job's
//! `warnings[].detail` to the client's warnings (once, from the final poll) and turns `FAILED`
//! into [`Error::JobFailed`] with every `errors[]` entry.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, job: cf_zero_downtime::cf::JobGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! use std::time::Duration;
//! use cf_zero_downtime::cf::PollOptions;
//! let done = client
//!     .wait_for_job(&job, PollOptions::new(Duration::from_secs(3), Duration::from_secs(300)))
//!     .await?;
//! # let _ = done; Ok(()) }
//! ```
//!
//! Depends on: the client core, poll. Must not: poll without a bound.

use super::nullable::null_as_default;
use serde::{Deserialize, Serialize};

use super::error::CcError;
use super::guid::JobGuid;
use super::poll::{PollOptions, poll_until};
use super::{Client, Error};

/// The state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Running.
    Processing,
    /// Waiting on a service broker.
    Polling,
    /// Done.
    Complete,
    /// Failed; see `errors`.
    Failed,
    /// A state this client does not know (treated as not finished).
    #[serde(other)]
    Unknown,
}

/// A job warning: `{"detail": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobWarning {
    /// The warning text.
    #[serde(default, deserialize_with = "null_as_default")]
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its GUID, as in `/v3/jobs/:guid`.
    pub guid: JobGuid,
    /// E.g. `space.apply_manifest`, `app.delete`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub operation: String,
    pub state: JobState,
    /// Errors (when `FAILED`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub errors: Vec<CcError>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub warnings: Vec<JobWarning>,
}

impl Client {
    /// `GET /v3/jobs/:guid`.
    pub async fn get_job(&self, guid: &JobGuid) -> Result<Job, Error> {
        self.get_json(self.url(&format!("/v3/jobs/{guid}"))?).await
    }

    /// Polls the job until `COMPLETE` (returned) or `FAILED` ([`Error::JobFailed`]), at most
    /// `opts.timeout` ([`Error::PollTimeout`]). Job warnings are added to the client's warnings.
    pub async fn wait_for_job(&self, guid: &JobGuid, opts: PollOptions) -> Result<Job, Error> {
        let job = poll_until(opts, &format!("job {guid} to complete"), || async {
            let job = self.get_job(guid).await?;
            Ok(matches!(job.state, JobState::Complete | JobState::Failed).then_some(job))
        })
        .await?;
        self.push_warnings(
            job.warnings
                .iter()
                .map(|w| w.detail.trim().to_owned())
                .filter(|w| !w.is_empty()),
        );
        match job.state {
            JobState::Failed => Err(Error::JobFailed {
                job: job.guid,
                operation: job.operation,
                errors: job.errors,
            }),
            _ => Ok(job),
        }
    }
}
