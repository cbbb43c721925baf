//! Discovery: `GET /` (links and the v3 API version) and `GET /v3/info`, plus the table of
//! minimum API versions used to report a missing feature before anything changes.
//!
//! The version comes from `links.cloud_controller_v3.meta.version` of `GET /`; `/v3/info` carries
//! no API version (its `version` is an operator-set integer).
//!
//! Depends on: serde. Must not: guess a version when discovery has not run.

use std::fmt;
use std::str::FromStr;

use super::nullable::null_as_default;
use serde::{Deserialize, Serialize};

use super::Error;
use super::client::Client;

/// A `major.minor.patch` Cloud Controller API version, compared numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// Major version (3 for the v3 API).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl ApiVersion {
    /// A version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A version string that is not `major.minor[.patch]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an API version (expected major.minor.patch)")]
pub struct ParseVersionError(String);

impl FromStr for ApiVersion {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseVersionError(s.to_owned());
        // Tolerate pre-release/build suffixes such as `3.99.0-rc1`.
        let core = s.trim().split(['-', '+']).next().unwrap_or_default();
        let mut parts = core.split('.');
        let mut next = |required: bool| -> Result<u32, ParseVersionError> {
            match parts.next() {
                Some(p) => p.parse().map_err(|_| err()),
                None if required => Err(err()),
                None => Ok(0),
            }
        };
        let v = ApiVersion::new(next(true)?, next(true)?, next(false)?);
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(v)
    }
}

/// A capability whose availability depends on the Cloud Controller API version.
///
/// Minimum versions follow the cf CLI's constants and the CC release that introduced each
/// feature (spec: cf-v3-api.md section 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// `POST /v3/spaces/:guid/actions/apply_manifest` (3.66.0).
    ApplyManifest,
    /// `POST /v3/resource_matches` (3.69.0).
    ResourceMatches,
    /// `GET /v3/organizations/:guid/domains/default` (3.71.0).
    DefaultDomain,
    /// Route destination endpoints (3.73.0).
    RouteDestinations,
    /// Deployments with `strategy` (rolling), `status.value`/`status.reason` (3.78.0).
    DeploymentStrategy,
    /// `manifest_diff` (3.87.0).
    ManifestDiff,
    /// `/v3/service_credential_bindings` (3.87.0).
    ServiceCredentialBindings,
    /// Readiness health checks (3.145.0).
    ReadinessHealthChecks,
    /// `routable` in process stats (3.151.0).
    RoutableStats,
    /// `strategy: canary` and the `continue` action (3.173.0).
    CanaryDeployments,
    /// Deployment `options.max_in_flight` (3.173.0).
    MaxInFlight,
    /// Deployment `options.canary.steps` (3.189.0).
    CanarySteps,
    /// Deployment `options.web_instances` (3.190.0).
    DeploymentWebInstances,
    /// Deployment `options.memory_in_mb` / `disk_in_mb` / `log_rate_limit_in_bytes_per_second` (3.191.0).
    DeploymentResourceOptions,
    /// Per-route `options` (load balancing) (3.183.0).
    RouteOptions,
    /// Manifest `features:` (3.196.0).
    ManifestFeatures,
}

impl Feature {
    /// The minimum API version that has this feature.
    pub const fn min_version(self) -> ApiVersion {
        match self {
            Feature::ApplyManifest => ApiVersion::new(3, 66, 0),
            Feature::ResourceMatches => ApiVersion::new(3, 69, 0),
            Feature::DefaultDomain => ApiVersion::new(3, 71, 0),
            Feature::RouteDestinations => ApiVersion::new(3, 73, 0),
            Feature::DeploymentStrategy => ApiVersion::new(3, 78, 0),
            Feature::ManifestDiff | Feature::ServiceCredentialBindings => ApiVersion::new(3, 87, 0),
            // Introduced in 3.144.0 and bumped to 3.145.0 the next day: require the later one.
            Feature::ReadinessHealthChecks => ApiVersion::new(3, 145, 0),
            Feature::RoutableStats => ApiVersion::new(3, 151, 0),
            // The cf CLI checks neither up front: an older CC answers 422 "Unknown field(s):
            // 'options'" for max_in_flight, and (inferred in the spec, not read) "'canary' is
            // not a supported deployment strategy" for canary.
            Feature::CanaryDeployments | Feature::MaxInFlight => ApiVersion::new(3, 173, 0),
            Feature::RouteOptions => ApiVersion::new(3, 183, 0),
            Feature::CanarySteps => ApiVersion::new(3, 189, 0),
            Feature::DeploymentWebInstances => ApiVersion::new(3, 190, 0),
            Feature::DeploymentResourceOptions => ApiVersion::new(3, 191, 0),
            Feature::ManifestFeatures => ApiVersion::new(3, 196, 0),
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Feature::ApplyManifest => "apply_manifest",
            Feature::ResourceMatches => "resource matching",
            Feature::DefaultDomain => "the default domain endpoint",
            Feature::RouteDestinations => "route destinations",
            Feature::DeploymentStrategy => "rolling deployments",
            Feature::ManifestDiff => "manifest_diff",
            Feature::ServiceCredentialBindings => "service credential bindings",
            Feature::ReadinessHealthChecks => "readiness health checks",
            Feature::RoutableStats => "routable instance stats",
            Feature::CanaryDeployments => "canary deployments",
            Feature::MaxInFlight => "max_in_flight",
            Feature::CanarySteps => "canary instance steps",
            Feature::DeploymentWebInstances => "deployment web_instances",
            Feature::DeploymentResourceOptions => "deployment memory/disk/log-rate options",
            Feature::RouteOptions => "route options",
            Feature::ManifestFeatures => "manifest features",
        })
    }
}

