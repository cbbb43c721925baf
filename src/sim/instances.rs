//! App instances: the reconcile step that makes actual instances match the desired ones, and
//! the task that runs one instance.
//!
//! An instance is a real HTTP server on a loopback port: either the static-file lifecycle
//! (an axum server over the droplet's files; `/` is `index.html`; `/health`, and the process's
//! health-check endpoints when no file has that path, answer 200, or 500 under the `unhealthy`
//! fault) or the process lifecycle (`sh -c <command>` in the extracted droplet, in its own
//! process group, with a cleared environment plus what Cloud Foundry gives an instance:
//! `PORT`, `CF_INSTANCE_*`, `VCAP_APPLICATION`, `VCAP_SERVICES`, `MEMORY_LIMIT`, `HOME`,
//! `TMPDIR`, `LANG`, a minimal `PATH`, and the app's env vars).
//! A droplet with a `.sim-crash` file crashes on every start (a simulator convention, so that
//! a "bad version" can be pushed like any other).
//!
//! After the start delay, health checks (`port`, `http`, `process`) decide RUNNING and
//! readiness decides `routable`. A process that exits, three failed liveness checks in a row,
//! a start-up health check that never passes within the timeout (or the `NeverHealthy`
//! fault's), the crash-on-start fault or `crash_instance` are a crash: the crash count grows,
//! an `audit.app.process.crash` event and the API/CELL log lines are recorded, and like Diego
//! the instance is replaced at once by a new one (new GUID, STARTING, in the same task) for
//! its first `immediate_restarts` crashes; later crashes leave it CRASHED until a back-off
//! (`crash_backoff`, doubling per crash up to 16 times) has passed, and the reconcile loop
//! restarts it. A `stay_crashed` crash-on-start fault keeps it CRASHED until cleared. A stopped instance leaves the model at once (so the routing table drops it) but
//! keeps serving for the route-propagation delay plus `stop_grace`, then ends (SIGTERM,
//! `kill_grace`, SIGKILL for processes). When the simulator stops, everything is killed at once.
//!
//! Depends on: `state` (including a process's effective command). Must not: hold the state lock
//! across an `.await`.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::procs::{Guarded, INSTANCE_GUID_VAR};
use super::state::{App, Files, HealthCheck, InstState, Instance, State};
use super::util::{new_guid, unix_now};

/// Removes the matching instances from the model and tells their tasks to stop.
pub(crate) fn stop_matching(st: &mut State, mut pred: impl FnMut(&Instance) -> bool) {
    st.instances.retain(|i| {
        if pred(i) {
            i.cancel.cancel();
            false
        } else {
            true
        }
    });
}

/// Stops every instance of an app.
pub(crate) fn stop_app_instances(st: &mut State, app_guid: &str) {
    stop_matching(st, |i| i.app_guid == app_guid);
}

/// `VCAP_SERVICES` for an app (user-provided bindings).
pub(crate) fn vcap_services(st: &State, app_guid: &str) -> Value {
    let list: Vec<Value> = st
        .app_bindings(app_guid)
        .map(|(b, si)| {
            json!({
                "label": "user-provided", "name": b.name.clone().unwrap_or_else(|| si.name.clone()),
                "instance_name": si.name, "instance_guid": si.meta.guid, "binding_guid": b.meta.guid,
                "binding_name": b.name, "credentials": si.credentials, "syslog_drain_url": null,
                "volume_mounts": [], "tags": si.tags,
            })
        })
        .collect();
    if list.is_empty() {
        json!({})
    } else {
        json!({ "user-provided": list })
    }
}

/// `VCAP_APPLICATION` for an app instance.
pub(crate) fn vcap_application(shared: &Shared, st: &State, app: &App, index: u32) -> Value {
    let uris: Vec<String> = st
        .routes
        .iter()
        .filter(|r| r.destinations.iter().any(|d| d.app_guid == app.meta.guid))
        .map(|r| st.route_url(r))
        .collect();
    let space = st.space(&app.space_guid);
    let org = space.and_then(|s| st.orgs.iter().find(|o| o.meta.guid == s.org_guid));
    let process = st.newest_process(&app.meta.guid, "web");
    json!({
        "application_id": app.meta.guid, "application_name": app.name,
        "application_uris": uris, "uris": uris, "application_version": app.droplet_guid,
        "version": app.droplet_guid, "cf_api": shared.base_url, "host": "0.0.0.0",
        "instance_index": index, "name": app.name,
        "limits": {"mem": process.map(|p| p.memory_mb), "disk": process.map(|p| p.disk_mb), "fds": 16384},
        "organization_id": org.map(|o| o.meta.guid.clone()), "organization_name": org.map(|o| o.name.clone()),
        "space_id": app.space_guid, "space_name": space.map(|s| s.name.clone()),
        "process_id": process.map(|p| p.meta.guid.clone()), "process_type": "web",
    })
}

