//! Executor tests of the blue-green deploy against `FakeCf`, an in-memory Cloud Controller
//! implementing `CfApi` with fault injection (fail the Nth call of a method, before or after its
//! effect), failing staging, crashing or slow instances.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cf_zero_downtime::deploy::api::{
    ApiError, ApiResult, App, AppGuid, AppLifecycle, AppSource, AppState, BuildGuid, BuildState,
    CfApi, CrashEvent, CrashEvents, Deployment, DeploymentGuid, DeploymentState,
    DeploymentStrategy, Destination, DestinationGuid, Domain, DropletGuid, InstanceStat,
    InstanceState, MUTATING_METHODS, MetadataUpdate, NetworkPolicy, NewApp, NewDeployment,
    NewDestination, NewRoute, NewTask, PackageGuid, Process, ProcessGuid, ProgressSink, Quotas,
    Route, RouteGuid, ServiceBinding, ServiceCredentialBindingGuid, SpaceGuid, TaskGuid, TaskState,
};
use cf_zero_downtime::deploy::event::{Event, Outcome, Reporter};
use cf_zero_downtime::deploy::request::{
    AppSpec, DeployRequest, ProbeConfig, RenderRequest, RouteSpec, TaskRequest,
};
use cf_zero_downtime::deploy::route::resolve_route;
use cf_zero_downtime::deploy::{Interrupt, run};
use cf_zero_downtime::deploy::{OldApp, Strategy};
use cf_zero_downtime::ui::{JsonReporter, TextReporter};
use tokio_util::sync::CancellationToken;

/// How the new instances of a deployment behave in the fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum NewInstances {
    /// RUNNING; the deployment advances.
    #[default]
    Healthy,
    /// CRASHED.
    Crash,
    /// STARTING forever: the deployment never advances.
    Stall,
}

/// A deployment in the fake: it advances one state per `get_deployment` after
/// `polls` polls, pausing at every canary step.
#[derive(Debug, Clone)]
struct FDep {
    app: String,
    strategy: DeploymentStrategy,
    state: DeploymentState,
    previous: Option<String>,
    steps: u32,
    current: u32,
    paused_for: u32,
    done_steps: bool,
    polls: u32,
    /// `status.details.error` the updater reports.
    error: Option<String>,
}

#[derive(Debug, Clone)]
struct FApp {
    app: App,
    ssh: bool,
    droplet: Option<String>,
    processes: Vec<(String, u32)>,
    starting_polls: u32,
}

/// How a crashing new app shows to polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum CrashShows {
    /// The instance is CRASHED when polled.
    #[default]
    CrashedState,
    /// Diego restarted it before the poll: STARTING, with a new instance GUID and uptime 0 at
    /// every poll, and a crash record.
    Restarted,
    /// Only the platform's crash records show it (stats look like a slow start).
    RecordsOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Before,
    After,
}

#[derive(Default)]
struct State {
    next: u64,
    apps: BTreeMap<String, FApp>,
    routes: BTreeMap<String, (Route, Vec<Destination>)>,
    domains: Vec<Domain>,
    policies: BTreeSet<NetworkPolicy>,
    packages: BTreeMap<String, String>,
    builds: BTreeMap<String, (String, u32)>,
    calls: Vec<String>,
    counts: BTreeMap<String, u32>,
    faults: BTreeMap<(String, u32), When>,
    staging_fails_for: Option<String>,
    crash_new_apps: bool,
    /// How a crash of a new app shows (with `crash_new_apps`).
    crash_shows: CrashShows,
    /// Polls of stats so far (the fake's clock for instance GUIDs and uptime).
    stat_polls: u32,
    /// `crash_events` answers 403 (audit events and log-cache forbidden).
    crash_records_forbidden: bool,
    /// `list_network_policies` answers with this status (403, 404) instead of the policies.
    policies_status: Option<u16>,
    starting_polls: u32,
    warnings: Vec<String>,
    env: BTreeMap<String, BTreeMap<String, String>>,
    deployments: BTreeMap<String, FDep>,
    new_instances: BTreeMap<String, NewInstances>,
    /// Service bindings: guid → (app guid, service instance name).
    bindings: BTreeMap<String, (String, String)>,
    /// What `quotas` answers (unlimited by default).
    quotas: Quotas,
    /// The next call of a method fails with this error, before its effect.
    errors: BTreeMap<String, ApiError>,
    /// Every deployment asked for, in order.
    created_deployments: Vec<NewDeployment>,
    /// What the updater of new deployments reports in `status.details.error`.
    deployment_error: Option<String>,
    /// The lifecycle each app was created with by `create_app`.
    lifecycles: BTreeMap<String, AppLifecycle>,
    /// Another client creates this app just before `create_app` asks for its name.
    create_race: Option<App>,
    /// Tasks: guid → (app guid, name, state).
    tasks: BTreeMap<String, (String, String, TaskState)>,
    /// How the tasks of each app (by name) end; `Running` never ends. Unset: SUCCEEDED.
    task_outcomes: BTreeMap<String, TaskState>,
}

/// The in-memory Cloud Controller.
struct FakeCf {
    s: Mutex<State>,
}

fn err500(method: &str) -> ApiError {
    ApiError::new(
        500,
        "CF-ServerError",
        format!("injected failure in {method}"),
    )
    .with_request_id("req-1")
}

impl FakeCf {
    fn new() -> Self {
        let s = State {
            domains: vec![Domain {
                guid: "d1".into(),
                name: "example.com".into(),
                internal: false,
            }],
            ..State::default()
        };
        FakeCf { s: Mutex::new(s) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.s.lock().unwrap()
    }

    /// Fails the `n`th call (1-based) of `method`, before or after its effect.
    fn fail(&self, method: &str, n: u32, when: When) -> &Self {
        self.lock().faults.insert((method.to_string(), n), when);
        self
    }

    fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn mutating_calls(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| MUTATING_METHODS.contains(&c.split(' ').next().unwrap_or_default()))
            .collect()
    }

    /// Records the call; `Err` for a fault injected before the effect, `Ok(true)` for one after.
    fn enter(&self, method: &str, arg: &str) -> Result<bool, ApiError> {
        let mut s = self.lock();
        s.calls.push(format!("{method} {arg}"));
        if let Some(e) = s.errors.remove(method) {
            return Err(e);
        }
        let n = {
            let c = s.counts.entry(method.to_string()).or_insert(0);
            *c += 1;
            *c
        };
        match s.faults.remove(&(method.to_string(), n)) {
            Some(When::Before) => Err(err500(method)),
            Some(When::After) => Ok(true),
            None => Ok(false),
        }
    }

    fn id(s: &mut State, prefix: &str) -> String {
        s.next += 1;
        format!("{prefix}-{}", s.next)
    }

    fn add_app(&self, guid: &str, name: &str, instances: u32) {
        let mut s = self.lock();
        s.apps.insert(
            guid.into(),
            FApp {
                app: App {
                    guid: guid.into(),
                    name: name.into(),
                    state: AppState::Started,
                    labels: BTreeMap::new(),
                    annotations: BTreeMap::new(),
                },
                ssh: true,
                droplet: Some(format!("droplet-{guid}")),
                processes: vec![("web".into(), instances)],
                starting_polls: 0,
            },
        );
    }

    fn with_app<R>(&self, guid: &str, f: impl FnOnce(&mut FApp) -> R) -> R {
        f(self.lock().apps.get_mut(guid).unwrap())
    }

    fn add_route(&self, host: &str, apps: &[&str]) -> String {
        let mut s = self.lock();
        let guid = Self::id(&mut s, "route");
        let dests = apps
            .iter()
            .map(|a| Destination {
                guid: format!("dest-{guid}-{a}").into(),
                app_guid: a.to_string().into(),
                process_type: "web".into(),
                port: Some(8080),
                protocol: Some("http1".into()),
            })
            .collect();
        s.routes.insert(
            guid.clone(),
            (
                Route {
                    guid: guid.clone().into(),
                    host: host.into(),
                    path: String::new(),
                    port: None,
                    domain_guid: "d1".into(),
                    url: format!("{host}.example.com"),
                },
                dests,
            ),
        );
        guid
    }

    fn route_guid(&self, url: &str) -> String {
        let s = self.lock();
        s.routes
            .values()
            .find(|(r, _)| r.url == url)
            .unwrap()
            .0
            .guid
            .to_string()
    }

    fn app_named(&self, name: &str) -> Option<FApp> {
        self.lock()
            .apps
            .values()
            .find(|a| a.app.name == name)
            .cloned()
    }

    fn route_apps(&self, url: &str) -> Option<BTreeSet<AppGuid>> {
        self.lock()
            .routes
            .values()
            .find(|(r, _)| r.url == url)
            .map(|(_, d)| d.iter().map(|d| d.app_guid.clone()).collect())
    }

    fn snapshot(&self) -> Snapshot {
        let s = self.lock();
        Snapshot {
            apps: s
                .apps
                .values()
                .map(|a| {
                    (
                        a.app.name.clone(),
                        (
                            a.app.guid.clone(),
                            a.app.state,
                            a.app.labels.clone(),
                            a.app.annotations.clone(),
                            a.ssh,
                            a.droplet.clone(),
                        ),
                    )
                })
                .collect(),
            routes: s
                .routes
                .values()
                .map(|(r, d)| {
                    (
                        r.url.clone(),
                        d.iter()
                            .map(|d| {
                                (
                                    d.app_guid.clone(),
                                    d.process_type.clone(),
                                    d.port,
                                    d.protocol.clone(),
                                )
                            })
                            .collect(),
                    )
                })
                .collect(),
            policies: s.policies.clone(),
        }
    }

    fn dep_view(guid: &str, d: &FDep) -> Deployment {
        Deployment {
            guid: guid.to_string().into(),
            state: d.state.clone(),
            new_processes: vec![format!("{guid}/new-web").into()],
            canary_step: (d.strategy == DeploymentStrategy::Canary).then_some((d.current, d.steps)),
            error: d.error.clone(),
            last_successful_healthcheck: Some("2026-08-20T10:00:00Z".into()),
        }
    }

    fn url_of(s: &State, nr: &NewRoute) -> String {
        let domain = s
            .domains
            .iter()
            .find(|d| d.guid == nr.domain_guid)
            .map(|d| d.name.clone())
            .unwrap_or_default();
        let mut u = if nr.host.is_empty() {
            domain
        } else {
            format!("{}.{domain}", nr.host)
        };
        if let Some(p) = nr.port {
            u.push_str(&format!(":{p}"));
        }
        u.push_str(&nr.path);
        u
    }
}

type AppSnap = (
    AppGuid,
    AppState,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
    bool,
    Option<String>,
);

/// A destination without its GUID: app, process type, port, protocol.
type DestSnap = (AppGuid, String, Option<u32>, Option<String>);

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    apps: BTreeMap<String, AppSnap>,
    routes: BTreeMap<String, BTreeSet<DestSnap>>,
    policies: BTreeSet<NetworkPolicy>,
}

fn not_found(what: &str) -> ApiError {
    ApiError::not_found(format!("{what} not found"))
}

impl CfApi for FakeCf {
    type Bits = ();

    async fn crash_events(&self, app: &AppGuid, _since: SystemTime) -> ApiResult<CrashEvents> {
        let app = app.as_str();
        self.enter("crash_events", app)?;
        let s = self.lock();
        if s.crash_records_forbidden {
            return Err(ApiError::new(
                403,
                "CF-NotAuthorized",
                "You are not authorized",
            ));
        }
        let crashing = s.crash_new_apps
            && s.crash_shows != CrashShows::CrashedState
            && s.apps.get(app).is_some_and(|a| {
                a.app.guid.as_str().starts_with("app-") && a.app.state != AppState::Stopped
            });
        Ok(CrashEvents {
            events: if crashing {
                vec![CrashEvent {
                    process_guid: Some(format!("{app}/web").into()),
                    instance_guid: None,
                    index: Some(0),
                    reason: "APP/PROC/WEB: Exited with status 137 (health check timed out)".into(),
                }]
            } else {
                Vec::new()
            },
            moves: Vec::new(),
            unavailable: Vec::new(),
        })
    }

