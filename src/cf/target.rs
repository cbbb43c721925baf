//! The target a deploy runs against, as the cf CLI knows it.

/// A resource known by both name and GUID (org, space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedGuid {
    /// The resource's name.
    pub name: String,
    /// The resource's GUID.
    pub guid: String,
}

/// Endpoint, org, space and user, gathered before anything is done (plugin RPC or the
/// standalone config file). The token is not part of it: see [`crate::cf::TokenProvider`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The API endpoint, e.g. `https://api.example.com` (no trailing slash).
    pub api_endpoint: String,
    /// Skip TLS certificate validation (only when the cf CLI target says so).
    pub skip_ssl_validation: bool,
    /// The targeted org, if any.
    pub org: Option<NamedGuid>,
    /// The targeted space, if any.
    pub space: Option<NamedGuid>,
    /// The logged-in user's name, for messages.
    pub user: Option<String>,
}
