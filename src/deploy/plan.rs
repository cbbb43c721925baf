//! Plan: the pure decision. `plan(&Observed, &DeployRequest, &[AppSpec])` turns the snapshot
//! into a linear list of [`Step`]s and the index after which nothing is undone any more.
//!
//! The order implements docs/DESIGN.md section 2: for every app the candidate is prepared (leftover
//! clean-up, temp route, apply_manifest, carry-over of SSH/metadata/network policies, package,
//! bits, staging, start); then every candidate is waited for and smoke-tested; only then are
//! production routes mapped to every candidate and unmapped from every old app. That last unmap
//! is the commit point: a failure before it rolls everything back, a failure after it leaves the
//! new version serving with named leftovers. Then drain, stop/retire the old apps, delete the
//! temp routes and rename the candidates. [`Plan::concurrent`] names the ranges whose apps the
//! executor may run at the same time (`--parallel`): prepare with verify, and the retire.
//!
//! Depends on: deploy::observe (data), deploy::step, deploy::route. Must not: do I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use super::request::{OldApp, Strategy};

use super::analysis::AnalysisConfig;
use super::api::{AppGuid, Destination, MetadataUpdate};
use super::observe::{
    APP_ANNOTATION, ExistingApp, Observed, ObservedApp, ROLE_CANDIDATE, ROLE_LABEL, ROLE_VENERABLE,
    candidate_name, venerable_name,
};
use super::request::{AppSpec, DeployRequest, RenderRequest, RouteSpec};
use super::route::{RouteAddress, production_route_strings, resolve_route, temp_route_string};
use super::step::{Action, AppRef, PolicyEnd, PolicyTemplate, RouteRef, Step, fmt_duration};

/// Why no plan could be made. Nothing has been changed when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A strategy given to the planner of another strategy (blue-green: [`plan`]; rolling and
    /// canary: `rolling::plan`).
    #[error("strategy {0} is not planned by this planner")]
    UnsupportedStrategy(String),
    /// Nothing to deploy.
    #[error("no app to deploy: the manifest has no applications")]
    NoApps,
    /// The same app twice.
    #[error("app '{0}' appears more than once in the manifest")]
    DuplicateApp(String),
    /// A route's domain does not exist.
    #[error("app '{app}': route '{route}' does not match any domain visible to this org")]
    UnknownDomain {
        app: String,
        /// Route string.
        route: String,
    },
    /// The default route is needed but the org has no default domain.
    #[error("app '{0}': no default domain to build the route from; add 'routes:' to the manifest")]
    NoDefaultDomain(String),
    /// An app of the user's carries a name the flow needs.
    #[error(
        "app '{app}': an app named '{name}' (guid {guid}) already exists and was not created by cf-zero-downtime; rename or delete it, it is never touched automatically"
    )]
    NameClash {
        app: String,
        /// The clashing name.
        name: String,
        guid: AppGuid,
    },
    /// The temporary route is mapped to an app that is not ours.
    #[error(
        "app '{app}': the temporary route {route} is mapped to another app (guid {guid}); choose another --temp-route-suffix"
    )]
    TempRouteInUse {
        app: String,
        route: String,
        /// The app it is mapped to.
        guid: AppGuid,
    },
    /// A smoke test needs a route.
    #[error("app '{0}': a smoke test needs a route, but the app has none")]
    NoRouteForSmokeTest(String),
}

/// How one app is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppPlanKind {
    /// No live app: a plain push with the app's name and routes.
    FirstDeploy,
    /// Candidate, switch, retire.
    Swap,
    /// The live app is updated in place by a Cloud Controller rolling deployment.
    Rolling,
    /// The live app is updated in place by a Cloud Controller canary deployment.
    Canary,
    /// `zero-downtime-rollback`: the kept previous version takes the routes and the name back.
    Rollback,
}

impl fmt::Display for AppPlanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AppPlanKind::FirstDeploy => "first deploy",
            AppPlanKind::Swap => "blue-green swap",
            AppPlanKind::Rolling => "rolling deployment (same app GUID)",
            AppPlanKind::Canary => "canary deployment (same app GUID)",
            AppPlanKind::Rollback => "rollback to the previous version",
        })
    }
}

/// The summary of one app's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPlan {
    pub name: String,
    /// First deploy or swap.
    pub kind: AppPlanKind,
    /// The candidate's name (swap).
    pub candidate: Option<String>,
    /// The temporary route (swap).
    pub temp_route: Option<String>,
    /// Production routes the new version will serve.
    pub routes: Vec<String>,
}

/// A plan: steps, the commit point, per-app summaries and warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Steps before this index are undone on failure; from it on, failures leave leftovers.
    pub commit: usize,
    /// Per app.
    pub apps: Vec<AppPlan>,
    /// Warnings to show before executing.
    pub warnings: Vec<String>,
    /// Step ranges whose apps may run concurrently (`--parallel`): in each, the steps of one
    /// app depend only on that app's earlier steps, so the executor may run every app's
    /// steps of the range in their order, several apps at a time. A range holds app steps
    /// only, never the commit point inside it, and the ranges do not overlap.
    pub concurrent: Vec<Range<usize>>,
}

impl Plan {
    /// One line per app: how it is deployed, candidate, temp route, routes.
    pub fn summary_lines(&self) -> Vec<String> {
        self.apps
            .iter()
            .map(|a| {
                let mut l = format!("{}: {}", a.name, a.kind);
                if let Some(c) = &a.candidate {
                    l.push_str(&format!(", candidate {c}"));
                }
                if let Some(t) = &a.temp_route {
                    l.push_str(&format!(", temporary route {t}"));
                }
                if !a.routes.is_empty() {
                    l.push_str(&format!(", routes {}", a.routes.join(", ")));
                }
                l
            })
            .collect()
    }

    /// One numbered line per step, with a marker at the commit point.
    pub fn step_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            if i == self.commit && self.commit < self.steps.len() {
                out.push(
                    "-- the old version stops serving here; no rollback after this point --".into(),
                );
            }
            out.push(format!("{:>2}. {}", i + 1, s.describe()));
        }
        out
    }
}

/// Our own metadata keys, which the candidate does not copy from the live app.
fn our_keys(k: &str) -> bool {
    k == ROLE_LABEL || k == APP_ANNOTATION || super::lock::LOCK_ANNOTATIONS.contains(&k)
}

/// The route and destination template of one route the new version takes over.
struct Move {
    route: RouteRef,
    from: Vec<(String, Destination)>,
}

