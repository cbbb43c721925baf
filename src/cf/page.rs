//! `Page<T>`: one page of a Cloud Controller list response.
//!
//! List calls of [`crate::cf::Client`] return every resource: they request `per_page=5000` and
//! follow `pagination.next.href` (an absolute URL) until it is `null`. Responses without a
//! `pagination` key (process stats) are a single page.
//!
//! Depends on: serde. Must not: fetch anything itself.

use super::nullable::null_as_default;
use serde::{Deserialize, Serialize};

/// A link object: `{"href": "...", "method": "POST"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The absolute URL.
    pub href: String,
    /// The HTTP method, for action links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// The `pagination` object of a list response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    /// Total number of results across pages.
    #[serde(default)]
    pub total_results: Option<u64>,
    /// Total number of pages.
    #[serde(default)]
    pub total_pages: Option<u64>,
    /// The next page; `None` on the last page.
    #[serde(default)]
    pub next: Option<Link>,
}

/// One page of resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// A `default` field would otherwise make serde require `T: Default`.
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Page<T> {
    /// Paging information (absent for stats).
    #[serde(default)]
    pub pagination: Option<Pagination>,
    /// The resources on this page.
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: Vec<T>,
    /// The related resources asked for with `include=` (`{"domains": [...]}`), by kind.
    #[serde(default, deserialize_with = "null_as_default")]
    pub included: serde_json::Map<String, serde_json::Value>,
}
