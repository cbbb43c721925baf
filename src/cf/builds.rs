//! Builds (staging): create from a READY package, get, and a bounded wait for `STAGED` that turns
//! `FAILED` into [`Error::StagingFailed`] carrying the build's `error` text.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, pkg: cf_zero_downtime::cf::PackageGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! use cf_zero_downtime::cf::PollOptions;
//! let build = client.create_build(&pkg).await?;
//! let staged = client.wait_for_build_staged(&build.guid, PollOptions::default()).await?;
//! let droplet = staged.droplet_guid().expect("a staged build has a droplet");
//! # let _ = droplet; Ok(()) }
//! ```
//!
//! Depends on: the client core, poll. Must not: stream staging logs.

use super::nullable::null_as_default;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::guid::{AppGuid, BuildGuid, DropletGuid, PackageGuid};
use super::poll::{PollOptions, poll_until};
use super::relationships::{GuidRef, ToOne};
use super::{Client, Error};

/// The state of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BuildState {
    Staging,
    /// Staged; `droplet` is set.
    Staged,
    /// Failed; `error` says why.
    Failed,
    /// A state this client does not know.
    #[serde(other)]
    Unknown,
}

/// `relationships` of a build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRelationships {
    /// The app it belongs to, as Cloud Controller links it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub app: ToOne<AppGuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// Its GUID, as in `/v3/builds/:guid`.
    pub guid: BuildGuid,
    pub state: BuildState,
    /// The staging error, e.g. `NoAppDetectedError - ...`.
    #[serde(default)]
    pub error: Option<String>,
    /// The package staged.
    #[serde(default)]
    pub package: Option<GuidRef<PackageGuid>>,
    /// The resulting droplet (when `STAGED`).
    #[serde(default)]
    pub droplet: Option<GuidRef<DropletGuid>>,
    /// The app it belongs to, as Cloud Controller links it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationships: BuildRelationships,
}

impl Build {
    /// The droplet produced, if staged.
    pub fn droplet_guid(&self) -> Option<&DropletGuid> {
        self.droplet.as_ref().map(|d| &d.guid)
    }
}

#[derive(Serialize)]
struct NewBuild<'a> {
    package: GuidRef<&'a PackageGuid>,
}

impl Client {
    /// `POST /v3/builds {"package":{"guid":..}}` (the only field the cf CLI sends).
    pub async fn create_build(&self, package: &PackageGuid) -> Result<Build, Error> {
        let body = NewBuild {
            package: GuidRef::new(package),
        };
        self.send_json(Method::POST, self.url("/v3/builds")?, &body)
            .await
    }

    /// `GET /v3/builds?package_guids=..&order_by=-created_at`: the builds of a package, newest
    /// first (to find a build whose create answer was lost).
    pub async fn list_package_builds(&self, package: &PackageGuid) -> Result<Vec<Build>, Error> {
        self.list_all(
            "/v3/builds",
            &[
                ("package_guids", package.to_string()),
                ("order_by", "-created_at".to_owned()),
            ],
        )
        .await
    }

    /// `GET /v3/builds/:guid`.
    pub async fn get_build(&self, guid: &BuildGuid) -> Result<Build, Error> {
        self.get_json(self.url(&format!("/v3/builds/{guid}"))?)
            .await
    }

    /// Polls until `STAGED` (returned) or `FAILED` ([`Error::StagingFailed`]).
    pub async fn wait_for_build_staged(
        &self,
        guid: &BuildGuid,
        opts: PollOptions,
    ) -> Result<Build, Error> {
        let build = poll_until(opts, &format!("build {guid} to stage"), || async {
            let b = self.get_build(guid).await?;
            Ok(matches!(b.state, BuildState::Staged | BuildState::Failed).then_some(b))
        })
        .await?;
        match build.state {
            BuildState::Failed => Err(Error::StagingFailed {
                build: build.guid,
                error: build
                    .error
                    .unwrap_or_else(|| "no error given by cloud controller".to_owned()),
            }),
            _ => Ok(build),
        }
    }
}
