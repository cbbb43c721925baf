//! Apps: lookup, update/rename, delete (job), start/stop/restart, environment variables and
//! app features.
//!
//! Names are case-insensitive on the server; "not found" for a name lookup is an empty list, so
//! [`Client::find_app`] returns `None` rather than an error. The current droplet calls live in
//! [`crate::cf::droplets`]; [`Client::update_app_metadata`] changes labels and annotations
//! ([`crate::cf::MetadataUpdate`]).
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client, space: cf_zero_downtime::cf::SpaceGuid)
//! # -> Result<(), cf_zero_downtime::cf::Error> {
//! use std::collections::BTreeMap;
//! use cf_zero_downtime::cf::{AppQuery, PollOptions};
//!
//! let apps = client
//!     .list_apps(&AppQuery::default().names(["web", "worker"]).space_guids([space.clone()]))
//!     .await?;
//! let web = client.find_app(&space, "web").await?.expect("exists");
//! client.rename_app(&web.guid, "web-venerable").await?;
//! let env = client.get_app_environment_variables(&web.guid).await?;
//! let mut patch = BTreeMap::new();
//! patch.insert("DEBUG".to_owned(), Some("false".to_owned()));
//! patch.insert("OLD".to_owned(), None); // deletes OLD
//! client.update_app_environment_variables(&web.guid, &patch).await?;
//! let ssh = client.get_app_feature(&web.guid, "ssh").await?;
//! client.update_app_feature(&web.guid, "ssh", !ssh.enabled).await?;
//! client.stop_app(&web.guid).await?;
//! let job = client.delete_app(&web.guid).await?;
//! client.wait_for_job(&job, PollOptions::default()).await?;
//! # let _ = (apps, env); Ok(()) }
//! ```
//!
//! Depends on: the client core. Must not: know about manifests.

use std::collections::BTreeMap;

use super::nullable::null_as_default;
use reqwest::Method;
use serde::{Deserialize, Deserializer, Serialize};

use super::guid::{AppGuid, DropletGuid, JobGuid, SpaceGuid};
use super::metadata::{Metadata, MetadataUpdate};
use super::page::Page;
use super::relationships::ToOne;
use super::request::{Body, join_filter};
use super::{Client, Error, Idempotency};

/// The desired state of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppState {
    Started,
    Stopped,
    /// A state this client does not know.
    #[serde(other)]
    Unknown,
}

/// The kind of lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleType {
    /// Buildpacks.
    Buildpack,
    /// A docker image.
    Docker,
    /// Cloud native buildpacks.
    Cnb,
    /// A type this client does not know.
    #[serde(other)]
    Unknown,
}

/// An app's lifecycle: `{"type": "buildpack", "data": {"buildpacks": [..], "stack": ".."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    #[serde(rename = "type")]
    pub type_: LifecycleType,
    /// Type-specific data (empty for docker).
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: LifecycleData,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleData {
    /// Buildpacks; `None` (sent as `null`) means auto-detect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildpacks: Option<Vec<String>>,
    /// The stack, e.g. `cflinuxfs4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

/// `relationships` of an app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRelationships {
    #[serde(default, deserialize_with = "null_as_default")]
    pub space: ToOne<SpaceGuid>,
    /// The current droplet (`data: null` when none is assigned).
    #[serde(default, deserialize_with = "null_as_default")]
    pub current_droplet: ToOne<DropletGuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Its GUID, as in `/v3/apps/:guid`.
    pub guid: AppGuid,
    pub name: String,
    /// The desired state.
    pub state: AppState,
    #[serde(default)]
    pub lifecycle: Option<Lifecycle>,
    /// Space and current droplet.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationships: AppRelationships,
    /// Labels and annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Metadata,
    /// Creation time (RFC 3339).
    #[serde(default, deserialize_with = "null_as_default")]
    pub created_at: String,
    /// Last update time (RFC 3339).
    #[serde(default, deserialize_with = "null_as_default")]
    pub updated_at: String,
}

impl App {
    /// The space the app lives in.
    pub fn space_guid(&self) -> Option<&SpaceGuid> {
        self.relationships.space.guid()
    }

    /// The current droplet, if one is assigned.
    pub fn current_droplet_guid(&self) -> Option<&DropletGuid> {
        self.relationships.current_droplet.guid()
    }
}

/// Filters of `GET /v3/apps`. Empty lists are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppQuery {
    /// `names` (case-insensitive on the server).
    pub names: Vec<String>,
    pub space_guids: Vec<SpaceGuid>,
    pub guids: Vec<AppGuid>,
    /// `label_selector`, e.g. `cf-zdt/role=candidate`.
    pub label_selector: Option<String>,
}

impl AppQuery {
    /// Filter by names.
    pub fn names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Filter by spaces.
    pub fn space_guids(mut self, spaces: impl IntoIterator<Item = SpaceGuid>) -> Self {
        self.space_guids = spaces.into_iter().collect();
        self
    }

    /// Filter by GUIDs.
    pub fn guids(mut self, guids: impl IntoIterator<Item = AppGuid>) -> Self {
        self.guids = guids.into_iter().collect();
        self
    }

