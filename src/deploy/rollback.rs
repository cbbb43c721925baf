//! `zero-downtime-rollback`: the previous version that a deploy with `--old-app stop|keep`
//! kept as `<app>-venerable` takes the routes and the name back, with the guarantees of a
//! push and no staging or upload.
//!
//! Observe ([`observe`], reads only) → plan ([`plan`], pure) → the blue-green executor
//! (`execute::execute`, the same undo engine, interrupts and outcomes as a push).
//!
//! The plan, for app `A` (live, the version being rolled back) and `V` (`A-venerable`):
//!
//! 1. `V` is taken as "the new app" of the run (`Action::Reinstate`); with a smoke test the
//!    temporary route is created (or reused) and mapped to it; it is started when stopped
//!    (`Action::StartExisting`, undone by stopping it again).
//! 2. Every instance of `V` runs (the health wait of a push, crash detection included), then
//!    the optional smoke test on the temporary route.
//! 3. Every route of `A` is mapped to `V` (with `A`'s process type, port and protocol), then
//!    unmapped from `A`. The last unmap is the commit point: a failure or interrupt before it
//!    puts back exactly what was there (`V` stopped again when this run started it).
//! 4. Drain; then the names change hands like a push's retire, `V` playing the candidate:
//!    `V` is labelled candidate and renamed `A-candidate`, `A` is labelled venerable and
//!    renamed `A-venerable`, `V` is renamed `A` and its role label removed. An interrupted
//!    retire leaves only states the next push or rollback handles. The temporary route is
//!    deleted, then `A` is stopped (`--current-app stop`, the default), left running
//!    (`keep`) or deleted (`delete`). Kept, it is the venerable of the next rollback.
//!
//! `V` must carry the label `zero-downtime.cf/role=venerable` and the annotation
//! `zero-downtime.cf/app=A` (what a push sets); any other app with that name, or any app
//! holding the candidate name, stops the rollback before a change.
//!
//! Depends on: deploy::{api, observe, plan, step, execute, event}. Must not: print or use
//! `cf`/`manifest`/`package` (the wiring is in `command::rollback`).

use std::collections::BTreeMap;

use super::api::{ApiError, App, AppGuid, AppState, CfApi, Destination, Domain, MetadataUpdate};
use super::event::{Outcome, Reporter, StepTime};
use super::interrupt::Interrupt;
use super::lock::{Busy, RunLock, busy_among};
use super::observe::{
    APP_ANNOTATION, ROLE_CANDIDATE, ROLE_LABEL, ROLE_VENERABLE, RouteState, app_routes,
    candidate_name, is_ours, route_state, venerable_name,
};
use super::plan::{AppPlan, AppPlanKind, Plan, PlanError, address_of};
use super::request::DeployRequest;
use super::route::{RouteAddress, hostname_for};
use super::step::{Action, AppRef, RouteRef, Step, fmt_duration};

/// The strategy name of a rollback in [`Event::Started`](super::event::Event::Started) (the renderers word it).
pub const STRATEGY: &str = "rollback";

/// Why no rollback plan could be made. Nothing has been changed when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackError {
    /// The app to roll back does not exist.
    #[error("app '{0}' not found in this space: there is nothing to roll back")]
    NoLiveApp(String),
    /// No previous version was kept.
    #[error(
        "app '{app}' has no previous version to roll back to: there is no app '{venerable}' (a deploy keeps one with --old-app stop or keep)"
    )]
    NoVenerable {
        /// The app rolled back, by name.
        app: String,
        /// The venerable name looked for.
        venerable: String,
    },
    /// The app with the venerable name is not the kept previous version of this app.
    #[error(
        "app '{name}' (guid {guid}) is not a previous version of '{app}' kept by cf-zero-downtime (it lacks the label {ROLE_LABEL}={ROLE_VENERABLE} or the annotation {APP_ANNOTATION}={app}); it is never touched automatically"
    )]
    NotOurVenerable {
        /// The app rolled back, by name.
        app: String,
        /// The venerable name.
        name: String,
        /// The GUID of the app holding that name.
        guid: AppGuid,
    },
    /// Our candidate of an unfinished deploy holds the name the rollback needs.
    #[error(
        "app '{app}': '{name}' (guid {guid}) is the candidate of a deploy that is running or was interrupted; let it finish or run 'cf zero-downtime-push' again, or delete it ('cf delete {name}'), then roll back"
    )]
    DeployInProgress {
        /// The app rolled back, by name.
        app: String,
        /// The candidate name.
        name: String,
        /// The GUID of the app holding that name.
        guid: AppGuid,
    },
    /// A name clash, a temporary route used by another app, no route for a smoke test.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// An app and its routes, with all their destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRoutes {
    /// The app as observed (GUID, name, state, labels).
    pub app: App,
    /// Routes mapped to it.
    pub routes: Vec<RouteState>,
}

