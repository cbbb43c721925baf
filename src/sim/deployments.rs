//! The deployment engine: rolling and canary deployments performed on real instances.
//!
//! * Create on a STOPPED app: set the droplet, scale per options, start; FINALIZED/DEPLOYED.
//! * Create on a STARTED app: the droplet becomes current (the old one is `previous_droplet`),
//!   any ACTIVE deployment of the app is SUPERSEDED, and a new `web` process (new GUID, config
//!   cloned from the newest web process, options applied) starts.
//! * Rolling (every tick): once every instance of the new process is RUNNING and routable, the
//!   other web processes are scaled down to `target - new` (only instances already replaced
//!   by running new ones go) and the new process grows by `max_in_flight`; when it reaches the
//!   target and all run, the other web processes are deleted: FINALIZED/DEPLOYED.
//! * Canary: per step the new process runs `round(target * weight / 100)` (at least 1)
//!   instances; when they run the deployment is ACTIVE/PAUSED; `continue` moves to the next
//!   step, after the last one it rolls to completion.
//! * Cancel: the previous droplet becomes current again, ACTIVE/CANCELING; the other web
//!   processes get their original instance counts back, and once those run the new process is
//!   deleted: FINALIZED/CANCELED.
//!
//! Depends on: `state`, `api` (error type). Must not: do I/O.

use super::Shared;
use super::api::ApiError;
use super::quotas;
use super::state::{App, DeployState, Deployment, InstState, Process, State};
use super::util::now_rfc3339;

/// A validated create request.
#[derive(Debug, Clone)]
pub(crate) struct NewDeployment {
    pub app_guid: String,
    pub droplet_guid: Option<String>,
    pub strategy: String,
    pub max_in_flight: u32,
    pub web_instances: Option<u32>,
    pub memory_mb: Option<u64>,
    pub disk_mb: Option<u64>,
    pub log_rate: Option<i64>,
    pub canary_weights: Vec<u32>,
}

fn canary_count(target: u32, weight: Option<u32>) -> u32 {
    match weight {
        None => 1,
        Some(w) => {
            let c = (f64::from(target) * f64::from(w) / 100.0).round() as u32;
            c.clamp(1, target.max(1))
        }
    }
}

fn original_count(target: u32, canary: u32, weight: Option<u32>) -> u32 {
    if weight == Some(100) {
        0
    } else {
        target.saturating_add(1).saturating_sub(canary).min(target)
    }
}

/// Creates a deployment; returns its GUID.
pub(crate) fn create(st: &mut State, new: NewDeployment) -> Result<String, ApiError> {
    let from = starting_point(st, &new)?;
    let (app, newest) = (&from.app, &from.newest);
    let target = new.web_instances.unwrap_or(newest.instances);
    if app.started && (new.web_instances.is_some() || new.memory_mb.is_some()) {
        // `validate_quota!`: the current web process as the options would make it.
        let mut scaled = newest.clone();
        scaled.instances = target;
        if let Some(m) = new.memory_mb {
            scaled.memory_mb = m;
        }
        quotas::check_scale(st, newest, &scaled).map_err(|e| quota_refused(st, app, e))?;
    }
    if let Some(a) = st.app_mut(&app.meta.guid) {
        a.droplet_guid = Some(from.droplet.clone());
        a.meta.touch();
    }
    let mut d = record(st, &new, app, from.droplet.clone(), target);
    let guid = d.meta.guid.clone();
    if app.started {
        supersede_active(st, &app.meta.guid);
        d.original = st
            .processes
            .iter()
            .filter(|p| p.app_guid == app.meta.guid && p.kind == "web")
            .map(|p| (p.meta.guid.clone(), p.instances))
            .collect();
        d.new_process = Some(start_new_web_process(st, &new, &from, target)?);
        d.state = DeployState::Deploying;
    } else {
        start_stopped_app(st, &new, &from, target)?;
        d.new_process = Some(newest.meta.guid.clone());
    }
    st.deployments.push(d);
    Ok(guid)
}

/// What a deployment starts from.
struct StartingPoint {
    app: App,
    /// The droplet it deploys.
    droplet: String,
    /// The app's newest `web` process.
    newest: Process,
}

