//! `FakeCf`, an in-memory Cloud Controller implementing the deploy core's `CfApi`, with fault
//! injection (fail the Nth call of a method, before or after its effect), failing staging,
//! crashing or slow instances, canary and rolling deployments, quotas and tasks. Tests reach into
//! its [`State`] (`cf.lock()`) to arrange a world and to look at the result.
//!
//! [`fixtures`] holds the world, request and app spec the deploy tests start from.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use cf_zero_downtime::deploy::api::{
    ApiError, App, AppGuid, AppLifecycle, AppState, Deployment, DeploymentState,
    DeploymentStrategy, Destination, Domain, MUTATING_METHODS, NetworkPolicy, NewDeployment,
    NewRoute, Quotas, Route, TaskState,
};

mod cf_api;
mod fixtures;

pub(crate) use fixtures::*;

/// How the new instances of a deployment behave in the fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum NewInstances {
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
pub(crate) struct FDep {
    pub(crate) app: String,
    pub(crate) strategy: DeploymentStrategy,
    pub(crate) state: DeploymentState,
    pub(crate) previous: Option<String>,
    pub(crate) steps: u32,
    pub(crate) current: u32,
    pub(crate) paused_for: u32,
    pub(crate) done_steps: bool,
    pub(crate) polls: u32,
    /// `status.details.error` the updater reports.
    pub(crate) error: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct FApp {
    pub(crate) app: App,
    pub(crate) ssh: bool,
    pub(crate) droplet: Option<String>,
    pub(crate) processes: Vec<(String, u32)>,
    pub(crate) starting_polls: u32,
}

/// How a crashing new app shows to polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CrashShows {
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
pub(crate) enum When {
    Before,
    After,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) next: u64,
    pub(crate) apps: BTreeMap<String, FApp>,
    pub(crate) routes: BTreeMap<String, (Route, Vec<Destination>)>,
    pub(crate) domains: Vec<Domain>,
    pub(crate) policies: BTreeSet<NetworkPolicy>,
    pub(crate) packages: BTreeMap<String, String>,
    pub(crate) builds: BTreeMap<String, (String, u32)>,
    pub(crate) calls: Vec<String>,
    pub(crate) counts: BTreeMap<String, u32>,
    pub(crate) faults: BTreeMap<(String, u32), When>,
    pub(crate) staging_fails_for: Option<String>,
    pub(crate) crash_new_apps: bool,
    /// How a crash of a new app shows (with `crash_new_apps`).
    pub(crate) crash_shows: CrashShows,
    /// Polls of stats so far (the fake's clock for instance GUIDs and uptime).
    pub(crate) stat_polls: u32,
    /// `crash_events` answers 403 (audit events and log-cache forbidden).
    pub(crate) crash_records_forbidden: bool,
    /// `list_network_policies` answers with this status (403, 404) instead of the policies.
    pub(crate) policies_status: Option<u16>,
    pub(crate) starting_polls: u32,
    pub(crate) warnings: Vec<String>,
    pub(crate) env: BTreeMap<String, BTreeMap<String, String>>,
    pub(crate) deployments: BTreeMap<String, FDep>,
    pub(crate) new_instances: BTreeMap<String, NewInstances>,
    /// Service bindings: guid → (app guid, service instance name).
    pub(crate) bindings: BTreeMap<String, (String, String)>,
    /// What `quotas` answers (unlimited by default).
    pub(crate) quotas: Quotas,
    /// The next call of a method fails with this error, before its effect.
    pub(crate) errors: BTreeMap<String, ApiError>,
    /// Every deployment asked for, in order.
    pub(crate) created_deployments: Vec<NewDeployment>,
    /// What the updater of new deployments reports in `status.details.error`.
    pub(crate) deployment_error: Option<String>,
    /// The lifecycle each app was created with by `create_app`.
    pub(crate) lifecycles: BTreeMap<String, AppLifecycle>,
    /// Another client creates this app just before `create_app` asks for its name.
    pub(crate) create_race: Option<App>,
    /// Tasks: guid → (app guid, name, state).
    pub(crate) tasks: BTreeMap<String, (String, String, TaskState)>,
    /// How the tasks of each app (by name) end; `Running` never ends. Unset: SUCCEEDED.
    pub(crate) task_outcomes: BTreeMap<String, TaskState>,
    /// How many reads of each task answer RUNNING before its outcome (0: none).
    pub(crate) task_running_reads: u32,
    /// `create_build` answers only once this many builds were asked for (this run's apps
    /// stage at the same time), else fails after a minute of waiting.
    pub(crate) build_gate: Option<u32>,
    /// `create_build` calls so far.
    pub(crate) builds_begun: u32,
}