    /// Filter by a label selector.
    pub fn label_selector(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    pub(crate) fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if !self.names.is_empty() {
            q.push(("names", join_filter(&self.names)));
        }
        if !self.space_guids.is_empty() {
            q.push(("space_guids", join_filter(&self.space_guids)));
        }
        if !self.guids.is_empty() {
            q.push(("guids", join_filter(&self.guids)));
        }
        if let Some(sel) = &self.label_selector {
            q.push(("label_selector", sel.clone()));
        }
        q
    }
}

/// Body of `POST /v3/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewApp {
    /// Name (unique per space, case-insensitive).
    pub name: String,
    /// `{"space": {"data": {"guid": ..}}}`.
    pub relationships: NewAppRelationships,
    /// Lifecycle; the server default (buildpack) when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// Labels and annotations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// Relationships of a new app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewAppRelationships {
    pub space: ToOne<SpaceGuid>,
}

impl NewApp {
    /// A new app named `name` in `space`.
    pub fn new(name: impl Into<String>, space: SpaceGuid) -> Self {
        Self {
            name: name.into(),
            relationships: NewAppRelationships {
                space: ToOne::to(space),
            },
            lifecycle: None,
            metadata: None,
        }
    }
}

/// Body of `PATCH /v3/apps/:guid`; `None` fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AppUpdate {
    /// New name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New lifecycle (the type cannot change; `data` is required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// Labels and annotations to set or delete, applied with the rest of the update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataUpdate>,
}

/// An app feature (`ssh`, `revisions`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppFeature {
    /// The feature's name.
    pub name: String,
    /// Whether it is on.
    pub enabled: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
}

#[derive(Deserialize)]
pub(super) struct EnvVars {
    #[serde(default, deserialize_with = "string_map")]
    var: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct EnvVarsPatch<'a> {
    var: &'a BTreeMap<String, Option<String>>,
}

#[derive(Serialize)]
struct MetadataBody<'a> {
    metadata: &'a MetadataUpdate,
}

/// Environment variable values are strings, but JSON numbers/booleans are accepted and kept in
/// their JSON text form; `null` values are dropped.
fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = Option::<BTreeMap<String, serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some((k, s)),
            other => Some((k, other.to_string())),
        })
        .collect())
}

impl Client {
    /// `GET /v3/apps` with filters, every page.
    pub async fn list_apps(&self, query: &AppQuery) -> Result<Vec<App>, Error> {
        self.list_all("/v3/apps", &query.to_query()).await
    }

    /// The app named `name` in `space` (`GET /v3/apps?names=..&space_guids=..`).
    pub async fn find_app(&self, space: &SpaceGuid, name: &str) -> Result<Option<App>, Error> {
        let q = AppQuery::default()
            .names([name])
            .space_guids([space.clone()]);
        // The server matches case-insensitively; prefer the exact spelling if several match.
        let apps = self.list_apps(&q).await?;
        Ok(apps
            .iter()
            .find(|a| a.name == name)
            .cloned()
            .or_else(|| apps.into_iter().next()))
    }

    /// `GET /v3/apps/:guid`.
    ///
    /// # Errors
    /// `CF-ResourceNotFound` ([`Error::is_not_found`]) when the app does not exist.
    pub async fn get_app(&self, guid: &AppGuid) -> Result<App, Error> {
        self.get_json(self.url(&format!("/v3/apps/{guid}"))?).await
    }

    /// `POST /v3/apps` (push does not need it: `apply_manifest` creates apps).
    pub async fn create_app(&self, app: &NewApp) -> Result<App, Error> {
        self.send_json(Method::POST, self.url("/v3/apps")?, app)
            .await
    }

    /// `PATCH /v3/apps/:guid`.
    pub async fn update_app(&self, guid: &AppGuid, update: &AppUpdate) -> Result<App, Error> {
        self.send_json(
            Method::PATCH,
            self.url(&format!("/v3/apps/{guid}"))?,
            update,
        )
        .await
    }

    /// `PATCH /v3/apps/:guid {"name": new_name}`.
    pub async fn rename_app(&self, guid: &AppGuid, new_name: &str) -> Result<App, Error> {
        let update = AppUpdate {
            name: Some(new_name.to_owned()),
            ..AppUpdate::default()
        };
        self.update_app(guid, &update).await
    }