    async fn find_apps_by_name(&self, _space: &SpaceGuid, names: &[String]) -> ApiResult<Vec<App>> {
        self.enter("find_apps_by_name", &names.join(","))?;
        Ok(self
            .lock()
            .apps
            .values()
            .filter(|a| names.contains(&a.app.name))
            .map(|a| a.app.clone())
            .collect())
    }

    async fn find_apps_by_label(&self, _space: &SpaceGuid, selector: &str) -> ApiResult<Vec<App>> {
        self.enter("find_apps_by_label", selector)?;
        let (k, v) = match selector.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (selector, None),
        };
        Ok(self
            .lock()
            .apps
            .values()
            .filter(|a| match (a.app.labels.get(k), v) {
                (Some(x), Some(v)) => x == v,
                (Some(_), None) => true,
                _ => false,
            })
            .map(|a| a.app.clone())
            .collect())
    }

    async fn get_app(&self, guid: &AppGuid) -> ApiResult<App> {
        let guid = guid.as_str();
        self.enter("get_app", guid)?;
        self.lock()
            .apps
            .get(guid)
            .map(|a| a.app.clone())
            .ok_or_else(|| not_found("app"))
    }

    async fn create_app(&self, _space: &SpaceGuid, new: &NewApp) -> ApiResult<App> {
        let after = self.enter("create_app", &new.name)?;
        let mut s = self.lock();
        if let Some(other) = s.create_race.take_if(|a| a.name == new.name) {
            s.apps.insert(
                other.guid.to_string(),
                FApp {
                    app: other,
                    ssh: true,
                    droplet: None,
                    processes: vec![("web".into(), 1)],
                    starting_polls: 0,
                },
            );
        }
        if s.apps
            .values()
            .any(|a| a.app.name.eq_ignore_ascii_case(&new.name))
        {
            return Err(ApiError::new(
                422,
                "CF-UniquenessError",
                format!("App with the name '{}' already exists.", new.name),
            ));
        }
        let g = Self::id(&mut s, "app");
        let app = App {
            guid: g.clone().into(),
            name: new.name.clone(),
            state: AppState::Stopped,
            labels: new.labels.clone(),
            annotations: new.annotations.clone(),
        };
        s.lifecycles.insert(g.clone(), new.lifecycle);
        s.apps.insert(
            g,
            FApp {
                app: app.clone(),
                ssh: true,
                droplet: None,
                processes: vec![("web".into(), 2)],
                starting_polls: 0,
            },
        );
        if after {
            Err(err500("create_app"))
        } else {
            Ok(app)
        }
    }

    async fn apply_manifest(&self, _space: &SpaceGuid, yaml: &str) -> ApiResult<()> {
        let after = self.enter("apply_manifest", "")?;
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml)
            .map_err(|e| ApiError::new(422, "CF-UnprocessableEntity", e.to_string()))?;
        let apps = doc["applications"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        for a in apps {
            let name = a["name"].as_str().unwrap_or_default().to_string();
            let mut s = self.lock();
            let guid = match s.apps.values().find(|x| x.app.name == name) {
                Some(x) => x.app.guid.to_string(),
                None => {
                    let g = Self::id(&mut s, "app");
                    let inst = a["instances"].as_u64().unwrap_or(2) as u32;
                    s.apps.insert(
                        g.clone(),
                        FApp {
                            app: App {
                                guid: g.clone().into(),
                                name: name.clone(),
                                state: AppState::Stopped,
                                labels: BTreeMap::new(),
                                annotations: BTreeMap::new(),
                            },
                            ssh: true,
                            droplet: None,
                            processes: vec![("web".into(), inst)],
                            starting_polls: 0,
                        },
                    );
                    g
                }
            };
            for svc in a["services"].as_sequence().cloned().unwrap_or_default() {
                let svc = svc
                    .as_str()
                    .or_else(|| svc["name"].as_str())
                    .unwrap_or_default()
                    .to_string();
                if !s.bindings.values().any(|(a, i)| a == &guid && i == &svc) {
                    let b = Self::id(&mut s, "binding");
                    s.bindings.insert(b, (guid.clone(), svc));
                }
            }
            if let Some(m) = a["env"].as_mapping() {
                let env = s.env.entry(guid.clone()).or_default();
                for (k, v) in m {
                    env.insert(
                        k.as_str().unwrap_or_default().to_string(),
                        v.as_str().unwrap_or_default().to_string(),
                    );
                }
            }
            let domains = s.domains.clone();
            let fa = s.apps.get_mut(&guid).unwrap();
            if let Some(n) = a["instances"].as_u64() {
                for p in fa.processes.iter_mut().filter(|p| p.0 == "web") {
                    p.1 = n as u32;
                }
            }
            for (kind, map) in [("labels", 0), ("annotations", 1)] {
                if let Some(m) = a["metadata"][kind].as_mapping() {
                    for (k, v) in m {
                        let (k, v) = (
                            k.as_str().unwrap_or_default(),
                            v.as_str().unwrap_or_default(),
                        );
                        let target = if map == 0 {
                            &mut fa.app.labels
                        } else {
                            &mut fa.app.annotations
                        };
                        target.insert(k.into(), v.into());
                    }
                }
            }
            let mut routes: Vec<String> = a["routes"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|r| r["route"].as_str().map(str::to_string))
                .collect();
            let mapped = s
                .routes
                .values()
                .any(|(_, d)| d.iter().any(|d| d.app_guid == guid));
            if a["random-route"].as_bool() == Some(true) && !mapped {
                routes.push(format!("{name}-rnd.example.com"));
            }
            for r in routes {
                let Some(addr) = resolve_route(&r, &domains) else {
                    return Err(ApiError::new(422, "CF-UnprocessableEntity", "no domain"));
                };
                let url = addr.url();
                let existing = s
                    .routes
                    .values()
                    .find(|(x, _)| x.url == url)
                    .map(|(x, _)| x.guid.to_string());
                let rg = match existing {
                    Some(g) => g,
                    None => {
                        let g = Self::id(&mut s, "route");
                        s.routes.insert(
                            g.clone(),
                            (
                                Route {
                                    guid: g.clone().into(),
                                    host: addr.host.clone(),
                                    path: addr.path.clone(),
                                    port: addr.port,
                                    domain_guid: addr.domain_guid.clone(),
                                    url,
                                },
                                Vec::new(),
                            ),
                        );
                        g
                    }
                };
                let dg = Self::id(&mut s, "dest");
                let dests = &mut s.routes.get_mut(&rg).unwrap().1;
                if !dests.iter().any(|d| d.app_guid == guid) {
                    dests.push(Destination {
                        guid: dg.into(),
                        app_guid: guid.clone().into(),
                        process_type: "web".into(),
                        port: None,
                        protocol: None,
                    });
                }
            }
        }
        self.lock().warnings.push("manifest applied".into());
        if after {
            Err(err500("apply_manifest"))
        } else {
            Ok(())
        }
    }

    async fn create_package(
        &self,
        app: &AppGuid,
        _source: &AppSource<()>,
    ) -> ApiResult<PackageGuid> {
        let app = app.as_str();
        let after = self.enter("create_package", app)?;
        let mut s = self.lock();
        let g = Self::id(&mut s, "pkg");
        s.packages.insert(g.clone(), app.into());
        if after {
            Err(err500("create_package"))
        } else {
            Ok(g.into())
        }
    }

    async fn upload_bits(
        &self,
        package: &PackageGuid,
        _bits: &(),
        progress: ProgressSink,
    ) -> ApiResult<()> {
        let package = package.as_str();
        let after = self.enter("upload_bits", package)?;
        progress.report(512, Some(1024));
        progress.report(1024, Some(1024));
        if after {
            Err(err500("upload_bits"))
        } else {
            Ok(())
        }
    }

    async fn create_build(&self, package: &PackageGuid) -> ApiResult<BuildGuid> {
        let package = package.as_str();
        let after = self.enter("create_build", package)?;
        let mut s = self.lock();
        let g = Self::id(&mut s, "build");
        s.builds.insert(g.clone(), (package.into(), 2));
        if after {
            Err(err500("create_build"))
        } else {
            Ok(g.into())
        }
    }

    async fn get_build(&self, build: &BuildGuid) -> ApiResult<BuildState> {
        let build = build.as_str();
        self.enter("get_build", build)?;
        let mut s = self.lock();
        let fail_for = s.staging_fails_for.clone();
        let (pkg, left) = s.builds.get_mut(build).ok_or_else(|| not_found("build"))?;
        if *left > 0 {
            *left -= 1;
            return Ok(BuildState::Staging);
        }
        let pkg = pkg.clone();
        let app = s.packages.get(&pkg).cloned().unwrap_or_default();
        let name = s
            .apps
            .get(&app)
            .map(|a| a.app.name.clone())
            .unwrap_or_default();
        if let Some(f) = fail_for
            && name.starts_with(&f)
        {
            return Ok(BuildState::Failed(
                "NoAppDetectedError - no buildpack detected".into(),
            ));
        }
        Ok(BuildState::Staged(format!("droplet-{build}").into()))
    }

    async fn set_current_droplet(&self, app: &AppGuid, droplet: &DropletGuid) -> ApiResult<()> {
        let app = app.as_str();
        let droplet = droplet.as_str();
        let after = self.enter("set_current_droplet", app)?;
        let mut s = self.lock();
        s.apps.get_mut(app).ok_or_else(|| not_found("app"))?.droplet = Some(droplet.into());
        if after {
            Err(err500("set_current_droplet"))
        } else {
            Ok(())
        }
    }

    async fn start_app(&self, app: &AppGuid) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("start_app", app)?;
        let mut s = self.lock();
        let polls = s.starting_polls;
        let a = s.apps.get_mut(app).ok_or_else(|| not_found("app"))?;
        a.app.state = AppState::Started;
        a.starting_polls = polls;
        if after {
            Err(err500("start_app"))
        } else {
            Ok(())
        }
    }

    async fn stop_app(&self, app: &AppGuid) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("stop_app", app)?;
        let mut s = self.lock();
        s.apps
            .get_mut(app)
            .ok_or_else(|| not_found("app"))?
            .app
            .state = AppState::Stopped;
        if after {
            Err(err500("stop_app"))
        } else {
            Ok(())
        }
    }

    async fn rename_app(&self, app: &AppGuid, name: &str) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("rename_app", &format!("{app} {name}"))?;
        let mut s = self.lock();
        if s.apps
            .values()
            .any(|a| a.app.name == name && a.app.guid != app)
        {
            return Err(ApiError::new(
                422,
                "CF-UniquenessError",
                "The app name is taken",
            ));
        }
        s.apps
            .get_mut(app)
            .ok_or_else(|| not_found("app"))?
            .app
            .name = name.into();
        if after {
            Err(err500("rename_app"))
        } else {
            Ok(())
        }
    }

    async fn delete_app(&self, app: &AppGuid) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("delete_app", app)?;
        let mut s = self.lock();
        s.apps.remove(app).ok_or_else(|| not_found("app"))?;
        for (_, d) in s.routes.values_mut() {
            d.retain(|d| d.app_guid != app);
        }
        if after {
            Err(err500("delete_app"))
        } else {
            Ok(())
        }
    }

    async fn update_metadata(&self, app: &AppGuid, update: &MetadataUpdate) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("update_metadata", app)?;
        let mut s = self.lock();
        let a = s.apps.get_mut(app).ok_or_else(|| not_found("app"))?;
        for (k, v) in &update.labels {
            match v {
                Some(v) => a.app.labels.insert(k.clone(), v.clone()),
                None => a.app.labels.remove(k),
            };
        }
        for (k, v) in &update.annotations {
            match v {
                Some(v) => a.app.annotations.insert(k.clone(), v.clone()),
                None => a.app.annotations.remove(k),
            };
        }
        if after {
            Err(err500("update_metadata"))
        } else {
            Ok(())
        }
    }

    async fn get_ssh_enabled(&self, app: &AppGuid) -> ApiResult<bool> {
        let app = app.as_str();
        self.enter("get_ssh_enabled", app)?;
        self.lock()
            .apps
            .get(app)
            .map(|a| a.ssh)
            .ok_or_else(|| not_found("app"))
    }

    async fn set_ssh_enabled(&self, app: &AppGuid, enabled: bool) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("set_ssh_enabled", app)?;
        self.lock()
            .apps
            .get_mut(app)
            .ok_or_else(|| not_found("app"))?
            .ssh = enabled;
        if after {
            Err(err500("set_ssh_enabled"))
        } else {
            Ok(())
        }
    }

    async fn list_processes(&self, app: &AppGuid) -> ApiResult<Vec<Process>> {
        let app = app.as_str();
        self.enter("list_processes", app)?;
        let s = self.lock();
        let a = s.apps.get(app).ok_or_else(|| not_found("app"))?;
        Ok(a.processes
            .iter()
            .map(|(t, n)| Process {
                guid: format!("{app}/{t}").into(),
                process_type: t.clone(),
                instances: *n,
                memory_mb: Some(64),
            })
            .collect())
    }

    async fn process_stats(&self, process: &ProcessGuid) -> ApiResult<Vec<InstanceStat>> {
        let process = process.as_str();
        self.enter("process_stats", process)?;
        let (app, t) = process.split_once('/').unwrap_or_default();
        let mut s = self.lock();
        if let Some(dep) = s.deployments.get(app)
            && t == "new-web"
        {
            let state = match s.new_instances.get(&dep.app).copied().unwrap_or_default() {
                NewInstances::Healthy => InstanceState::Running,
                NewInstances::Crash => InstanceState::Crashed,
                NewInstances::Stall => InstanceState::Starting,
            };
            return Ok(vec![InstanceStat {
                index: 0,
                state,
                routable: Some(state == InstanceState::Running),
                details: (state == InstanceState::Crashed).then(|| "exit status 1".to_string()),
                instance_guid: Some(format!("{process}/0")),
                uptime: Some(1),
            }]);
        }
        s.stat_polls += 1;
        let poll = s.stat_polls;
        let crash = s.crash_new_apps;
        let shows = s.crash_shows;
        let a = s.apps.get_mut(app).ok_or_else(|| not_found("process"))?;
        let n = a
            .processes
            .iter()
            .find(|(x, _)| x == t)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        let is_new = app.starts_with("app-");
        let restarted = crash && is_new && shows == CrashShows::Restarted;
        let state = if a.app.state == AppState::Stopped {
            InstanceState::Down
        } else if crash && is_new && shows == CrashShows::CrashedState {
            InstanceState::Crashed
        } else if crash && is_new {
            InstanceState::Starting
        } else if a.starting_polls > 0 {
            a.starting_polls -= 1;
            InstanceState::Starting
        } else {
            InstanceState::Running
        };
        Ok((0..n)
            .map(|index| InstanceStat {
                index,
                state,
                routable: Some(state == InstanceState::Running),
                details: (state == InstanceState::Crashed)
                    .then(|| "exit status 1 (out of memory)".to_string()),
                instance_guid: Some(if restarted {
                    format!("{process}/{index}/{poll}")
                } else {
                    format!("{process}/{index}")
                }),
                uptime: Some(if restarted { 0 } else { u64::from(poll) }),
            })
            .collect())
    }

    async fn find_domain(&self, name: &str) -> ApiResult<Option<Domain>> {
        self.enter("find_domain", name)?;
        Ok(self.lock().domains.iter().find(|d| d.name == name).cloned())
    }

    async fn default_domain(&self) -> ApiResult<Option<Domain>> {
        self.enter("default_domain", "")?;
        Ok(self.lock().domains.first().cloned())
    }

    async fn list_app_routes(&self, app: &AppGuid) -> ApiResult<Vec<Route>> {
        let app = app.as_str();
        self.enter("list_app_routes", app)?;
        Ok(self
            .lock()
            .routes
            .values()
            .filter(|(_, d)| d.iter().any(|d| d.app_guid == app))
            .map(|(r, _)| r.clone())
            .collect())
    }

    async fn find_route(&self, route: &NewRoute) -> ApiResult<Option<Route>> {
        self.enter("find_route", &route.host)?;
        let s = self.lock();
        let url = Self::url_of(&s, route);
        Ok(s.routes
            .values()
            .find(|(r, _)| r.url == url)
            .map(|(r, _)| r.clone()))
    }

    async fn create_route(&self, _space: &SpaceGuid, route: &NewRoute) -> ApiResult<Route> {
        let after = self.enter("create_route", &route.host)?;
        let mut s = self.lock();
        let url = Self::url_of(&s, route);
        if s.routes.values().any(|(r, _)| r.url == url) {
            return Err(ApiError::new(422, "CF-RouteNotAvailable", "route exists"));
        }
        let g = Self::id(&mut s, "route");
        let r = Route {
            guid: g.clone().into(),
            host: route.host.clone(),
            path: route.path.clone(),
            port: route.port,
            domain_guid: route.domain_guid.clone(),
            url,
        };
        s.routes.insert(g, (r.clone(), Vec::new()));
        if after {
            Err(err500("create_route"))
        } else {
            Ok(r)
        }
    }

    async fn delete_route(&self, route: &RouteGuid) -> ApiResult<()> {
        let route = route.as_str();
        let after = self.enter("delete_route", route)?;
        self.lock()
            .routes
            .remove(route)
            .ok_or_else(|| not_found("route"))?;
        if after {
            Err(err500("delete_route"))
        } else {
            Ok(())
        }
    }

    async fn list_destinations(&self, route: &RouteGuid) -> ApiResult<Vec<Destination>> {
        let route = route.as_str();
        self.enter("list_destinations", route)?;
        self.lock()
            .routes
            .get(route)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| not_found("route"))
    }

    async fn add_destination(
        &self,
        route: &RouteGuid,
        d: &NewDestination,
    ) -> ApiResult<Destination> {
        let route = route.as_str();
        let after = self.enter("add_destination", &format!("{route} {}", d.app_guid))?;
        let mut s = self.lock();
        let g = Self::id(&mut s, "dest");
        let dests = &mut s.routes.get_mut(route).ok_or_else(|| not_found("route"))?.1;
        let existing = dests
            .iter()
            .find(|x| x.app_guid == d.app_guid && x.process_type == d.process_type)
            .cloned();
        let out = match existing {
            Some(x) => x,
            None => {
                let x = Destination {
                    guid: g.into(),
                    app_guid: d.app_guid.clone(),
                    process_type: d.process_type.clone(),
                    port: d.port,
                    protocol: d.protocol.clone(),
                };
                dests.push(x.clone());
                x
            }
        };
        if after {
            Err(err500("add_destination"))
        } else {
            Ok(out)
        }
    }

    async fn remove_destination(
        &self,
        route: &RouteGuid,
        destination: &DestinationGuid,
    ) -> ApiResult<()> {
        let route = route.as_str();
        let destination = destination.as_str();
        let after = self.enter("remove_destination", &format!("{route} {destination}"))?;
        let mut s = self.lock();
        let dests = &mut s.routes.get_mut(route).ok_or_else(|| not_found("route"))?.1;
        let before = dests.len();
        dests.retain(|d| d.guid != destination);
        if dests.len() == before {
            return Err(not_found("destination"));
        }
        if after {
            Err(err500("remove_destination"))
        } else {
            Ok(())
        }
    }

    async fn list_network_policies(&self, apps: &[AppGuid]) -> ApiResult<Vec<NetworkPolicy>> {
        let joined: Vec<&str> = apps.iter().map(AppGuid::as_str).collect();
        self.enter("list_network_policies", &joined.join(","))?;
        if let Some(status) = self.lock().policies_status {
            return Err(ApiError::new(
                status,
                "policy-server",
                "token missing allowed scopes: [network.write]",
            ));
        }
        Ok(self
            .lock()
            .policies
            .iter()
            .filter(|p| apps.contains(&p.source_app) || apps.contains(&p.destination_app))
            .cloned()
            .collect())
    }

    async fn create_network_policies(&self, p: &[NetworkPolicy]) -> ApiResult<()> {
        let after = self.enter("create_network_policies", &p.len().to_string())?;
        self.lock().policies.extend(p.iter().cloned());
        if after {
            Err(err500("create_network_policies"))
        } else {
            Ok(())
        }
    }

    async fn delete_network_policies(&self, p: &[NetworkPolicy]) -> ApiResult<()> {
        let after = self.enter("delete_network_policies", &p.len().to_string())?;
        let mut s = self.lock();
        for x in p {
            s.policies.remove(x);
        }
        if after {
            Err(err500("delete_network_policies"))
        } else {
            Ok(())
        }
    }

    async fn create_deployment(&self, new: &NewDeployment) -> ApiResult<Deployment> {
        let after = self.enter("create_deployment", new.app_guid.as_str())?;
        let mut s = self.lock();
        s.created_deployments.push(new.clone());
        let g = Self::id(&mut s, "dep");
        let a = s
            .apps
            .get_mut(new.app_guid.as_str())
            .ok_or_else(|| not_found("app"))?;
        let previous = a.droplet.replace(new.droplet_guid.to_string());
        let d = FDep {
            app: new.app_guid.to_string(),
            strategy: new.strategy,
            state: DeploymentState::Deploying,
            previous,
            steps: u32::try_from(new.canary_steps.len()).unwrap().max(1),
            current: 1,
            paused_for: 0,
            done_steps: false,
            polls: 2,
            error: s.deployment_error.clone(),
        };
        s.deployments.insert(g.clone(), d);
        let out = Self::dep_view(&g, &s.deployments[&g]);
        if after {
            Err(err500("create_deployment"))
        } else {
            Ok(out)
        }
    }

    async fn find_active_deployment(&self, app: &AppGuid) -> ApiResult<Option<Deployment>> {
        self.enter("find_active_deployment", app.as_str())?;
        let s = self.lock();
        Ok(s.deployments
            .iter()
            .rfind(|(_, d)| d.app == app.as_str() && !d.state.is_final())
            .map(|(g, d)| Self::dep_view(g, d)))
    }

    async fn get_deployment(&self, guid: &DeploymentGuid) -> ApiResult<Deployment> {
        let guid = guid.as_str();
        self.enter("get_deployment", guid)?;
        let mut s = self.lock();
        let behaviour = {
            let d = s
                .deployments
                .get(guid)
                .ok_or_else(|| not_found("deployment"))?;
            s.new_instances.get(&d.app).copied().unwrap_or_default()
        };
        let d = s
            .deployments
            .get_mut(guid)
            .ok_or_else(|| not_found("deployment"))?;
        match d.state {
            DeploymentState::Deploying if behaviour == NewInstances::Healthy => {
                if d.polls > 0 {
                    d.polls -= 1;
                } else if d.strategy == DeploymentStrategy::Canary
                    && !d.done_steps
                    && d.paused_for < d.current
                {
                    d.paused_for = d.current;
                    d.state = DeploymentState::Paused;
                } else {
                    d.state = DeploymentState::Deployed;
                }
            }
            DeploymentState::Canceling => {
                d.state = DeploymentState::Canceled;
            }
            _ => {}
        }
        Ok(Self::dep_view(guid, d))
    }

    async fn continue_deployment(&self, guid: &DeploymentGuid) -> ApiResult<()> {
        let guid = guid.as_str();
        let after = self.enter("continue_deployment", guid)?;
        let mut s = self.lock();
        let d = s
            .deployments
            .get_mut(guid)
            .ok_or_else(|| not_found("deployment"))?;
        if d.state != DeploymentState::Paused {
            return Err(ApiError::new(
                422,
                "CF-UnprocessableEntity",
                format!("Cannot continue a deployment with status: {}", d.state),
            ));
        }
        if d.current < d.steps {
            d.current += 1;
        } else {
            d.done_steps = true;
        }
        d.state = DeploymentState::Deploying;
        d.polls = 1;
        if after {
            Err(err500("continue_deployment"))
        } else {
            Ok(())
        }
    }

    async fn cancel_deployment(&self, guid: &DeploymentGuid) -> ApiResult<()> {
        let guid = guid.as_str();
        let after = self.enter("cancel_deployment", guid)?;
        let mut s = self.lock();
        let d = s
            .deployments
            .get_mut(guid)
            .ok_or_else(|| not_found("deployment"))?;
        if d.state.is_final() {
            return Err(ApiError::new(
                422,
                "CF-UnprocessableEntity",
                format!("Cannot cancel a deployment with status: {}", d.state),
            ));
        }
        d.state = DeploymentState::Canceling;
        let (app, previous) = (d.app.clone(), d.previous.clone());
        if let Some(a) = s.apps.get_mut(&app) {
            a.droplet = previous;
        }
        if after {
            Err(err500("cancel_deployment"))
        } else {
            Ok(())
        }
    }

    async fn list_service_bindings(&self, app: &AppGuid) -> ApiResult<Vec<ServiceBinding>> {
        let app = app.as_str();
        self.enter("list_service_bindings", app)?;
        Ok(self
            .lock()
            .bindings
            .iter()
            .filter(|(_, (a, _))| a == app)
            .map(|(g, (_, i))| ServiceBinding {
                guid: g.clone().into(),
                service_instance_guid: i.clone().into(),
            })
            .collect())
    }

    async fn delete_service_binding(&self, guid: &ServiceCredentialBindingGuid) -> ApiResult<()> {
        let guid = guid.as_str();
        let after = self.enter("delete_service_binding", guid)?;
        self.lock()
            .bindings
            .remove(guid)
            .ok_or_else(|| not_found("service binding"))?;
        if after {
            Err(err500("delete_service_binding"))
        } else {
            Ok(())
        }
    }

    async fn get_env_vars(&self, app: &AppGuid) -> ApiResult<BTreeMap<String, String>> {
        let app = app.as_str();
        self.enter("get_env_vars", app)?;
        let s = self.lock();
        if !s.apps.contains_key(app) {
            return Err(not_found("app"));
        }
        Ok(s.env.get(app).cloned().unwrap_or_default())
    }

    async fn update_env_vars(
        &self,
        app: &AppGuid,
        vars: &BTreeMap<String, Option<String>>,
    ) -> ApiResult<()> {
        let app = app.as_str();
        let after = self.enter("update_env_vars", app)?;
        let mut s = self.lock();
        if !s.apps.contains_key(app) {
            return Err(not_found("app"));
        }
        let env = s.env.entry(app.to_string()).or_default();
        for (k, v) in vars {
            match v {
                Some(v) => env.insert(k.clone(), v.clone()),
                None => env.remove(k),
            };
        }
        if after {
            Err(err500("update_env_vars"))
        } else {
            Ok(())
        }
    }

    async fn app_log(
        &self,
        app: &AppGuid,
        _query: &cf_zero_downtime::deploy::api::LogQuery,
    ) -> ApiResult<Vec<cf_zero_downtime::deploy::api::LogRecord>> {
        let app = app.as_str();
        self.enter("app_log", app)?;
        // The fake has no log-cache: as on a platform that does not offer it.
        Err(ApiError::unavailable(
            "log-cache is not offered by the fake",
        ))
    }

    async fn scale_process(&self, process: &ProcessGuid, instances: u32) -> ApiResult<()> {
        let process = process.as_str();
        let after = self.enter("scale_process", process)?;
        let (app, t) = process.split_once('/').unwrap_or_default();
        let mut s = self.lock();
        let a = s.apps.get_mut(app).ok_or_else(|| not_found("process"))?;
        let n = a
            .processes
            .iter_mut()
            .find(|(pt, _)| pt == t)
            .ok_or_else(|| not_found("process"))?;
        n.1 = instances;
        if after {
            return Err(err500("scale_process"));
        }
        Ok(())
    }

    async fn quotas(&self, space: &SpaceGuid) -> ApiResult<Quotas> {
        self.enter("quotas", space.as_str())?;
        Ok(self.lock().quotas.clone())
    }

    async fn create_task(&self, app: &AppGuid, task: &NewTask) -> ApiResult<TaskGuid> {
        self.enter("create_task", app.as_str())?;
        let mut s = self.lock();
        let name = s
            .apps
            .get(app.as_str())
            .map(|a| a.app.name.clone())
            .ok_or_else(|| not_found("app"))?;
        let state = s
            .task_outcomes
            .get(name.trim_end_matches("-candidate"))
            .cloned()
            .unwrap_or(TaskState::Succeeded);
        let guid = Self::id(&mut s, "task");
        s.tasks
            .insert(guid.clone(), (app.to_string(), task.name.clone(), state));
        Ok(TaskGuid::new(guid))
    }

    async fn get_task(&self, guid: &TaskGuid) -> ApiResult<TaskState> {
        self.enter("get_task", guid.as_str())?;
        let s = self.lock();
        s.tasks
            .get(guid.as_str())
            .map(|t| t.2.clone())
            .ok_or_else(|| not_found("task"))
    }

    async fn cancel_task(&self, guid: &TaskGuid) -> ApiResult<()> {
        self.enter("cancel_task", guid.as_str())?;
        let mut s = self.lock();
        let t = s
            .tasks
            .get_mut(guid.as_str())
            .ok_or_else(|| not_found("task"))?;
        t.2 = TaskState::Failed("task was cancelled".into());
        Ok(())
    }

    fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().warnings)
    }
}

