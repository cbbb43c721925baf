//! Observe: reads only. Gathers everything the planners (`plan`, `rolling`) decide on into an
//! [`Observed`] snapshot: the live app of each manifest app, its routes, destinations,
//! processes, SSH flag, metadata and network policies; our leftovers of earlier runs (found by
//! the [`ROLE_LABEL`] label and the [`APP_ANNOTATION`] annotation, never by name alone); apps
//! that merely carry a name we need; the domains and the routes the flow will touch.
//!
//! Depends on: deploy::{api, lock, request, route, strategy}. Must not: mutate anything.

use std::collections::BTreeMap;

use super::api::{ApiError, App, AppGuid, CfApi, Deployment, Domain, NetworkPolicy, Process};
use super::lock::{Busy, busy_among};
use super::request::{AppSpec, DeployRequest, RouteSpec};
use super::route::{
    RouteAddress, candidate_domains, production_route_strings, resolve_route, temp_route_string,
};

/// The label marking apps this tool created; values [`ROLE_CANDIDATE`] or [`ROLE_VENERABLE`].
pub const ROLE_LABEL: &str = "zero-downtime.cf/role";
/// Role of a candidate (the new version before it takes the app's name).
pub const ROLE_CANDIDATE: &str = "candidate";
/// Role of a retired old version kept by `--old-app stop|keep`.
pub const ROLE_VENERABLE: &str = "venerable";
/// The annotation naming the app a candidate or venerable belongs to (annotations take any
/// app name; label values are restricted).
pub const APP_ANNOTATION: &str = "zero-downtime.cf/app";

/// The candidate's name for an app.
pub fn candidate_name(app: &str) -> String {
    format!("{app}-candidate")
}

/// The retired old version's name for an app.
pub fn venerable_name(app: &str) -> String {
    format!("{app}-venerable")
}

pub use super::api::RouteState;

impl RouteState {
    /// Route `guid` at `<host>.example.com` with a `web` destination of each app GUID in
    /// `apps`, for the planners' unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(guid: &str, host: &str, apps: &[&str]) -> RouteState {
        RouteState {
            route: super::api::Route {
                guid: guid.into(),
                host: host.into(),
                path: String::new(),
                port: None,
                domain_guid: "d1".into(),
                url: format!("{host}.example.com"),
            },
            destinations: apps
                .iter()
                .map(|a| super::api::Destination {
                    guid: format!("dest-{guid}-{a}").into(),
                    app_guid: super::api::AppGuid::new(*a),
                    process_type: "web".into(),
                    port: None,
                    protocol: None,
                })
                .collect(),
        }
    }
}

/// A process and its instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessState {
    pub process: Process,
}

/// An existing app with what a swap must carry over or move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingApp {
    pub app: App,
    /// Routes mapped to it, with all their destinations.
    pub routes: Vec<RouteState>,
    pub processes: Vec<ProcessState>,
    pub ssh_enabled: bool,
    /// Network policies where it is source or destination.
    pub policies: Vec<NetworkPolicy>,
}

/// Everything observed about one manifest app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedApp {
    /// The manifest app's name.
    pub name: String,
    /// The app currently carrying the name, if any.
    pub live: Option<ExistingApp>,
    /// Our candidates left by earlier runs (role label + app annotation), with their routes.
    pub leftover_candidates: Vec<ExistingApp>,
    /// Our venerable apps (kept old versions).
    pub venerables: Vec<App>,
    /// Apps not created by us that carry a name the flow needs (candidate or venerable name).
    pub foreign_names: Vec<App>,
    /// The live app's ACTIVE Cloud Controller deployment (read for rolling and canary only).
    pub active_deployment: Option<Deployment>,
}

