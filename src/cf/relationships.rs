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

/// Reads a to-one relationship that may also be `null` as a whole (an empty one).
pub fn nullable_to_one<'de, D, G>(d: D) -> Result<ToOne<G>, D::Error>
where
    D: serde::Deserializer<'de>,
    G: Deserialize<'de>,
{
    Ok(Option::<ToOne<G>>::deserialize(d)?.unwrap_or_default())
}

/// Reads `{"guid": "..."}`, `{"guid": null}` or `null` as an optional reference. CC sends
/// `"previous_droplet": {"guid": null}` for a deployment of an app that had no droplet.
pub fn nullable_guid_ref<'de, D, G>(d: D) -> Result<Option<GuidRef<G>>, D::Error>
where
    D: serde::Deserializer<'de>,
    G: Deserialize<'de>,
{
    #[derive(Deserialize)]
    struct Raw<G> {
        guid: Option<G>,
    }
    let raw: Option<Raw<G>> = Option::deserialize(d)?;
    Ok(raw.and_then(|r| r.guid).map(GuidRef::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(default, deserialize_with = "nullable_guid_ref")]
        r: Option<GuidRef<String>>,
    }

    #[test]
    fn null_guid_reads_as_none() {
        let h: Holder = serde_json::from_str(r#"{"r": {"guid": null}}"#).unwrap();
        assert!(h.r.is_none());
        let h: Holder = serde_json::from_str(r#"{"r": null}"#).unwrap();
        assert!(h.r.is_none());
        let h: Holder = serde_json::from_str(r#"{}"#).unwrap();
        assert!(h.r.is_none());
        let h: Holder = serde_json::from_str(r#"{"r": {"guid": "g"}}"#).unwrap();
        assert_eq!(h.r.unwrap().guid, "g");
    }
}
