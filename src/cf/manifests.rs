//! Space manifests: `apply_manifest` (creates missing apps synchronously, the rest in a job) and
//! `manifest_diff` (display only). Both take the manifest as YAML text and send it with
//! `Content-Type: application/x-yaml`; this layer never parses manifests.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, space: cf_zero_downtime::cf::SpaceGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! use cf_zero_downtime::cf::PollOptions;
//! let yaml = "applications:\n- name: web\n  instances: 2\n";
//! let diff = client.manifest_diff(&space, yaml).await?;
//! for d in &diff.diff {
//!     println!("{:?} {}", d.op, d.path);
//! }
//! let job = client.apply_manifest(&space, yaml).await?;
//! client.wait_for_job(&job, PollOptions::default()).await?;
//! # Ok(()) }
//! ```
//!
//! Depends on: the client core. Must not: parse or change the YAML.

use super::nullable::null_as_default;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::guid::{AppGuid, JobGuid, SpaceGuid};
use super::request::Body;
use super::{Client, Error, Idempotency};

/// A diff operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffOp {
    /// Added.
    Add,
    /// Removed.
    Remove,
    /// Replaced.
    Replace,
    /// An operation this client does not know.
    #[serde(other)]
    Unknown,
}

/// One entry of a manifest diff (a JSON-patch-like record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffEntry {
    /// The operation.
    pub op: DiffOp,
    /// JSON pointer, e.g. `/applications/0/routes/1`.
    pub path: String,
    /// The old value (remove/replace); any JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was: Option<serde_json::Value>,
    /// The new value (add/replace); any JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

/// The response of `manifest_diff`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ManifestDiff {
    /// The differences.
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff: Vec<DiffEntry>,
}

impl Client {
    /// `POST /v3/spaces/:guid/actions/apply_manifest` with the YAML → the job to wait for.
    ///
    /// # Errors
    /// 422 with one `errors[]` entry per manifest problem (validation happens synchronously).
    pub async fn apply_manifest(&self, space: &SpaceGuid, yaml: &str) -> Result<JobGuid, Error> {
        let url = self.url(&format!("/v3/spaces/{space}/actions/apply_manifest"))?;
        // Idempotent in effect: the same manifest applied twice leaves the same state, so an
        // answer lost in an outage is recovered by sending it again.
        self.send_as(Method::POST, url, Body::Yaml(yaml), Idempotency::Idempotent)
            .await?
            .job_location()
    }

    /// `POST /v3/spaces/:guid/manifest_diff` with the YAML → the differences (display only).
    pub async fn manifest_diff(
        &self,
        space: &SpaceGuid,
        yaml: &str,
    ) -> Result<ManifestDiff, Error> {
        let url = self.url(&format!("/v3/spaces/{space}/manifest_diff"))?;
        // Read-only: safe to resend after a transient failure.
        self.send_as(Method::POST, url, Body::Yaml(yaml), Idempotency::Idempotent)
            .await?
            .json()
    }

    /// `GET /v3/apps/:guid/manifest` → the app's manifest as YAML text.
    pub async fn get_app_manifest(&self, app: &AppGuid) -> Result<String, Error> {
        let url = self.url(&format!("/v3/apps/{app}/manifest"))?;
        let resp = self.get_accepting(url, "application/x-yaml").await?;
        Ok(String::from_utf8_lossy(&resp.body).into_owned())
    }
}
