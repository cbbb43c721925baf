//! Shapes shared by many resources: to-one relationships (`{"data":{"guid":..}}`) and GUID
//! references (`{"guid":..}`).
//!
//! Depends on: serde. Must not: hold resource-specific fields.

use serde::{Deserialize, Serialize};

/// `{"guid": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GuidRef<G> {
    /// The referenced GUID.
    pub guid: G,
}

impl<G> GuidRef<G> {
    /// A reference to `guid`.
    pub fn new(guid: G) -> Self {
        Self { guid }
    }
}

/// A to-one relationship: `{"data": {"guid": "..."}}`, or `{"data": null}` when unset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToOne<G> {
    /// The related resource, if any.
    #[serde(default = "none")]
    pub data: Option<GuidRef<G>>,
}

fn none<T>() -> Option<T> {
    None
}

impl<G> ToOne<G> {
    /// A relationship to `guid`.
    pub fn to(guid: G) -> Self {
        Self {
            data: Some(GuidRef::new(guid)),
        }
    }

    /// The related GUID, if set.
    pub fn guid(&self) -> Option<&G> {
        self.data.as_ref().map(|d| &d.guid)
    }
}

impl<G> Default for ToOne<G> {
    fn default() -> Self {
        Self { data: None }
    }
}
