//! The rolling and canary plans (docs/DESIGN.md section 2): the app keeps its GUID and the
//! Cloud Controller replaces its web instances through a deployment, watched by our own
//! monitor.
//!
//! Per app with a live app, the plan is:
//! 1. record the live app's environment variables and service bindings ([`Action::SnapshotEnv`];
//!    the undo restores the variables, removing those the run added, and deletes the bindings
//!    the run added);
//! 2. `apply_manifest` for the app itself with its production routes ([`Action::UpdateApp`]);
//! 3. package, upload, stage (the blue-green steps);
//! 4. [`Action::Deploy`]: `POST /v3/deployments` (`rolling` with `--max-in-flight`, or `canary`
//!    with `--instance-steps`), then the monitor of `execute`: any CRASHED instance of the new
//!    process, no progress for `--timeout`, a failed canary smoke test or Ctrl-C cancels the
//!    deployment (the old process serves again) and the snapshot is restored: the outcome is
//!    `RolledBack`. At every canary pause the smoke test runs against the canary through the
//!    app's first production route with `X-Cf-Process-Instance: <new-process-guid>`, then the
//!    deployment is continued.
//!
//! An app that does not exist yet gets the blue-green first-deploy plan (a plain push).
//!
//! Multi-app manifests get one plan per app, which `execute` runs one after the other, each
//! with its own rollback. When app N fails, apps before it stay deployed with their new
//! version (a finished deployment is not undone) and the outcome is `PartlyDeployed` naming
//! them (or `RollbackIncomplete` when app N's own rollback failed), exit code 1.
//!
//! Not restored on rollback: routes and scale that `apply_manifest` added or changed on the live
//! app (the Cloud Controller's own cancel does not revert them either).
//! Leftover blue-green candidates of an interrupted earlier run are left alone, with a warning.
//!
//! Depends on: deploy::{plan, step, observe, route, strategy}. Must not: print.

use std::collections::BTreeMap;

use super::api::DeploymentStrategy;
use super::observe::{ExistingApp, Observed, ObservedApp};
use super::plan::{AppPlan, AppPlanKind, Plan, PlanError};
use super::request::{AppSpec, DeployRequest, RenderRequest, RouteSpec, Strategy};
use super::route::RouteAddress;
use super::step::{Action, Step};
use super::strategy::deployment_strategy;

/// One plan per app, in manifest order. Pure.
///
/// # Errors
/// See [`PlanError`]; nothing has been changed when it fails.
pub fn plan<B>(
    obs: &Observed,
    req: &DeployRequest,
    apps: &[AppSpec<B>],
) -> Result<Vec<Plan>, PlanError> {
    let Some(strategy) = deployment_strategy(req.strategy) else {
        return Err(PlanError::UnsupportedStrategy(
            req.strategy.as_str().to_string(),
        ));
    };
    if apps.is_empty() {
        return Err(PlanError::NoApps);
    }
    let mut plans = Vec::with_capacity(apps.len());
    for (i, spec) in apps.iter().enumerate() {
        if apps[..i].iter().any(|a| a.name == spec.name) {
            return Err(PlanError::DuplicateApp(spec.name.clone()));
        }
        let Some(oa) = obs.apps.iter().find(|o| o.name == spec.name) else {
            return Err(PlanError::NoApps);
        };
        let Some(live) = &oa.live else {
            // First deploy: the blue-green plan is a plain push under the app's own name.
            let bg = DeployRequest {
                strategy: Strategy::BlueGreen,
                ..req.clone()
            };
            plans.push(super::plan::plan(obs, &bg, std::slice::from_ref(spec))?);
            continue;
        };
        plans.push(in_place_plan(obs, req, spec, oa, live, strategy)?);
    }
    Ok(plans)
}

/// The rolling or canary plan of manifest app `spec`, whose live app is `live`.
fn in_place_plan<B>(
    obs: &Observed,
    req: &DeployRequest,
    spec: &AppSpec<B>,
    oa: &ObservedApp,
    live: &ExistingApp,
    strategy: DeploymentStrategy,
) -> Result<Plan, PlanError> {
    let name = spec.name.clone();
    let production = super::plan::production_routes(obs, spec)?;
    let smoke_route = if strategy == DeploymentStrategy::Canary && req.has_smoke_test() {
        Some(
            production
                .iter()
                .find(|a| a.port.is_none())
                .ok_or_else(|| PlanError::NoRouteForSmokeTest(name.clone()))?
                .url(),
        )
    } else {
        None
    };
    let mut warnings = Vec::new();
    if req.has_smoke_test() && strategy == DeploymentStrategy::Rolling {
        warnings.push(format!(
            "app {name}: a rolling deployment has no pause to smoke-test at; the smoke test is skipped (use --strategy canary)"
        ));
    }
    for e in &oa.leftover_candidates {
        warnings.push(format!(
            "app {name}: {} (guid {}) is left over from an interrupted blue-green run; a rolling or canary deploy leaves it alone (a blue-green push cleans it up)",
            e.app.name, e.app.guid
        ));
    }
    let mut instances = BTreeMap::new();
    if req.keep_scale {
        for p in &live.processes {
            instances.insert(p.process.process_type.clone(), p.process.instances);
        }
    }
    let routes: Vec<String> = production.iter().map(RouteAddress::url).collect();
    let guid = live.app.guid.clone();
    let mut steps = vec![
        Step::new(name.clone(), Action::SnapshotEnv { guid: guid.clone() }),
        Step::new(
            name.clone(),
            Action::UpdateApp {
                guid,
                render: RenderRequest {
                    name: name.clone(),
                    routes: routes.clone(),
                    no_route: spec.routes == RouteSpec::NoRoute,
                    random_route: spec.routes == RouteSpec::Random,
                    instances,
                    ..RenderRequest::default()
                },
            },
        ),
        Step::new(name.clone(), Action::CreatePackage),
    ];
    if req.analysis.is_some() && strategy == DeploymentStrategy::Canary {
        // The request records must be readable before anything changes.
        steps.insert(
            0,
            Step::new(
                name.clone(),
                Action::CheckRequestRecords {
                    live: live.app.guid.clone(),
                    live_name: live.app.name.clone(),
                },
            ),
        );
    }
    if spec.is_bits() {
        steps.push(Step::new(name.clone(), Action::UploadBits));
    }
    steps.push(Step::new(name.clone(), Action::Stage));
    steps.push(Step::new(
        name.clone(),
        Action::Deploy {
            strategy,
            smoke_route,
        },
    ));
    let commit = steps.len();
    Ok(Plan {
        steps,
        commit,
        apps: vec![AppPlan {
            name,
            kind: match strategy {
                DeploymentStrategy::Rolling => AppPlanKind::Rolling,
                DeploymentStrategy::Canary => AppPlanKind::Canary,
            },
            candidate: None,
            temp_route: None,
            routes,
        }],
        warnings,
        concurrent: Vec::new(),
    })
}

/// The per-app plans as one, for display (steps numbered across apps).
pub fn combined(plans: &[Plan]) -> Plan {
    let mut all = Plan {
        steps: Vec::new(),
        commit: 0,
        apps: Vec::new(),
        warnings: Vec::new(),
        concurrent: Vec::new(),
    };
    for p in plans {
        all.steps.extend(p.steps.iter().cloned());
        all.apps.extend(p.apps.iter().cloned());
        all.warnings.extend(p.warnings.iter().cloned());
    }
    all.commit = all.steps.len();
    all
}