/// The steps of every phase, filled app by app; [`Phases::into_plan`] orders them.
#[derive(Default)]
struct Phases {
    /// Leftover clean-up, temp route, candidate, carry-over, bits.
    prepare: Vec<Step>,
    /// Health wait and smoke test.
    verify: Vec<Step>,
    /// New destinations on the production routes.
    map: Vec<Step>,
    /// Old destinations removed (the last one is the commit point).
    unmap: Vec<Step>,
    /// The retire after the drain.
    finish: Vec<Step>,
    /// The tasks after the switch, once every app is retired.
    after: Vec<Step>,
    /// Checks before any change (canary analysis: the request records can be read).
    preflight: Vec<Step>,
    /// Canary analysis steps between the map and the unmap.
    canary: Vec<Step>,
    summaries: Vec<AppPlan>,
    warnings: Vec<String>,
    any_swap: bool,
}

/// Decides what to do. Pure.
///
/// # Errors
/// See [`PlanError`]; nothing has been changed when it fails.
pub fn plan<B>(
    obs: &Observed,
    req: &DeployRequest,
    apps: &[AppSpec<B>],
) -> Result<Plan, PlanError> {
    check_request(req, apps)?;
    let mut ph = Phases::default();
    for spec in apps {
        plan_app(&mut ph, obs, req, spec)?;
    }
    Ok(ph.into_plan(req))
}

/// The strategy is blue-green and the apps are named once each.
fn check_request<B>(req: &DeployRequest, apps: &[AppSpec<B>]) -> Result<(), PlanError> {
    if req.strategy != Strategy::BlueGreen {
        return Err(PlanError::UnsupportedStrategy(
            req.strategy.as_str().to_string(),
        ));
    }
    if apps.is_empty() {
        return Err(PlanError::NoApps);
    }
    let mut seen = BTreeSet::new();
    for a in apps {
        if !seen.insert(a.name.as_str()) {
            return Err(PlanError::DuplicateApp(a.name.clone()));
        }
    }

    Ok(())
}

/// The steps of one manifest app: a first deploy, or a candidate that takes over the routes
/// of the live app (and of serving leftovers) and then retires them.
fn plan_app<B>(
    ph: &mut Phases,
    obs: &Observed,
    req: &DeployRequest,
    spec: &AppSpec<B>,
) -> Result<(), PlanError> {
    let name = spec.name.clone();
    let Some(oa) = obs.apps.iter().find(|o| o.name == spec.name) else {
        // Observe always records every app; a missing one is a caller error.
        return Err(PlanError::NoApps);
    };

    let production = production_routes(obs, spec)?;

    // Names we need must not belong to someone else.
    let cand = candidate_name(&name);
    let ven = venerable_name(&name);
    for f in &oa.foreign_names {
        if f.name == cand || (f.name == ven && req.old_app != OldApp::Delete) {
            return Err(PlanError::NameClash {
                app: name.clone(),
                name: f.name.clone(),
                guid: f.guid.clone(),
            });
        }
    }

    let temp = temp_route_string(
        spec,
        &req.temp_route_suffix,
        &obs.domains,
        obs.default_domain.as_ref(),
    );
    let temp_url = temp
        .as_deref()
        .and_then(|t| resolve_route(t, &obs.domains))
        .map(|a| a.url());
    let serves = |e: &ExistingApp| {
        e.routes
            .iter()
            .any(|r| Some(&r.route.url) != temp_url.as_ref())
    };
    let (serving, idle): (Vec<&ExistingApp>, Vec<&ExistingApp>) =
        oa.leftover_candidates.iter().partition(|e| serves(e));
    for e in &idle {
        ph.prepare.push(Step::new(
            name.clone(),
            Action::DeleteLeftover {
                guid: e.app.guid.clone(),
                name: e.app.name.clone(),
            },
        ));
    }

    let mut retirees: Vec<&ExistingApp> = Vec::new();
    if let Some(l) = &oa.live {
        retirees.push(l);
    }
    retirees.extend(serving.iter().copied());

    if retirees.is_empty() {
        return first_deploy(ph, obs, req, spec, &production);
    }
    ph.any_swap = true;
    let primary = retirees[0];
    // A serving leftover that holds the candidate name gives it up first (undone on rollback).
    for e in &serving {
        if e.app.name == cand {
            let short: String = e.app.guid.as_str().chars().take(8).collect();
            ph.prepare.push(Step::new(
                name.clone(),
                Action::RenameApp {
                    target: AppRef::Existing {
                        guid: e.app.guid.clone(),
                        name: e.app.name.clone(),
                    },
                    from: e.app.name.clone(),
                    to: format!("{name}-leftover-{short}"),
                    metadata: MetadataUpdate::default(),
                },
            ));
        }
    }

    let temp_ref = temp_route(ph, obs, req, spec, oa, temp)?;
    candidate(ph, req, spec, primary, temp_ref.as_ref())?;
    let moves = route_moves(ph, obs, spec, &retirees, &production, temp_url.as_ref());
    push_moves(ph, &name, &moves);
    if let Some(a) = &req.analysis {
        canary_steps(ph, a, &name, primary, !moves.is_empty());
    }
    retire(ph, req, oa, &name, temp_ref.as_ref(), &serving);
    ph.summaries.push(AppPlan {
        name: name.clone(),
        kind: AppPlanKind::Swap,
        candidate: Some(cand),
        temp_route: temp_ref.map(|t| t.address.url()),
        routes: moves.iter().map(|m| m.route.address.url()).collect(),
    });
    Ok(())
}

/// A first deploy (no live app): a plain push with the app's own name and routes.
fn first_deploy<B>(
    ph: &mut Phases,
    obs: &Observed,
    req: &DeployRequest,
    spec: &AppSpec<B>,
    production: &[RouteAddress],
) -> Result<(), PlanError> {
    let name = spec.name.clone();
    // First deploy: a plain push with the app's own name and routes.
    for a in production {
        if !obs.routes.contains_key(&a.url()) {
            ph.prepare.push(Step::new(
                name.clone(),
                Action::CreateRoute {
                    route: a.clone(),
                    temporary: false,
                },
            ));
        }
    }
    let render = RenderRequest {
        name: name.clone(),
        routes: production.iter().map(RouteAddress::url).collect(),
        no_route: spec.routes == RouteSpec::NoRoute,
        random_route: spec.routes == RouteSpec::Random,
        ..RenderRequest::default()
    };
    ph.prepare
        .push(Step::new(name.clone(), Action::ApplyManifest { render }));
    push_bits_steps(&mut ph.prepare, spec);
    ph.verify.push(Step::new(name.clone(), Action::WaitHealthy));
    if req.has_smoke_test() {
        let r = production
            .first()
            .ok_or_else(|| PlanError::NoRouteForSmokeTest(name.clone()))?;
        ph.verify.push(Step::new(
            name.clone(),
            Action::SmokeTest { route: r.url() },
        ));
    }
    push_task_steps(&mut ph.verify, req, &name);
    push_after_switch_tasks(&mut ph.after, req, &name);
    ph.summaries.push(AppPlan {
        name: name.clone(),
        kind: AppPlanKind::FirstDeploy,
        candidate: None,
        temp_route: None,
        routes: production.iter().map(RouteAddress::url).collect(),
    });
    Ok(())
}