/// A link: `{"href": "..."}` with optional `meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootLink {
    /// The URL.
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
    /// UAA.
    #[serde(default)]
    pub uaa: Option<RootLink>,
    /// The networking v1 API (container-to-container policies).
    #[serde(default)]
    pub network_policy_v1: Option<RootLink>,
    /// Log cache.
    #[serde(default)]
    pub log_cache: Option<RootLink>,
    /// The routing API.
    #[serde(default)]
    pub routing: Option<RootLink>,
}

/// The document of `GET /`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootInfo {
    /// Its links.
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

/// The document of `GET /v3/info` (the fields of interest; others are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Platform name, e.g. `Cloud Foundry`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Build identifier.
    #[serde(default, deserialize_with = "null_as_default")]
    pub build: String,
    /// Operator-set description.
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    /// Operator-set integer version (not the API version).
    #[serde(default)]
    pub version: Option<i64>,
    /// Rate limiting settings, when advertised.
    #[serde(default)]
    pub rate_limits: Option<RateLimits>,
}

/// `rate_limits` of `/v3/info`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    /// Whether rate limiting is on.
    #[serde(default, deserialize_with = "null_as_default")]
    pub enabled: bool,
    /// Requests per interval.
    #[serde(default)]
    pub general_limit: Option<u64>,
    /// Interval length in minutes.
    #[serde(default)]
    pub reset_interval_in_minutes: Option<u64>,
}

impl Client {
    /// Reads `GET /` (unauthenticated) and remembers the API version and the links, which
    /// [`Client::supports`], [`Client::require`] and the networking calls use.
    ///
    /// ```no_run
    /// # async fn f(client: cf_zero_downtime::cf::Client) -> Result<(), cf_zero_downtime::cf::Error> {
    /// use cf_zero_downtime::cf::Feature;
    /// let root = client.discover().await?;
    /// println!("API {:?}", root.api_version());
    /// client.require(Feature::CanaryDeployments)?; // fails before anything changes
    /// # Ok(()) }
    /// ```
    pub async fn discover(&self) -> Result<RootInfo, Error> {
        let url = self.url("/")?;
        let root: RootInfo = self.get_json_unauthenticated(url).await?;
        self.store_root(root.clone());
        Ok(root)
    }

    /// Reads `GET /v3/info`.
    pub async fn get_info(&self) -> Result<Info, Error> {
        let url = self.url("/v3/info")?;
        self.get_json_unauthenticated(url).await
    }

    /// The API version learnt by [`Client::discover`] (or set with [`Client::set_api_version`]).
    pub fn api_version(&self) -> Option<ApiVersion> {
        self.discovered().and_then(|d| d.version)
    }

    /// Whether the target has `feature`. Errors with [`Error::VersionUnknown`] before discovery.
    pub fn supports(&self, feature: Feature) -> Result<bool, Error> {
        let v = self.api_version().ok_or(Error::VersionUnknown)?;
        Ok(v >= feature.min_version())
    }

    /// Fails with [`Error::Unsupported`] when the target lacks `feature`.
    pub fn require(&self, feature: Feature) -> Result<(), Error> {
        let actual = self.api_version().ok_or(Error::VersionUnknown)?;
        let required = feature.min_version();
        if actual >= required {
            Ok(())
        } else {
            Err(Error::Unsupported {
                feature,
                required,
                actual,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_compare_numerically() {
        let a: ApiVersion = "3.99.0".parse().unwrap();
        let b: ApiVersion = "3.173.0".parse().unwrap();
        assert!(a < b);
        assert_eq!(
            "3.189".parse::<ApiVersion>().unwrap(),
            ApiVersion::new(3, 189, 0)
        );
        assert_eq!(
            "3.1.2-rc1".parse::<ApiVersion>().unwrap(),
            ApiVersion::new(3, 1, 2)
        );
        assert!("3".parse::<ApiVersion>().is_err());
        assert!("x.y.z".parse::<ApiVersion>().is_err());
        assert!("1.2.3.4".parse::<ApiVersion>().is_err());
    }

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
