//! Processes: list an app's processes, get, update (command, health checks), scale, and
//! per-instance stats (state, routable, placement `details` such as "insufficient resources").
//!
//! While a rolling deployment runs an app has two `web` processes; callers tell them apart by
//! GUID (see `Deployment::new_processes`).
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, app: cf_zero_downtime::cf::AppGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! use cf_zero_downtime::cf::{HealthCheck, HealthCheckType, InstanceState, ProcessScale, ProcessUpdate};
//! for p in client.list_app_processes(&app).await? {
//!     let stats = client.get_process_stats(&p.guid).await?;
//!     let running = stats.iter().filter(|i| i.state == InstanceState::Running).count();
//!     if let Some(why) = stats.iter().find_map(|i| i.details.as_deref()) {
//!         eprintln!("{}: {why}", p.type_);
//!     }
//!     client.scale_process(&p.guid, &ProcessScale { instances: Some(3), ..Default::default() }).await?;
//!     let update = ProcessUpdate {
//!         health_check: Some(HealthCheck::http("/health")),
//!         ..Default::default()
//!     };
//!     client.update_process(&p.guid, &update).await?;
//! #   let _ = running;
//! }
//! # Ok(()) }
//! ```
//!
//! Depends on: the client core. Must not: decide what "healthy" means (the deploy layer does).

use super::nullable::null_as_default;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::guid::{AppGuid, ProcessGuid, RevisionGuid};
use super::metadata::Metadata;
use super::page::Page;
use super::relationships::ToOne;
use super::{Client, Error, Idempotency};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckType {
    /// TCP port check.
    Port,
    /// Process liveness only.
    Process,
    /// HTTP GET on `endpoint`.
    Http,
    /// A type this client does not know.
    #[serde(other)]
    Unknown,
}

/// `health_check.data` / `readiness_health_check.data`. `None` fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheckData {
    /// Start timeout in seconds (liveness only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    /// Per-check timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_timeout: Option<u32>,
    /// Seconds between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u32>,
    /// HTTP path (type `http` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    #[serde(rename = "type")]
    pub type_: HealthCheckType,
    /// Its settings.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: HealthCheckData,
}

impl HealthCheck {
    /// An `http` check on `endpoint`.
    pub fn http(endpoint: impl Into<String>) -> Self {
        Self {
            type_: HealthCheckType::Http,
            data: HealthCheckData {
                endpoint: Some(endpoint.into()),
                ..HealthCheckData::default()
            },
        }
    }

    /// A check of the given type without settings.
    pub fn of_type(type_: HealthCheckType) -> Self {
        Self {
            type_,
            data: HealthCheckData::default(),
        }
    }
}

/// `relationships` of a process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRelationships {
    /// The app it belongs to, as Cloud Controller links it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub app: ToOne<AppGuid>,
    /// The revision, when revisions are enabled.
    #[serde(default, deserialize_with = "null_as_default")]
    pub revision: ToOne<RevisionGuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Its GUID, as in `/v3/processes/:guid`.
    pub guid: ProcessGuid,
    /// Its type, e.g. `web`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Start command (`None` = buildpack default; redacted in lists).
    #[serde(default)]
    pub command: Option<String>,
    /// Desired instances.
    #[serde(default, deserialize_with = "null_as_default")]
    pub instances: u32,
    /// Memory per instance, MB.
    #[serde(default)]
    pub memory_in_mb: Option<u64>,
    /// Disk per instance, MB.
    #[serde(default)]
    pub disk_in_mb: Option<u64>,
    /// Log rate limit, bytes/s (`-1` = unlimited).
    #[serde(default)]
    pub log_rate_limit_in_bytes_per_second: Option<i64>,
    /// Liveness health check.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// Readiness health check (CC ≥ 3.145).
    #[serde(default)]
    pub readiness_health_check: Option<HealthCheck>,
    /// App and revision.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationships: ProcessRelationships,
    /// Labels and annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Metadata,
    /// Creation time (RFC 3339).
    #[serde(default, deserialize_with = "null_as_default")]
    pub created_at: String,
}

/// Body of `PATCH /v3/processes/:guid`; `None` fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessUpdate {
    /// New start command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// New liveness health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// New readiness health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_health_check: Option<HealthCheck>,
}

/// Body of `POST /v3/processes/:guid/actions/scale`; `None` fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessScale {
    /// Instances (≥ 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Memory per instance, MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_in_mb: Option<u64>,
    /// Disk per instance, MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_in_mb: Option<u64>,
    /// Log rate limit, bytes/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_rate_limit_in_bytes_per_second: Option<i64>,
}