/// What every process of an app (an instance or a task) gets: the app's env vars (strings as
/// they are, other JSON values as JSON), `VCAP_APPLICATION` for instance `index`, and
/// `VCAP_SERVICES`.
pub(crate) fn app_env(shared: &Shared, st: &State, app: &App, index: u32) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = app
        .env
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect();
    env.push((
        "VCAP_APPLICATION".to_string(),
        vcap_application(shared, st, app, index).to_string(),
    ));
    env.push((
        "VCAP_SERVICES".to_string(),
        vcap_services(st, &app.meta.guid).to_string(),
    ));
    env
}

/// Everything an instance task needs, snapshotted from the model.
struct Spec {
    guid: String,
    process_guid: String,
    app_guid: String,
    index: u32,
    cancel: CancellationToken,
    droplet_guid: String,
    files: Arc<Files>,
    image: Option<String>,
    command: Option<String>,
    env: Vec<(String, String)>,
    health: HealthCheck,
    readiness: HealthCheck,
    crash_on_start: bool,
    extra_start: Duration,
    /// Cancelled by `FaultInjector::crash_instance`.
    crash: CancellationToken,
    /// `NeverHealthy` fault: the health check always fails and times out after this.
    never_healthy: Option<Duration>,
}

/// The `cell_id` the simulator's instances report.
pub(crate) const CELL_ID: &str = "sim-cell-0";

/// Makes actual instances match the desired ones: stops surplus instances, restarts crashed
/// ones whose back-off has passed, and starts missing ones.
pub(crate) fn reconcile(shared: &Arc<Shared>) {
    let mut specs = Vec::new();
    {
        let mut st = shared.lock();
        let desired: HashMap<String, u32> = st
            .processes
            .iter()
            .map(|p| {
                let runs = st
                    .app(&p.app_guid)
                    .is_some_and(|a| a.started && a.droplet_guid.is_some());
                (p.meta.guid.clone(), if runs { p.instances } else { 0 })
            })
            .collect();
        stop_matching(&mut st, |i| {
            desired.get(&i.process_guid).is_none_or(|d| i.index >= *d)
        });
        // Unplaced instances are retried once their app's placement fault is gone.
        let blocked: Vec<String> = st
            .apps
            .iter()
            .filter(|a| st.faults.placement.contains_key(&a.name.to_lowercase()))
            .map(|a| a.meta.guid.clone())
            .collect();
        stop_matching(&mut st, |i| {
            i.port.is_none()
                && i.state == InstState::Starting
                && i.details.is_some()
                && !blocked.contains(&i.app_guid)
        });
        let now = Instant::now();
        // Instances held CRASHED by a `stay_crashed` fault are restarted once it is gone.
        let held: Vec<String> = st
            .apps
            .iter()
            .filter(|a| st.faults.crash_on_start.get(&a.name.to_lowercase()) == Some(&true))
            .map(|a| a.meta.guid.clone())
            .collect();
        let mut crash_counts: HashMap<(String, u32), u32> = HashMap::new();
        stop_matching(&mut st, |i| {
            let due = i.state == InstState::Crashed
                && match i.restart_at {
                    Some(t) => t <= now,
                    None => !held.contains(&i.app_guid),
                };
            if due {
                crash_counts.insert((i.process_guid.clone(), i.index), i.crash_count);
            }
            due
        });
        specs.extend(evacuate(shared, &mut st));
        let pguids: Vec<(String, u32)> = desired.into_iter().collect();
        for (pguid, want) in pguids {
            for index in 0..want {
                if st
                    .instances
                    .iter()
                    .any(|i| i.process_guid == pguid && i.index == index)
                {
                    continue;
                }
                let crash_count = crash_counts
                    .get(&(pguid.clone(), index))
                    .copied()
                    .unwrap_or(0);
                if let Some(spec) = new_instance(shared, &mut st, &pguid, index, crash_count) {
                    specs.push(spec);
                }
            }
        }
    }
    for spec in specs {
        shared.tasks.spawn(supervise(shared.clone(), spec));
    }
}

