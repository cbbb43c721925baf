//! How the request's [`Strategy`] maps onto a Cloud Controller deployment: rolling and canary
//! are in-place deployments (same app GUID), blue-green and auto are not (auto is resolved
//! before planning).
//!
//! Depends on: deploy::api (DeploymentStrategy), deploy::request (Strategy). Must not: call the
//! API (pure).

use super::api::DeploymentStrategy;
use super::request::{DeployRequest, Strategy};

/// The deployment strategy of a rolling or canary request (`None` for blue-green).
pub(crate) fn deployment_strategy(s: Strategy) -> Option<DeploymentStrategy> {
    match s {
        Strategy::BlueGreen | Strategy::Auto => None,
        Strategy::Rolling => Some(DeploymentStrategy::Rolling),
        Strategy::Canary => Some(DeploymentStrategy::Canary),
    }
}

/// `req` as a rolling or canary request.
pub(crate) fn in_place_request(req: &DeployRequest, strategy: DeploymentStrategy) -> DeployRequest {
    DeployRequest {
        strategy: match strategy {
            DeploymentStrategy::Rolling => Strategy::Rolling,
            DeploymentStrategy::Canary => Strategy::Canary,
        },
        ..req.clone()
    }
}