/// The snapshot the planners decide on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// Domains found, by name.
    pub domains: Vec<Domain>,
    /// The org's default domain.
    pub default_domain: Option<Domain>,
    /// Routes looked up, by `url`, with destinations (production routes and temp routes).
    pub routes: BTreeMap<String, RouteState>,
    /// Per manifest app, in manifest order.
    pub apps: Vec<ObservedApp>,
    /// Optional reads that failed because the service is absent or forbidden, each saying
    /// what will not be carried over and why (the deploy goes on).
    pub warnings: Vec<String>,
    /// The space's and the org's quotas with their usage (levels that cannot be read are
    /// [`super::api::QuotaLevel::Unknown`]).
    pub quotas: super::api::Quotas,
}

impl Observed {
    /// The live apps, GUID and name: the apps a push marks before its first change.
    pub fn live_apps(&self) -> Vec<(AppGuid, String)> {
        self.apps
            .iter()
            .filter_map(|a| a.live.as_ref())
            .map(|l| (l.app.guid.clone(), l.app.name.clone()))
            .collect()
    }

    /// The first manifest app that another run is deploying at `now`: fresh lock marks of a
    /// run other than `own_run_id` on the app, its candidates or venerables, or an ACTIVE
    /// deployment of the live app. Pure.
    pub fn busy(&self, own_run_id: &str, now: i64) -> Option<Busy> {
        self.apps.iter().find_map(|oa| {
            let apps = oa
                .live
                .iter()
                .chain(&oa.leftover_candidates)
                .map(|e| &e.app)
                .chain(&oa.venerables);
            busy_among(&oa.name, apps, own_run_id, now).or_else(|| {
                oa.active_deployment.as_ref().map(|d| Busy::Deployment {
                    app: oa.name.clone(),
                    guid: d.guid.clone(),
                    state: d.state.to_string(),
                })
            })
        })
    }
}

/// Whether an app carries our role label with this role and belongs to `name`.
pub fn is_ours(app: &App, role: &str, name: &str) -> bool {
    app.labels.get(ROLE_LABEL).map(String::as_str) == Some(role)
        && app.annotations.get(APP_ANNOTATION).map(String::as_str) == Some(name)
}

/// The routes mapped to an app, each with all its destinations (one request: a route object
/// carries its destinations).
pub(crate) async fn app_routes<A: CfApi>(
    api: &A,
    app: &AppGuid,
) -> Result<Vec<RouteState>, ApiError> {
    Ok(api.list_app_routes(app).await?.routes)
}

/// The route at `address` with its destinations, `None` when it does not exist.
pub(crate) async fn route_state<A: CfApi>(
    api: &A,
    address: &RouteAddress,
) -> Result<Option<RouteState>, ApiError> {
    api.find_route(&address.new_route()).await
}

