//! Droplets, and an app's current droplet (get / set).
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, app: cf_zero_downtime::cf::AppGuid,
//! #            droplet: cf_zero_downtime::cf::DropletGuid) -> Result<(), cf_zero_downtime::cf::Error> {
//! let d = client.get_droplet(&droplet).await?;
//! client.set_current_droplet(&app, &d.guid).await?;
//! let current = client.find_current_droplet(&app).await?; // None when unset
//! # let _ = current; Ok(()) }
//! ```
//!
//! Depends on: the client core. Must not: upload or download droplet bits.

use std::collections::BTreeMap;

use super::nullable::{map_without_nulls, null_as_default};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::guid::{AppGuid, DropletGuid};
use super::relationships::ToOne;
use super::{Client, Error};

/// The state of a droplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DropletState {
    AwaitingUpload,
    ProcessingUpload,
    /// Staged and usable.
    Staged,
    /// Being copied.
    Copying,
    Failed,
    Expired,
    /// A state this client does not know.
    #[serde(other)]
    Unknown,
}

/// `relationships` of a droplet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropletRelationships {
    /// The app it belongs to, as Cloud Controller links it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub app: ToOne<AppGuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Droplet {
    /// Its GUID, as in `/v3/droplets/:guid`.
    pub guid: DropletGuid,
    pub state: DropletState,
    /// An error, if failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Process types and their start commands, e.g. `{"web": "bundle exec rackup"}`.
    #[serde(default, deserialize_with = "map_without_nulls")]
    pub process_types: BTreeMap<String, String>,
    #[serde(default)]
    pub stack: Option<String>,
    /// The docker image (docker droplets).
    #[serde(default)]
    pub image: Option<String>,
    /// The app it belongs to, as Cloud Controller links it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationships: DropletRelationships,
}

impl Client {
    /// `GET /v3/droplets/:guid`.
    pub async fn get_droplet(&self, guid: &DropletGuid) -> Result<Droplet, Error> {
        self.get_json(self.url(&format!("/v3/droplets/{guid}"))?)
            .await
    }

    /// `GET /v3/apps/:guid/droplets/current`.
    ///
    /// # Errors
    /// Not found ([`Error::is_not_found`]) when no droplet is assigned.
    pub async fn get_current_droplet(&self, app: &AppGuid) -> Result<Droplet, Error> {
        self.get_json(self.url(&format!("/v3/apps/{app}/droplets/current"))?)
            .await
    }

    /// Like [`Client::get_current_droplet`], `None` when no droplet is assigned.
    pub async fn find_current_droplet(&self, app: &AppGuid) -> Result<Option<Droplet>, Error> {
        self.get_json_opt(self.url(&format!("/v3/apps/{app}/droplets/current"))?)
            .await
    }

    /// `PATCH /v3/apps/:guid/relationships/current_droplet {"data":{"guid":..}}`.
    pub async fn set_current_droplet(
        &self,
        app: &AppGuid,
        droplet: &DropletGuid,
    ) -> Result<(), Error> {
        let url = self.url(&format!("/v3/apps/{app}/relationships/current_droplet"))?;
        let _relationship: ToOne<DropletGuid> = self
            .send_json(Method::PATCH, url, &ToOne::to(droplet.clone()))
            .await?;
        Ok(())
    }
}