/// The temporary route of the candidate: needed unless the app has no routes and no smoke
/// test asks for one. An existing one is reused (unmapped from the live app first).
fn temp_route<B>(
    ph: &mut Phases,
    obs: &Observed,
    req: &DeployRequest,
    spec: &AppSpec<B>,
    oa: &ObservedApp,
    temp: Option<String>,
) -> Result<Option<RouteRef>, PlanError> {
    let name = spec.name.clone();
    let wants_temp = spec.routes != RouteSpec::NoRoute || req.has_smoke_test();
    let mut temp_ref = None;
    if wants_temp {
        let t = temp
            .clone()
            .ok_or_else(|| PlanError::NoDefaultDomain(name.clone()))?;
        let addr = resolve_route(&t, &obs.domains)
            .ok_or_else(|| PlanError::NoDefaultDomain(name.clone()))?;
        match obs.routes.get(&addr.url()) {
            Some(existing) => {
                let ours: BTreeSet<&str> = oa
                    .leftover_candidates
                    .iter()
                    .map(|e| e.app.guid.as_str())
                    .collect();
                // A retire that did not finish can leave the temp route on the version
                // that now serves (it was the candidate): take it off before the new
                // candidate uses the route, or the smoke test would reach the live app.
                let live = oa.live.as_ref().map(|l| &l.app);
                if let Some(d) = existing.destinations.iter().find(|d| {
                    !ours.contains(d.app_guid.as_str()) && live.is_none_or(|l| l.guid != d.app_guid)
                }) {
                    return Err(PlanError::TempRouteInUse {
                        app: name.clone(),
                        route: addr.url(),
                        guid: d.app_guid.clone(),
                    });
                }
                let route = RouteRef {
                    address: addr,
                    guid: Some(existing.route.guid.clone()),
                };
                if let Some(l) = live {
                    for d in existing
                        .destinations
                        .iter()
                        .filter(|d| d.app_guid == l.guid)
                    {
                        ph.warnings.push(format!(
                            "the temporary route {} is still mapped to app '{}' (left by an earlier deploy): it is unmapped first",
                            route.address.url(),
                            l.name
                        ));
                        ph.prepare.push(Step::new(
                            name.clone(),
                            Action::UnmapRoute {
                                route: route.clone(),
                                from_name: l.name.clone(),
                                destination: d.clone(),
                            },
                        ));
                    }
                }
                temp_ref = Some(route);
            }
            None => {
                ph.prepare.push(Step::new(
                    name.clone(),
                    Action::CreateRoute {
                        route: addr.clone(),
                        temporary: true,
                    },
                ));
                temp_ref = Some(RouteRef {
                    address: addr,
                    guid: None,
                });
            }
        }
    }

    Ok(temp_ref)
}

/// The candidate: the manifest applied under the candidate name, what a new GUID loses
/// (SSH, metadata, network policies) carried over, bits, and its verification.
fn candidate<B>(
    ph: &mut Phases,
    req: &DeployRequest,
    spec: &AppSpec<B>,
    primary: &ExistingApp,
    temp_ref: Option<&RouteRef>,
) -> Result<(), PlanError> {
    let name = spec.name.clone();
    let cand = candidate_name(&name);
    let mut instances = BTreeMap::new();
    if req.keep_scale {
        for p in &primary.processes {
            instances.insert(p.process.process_type.clone(), p.process.instances);
        }
    }
    let render = RenderRequest {
        name: cand.clone(),
        routes: temp_ref.iter().map(|t| t.address.url()).collect(),
        no_route: temp_ref.is_none(),
        random_route: false,
        labels: BTreeMap::from([(ROLE_LABEL.to_string(), ROLE_CANDIDATE.to_string())]),
        annotations: BTreeMap::from([(APP_ANNOTATION.to_string(), name.clone())]),
        instances,
    };
    ph.prepare
        .push(Step::new(name.clone(), Action::ApplyManifest { render }));

    // Carry over what a new GUID loses.
    ph.prepare.push(Step::new(
        name.clone(),
        Action::SetSsh {
            enabled: primary.ssh_enabled,
        },
    ));
    let update = MetadataUpdate {
        labels: primary
            .app
            .labels
            .iter()
            .filter(|(k, _)| !our_keys(k))
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect(),
        annotations: primary
            .app
            .annotations
            .iter()
            .filter(|(k, _)| !our_keys(k))
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect(),
    };
    if !update.is_empty() {
        ph.prepare
            .push(Step::new(name.clone(), Action::CopyMetadata { update }));
    }
    let old = &primary.app.guid;
    let end = |g: &AppGuid| {
        if g == old {
            PolicyEnd::Candidate
        } else {
            PolicyEnd::App(g.clone())
        }
    };
    let policies: Vec<PolicyTemplate> = primary
        .policies
        .iter()
        .filter(|p| &p.source_app == old || &p.destination_app == old)
        .map(|p| PolicyTemplate {
            source: end(&p.source_app),
            destination: end(&p.destination_app),
            protocol: p.protocol.clone(),
            start_port: p.start_port,
            end_port: p.end_port,
        })
        .collect();
    if !policies.is_empty() {
        ph.prepare.push(Step::new(
            name.clone(),
            Action::CopyNetworkPolicies { policies },
        ));
    }
    push_bits_steps(&mut ph.prepare, spec);

    ph.verify.push(Step::new(name.clone(), Action::WaitHealthy));
    if req.has_smoke_test() {
        let t = temp_ref
            .as_ref()
            .ok_or_else(|| PlanError::NoRouteForSmokeTest(name.clone()))?;
        ph.verify.push(Step::new(
            name.clone(),
            Action::SmokeTest {
                route: t.address.url(),
            },
        ));
    }
    push_task_steps(&mut ph.verify, req, &name);
    push_after_switch_tasks(&mut ph.after, req, &name);

    Ok(())
}

/// The release tasks of `app` (`--task-before-switch`), after its health wait and smoke
/// test: the verify phase of every app ends before any route moves, so a failed task of any
/// app leaves every app on its old version.
fn push_task_steps(steps: &mut Vec<Step>, req: &DeployRequest, app: &str) {
    for (i, command) in req.tasks.before_switch.iter().enumerate() {
        steps.push(Step::new(
            app.to_string(),
            Action::RunTask {
                command: command.clone(),
                name: format!("zdt-migrate-{}", i + 1),
                after_switch: false,
            },
        ));
    }
}

/// The tasks of `app` after the switch (`--task-after-switch`): after the retire of every
/// app, on the new version under the app's name.
fn push_after_switch_tasks(steps: &mut Vec<Step>, req: &DeployRequest, app: &str) {
    for (i, command) in req.tasks.after_switch.iter().enumerate() {
        steps.push(Step::new(
            app.to_string(),
            Action::RunTask {
                command: command.clone(),
                name: format!("zdt-after-switch-{}", i + 1),
                after_switch: true,
            },
        ));
    }
}

