//! Resource matching: `POST /v3/resource_matches` asks which files Cloud Controller already has
//! in its cache, so only the others are zipped and uploaded.
//!
//! One call per invocation; splitting into chunks of 5000 and skipping empty files is the
//! package layer's job. `mode` is the octal permission string without a leading zero (`"644"`),
//! as the cf CLI sends it and the server echoes it.
//!
//! ```no_run
//! # async fn f(client: cf_zero_downtime::cf::Client) -> Result<(), cf_zero_downtime::cf::Error> {
//! use cf_zero_downtime::cf::Resource;
//! let local = vec![Resource::new("app.js", "a9993e364706816aba3e25717850c26c9cd0d89d", 1234, 0o644)];
//! let cached = client.match_resources(&local).await?;
//! # let _ = cached; Ok(()) }
//! ```
//!
//! Depends on: the client core. Must not: read files.

use super::nullable::null_as_default;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{Client, Error, Idempotency};

/// `{"value": "<sha1 hex>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checksum {
    /// Lowercase hex SHA-1 of the content.
    pub value: String,
}

/// A file described by checksum, size, path and mode (the v3 resource format).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    /// SHA-1 checksum.
    pub checksum: Checksum,
    pub size_in_bytes: u64,
    /// Path relative to the app root, `/`-separated.
    pub path: String,
    /// Octal permission string without a leading zero, e.g. `"644"`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub mode: String,
}

/// A resource the server reported as already cached (same shape as [`Resource`]).
pub type MatchedResource = Resource;

impl Resource {
    /// A resource from its parts; `mode` is the permission bits (e.g. `0o644`).
    pub fn new(path: impl Into<String>, sha1: impl Into<String>, size: u64, mode: u32) -> Self {
        Self {
            checksum: Checksum { value: sha1.into() },
            size_in_bytes: size,
            path: path.into(),
            mode: format!("{mode:o}"),
        }
    }

    /// The mode parsed from its octal string, if valid.
    pub fn mode_bits(&self) -> Option<u32> {
        u32::from_str_radix(&self.mode, 8).ok()
    }
}

#[derive(Serialize, Deserialize)]
// A `default` field would otherwise make serde require `T: Default`.
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub(super) struct Resources<T> {
    #[serde(default, deserialize_with = "null_as_default")]
    resources: Vec<T>,
}

impl Client {
    /// `POST /v3/resource_matches` → the subset of `resources` already in the server's cache.
    pub async fn match_resources(
        &self,
        resources: &[Resource],
    ) -> Result<Vec<MatchedResource>, Error> {
        let url = self.url("/v3/resource_matches")?;
        let out: Resources<Resource> = self
            .send_json_as(
                Method::POST,
                url,
                &Resources {
                    resources: resources.to_vec(),
                },
                // Read-only: safe to resend.
                Idempotency::Idempotent,
            )
            .await?;
        Ok(out.resources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_is_octal_without_leading_zero() {
        let r = Resource::new("a", "s", 1, 0o755);
        assert_eq!(r.mode, "755");
        assert_eq!(r.mode_bits(), Some(0o755));
    }
}
