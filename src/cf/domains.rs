//! Domains: lookup by name, the organization's default domain, an organization's domains.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, org: cf_zero_downtime::cf::OrganizationGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! let default = client.get_default_domain(&org).await?;
//! let custom = client.find_domain("example.com").await?;
//! # let _ = (default, custom); Ok(()) }
//! ```
//!
//! Depends on: the client core. Must not: parse manifest route strings.

use super::nullable::null_as_default;
use serde::{Deserialize, Serialize};

use super::guid::{DomainGuid, OrganizationGuid, RouterGroupGuid};
use super::metadata::Metadata;
use super::relationships::{GuidRef, ToOne};
use super::request::join_filter;
use super::{Client, Error};

/// `relationships` of a domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRelationships {
    /// The owning organization; `data: null` for shared domains.
    #[serde(default, deserialize_with = "null_as_default")]
    pub organization: ToOne<OrganizationGuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// Its GUID, as in `/v3/domains/:guid`.
    pub guid: DomainGuid,
    /// Its name, e.g. `example.com`.
    pub name: String,
    /// Internal (container-to-container) domain.
    #[serde(default, deserialize_with = "null_as_default")]
    pub internal: bool,
    /// Router group (TCP domains).
    #[serde(default)]
    pub router_group: Option<GuidRef<RouterGroupGuid>>,
    /// `["http"]` or `["tcp"]`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub supported_protocols: Vec<String>,
    /// Owner organization.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationships: DomainRelationships,
    /// Labels and annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Metadata,
}

impl Domain {
    /// Shared (no owning organization).
    pub fn is_shared(&self) -> bool {
        self.relationships.organization.data.is_none()
    }

    /// A TCP domain.
    pub fn is_tcp(&self) -> bool {
        self.supported_protocols.iter().any(|p| p == "tcp")
    }
}

impl Client {
    /// `GET /v3/domains?names=<name>` (case-insensitive on the server).
    pub async fn find_domain(&self, name: &str) -> Result<Option<Domain>, Error> {
        self.first("/v3/domains", &[("names", join_filter(&[name]))])
            .await
    }

    /// `GET /v3/domains/:guid`.
    pub async fn get_domain(&self, guid: &DomainGuid) -> Result<Domain, Error> {
        self.get_json(self.url(&format!("/v3/domains/{guid}"))?)
            .await
    }

    /// `GET /v3/organizations/:guid/domains/default`.
    ///
    /// # Errors
    /// Not found when the organization has no usable domain.
    pub async fn get_default_domain(&self, org: &OrganizationGuid) -> Result<Domain, Error> {
        self.get_json(self.url(&format!("/v3/organizations/{org}/domains/default"))?)
            .await
    }

    /// `GET /v3/organizations/:guid/domains`, every page.
    pub async fn list_organization_domains(
        &self,
        org: &OrganizationGuid,
    ) -> Result<Vec<Domain>, Error> {
        self.list_all(&format!("/v3/organizations/{org}/domains"), &[])
            .await
    }
}
