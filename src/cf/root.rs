//! The document of `GET /`: the links to the platform's APIs and, in the v3 link's `meta`, the
//! API version. The client keeps the last one read (see `Client::discover`).
//!
//! Depends on: serde, [`super::version`]. Must not: fetch anything (discovery does).

use serde::{Deserialize, Serialize};

use super::nullable::null_as_default;
use super::version::ApiVersion;

/// A link: `{"href": "..."}` with optional `meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootLink {
    pub href: String,
    /// `meta.version` for the API links.
    #[serde(default)]
    pub meta: Option<RootLinkMeta>,
}

/// The `meta` of a root link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootLinkMeta {
    /// The API version, e.g. `3.228.0`.
    #[serde(default)]
    pub version: Option<String>,
}

/// The links of `GET /` that this client uses; unknown links are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootLinks {
    /// The v3 API (`meta.version` is the API version).
    #[serde(default)]
    pub cloud_controller_v3: Option<RootLink>,
    /// The login server (token endpoint host).
    #[serde(default)]
    pub login: Option<RootLink>,
    #[serde(default)]
    pub uaa: Option<RootLink>,
    /// The networking v1 API (container-to-container policies).
    #[serde(default)]
    pub network_policy_v1: Option<RootLink>,
    #[serde(default)]
    pub log_cache: Option<RootLink>,
    /// The routing API.
    #[serde(default)]
    pub routing: Option<RootLink>,
}

/// The document of `GET /`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootInfo {
    #[serde(default, deserialize_with = "null_as_default")]
    pub links: RootLinks,
}

impl RootInfo {
    /// The v3 API version, when the root document carries a parseable one.
    pub fn api_version(&self) -> Option<ApiVersion> {
        self.links
            .cloud_controller_v3
            .as_ref()?
            .meta
            .as_ref()?
            .version
            .as_deref()?
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_info_reads_the_v3_version() {
        let root: RootInfo = serde_json::from_str(
            r#"{"links":{"cloud_controller_v3":{"href":"https://api/v3","meta":{"version":"3.228.0"}},
                "credhub":null,"app_ssh":{"href":"ssh:2222","meta":{"oauth_client":"ssh-proxy"}}}}"#,
        )
        .unwrap();
        assert_eq!(root.api_version(), Some(ApiVersion::new(3, 228, 0)));
    }
}
