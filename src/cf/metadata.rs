//! Labels and annotations (`metadata`) of resources, and the calls that change them.
//!
//! Cloud Controller merges a metadata PATCH: keys not mentioned are kept, a `null` value deletes
//! a key. The deploy layer labels its candidate apps so leftovers can be found by label, never by
//! name alone (see [`crate::cf::AppQuery::label_selector`]).
//!
//! Depends on: serde. Must not: interpret label values.

use std::collections::BTreeMap;

use super::nullable::map_without_nulls;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::apps::App;
use super::guid::AppGuid;
use super::{Client, Error};

/// `metadata` of a resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Labels (selectable with `label_selector`).
    #[serde(default, deserialize_with = "map_without_nulls")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, deserialize_with = "map_without_nulls")]
    pub annotations: BTreeMap<String, String>,
}

/// A metadata change: `Some(v)` sets a key, `None` deletes it, absent keys are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MetadataUpdate {
    /// Label changes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Option<String>>,
    /// Annotation changes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, Option<String>>,
}

impl MetadataUpdate {
    /// Adds `key=value` to the labels to set.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), Some(value.into()));
        self
    }

    /// Adds a label to delete.
    pub fn remove_label(mut self, key: impl Into<String>) -> Self {
        self.labels.insert(key.into(), None);
        self
    }

    /// Adds `key=value` to the annotations to set.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), Some(value.into()));
        self
    }

    /// Adds an annotation to delete.
    pub fn remove_annotation(mut self, key: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), None);
        self
    }
}

#[derive(Serialize)]
struct MetadataBody<'a> {
    metadata: &'a MetadataUpdate,
}

impl Client {
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
}