/// Everything a rollback decides on. Reads only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RollbackObserved {
    /// The app's name.
    pub name: String,
    /// The app carrying the name (the version rolled back).
    pub live: Option<AppRoutes>,
    /// The app carrying the venerable name.
    pub venerable: Option<AppRoutes>,
    /// The app carrying the candidate name, if any.
    pub candidate: Option<App>,
    /// The org's default domain.
    pub default_domain: Option<Domain>,
    /// The temporary route's address (with a smoke test) and the route when it exists.
    pub temp_route: Option<(RouteAddress, Option<RouteState>)>,
}

impl RollbackObserved {
    /// Another run deploying the app at `now`: fresh lock marks of a run other than
    /// `own_run_id` on the app, its venerable or its candidate. Pure.
    pub(crate) fn busy(&self, own_run_id: &str, now: i64) -> Option<Busy> {
        let apps = self
            .live
            .iter()
            .chain(&self.venerable)
            .map(|a| &a.app)
            .chain(&self.candidate);
        busy_among(&self.name, apps, own_run_id, now)
    }

    /// The apps a rollback marks before its first change: the live app and the venerable.
    fn marked_apps(&self) -> Vec<(AppGuid, String)> {
        self.live
            .iter()
            .chain(&self.venerable)
            .map(|a| (a.app.guid.clone(), a.app.name.clone()))
            .collect()
    }
}

async fn with_routes<A: CfApi>(api: &A, app: App) -> Result<AppRoutes, ApiError> {
    let routes = app_routes(api, &app.guid).await?;
    Ok(AppRoutes { app, routes })
}

/// The address of the temporary route: `<host><suffix>.<domain>` of the live app's first
/// HTTP route with a host, else of the app's name on the default domain.
fn temp_address(
    name: &str,
    live: Option<&AppRoutes>,
    default_domain: Option<&Domain>,
    suffix: &str,
) -> Option<RouteAddress> {
    let first = live.and_then(|l| {
        l.routes
            .iter()
            .map(|r| &r.route)
            .find(|r| r.port.is_none() && !r.host.is_empty() && r.host != "*")
    });
    if let Some(r) = first {
        let a = address_of(r, &super::observe::Observed::default());
        return Some(RouteAddress {
            host: format!("{}{suffix}", r.host),
            path: String::new(),
            port: None,
            ..a
        });
    }
    let d = default_domain?;
    Some(RouteAddress {
        host: format!("{}{suffix}", hostname_for(name)),
        domain: d.name.clone(),
        domain_guid: d.guid.clone(),
        path: String::new(),
        port: None,
    })
}

