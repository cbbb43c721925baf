//! The route steps: create, map, unmap (the commit point is the last unmap), drain, delete;
//! and the network policies of the new app.

use super::*;

impl<A: CfApi> Exec<'_, A> {
    /// Runs a route or network-policy step, or the drain.
    pub(super) async fn route_step(
        &self,
        step: &Step,
        ledger: &Ledger,
        reporter: &mut dyn Reporter,
    ) -> Result<StepOutput, Failure> {
        let space = &self.req.space_guid;
        let err = Self::api_failure(step);
        match &step.action {
            Action::CreateRoute { route, .. } => {
                match self.api.create_route(space, &route.new_route()).await {
                    Ok(r) => Ok(StepOutput::Route(r)),
                    Err(e) => {
                        // The request may have created it before failing: record it for undo.
                        let partial = match self.api.find_route(&route.new_route()).await {
                            Ok(Some(r)) => Some(StepOutput::Route(r)),
                            _ => None,
                        };
                        Err(Failure {
                            error: Self::api_err(step, e),
                            partial,
                        })
                    }
                }
            }
            Action::CopyNetworkPolicies { policies, .. } => {
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
                    Err(e) => Err(Failure {
                        error: Self::api_err(step, e),
                        // Creation is not known to be atomic: deleting absent policies is harmless.
                        partial: Some(StepOutput::Policies(ps)),
                    }),
                }
            }
            Action::MapRoute {
                route,
                process_type,
                port,
                protocol,
                ..
            } => {
                let dest = |guid: &AppGuid| NewDestination {
                    app_guid: guid.clone(),
                    process_type: process_type.clone(),
                    port: *port,
                    protocol: protocol.clone(),
                };
                self.map_route(step, ledger, route, dest).await
            }
            Action::UnmapRoute {
                route, destination, ..
            } => {
                let route_guid = Self::route_guid(ledger, step, route)?;
                match ok_if_not_found(
                    self.api
                        .remove_destination(&route_guid, &destination.guid)
                        .await,
                ) {
                    Ok(()) => Ok(StepOutput::Unmapped { route_guid }),
                    Err(e) => Err(Failure {
                        error: Self::api_err(step, e),
                        // It may be gone anyway; re-mapping is idempotent.
                        partial: Some(StepOutput::Unmapped { route_guid }),
                    }),
                }
            }
            Action::Drain { duration } => {
                reporter.report(Event::Waiting {
                    app: String::new(),
                    what: "drain".into(),
                    elapsed: Duration::ZERO,
                    detail: format!(
                        "both versions serve for {}",
                        crate::deploy::step::fmt_duration(*duration)
                    ),
                });
                self.pause(*duration).await?;
                Ok(StepOutput::None)
            }
            Action::DeleteRoute { route, .. } => {
                let route_guid = Self::route_guid(ledger, step, route)?;
                ok_if_not_found(self.api.delete_route(&route_guid).await).map_err(err)?;
                Ok(StepOutput::None)
            }
            _ => Err(Self::missing(step, "a handler for this step").into()),
        }
    }

    /// Maps the run's new app to a route; a failed request that added the destination anyway
    /// records it, so that the rollback removes it (an app that outlives a rollback, such as a
    /// rollback's venerable, must not keep the route).
    async fn map_route(
        &self,
        step: &Step,
        ledger: &Ledger,
        route: &RouteRef,
        dest: impl Fn(&AppGuid) -> NewDestination,
    ) -> Result<StepOutput, Failure> {
        let NewApp { guid, name } = Self::new_app(ledger, step)?;
        let route_guid = Self::route_guid(ledger, step, route)?;
        let want = dest(guid);
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
                Err(Failure {
                    error: Self::api_err(step, e),
                    partial,
                })
            }
        }
    }
}