/// `zero-downtime-rollback` on this fake (a child module: it uses the fake's internals).
mod rollback;

/// The quota check and `--strategy auto` on this fake.
mod quota;

/// One deploy per app at a time (the run lock) on this fake.
mod lock;

// ---- fixtures -------------------------------------------------------------------------------

/// The world before a swap: live `web` (guid A, 2 instances, SSH off, labelled), its route,
/// an unrelated `backend` (B) with network policies in both directions.
fn world() -> FakeCf {
    let cf = FakeCf::new();
    cf.add_app("A", "web", 2);
    cf.with_app("A", |a| {
        a.ssh = false;
        a.app.labels.insert("team".into(), "blue".into());
        a.app.annotations.insert("owner".into(), "ops".into());
    });
    cf.add_app("B", "backend", 1);
    cf.add_route("web", &["A"]);
    cf.add_route("backend", &["B"]);
    {
        let mut s = cf.lock();
        s.policies.insert(NetworkPolicy {
            source_app: "A".into(),
            destination_app: "B".into(),
            protocol: "tcp".into(),
            start_port: 8080,
            end_port: 8080,
        });
        s.policies.insert(NetworkPolicy {
            source_app: "B".into(),
            destination_app: "A".into(),
            protocol: "tcp".into(),
            start_port: 9000,
            end_port: 9000,
        });
    }
    cf
}