/// The app, the droplet (validated as CC does) and the newest `web` process a deployment
/// starts from.
fn starting_point(st: &State, new: &NewDeployment) -> Result<StartingPoint, ApiError> {
    let app = st.app(&new.app_guid).cloned().ok_or_else(|| {
        ApiError::unprocessable(
            "Unable to use app. Ensure that the app exists and you have access to it.",
        )
    })?;
    let droplet = new
        .droplet_guid
        .clone()
        .or_else(|| app.droplet_guid.clone())
        .ok_or_else(|| {
            ApiError::unprocessable(
                "Invalid droplet. Please specify a droplet in the request or set a current droplet for the app.",
            )
        })?;
    if st
        .droplet(&droplet)
        .is_none_or(|d| d.app_guid != app.meta.guid || d.state != "STAGED")
    {
        return Err(ApiError::unprocessable(
            "Unable to assign current droplet. Ensure the droplet exists and belongs to this app.",
        ));
    }
    let newest = st
        .newest_process(&app.meta.guid, "web")
        .cloned()
        .ok_or_else(|| ApiError::unprocessable("App has no web process"))?;
    Ok(StartingPoint {
        app,
        droplet,
        newest,
    })
}

/// A quota failure as `DeploymentCreate` words it.
fn quota_refused(st: &State, app: &App, error: String) -> ApiError {
    ApiError::unprocessable(quotas::deployment_create_message(
        st,
        &app.space_guid,
        &error,
    ))
}

/// The deployment's `options` as CC shows them.
fn options_json(new: &NewDeployment) -> serde_json::Value {
    let mut options = serde_json::json!({"max_in_flight": new.max_in_flight});
    if let Some(w) = new.web_instances {
        options["web_instances"] = w.into();
    }
    if let Some(m) = new.memory_mb {
        options["memory_in_mb"] = m.into();
    }
    if let Some(d) = new.disk_mb {
        options["disk_in_mb"] = d.into();
    }
    if let Some(l) = new.log_rate {
        options["log_rate_limit_in_bytes_per_second"] = l.into();
    }
    if new.strategy == "canary" && !new.canary_weights.is_empty() {
        options["canary"] = serde_json::json!({"steps": new.canary_weights.iter()
            .map(|w| serde_json::json!({"instance_weight": w})).collect::<Vec<_>>()});
    }
    options
}

/// The new deployment's record (DEPLOYED, no process yet); `app` as it was before the
/// deployment changed its droplet.
fn record(
    st: &mut State,
    new: &NewDeployment,
    app: &App,
    droplet: String,
    target: u32,
) -> Deployment {
    let now = now_rfc3339();
    Deployment {
        meta: st.meta(),
        app_guid: app.meta.guid.clone(),
        strategy: new.strategy.clone(),
        state: DeployState::Deployed,
        droplet_guid: droplet,
        previous_droplet: app.droplet_guid.clone(),
        new_process: None,
        max_in_flight: new.max_in_flight.max(1),
        target,
        canary_weights: new.canary_weights.clone(),
        current_step: 1,
        original: Vec::new(),
        options: options_json(new),
        last_status_change: now.clone(),
        last_healthcheck: now,
        error: None,
    }
}

impl NewDeployment {
    /// Gives a process the memory, disk and log rate the request asks for.
    fn apply_to(&self, p: &mut Process) {
        if let Some(m) = self.memory_mb {
            p.memory_mb = m;
        }
        if let Some(dk) = self.disk_mb {
            p.disk_mb = dk;
        }
        if let Some(l) = self.log_rate {
            p.log_rate = l;
        }
    }
}