/// Carries out the pending `Evacuate` faults, as Diego does when a cell is drained for an
/// upgrade: for each placed instance of the app, Cloud Controller records
/// `audit.app.process.rescheduling`, the cell logs that it requests a replacement, and the
/// replacement is placed at the same index (UNCLAIMED first: no GUID), while the old
/// instance keeps serving until the replacement is RUNNING. An app without placed instances
/// keeps its fault pending.
fn evacuate(shared: &Shared, st: &mut State) -> Vec<Spec> {
    let pending: Vec<(String, Duration)> = st
        .faults
        .evacuate
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let mut specs = Vec::new();
    for (name, unclaimed) in pending {
        let Some(app_guid) = st
            .apps
            .iter()
            .find(|a| a.name.to_lowercase() == name)
            .map(|a| a.meta.guid.clone())
        else {
            continue;
        };
        let moving: Vec<(String, String, u32, u32)> = st
            .instances
            .iter()
            .filter(|i| {
                i.app_guid == app_guid
                    && !i.evacuating
                    && i.port.is_some()
                    && i.state != InstState::Crashed
            })
            .map(|i| {
                (
                    i.guid.clone(),
                    i.process_guid.clone(),
                    i.index,
                    i.crash_count,
                )
            })
            .collect();
        if moving.is_empty() {
            continue;
        }
        st.faults.evacuate.remove(&name);
        let until = Instant::now().checked_add(unclaimed);
        for (guid, pguid, index, crash_count) in moving {
            let kind = st
                .process(&pguid)
                .map(|p| p.kind.clone())
                .unwrap_or_default();
            if let Some(i) = st.instances.iter_mut().find(|i| i.guid == guid) {
                i.evacuating = true;
            }
            st.logs.log(
                &app_guid,
                &index.to_string(),
                "CELL",
                &format!("Cell {CELL_ID} requesting replacement for instance {guid}"),
                "OUT",
            );
            st.audit_app(
                "audit.app.process.rescheduling",
                &app_guid,
                Some(json!({"guid": pguid, "type": "process", "name": kind})),
                json!({"index": index, "instance": guid, "cell_id": CELL_ID,
                       "reason": "Cell is being evacuated"}),
            );
            if let Some(mut spec) = new_instance(shared, st, &pguid, index, crash_count) {
                spec.extra_start = spec.extra_start.saturating_add(unclaimed);
                if let Some(r) = st.instances.iter_mut().find(|i| i.guid == spec.guid) {
                    r.unclaimed_until = until;
                }
                specs.push(spec);
            }
        }
    }
    specs
}

/// Ends the evacuating instance the replacement at `(pguid, index)` took over from.
fn retire_evacuated(st: &mut State, pguid: &str, index: u32) {
    stop_matching(st, |i| {
        i.evacuating && i.process_guid == pguid && i.index == index
    });
}

fn new_instance(
    shared: &Shared,
    st: &mut State,
    pguid: &str,
    index: u32,
    crash_count: u32,
) -> Option<Spec> {
    let p = st.process(pguid)?.clone();
    let app = st.app(&p.app_guid)?.clone();
    let droplet_guid = p
        .droplet_guid
        .clone()
        .or_else(|| app.droplet_guid.clone())?;
    let droplet = st.droplet(&droplet_guid)?.clone();
    let name = app.name.to_lowercase();
    let command = if shared.config.run_commands && droplet.lifecycle != "docker" {
        st.effective_command(&p)
    } else {
        None
    };
    let mut env = app_env(shared, st, &app, index);
    env.push(("CF_INSTANCE_INDEX".to_string(), index.to_string()));
    env.push(("MEMORY_LIMIT".to_string(), format!("{}m", p.memory_mb)));
    let guid = new_guid();
    // Also marks the whole process tree of the instance (see `procs`).
    env.push((INSTANCE_GUID_VAR.to_string(), guid.clone()));
    let cancel = shared.cancel.child_token();
    let crash = CancellationToken::new();
    let unplaced = st.faults.placement.get(&name).cloned();
    let placed = unplaced.is_none();
    st.instances.push(Instance {
        guid: guid.clone(),
        process_guid: pguid.to_string(),
        app_guid: app.meta.guid.clone(),
        index,
        state: InstState::Starting,
        routable: false,
        port: None,
        since: unix_now(),
        details: unplaced,
        crash_count,
        restart_at: None,
        cancel: cancel.clone(),
        crash: crash.clone(),
        crash_reason: None,
        evacuating: false,
        unclaimed_until: None,
    });
    if !placed {
        return None;
    }
    let idx = index.to_string();
    st.logs.log(
        &app.meta.guid,
        &idx,
        "CELL",
        &format!("Cell {CELL_ID} creating container for instance {guid}"),
        "OUT",
    );
    st.logs.log(
        &app.meta.guid,
        &idx,
        "CELL",
        &format!("Cell {CELL_ID} successfully created container for instance {guid}"),
        "OUT",
    );
    Some(Spec {
        guid,
        process_guid: pguid.to_string(),
        app_guid: app.meta.guid.clone(),
        index,
        cancel,
        droplet_guid,
        files: droplet.files.clone(),
        image: droplet.image.clone(),
        command,
        env,
        health: p.health.clone(),
        readiness: p.readiness.clone(),
        // Convention of the simulator: a `.sim-crash` file in the droplet crashes every start.
        crash_on_start: st.faults.crash_on_start.contains_key(&name)
            || droplet.files.contains_key(".sim-crash"),
        extra_start: st.faults.slow_start.get(&name).copied().unwrap_or_default(),
        crash,
        never_healthy: st.faults.never_healthy.get(&name).copied(),
    })
}