/// Reads what a rollback of app `name` decides on. Reads only: no mutating call is made.
///
/// # Errors
/// The first failed read.
pub async fn observe<A: CfApi>(
    api: &A,
    req: &DeployRequest,
    name: &str,
) -> Result<RollbackObserved, ApiError> {
    let names = vec![name.to_string(), candidate_name(name), venerable_name(name)];
    let by_name = api.find_apps_by_name(&req.space_guid, &names).await?;
    let find = |n: &str| by_name.iter().find(|a| a.name == n).cloned();
    let live = match find(name) {
        Some(a) => Some(with_routes(api, a).await?),
        None => None,
    };
    let venerable = match find(&venerable_name(name)) {
        Some(a) => Some(with_routes(api, a).await?),
        None => None,
    };
    let mut observed = RollbackObserved {
        name: name.to_string(),
        live,
        venerable,
        candidate: find(&candidate_name(name)),
        default_domain: None,
        temp_route: None,
    };
    if req.has_smoke_test() {
        let has_host = observed.live.as_ref().is_some_and(|l| {
            l.routes
                .iter()
                .any(|r| r.route.port.is_none() && !r.route.host.is_empty() && r.route.host != "*")
        });
        if !has_host {
            observed.default_domain = api.default_domain().await?;
        }
        let address = temp_address(
            name,
            observed.live.as_ref(),
            observed.default_domain.as_ref(),
            &req.temp_route_suffix,
        );
        if let Some(address) = address {
            let state = route_state(api, &address).await?;
            observed.temp_route = Some((address, state));
        }
    }
    Ok(observed)
}

/// A metadata change of our role label (and, when setting it, the app annotation).
fn role(app: &str, role: Option<&str>) -> MetadataUpdate {
    MetadataUpdate {
        labels: BTreeMap::from([(ROLE_LABEL.to_string(), role.map(str::to_string))]),
        annotations: match role {
            Some(_) => BTreeMap::from([(APP_ANNOTATION.to_string(), Some(app.to_string()))]),
            None => BTreeMap::new(),
        },
    }
}

fn existing(a: &App) -> AppRef {
    AppRef::Existing {
        guid: a.guid.clone(),
        name: a.name.clone(),
    }
}

/// Decides what to do. Pure.
///
/// # Errors
/// See [`RollbackError`]; nothing has been changed when it fails.
pub fn plan(obs: &RollbackObserved, req: &DeployRequest) -> Result<Plan, RollbackError> {
    let name = obs.name.clone();
    let cand_name = candidate_name(&name);
    let (live, ven) = ready(obs)?;

    let mut steps = vec![Step::new(
        name.clone(),
        Action::Reinstate {
            guid: ven.app.guid.clone(),
            name: ven.app.name.clone(),
        },
    )];
    let mut warnings = Vec::new();

    // The temporary route of the smoke test, mapped to the venerable only.
    let temp = if req.has_smoke_test() {
        let (address, state) = obs
            .temp_route
            .clone()
            .ok_or_else(|| PlanError::NoRouteForSmokeTest(name.clone()))?;
        let route = temp_route_steps(&mut steps, &name, live, ven, address, state.as_ref())?;
        Some(route)
    } else {
        None
    };
    let temp_url = temp.as_ref().map(|t| t.address.url());

    if ven.app.state == AppState::Stopped {
        steps.push(Step::new(
            name.clone(),
            Action::StartExisting {
                guid: ven.app.guid.clone(),
                name: ven.app.name.clone(),
            },
        ));
    }
    steps.push(Step::new(name.clone(), Action::WaitHealthy));
    if let Some(t) = &temp_url {
        steps.push(Step::new(
            name.clone(),
            Action::SmokeTest { route: t.clone() },
        ));
    }

    let (unmaps, moved) = switch_steps(&mut steps, &name, live, ven, temp_url.as_deref());
    if moved.is_empty() {
        warnings.push(format!(
            "app '{name}' serves no route: only the names change hands (and which version runs)"
        ));
    }
    let switched = !unmaps.is_empty();
    steps.extend(unmaps);
    let commit = steps.len();

    if switched && !req.drain.is_zero() {
        steps.push(Step::global(super::plan::drain_action(req)));
    }
    if switched && req.drain.is_zero() {
        warnings.push(format!(
            "--drain is {}: the current version stops before routers may have seen the switch",
            fmt_duration(req.drain)
        ));
    }
    retire(&mut steps, req, &name, live, ven, &cand_name, temp);

    Ok(Plan {
        steps,
        commit,
        apps: vec![AppPlan {
            name: name.clone(),
            kind: AppPlanKind::Rollback,
            candidate: Some(ven.app.name.clone()),
            temp_route: temp_url,
            routes: moved,
        }],
        warnings,
        concurrent: Vec::new(),
    })
}

