//! Discovery: `GET /` (links and the v3 API version) and `GET /v3/info`, and the feature checks
//! against the version learnt (the table itself is in [`super::version`]).
//!
//! The version comes from `links.cloud_controller_v3.meta.version` of `GET /`; `/v3/info` carries
//! no API version (its `version` is an operator-set integer).
//!
//! Depends on: the client core, [`super::root`], [`super::version`]. Must not: guess a version
//! when discovery has not run.

use serde::{Deserialize, Serialize};

use super::client::Client;
use super::error::Error;
use super::nullable::null_as_default;
use super::root::RootInfo;
use super::version::{ApiVersion, Feature};

/// The document of `GET /v3/info` (the fields of interest; others are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Platform name, e.g. `Cloud Foundry`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Build identifier.
    #[serde(default, deserialize_with = "null_as_default")]
    pub build: String,
    /// Operator-set description.
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    /// Operator-set integer version (not the API version).
    #[serde(default)]
    pub version: Option<i64>,
    /// Rate limiting settings, when advertised.
    #[serde(default)]
    pub rate_limits: Option<RateLimits>,
}

/// `rate_limits` of `/v3/info`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    /// Whether rate limiting is on.
    #[serde(default, deserialize_with = "null_as_default")]
    pub enabled: bool,
    /// Requests per interval.
    #[serde(default)]
    pub general_limit: Option<u64>,
    /// Interval length in minutes.
    #[serde(default)]
    pub reset_interval_in_minutes: Option<u64>,
}

impl Client {
    /// Reads `GET /` (unauthenticated) and remembers the API version and the links, which
    /// [`Client::supports`], [`Client::require`] and the networking calls use.
    ///
    /// ```no_run
    /// # async fn f(client: cf_zero_downtime::cf::Client) -> Result<(), cf_zero_downtime::cf::Error> {
    /// use cf_zero_downtime::cf::Feature;
    /// let root = client.discover().await?;
    /// println!("API {:?}", root.api_version());
    /// client.require(Feature::CanaryDeployments)?; // fails before anything changes
    /// # Ok(()) }
    /// ```
    pub async fn discover(&self) -> Result<RootInfo, Error> {
        let url = self.url("/")?;
        let root: RootInfo = self.get_json_unauthenticated(url).await?;
        self.store_root(root.clone());
        Ok(root)
    }

    /// Reads `GET /v3/info`.
    pub async fn get_info(&self) -> Result<Info, Error> {
        let url = self.url("/v3/info")?;
        self.get_json_unauthenticated(url).await
    }

    /// The API version learnt by [`Client::discover`] (or set with [`Client::set_api_version`]).
    pub fn api_version(&self) -> Option<ApiVersion> {
        self.discovered().and_then(|d| d.version)
    }

    /// Whether the target has `feature`. Errors with [`Error::VersionUnknown`] before discovery.
    pub fn supports(&self, feature: Feature) -> Result<bool, Error> {
        let v = self.api_version().ok_or(Error::VersionUnknown)?;
        Ok(v >= feature.min_version())
    }

    /// Fails with [`Error::Unsupported`] when the target lacks `feature`.
    pub fn require(&self, feature: Feature) -> Result<(), Error> {
        let actual = self.api_version().ok_or(Error::VersionUnknown)?;
        let required = feature.min_version();
        if actual >= required {
            Ok(())
        } else {
            Err(Error::Unsupported {
                feature,
                required,
                actual,
            })
        }
    }
}