/// The state of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceState {
    /// Running (and passing its liveness check).
    Running,
    Crashed,
    Starting,
    Stopping,
    /// Not running (not placed yet, or the app is stopped).
    Down,
    /// A state this client does not know.
    #[serde(other)]
    Unknown,
}

/// Resource usage of an instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceUsage {
    /// CPU fraction.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cpu: f64,
    /// Memory bytes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub mem: u64,
    /// Disk bytes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub disk: u64,
}

/// One entry of `GET /v3/processes/:guid/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStats {
    /// Process type.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    /// Instance index.
    pub index: u32,
    /// The Diego actual LRP's instance GUID. A different GUID at the same index between two
    /// polls means the instance was replaced (crashed and restarted, or evacuated), even when
    /// both polls saw `RUNNING`. `None` for instances not placed (`DOWN`) and on old CCs.
    ///
    /// Stats carry no `since`: the start time is `uptime` seconds before the poll (the
    /// `since` field belongs to the experimental `GET /v3/processes/:guid/process_instances`).
    #[serde(default)]
    pub instance_guid: Option<String>,
    /// Instance state.
    pub state: InstanceState,
    /// Readiness result (CC ≥ 3.151); `None` when not reported.
    #[serde(default)]
    pub routable: Option<bool>,
    /// Placement error, e.g. `insufficient resources: memory`.
    #[serde(default)]
    pub details: Option<String>,
    /// Seconds since the instance started; a value lower than the previous poll's (plus the
    /// time between polls) means a restart.
    #[serde(default)]
    pub uptime: Option<u64>,
    /// Memory quota, bytes.
    #[serde(default)]
    pub mem_quota: Option<u64>,
    /// Disk quota, bytes.
    #[serde(default)]
    pub disk_quota: Option<u64>,
    /// Resource usage.
    #[serde(default)]
    pub usage: Option<InstanceUsage>,
}

impl InstanceStats {
    /// Running and not reported unroutable (`routable` of `None` counts as routable, for CCs
    /// older than 3.151).
    pub fn is_serving(&self) -> bool {
        self.state == InstanceState::Running && self.routable != Some(false)
    }
}

impl Client {
    /// `GET /v3/apps/:guid/processes`, every page.
    pub async fn list_app_processes(&self, app: &AppGuid) -> Result<Vec<Process>, Error> {
        self.list_all(&format!("/v3/apps/{app}/processes"), &[])
            .await
    }

    /// `GET /v3/apps/:guid/processes/:type` (e.g. `web`; the newest one during a deployment).
    pub async fn get_app_process(&self, app: &AppGuid, type_: &str) -> Result<Process, Error> {
        self.get_json(self.url(&format!("/v3/apps/{app}/processes/{type_}"))?)
            .await
    }

    /// `POST /v3/apps/:guid/processes/:type/actions/scale` (what `cf scale` uses).
    pub async fn scale_app_process(
        &self,
        app: &AppGuid,
        type_: &str,
        scale: &ProcessScale,
    ) -> Result<Process, Error> {
        let url = self.url(&format!("/v3/apps/{app}/processes/{type_}/actions/scale"))?;
        // Absolute values: scaling twice to the same numbers is scaling once.
        self.send_json_as(Method::POST, url, scale, Idempotency::Idempotent)
            .await
    }

    /// `GET /v3/processes/:guid`.
    pub async fn get_process(&self, guid: &ProcessGuid) -> Result<Process, Error> {
        self.get_json(self.url(&format!("/v3/processes/{guid}"))?)
            .await
    }

    /// `PATCH /v3/processes/:guid` (command, health checks).
    pub async fn update_process(
        &self,
        guid: &ProcessGuid,
        update: &ProcessUpdate,
    ) -> Result<Process, Error> {
        let url = self.url(&format!("/v3/processes/{guid}"))?;
        self.send_json(Method::PATCH, url, update).await
    }

    /// `POST /v3/processes/:guid/actions/scale` (202 with the process).
    pub async fn scale_process(
        &self,
        guid: &ProcessGuid,
        scale: &ProcessScale,
    ) -> Result<Process, Error> {
        let url = self.url(&format!("/v3/processes/{guid}/actions/scale"))?;
        // Absolute values: scaling twice to the same numbers is scaling once.
        self.send_json_as(Method::POST, url, scale, Idempotency::Idempotent)
            .await
    }

    /// `GET /v3/processes/:guid/stats` (a single page: the response has no `pagination`).
    pub async fn get_process_stats(&self, guid: &ProcessGuid) -> Result<Vec<InstanceStats>, Error> {
        let page: Page<InstanceStats> = self
            .get_json(self.url(&format!("/v3/processes/{guid}/stats"))?)
            .await?;
        Ok(page.resources)
    }
}