/// A running server of one instance.
enum Server {
    Static {
        port: u16,
        stop: CancellationToken,
        join: tokio::task::JoinHandle<()>,
    },
    Process {
        port: u16,
        process: Guarded,
    },
}

/// How long a static server gets for its in-flight requests when it stops.
const STATIC_GRACE: Duration = Duration::from_secs(5);

/// How long a process gets to end once told to end now (its guard tears it down within 3 s)
/// before the guard itself is killed.
const END_NOW_BOUND: Duration = Duration::from_secs(5);

impl Server {
    fn port(&self) -> u16 {
        match self {
            Server::Static { port, .. } | Server::Process { port, .. } => *port,
        }
    }

    /// Resolves when the server ended by itself (a process exited) with the exit description
    /// and status; never for static servers.
    async fn exited(&mut self) -> (String, i64) {
        match self {
            Server::Static { .. } => std::future::pending().await,
            Server::Process { process, .. } => match process.wait().await {
                Ok(status) => {
                    let code = status.code().unwrap_or(-1);
                    (
                        format!("APP/PROC/WEB: Exited with status {code}"),
                        i64::from(code),
                    )
                }
                Err(e) => (format!("APP/PROC/WEB: wait failed: {e}"), -1),
            },
        }
    }

    /// Ends the server now.
    async fn kill(self) {
        match self {
            Server::Static { stop, join, .. } => {
                stop.cancel();
                join.abort();
            }
            Server::Process { mut process, .. } => end_now(&mut process).await,
        }
    }

    /// Ends the server gracefully: in-flight requests finish (up to 5 s), or the process gets
    /// SIGTERM and `kill_grace` before SIGKILL. `hurry` cuts either wait short.
    async fn stop(self, kill_grace: Duration, hurry: &CancellationToken) {
        match self {
            Server::Static { stop, mut join, .. } => {
                stop.cancel();
                let ended = tokio::select! {
                    r = tokio::time::timeout(STATIC_GRACE, &mut join) => r.is_ok(),
                    () = hurry.cancelled() => false,
                };
                if !ended {
                    join.abort();
                }
            }
            Server::Process { mut process, .. } => {
                process.terminate();
                let ended = tokio::select! {
                    r = tokio::time::timeout(kill_grace, process.wait()) => r.is_ok(),
                    () = hurry.cancelled() => false,
                };
                if !ended {
                    end_now(&mut process).await;
                }
            }
        }
    }
}

/// Ends a process and everything it started at once, and waits (bounded) for it.
async fn end_now(process: &mut Guarded) {
    process.end_now();
    if tokio::time::timeout(END_NOW_BOUND, process.wait())
        .await
        .is_err()
    {
        tracing::warn!("an instance process did not end within {END_NOW_BOUND:?}");
        process.kill_guard();
        // Bounded: SIGKILL cannot be ignored.
        if let Err(e) = process.wait().await {
            tracing::debug!("wait for an instance process failed: {e}");
        }
    }
}

fn update(shared: &Shared, guid: &str, f: impl FnOnce(&mut Instance)) -> bool {
    let mut st = shared.lock();
    match st.instances.iter_mut().find(|i| i.guid == guid) {
        Some(i) => {
            f(i);
            true
        }
        None => false,
    }
}