/// Routes the new version takes over: the manifest's plus those the old apps serve.
fn route_moves<B>(
    ph: &mut Phases,
    obs: &Observed,
    spec: &AppSpec<B>,
    retirees: &[&ExistingApp],
    production: &[RouteAddress],
    temp_url: Option<&String>,
) -> Vec<Move> {
    let retiree_guids: BTreeSet<&str> = retirees.iter().map(|e| e.app.guid.as_str()).collect();
    let mut moves: Vec<Move> = Vec::new();
    for a in production {
        let existing = obs.routes.get(&a.url());
        moves.push(Move {
            route: RouteRef {
                address: a.clone(),
                guid: existing.map(|r| r.route.guid.clone()),
            },
            from: Vec::new(),
        });
    }
    for e in retirees {
        for rs in &e.routes {
            if Some(&rs.route.url) == temp_url {
                continue;
            }
            let idx = match moves.iter().position(|m| {
                m.route.guid.as_ref() == Some(&rs.route.guid)
                    || m.route.address.url() == rs.route.url
            }) {
                Some(i) => i,
                None => {
                    if spec.routes != RouteSpec::Random {
                        ph.warnings.push(format!(
                            "route {} is mapped to app {} but not in the manifest; the new version gets it too",
                            rs.route.url, e.app.name
                        ));
                    }
                    let address = address_of(&rs.route, obs);
                    moves.push(Move {
                        route: RouteRef {
                            address,
                            guid: Some(rs.route.guid.clone()),
                        },
                        from: Vec::new(),
                    });
                    moves.len() - 1
                }
            };
            let m = &mut moves[idx];
            m.route.guid = Some(rs.route.guid.clone());
            for d in &rs.destinations {
                if retiree_guids.contains(d.app_guid.as_str())
                    && d.app_guid == e.app.guid
                    && !m.from.iter().any(|(_, x)| x.guid == d.guid)
                {
                    m.from.push((e.app.name.clone(), d.clone()));
                }
            }
        }
    }
    moves
}

/// Map steps (a created route first when it does not exist) and unmap steps of the moves.
fn push_moves(ph: &mut Phases, name: &str, moves: &[Move]) {
    for m in moves {
        if m.route.guid.is_none() {
            ph.map.push(Step::new(
                name,
                Action::CreateRoute {
                    route: m.route.address.clone(),
                    temporary: false,
                },
            ));
        }
        let mut process_types: Vec<(String, Option<u32>, Option<String>)> = Vec::new();
        for (_, d) in &m.from {
            let t = (d.process_type.clone(), d.port, d.protocol.clone());
            if !process_types.contains(&t) {
                process_types.push(t);
            }
        }
        if process_types.is_empty() {
            process_types.push(("web".into(), None, None));
        }
        for (process_type, port, protocol) in process_types {
            ph.map.push(Step::new(
                name,
                Action::MapRoute {
                    route: m.route.clone(),
                    process_type,
                    port,
                    protocol,
                },
            ));
        }
        for (from_name, d) in &m.from {
            ph.unmap.push(Step::new(
                name,
                Action::UnmapRoute {
                    route: m.route.clone(),
                    from_name: from_name.clone(),
                    destination: d.clone(),
                },
            ));
        }
    }
}

/// Canary analysis of a swap: the request records are checked before any change; after the
/// health wait and smoke test the candidate is scaled to the first step's share, then (once
/// the production routes are mapped to it, the live app keeping all its instances) each step
/// below 100 % is judged and followed by the scale of the next; the last scale restores the
/// candidate's full count before the unmap (the switch). The live app is not scaled down
/// before the switch, so a rollback only has to unmap the candidate.
fn canary_steps(
    ph: &mut Phases,
    a: &AnalysisConfig,
    name: &str,
    primary: &ExistingApp,
    has_routes: bool,
) {
    if !has_routes {
        ph.warnings.push(format!(
            "app '{name}' has no production route: no canary analysis for it"
        ));
        return;
    }
    let steps: Vec<u32> = a.steps.clone();
    if steps.first().is_none_or(|p| *p >= 100) {
        ph.warnings.push(format!(
            "--canary-steps has no step below 100%: app '{name}' is switched without analysis"
        ));
        return;
    }
    let live = primary.app.guid.clone();
    let live_name = primary.app.name.clone();
    ph.preflight.push(Step::new(
        name,
        Action::CheckRequestRecords {
            live: live.clone(),
            live_name: live_name.clone(),
        },
    ));
    ph.verify.push(Step::new(
        name,
        Action::ScaleCandidate {
            percent: steps[0],
            live: live.clone(),
        },
    ));
    for (i, pair) in steps.windows(2).enumerate() {
        ph.canary.push(Step::new(
            name,
            Action::AnalyseCanary {
                step: i + 1,
                steps: steps.len(),
                percent: pair[0],
                live: live.clone(),
                live_name: live_name.clone(),
            },
        ));
        ph.canary.push(Step::new(
            name,
            Action::ScaleCandidate {
                percent: pair[1],
                live: live.clone(),
            },
        ));
    }
}

/// The retire: see the comment at its start.
fn retire(
    ph: &mut Phases,
    req: &DeployRequest,
    oa: &ObservedApp,
    name: &str,
    temp_ref: Option<&RouteRef>,
    serving: &[&ExistingApp],
) {
    let name = name.to_string();
    let cand = candidate_name(&name);
    let ven = venerable_name(&name);
    // Retire. The new version takes the app's name first: the old app is renamed out of the
    // way, the candidate renamed to the app's name, and only then is anything stopped or
    // deleted. Each rename carries the role label change in the same PATCH (Cloud Controller
    // applies both or neither), so an interrupted run leaves either an app still called <app>
    // (treated as the live app) or a labelled venerable, never an unlabelled
    // `<app>-venerable` that the next run would have to refuse, nor a candidate-named app.
    let mut retire_old: Vec<Step> = Vec::new();
    if let Some(live) = &oa.live {
        let (g, n) = (live.app.guid.clone(), live.app.name.clone());
        for v in oa.venerables.iter().filter(|v| v.name == ven) {
            ph.finish.push(Step::new(
                name.clone(),
                Action::DeleteApp {
                    guid: v.guid.clone(),
                    name: v.name.clone(),
                },
            ));
        }
        ph.finish.push(Step::new(
            name.clone(),
            Action::RenameApp {
                target: AppRef::Existing {
                    guid: g.clone(),
                    name: n.clone(),
                },
                from: n,
                to: ven.clone(),
                metadata: MetadataUpdate {
                    labels: BTreeMap::from([(
                        ROLE_LABEL.to_string(),
                        Some(ROLE_VENERABLE.to_string()),
                    )]),
                    annotations: BTreeMap::from([(APP_ANNOTATION.to_string(), Some(name.clone()))]),
                },
            },
        ));
        retire_old = old_app_steps(req, &name, &g, &ven);
    }
    // The run's lock marks leave the new version with this rename when the old app keeps
    // holding the lock until the run is done with the app: it carries the marks until it is
    // deleted (or, kept, until the run's end), and nothing of the app follows its delete (no
    // serving leftover to retire, no after-switch task). Otherwise the run's end removes them.
    let unlock = oa.live.is_some() && serving.is_empty() && req.tasks.after_switch.is_empty();
    let annotations = if unlock {
        super::lock::LOCK_ANNOTATIONS
            .iter()
            .map(|k| ((*k).to_string(), None))
            .collect()
    } else {
        BTreeMap::new()
    };
    ph.finish.push(Step::new(
        name.clone(),
        Action::RenameApp {
            target: AppRef::New { app: name.clone() },
            from: cand.clone(),
            to: name.clone(),
            metadata: MetadataUpdate {
                labels: BTreeMap::from([(ROLE_LABEL.to_string(), None)]),
                annotations,
            },
        },
    ));
    if let Some(t) = temp_ref {
        ph.finish.push(Step::new(
            name.clone(),
            Action::DeleteRoute {
                route: (*t).clone(),
            },
        ));
    }
    ph.finish.extend(retire_old);
    for e in serving {
        let leftover_name = finish_name(&ph.prepare, &e.app.guid).unwrap_or(e.app.name.clone());
        ph.finish.push(Step::new(
            name.clone(),
            Action::StopApp {
                guid: e.app.guid.clone(),
                name: leftover_name.clone(),
            },
        ));
        ph.finish.push(Step::new(
            name.clone(),
            Action::DeleteApp {
                guid: e.app.guid.clone(),
                name: leftover_name,
            },
        ));
    }
}

