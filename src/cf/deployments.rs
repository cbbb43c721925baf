//! Deployments (rolling and canary): create with options, get, find the active one, continue,
//! cancel, and a bounded wait until the deployment settles (FINALIZED, or PAUSED at a canary
//! step).
//!
//! Creating a deployment checks the options against the target's API version first (when it is
//! known from [`Client::discover`]): canary and `max_in_flight` need 3.173, canary steps 3.189,
//! `web_instances` 3.190, memory/disk/log-rate 3.191. The failure ([`Error::Unsupported`]) happens
//! before any request is sent. Unset options are omitted from the body (rather than sent as
//! `null` like the cf CLI does) so older CCs do not reject unknown keys.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, app: cf_zero_downtime::cf::AppGuid,
//! #            droplet: cf_zero_downtime::cf::DropletGuid) -> Result<(), cf_zero_downtime::cf::Error> {
//! use cf_zero_downtime::cf::{DeploymentOptions, NewDeployment, PollOptions};
//! let new = NewDeployment::canary(app, Some(droplet)).with_options(DeploymentOptions {
//!     max_in_flight: Some(2),
//!     ..DeploymentOptions::default().canary_steps([20, 50])
//! });
//! let dep = client.create_deployment(&new).await?;
//! let dep = client.wait_for_deployment(&dep.guid, PollOptions::default()).await?;
//! if dep.is_paused() {
//!     client.continue_deployment(&dep.guid).await?;
//! } else if !dep.is_deployed() {
//!     client.cancel_deployment(&dep.guid).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! Depends on: the client core, discovery, poll. Must not: decide when to cancel (deploy does).

use super::nullable::null_as_default;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::guid::{AppGuid, DeploymentGuid, DropletGuid, ProcessGuid};
use super::metadata::Metadata;
use super::poll::{PollOptions, poll_until};
use super::relationships::{GuidRef, ToOne};
use super::request::Body;
use super::version::Feature;
use super::{Client, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentStrategy {
    Rolling,
    /// Canary (pauses at each step).
    Canary,
    /// A strategy this client does not know.
    #[serde(other)]
    Unknown,
}

/// `status.value`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatusValue {
    /// In progress (or paused, or canceling).
    Active,
    /// Over; the reason says how.
    Finalized,
    /// A value this client does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// `status.reason`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentReason {
    /// Rolling out.
    Deploying,
    /// Between canary steps (internal; rarely presented).
    Prepaused,
    /// Waiting at a canary step for `continue`.
    Paused,
    /// Cancel requested.
    Canceling,
    /// Succeeded.
    Deployed,
    /// Canceled (old process restored).
    Canceled,
    /// Replaced by a newer deployment.
    Superseded,
    /// A reason this client does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// `status.details`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStatusDetails {
    /// Set when the updater recorded an error.
    #[serde(default)]
    pub error: Option<String>,
    /// Time of the last successful health check (also read from `last_healthcheck`).
    #[serde(default, alias = "last_healthcheck")]
    pub last_successful_healthcheck: Option<String>,
    /// Time of the last status change.
    #[serde(default)]
    pub last_status_change: Option<String>,
}

/// `status.canary.steps`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryProgress {
    /// Current step (1-based).
    #[serde(default, deserialize_with = "null_as_default")]
    pub current: u32,
    /// Number of steps.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total: u32,
}

/// `status.canary`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryStatus {
    /// Step progress.
    #[serde(default, deserialize_with = "null_as_default")]
    pub steps: CanaryProgress,
}

/// `status` of a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStatus {
    /// ACTIVE or FINALIZED.
    #[serde(default, deserialize_with = "null_as_default")]
    pub value: DeploymentStatusValue,
    #[serde(default, deserialize_with = "null_as_default")]
    pub reason: DeploymentReason,
    #[serde(default)]
    pub details: Option<DeploymentStatusDetails>,
    /// Canary progress (canary only).
    #[serde(default)]
    pub canary: Option<CanaryStatus>,
}

/// A canary step: `{"instance_weight": 20}` (percent, ascending, 1..=100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryStep {
    /// Percentage of instances on the new version at this step.
    pub instance_weight: u32,
}

/// `options.canary`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryOptions {
    #[serde(default, deserialize_with = "null_as_default")]
    pub steps: Vec<CanaryStep>,
}