/// Records a crash of the instance `spec` runs (crash count, `audit.app.process.crash`,
/// the API and CELL log lines) and decides what Diego does next: restart at once (the first
/// `immediate_restarts` crashes; the returned spec is the replacement, already in the model
/// with a new GUID), CRASHED until a back-off passes (later crashes; the reconcile loop
/// restarts it), or CRASHED for good while a `stay_crashed` fault holds.
fn crashed(shared: &Shared, spec: &Spec, reason: &str, exit_status: i64) -> Option<Spec> {
    tracing::debug!(
        "instance {}:{} crashed: {reason}",
        spec.process_guid,
        spec.index
    );
    let mut st = shared.lock();
    let pos = st.instances.iter().position(|i| i.guid == spec.guid)?;
    let count = {
        let i = &mut st.instances[pos];
        i.crash_count += 1;
        i.crash_count
    };
    let (kind, version, desired) = st
        .process(&spec.process_guid)
        .map(|p| (p.kind.clone(), p.version.clone(), p.instances))
        .unwrap_or_default();
    let (app_name, started) = st
        .app(&spec.app_guid)
        .map(|a| (a.name.to_lowercase(), a.started))
        .unwrap_or_default();
    let ns = super::telemetry::now_ns();
    let idx = spec.index.to_string();
    let payload = format!(
        "{{\"instance\"=>\"{}\", \"index\"=>{}, \"cell_id\"=>\"{CELL_ID}\", \"reason\"=>\"CRASHED\", \"exit_description\"=>{:?}, \"crash_count\"=>{count}, \"crash_timestamp\"=>{ns}, \"version\"=>\"{version}\"}}",
        spec.guid, spec.index, reason
    );
    st.logs.log(
        &spec.app_guid,
        &idx,
        "CELL",
        &format!("Exit status {exit_status}"),
        "OUT",
    );
    st.logs.log(
        &spec.app_guid,
        &idx,
        "API",
        &format!(
            "App instance exited with guid {} payload: {payload}",
            spec.app_guid
        ),
        "OUT",
    );
    st.logs.log(
        &spec.app_guid,
        &idx,
        "CELL",
        &format!(
            "Cell {CELL_ID} destroying container for instance {}",
            spec.guid
        ),
        "OUT",
    );
    st.audit_app(
        "audit.app.process.crash",
        &spec.app_guid,
        Some(json!({"guid": spec.process_guid, "type": "process", "name": kind})),
        json!({"index": spec.index, "instance": spec.guid, "cell_id": CELL_ID,
               "exit_description": reason, "reason": "CRASHED", "exit_status": exit_status,
               "crash_count": count, "crash_timestamp": ns}),
    );
    let stay = st.faults.crash_on_start.get(&app_name) == Some(&true);
    if !stay && count <= shared.config.immediate_restarts {
        st.instances.remove(pos);
        if !started || spec.index >= desired {
            return None;
        }
        return new_instance(shared, &mut st, &spec.process_guid, spec.index, count);
    }
    let later = count.saturating_sub(shared.config.immediate_restarts.saturating_add(1));
    let factor = 1u32 << later.min(4);
    let restart_at = (!stay)
        .then(|| Instant::now().checked_add(shared.config.crash_backoff.saturating_mul(factor)))
        .flatten();
    let i = &mut st.instances[pos];
    i.state = InstState::Crashed;
    i.routable = false;
    i.port = None;
    i.since = unix_now();
    i.restart_at = restart_at;
    None
}

/// Why a crash token fired: the reason `FaultInjector::crash_instance` left.
fn injected_reason(shared: &Shared, spec: &Spec) -> String {
    shared
        .lock()
        .instances
        .iter()
        .find(|i| i.guid == spec.guid)
        .and_then(|i| i.crash_reason.clone())
        .unwrap_or_else(|| "APP/PROC/WEB: Exited with status 1".to_string())
}

enum Wait {
    Elapsed,
    Stopped,
    Exited(String, i64),
    Injected,
}

async fn wait(spec: &Spec, server: Option<&mut Server>, d: Duration) -> Wait {
    match server {
        Some(server) => tokio::select! {
            () = spec.cancel.cancelled() => Wait::Stopped,
            () = spec.crash.cancelled() => Wait::Injected,
            (reason, code) = server.exited() => Wait::Exited(reason, code),
            () = tokio::time::sleep(d) => Wait::Elapsed,
        },
        None => tokio::select! {
            () = spec.cancel.cancelled() => Wait::Stopped,
            () = spec.crash.cancelled() => Wait::Injected,
            () = tokio::time::sleep(d) => Wait::Elapsed,
        },
    }
}

/// Stops after a stop request: serve on through propagation + grace unless the whole
/// simulator is going down.
async fn finish(shared: &Shared, spec: &Spec, server: Server) {
    shared.lock().logs.log(
        &spec.app_guid,
        &spec.index.to_string(),
        "CELL",
        &format!("Cell {CELL_ID} stopping instance {}", spec.guid),
        "OUT",
    );
    // When the simulator stops, nobody is routed here any more: stop at once, gracefully.
    if !shared.cancel.is_cancelled() {
        let linger = shared
            .config
            .route_propagation
            .saturating_add(shared.config.stop_grace)
            .saturating_add(shared.config.tick);
        tokio::select! {
            () = shared.cancel.cancelled() => {}
            () = tokio::time::sleep(linger) => {}
        }
    }
    // Bounded: static servers get 5 s for in-flight requests, processes `kill_grace`; both
    // end at once when the stop is hurried.
    server.stop(shared.config.kill_grace, &shared.hurry).await;
}

/// Runs an instance and, when Diego would restart it at once after a crash, its
/// replacements, in one task.
async fn supervise(shared: Arc<Shared>, spec: Spec) {
    let mut spec = spec;
    while let Some(next) = run(&shared, spec).await {
        spec = next;
    }
}

/// Kills the server, then records the crash.
async fn crash_with(
    shared: &Shared,
    spec: &Spec,
    server: Server,
    reason: &str,
    status: i64,
) -> Option<Spec> {
    server.kill().await;
    crashed(shared, spec, reason, status)
}