/// The in-memory Cloud Controller.
pub(crate) struct FakeCf {
    pub(crate) s: Mutex<State>,
}

pub(crate) fn err500(method: &str) -> ApiError {
    ApiError::new(
        500,
        "CF-ServerError",
        format!("injected failure in {method}"),
    )
    .with_request_id("req-1")
}

impl FakeCf {
    pub(crate) fn new() -> Self {
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

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.s.lock().unwrap()
    }

    /// Fails the `n`th call (1-based) of `method`, before or after its effect.
    pub(crate) fn fail(&self, method: &str, n: u32, when: When) -> &Self {
        self.lock().faults.insert((method.to_string(), n), when);
        self
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    pub(crate) fn mutating_calls(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| MUTATING_METHODS.contains(&c.split(' ').next().unwrap_or_default()))
            .collect()
    }

    /// Records the call; `Err` for a fault injected before the effect, `Ok(true)` for one after.
    pub(crate) fn enter(&self, method: &str, arg: &str) -> Result<bool, ApiError> {
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

    pub(crate) fn id(s: &mut State, prefix: &str) -> String {
        s.next += 1;
        format!("{prefix}-{}", s.next)
    }

    pub(crate) fn add_app(&self, guid: &str, name: &str, instances: u32) {
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

    pub(crate) fn with_app<R>(&self, guid: &str, f: impl FnOnce(&mut FApp) -> R) -> R {
        f(self.lock().apps.get_mut(guid).unwrap())
    }

    /// Labels app `guid` as a run does the apps it makes or keeps: its `role` (`candidate`,
    /// `venerable`) for the app named `of`.
    pub(crate) fn mark_role(&self, guid: &str, role: &str, of: &str) {
        self.with_app(guid, |a| {
            a.app
                .labels
                .insert("zero-downtime.cf/role".into(), role.into());
            a.app
                .annotations
                .insert("zero-downtime.cf/app".into(), of.into());
        });
    }

    pub(crate) fn add_route(&self, host: &str, apps: &[&str]) -> String {
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

    pub(crate) fn route_guid(&self, url: &str) -> String {
        let s = self.lock();
        s.routes
            .values()
            .find(|(r, _)| r.url == url)
            .unwrap()
            .0
            .guid
            .to_string()
    }

    pub(crate) fn app_named(&self, name: &str) -> Option<FApp> {
        self.lock()
            .apps
            .values()
            .find(|a| a.app.name == name)
            .cloned()
    }

    pub(crate) fn route_apps(&self, url: &str) -> Option<BTreeSet<AppGuid>> {
        self.lock()
            .routes
            .values()
            .find(|(r, _)| r.url == url)
            .map(|(_, d)| d.iter().map(|d| d.app_guid.clone()).collect())
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
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

    pub(crate) fn dep_view(guid: &str, d: &FDep) -> Deployment {
        Deployment {
            guid: guid.to_string().into(),
            state: d.state.clone(),
            new_processes: vec![format!("{guid}/new-web").into()],
            canary_step: (d.strategy == DeploymentStrategy::Canary).then_some((d.current, d.steps)),
            error: d.error.clone(),
            last_successful_healthcheck: Some("2026-08-20T10:00:00Z".into()),
        }
    }

    pub(crate) fn url_of(s: &State, nr: &NewRoute) -> String {
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

pub(crate) type AppSnap = (
    AppGuid,
    AppState,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
    bool,
    Option<String>,
);

/// A destination without its GUID: app, process type, port, protocol.
pub(crate) type DestSnap = (AppGuid, String, Option<u32>, Option<String>);

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) apps: BTreeMap<String, AppSnap>,
    pub(crate) routes: BTreeMap<String, BTreeSet<DestSnap>>,
    pub(crate) policies: BTreeSet<NetworkPolicy>,
}
