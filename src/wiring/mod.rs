//! Wiring: the one place that joins the layers. The deploy layer decides and knows only its
//! [`CfApi`](crate::deploy::CfApi) seam; this module gives it the real Cloud Controller
//! ([`adapter::CfBackend`] over `cf::Client` and `package`), turns manifest apps into
//! [`AppSpec`](crate::deploy::AppSpec)s ([`from_manifest`]), and runs a command from flags to
//! outcome ([`push`]: manifest, flags, bits, client, discovery, then `deploy::run`).
//!
//! Depends on: cli, manifest, package, cf, deploy. Must not: print (events go to a
//! [`Reporter`](crate::deploy::Reporter)).

pub mod adapter;
pub mod from_manifest;
pub mod push;
pub mod rollback;

use std::sync::Arc;
use std::time::Duration;

use crate::cf;
use crate::deploy::DeployRequest;

use adapter::CfBackend;

/// What stops a command before its first question to Cloud Controller is answered.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `CF_TRACE` names a file that cannot be opened.
    #[error("CF_TRACE: cannot open the trace file")]
    Trace(#[source] std::io::Error),
    /// The HTTP client cannot be built (TLS settings, proxy variables).
    #[error("cannot set up the cloud controller client")]
    Client(#[source] cf::Error),
    /// API discovery (`GET /`) failed.
    #[error("cannot reach the cloud controller at {endpoint}")]
    Discovery {
        /// The target's API endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: cf::Error,
    },
}

/// A client for the target (tracing as `CF_TRACE` says) that has read the API's root
/// document: the first request every command makes.
pub(crate) async fn connect(
    target: &cf::Target,
    token: &Arc<dyn cf::TokenProvider>,
) -> Result<cf::Client, ConnectError> {
    let mut config = cf::ClientConfig::for_target(target, Arc::clone(token));
    config.trace = cf::Trace::from_env().map_err(ConnectError::Trace)?;
    let client = cf::Client::new(config).map_err(ConnectError::Client)?;
    client
        .discover()
        .await
        .map_err(|source| ConnectError::Discovery {
            endpoint: target.api_endpoint.clone(),
            source,
        })?;
    Ok(client)
}

/// The deploy layer's backend for `request`'s space: internal waits poll every
/// `poll_interval` and are bounded by the request's timeout (at least a minute).
pub(crate) fn backend(
    client: cf::Client,
    target: &cf::Target,
    request: &DeployRequest,
    poll_interval: Duration,
) -> CfBackend {
    CfBackend::new(
        client,
        request.space_guid.clone(),
        target
            .org
            .as_ref()
            .map(|o| cf::OrganizationGuid::new(o.guid.as_str())),
    )
    .with_poll(poll_interval, request.timeout.max(Duration::from_secs(60)))
}