fn render(r: &RenderRequest) -> Result<String, String> {
    let mut app = serde_json::json!({
        "name": r.name,
        "metadata": {"labels": r.labels, "annotations": r.annotations},
    });
    if r.random_route {
        app["random-route"] = true.into();
    } else if r.no_route {
        app["no-route"] = true.into();
    } else {
        app["routes"] = r
            .routes
            .iter()
            .map(|u| serde_json::json!({"route": u}))
            .collect();
    }
    if let Some(n) = r.instances.get("web") {
        app["instances"] = (*n).into();
    }
    serde_yaml_ng::to_string(&serde_json::json!({"applications": [app]})).map_err(|e| e.to_string())
}

fn spec(name: &str) -> AppSpec<()> {
    AppSpec {
        name: name.into(),
        routes: RouteSpec::Routes(vec![format!("{name}.example.com")]),
        instances: BTreeMap::from([("web".to_string(), 2)]),
        memory_mb: BTreeMap::from([("web".to_string(), 64)]),
        source: AppSource::Bits(()),
        cnb: false,
        render: Arc::new(render),
    }
}

fn req() -> DeployRequest {
    DeployRequest {
        org: "o".into(),
        space: "s".into(),
        space_guid: "sg".into(),
        user: Some("alice".into()),
        strategy: Strategy::BlueGreen,
        max_in_flight: None,
        instance_steps: Vec::new(),
        smoke_test: None,
        smoke_test_path: None,
        old_app: OldApp::Delete,
        drain: Duration::from_secs(10),
        drain_auto: false,
        timeout: Duration::from_secs(60),
        smoke_timeout: Duration::from_secs(30),
        poll_interval: Duration::from_secs(1),
        keep_scale: false,
        temp_route_suffix: "-temp".into(),
        dry_run: false,
        probe: ProbeConfig::default(),
        analysis: None,
        fallback: None,
        run_by: "alice@ci-host".into(),
        wait_for_lock: Duration::ZERO,
        tasks: TaskRequest::default(),
    }
}

async fn deploy(cf: &FakeCf, req: &DeployRequest, apps: &[AppSpec<()>]) -> (Outcome, Vec<Event>) {
    let mut events: Vec<Event> = Vec::new();
    let outcome = run(cf, req, apps, &mut events, &CancellationToken::new()).await;
    (outcome, events)
}

fn undo_descriptions(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::UndoStarted { description } => Some(description.clone()),
            _ => None,
        })
        .collect()
}

fn index_of(calls: &[String], prefix: &str) -> usize {
    calls
        .iter()
        .position(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no call {prefix} in {calls:#?}"))
}

/// Asserts the swap finished: `web` is the new app, serving its route; nothing left over.
fn assert_swapped(cf: &FakeCf) -> String {
    let web = cf.app_named("web").expect("an app named web");
    assert_ne!(web.app.guid, "A");
    assert_eq!(web.app.state, AppState::Started);
    assert!(web.droplet.is_some());
    assert_eq!(
        cf.route_apps("web.example.com"),
        Some(BTreeSet::from([web.app.guid.clone()]))
    );
    assert_eq!(
        cf.route_apps("web-temp.example.com"),
        None,
        "temp route left"
    );
    assert!(cf.app_named("web-candidate").is_none());
    assert!(!web.app.labels.contains_key("zero-downtime.cf/role"));
    web.app.guid.to_string()
}

// ---- tests ----------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn swap_replaces_the_live_app_and_carries_its_state_over() {
    let cf = world();
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let g = assert_swapped(&cf);
    assert!(!cf.lock().apps.contains_key("A"), "old app deleted");
    let web = cf.app_named("web").unwrap();
    assert!(!web.ssh, "SSH setting carried over");
    assert_eq!(web.app.labels.get("team").map(String::as_str), Some("blue"));
    assert_eq!(
        web.app.annotations.get("owner").map(String::as_str),
        Some("ops")
    );
    let pol = cf.lock().policies.clone();
    assert!(
        pol.iter()
            .any(|p| p.source_app == *g && p.destination_app == "B")
    );
    assert!(
        pol.iter()
            .any(|p| p.source_app == "B" && p.destination_app == *g)
    );

    // Order: map the new app before unmapping the old; then the new version takes the name
    // (the old app moved out of the way first) before anything is stopped or deleted.
    let calls = cf.mutating_calls();
    let r = cf.route_guid("web.example.com");
    let map = index_of(&calls, &format!("add_destination {r} {g}"));
    let unmap = index_of(&calls, &format!("remove_destination {r} dest-{r}-A"));
    // The first update of A marks it as being deployed (the lock); the label comes after the
    // unmap.
    let label_old = unmap + index_of(&calls[unmap..], "update_metadata A");
    let rename_old = index_of(&calls, "rename_app A web-venerable");
    let rename = index_of(&calls, &format!("rename_app {g} web"));
    let temp = index_of(&calls, "delete_route");
    let stop = index_of(&calls, "stop_app A");
    let delete = index_of(&calls, "delete_app A");
    assert!(
        map < unmap
            && unmap < label_old
            && label_old < rename_old
            && rename_old < rename
            && rename < temp
            && temp < stop
            && stop < delete,
        "{calls:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::UploadProgress { sent: 1024, .. }))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Waiting { what, .. } if what == "drain"))
    );
    assert!(matches!(
        events.last(),
        Some(Event::Finished {
            outcome: Outcome::Deployed,
            ..
        })
    ));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::StepFinished { kind, warnings, .. }
        if kind == "apply_manifest" && warnings == &vec!["manifest applied".to_string()]))
    );
}