/// Runs one instance until it stops (`None`) or crashes (`Some` replacement when it is
/// restarted at once).
async fn run(shared: &Arc<Shared>, spec: Spec) -> Option<Spec> {
    // A replacement after a crash while the simulator stops: nothing to start.
    if spec.cancel.is_cancelled() {
        return None;
    }
    let start_wait = shared.config.start_delay.saturating_add(spec.extra_start);
    if spec.crash_on_start {
        return crash_while_starting(shared, &spec, start_wait).await;
    }
    let mut server = match start_server(shared, &spec).await {
        Ok(s) => s,
        Err(e) => return crashed(shared, &spec, &e, -1),
    };
    let port = server.port();
    if !update(shared, &spec.guid, |i| i.port = Some(port)) {
        server.kill().await;
        return None;
    }
    if let Err(ending) = become_healthy(shared, &spec, &mut server, port, start_wait).await {
        return end(shared, &spec, server, ending).await;
    }
    mark_running(shared, &spec, port).await;
    let ending = stay_alive(shared, &spec, &mut server, port).await;
    end(shared, &spec, server, ending).await
}

/// Why an instance's server stops.
enum Ending {
    /// A stop request: it serves on for a while, then stops gracefully.
    Stopped,
    /// Its process exited by itself, with this reason and status.
    Exited(String, i64),
    /// Diego kills it as crashed, with this reason and status.
    Crash(String, i64),
}

/// Stops or records the crash of an instance as `ending` says (`Some` replacement when it is
/// restarted at once).
async fn end(shared: &Shared, spec: &Spec, server: Server, ending: Ending) -> Option<Spec> {
    match ending {
        Ending::Stopped => {
            finish(shared, spec, server).await;
            None
        }
        Ending::Exited(reason, code) => crashed(shared, spec, &reason, code),
        Ending::Crash(reason, code) => crash_with(shared, spec, server, &reason, code).await,
    }
}

/// Goes on after a wait that elapsed; anything else ends the instance.
fn go_on(shared: &Shared, spec: &Spec, w: Wait) -> Result<(), Ending> {
    match w {
        Wait::Elapsed => Ok(()),
        Wait::Stopped => Err(Ending::Stopped),
        Wait::Exited(reason, code) => Err(Ending::Exited(reason, code)),
        Wait::Injected => Err(Ending::Crash(injected_reason(shared, spec), 1)),
    }
}

/// An instance under the `CrashOnStart` fault: it crashes once its start delay is over
/// (leaving a line on stderr), unless it is stopped first.
async fn crash_while_starting(shared: &Shared, spec: &Spec, start_wait: Duration) -> Option<Spec> {
    match wait(spec, None, start_wait).await {
        Wait::Elapsed | Wait::Exited(..) => {
            // What a crashing app leaves on stderr before it exits.
            shared.lock().logs.log(
                &spec.app_guid,
                &spec.index.to_string(),
                "APP/PROC/WEB",
                "Error: the app crashed on start (simulator fault crash_on_start)",
                "ERR",
            );
            crashed(shared, spec, "APP/PROC/WEB: Exited with status 1", 1)
        }
        Wait::Injected => crashed(shared, spec, &injected_reason(shared, spec), 1),
        Wait::Stopped => None,
    }
}

/// Waits out the start delay, then checks the instance's health every interval until it
/// passes (`Ok`) or the health-check timeout is over (a crash, after Diego's log line).
async fn become_healthy(
    shared: &Shared,
    spec: &Spec,
    server: &mut Server,
    port: u16,
    start_wait: Duration,
) -> Result<(), Ending> {
    go_on(
        shared,
        spec,
        wait(spec, Some(&mut *server), start_wait).await,
    )?;
    let interval = shared
        .config
        .health_check_interval
        .max(Duration::from_millis(1));
    let timeout = spec.never_healthy.unwrap_or_else(|| {
        spec.health
            .timeout
            .map(Duration::from_secs)
            .unwrap_or(shared.config.health_check_timeout)
    });
    let deadline = Instant::now().checked_add(timeout);
    loop {
        if spec.never_healthy.is_none() && check(shared, &spec.health, port).await {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let reason = format!(
                "Instance never healthy after {}: Failed to make {} health check to port {port}",
                human(timeout),
                spec.health.kind
            );
            shared.lock().logs.log(
                &spec.app_guid,
                &spec.index.to_string(),
                "CELL",
                &format!(
                    "Timed out after {}: health check never passed.",
                    human(timeout)
                ),
                "ERR",
            );
            return Err(Ending::Crash(reason, 0));
        }
        go_on(shared, spec, wait(spec, Some(&mut *server), interval).await)?;
    }
}

/// A healthy instance becomes RUNNING (routable if its readiness check passes); the
/// instance it replaces on an evacuated cell retires.
async fn mark_running(shared: &Shared, spec: &Spec, port: u16) {
    let ready = check(shared, &spec.readiness, port).await;
    let mut st = shared.lock();
    let found = st
        .instances
        .iter_mut()
        .find(|i| i.guid == spec.guid)
        .map(|i| {
            i.state = InstState::Running;
            i.routable = ready;
            i.since = unix_now();
            i.unclaimed_until = None;
        });
    if found.is_some() {
        retire_evacuated(&mut st, &spec.process_guid, spec.index);
        st.logs.log(
            &spec.app_guid,
            &spec.index.to_string(),
            "CELL",
            "Container became healthy",
            "OUT",
        );
    }
}