/// A deployment of a STOPPED app: its web process takes the options and `target` instances,
/// every process the droplet, and the app starts (the deployment is DEPLOYED at once).
fn start_stopped_app(
    st: &mut State,
    new: &NewDeployment,
    from: &StartingPoint,
    target: u32,
) -> Result<(), ApiError> {
    let (app, newest) = (&from.app, &from.newest);
    if let Some(p) = st.process_mut(&newest.meta.guid) {
        p.instances = target;
        new.apply_to(p);
    }
    if let Err(e) = quotas::check_start(st, &app.meta.guid) {
        // The transaction is rolled back: the process keeps its settings.
        if let Some(p) = st.process_mut(&newest.meta.guid) {
            *p = newest.clone();
        }
        return Err(quota_refused(st, app, e));
    }
    for p in st
        .processes
        .iter_mut()
        .filter(|p| p.app_guid == app.meta.guid)
    {
        p.droplet_guid = Some(from.droplet.clone());
    }
    if let Some(a) = st.app_mut(&app.meta.guid) {
        a.started = true;
    }
    Ok(())
}

/// Every ACTIVE deployment of the app becomes SUPERSEDED.
fn supersede_active(st: &mut State, app_guid: &str) {
    for other in st
        .deployments
        .iter_mut()
        .filter(|o| o.app_guid == app_guid && o.state.is_active())
    {
        other.state = DeployState::Superseded;
        other.last_status_change = now_rfc3339();
    }
}

/// A deployment of a STARTED app starts a new `web` process (config cloned from the newest
/// one, options applied) with its first instances; returns its GUID.
fn start_new_web_process(
    st: &mut State,
    new: &NewDeployment,
    from: &StartingPoint,
    target: u32,
) -> Result<String, ApiError> {
    let (app, newest) = (&from.app, &from.newest);
    let first = if new.strategy == "canary" {
        canary_count(target, new.canary_weights.first().copied())
    } else {
        new.max_in_flight.max(1).min(target)
    };
    quotas::check_process(
        st,
        &app.space_guid,
        (0, 0),
        (new.memory_mb.unwrap_or(newest.memory_mb), first),
        quotas::Pending::default(),
    )
    .map_err(|e| quota_refused(st, app, e))?;
    let pguid = st.create_process(&app.meta.guid, "web", newest.command.clone());
    if let Some(p) = st.process_mut(&pguid) {
        p.health = newest.health.clone();
        p.readiness = newest.readiness.clone();
        p.memory_mb = newest.memory_mb;
        p.disk_mb = newest.disk_mb;
        p.log_rate = newest.log_rate;
        p.meta.labels = newest.meta.labels.clone();
        p.meta.annotations = newest.meta.annotations.clone();
        new.apply_to(p);
        p.instances = first;
        p.droplet_guid = Some(from.droplet.clone());
    }
    Ok(pguid)
}

/// Finds a deployment to change it, or answers CC's 404 (`Deployment not found`).
pub(crate) fn find_deployment_mut<'a>(
    st: &'a mut State,
    guid: &str,
) -> Result<&'a mut Deployment, ApiError> {
    st.deployments
        .iter_mut()
        .find(|d| d.meta.guid == guid)
        .ok_or_else(|| ApiError::not_found("Deployment"))
}

/// `POST .../actions/continue`.
pub(crate) fn continue_deployment(st: &mut State, guid: &str) -> Result<(), ApiError> {
    let d = find_deployment_mut(st, guid)?;
    if d.state != DeployState::Paused {
        let (v, r) = d.state.status();
        return Err(ApiError::unprocessable(format!(
            "Cannot continue a deployment with status: {v} and reason: {r}"
        )));
    }
    d.current_step += 1;
    d.state = DeployState::Deploying;
    d.last_status_change = now_rfc3339();
    Ok(())
}

/// `POST .../actions/cancel`.
pub(crate) fn cancel(st: &mut State, guid: &str) -> Result<(), ApiError> {
    let d = find_deployment_mut(st, guid)?;
    if !d.state.is_active() {
        let (v, r) = d.state.status();
        return Err(ApiError::unprocessable(format!(
            "Cannot cancel a deployment with status: {v} and reason: {r}"
        )));
    }
    d.state = DeployState::Canceling;
    d.last_status_change = now_rfc3339();
    let (app, prev) = (d.app_guid.clone(), d.previous_droplet.clone());
    if let Some(a) = st.app_mut(&app) {
        a.droplet_guid = prev;
    }
    Ok(())
}