impl Phases {
    /// The plan: prepare, verify, map, unmap (the commit point), drain, finish, after.
    fn into_plan(self, req: &DeployRequest) -> Plan {
        let Phases {
            prepare,
            verify,
            map,
            unmap,
            finish,
            after,
            preflight,
            canary,
            summaries,
            mut warnings,
            any_swap,
        } = self;
        let mut steps = preflight;
        let mut concurrent = Vec::new();
        // Each app's candidate is prepared and verified on its own; the switch (map, canary,
        // unmap) goes app after app in plan order, which is part of the contract.
        let start = steps.len();
        steps.extend(prepare);
        steps.extend(verify);
        concurrent.push(start..steps.len());
        steps.extend(map);
        steps.extend(canary);
        steps.extend(unmap);
        let commit = steps.len();
        if any_swap && !req.drain.is_zero() {
            steps.push(Step::global(drain_action(req)));
        }
        // After the drain, each app's retire touches that app's versions and temporary route
        // only.
        let start = steps.len();
        steps.extend(finish);
        concurrent.push(start..steps.len());
        concurrent.retain(|r| !r.is_empty());
        steps.extend(after);
        if any_swap && req.drain.is_zero() {
            warnings.push(format!(
                "--drain is {}: the old version stops before routers may have seen the switch",
                fmt_duration(req.drain)
            ));
        }
        Plan {
            steps,
            commit,
            apps: summaries,
            warnings,
            concurrent,
        }
    }
}

/// What `--old-app` does to the version replaced (now `ven_name`) once the switch is done:
/// stop it (`stop`), delete it (`delete`; deleting stops its instances), or nothing (`keep`).
pub(crate) fn old_app_steps(
    req: &DeployRequest,
    app: &str,
    guid: &AppGuid,
    ven_name: &str,
) -> Vec<Step> {
    let mut steps = Vec::new();
    // `--old-app delete` deletes without a stop first: Cloud Controller stops the instances
    // of an app it deletes, and the drain before the retire has already ended.
    if req.old_app == OldApp::Stop {
        steps.push(Step::new(
            app,
            Action::StopApp {
                guid: guid.clone(),
                name: ven_name.to_string(),
            },
        ));
    }
    if req.old_app == OldApp::Delete {
        steps.push(Step::new(
            app,
            Action::DeleteApp {
                guid: guid.clone(),
                name: ven_name.to_string(),
            },
        ));
    }
    steps
}

/// The drain after a switch: `--drain auto[:MAX]` or a fixed `--drain`.
pub(crate) fn drain_action(req: &DeployRequest) -> Action {
    if req.drain_auto {
        Action::DrainAuto { max: req.drain }
    } else {
        Action::Drain {
            duration: req.drain,
        }
    }
}

fn finish_name(prepare: &[Step], guid: &AppGuid) -> Option<String> {
    prepare.iter().find_map(|s| match &s.action {
        Action::RenameApp {
            target: AppRef::Existing { guid: g, .. },
            to,
            ..
        } if g == guid => Some(to.clone()),
        _ => None,
    })
}

pub(crate) fn address_of(route: &super::api::Route, obs: &Observed) -> RouteAddress {
    let domain = obs
        .domains
        .iter()
        .find(|d| d.guid == route.domain_guid)
        .map(|d| d.name.clone())
        .unwrap_or_else(|| {
            // Derive the domain from the url when the domain was not looked up.
            let base = route.url.split('/').next().unwrap_or_default();
            let base = base.split(':').next().unwrap_or_default();
            if route.host.is_empty() {
                base.to_string()
            } else {
                base.strip_prefix(&format!("{}.", route.host))
                    .unwrap_or(base)
                    .to_string()
            }
        });
    RouteAddress {
        host: route.host.clone(),
        domain,
        domain_guid: route.domain_guid.clone(),
        path: route.path.clone(),
        port: route.port,
    }
}

fn push_bits_steps<B>(steps: &mut Vec<Step>, spec: &AppSpec<B>) {
    let app = spec.name.clone();
    steps.push(Step::new(app.clone(), Action::CreatePackage));
    if spec.is_bits() {
        steps.push(Step::new(app.clone(), Action::UploadBits));
    }
    steps.push(Step::new(app.clone(), Action::Stage));
    steps.push(Step::new(app.clone(), Action::SetDroplet));
    steps.push(Step::new(app, Action::Start));
}