/// The live app and our venerable of it, or why a rollback cannot start (no live app, no
/// venerable, a venerable that is not ours, a deploy in progress or a foreign app holding the
/// candidate name).
fn ready(obs: &RollbackObserved) -> Result<(&AppRoutes, &AppRoutes), RollbackError> {
    let name = &obs.name;
    let live = obs
        .live
        .as_ref()
        .ok_or_else(|| RollbackError::NoLiveApp(name.clone()))?;
    let ven = obs
        .venerable
        .as_ref()
        .ok_or_else(|| RollbackError::NoVenerable {
            app: name.clone(),
            venerable: venerable_name(name),
        })?;
    if !is_ours(&ven.app, ROLE_VENERABLE, name) {
        return Err(RollbackError::NotOurVenerable {
            app: name.clone(),
            name: ven.app.name.clone(),
            guid: ven.app.guid.clone(),
        });
    }
    if let Some(c) = &obs.candidate {
        if is_ours(c, ROLE_CANDIDATE, name) {
            return Err(RollbackError::DeployInProgress {
                app: name.clone(),
                name: c.name.clone(),
                guid: c.guid.clone(),
            });
        }
        return Err(PlanError::NameClash {
            app: name.clone(),
            name: c.name.clone(),
            guid: c.guid.clone(),
        }
        .into());
    }
    Ok((live, ven))
}

/// The switch: every route of the live app (but a leftover temporary route) is mapped to the
/// venerable (pushed to `steps`); returns the unmaps from the live app (the commit) and the
/// URLs moved.
fn switch_steps(
    steps: &mut Vec<Step>,
    name: &str,
    live: &AppRoutes,
    ven: &AppRoutes,
    temp_url: Option<&str>,
) -> (Vec<Step>, Vec<String>) {
    let mut unmaps = Vec::new();
    let mut moved = Vec::new();
    for rs in &live.routes {
        if Some(rs.route.url.as_str()) == temp_url {
            continue;
        }
        let route = RouteRef {
            address: address_of(&rs.route, &super::observe::Observed::default()),
            guid: Some(rs.route.guid.clone()),
        };
        let from: Vec<&Destination> = rs
            .destinations
            .iter()
            .filter(|d| d.app_guid == live.app.guid)
            .collect();
        let mut mapped: Vec<(&str, Option<u32>, Option<&str>)> = Vec::new();
        for d in &from {
            let t = (d.process_type.as_str(), d.port, d.protocol.as_deref());
            let already = rs.destinations.iter().any(|x| {
                x.app_guid == ven.app.guid
                    && x.process_type == d.process_type
                    && x.port == d.port
                    && x.protocol == d.protocol
            });
            if already || mapped.contains(&t) {
                continue;
            }
            mapped.push(t);
            steps.push(Step::new(
                name.to_string(),
                Action::MapRoute {
                    route: route.clone(),
                    process_type: d.process_type.clone(),
                    port: d.port,
                    protocol: d.protocol.clone(),
                },
            ));
        }
        for d in from {
            unmaps.push(Step::new(
                name.to_string(),
                Action::UnmapRoute {
                    route: route.clone(),
                    from_name: live.app.name.clone(),
                    destination: d.clone(),
                },
            ));
        }
        moved.push(route.address.url());
    }
    (unmaps, moved)
}