/// Deployment `options`; `None` fields are omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentOptions {
    /// Instances started at once (server default 1; CC ≥ 3.173).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Canary steps (strategy canary only; CC ≥ 3.189).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryOptions>,
    /// Target web instances (CC ≥ 3.190).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_instances: Option<u32>,
    /// Memory per instance, MB (CC ≥ 3.191).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_in_mb: Option<u64>,
    /// Disk per instance, MB (CC ≥ 3.191).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_in_mb: Option<u64>,
    /// Log rate limit, bytes/s (CC ≥ 3.191).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_rate_limit_in_bytes_per_second: Option<i64>,
}

impl DeploymentOptions {
    /// Sets canary steps from weights (percent).
    pub fn canary_steps(mut self, weights: impl IntoIterator<Item = u32>) -> Self {
        self.canary = Some(CanaryOptions {
            steps: weights
                .into_iter()
                .map(|instance_weight| CanaryStep { instance_weight })
                .collect(),
        });
        self
    }

    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// `relationships` of a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRelationships {
    /// The app it belongs to, as Cloud Controller links it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub app: ToOne<AppGuid>,
}

/// A process created by a deployment: `{"guid": .., "type": "web"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProcessRef {
    /// The process.
    pub guid: ProcessGuid,
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
}

/// Body of `POST /v3/deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewDeployment {
    /// The droplet to deploy (the app's current droplet when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub droplet: Option<GuidRef<DropletGuid>>,
    /// Rolling or canary.
    pub strategy: DeploymentStrategy,
    /// Options (omitted when all unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<DeploymentOptions>,
    /// The app it belongs to, as Cloud Controller links it.
    pub relationships: DeploymentRelationships,
    /// Labels and annotations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

impl NewDeployment {
    fn new(strategy: DeploymentStrategy, app: AppGuid, droplet: Option<DropletGuid>) -> Self {
        Self {
            droplet: droplet.map(GuidRef::new),
            strategy,
            options: None,
            relationships: DeploymentRelationships {
                app: ToOne::to(app),
            },
            metadata: None,
        }
    }

    /// A rolling deployment of `droplet` (or the current droplet) to `app`.
    pub fn rolling(app: AppGuid, droplet: Option<DropletGuid>) -> Self {
        Self::new(DeploymentStrategy::Rolling, app, droplet)
    }

    /// A canary deployment of `droplet` (or the current droplet) to `app`.
    pub fn canary(app: AppGuid, droplet: Option<DropletGuid>) -> Self {
        Self::new(DeploymentStrategy::Canary, app, droplet)
    }

    /// Sets the options (all-unset options are not sent).
    pub fn with_options(mut self, options: DeploymentOptions) -> Self {
        self.options = (!options.is_empty()).then_some(options);
        self
    }

    /// The API features this request needs.
    pub fn required_features(&self) -> Vec<Feature> {
        let mut f = vec![Feature::DeploymentStrategy];
        if self.strategy == DeploymentStrategy::Canary {
            f.push(Feature::CanaryDeployments);
        }
        if let Some(o) = &self.options {
            if o.max_in_flight.is_some() {
                f.push(Feature::MaxInFlight);
            }
            if o.canary.is_some() {
                f.push(Feature::CanarySteps);
            }
            if o.web_instances.is_some() {
                f.push(Feature::DeploymentWebInstances);
            }
            if o.memory_in_mb.is_some()
                || o.disk_in_mb.is_some()
                || o.log_rate_limit_in_bytes_per_second.is_some()
            {
                f.push(Feature::DeploymentResourceOptions);
            }
        }
        f
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Its GUID, as in `/v3/deployments/:guid`.
    pub guid: DeploymentGuid,
    /// Status (value, reason, details, canary progress).
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: DeploymentStatus,
    #[serde(default)]
    pub strategy: Option<DeploymentStrategy>,
    /// Options as the server applied them.
    #[serde(default)]
    pub options: Option<DeploymentOptions>,
    /// The droplet being deployed.
    #[serde(default, deserialize_with = "super::relationships::nullable_guid_ref")]
    pub droplet: Option<GuidRef<DropletGuid>>,
    /// The droplet before the deployment (restored on cancel); CC sends `{"guid": null}`
    /// when the app had none.
    #[serde(default, deserialize_with = "super::relationships::nullable_guid_ref")]
    pub previous_droplet: Option<GuidRef<DropletGuid>>,
    /// Processes created by the deployment.
    #[serde(default, deserialize_with = "null_as_default")]
    pub new_processes: Vec<NewProcessRef>,
    /// The app it belongs to, as Cloud Controller links it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationships: DeploymentRelationships,
    /// Labels and annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Metadata,
}

impl Deployment {
    /// FINALIZED/DEPLOYED.
    pub fn is_deployed(&self) -> bool {
        self.status.value == DeploymentStatusValue::Finalized
            && self.status.reason == DeploymentReason::Deployed
    }

