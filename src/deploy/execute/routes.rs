//! The route steps: create, map, unmap (the commit point is the last unmap), drain, delete;
//! and the network policies of the new app.

use super::*;
use crate::deploy::plan::PlanError;

impl<A: CfApi> Exec<'_, A> {
    /// Creates a route; a failed request that created it anyway records it, for the undo. A
    /// route that exists already (422 "Route already exists") is read and taken as it is, with
    /// no undo (the run did not create it), unless it is the `temporary` route and something
    /// is mapped to it: that is refused as the plan refuses a temporary route in use.
    pub(super) async fn create_route(
        &self,
        step: &Step,
        route: &RouteAddress,
        temporary: bool,
    ) -> Result<StepOutput, StepFailure> {
        let e = match self
            .api
            .create_route(&self.req.space_guid, &route.new_route())
            .await
        {
            Ok(r) => return Ok(StepOutput::Route(r)),
            Err(e) => e,
        };
        let found = self.api.find_route(&route.new_route()).await;
        if e.is_route_taken() {
            if let Ok(Some(state)) = found {
                if temporary && let Some(d) = state.destinations.first() {
                    return Err(Error::Plan(PlanError::TempRouteInUse {
                        app: step.app_label().to_string(),
                        route: route.url(),
                        guid: d.app_guid.clone(),
                    })
                    .into());
                }
                return Ok(StepOutput::ExistingRoute(state.route));
            }
            return Err(Self::api_err(step, e).into());
        }
        let partial = match found {
            Ok(Some(r)) => Some(StepOutput::Route(r.route)),
            _ => None,
        };
        Err(StepFailure {
            error: Self::api_err(step, e),
            partial,
        })
    }

    /// Recreates the live app's network policies for the new app.
    pub(super) async fn copy_network_policies(
        &self,
        step: &Step,
        ledger: &Ledger,
        policies: &[PolicyTemplate],
    ) -> Result<StepOutput, StepFailure> {
        let guid = Self::new_app(ledger, step)?.guid;
        let end = |e: &PolicyEnd| match e {
            PolicyEnd::Candidate => guid.clone(),
            PolicyEnd::App(g) => g.clone(),
        };
        let ps: Vec<NetworkPolicy> = policies
            .iter()
            .map(|p| NetworkPolicy {
                source_app: end(&p.source),
                destination_app: end(&p.destination),
                protocol: p.protocol.clone(),
                start_port: p.start_port,
                end_port: p.end_port,
            })
            .collect();
        match self.api.create_network_policies(&ps).await {
            Ok(()) => Ok(StepOutput::Policies(ps)),
            Err(e) => Err(StepFailure {
                error: Self::api_err(step, e),
                // Creation is not known to be atomic: deleting absent policies is harmless.
                partial: Some(StepOutput::Policies(ps)),
            }),
        }
    }

    /// Removes the old app's destination from a route.
    pub(super) async fn unmap_route(
        &self,
        step: &Step,
        ledger: &Ledger,
        route: &RouteRef,
        destination: &Destination,
    ) -> Result<StepOutput, StepFailure> {
        let route_guid = Self::route_guid(ledger, step, route)?;
        match ok_if_not_found(
            self.api
                .remove_destination(&route_guid, &destination.guid)
                .await,
        ) {
            Ok(()) => Ok(StepOutput::Unmapped { route_guid }),
            Err(e) => Err(StepFailure {
                error: Self::api_err(step, e),
                // It may be gone anyway; re-mapping is idempotent.
                partial: Some(StepOutput::Unmapped { route_guid }),
            }),
        }
    }

    /// The fixed drain: both versions serve for `duration`.
    pub(super) async fn drain(
        &self,
        duration: Duration,
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, StepFailure> {
        reporter.report(Event::Waiting {
            app: String::new(),
            what: "drain".into(),
            elapsed: Duration::ZERO,
            detail: format!(
                "both versions serve for {}",
                crate::deploy::step::fmt_duration(duration)
            ),
        });
        self.pause(duration).await?;
        Ok(StepOutput::None)
    }

    /// Deletes a route (gone already counts as deleted).
    pub(super) async fn delete_route(
        &self,
        step: &Step,
        ledger: &Ledger,
        route: &RouteRef,
    ) -> Result<StepOutput, StepFailure> {
        let route_guid = Self::route_guid(ledger, step, route)?;
        ok_if_not_found(self.api.delete_route(&route_guid).await)
            .map_err(Self::api_failure(step))?;
        Ok(StepOutput::None)
    }

    /// Maps the run's new app to a route with the old destination's process type, port and
    /// protocol; a failed request that added the destination anyway records it, so that the
    /// rollback removes it (an app that outlives a rollback, such as a rollback's venerable,
    /// must not keep the route).
    pub(super) async fn map_route(
        &self,
        step: &Step,
        ledger: &Ledger,
        route: &RouteRef,
        (process_type, port, protocol): (&str, Option<u32>, &Option<String>),
    ) -> Result<StepOutput, StepFailure> {
        let NewApp { guid, name } = Self::new_app(ledger, step)?;
        let route_guid = Self::route_guid(ledger, step, route)?;
        let want = NewDestination {
            app_guid: guid.clone(),
            process_type: process_type.to_string(),
            port,
            protocol: protocol.clone(),
        };
        let added = self.api.add_destination(&route_guid, &want).await;
        let mapped = |destination_guid: DestinationGuid| StepOutput::Mapped {
            route_guid: route_guid.clone(),
            destination_guid,
            app_name: name.to_string(),
        };
        match added {
            Ok(d) => Ok(mapped(d.guid)),
            Err(e) => {
                let partial = match self.api.list_destinations(&route_guid).await {
                    Ok(ds) => ds
                        .into_iter()
                        .find(|d| {
                            d.app_guid == want.app_guid
                                && d.process_type == want.process_type
                                && d.port == want.port
                        })
                        .map(|d| mapped(d.guid)),
                    Err(_) => None,
                };
                Err(StepFailure {
                    error: Self::api_err(step, e),
                    partial,
                })
            }
        }
    }
}