/// The temporary route: created when missing, taken off the live app when a retire that did
/// not finish left it there, mapped to the venerable unless it already is.
fn temp_route_steps(
    steps: &mut Vec<Step>,
    name: &str,
    live: &AppRoutes,
    ven: &AppRoutes,
    address: RouteAddress,
    state: Option<&RouteState>,
) -> Result<RouteRef, RollbackError> {
    let route = RouteRef {
        address: address.clone(),
        guid: state.map(|s| s.route.guid.clone()),
    };
    let mut on_venerable = false;
    match state {
        None => steps.push(Step::new(
            name,
            Action::CreateRoute {
                route: address,
                temporary: true,
            },
        )),
        Some(s) => {
            for d in &s.destinations {
                if d.app_guid == ven.app.guid {
                    on_venerable = true;
                } else if d.app_guid == live.app.guid {
                    steps.push(Step::new(
                        name,
                        Action::UnmapRoute {
                            route: route.clone(),
                            from_name: live.app.name.clone(),
                            destination: d.clone(),
                        },
                    ));
                } else {
                    return Err(PlanError::TempRouteInUse {
                        app: name.to_string(),
                        route: address.url(),
                        guid: d.app_guid.clone(),
                    }
                    .into());
                }
            }
        }
    }
    if !on_venerable {
        steps.push(Step::new(
            name,
            Action::MapRoute {
                route: route.clone(),
                process_type: "web".into(),
                port: None,
                protocol: None,
            },
        ));
    }
    Ok(route)
}

/// After the drain: the names change hands (the venerable plays the candidate of a push's
/// retire), the temporary route goes, the rolled-back version is stopped, kept or deleted.
fn retire(
    steps: &mut Vec<Step>,
    req: &DeployRequest,
    name: &str,
    live: &AppRoutes,
    ven: &AppRoutes,
    cand_name: &str,
    temp: Option<RouteRef>,
) {
    let ven_name = venerable_name(name);
    // Each rename carries its role label change in the same PATCH (both or neither).
    let rename = |target: &App, from: &str, to: &str, r: Option<&str>| {
        Step::new(
            name,
            Action::RenameApp {
                target: existing(target),
                from: from.to_string(),
                to: to.to_string(),
                metadata: role(name, r),
            },
        )
    };
    steps.push(rename(&ven.app, &ven_name, cand_name, Some(ROLE_CANDIDATE)));
    steps.push(rename(&live.app, name, &ven_name, Some(ROLE_VENERABLE)));
    steps.push(rename(&ven.app, cand_name, name, None));
    if let Some(route) = temp {
        steps.push(Step::new(name, Action::DeleteRoute { route }));
    }
    steps.extend(super::plan::old_app_steps(
        req,
        name,
        &live.app.guid,
        &ven_name,
    ));
}

/// Observes, plans and (unless `--dry-run`) executes the rollback of app `name`, with
/// `req.old_app` saying what becomes of the version rolled back. Reports every event to
/// `reporter`, ending with [`Event::Finished`](super::event::Event::Finished), and returns the outcome (`Deployed` when the
/// previous version serves under the app's name).
/// Never panics; every failure ends in an [`Outcome`].
pub async fn run<A: CfApi>(
    api: &A,
    req: &DeployRequest,
    name: &str,
    reporter: &mut dyn Reporter,
    interrupt: impl Into<Interrupt>,
) -> Outcome {
    let interrupt = interrupt.into();
    let started = super::report_started(reporter, req, vec![name.to_string()], STRATEGY);
    let (outcome, steps) = run_inner(api, req, name, reporter, &interrupt).await;
    super::report_finished(reporter, outcome, started, steps)
}

