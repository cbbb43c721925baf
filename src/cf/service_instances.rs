//! Service instances: lookup by name in a space.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, space: cf_zero_downtime::cf::SpaceGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! let db = client.find_service_instance(&space, "my-db").await?;
//! # let _ = db; Ok(()) }
//! ```
//!
//! Depends on: the client core. Must not: create or delete service instances.

use super::nullable::null_as_default;
use serde::{Deserialize, Serialize};

use super::guid::{ServiceInstanceGuid, ServicePlanGuid, SpaceGuid};
use super::metadata::Metadata;
use super::relationships::ToOne;
use super::request::join_filter;
use super::{Client, Error};

/// Managed or user-provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceInstanceType {
    /// Broker-managed (bindings may be asynchronous).
    Managed,
    /// User-provided (bindings are synchronous).
    UserProvided,
    /// A type this client does not know.
    #[serde(other)]
    Unknown,
}

/// The last operation on a service instance or binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastOperation {
    /// `create`, `update`, `delete`.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    /// `initial`, `in progress`, `succeeded`, `failed`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub state: String,
    /// Broker description.
    #[serde(default)]
    pub description: Option<String>,
}

/// `relationships` of a service instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstanceRelationships {
    #[serde(default, deserialize_with = "null_as_default")]
    pub space: ToOne<SpaceGuid>,
    /// The plan (managed instances).
    #[serde(default, deserialize_with = "null_as_default")]
    pub service_plan: ToOne<ServicePlanGuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    /// Its GUID, as in `/v3/service_instances/:guid`.
    pub guid: ServiceInstanceGuid,
    pub name: String,
    /// Managed or user-provided.
    #[serde(rename = "type")]
    pub type_: ServiceInstanceType,
    #[serde(default)]
    pub last_operation: Option<LastOperation>,
    /// Space and plan.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationships: ServiceInstanceRelationships,
    /// Labels and annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Metadata,
}

impl Client {
    /// `GET /v3/service_instances?names=<name>&space_guids=<space>` (names are case-sensitive;
    /// instances shared into the space are found too).
    pub async fn find_service_instance(
        &self,
        space: &SpaceGuid,
        name: &str,
    ) -> Result<Option<ServiceInstance>, Error> {
        self.first(
            "/v3/service_instances",
            &[
                ("names", join_filter(&[name])),
                ("space_guids", space.to_string()),
            ],
        )
        .await
    }
}