    /// ACTIVE/PAUSED (a canary step waits for `continue`).
    pub fn is_paused(&self) -> bool {
        self.status.value == DeploymentStatusValue::Active
            && self.status.reason == DeploymentReason::Paused
    }

    /// FINALIZED, whatever the reason.
    pub fn is_finalized(&self) -> bool {
        self.status.value == DeploymentStatusValue::Finalized
    }

    /// The updater's error, if it recorded one.
    pub fn error(&self) -> Option<&str> {
        self.status.details.as_ref()?.error.as_deref()
    }
}

impl Client {
    /// `POST /v3/deployments`, after checking the target supports every option used.
    ///
    /// # Errors
    /// [`Error::Unsupported`] (no request sent) when the known API version is too old.
    pub async fn create_deployment(&self, new: &NewDeployment) -> Result<Deployment, Error> {
        if self.api_version().is_some() {
            for feature in new.required_features() {
                self.require(feature)?;
            }
        }
        self.send_json(Method::POST, self.url("/v3/deployments")?, new)
            .await
    }

    /// `GET /v3/deployments/:guid`.
    pub async fn get_deployment(&self, guid: &DeploymentGuid) -> Result<Deployment, Error> {
        self.get_json(self.url(&format!("/v3/deployments/{guid}"))?)
            .await
    }

    /// The app's newest ACTIVE deployment
    /// (`?app_guids=..&status_values=ACTIVE&order_by=-created_at&per_page=1&page=1`).
    pub async fn find_active_deployment(&self, app: &AppGuid) -> Result<Option<Deployment>, Error> {
        self.first(
            "/v3/deployments",
            &[
                ("app_guids", app.to_string()),
                ("status_values", "ACTIVE".to_owned()),
                ("order_by", "-created_at".to_owned()),
            ],
        )
        .await
    }

    /// `POST /v3/deployments/:guid/actions/continue` (next canary step).
    pub async fn continue_deployment(&self, guid: &DeploymentGuid) -> Result<(), Error> {
        let url = self.url(&format!("/v3/deployments/{guid}/actions/continue"))?;
        self.send(Method::POST, url, Body::Empty).await?;
        Ok(())
    }

    /// `POST /v3/deployments/:guid/actions/cancel` (restores the previous droplet).
    pub async fn cancel_deployment(&self, guid: &DeploymentGuid) -> Result<(), Error> {
        let url = self.url(&format!("/v3/deployments/{guid}/actions/cancel"))?;
        self.send(Method::POST, url, Body::Empty).await?;
        Ok(())
    }

    /// Polls until the deployment is FINALIZED (any reason) or PAUSED, and returns it; the
    /// caller decides what DEPLOYED/CANCELED/SUPERSEDED/PAUSED mean. Bounded by `opts.timeout`.
    pub async fn wait_for_deployment(
        &self,
        guid: &DeploymentGuid,
        opts: PollOptions,
    ) -> Result<Deployment, Error> {
        poll_until(opts, &format!("deployment {guid} to settle"), || async {
            let d = self.get_deployment(guid).await?;
            Ok((d.is_finalized() || d.is_paused()).then_some(d))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_details_are_optional_and_null_tolerant() {
        let with = |details: &str| -> Deployment {
            serde_json::from_str(&format!(
                r#"{{"guid":"d","status":{{"value":"ACTIVE","reason":"DEPLOYING"{details}}}}}"#
            ))
            .unwrap()
        };
        let d = with(
            r#","details":{"last_successful_healthcheck":"2018-04-25T22:42:10Z","last_status_change":"2018-04-25T22:42:10Z","error":"memory space_quota_exceeded"}"#,
        );
        assert_eq!(d.error(), Some("memory space_quota_exceeded"));
        let details = d.status.details.unwrap();
        assert_eq!(
            details.last_successful_healthcheck.as_deref(),
            Some("2018-04-25T22:42:10Z")
        );
        for absent in [
            "",
            r#","details":null"#,
            r#","details":{}"#,
            r#","details":{"error":null,"last_successful_healthcheck":null}"#,
        ] {
            let d = with(absent);
            assert_eq!(d.error(), None, "{absent}");
        }
        let d = with(r#","details":{"last_healthcheck":"t"}"#);
        assert_eq!(
            d.status
                .details
                .unwrap()
                .last_successful_healthcheck
                .as_deref(),
            Some("t")
        );
    }
}