/// Are all `instances` of the process RUNNING and routable?
fn all_running(st: &State, pguid: &str) -> bool {
    let Some(p) = st.process(pguid) else {
        return false;
    };
    let running = st
        .instances
        .iter()
        .filter(|i| {
            i.process_guid == pguid
                && !i.evacuating
                && i.index < p.instances
                && i.state == InstState::Running
                && i.routable
        })
        .count();
    running as u32 == p.instances
}

/// Scales the other web processes (oldest first keeps its instances longest) to `total`.
fn scale_others(st: &mut State, app: &str, new: &str, total: u32) {
    let mut others: Vec<String> = st
        .processes
        .iter()
        .filter(|p| p.app_guid == app && p.kind == "web" && p.meta.guid != new)
        .map(|p| p.meta.guid.clone())
        .collect();
    others.reverse();
    let mut current: u32 = others
        .iter()
        .filter_map(|g| st.process(g))
        .fold(0u32, |acc, p| acc.saturating_add(p.instances));
    for g in others {
        if current <= total {
            break;
        }
        if let Some(p) = st.process_mut(&g) {
            let cut = (current - total).min(p.instances);
            p.instances -= cut;
            current -= cut;
        }
    }
}

/// Advances every active deployment by at most one step.
pub(crate) fn advance(shared: &Shared) {
    let mut st = shared.lock();
    let active: Vec<String> = st
        .deployments
        .iter()
        .filter(|d| d.state.is_active())
        .map(|d| d.meta.guid.clone())
        .collect();
    for guid in active {
        step(&mut st, &guid);
    }
}

fn step(st: &mut State, guid: &str) {
    let Some(d) = st.deployments.iter().find(|d| d.meta.guid == guid).cloned() else {
        return;
    };
    let Some(new) = d.new_process.clone() else {
        return;
    };
    if st.process(&new).is_none() {
        // The new process was deleted under us (app deleted or superseded clean-up).
        set_state(st, guid, DeployState::Canceled);
        return;
    }
    let now = now_rfc3339();
    match d.state {
        DeployState::Deploying => {
            if !all_running(st, &new) {
                return;
            }
            if let Some(x) = st.deployments.iter_mut().find(|x| x.meta.guid == guid) {
                x.last_healthcheck = now;
            }
            let steps = d.canary_weights.len().max(1);
            if d.strategy == "canary" && d.current_step <= steps {
                let w = d.canary_weights.get(d.current_step - 1).copied();
                let canary = canary_count(d.target, w);
                let have = st.process(&new).map(|p| p.instances).unwrap_or(0);
                if have < canary {
                    scale_up(st, guid, &new, canary);
                    return;
                }
                scale_others(st, &d.app_guid, &new, original_count(d.target, canary, w));
                set_state(st, guid, DeployState::Paused);
                return;
            }
            let have = st.process(&new).map(|p| p.instances).unwrap_or(0);
            scale_others(st, &d.app_guid, &new, d.target.saturating_sub(have));
            if have >= d.target {
                let app = d.app_guid.clone();
                st.processes
                    .retain(|p| !(p.app_guid == app && p.kind == "web" && p.meta.guid != new));
                set_state(st, guid, DeployState::Deployed);
            } else {
                scale_up(
                    st,
                    guid,
                    &new,
                    have.saturating_add(d.max_in_flight).min(d.target),
                );
            }
        }
        DeployState::Canceling => {
            for (pg, n) in &d.original {
                if let Some(p) = st.process_mut(pg) {
                    p.instances = *n;
                }
            }
            let restored = d
                .original
                .iter()
                .filter(|(pg, _)| st.process(pg).is_some())
                .all(|(pg, _)| all_running(st, pg));
            if restored {
                let keep: Vec<String> = d.original.iter().map(|(g, _)| g.clone()).collect();
                let app = d.app_guid.clone();
                st.processes.retain(|p| {
                    !(p.app_guid == app && p.kind == "web" && !keep.contains(&p.meta.guid))
                });
                set_state(st, guid, DeployState::Canceled);
            }
        }
        _ => {}
    }
}

