//! Spaces: lookup by name within an organization, or by GUID.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, org: cf_zero_downtime::cf::OrganizationGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! let space = client.find_space(&org, "dev").await?;
//! # let _ = space; Ok(()) }
//! ```
//!
//! Depends on: the client core. Must not: cache results.

use super::nullable::null_as_default;
use serde::{Deserialize, Serialize};

use super::guid::{OrganizationGuid, SpaceGuid, SpaceQuotaGuid};
use super::metadata::Metadata;
use super::organizations::Organization;
use super::relationships::ToOne;
use super::request::join_filter;
use super::{Client, Error};

/// `relationships` of a space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceRelationships {
    #[serde(default, deserialize_with = "null_as_default")]
    pub organization: ToOne<OrganizationGuid>,
    /// The space quota, if one is assigned (`{"data": null}` when not).
    #[serde(default, deserialize_with = "super::relationships::nullable_to_one")]
    pub quota: ToOne<SpaceQuotaGuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Space {
    /// Its GUID, as in `/v3/spaces/:guid`.
    pub guid: SpaceGuid,
    pub name: String,
    /// Its organization.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationships: SpaceRelationships,
    /// Labels and annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Metadata,
}

impl Client {
    /// `GET /v3/spaces?names=<name>&organization_guids=<org>`.
    pub async fn find_space(
        &self,
        org: &OrganizationGuid,
        name: &str,
    ) -> Result<Option<Space>, Error> {
        let spaces: Vec<Space> = self
            .list_all(
                "/v3/spaces",
                &[
                    ("names", join_filter(&[name])),
                    ("organization_guids", org.to_string()),
                ],
            )
            .await?;
        Ok(spaces.into_iter().next())
    }

    /// `GET /v3/spaces/:guid`.
    pub async fn get_space(&self, guid: &SpaceGuid) -> Result<Space, Error> {
        self.get_json(self.url(&format!("/v3/spaces/{guid}"))?)
            .await
    }

    /// `GET /v3/spaces/:guid?include=organization`: the space and its organization (`None`
    /// when the answer does not include it).
    pub async fn get_space_with_organization(
        &self,
        guid: &SpaceGuid,
    ) -> Result<(Space, Option<Organization>), Error> {
        let query = [("include", "organization".to_owned())];
        let url = self.url_with(&format!("/v3/spaces/{guid}"), &query)?;
        let answer: SpaceWithIncluded = self.get_json(url).await?;
        let org_guid = answer.space.relationships.organization.guid().cloned();
        let org = answer
            .included
            .organizations
            .into_iter()
            .find(|o| Some(&o.guid) == org_guid.as_ref());
        Ok((answer.space, org))
    }
}

/// A space with the `included` object of `include=organization`.
#[derive(Deserialize)]
struct SpaceWithIncluded {
    #[serde(flatten)]
    space: Space,
    #[serde(default, deserialize_with = "null_as_default")]
    included: IncludedOrganizations,
}

#[derive(Default, Deserialize)]
struct IncludedOrganizations {
    #[serde(default, deserialize_with = "null_as_default")]
    organizations: Vec<Organization>,
}