#[tokio::test(start_paused = true)]
async fn first_deploy_is_a_plain_push_without_candidate() {
    let cf = FakeCf::new();
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let web = cf.app_named("web").unwrap();
    assert_eq!(web.app.state, AppState::Started);
    assert_eq!(
        cf.route_apps("web.example.com"),
        Some(BTreeSet::from([web.app.guid]))
    );
    assert!(
        !cf.mutating_calls()
            .iter()
            .any(|c| c.contains("candidate") || c.contains("temp"))
    );
    assert!(
        !cf.mutating_calls()
            .iter()
            .any(|c| c.starts_with("delete_") || c.starts_with("stop_"))
    );
}

#[tokio::test(start_paused = true)]
async fn dry_run_changes_nothing() {
    let cf = world();
    let before = cf.snapshot();
    let mut r = req();
    r.dry_run = true;
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::DryRun);
    assert_eq!(outcome.exit_code(), 0);
    assert!(cf.mutating_calls().is_empty());
    assert_eq!(cf.snapshot(), before);
    let Some(Event::Plan {
        steps,
        dry_run: true,
        ..
    }) = events.iter().find(|e| matches!(e, Event::Plan { .. }))
    else {
        panic!("no plan event")
    };
    assert!(
        steps
            .iter()
            .any(|s| s.contains("Mapping route web.example.com"))
    );
}

/// Every mutating call of a happy swap fails once, before or after its effect: before the
/// switch the start state comes back exactly; after it the new version serves and the
/// leftovers are named.
#[tokio::test(start_paused = true)]
async fn a_failure_at_every_mutating_call_rolls_back_or_names_leftovers() {
    let happy = world();
    let (o, _) = deploy(&happy, &req(), &[spec("web")]).await;
    assert_eq!(o, Outcome::Deployed);
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut cases = Vec::new();
    for c in happy.mutating_calls() {
        let m = c.split(' ').next().unwrap_or_default().to_string();
        let n = seen.entry(m.clone()).or_insert(0);
        *n += 1;
        cases.push((m, *n));
    }
    // One failed call anywhere ends in exactly one of three clean states: nothing changed
    // (marking the live app as being deployed failed: the world as before), rolled back (the
    // world as before) or deployed (after the switch, steps are tried again).
    let (mut rolled_back, mut deployed) = (0, 0);
    for (method, n) in cases {
        for when in [When::Before, When::After] {
            let cf = world();
            let before = cf.snapshot();
            cf.fail(&method, n, when);
            let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
            let ctx = format!("{method} #{n} {when:?}: {outcome:?}");
            match &outcome {
                Outcome::RolledBack { error } => {
                    rolled_back += 1;
                    assert!(error.contains("injected failure"), "{ctx}");
                    assert_eq!(cf.snapshot(), before, "{ctx}\n{events:#?}");
                    assert_eq!(outcome.exit_code(), 1, "{ctx}");
                }
                Outcome::NothingChanged { error } => {
                    assert_eq!((method.as_str(), n), ("update_metadata", 1), "{ctx}");
                    assert!(error.contains("marking the app as being deployed"), "{ctx}");
                    assert_eq!(cf.snapshot(), before, "{ctx}\n{events:#?}");
                }
                Outcome::Deployed => {
                    deployed += 1;
                    assert_swapped(&cf);
                    assert!(!cf.lock().apps.contains_key("A"), "{ctx}");
                    assert!(cf.app_named("web-candidate").is_none(), "{ctx}");
                    assert_eq!(cf.route_apps("web-temp.example.com"), None, "{ctx}");
                    assert_eq!(outcome.exit_code(), 0, "{ctx}");
                }
                other => panic!("unexpected outcome {other:?} for {ctx}"),
            }
        }
    }
    assert!(rolled_back >= 20, "{rolled_back}");
    assert!(deployed >= 8, "{deployed}");
}

#[tokio::test(start_paused = true)]
async fn undos_run_in_reverse_order() {
    let cf = world();
    cf.fail("add_destination", 1, When::Before);
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert_eq!(
        undo_descriptions(&events),
        vec![
            "delete 2 network policies",
            "delete app web-candidate",
            "delete route web-temp.example.com"
        ]
    );
    assert_eq!(
        outcome.last_line(),
        "rolled back, the old version is serving"
    );

    // After the switch a failed step is tried again.
    let cf = world();
    cf.fail("stop_app", 1, When::Before);
    let mut r = req();
    r.drain = Duration::ZERO;
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed);

    // A failure while unmapping maps the old app back too: the world is as before.
    let cf = world();
    let before = cf.snapshot();
    cf.fail("remove_destination", 1, When::Before);
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert_eq!(
        undo_descriptions(&events)[0],
        "map route web.example.com back to web"
    );
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn a_failing_undo_ends_in_rollback_incomplete_with_manual_steps() {
    let cf = world();
    cf.fail("add_destination", 1, When::Before);
    cf.fail("delete_app", 1, When::Before);
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::RollbackIncomplete { manual_steps, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        manual_steps,
        &vec!["cf delete web-candidate -f".to_string()]
    );
    assert_eq!(
        outcome.last_line(),
        "ROLLBACK INCOMPLETE: cf delete web-candidate -f"
    );
    assert_eq!(outcome.exit_code(), 1);
    // The remaining undos still ran.
    assert_eq!(cf.route_apps("web-temp.example.com"), None);
    assert!(events.iter().any(
        |e| matches!(e, Event::UndoFailed { manual, .. } if manual == "cf delete web-candidate -f")
    ));
    // The live app was never touched.
    assert_eq!(
        cf.route_apps("web.example.com"),
        Some(BTreeSet::from([AppGuid::from("A")]))
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_the_switch_names_the_exact_leftovers() {
    // A step after the switch that keeps failing (first try and both retries): the new
    // version already owns the name; what is left is named, and the exit status says so.
    let cf = world();
    for n in 1..=3 {
        cf.fail("delete_route", n, When::Before);
    }
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::DeployedWithLeftovers { leftovers, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        leftovers,
        &vec![
            "cf delete-route example.com --hostname web-temp -f".to_string(),
            "cf stop web-venerable".to_string(),
            "cf delete web-venerable -f".to_string(),
        ]
    );
    assert_eq!(outcome.exit_code(), 1);
    assert!(outcome.last_line().contains("cf delete web-venerable -f"));
    let web = cf.app_named("web").expect("the new version owns the name");
    assert_ne!(web.app.guid, "A");
    let old = cf
        .app_named("web-venerable")
        .expect("the old app, labelled");
    assert_eq!(
        old.app
            .labels
            .get("zero-downtime.cf/role")
            .map(String::as_str),
        Some("venerable")
    );
    let retries = events
        .iter()
        .filter(|e| matches!(e, Event::Warning { message, .. } if message.contains("trying again")))
        .count();
    assert_eq!(retries, 2);

    // The next deploy removes the labelled venerable.
    let (outcome, _) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed);
    assert!(cf.app_named("web-venerable").is_none());
    assert!(!cf.lock().apps.contains_key("A"));
}

#[tokio::test(start_paused = true)]
async fn staging_failure_and_crashes_roll_back_with_the_reason() {
    let cf = world();
    let before = cf.snapshot();
    cf.lock().staging_fails_for = Some("web".into());
    let (outcome, _) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.contains("staging app 'web' failed: NoAppDetectedError"),
        "{error}"
    );
    assert_eq!(cf.snapshot(), before);

    let cf = world();
    cf.lock().crash_new_apps = true;
    let (outcome, _) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.contains("instance 0 of process 'web' crashed: exit status 1 (out of memory)"),
        "{error}"
    );
    assert!(
        error.contains("TIP: the failed app is deleted by the rollback; watch 'cf logs web-candidate' in another terminal during the next push"),
        "{error}"
    );
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn instances_that_stall_time_out_and_slow_ones_do_not() {
    let cf = world();
    cf.lock().starting_polls = 10_000;
    let before = cf.snapshot();
    let (outcome, _) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.contains("0 of 2 instances running, no progress for 1m"),
        "{error}"
    );
    assert_eq!(cf.snapshot(), before);

    let cf = world();
    cf.lock().starting_polls = 5;
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed);
    assert!(events.iter().any(
        |e| matches!(e, Event::Waiting { detail, .. } if detail == "0 of 2 instances running")
    ));
}

/// A reporter that cancels the deploy when a step of the given kind starts.
struct CancelAt {
    kind: String,
    token: CancellationToken,
    events: Vec<Event>,
}

