//! Packages: create (bits or docker), upload bits (multipart, streamed from the zip file), and a
//! bounded wait for `READY`.
//!
//! The upload's `resources` field is always sent (`[]` when nothing matched); `bits` is sent only
//! when there is a zip, with the file name `package.zip`. The file is streamed in chunks and
//! never read into memory whole; `progress(sent, total)` is called as bytes go out.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, app: cf_zero_downtime::cf::AppGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! use std::path::Path;
//! use cf_zero_downtime::cf::{NewPackage, PollOptions};
//! let package = client.create_package(&NewPackage::bits(app)).await?;
//! client
//!     .upload_package_bits(&package.guid, &[], Some(Path::new("/tmp/app.zip")), |sent, total| {
//!         eprintln!("{sent}/{total}");
//!     })
//!     .await?;
//! let ready = client.wait_for_package_ready(&package.guid, PollOptions::default()).await?;
//! # let _ = ready; Ok(()) }
//! ```
//!
//! Depends on: the client core, tokio fs. Must not: build zips (the package layer does).

use std::path::Path;
use std::sync::Arc;

use super::nullable::null_as_default;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use super::guid::{AppGuid, PackageGuid};
use super::metadata::Metadata;
use super::poll::{PollOptions, poll_until};
use super::relationships::ToOne;
use super::request::{Body, Upload};
use super::resource_matches::MatchedResource;
use super::{Client, Error};

/// The kind of package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageType {
    /// App bits (uploaded zip).
    Bits,
    /// A docker image.
    Docker,
    /// A type this client does not know.
    #[serde(other)]
    Unknown,
}

/// The state of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PackageState {
    /// Created, no bits yet.
    AwaitingUpload,
    /// Bits received, being processed.
    ProcessingUpload,
    /// Ready to stage.
    Ready,
    /// Processing failed.
    Failed,
    /// Being copied.
    Copying,
    Expired,
    /// A state this client does not know.
    #[serde(other)]
    Unknown,
}

/// `data` of a package (the fields of interest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageData {
    /// The processing error, when `FAILED`.
    #[serde(default)]
    pub error: Option<String>,
    /// The docker image (docker packages).
    #[serde(default)]
    pub image: Option<String>,
}

/// `relationships` of a package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRelationships {
    /// The app it belongs to, as Cloud Controller links it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub app: ToOne<AppGuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Its GUID, as in `/v3/packages/:guid`.
    pub guid: PackageGuid,
    /// Bits or docker.
    #[serde(rename = "type")]
    pub type_: PackageType,
    pub state: PackageState,
    /// Type-specific data.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: PackageData,
    /// The app it belongs to, as Cloud Controller links it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationships: PackageRelationships,
    /// Labels and annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Metadata,
}

/// Docker image data of a new package. The password is a secret: never shown by `Debug`.
#[derive(Debug, Clone, Serialize)]
pub struct DockerData {
    /// The image, e.g. `registry/image:latest`.
    pub image: String,
    /// Registry user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Registry password (`CF_DOCKER_PASSWORD`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_password"
    )]
    pub password: Option<SecretString>,
}

fn expose_password<S: Serializer>(p: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(p.expose_secret()),
        None => s.serialize_none(),
    }
}

/// Body of `POST /v3/packages`.
#[derive(Debug, Clone, Serialize)]
pub struct NewPackage {
    /// Bits or docker.
    #[serde(rename = "type")]
    pub type_: PackageType,
    /// The app it belongs to, as Cloud Controller links it.
    pub relationships: PackageRelationships,
    /// Docker image data (docker packages only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<DockerData>,
}

impl NewPackage {
    /// A bits package for `app`.
    pub fn bits(app: AppGuid) -> Self {
        Self {
            type_: PackageType::Bits,
            relationships: PackageRelationships {
                app: ToOne::to(app),
            },
            data: None,
        }
    }

    /// A docker package for `app`.
    pub fn docker(
        app: AppGuid,
        image: impl Into<String>,
        username: Option<String>,
        password: Option<SecretString>,
    ) -> Self {
        Self {
            type_: PackageType::Docker,
            relationships: PackageRelationships {
                app: ToOne::to(app),
            },
            data: Some(DockerData {
                image: image.into(),
                username,
                password,
            }),
        }
    }
}

impl Client {
    /// `POST /v3/packages`.
    pub async fn create_package(&self, package: &NewPackage) -> Result<Package, Error> {
        self.send_json(Method::POST, self.url("/v3/packages")?, package)
            .await
    }

    /// `GET /v3/packages?app_guids=..&order_by=-created_at`: the app's packages, newest first
    /// (to find a package whose create answer was lost).
    pub async fn list_app_packages(&self, app: &AppGuid) -> Result<Vec<Package>, Error> {
        self.list_all(
            "/v3/packages",
            &[
                ("app_guids", app.to_string()),
                ("order_by", "-created_at".to_owned()),
            ],
        )
        .await
    }

    /// `GET /v3/packages/:guid`.
    pub async fn get_package(&self, guid: &PackageGuid) -> Result<Package, Error> {
        self.get_json(self.url(&format!("/v3/packages/{guid}"))?)
            .await
    }

    /// `POST /v3/packages/:guid/upload` (multipart): `resources` = the matched resources (`[]` if
    /// none), `bits` = the zip of unmatched files, omitted when `zip` is `None`. The zip is
    /// streamed from disk; `progress(sent, total)` reports bytes of the zip sent. Not retried
    /// (except once after a token refresh, rebuilt from the file).
    pub async fn upload_package_bits(
        &self,
        guid: &PackageGuid,
        resources: &[MatchedResource],
        zip: Option<&Path>,
        progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<Package, Error> {
        let url = self.url(&format!("/v3/packages/{guid}/upload"))?;
        let resources_json = serde_json::to_vec(resources)
            .map_err(|e| Error::Config(format!("could not encode resources: {e}")))?;
        let upload = Upload {
            resources_json,
            zip,
            progress: Arc::new(progress),
        };
        self.send(Method::POST, url, Body::Upload(&upload))
            .await?
            .json()
    }

    /// Polls the package until `READY` (returned); `FAILED`/`EXPIRED` → [`Error::PackageFailed`].
    pub async fn wait_for_package_ready(
        &self,
        guid: &PackageGuid,
        opts: PollOptions,
    ) -> Result<Package, Error> {
        let package = poll_until(opts, &format!("package {guid} to be ready"), || async {
            let p = self.get_package(guid).await?;
            Ok(matches!(
                p.state,
                PackageState::Ready | PackageState::Failed | PackageState::Expired
            )
            .then_some(p))
        })
        .await?;
        match package.state {
            PackageState::Ready => Ok(package),
            state => Err(Error::PackageFailed {
                package: package.guid,
                state: serde_json::to_value(state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("{state:?}")),
                error: package.data.error,
            }),
        }
    }
}
