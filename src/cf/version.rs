//! Cloud Controller API versions and the table of minimum versions of the features this client
//! uses, so that a missing feature is reported before anything changes.
//!
//! Depends on: nothing else in `cf`. Must not: fetch anything (discovery does).

use std::fmt;
use std::str::FromStr;

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
}