/// Scales the deployment's new process up to `instances`, as the updater's `UpScaler` does:
/// a quota that does not allow it leaves everything as it was and records Cloud Controller's
/// message as the deployment's `error` (`status.details.error`) until a later tick succeeds.
fn scale_up(st: &mut State, guid: &str, process: &str, instances: u32) {
    let Some(before) = st.process(process).cloned() else {
        return;
    };
    let mut after = before.clone();
    after.instances = instances;
    let error = quotas::check_scale(st, &before, &after).err();
    if error.is_none()
        && let Some(p) = st.process_mut(process)
    {
        p.instances = instances;
    }
    if let Some(d) = st.deployments.iter_mut().find(|d| d.meta.guid == guid)
        && d.error != error
    {
        d.error = error;
        d.meta.touch();
    }
}

fn set_state(st: &mut State, guid: &str, state: DeployState) {
    if let Some(d) = st.deployments.iter_mut().find(|d| d.meta.guid == guid) {
        d.state = state;
        d.last_status_change = now_rfc3339();
        d.meta.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_counts_follow_cc() {
        assert_eq!(canary_count(5, None), 1);
        assert_eq!(canary_count(5, Some(20)), 1);
        assert_eq!(canary_count(5, Some(40)), 2);
        assert_eq!(canary_count(5, Some(1)), 1);
        assert_eq!(original_count(5, 1, None), 5);
        assert_eq!(original_count(5, 2, Some(40)), 4);
        assert_eq!(original_count(5, 5, Some(100)), 0);
    }

    fn app_with_droplet(st: &mut State) -> (String, String) {
        let space = {
            let m = st.meta();
            let g = m.guid.clone();
            st.spaces.push(crate::sim::state::Space {
                meta: m,
                name: "s".into(),
                org_guid: "o".into(),
                quota_guid: None,
            });
            g
        };
        let app = st.create_app("a", &space, "buildpack");
        let meta = st.meta();
        let droplet = meta.guid.clone();
        st.droplets.push(crate::sim::state::Droplet {
            meta,
            app_guid: app.clone(),
            package_guid: None,
            state: "STAGED".into(),
            process_types: Default::default(),
            files: Default::default(),
            image: None,
            lifecycle: "buildpack".into(),
            buildpacks: vec![],
            stack: "cflinuxfs4".into(),
        });
        (app, droplet)
    }

    fn new(app: &str, droplet: &str, strategy: &str) -> NewDeployment {
        NewDeployment {
            app_guid: app.into(),
            droplet_guid: Some(droplet.into()),
            strategy: strategy.into(),
            max_in_flight: 1,
            web_instances: None,
            memory_mb: None,
            disk_mb: None,
            log_rate: None,
            canary_weights: vec![],
        }
    }

    #[test]
    fn deployment_on_stopped_app_is_deployed_at_once() {
        let mut st = State::default();
        let (app, droplet) = app_with_droplet(&mut st);
        let g = create(&mut st, new(&app, &droplet, "rolling")).unwrap();
        let d = st.deployments.iter().find(|d| d.meta.guid == g).unwrap();
        assert_eq!(d.state, DeployState::Deployed);
        assert!(st.app(&app).unwrap().started);
    }

    #[test]
    fn second_deployment_supersedes_and_cancel_rules_hold() {
        let mut st = State::default();
        let (app, droplet) = app_with_droplet(&mut st);
        st.app_mut(&app).unwrap().started = true;
        st.app_mut(&app).unwrap().droplet_guid = Some(droplet.clone());
        let first = create(&mut st, new(&app, &droplet, "rolling")).unwrap();
        assert_eq!(st.processes.iter().filter(|p| p.kind == "web").count(), 2);
        let second = create(&mut st, new(&app, &droplet, "canary")).unwrap();
        let state = |st: &State, g: &str| {
            st.deployments
                .iter()
                .find(|d| d.meta.guid == g)
                .unwrap()
                .state
        };
        assert_eq!(state(&st, &first), DeployState::Superseded);
        assert_eq!(state(&st, &second), DeployState::Deploying);
        assert!(continue_deployment(&mut st, &second).is_err());
        cancel(&mut st, &second).unwrap();
        assert_eq!(state(&st, &second), DeployState::Canceling);
        assert!(cancel(&mut st, &first).is_err());
    }
}
