//! Organizations: lookup by name or GUID.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client) -> Result<(), cf_zero_downtime::cf::Error> {
//! let org = client.find_organization("my-org").await?;
//! if let Some(org) = org {
//!     let again = client.get_organization(&org.guid).await?;
//! #   let _ = again;
//! }
//! # Ok(()) }
//! ```
//!
//! Depends on: the client core. Must not: cache results.

use super::nullable::null_as_default;
use serde::{Deserialize, Serialize};

use super::guid::{OrganizationGuid, OrganizationQuotaGuid};
use super::metadata::Metadata;
use super::relationships::ToOne;
use super::request::join_filter;
use super::{Client, Error};

/// `relationships` of an organization.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationRelationships {
    /// The organization quota (every org has one; `{"data": null}` is read as none).
    #[serde(default, deserialize_with = "super::relationships::nullable_to_one")]
    pub quota: ToOne<OrganizationQuotaGuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Its GUID, as in `/v3/organizations/:guid`.
    pub guid: OrganizationGuid,
    pub name: String,
    /// Whether it is suspended.
    #[serde(default, deserialize_with = "null_as_default")]
    pub suspended: bool,
    /// Its quota.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationships: OrganizationRelationships,
    /// Labels and annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Metadata,
}

impl Client {
    /// `GET /v3/organizations?names=<name>`.
    pub async fn find_organization(&self, name: &str) -> Result<Option<Organization>, Error> {
        let orgs: Vec<Organization> = self
            .list_all("/v3/organizations", &[("names", join_filter(&[name]))])
            .await?;
        Ok(orgs.into_iter().next())
    }

    /// `GET /v3/organizations/:guid`.
    pub async fn get_organization(&self, guid: &OrganizationGuid) -> Result<Organization, Error> {
        self.get_json(self.url(&format!("/v3/organizations/{guid}"))?)
            .await
    }
}