    /// `PATCH /v3/apps/:guid` with only `metadata`: sets or deletes labels and annotations.
    ///
    /// ```no_run
    /// # async fn f(client: cf_zero_downtime::cf::Client, app: cf_zero_downtime::cf::AppGuid)
    /// # -> Result<(), cf_zero_downtime::cf::Error> {
    /// use cf_zero_downtime::cf::MetadataUpdate;
    /// let update = MetadataUpdate::default().label("cf-zdt/role", "candidate");
    /// client.update_app_metadata(&app, &update).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update_app_metadata(
        &self,
        app: &AppGuid,
        update: &MetadataUpdate,
    ) -> Result<App, Error> {
        let url = self.url(&format!("/v3/apps/{app}"))?;
        self.send_json(Method::PATCH, url, &MetadataBody { metadata: update })
            .await
    }

    /// `DELETE /v3/apps/:guid` → the deletion job (poll it with [`Client::wait_for_job`]).
    pub async fn delete_app(&self, guid: &AppGuid) -> Result<JobGuid, Error> {
        let url = self.url(&format!("/v3/apps/{guid}"))?;
        self.delete_for_job(url).await
    }

    async fn app_action(
        &self,
        guid: &AppGuid,
        action: &str,
        idempotency: Idempotency,
    ) -> Result<App, Error> {
        let url = self.url(&format!("/v3/apps/{guid}/actions/{action}"))?;
        self.send_as(Method::POST, url, Body::Empty, idempotency)
            .await?
            .json()
    }

    /// `POST /v3/apps/:guid/actions/start`. Idempotent (a move to `STARTED`): retried on
    /// transient failures.
    pub async fn start_app(&self, guid: &AppGuid) -> Result<App, Error> {
        self.app_action(guid, "start", Idempotency::Idempotent)
            .await
    }

    /// `POST /v3/apps/:guid/actions/stop`. Idempotent (a move to `STOPPED`): retried on
    /// transient failures.
    pub async fn stop_app(&self, guid: &AppGuid) -> Result<App, Error> {
        self.app_action(guid, "stop", Idempotency::Idempotent).await
    }

    /// `POST /v3/apps/:guid/actions/restart` (what `cf push` uses to start). Not retried after
    /// the server may have seen it: a second call restarts the instances again.
    pub async fn restart_app(&self, guid: &AppGuid) -> Result<App, Error> {
        self.app_action(guid, "restart", Idempotency::NotIdempotent)
            .await
    }

    /// `GET /v3/apps/:guid/environment_variables` → the user-set variables.
    pub async fn get_app_environment_variables(
        &self,
        guid: &AppGuid,
    ) -> Result<BTreeMap<String, String>, Error> {
        let url = self.url(&format!("/v3/apps/{guid}/environment_variables"))?;
        Ok(self.get_json::<EnvVars>(url).await?.var)
    }

    /// `PATCH /v3/apps/:guid/environment_variables` (merge; `None` deletes) → the new set.
    pub async fn update_app_environment_variables(
        &self,
        guid: &AppGuid,
        vars: &BTreeMap<String, Option<String>>,
    ) -> Result<BTreeMap<String, String>, Error> {
        let url = self.url(&format!("/v3/apps/{guid}/environment_variables"))?;
        let out: EnvVars = self
            .send_json(Method::PATCH, url, &EnvVarsPatch { var: vars })
            .await?;
        Ok(out.var)
    }

    /// `GET /v3/apps/:guid/features` (a short fixed list: one request, no paging parameters).
    pub async fn list_app_features(&self, guid: &AppGuid) -> Result<Vec<AppFeature>, Error> {
        let url = self.url(&format!("/v3/apps/{guid}/features"))?;
        Ok(self.get_json::<Page<AppFeature>>(url).await?.resources)
    }

    /// `GET /v3/apps/:guid/features/:name` (e.g. `ssh`).
    pub async fn get_app_feature(&self, guid: &AppGuid, name: &str) -> Result<AppFeature, Error> {
        self.get_json(self.url(&format!("/v3/apps/{guid}/features/{name}"))?)
            .await
    }

    /// `PATCH /v3/apps/:guid/features/:name {"enabled": ..}`.
    pub async fn update_app_feature(
        &self,
        guid: &AppGuid,
        name: &str,
        enabled: bool,
    ) -> Result<AppFeature, Error> {
        let url = self.url(&format!("/v3/apps/{guid}/features/{name}"))?;
        self.send_json(
            Method::PATCH,
            url,
            &serde_json::json!({ "enabled": enabled }),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_query_sends_only_set_filters() {
        assert!(AppQuery::default().to_query().is_empty());
        let q = AppQuery::default()
            .names(["a,b", "c"])
            .guids([AppGuid::new("g1"), AppGuid::new("g2")])
            .label_selector("x=y");
        assert_eq!(
            q.to_query(),
            vec![
                ("names", "a%2Cb,c".to_owned()),
                ("guids", "g1,g2".to_owned()),
                ("label_selector", "x=y".to_owned()),
            ]
        );
    }

    #[test]
    fn new_app_and_rename_bodies() {
        let body = serde_json::to_value(NewApp::new("web", SpaceGuid::new("s"))).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"name": "web", "relationships": {"space": {"data": {"guid": "s"}}}})
        );
        let rename = AppUpdate {
            name: Some("x".into()),
            ..AppUpdate::default()
        };
        assert_eq!(
            serde_json::to_value(rename).unwrap(),
            serde_json::json!({"name": "x"})
        );
        let labelled = AppUpdate {
            name: Some("x".into()),
            metadata: Some(
                MetadataUpdate::default()
                    .remove_label("role")
                    .annotation("a", "b"),
            ),
            ..AppUpdate::default()
        };
        assert_eq!(
            serde_json::to_value(labelled).unwrap(),
            serde_json::json!({"name": "x", "metadata": {"labels": {"role": null}, "annotations": {"a": "b"}}})
        );
    }
}