/// Checks liveness (and readiness, for `routable`) of a running instance every interval
/// until it stops, exits, or fails `LIVENESS_FAILURES` checks in a row.
async fn stay_alive(shared: &Shared, spec: &Spec, server: &mut Server, port: u16) -> Ending {
    let liveness = shared
        .config
        .liveness_interval
        .max(Duration::from_millis(1));
    let mut failures = 0;
    loop {
        if let Err(ending) = go_on(shared, spec, wait(spec, Some(&mut *server), liveness).await) {
            return ending;
        }
        if check(shared, &spec.health, port).await {
            failures = 0;
        } else {
            if spec.cancel.is_cancelled() {
                return Ending::Stopped;
            }
            // Three failures in a row, so that one stale keep-alive connection of the
            // health-check client cannot crash a healthy instance.
            failures += 1;
            if failures >= LIVENESS_FAILURES {
                let reason = format!(
                    "Instance became unhealthy: {} health check to port {port} failed",
                    spec.health.kind
                );
                return Ending::Crash(reason, 0);
            }
            continue;
        }
        let ready = check(shared, &spec.readiness, port).await;
        update(shared, &spec.guid, |i| i.routable = ready);
    }
}

/// A duration as Go prints it in Diego's messages (`1m0s`, `1.5s`, `200ms`).
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = d.as_secs_f64();
        format!("{s}s")
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Consecutive failed liveness checks that crash an instance.
const LIVENESS_FAILURES: u32 = 3;

/// Runs one health check against the instance.
async fn check(shared: &Shared, h: &HealthCheck, port: u16) -> bool {
    // CC's default invocation timeout is 1 s; the simulator allows 5 s so that a busy test
    // machine does not crash healthy instances.
    let limit = Duration::from_secs(h.invocation_timeout.unwrap_or(5).max(1));
    match h.kind.as_str() {
        "port" => matches!(
            tokio::time::timeout(limit, tokio::net::TcpStream::connect(("127.0.0.1", port))).await,
            Ok(Ok(_))
        ),
        "http" => {
            let endpoint = h.endpoint.clone().unwrap_or_else(|| "/".to_string());
            let url = format!("http://127.0.0.1:{port}{endpoint}");
            matches!(
                shared.health_http.get(url).timeout(limit).send().await,
                Ok(r) if r.status() == StatusCode::OK
            )
        }
        _ => true,
    }
}

async fn start_server(shared: &Arc<Shared>, spec: &Spec) -> Result<Server, String> {
    match &spec.command {
        None => start_static(shared, spec).await,
        Some(cmd) => start_process(shared, spec, cmd).await,
    }
}

#[derive(Clone)]
struct StaticApp {
    shared: Arc<Shared>,
    app_guid: String,
    files: Arc<Files>,
    image: Option<String>,
    health_paths: Vec<String>,
}

async fn start_static(shared: &Arc<Shared>, spec: &Spec) -> Result<Server, String> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("cannot read the instance address: {e}"))?
        .port();
    let mut health_paths = vec!["/health".to_string()];
    for h in [&spec.health, &spec.readiness] {
        if let Some(e) = &h.endpoint {
            health_paths.push(e.clone());
        }
    }
    let app = StaticApp {
        shared: shared.clone(),
        app_guid: spec.app_guid.clone(),
        files: spec.files.clone(),
        image: spec.image.clone(),
        health_paths,
    };
    let router = Router::new().fallback(serve_file).with_state(app);
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let join = shared.tasks.spawn(async move {
        let server = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stopped.cancelled().await });
        if let Err(e) = server.await {
            tracing::debug!("instance server ended: {e}");
        }
    });
    Ok(Server::Static { port, stop, join })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css",
        "js" => "application/javascript",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn serve_file(AxState(app): AxState<StaticApp>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() || rel.ends_with('/') {
        format!("{rel}index.html")
    } else {
        rel.to_string()
    };
    let unhealthy = {
        let st = app.shared.lock();
        st.app(&app.app_guid)
            .is_some_and(|a| st.faults.unhealthy.contains(&a.name.to_lowercase()))
    };
    let is_health = app.health_paths.contains(&path);
    if is_health && unhealthy {
        return (StatusCode::INTERNAL_SERVER_ERROR, "unhealthy\n").into_response();
    }
    if let Some(f) = app.files.get(&rel) {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, content_type(&rel))],
            f.data.clone(),
        )
            .into_response();
    }
    if is_health {
        return (StatusCode::OK, "ok\n").into_response();
    }
    if let Some(image) = &app.image
        && path == "/"
    {
        return (StatusCode::OK, format!("docker image {image}\n")).into_response();
    }
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Extracts a droplet once into the work directory; returns its folder.
async fn extract(shared: &Shared, spec: &Spec) -> Result<PathBuf, String> {
    extract_droplet(shared, &spec.droplet_guid, &spec.files).await
}

