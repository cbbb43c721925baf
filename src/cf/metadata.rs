//! Labels and annotations (`metadata`) of resources, and the change a metadata PATCH sends
//! (the apps file sends it: `Client::update_app_metadata`).
//!
//! Cloud Controller merges a metadata PATCH: keys not mentioned are kept, a `null` value deletes
//! a key. The deploy layer labels its candidate apps so leftovers can be found by label, never by
//! name alone (see `AppQuery::label_selector`).
//!
//! Depends on: serde. Must not: interpret label values.

use std::collections::BTreeMap;

use super::nullable::map_without_nulls;
use serde::{Deserialize, Serialize};

/// `metadata` of a resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Labels (selectable with `label_selector`).
    #[serde(default, deserialize_with = "map_without_nulls")]
    pub labels: BTreeMap<String, String>,
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