async fn run_inner<A: CfApi>(
    api: &A,
    req: &DeployRequest,
    name: &str,
    reporter: &mut dyn Reporter,
    interrupt: &Interrupt,
) -> (Outcome, Vec<StepTime>) {
    let lock = RunLock::new(&req.run_by);
    let observed = super::observe_unlocked(
        api,
        req,
        reporter,
        interrupt,
        &lock,
        || observe(api, req, name),
        RollbackObserved::busy,
    )
    .await;
    let observed = match observed {
        Ok(o) => o,
        Err(e) => return super::nothing_changed(&e),
    };
    lock.expect(observed.marked_apps());
    let plan = match plan(&observed, req) {
        Ok(p) => p,
        Err(e) => return (Outcome::nothing_changed(&e), Vec::new()),
    };
    let d = super::Deploy {
        api,
        apps: &[],
        interrupt,
        lock: &lock,
    };
    super::show_and_execute(&d, req, &plan, std::slice::from_ref(&plan), reporter).await
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::deploy::request::OldApp;

    fn req() -> DeployRequest {
        DeployRequest {
            old_app: OldApp::Stop,
            ..DeployRequest::for_tests()
        }
    }

    fn app(guid: &str, name: &str, state: AppState) -> App {
        App {
            guid: guid.into(),
            name: name.into(),
            state,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    fn route(guid: &str, host: &str, apps: &[&str]) -> RouteState {
        let mut r = RouteState::for_tests(guid, host, apps);
        for d in &mut r.destinations {
            d.port = Some(8080);
            d.protocol = Some("http1".into());
        }
        r
    }

    /// `web` (A, serving web.example.com) and its labelled, stopped venerable (V).
    fn observed() -> RollbackObserved {
        let mut v = app("V", "web-venerable", AppState::Stopped);
        v.labels.insert(ROLE_LABEL.into(), ROLE_VENERABLE.into());
        v.annotations.insert(APP_ANNOTATION.into(), "web".into());
        RollbackObserved {
            name: "web".into(),
            live: Some(AppRoutes {
                app: app("A", "web", AppState::Started),
                routes: vec![route("r1", "web", &["A"])],
            }),
            venerable: Some(AppRoutes {
                app: v,
                routes: Vec::new(),
            }),
            ..RollbackObserved::default()
        }
    }

    fn kinds(p: &Plan) -> Vec<&'static str> {
        p.steps.iter().map(Step::kind).collect()
    }

    #[test]
    fn a_stopped_venerable_is_started_switched_to_and_takes_the_name() {
        let p = plan(&observed(), &req()).unwrap();
        assert_eq!(
            kinds(&p),
            vec![
                "reinstate",
                "start_existing",
                "wait_healthy",
                "map_route",
                "unmap_route",
                "drain",
                "rename_app",
                "rename_app",
                "rename_app",
                "stop_app",
            ]
        );
        assert_eq!(p.steps[p.commit].kind(), "drain");
        let Action::MapRoute {
            route,
            port,
            protocol,
            ..
        } = &p.steps[3].action
        else {
            panic!("not map_route")
        };
        assert_eq!(route.guid.as_ref().map(|g| g.as_str()), Some("r1"));
        assert_eq!((*port, protocol.as_deref()), (Some(8080), Some("http1")));
        // Each rename sets (or removes) the role label in the same PATCH.
        let renames: Vec<(String, String, Option<Option<String>>)> = p
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::RenameApp {
                    from, to, metadata, ..
                } => Some((
                    from.clone(),
                    to.clone(),
                    metadata.labels.get(ROLE_LABEL).cloned(),
                )),
                _ => None,
            })
            .collect();
        let role = |r: Option<&str>| Some(r.map(str::to_string));
        assert_eq!(
            renames,
            vec![
                (
                    "web-venerable".to_string(),
                    "web-candidate".to_string(),
                    role(Some(ROLE_CANDIDATE))
                ),
                (
                    "web".to_string(),
                    "web-venerable".to_string(),
                    role(Some(ROLE_VENERABLE))
                ),
                ("web-candidate".to_string(), "web".to_string(), role(None)),
            ]
        );
        assert!(matches!(
            p.steps.last().map(|s| &s.action),
            Some(Action::StopApp { guid, name }) if guid == "A" && name == "web-venerable"
        ));
        assert_eq!(p.apps[0].kind, AppPlanKind::Rollback);
        assert_eq!(p.apps[0].routes, vec!["web.example.com".to_string()]);
    }

    #[test]
    fn a_running_venerable_is_not_started_and_current_app_modes_apply() {
        let mut obs = observed();
        if let Some(v) = obs.venerable.as_mut() {
            v.app.state = AppState::Started;
        }
        let mut r = req();
        r.old_app = OldApp::Keep;
        let p = plan(&obs, &r).unwrap();
        assert!(!kinds(&p).contains(&"start_existing"));
        assert!(!kinds(&p).contains(&"stop_app"));
        r.old_app = OldApp::Delete;
        let p = plan(&obs, &r).unwrap();
        assert_eq!(
            kinds(&p)[kinds(&p).len() - 2..],
            ["rename_app", "delete_app"]
        );
    }

    #[test]
    fn a_smoke_test_gets_a_temporary_route_on_the_venerable_only() {
        let mut obs = observed();
        let mut r = req();
        r.smoke_test_path = Some("/health".into());
        assert_eq!(
            plan(&obs, &r),
            Err(RollbackError::Plan(PlanError::NoRouteForSmokeTest(
                "web".into()
            )))
        );
        let live = obs.live.clone().unwrap();
        let addr = temp_address("web", Some(&live), None, "-temp").unwrap();
        assert_eq!(addr.url(), "web-temp.example.com");
        obs.temp_route = Some((addr.clone(), None));
        let p = plan(&obs, &r).unwrap();
        assert_eq!(
            kinds(&p)[..6],
            [
                "reinstate",
                "create_route",
                "map_route",
                "start_existing",
                "wait_healthy",
                "smoke_test"
            ]
        );
        assert_eq!(
            p.apps[0].temp_route.as_deref(),
            Some("web-temp.example.com")
        );
        assert!(matches!(
            &p.steps[p.steps.len() - 2].action,
            Action::DeleteRoute { route } if route.address == addr
        ));
        // An existing temp route left on the live app is taken off it first; one on another
        // app is refused.
        obs.temp_route = Some((addr.clone(), Some(route("t", "web-temp", &["A"]))));
        let p = plan(&obs, &r).unwrap();
        assert_eq!(kinds(&p)[1..3], ["unmap_route", "map_route"]);
        assert!(p.commit > 3);
        obs.temp_route = Some((addr, Some(route("t", "web-temp", &["Z"]))));
        assert!(matches!(
            plan(&obs, &r),
            Err(RollbackError::Plan(PlanError::TempRouteInUse { guid, .. })) if guid == "Z"
        ));
    }

    #[test]
    fn refusals_are_clear() {
        let mut obs = observed();
        obs.live = None;
        assert_eq!(
            plan(&obs, &req()),
            Err(RollbackError::NoLiveApp("web".into()))
        );
        let mut obs = observed();
        obs.venerable = None;
        let e = plan(&obs, &req()).unwrap_err();
        assert!(e.to_string().contains("--old-app stop or keep"), "{e}");
        let mut obs = observed();
        if let Some(v) = obs.venerable.as_mut() {
            v.app
                .annotations
                .insert(APP_ANNOTATION.into(), "other".into());
        }
        let e = plan(&obs, &req()).unwrap_err();
        assert!(matches!(e, RollbackError::NotOurVenerable { .. }), "{e}");
        assert!(e.to_string().contains("never touched"), "{e}");
        let mut obs = observed();
        obs.candidate = Some(app("X", "web-candidate", AppState::Started));
        assert!(matches!(
            plan(&obs, &req()),
            Err(RollbackError::Plan(PlanError::NameClash { .. }))
        ));
        if let Some(c) = obs.candidate.as_mut() {
            c.labels.insert(ROLE_LABEL.into(), ROLE_CANDIDATE.into());
            c.annotations.insert(APP_ANNOTATION.into(), "web".into());
        }
        assert!(matches!(
            plan(&obs, &req()),
            Err(RollbackError::DeployInProgress { .. })
        ));
    }

    #[test]
    fn an_app_without_routes_only_swaps_names() {
        let mut obs = observed();
        if let Some(l) = obs.live.as_mut() {
            l.routes.clear();
        }
        let p = plan(&obs, &req()).unwrap();
        assert!(!kinds(&p).contains(&"drain"));
        assert_eq!(p.commit, 3);
        assert!(p.warnings.iter().any(|w| w.contains("serves no route")));
    }
}
