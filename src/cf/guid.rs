//! GUID newtypes: one type per kind of resource, so that a droplet GUID cannot be passed where an
//! app GUID is expected.
//!
//! Depends on: serde. Must not: validate the GUID format (Cloud Controller owns it).

macro_rules! guid_type {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a GUID string as given by Cloud Controller.
            pub fn new(guid: impl Into<String>) -> Self {
                Self(guid.into())
            }

            /// The GUID as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )*};
}

guid_type!(
    /// The GUID of an app.
    AppGuid,
    /// The GUID of a space.
    SpaceGuid,
    /// The GUID of an organization.
    OrganizationGuid,
    /// The GUID of a package.
    PackageGuid,
    /// The GUID of a build.
    BuildGuid,
    /// The GUID of a droplet.
    DropletGuid,
    /// The GUID of a process.
    ProcessGuid,
    /// The GUID of a domain.
    DomainGuid,
    /// The GUID of a route.
    RouteGuid,
    /// The GUID of a route destination.
    DestinationGuid,
    /// The GUID of an asynchronous job.
    JobGuid,
    /// The GUID of a service instance.
    ServiceInstanceGuid,
    /// The GUID of a service credential binding.
    ServiceCredentialBindingGuid,
    /// The GUID of a deployment.
    DeploymentGuid,
    /// The GUID of an app revision.
    RevisionGuid,
    /// The GUID of a router group (TCP domains).
    RouterGroupGuid,
    /// The GUID of a service plan.
    ServicePlanGuid,
    /// The GUID of a space quota.
    SpaceQuotaGuid,
    /// The GUID of an organization quota.
    OrganizationQuotaGuid,
    /// The GUID of a task (a one-off process run from an app's droplet).
    TaskGuid,
);