impl Reporter for CancelAt {
    fn report(&mut self, event: Event) {
        if let Event::StepStarted { kind, .. } = &event
            && *kind == self.kind
        {
            self.token.cancel();
        }
        self.events.push(event);
    }
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_at_each_phase_rolls_back_before_the_switch() {
    let happy = world();
    let (_, events) = deploy(&happy, &req(), &[spec("web")]).await;
    let kinds: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect();
    let commit = kinds.iter().position(|k| k == "drain").unwrap();
    for (i, kind) in kinds.iter().enumerate() {
        // Waits stop at once; a mutating step runs to its end and the next boundary stops.
        let waits = ["stage", "wait_healthy", "smoke_test", "drain"];
        let stops_at = if waits.contains(&kind.as_str()) {
            i
        } else {
            i + 1
        };
        let cf = world();
        let before = cf.snapshot();
        let token = CancellationToken::new();
        let mut rep = CancelAt {
            kind: kind.clone(),
            token: token.clone(),
            events: Vec::new(),
        };
        let outcome = run(&cf, &req(), &[spec("web")], &mut rep, &token).await;
        if stops_at >= kinds.len() || stops_at >= commit {
            // After the switch an interrupt finishes the retire (the drain included).
            assert_eq!(outcome, Outcome::Deployed, "{kind}");
            assert_swapped(&cf);
            assert!(!cf.lock().apps.contains_key("A"), "{kind}");
            if stops_at >= commit && stops_at < kinds.len() {
                assert!(
                    rep.events.iter().any(|e| matches!(e, Event::Warning { message, .. } if message.starts_with("interrupted after the switch"))),
                    "{kind}"
                );
            }
        } else {
            assert!(
                matches!(&outcome, Outcome::RolledBack { error } if error.starts_with("interrupted")),
                "{kind}: {outcome:?}"
            );
            assert_eq!(cf.snapshot(), before, "{kind}");
        }
    }
}

/// A reporter that interrupts twice (stop, then abandon) when a step of the given kind
/// starts, or when the rollback reaches its first undo.
struct AbandonAt {
    kind: &'static str,
    interrupt: Interrupt,
    events: Vec<Event>,
}

impl Reporter for AbandonAt {
    fn report(&mut self, event: Event) {
        let hit = match &event {
            Event::StepStarted { kind, .. } => kind == self.kind,
            Event::UndoStarted { .. } => self.kind == "undo",
            _ => false,
        };
        if hit {
            self.interrupt.abandon();
        }
        self.events.push(event);
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_interrupt_stops_waiting_and_names_what_is_left() {
    // During the drain: the new version serves; the retire is left, named, exit status 1.
    let cf = world();
    let mut rep = AbandonAt {
        kind: "drain",
        interrupt: Interrupt::new(),
        events: Vec::new(),
    };
    let i = rep.interrupt.clone();
    let outcome = run(&cf, &req(), &[spec("web")], &mut rep, &i).await;
    let Outcome::DeployedWithLeftovers { leftovers, error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("stopped waiting"), "{error}");
    assert_eq!(
        leftovers,
        &vec![
            "cf set-label app web zero-downtime.cf/role=venerable".to_string(),
            "cf rename web web-venerable".to_string(),
            "cf rename web-candidate web".to_string(),
            "cf unset-label app web zero-downtime.cf/role".to_string(),
            "cf delete-route example.com --hostname web-temp -f".to_string(),
            "cf stop web-venerable".to_string(),
            "cf delete web-venerable -f".to_string(),
        ]
    );
    assert_eq!(outcome.exit_code(), 1);

    // During the rollback: the undos left are listed for the user, none is run.
    let cf = world();
    cf.lock().crash_new_apps = true;
    let mut rep = AbandonAt {
        kind: "undo",
        interrupt: Interrupt::new(),
        events: Vec::new(),
    };
    let i = rep.interrupt.clone();
    let outcome = run(&cf, &req(), &[spec("web")], &mut rep, &i).await;
    let Outcome::RollbackIncomplete { manual_steps, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        manual_steps
            .iter()
            .any(|m| m.starts_with("cf delete web-candidate -f")),
        "{manual_steps:?}"
    );
    assert!(
        manual_steps
            .iter()
            .any(|m| m.starts_with("cf delete-route example.com --hostname web-temp")),
        "{manual_steps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_that_polling_never_sees_fails_within_one_poll() {
    // Diego restarted the instance before each poll: STARTING with a new instance GUID.
    for (shows, forbidden, expect) in [
        (CrashShows::Restarted, false, "crashed"),
        (CrashShows::Restarted, true, "restarted between two polls"),
        (CrashShows::RecordsOnly, false, "health check timed out"),
    ] {
        let cf = world();
        let before = cf.snapshot();
        {
            let mut s = cf.lock();
            s.crash_new_apps = true;
            s.crash_shows = shows;
            s.crash_records_forbidden = forbidden;
        }
        let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
        let ctx = format!("{shows:?} forbidden={forbidden}: {outcome:?}");
        let Outcome::RolledBack { error } = &outcome else {
            panic!("{ctx}")
        };
        assert!(error.contains(expect), "{ctx}");
        assert!(error.contains("crashed"), "{ctx}");
        assert_eq!(cf.snapshot(), before, "{ctx}");
        // Refused within a poll or two of the first crash, not at --timeout.
        let waits = events
            .iter()
            .filter(|e| matches!(e, Event::Waiting { what, .. } if what == "instances"))
            .count();
        assert!(waits <= 2, "{ctx}: {waits} waits");
        let gaps = events
            .iter()
            .filter(|e| matches!(e, Event::Warning { message, .. } if message.starts_with("crash records")))
            .count();
        assert_eq!(gaps, usize::from(forbidden), "{ctx}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_policy_server_that_refuses_or_is_absent_degrades_to_a_warning() {
    for status in [403, 404] {
        let cf = world();
        cf.lock().policies_status = Some(status);
        let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
        assert_eq!(outcome, Outcome::Deployed, "{status}: {events:#?}");
        assert_swapped(&cf);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Warning { message, .. }
                if message.starts_with("network policies of app 'web' cannot be read")
                    && message.contains("not carried over"))),
            "{status}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_before_the_first_step_changes_nothing() {
    let cf = world();
    let token = CancellationToken::new();
    token.cancel();
    let mut events: Vec<Event> = Vec::new();
    let outcome = run(&cf, &req(), &[spec("web")], &mut events, &token).await;
    assert!(
        matches!(outcome, Outcome::NothingChanged { .. }),
        "{outcome:?}"
    );
    assert_eq!(outcome.last_line(), "nothing was changed");
    assert!(cf.mutating_calls().is_empty());
}

fn two_apps() -> FakeCf {
    let cf = world();
    cf.add_app("C", "api", 1);
    cf.add_route("api", &["C"]);
    cf
}

#[tokio::test(start_paused = true)]
async fn multi_app_deploys_all_or_nothing() {
    let cf = two_apps();
    let (outcome, events) = deploy(&cf, &req(), &[spec("web"), spec("api")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_swapped(&cf);
    assert_ne!(cf.app_named("api").unwrap().app.guid, "C");

    // The second app fails staging: no route ever switched, both candidates removed.
    let cf = two_apps();
    let before = cf.snapshot();
    cf.lock().staging_fails_for = Some("api".into());
    let (outcome, _) = deploy(&cf, &req(), &[spec("web"), spec("api")]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert!(!cf.calls().iter().any(|c| c.starts_with("add_destination")));
    assert_eq!(cf.snapshot(), before);

    // The second app's unmap fails: the first app's switch is reverted too.
    let cf = two_apps();
    let before = cf.snapshot();
    cf.fail("remove_destination", 2, When::Before);
    let (outcome, _) = deploy(&cf, &req(), &[spec("web"), spec("api")]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn leftovers_of_a_killed_run_are_cleaned_up_and_foreign_names_refused() {
    // A killed run left a candidate on the temp route.
    let cf = world();
    cf.add_app("L", "web-candidate", 1);
    cf.with_app("L", |a| {
        a.app
            .labels
            .insert("zero-downtime.cf/role".into(), "candidate".into());
        a.app
            .annotations
            .insert("zero-downtime.cf/app".into(), "web".into());
    });
    cf.add_route("web-temp", &["L"]);
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert!(!cf.lock().apps.contains_key("L"));
    assert_swapped(&cf);

    // A killed run after the switch: the candidate serves production next to the live app.
    let cf = world();
    cf.add_app("L", "web-candidate", 1);
    cf.with_app("L", |a| {
        a.app
            .labels
            .insert("zero-downtime.cf/role".into(), "candidate".into());
        a.app
            .annotations
            .insert("zero-downtime.cf/app".into(), "web".into());
    });
    let web_route = cf
        .lock()
        .routes
        .values()
        .find(|(r, _)| r.url == "web.example.com")
        .unwrap()
        .0
        .guid
        .clone();
    cf.lock()
        .routes
        .get_mut(web_route.as_str())
        .unwrap()
        .1
        .push(Destination {
            guid: "dest-L".into(),
            app_guid: "L".into(),
            process_type: "web".into(),
            port: None,
            protocol: None,
        });
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert!(!cf.lock().apps.contains_key("L"));
    assert_swapped(&cf);

    // An app of the user's with the candidate name: clear error, nothing touched.
    let cf = world();
    cf.add_app("U", "web-candidate", 1);
    let (outcome, _) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::NothingChanged { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.contains("'web-candidate'") && error.contains("not created by cf-zero-downtime"),
        "{error}"
    );
    assert!(cf.mutating_calls().is_empty());

    // Ours, but labelled for another app: just as foreign.
    let cf = world();
    cf.add_app("V", "web-venerable", 1);
    cf.with_app("V", |a| {
        a.app
            .labels
            .insert("zero-downtime.cf/role".into(), "venerable".into());
        a.app
            .annotations
            .insert("zero-downtime.cf/app".into(), "other".into());
    });
    let mut r = req();
    r.old_app = OldApp::Keep;
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    assert!(
        matches!(&outcome, Outcome::NothingChanged { error } if error.contains("'web-venerable'")),
        "{outcome:?}"
    );
    assert!(cf.mutating_calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn old_app_stop_keeps_a_labelled_venerable() {
    let cf = world();
    let mut r = req();
    r.old_app = OldApp::Stop;
    r.keep_scale = true;
    cf.with_app("A", |a| a.processes = vec![("web".into(), 5)]);
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed);
    assert_swapped(&cf);
    let v = cf.app_named("web-venerable").unwrap();
    assert_eq!(v.app.guid, "A");
    assert_eq!(v.app.state, AppState::Stopped);
    assert_eq!(
        v.app
            .labels
            .get("zero-downtime.cf/role")
            .map(String::as_str),
        Some("venerable")
    );
    assert_eq!(
        cf.app_named("web").unwrap().processes,
        vec![("web".to_string(), 5)]
    );

    // The next deploy replaces that venerable with the new old version.
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed);
    assert!(!cf.lock().apps.contains_key("A"));
    assert_ne!(cf.app_named("web-venerable").unwrap().app.guid, "A");
}

#[tokio::test]
async fn smoke_test_command_gates_the_switch() {
    let mut r = req();
    r.poll_interval = Duration::from_millis(1);
    r.drain = Duration::from_millis(1);
    r.smoke_test = Some("test \"$CF_ZDT_URL\" = https://web-temp.example.com && test".into());
    let cf = world();
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");

    r.smoke_test = Some("echo unhealthy >&2; exit 3".into());
    let cf = world();
    let before = cf.snapshot();
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.contains("smoke test of app 'web' failed: command"),
        "{error}"
    );
    assert!(error.contains("status 3: unhealthy"), "{error}");
    assert!(!cf.calls().iter().any(|c| c.starts_with("add_destination")));
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn json_output_is_one_object_per_line_ending_with_the_outcome() {
    let cf = world();
    let mut rep = JsonReporter::new(Vec::new());
    let outcome = run(
        &cf,
        &req(),
        &[spec("web")],
        &mut rep,
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome, Outcome::Deployed);
    let out = String::from_utf8(rep.into_inner()).unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "started");
    assert_eq!(lines[0]["org"], "o");
    assert_eq!(lines[0]["strategy"], "blue-green");
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["outcome"]["result"], "deployed");
    assert!(
        last["elapsed_ms"].as_u64().unwrap() >= 10_000,
        "the drain is included"
    );
    assert!(
        last["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "drain" && s["elapsed_ms"] == 10_000)
    );
    assert!(!lines.iter().any(|l| l["event"] == "step_failed"));
    assert!(!out.contains("bearer"));
}

#[tokio::test(start_paused = true)]
async fn text_output_ends_with_the_outcome_line() {
    let cf = world();
    cf.fail("add_destination", 1, When::Before);
    let mut rep = TextReporter::plain(Vec::new());
    run(
        &cf,
        &req(),
        &[spec("web")],
        &mut rep,
        &CancellationToken::new(),
    )
    .await;
    let out = String::from_utf8(rep.into_inner()).unwrap();
    assert!(
        out.starts_with("Pushing app web to org o / space s as alice...\nGetting app info...\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "FAILED: mapping route web.example.com to the new web (app web): 500 CF-ServerError"
        ),
        "{out}"
    );
    assert!(out.contains("[request id req-1]"), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("rolled back, the old version is serving")
    );
}

#[tokio::test]
async fn built_in_probe_checks_the_candidate_on_the_temp_route() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .and(header("host", "web-temp.example.com"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let mut r = req();
    r.poll_interval = Duration::from_millis(1);
    r.drain = Duration::from_millis(1);
    r.smoke_test_path = Some("/health".into());
    r.probe = ProbeConfig {
        scheme: "http".into(),
        connect_to: Some(*server.address()),
        retry_interval: Duration::from_millis(1),
        attempts: 2,
        ..ProbeConfig::default()
    };
    let cf = world();
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");

    // A candidate that answers 503 is rolled back before any route switches.
    let bad = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&bad)
        .await;
    r.probe.connect_to = Some(*bad.address());
    let cf = world();
    let before = cf.snapshot();
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.contains(
            "GET http://web-temp.example.com/health did not answer 2xx after 2 attempts: status 503"
        ),
        "{error}"
    );
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn terminal_mode_keeps_progress_off_the_line_output() {
    let cf = world();
    let mut rep = TextReporter::terminal(Vec::new());
    let outcome = run(
        &cf,
        &req(),
        &[spec("web")],
        &mut rep,
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome, Outcome::Deployed);
    let out = String::from_utf8(rep.into_inner()).unwrap();
    assert!(
        !out.contains("uploaded") && !out.contains("instances running"),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("deployed"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_deploy_with_random_route_leaves_no_route_behind() {
    let mut sp = spec("web");
    sp.routes = RouteSpec::Random;
    let cf = FakeCf::new();
    let (outcome, _) = deploy(&cf, &req(), std::slice::from_ref(&sp)).await;
    assert_eq!(outcome, Outcome::Deployed);
    assert!(cf.route_apps("web-rnd.example.com").is_some());

    let cf = FakeCf::new();
    let before = cf.snapshot();
    cf.fail("start_app", 1, When::Before);
    let (outcome, events) = deploy(&cf, &req(), &[sp]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert_eq!(
        undo_descriptions(&events),
        vec!["delete app web and its route web-rnd.example.com"]
    );
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn a_new_app_next_to_a_swapped_one_is_removed_when_the_swap_fails() {
    let cf = world();
    let (outcome, events) = deploy(&cf, &req(), &[spec("web"), spec("fresh")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_swapped(&cf);
    assert!(cf.app_named("fresh").is_some());
    assert!(cf.route_apps("fresh.example.com").is_some());

    let cf = world();
    let before = cf.snapshot();
    cf.fail("add_destination", 1, When::Before);
    let (outcome, _) = deploy(&cf, &req(), &[spec("web"), spec("fresh")]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert_eq!(
        cf.snapshot(),
        before,
        "the new app and its route are gone too"
    );
}

/// The deploy future can run on a multi-threaded runtime (plugin and standalone entry points).
#[test]
fn the_deploy_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let cf = world();
    let r = req();
    let apps = [spec("web")];
    let mut events: Vec<Event> = Vec::new();
    let token = CancellationToken::new();
    let fut = run(&cf, &r, &apps, &mut events, &token);
    assert_send(&fut);
}

/// A run killed after deleting the old app but before the rename: the labelled candidate is
/// the only app serving production. The next deploy treats it as the live app.
#[tokio::test(start_paused = true)]
async fn a_serving_candidate_without_live_app_is_replaced_like_a_live_app() {
    let cf = FakeCf::new();
    cf.add_app("L", "web-candidate", 2);
    cf.with_app("L", |a| {
        a.app
            .labels
            .insert("zero-downtime.cf/role".into(), "candidate".into());
        a.app.labels.insert("team".into(), "blue".into());
        a.app
            .annotations
            .insert("zero-downtime.cf/app".into(), "web".into());
    });
    cf.add_route("web", &["L"]);
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert!(!cf.lock().apps.contains_key("L"));
    let g = assert_swapped(&cf);
    let web = cf.app_named("web").unwrap();
    assert_eq!(web.app.labels.get("team").map(String::as_str), Some("blue"));
    // It gave up the candidate name first, and served until the new version did.
    let calls = cf.mutating_calls();
    let r = cf.route_guid("web.example.com");
    assert!(index_of(&calls, "rename_app L web-leftover-L") < index_of(&calls, "apply_manifest"));
    assert!(
        index_of(&calls, &format!("add_destination {r} {g}"))
            < index_of(&calls, &format!("remove_destination {r} dest-{r}-L"))
    );
}

/// A run killed between labelling the old app as venerable and renaming it.
#[tokio::test(start_paused = true)]
async fn a_live_app_already_labelled_venerable_is_still_the_live_app() {
    let cf = world();
    cf.with_app("A", |a| {
        a.app
            .labels
            .insert("zero-downtime.cf/role".into(), "venerable".into());
        a.app
            .annotations
            .insert("zero-downtime.cf/app".into(), "web".into());
    });
    let mut r = req();
    r.old_app = OldApp::Stop;
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_swapped(&cf);
    assert_eq!(cf.app_named("web-venerable").unwrap().app.guid, "A");
}

// ---- rolling and canary ---------------------------------------------------------------------

/// Renders like [`render`], plus `env: {GREETING: v2}` (what a new version's manifest changes).
fn render_with_env(r: &RenderRequest) -> Result<String, String> {
    let yaml = render(r)?;
    let mut doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&yaml).map_err(|e| e.to_string())?;
    doc["applications"][0]["env"] = serde_yaml_ng::from_str("{GREETING: v2, ADDED: yes}").unwrap();
    doc["applications"][0]["services"] = serde_yaml_ng::from_str("[old-db, new-db]").unwrap();
    serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())
}

fn rolling_spec(name: &str) -> AppSpec<()> {
    AppSpec {
        render: Arc::new(render_with_env),
        ..spec(name)
    }
}

fn rolling_req(strategy: Strategy) -> DeployRequest {
    DeployRequest {
        strategy,
        timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(20),
        max_in_flight: Some(2),
        ..req()
    }
}

/// `web` (guid A) runs v1 with `GREETING=v1`.
fn rolling_world() -> FakeCf {
    let cf = world();
    cf.lock().env.insert(
        "A".into(),
        BTreeMap::from([("GREETING".to_string(), "v1".to_string())]),
    );
    cf.lock()
        .bindings
        .insert("binding-0".into(), ("A".into(), "old-db".into()));
    cf
}

/// The service instances bound to `app`.
fn services_of(cf: &FakeCf, app: &str) -> Vec<String> {
    cf.lock()
        .bindings
        .values()
        .filter(|(a, _)| a == app)
        .map(|(_, i)| i.clone())
        .collect()
}

fn env_of(cf: &FakeCf, app: &str) -> BTreeMap<String, String> {
    cf.lock().env.get(app).cloned().unwrap_or_default()
}

fn deployment_states(cf: &FakeCf) -> Vec<DeploymentState> {
    cf.lock()
        .deployments
        .values()
        .map(|d| d.state.clone())
        .collect()
}

/// Collects events and cancels the token at the first event `when` matches.
struct CancelWhen {
    events: Vec<Event>,
    token: CancellationToken,
    when: fn(&Event) -> bool,
}

impl Reporter for CancelWhen {
    fn report(&mut self, event: Event) {
        if (self.when)(&event) {
            self.token.cancel();
        }
        self.events.push(event);
    }
}

#[tokio::test(start_paused = true)]
async fn rolling_keeps_the_app_guid_and_deploys_the_new_droplet() {
    let cf = rolling_world();
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let web = cf.app_named("web").unwrap();
    assert_eq!(web.app.guid, "A", "same app, same GUID");
    assert!(
        web.droplet
            .as_deref()
            .unwrap()
            .starts_with("droplet-build-")
    );
    assert_eq!(deployment_states(&cf), vec![DeploymentState::Deployed]);
    assert_eq!(
        env_of(&cf, "A").get("GREETING").map(String::as_str),
        Some("v2")
    );
    assert_eq!(
        services_of(&cf, "A"),
        vec!["old-db".to_string(), "new-db".to_string()]
    );
    let calls = cf.mutating_calls();
    assert!(
        calls.iter().all(|c| !c.starts_with("delete_")
            && !c.starts_with("rename_")
            && !c.starts_with("cancel_")
            && !c.starts_with("set_current_droplet")
            && !c.starts_with("start_app")),
        "{calls:#?}"
    );
    // The env snapshot is read before the manifest changes it.
    let all = cf.calls();
    assert!(index_of(&all, "get_env_vars A") < index_of(&all, "apply_manifest"));
    assert!(index_of(&all, "create_build") < index_of(&all, "create_deployment A"));
    assert!(cf.app_named("web-candidate").is_none());
}

#[tokio::test(start_paused = true)]
async fn rolling_crash_cancels_at_once_and_restores_env_vars() {
    let cf = rolling_world();
    cf.lock()
        .new_instances
        .insert("A".into(), NewInstances::Crash);
    let droplet_before = cf.app_named("web").unwrap().droplet;
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(error.contains("crashed"), "{error}");
    assert!(error.contains("TIP: the app keeps its GUID"), "{error}");
    assert_eq!(deployment_states(&cf), vec![DeploymentState::Canceled]);
    assert_eq!(
        env_of(&cf, "A"),
        BTreeMap::from([("GREETING".to_string(), "v1".to_string())]),
        "env restored, added variable removed"
    );
    assert_eq!(
        services_of(&cf, "A"),
        vec!["old-db".to_string()],
        "new binding removed"
    );
    let web = cf.app_named("web").unwrap();
    assert_eq!(web.app.guid, "A");
    assert_eq!(web.droplet, droplet_before, "old droplet current again");
    // Canceled on the first look at the crash: one stats read of the new process.
    let stats = cf
        .calls()
        .iter()
        .filter(|c| c.starts_with("process_stats dep-"))
        .count();
    assert_eq!(stats, 1);
    assert_eq!(
        undo_descriptions(&events),
        vec![
            "cancel the deployment of app web (the old version serves again)".to_string(),
            "restore the environment variables and service bindings of app web".to_string(),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_stall_cancels_after_the_timeout_without_progress() {
    let cf = rolling_world();
    cf.lock()
        .new_instances
        .insert("A".into(), NewInstances::Stall);
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(error.contains("made no progress for 5s"), "{error}");
    assert!(error.contains("0 of 1 new instances running"), "{error}");
    assert_eq!(deployment_states(&cf), vec![DeploymentState::Canceled]);
    assert_eq!(
        env_of(&cf, "A").get("GREETING").map(String::as_str),
        Some("v1")
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_interrupt_cancels_the_deployment_and_restores_env_vars() {
    let cf = rolling_world();
    cf.lock()
        .new_instances
        .insert("A".into(), NewInstances::Stall);
    let token = CancellationToken::new();
    let mut r = CancelWhen {
        events: Vec::new(),
        token: token.clone(),
        when: |e| matches!(e, Event::Waiting { what, .. } if what == "deployment"),
    };
    let outcome = run(
        &cf,
        &rolling_req(Strategy::Rolling),
        &[rolling_spec("web")],
        &mut r,
        &token,
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::RolledBack {
            error: "interrupted".into()
        },
        "{:#?}",
        r.events
    );
    assert_eq!(deployment_states(&cf), vec![DeploymentState::Canceled]);
    assert_eq!(
        env_of(&cf, "A").get("GREETING").map(String::as_str),
        Some("v1")
    );
    assert!(!env_of(&cf, "A").contains_key("ADDED"));
}

#[tokio::test(start_paused = true)]
async fn rolling_failing_cancel_is_reported_with_the_manual_command() {
    let cf = rolling_world();
    cf.lock()
        .new_instances
        .insert("A".into(), NewInstances::Crash);
    cf.fail("cancel_deployment", 1, When::Before);
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    let Outcome::RollbackIncomplete { manual_steps, .. } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert_eq!(manual_steps, &vec!["cf cancel-deployment web".to_string()]);
    // The env snapshot is still restored.
    assert_eq!(
        env_of(&cf, "A").get("GREETING").map(String::as_str),
        Some("v1")
    );
}

#[tokio::test]
async fn canary_runs_the_smoke_test_at_every_pause_then_continues() {
    let cf = rolling_world();
    let mut r = rolling_req(Strategy::Canary);
    r.instance_steps = vec![50, 100];
    // Passes only with the canary's process in the environment.
    r.smoke_test = Some("test -n \"$CF_ZDT_PROCESS_INSTANCE\" && true".into());
    let (outcome, events) = deploy(&cf, &r, &[rolling_spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let continues = cf
        .mutating_calls()
        .iter()
        .filter(|c| c.starts_with("continue_deployment"))
        .count();
    assert_eq!(continues, 2, "one continue per canary step");
    let smokes = events
        .iter()
        .filter(|e| {
            matches!(e, Event::Waiting { what, detail, .. }
            if what == "smoke_test" && detail.contains("CF_ZDT_PROCESS_INSTANCE=dep-"))
        })
        .count();
    assert_eq!(smokes, 2, "{events:#?}");
    assert_eq!(deployment_states(&cf), vec![DeploymentState::Deployed]);
    assert_eq!(cf.app_named("web").unwrap().app.guid, "A");
}

#[tokio::test]
async fn canary_with_a_failing_smoke_test_is_canceled_and_env_restored() {
    let cf = rolling_world();
    let mut r = rolling_req(Strategy::Canary);
    r.smoke_test = Some("false".into());
    let (outcome, events) = deploy(&cf, &r, &[rolling_spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(error.contains("smoke test of app 'web' failed"), "{error}");
    assert!(
        !cf.mutating_calls()
            .iter()
            .any(|c| c.starts_with("continue_deployment"))
    );
    assert_eq!(deployment_states(&cf), vec![DeploymentState::Canceled]);
    assert_eq!(
        env_of(&cf, "A").get("GREETING").map(String::as_str),
        Some("v1")
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_first_deploy_is_a_plain_push() {
    let cf = FakeCf::new();
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let web = cf.app_named("web").unwrap();
    assert_eq!(web.app.state, AppState::Started);
    assert!(cf.lock().deployments.is_empty());
    assert!(
        cf.mutating_calls()
            .iter()
            .any(|c| c.starts_with("start_app"))
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_dry_run_shows_the_plan_and_changes_nothing() {
    let cf = rolling_world();
    let mut r = rolling_req(Strategy::Canary);
    r.dry_run = true;
    r.smoke_test_path = Some("/health".into());
    let (outcome, events) = deploy(&cf, &r, &[rolling_spec("web")]).await;
    assert_eq!(outcome, Outcome::DryRun);
    assert!(cf.mutating_calls().is_empty());
    let Some(Event::Plan { apps, steps, .. }) =
        events.iter().find(|e| matches!(e, Event::Plan { .. }))
    else {
        panic!("no plan: {events:#?}");
    };
    assert_eq!(
        apps,
        &vec!["web: canary deployment (same app GUID), routes web.example.com".to_string()]
    );
    assert!(
        steps[0].contains("Recording the environment variables and service bindings of web"),
        "{steps:#?}"
    );
    assert!(
        steps.last().unwrap().contains(
            "Canary deployment of web: smoke-test the canary at web.example.com at every pause"
        ),
        "{steps:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_multi_app_failure_of_the_second_app_leaves_the_first_deployed() {
    let cf = rolling_world();
    cf.add_route("api", &["B"]);
    cf.lock()
        .new_instances
        .insert("B".into(), NewInstances::Crash);
    let apps = [rolling_spec("web"), rolling_spec("backend")];
    let (outcome, events) = deploy(&cf, &rolling_req(Strategy::Rolling), &apps).await;
    let Outcome::PartlyDeployed { error, deployed } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert_eq!(deployed, &vec!["web".to_string()]);
    assert!(error.starts_with("app backend: "), "{error}");
    assert!(
        error.contains("stay deployed with their new version: web"),
        "{error}"
    );
    assert_eq!(outcome.exit_code(), 1);
    let states = deployment_states(&cf);
    assert!(
        states.contains(&DeploymentState::Deployed) && states.contains(&DeploymentState::Canceled)
    );
    assert!(
        !env_of(&cf, "B").contains_key("ADDED"),
        "backend's env restored"
    );
    assert_eq!(
        env_of(&cf, "A").get("GREETING").map(String::as_str),
        Some("v2")
    );
}

#[tokio::test(start_paused = true)]
async fn canary_smoke_test_without_a_route_is_refused_before_any_change() {
    let cf = rolling_world();
    let mut r = rolling_req(Strategy::Canary);
    r.smoke_test_path = Some("/health".into());
    let spec = AppSpec {
        routes: RouteSpec::NoRoute,
        ..rolling_spec("web")
    };
    let (outcome, events) = deploy(&cf, &r, &[spec]).await;
    let Outcome::NothingChanged { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(error.contains("a smoke test needs a route"), "{error}");
    assert!(cf.mutating_calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn rolling_with_a_smoke_test_warns_that_it_is_skipped() {
    let cf = rolling_world();
    let mut r = rolling_req(Strategy::Rolling);
    r.smoke_test_path = Some("/health".into());
    let (outcome, events) = deploy(&cf, &r, &[rolling_spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Warning { message, .. }
        if message.contains("the smoke test is skipped (use --strategy canary)")))
    );
}

#[tokio::test]
async fn canary_analysis_without_log_cache_fails_before_any_change() {
    // The fake has no log-cache: blue-green with --canary-steps and a canary deployment with
    // --analysis both stop at the first step, before any mutating call.
    for strategy in [Strategy::BlueGreen, Strategy::Canary] {
        let cf = world();
        let r = DeployRequest {
            strategy,
            analysis: Some(cf_zero_downtime::deploy::analysis::AnalysisConfig {
                steps: vec![25, 100],
                ..Default::default()
            }),
            ..req()
        };
        let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
        let Outcome::NothingChanged { error } = &outcome else {
            panic!("{strategy:?}: {outcome:?} {events:#?}")
        };
        assert!(
            error.contains("needs the router's request records of web"),
            "{error}"
        );
        assert!(cf.mutating_calls().is_empty(), "{:?}", cf.mutating_calls());
        assert!(
            cf.calls().iter().any(|c| c == "app_log A"),
            "{:?}",
            cf.calls()
        );
    }
}

#[tokio::test]
async fn a_canary_plan_shows_its_steps_before_the_switch() {
    let cf = world();
    let r = DeployRequest {
        dry_run: true,
        analysis: Some(cf_zero_downtime::deploy::analysis::AnalysisConfig {
            steps: vec![10, 50, 100],
            ..Default::default()
        }),
        ..req()
    };
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::DryRun);
    let Some(Event::Plan { steps, .. }) = events.iter().find(|e| matches!(e, Event::Plan { .. }))
    else {
        panic!("{events:#?}")
    };
    let text = steps.join("\n");
    let switch = text.find("no rollback after this point").unwrap();
    for s in [
        "Canary step 1 of 3: judging the new web at about 10% of the requests against web",
        "Canary step 2 of 3",
        "Scaling the new web to take about 50% of the requests",
        "Scaling the new web to its full instance count",
    ] {
        let at = text.find(s).unwrap_or_else(|| panic!("{s} not in {text}"));
        assert!(at < switch, "{s} after the switch: {text}");
    }
    assert!(cf.mutating_calls().is_empty());
}

// ---- release tasks (--task-before-switch) ---------------------------------------------------

fn task_req(commands: &[&str]) -> DeployRequest {
    DeployRequest {
        tasks: TaskRequest {
            before_switch: commands.iter().map(|c| c.to_string()).collect(),
            memory_mb: Some(256),
            disk_mb: None,
            timeout: Duration::from_secs(120),
        },
        ..req()
    }
}

#[tokio::test(start_paused = true)]
async fn release_tasks_run_on_the_healthy_candidate_before_the_switch() {
    let cf = world();
    let r = task_req(&["bin/rails db:migrate", "bin/rails db:seed"]);
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_swapped(&cf);
    let calls = cf.calls();
    let tasks: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("create_task"))
        .collect();
    assert_eq!(tasks.len(), 2, "{calls:#?}");
    assert!(index_of(&calls, "create_task") > index_of(&calls, "process_stats"));
    assert!(index_of(&calls, "create_task") < index_of(&calls, "remove_destination"));
    let names: Vec<String> = cf.lock().tasks.values().map(|t| t.1.clone()).collect();
    assert_eq!(names, ["zdt-migrate-1", "zdt-migrate-2"]);
    assert!(events.iter().any(|e| matches!(e, Event::StepStarted { kind, description, .. }
        if kind == "run_task" && description == "Running task zdt-migrate-1 on the new web (--task-before-switch)")));
}

#[tokio::test(start_paused = true)]
async fn a_failed_release_task_rolls_back_before_the_switch_and_says_it_is_not_undone() {
    let cf = world();
    let before = cf.snapshot();
    cf.lock().task_outcomes.insert(
        "web".into(),
        TaskState::Failed("APP/TASK/zdt-migrate-1: Exited with status 1".into()),
    );
    let (outcome, _) = deploy(&cf, &task_req(&["bin/rails db:migrate"]), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.contains(
            "task 'zdt-migrate-1' of app 'web' failed: APP/TASK/zdt-migrate-1: Exited with status 1"
        ),
        "{error}"
    );
    assert!(error.contains("the rollback does not undo it"), "{error}");
    assert!(
        !cf.calls()
            .iter()
            .any(|c| c.starts_with("remove_destination"))
    );
    assert!(!cf.calls().iter().any(|c| c.starts_with("cancel_task")));
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn a_release_task_that_does_not_end_is_cancelled_at_the_timeout_and_rolled_back() {
    let cf = world();
    let before = cf.snapshot();
    cf.lock()
        .task_outcomes
        .insert("web".into(), TaskState::Running);
    let (outcome, _) = deploy(&cf, &task_req(&["sleep 1000"]), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.contains(
            "task 'zdt-migrate-1' of app 'web' did not finish within 2m (--task-timeout)"
        ),
        "{error}"
    );
    assert!(cf.calls().iter().any(|c| c.starts_with("cancel_task")));
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_during_a_release_task_cancels_it_and_rolls_back() {
    let cf = world();
    let before = cf.snapshot();
    cf.lock()
        .task_outcomes
        .insert("web".into(), TaskState::Running);
    let token = CancellationToken::new();
    let mut rep = CancelAt {
        kind: "run_task".into(),
        token: token.clone(),
        events: Vec::new(),
    };
    let outcome = run(
        &cf,
        &task_req(&["sleep 1000"]),
        &[spec("web")],
        &mut rep,
        &token,
    )
    .await;
    assert!(
        matches!(&outcome, Outcome::RolledBack { error } if error.starts_with("interrupted")),
        "{outcome:?}"
    );
    assert!(cf.calls().iter().any(|c| c.starts_with("cancel_task")));
    assert!(rep.events.iter().any(
        |e| matches!(e, Event::Warning { message, .. } if message == "task zdt-migrate-1 was cancelled")
    ));
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn a_failed_release_task_of_the_second_app_leaves_both_on_the_old_version() {
    let cf = two_apps();
    let before = cf.snapshot();
    cf.lock().task_outcomes.insert(
        "api".into(),
        TaskState::Failed("APP/TASK/zdt-migrate-1: Exited with status 2".into()),
    );
    let (outcome, _) = deploy(&cf, &task_req(&["migrate"]), &[spec("web"), spec("api")]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert!(!cf.calls().iter().any(|c| c.starts_with("add_destination")));
    assert_eq!(
        cf.calls()
            .iter()
            .filter(|c| c.starts_with("create_task"))
            .count(),
        2,
        "the first app's task ran, then the second's failed"
    );
    assert_eq!(cf.snapshot(), before);
}