/// The app's production routes (manifest routes, or the default route), resolved against the
/// observed domains, without duplicates.
pub(crate) fn production_routes<B>(
    obs: &Observed,
    spec: &AppSpec<B>,
) -> Result<Vec<RouteAddress>, PlanError> {
    if spec.routes == RouteSpec::Default && obs.default_domain.is_none() {
        return Err(PlanError::NoDefaultDomain(spec.name.clone()));
    }
    let mut production: Vec<RouteAddress> = Vec::new();
    for r in production_route_strings(spec, obs.default_domain.as_ref()) {
        let a = resolve_route(&r, &obs.domains).ok_or_else(|| PlanError::UnknownDomain {
            app: spec.name.clone(),
            route: r.clone(),
        })?;
        if !production.contains(&a) {
            production.push(a);
        }
    }
    Ok(production)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::deploy::api::{App, AppSource, AppState, Domain, NetworkPolicy, Process};
    use crate::deploy::observe::{ObservedApp, ProcessState, RouteState};

    fn req() -> DeployRequest {
        DeployRequest::for_tests()
    }

    fn spec(name: &str, routes: &[&str]) -> AppSpec<()> {
        AppSpec {
            name: name.into(),
            routes: RouteSpec::Routes(routes.iter().map(|s| s.to_string()).collect()),
            instances: BTreeMap::new(),
            memory_mb: BTreeMap::new(),
            source: AppSource::Bits(()),
            cnb: false,
            render: Arc::new(|_| Ok(String::new())),
        }
    }

    fn app(guid: &str, name: &str) -> App {
        App {
            guid: guid.into(),
            name: name.into(),
            state: AppState::Started,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    fn ours(guid: &str, name: &str, role: &str, of: &str) -> App {
        let mut a = app(guid, name);
        a.labels.insert(ROLE_LABEL.into(), role.into());
        a.annotations.insert(APP_ANNOTATION.into(), of.into());
        a
    }

    fn route_state(guid: &str, host: &str, apps: &[&str]) -> RouteState {
        RouteState::for_tests(guid, host, apps)
    }

    fn existing(a: App, routes: Vec<RouteState>) -> ExistingApp {
        ExistingApp {
            app: a,
            routes,
            processes: vec![ProcessState {
                process: Process {
                    guid: "p".into(),
                    process_type: "web".into(),
                    instances: 4,
                    memory_mb: Some(64),
                },
            }],
            ssh_enabled: false,
            policies: Vec::new(),
        }
    }

    fn observed(apps: Vec<ObservedApp>) -> Observed {
        let d = Domain {
            guid: "d1".into(),
            name: "example.com".into(),
            internal: false,
        };
        let mut routes = BTreeMap::new();
        for a in &apps {
            for e in a.live.iter().chain(a.leftover_candidates.iter()) {
                for r in &e.routes {
                    routes.insert(r.route.url.clone(), r.clone());
                }
            }
        }
        Observed {
            domains: vec![d.clone()],
            default_domain: Some(d),
            routes,
            apps,
            warnings: Vec::new(),
            quotas: crate::deploy::api::Quotas::default(),
        }
    }

    fn oapp(name: &str, live: Option<ExistingApp>) -> ObservedApp {
        ObservedApp {
            name: name.into(),
            live,
            leftover_candidates: Vec::new(),
            venerables: Vec::new(),
            foreign_names: Vec::new(),
            active_deployment: None,
        }
    }

    fn kinds(p: &Plan) -> Vec<&'static str> {
        p.steps.iter().map(Step::kind).collect()
    }

    #[test]
    fn plan_for_new_app_is_a_plain_push_without_swap() {
        let obs = observed(vec![oapp("web", None)]);
        let p = plan(&obs, &req(), &[spec("web", &["web.example.com"])]).unwrap();
        assert_eq!(
            kinds(&p),
            vec![
                "create_route",
                "apply_manifest",
                "create_package",
                "upload_bits",
                "stage",
                "set_droplet",
                "start",
                "wait_healthy"
            ]
        );
        assert_eq!(p.commit, p.steps.len());
        let Action::ApplyManifest { render, .. } = &p.steps[1].action else {
            panic!("not apply")
        };
        assert_eq!(render.name, "web");
        assert_eq!(render.routes, vec!["web.example.com".to_string()]);
        assert!(render.labels.is_empty());
        assert_eq!(p.apps[0].kind, AppPlanKind::FirstDeploy);
    }

    #[test]
    fn plan_for_live_app_swaps_and_commits_after_the_last_unmap() {
        let live = existing(app("A", "web"), vec![route_state("r1", "web", &["A"])]);
        let obs = observed(vec![oapp("web", Some(live))]);
        let mut r = req();
        r.smoke_test_path = Some("/health".into());
        let p = plan(&obs, &r, &[spec("web", &["web.example.com"])]).unwrap();
        assert_eq!(
            kinds(&p),
            vec![
                "create_route",
                "apply_manifest",
                "set_ssh",
                "create_package",
                "upload_bits",
                "stage",
                "set_droplet",
                "start",
                "wait_healthy",
                "smoke_test",
                "map_route",
                "unmap_route",
                "drain",
                "rename_app",
                "rename_app",
                "delete_route",
                "delete_app"
            ]
        );
        assert_eq!(p.steps[p.commit].kind(), "drain");
        // The old app is labelled venerable by its rename, the candidate unlabelled by its own.
        let renames: Vec<(&str, Option<&Option<String>>)> = p.steps[p.commit..]
            .iter()
            .filter_map(|s| match &s.action {
                Action::RenameApp { to, metadata, .. } => {
                    Some((to.as_str(), metadata.labels.get(ROLE_LABEL)))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            renames,
            vec![
                ("web-venerable", Some(&Some(ROLE_VENERABLE.to_string()))),
                ("web", Some(&None)),
            ]
        );
        let Action::CreateRoute { route, .. } = &p.steps[0].action else {
            panic!("not create_route")
        };
        assert_eq!(route.url(), "web-temp.example.com");
        let Action::ApplyManifest { render, .. } = &p.steps[1].action else {
            panic!("not apply")
        };
        assert_eq!(render.name, "web-candidate");
        assert_eq!(render.routes, vec!["web-temp.example.com".to_string()]);
        assert_eq!(
            render.labels.get(ROLE_LABEL).map(String::as_str),
            Some("candidate")
        );
        assert_eq!(
            render.annotations.get(APP_ANNOTATION).map(String::as_str),
            Some("web")
        );
        assert!(render.instances.is_empty());
        let Action::SmokeTest { route, .. } = &p.steps[9].action else {
            panic!("not smoke")
        };
        assert_eq!(route, "web-temp.example.com");
        assert!(
            p.step_lines()
                .iter()
                .any(|l| l.contains("no rollback after this point"))
        );
    }

    #[test]
    fn plan_keeps_scale_copies_metadata_policies_and_extra_routes() {
        let mut a = app("A", "web");
        a.labels.insert("team".into(), "x".into());
        a.annotations.insert("note".into(), "y".into());
        let mut live = existing(
            a,
            vec![
                route_state("r1", "web", &["A"]),
                route_state("r2", "extra", &["A", "Other"]),
            ],
        );
        live.ssh_enabled = true;
        live.policies = vec![
            NetworkPolicy {
                source_app: "A".into(),
                destination_app: "B".into(),
                protocol: "tcp".into(),
                start_port: 8080,
                end_port: 8080,
            },
            NetworkPolicy {
                source_app: "C".into(),
                destination_app: "A".into(),
                protocol: "tcp".into(),
                start_port: 9000,
                end_port: 9001,
            },
        ];
        let obs = observed(vec![oapp("web", Some(live))]);
        let mut r = req();
        r.keep_scale = true;
        let p = plan(&obs, &r, &[spec("web", &["web.example.com"])]).unwrap();
        let Action::ApplyManifest { render, .. } = &p.steps[1].action else {
            panic!("not apply")
        };
        assert_eq!(render.instances.get("web"), Some(&4));
        assert!(
            p.steps
                .contains(&Step::new("web", Action::SetSsh { enabled: true }))
        );
        let meta = p
            .steps
            .iter()
            .find_map(|s| match &s.action {
                Action::CopyMetadata { update, .. } => Some(update.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(meta.labels.get("team"), Some(&Some("x".to_string())));
        assert_eq!(meta.annotations.get("note"), Some(&Some("y".to_string())));
        let pol = p
            .steps
            .iter()
            .find_map(|s| match &s.action {
                Action::CopyNetworkPolicies { policies, .. } => Some(policies.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(pol[0].source, PolicyEnd::Candidate);
        assert_eq!(pol[0].destination, PolicyEnd::App("B".into()));
        assert_eq!(pol[1].source, PolicyEnd::App("C".into()));
        assert_eq!(pol[1].destination, PolicyEnd::Candidate);
        // The extra route is mapped too, with a warning; only A's destination is removed.
        assert!(p.warnings.iter().any(|w| w.contains("extra.example.com")));
        let unmaps: Vec<String> = p
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::UnmapRoute {
                    destination, route, ..
                } => Some(format!("{}:{}", route.address.url(), destination.app_guid)),
                _ => None,
            })
            .collect();
        assert_eq!(unmaps, vec!["web.example.com:A", "extra.example.com:A"]);
    }

    #[test]
    fn plan_for_multi_app_switches_no_route_before_every_candidate_is_verified() {
        let a = existing(app("A", "web"), vec![route_state("r1", "web", &["A"])]);
        let b = existing(app("B", "api"), vec![route_state("r2", "api", &["B"])]);
        let obs = observed(vec![oapp("web", Some(a)), oapp("api", Some(b))]);
        let mut r = req();
        r.smoke_test = Some("true".into());
        let p = plan(
            &obs,
            &r,
            &[
                spec("web", &["web.example.com"]),
                spec("api", &["api.example.com"]),
            ],
        )
        .unwrap();
        let pos = |k: &str| -> Vec<usize> {
            p.steps
                .iter()
                .enumerate()
                .filter(|(_, s)| s.kind() == k)
                .map(|(i, _)| i)
                .collect()
        };
        let last_smoke = *pos("smoke_test").last().unwrap();
        let first_map = pos("map_route")[0];
        let last_map = *pos("map_route").last().unwrap();
        let first_unmap = pos("unmap_route")[0];
        assert_eq!(pos("smoke_test").len(), 2);
        assert!(last_smoke < first_map);
        assert!(last_map < first_unmap);
        assert_eq!(p.commit, pos("unmap_route").last().unwrap() + 1);
        assert_eq!(pos("drain").len(), 1);

        // Prepare and verify may run app by app at the same time, and so may the retire after
        // the drain; the switch and the drain may not.
        let [before, after] = p.concurrent.as_slice() else {
            panic!("{:?}", p.concurrent)
        };
        assert_eq!(*before, 0..first_map);
        assert_eq!(after.start, pos("drain")[0] + 1);
        assert!(after.end <= p.steps.len() && before.end <= p.commit);
        assert!(
            p.concurrent
                .iter()
                .flat_map(|r| &p.steps[r.clone()])
                .all(|s| s.app.is_some())
        );
        for app in ["web", "api"] {
            for r in &p.concurrent {
                assert!(p.steps[r.clone()].iter().any(|s| s.app_label() == app));
            }
        }
    }

    #[test]
    fn plan_runs_after_switch_tasks_of_every_app_after_every_retire() {
        let a = existing(app("A", "web"), vec![route_state("r1", "web", &["A"])]);
        let obs = observed(vec![oapp("web", Some(a)), oapp("api", None)]);
        let mut r = req();
        r.tasks.before_switch = vec!["migrate".into()];
        r.tasks.after_switch = vec!["warm".into(), "notify".into()];
        let p = plan(
            &obs,
            &r,
            &[
                spec("web", &["web.example.com"]),
                spec("api", &["api.example.com"]),
            ],
        )
        .unwrap();
        let tasks: Vec<(usize, String)> = p
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.kind() == "run_task")
            .map(|(i, s)| (i, s.describe()))
            .collect();
        let after: Vec<&str> = tasks
            .iter()
            .filter(|(i, _)| *i >= p.commit)
            .map(|(_, d)| d.as_str())
            .collect();
        assert_eq!(
            after,
            [
                "Running task zdt-after-switch-1 on web (--task-after-switch)",
                "Running task zdt-after-switch-2 on web (--task-after-switch)",
                "Running task zdt-after-switch-1 on api (--task-after-switch)",
                "Running task zdt-after-switch-2 on api (--task-after-switch)",
            ]
        );
        assert_eq!(tasks.iter().filter(|(i, _)| *i < p.commit).count(), 2);
        let first_after = tasks.iter().find(|(i, _)| *i >= p.commit).unwrap().0;
        assert!(
            p.steps[first_after..]
                .iter()
                .all(|s| s.kind() == "run_task"),
            "the retire of every app comes first: {:#?}",
            p.step_lines()
        );
        // The plan names the tasks, never their commands (they may hold secrets).
        let lines = p.step_lines().join("\n");
        assert!(
            !lines.contains("warm") && !lines.contains("notify"),
            "{lines}"
        );
    }

    #[test]
    fn plan_deletes_idle_leftovers_and_retires_serving_ones() {
        let live = existing(
            app("A", "web"),
            vec![route_state("r1", "web", &["A", "L2"])],
        );
        let mut o = oapp("web", Some(live));
        o.leftover_candidates = vec![
            existing(
                ours("L1", "web-candidate-x", ROLE_CANDIDATE, "web"),
                vec![route_state("t", "web-temp", &["L1"])],
            ),
            existing(
                ours("L2guid0000", "web-candidate", ROLE_CANDIDATE, "web"),
                vec![route_state("r1", "web", &["A", "L2guid0000"])],
            ),
        ];
        // The temp route exists and only our leftover is mapped to it.
        let mut obs = observed(vec![o]);
        obs.routes.insert(
            "web-temp.example.com".into(),
            route_state("t", "web-temp", &["L1"]),
        );
        let p = plan(&obs, &req(), &[spec("web", &["web.example.com"])]).unwrap();
        assert_eq!(
            p.steps[0],
            Step::new(
                "web",
                Action::DeleteLeftover {
                    guid: "L1".into(),
                    name: "web-candidate-x".into()
                }
            )
        );
        assert!(
            matches!(&p.steps[1].action, Action::RenameApp { to, .. } if to == "web-leftover-L2guid00")
        );
        // No temp route creation: it exists.
        assert_eq!(p.steps[2].kind(), "apply_manifest");
        let unmapped: Vec<&str> = p
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::UnmapRoute { destination, .. } => Some(destination.app_guid.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(unmapped, vec!["A", "L2guid0000"]);
        assert!(p.steps[p.commit..].contains(&Step::new(
            "web",
            Action::DeleteApp {
                guid: "L2guid0000".into(),
                name: "web-leftover-L2guid00".into()
            }
        )));
    }

    #[test]
    fn plan_refuses_a_foreign_app_with_a_name_it_needs() {
        let live = existing(app("A", "web"), vec![]);
        let mut o = oapp("web", Some(live));
        o.foreign_names = vec![app("X", "web-venerable")];
        let obs = observed(vec![o.clone()]);
        // Not needed with --old-app delete.
        assert!(plan(&obs, &req(), &[spec("web", &["web.example.com"])]).is_ok());
        let mut r = req();
        r.old_app = OldApp::Stop;
        assert!(matches!(
            plan(&obs, &r, &[spec("web", &["web.example.com"])]),
            Err(PlanError::NameClash { name, .. }) if name == "web-venerable"
        ));
        o.foreign_names = vec![app("Y", "web-candidate")];
        let obs = observed(vec![o]);
        let e = plan(&obs, &req(), &[spec("web", &["web.example.com"])]).unwrap_err();
        assert!(e.to_string().contains("never touched"), "{e}");
    }

    #[test]
    fn plan_with_old_app_stop_replaces_our_venerable_and_labels_the_old_app() {
        let live = existing(app("A", "web"), vec![route_state("r1", "web", &["A"])]);
        let mut o = oapp("web", Some(live));
        o.venerables = vec![ours("V", "web-venerable", ROLE_VENERABLE, "web")];
        let obs = observed(vec![o]);
        let mut r = req();
        r.old_app = OldApp::Stop;
        let p = plan(&obs, &r, &[spec("web", &["web.example.com"])]).unwrap();
        let tail: Vec<&str> = kinds(&p)[p.commit..].to_vec();
        assert_eq!(
            tail,
            vec![
                "drain",
                "delete_app",
                "rename_app",
                "rename_app",
                "delete_route",
                "stop_app"
            ]
        );
        let Action::RenameApp { to, metadata, .. } = &p.steps[p.commit + 2].action else {
            panic!("not rename_app")
        };
        assert_eq!(to, "web-venerable");
        assert_eq!(
            metadata.labels.get(ROLE_LABEL),
            Some(&Some(ROLE_VENERABLE.to_string()))
        );
        assert_eq!(
            metadata.annotations.get(APP_ANNOTATION),
            Some(&Some("web".to_string()))
        );
        assert!(p.steps.contains(&Step::new(
            "web",
            Action::DeleteApp {
                guid: "V".into(),
                name: "web-venerable".into()
            }
        )));
    }

    #[test]
    fn plan_with_canary_steps_scales_maps_judges_then_switches() {
        let live = existing(app("A", "web"), vec![route_state("r1", "web", &["A"])]);
        let obs = observed(vec![oapp("web", Some(live))]);
        let mut r = req();
        r.analysis = Some(AnalysisConfig {
            steps: vec![10, 50, 100],
            ..AnalysisConfig::default()
        });
        let p = plan(&obs, &r, &[spec("web", &["web.example.com"])]).unwrap();
        let k = kinds(&p);
        assert_eq!(k[0], "check_request_records");
        let from_wait: Vec<&str> = k[k.iter().position(|s| *s == "wait_healthy").unwrap()..]
            .iter()
            .take(9)
            .copied()
            .collect();
        assert_eq!(
            from_wait,
            vec![
                "wait_healthy",
                "scale_candidate",
                "map_route",
                "analyse_canary",
                "scale_candidate",
                "analyse_canary",
                "scale_candidate",
                "unmap_route",
                "drain"
            ]
        );
        assert_eq!(p.steps[p.commit].kind(), "drain");
        let percents: Vec<(usize, u32)> = p
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::AnalyseCanary {
                    step,
                    percent,
                    steps,
                    live,
                    ..
                } => {
                    assert_eq!((*steps, live.as_str()), (3, "A"));
                    Some((*step, *percent))
                }
                _ => None,
            })
            .collect();
        assert_eq!(percents, vec![(1, 10), (2, 50)]);
        let scales: Vec<u32> = p
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::ScaleCandidate { percent, .. } => Some(*percent),
                _ => None,
            })
            .collect();
        assert_eq!(scales, vec![10, 50, 100]);
        // Every canary step is before the commit point: a failed verdict rolls back.
        assert!(p.steps[..p.commit].iter().all(|s| s.kind() != "drain"));
        // A first deploy has nothing to compare with: no analysis.
        let obs = observed(vec![oapp("web", None)]);
        let p = plan(&obs, &r, &[spec("web", &["web.example.com"])]).unwrap();
        assert!(!kinds(&p).contains(&"analyse_canary"));
    }

    #[test]
    fn plan_errors_are_clear() {
        let obs = observed(vec![oapp("web", None)]);
        assert!(matches!(
            plan(&obs, &req(), &[spec("web", &["web.nowhere.org"])]),
            Err(PlanError::UnknownDomain { .. })
        ));
        assert_eq!(plan::<()>(&obs, &req(), &[]), Err(PlanError::NoApps));
        let mut r = req();
        r.strategy = Strategy::Rolling;
        assert!(matches!(
            plan(&obs, &r, &[spec("web", &["web.example.com"])]),
            Err(PlanError::UnsupportedStrategy(_))
        ));
        let mut s = spec("web", &[]);
        s.routes = RouteSpec::NoRoute;
        let mut r = req();
        r.smoke_test_path = Some("/".into());
        assert_eq!(
            plan(&obs, &r, &[s]),
            Err(PlanError::NoRouteForSmokeTest("web".into()))
        );
        let two = [spec("web", &[]), spec("web", &[])];
        assert_eq!(
            plan(&observed(vec![oapp("web", None)]), &req(), &two),
            Err(PlanError::DuplicateApp("web".into()))
        );
    }

    #[test]
    fn plan_refuses_a_temp_route_used_by_another_app() {
        let live = existing(app("A", "web"), vec![route_state("r1", "web", &["A"])]);
        let mut obs = observed(vec![oapp("web", Some(live))]);
        obs.routes.insert(
            "web-temp.example.com".into(),
            route_state("t", "web-temp", &["Z"]),
        );
        assert!(matches!(
            plan(&obs, &req(), &[spec("web", &["web.example.com"])]),
            Err(PlanError::TempRouteInUse { guid, .. }) if guid == "Z"
        ));
    }

    #[test]
    fn default_route_uses_the_default_domain_and_the_app_name() {
        let obs = observed(vec![oapp("My App", None)]);
        let mut s = spec("My App", &[]);
        s.routes = RouteSpec::Default;
        let p = plan(&obs, &req(), &[s]).unwrap();
        assert_eq!(p.apps[0].routes, vec!["my-app.example.com".to_string()]);
    }
}