/// Reads an existing app's routes, processes, SSH flag and network policies. The policies are
/// optional: a policy server that is absent, 404 or 403 (a space developer without
/// `network.write`) adds a warning to `warnings` and an empty list.
/// The domains of its routes are added to `domains` (unless there already).
async fn existing<A: CfApi>(
    api: &A,
    app: App,
    warnings: &mut Vec<String>,
    domains: &mut Vec<Domain>,
) -> Result<ExistingApp, ApiError> {
    let mapped = api.list_app_routes(&app.guid).await?;
    add_domains(domains, mapped.domains);
    let routes = mapped.routes;
    let mut processes = Vec::new();
    for process in api.list_processes(&app.guid).await? {
        processes.push(ProcessState { process });
    }
    let ssh_enabled = api.get_ssh_enabled(&app.guid).await?;
    let policies = match api
        .list_network_policies(std::slice::from_ref(&app.guid))
        .await
    {
        Ok(p) => p,
        Err(e) if e.is_unavailable() => {
            warnings.push(format!(
                "network policies of app '{}' cannot be read ({e}): they are not carried over to the new version; check them with 'cf network-policies' after the deploy",
                app.name
            ));
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    Ok(ExistingApp {
        app,
        routes,
        processes,
        ssh_enabled,
        policies,
    })
}

/// The domains the production routes of `apps` need: `default` first, then `known` (the
/// domains of the existing apps' routes), then those found by looking up every candidate name
/// of a route string (cf CLI order). A route string that resolves with the domains already
/// known to one of the existing `routes` needs no lookup: Cloud Controller refuses a domain
/// named like an existing route and a route named like an existing domain, so no other domain
/// can claim it.
async fn domains<A: CfApi>(
    api: &A,
    apps: &[AppSpec<A::Bits>],
    default: Option<&Domain>,
    known: Vec<Domain>,
    routes: &[&RouteState],
) -> Result<Vec<Domain>, ApiError> {
    let mut domains: Vec<Domain> = default.into_iter().cloned().collect();
    add_domains(&mut domains, known);
    let mut wanted: Vec<String> = Vec::new();
    for spec in apps {
        for r in production_route_strings(spec, default) {
            if resolve_route(&r, &domains).is_some_and(|a| routes.iter().any(|s| same_route(&a, s)))
            {
                continue;
            }
            for d in candidate_domains(&r) {
                if !wanted.contains(&d) {
                    wanted.push(d);
                }
            }
        }
    }
    for name in wanted {
        if domains.iter().any(|d| d.name.eq_ignore_ascii_case(&name)) {
            continue;
        }
        if let Some(d) = api.find_domain(&name).await? {
            domains.push(d);
        }
    }
    Ok(domains)
}

/// Appends the domains of `more` not in `domains` yet (by GUID).
fn add_domains(domains: &mut Vec<Domain>, more: Vec<Domain>) {
    for d in more {
        if !domains.iter().any(|k| k.guid == d.guid) {
            domains.push(d);
        }
    }
}

/// Whether `state` is the route at `addr` (domain, host, path and port).
fn same_route(addr: &RouteAddress, state: &RouteState) -> bool {
    let k = &state.route;
    (&k.domain_guid, &k.host, &k.path, k.port)
        == (&addr.domain_guid, &addr.host, &addr.path, addr.port)
}

/// Looks up the routes of `route_strings` not yet in `observed.routes` and records those that
/// exist with their destinations. A route among `known` (the routes of the apps just read,
/// with their destinations) is taken from there, not read again; without `lookup`, only
/// those are recorded.
async fn observe_routes<A: CfApi>(
    api: &A,
    route_strings: Vec<String>,
    known: &[&RouteState],
    observed: &mut Observed,
    lookup: bool,
) -> Result<(), ApiError> {
    for r in route_strings {
        let Some(addr) = resolve_route(&r, &observed.domains) else {
            continue;
        };
        let url = addr.url();
        if observed.routes.contains_key(&url) {
            continue;
        }
        if let Some(state) = known.iter().find(|s| same_route(&addr, s)) {
            observed.routes.insert(url, (*state).clone());
            continue;
        }
        if !lookup {
            continue;
        }
        if let Some(state) = route_state(api, &addr).await? {
            observed.routes.insert(url, state);
        }
    }
    Ok(())
}

/// Reads the state the plan needs. Reads only: no mutating call is made.
///
/// # Errors
/// The first failed read.
pub async fn observe<A: CfApi>(
    api: &A,
    req: &DeployRequest,
    apps: &[AppSpec<A::Bits>],
) -> Result<Observed, ApiError> {
    let mut observed = Observed::default();
    let ours = api.find_apps_by_label(&req.space_guid, ROLE_LABEL).await?;

    // The apps first: their routes (with destinations and domains) spare lookups below.
    let mut known_domains = Vec::new();
    let mut found = Vec::new();
    for spec in apps {
        let names = vec![
            spec.name.clone(),
            candidate_name(&spec.name),
            venerable_name(&spec.name),
        ];
        let by_name = api.find_apps_by_name(&req.space_guid, &names).await?;
        let live = match by_name.iter().find(|a| a.name == spec.name) {
            Some(a) => {
                Some(existing(api, a.clone(), &mut observed.warnings, &mut known_domains).await?)
            }
            None => None,
        };
        let mut leftover_candidates = Vec::new();
        let mut venerables = Vec::new();
        for a in ours.iter().filter(|a| a.name != spec.name) {
            if is_ours(a, ROLE_CANDIDATE, &spec.name) {
                leftover_candidates.push(
                    existing(api, a.clone(), &mut observed.warnings, &mut known_domains).await?,
                );
            } else if is_ours(a, ROLE_VENERABLE, &spec.name) {
                venerables.push(a.clone());
            }
        }
        // Ours only when labelled for this very app; anything else with our names is foreign.
        let foreign_names = by_name
            .iter()
            .filter(|a| {
                a.name != spec.name
                    && !is_ours(a, ROLE_CANDIDATE, &spec.name)
                    && !is_ours(a, ROLE_VENERABLE, &spec.name)
            })
            .cloned()
            .collect();
        found.push(ObservedApp {
            name: spec.name.clone(),
            live,
            leftover_candidates,
            venerables,
            foreign_names,
            active_deployment: None,
        });
    }

    // Domains: the org's default one only when a route is made from it (the default route,
    // or a temporary route without a production route to take the domain from).
    let existing_routes: Vec<&RouteState> = found
        .iter()
        .flat_map(|o| o.live.iter().chain(&o.leftover_candidates))
        .flat_map(|a| &a.routes)
        .collect();
    let default_route = apps.iter().any(|s| s.routes == RouteSpec::Default);
    if default_route {
        observed.default_domain = api.default_domain().await?;
    }
    observed.domains = domains(
        api,
        apps,
        observed.default_domain.as_ref(),
        known_domains,
        &existing_routes,
    )
    .await?;
    let needs_default = |domains: &[Domain]| {
        apps.iter()
            .any(|s| temp_route_string(s, &req.temp_route_suffix, domains, None).is_none())
    };
    if !default_route && needs_default(&observed.domains) {
        observed.default_domain = api.default_domain().await?;
        if let Some(d) = &observed.default_domain
            && !observed.domains.iter().any(|k| k.guid == d.guid)
        {
            observed.domains.insert(0, d.clone());
        }
    }

    for (spec, mut oa) in apps.iter().zip(found) {
        // Production routes and the temp route: existence and destinations. The temp route is
        // known when an app read above has it; otherwise its create says whether it exists
        // (see `execute::routes`), which spares a lookup in the usual case, where it does not.
        let route_strings = production_route_strings(spec, observed.default_domain.as_ref());
        let temp: Vec<String> = temp_route_string(
            spec,
            &req.temp_route_suffix,
            &observed.domains,
            observed.default_domain.as_ref(),
        )
        .into_iter()
        .collect();
        let known: Vec<&RouteState> = oa
            .live
            .iter()
            .chain(&oa.leftover_candidates)
            .flat_map(|a| &a.routes)
            .collect();
        observe_routes(api, route_strings, &known, &mut observed, true).await?;
        observe_routes(api, temp, &known, &mut observed, false).await?;

        // A rolling or canary push must not start next to a deployment it did not create.
        oa.active_deployment = match &oa.live {
            Some(l) if super::strategy::deployment_strategy(req.strategy).is_some() => {
                api.find_active_deployment(&l.app.guid).await?
            }
            _ => None,
        };
        observed.apps.push(oa);
    }
    // Optional: Cloud Controller enforces the quotas anyway; a read that fails for any reason
    // only skips our check (said once by the caller).
    observed.quotas = match api.quotas(&req.space_guid).await {
        Ok(q) => q,
        Err(e) => {
            let why = format!("the quotas cannot be read ({e})");
            super::api::Quotas {
                space: super::api::QuotaLevel::Unknown(why.clone()),
                org: super::api::QuotaLevel::Unknown(why),
            }
        }
    };
    Ok(observed)
}