/// Extracts droplet `droplet_guid` (its `files`) once into the work directory; returns its
/// folder. Instances and tasks of the same droplet share it.
pub(crate) async fn extract_droplet(
    shared: &Shared,
    droplet_guid: &str,
    files: &Arc<Files>,
) -> Result<PathBuf, String> {
    let dir = shared.work_dir.path().join(droplet_guid);
    if dir.exists() {
        return Ok(dir);
    }
    let tmp = shared
        .work_dir
        .path()
        .join(format!("{droplet_guid}.tmp-{}", new_guid()));
    let files = files.clone();
    let target = dir.clone();
    tokio::task::spawn_blocking(move || write_tree(&tmp, &files, &target))
        .await
        .map_err(|e| format!("droplet extraction failed: {e}"))??;
    Ok(dir)
}

fn write_tree(tmp: &FsPath, files: &Files, target: &FsPath) -> Result<(), String> {
    std::fs::create_dir_all(tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    for (rel, f) in files {
        let path = tmp.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, &f.data)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode | 0o600))
                .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
        }
    }
    // Another instance may have won the race; its copy is identical.
    if std::fs::rename(tmp, target).is_err() && !target.exists() {
        return Err(format!("cannot move the droplet to {}", target.display()));
    }
    if tmp.exists() {
        // Best effort: a leftover temp copy only wastes space in the work dir.
        let _ = std::fs::remove_dir_all(tmp);
    }
    Ok(())
}

/// `PATH` of an app instance: the system's directories only, as on a Cloud Foundry stack.
pub(crate) const INSTANCE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

async fn start_process(shared: &Arc<Shared>, spec: &Spec, cmd: &str) -> Result<Server, String> {
    let dir = extract(shared, spec).await?;
    let port = {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| format!("cannot find a free port: {e}"))?;
        l.local_addr()
            .map_err(|e| format!("cannot find a free port: {e}"))?
            .port()
    };
    let tmp = shared.work_dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .current_dir(&dir)
        // What Cloud Foundry gives an instance, and nothing of the simulator's own
        // environment (its owner's credentials, tokens, paths).
        .env_clear()
        .env("PATH", INSTANCE_PATH)
        .env("LANG", "en_US.UTF-8")
        .env("TMPDIR", &tmp)
        .env("PORT", port.to_string())
        .env("VCAP_APP_PORT", port.to_string())
        .env("VCAP_APP_HOST", "127.0.0.1")
        .env("CF_INSTANCE_PORT", port.to_string())
        .env("CF_INSTANCE_ADDR", format!("127.0.0.1:{port}"))
        .env("CF_INSTANCE_IP", "127.0.0.1")
        .env("HOME", &dir)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut process = Guarded::spawn(&mut command, shared.work_dir.path(), &spec.guid)
        .map_err(|e| format!("cannot start '{cmd}': {e}"))?;
    // The app's output goes to its log-cache buffer, line by line (`APP/PROC/WEB`). The
    // readers end when the process (group) closes its pipes.
    if let Some(out) = process.take_stdout() {
        shared.tasks.spawn(pump_lines(
            shared.clone(),
            spec.app_guid.clone(),
            spec.index.to_string(),
            "APP/PROC/WEB".to_string(),
            out,
            "OUT",
        ));
    }
    if let Some(err) = process.take_stderr() {
        shared.tasks.spawn(pump_lines(
            shared.clone(),
            spec.app_guid.clone(),
            spec.index.to_string(),
            "APP/PROC/WEB".to_string(),
            err,
            "ERR",
        ));
    }
    Ok(Server::Process { port, process })
}

/// Copies an instance's (or a task's) output into its app's log-cache buffer as
/// `source_type` (`APP/PROC/WEB`, `APP/TASK/<name>`), one envelope per line (lines longer than
/// 64 KiB are cut), until the pipe closes (the process and everything it started have ended)
/// or the simulator's stop is hurried.
pub(crate) async fn pump_lines(
    shared: Arc<Shared>,
    app_guid: String,
    idx: String,
    source_type: String,
    pipe: impl tokio::io::AsyncRead + Unpin,
    stream: &'static str,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut reader = tokio::io::BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let mut limited = (&mut reader).take(64 * 1024);
        let read = tokio::select! {
            () = shared.hurry.cancelled() => return,
            r = limited.read_until(b'\n', &mut buf) => r,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                shared
                    .lock()
                    .logs
                    .log(&app_guid, &idx, &source_type, line, stream);
            }
        }
    }
}
