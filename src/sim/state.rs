//! The simulator's in-memory model of Cloud Controller: orgs, spaces, domains, apps, processes,
//! packages, builds, droplets, routes, jobs, deployments, service instances, bindings, app
//! instances and the API call log. Everything lives in one [`State`] behind a `std::sync::Mutex`
//! (see `Shared` in `mod.rs`); no guard is ever held across an `.await`.
//!
//! Depends on: `util`, `telemetry`, `fault_switches`. Must not: do I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::fault_switches::Faults;
use super::telemetry::{AuditEvent, LogStore, MAX_AUDIT_EVENTS};
use super::util::{new_guid, now_rfc3339};

/// Fields every CC resource has.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub guid: String,
    pub seq: u64,
    pub created_at: String,
    pub updated_at: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Meta {
    pub fn touch(&mut self) {
        self.updated_at = now_rfc3339();
    }
}

/// A file of a package or droplet.
#[derive(Debug, Clone)]
pub(crate) struct FileEntry {
    pub data: Bytes,
    pub mode: u32,
}

/// Relative path → file. Directories are not kept.
pub(crate) type Files = BTreeMap<String, FileEntry>;

#[derive(Debug, Clone)]
pub(crate) struct Org {
    pub meta: Meta,
    pub name: String,
    /// The organization quota (`relationships.quota`); every CC org has one.
    pub quota_guid: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Space {
    pub meta: Meta,
    pub name: String,
    pub org_guid: String,
    /// The space quota (`relationships.quota`), if one is assigned.
    pub quota_guid: Option<String>,
}

/// A space or organization quota definition.
#[derive(Debug, Clone)]
pub(crate) struct Quota {
    pub meta: Meta,
    /// The org a space quota belongs to; `None` for an organization quota.
    pub org_guid: Option<String>,
    pub spec: QuotaSpec,
}

/// A quota definition. `None` limits are unlimited (CC's `-1`, presented as `null`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaSpec {
    /// The quota's name (`cf space-quota NAME`).
    pub name: String,
    /// `apps.total_memory_in_mb`: memory of all started instances together.
    #[serde(default)]
    pub total_memory_mb: Option<u64>,
    /// `apps.per_process_memory_in_mb`: memory of one instance.
    #[serde(default)]
    pub instance_memory_mb: Option<u64>,
    /// `apps.total_instances`: started instances of all processes together.
    #[serde(default)]
    pub total_instances: Option<u64>,
    /// `routes.total_routes`.
    #[serde(default)]
    pub total_routes: Option<u64>,
}

impl QuotaSpec {
    /// A quota named `name` with no limits.
    pub fn unlimited(name: &str) -> QuotaSpec {
        QuotaSpec {
            name: name.to_string(),
            ..QuotaSpec::default()
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Domain {
    pub meta: Meta,
    pub name: String,
    pub internal: bool,
    pub tcp: bool,
    pub router_group: Option<String>,
    /// `None` = shared domain.
    pub org_guid: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct App {
    pub meta: Meta,
    pub name: String,
    pub space_guid: String,
    pub started: bool,
    pub lifecycle: String,
    pub buildpacks: Vec<String>,
    pub stack: String,
    pub droplet_guid: Option<String>,
    pub env: BTreeMap<String, Value>,
    pub features: BTreeMap<String, bool>,
}

/// A liveness or readiness health check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HealthCheck {
    pub kind: String,
    pub endpoint: Option<String>,
    pub timeout: Option<u64>,
    pub invocation_timeout: Option<u64>,
    pub interval: Option<u64>,
}

impl HealthCheck {
    pub fn of_kind(kind: &str) -> Self {
        HealthCheck {
            kind: kind.to_string(),
            endpoint: None,
            timeout: None,
            invocation_timeout: None,
            interval: None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Process {
    pub meta: Meta,
    pub app_guid: String,
    pub kind: String,
    pub command: Option<String>,
    pub instances: u32,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub log_rate: i64,
    pub health: HealthCheck,
    pub readiness: HealthCheck,
    /// The droplet this process runs (set on start and by deployments).
    pub droplet_guid: Option<String>,
    pub version: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub meta: Meta,
    pub app_guid: String,
    pub kind: String,
    pub state: String,
    pub files: Option<Arc<Files>>,
    pub image: Option<String>,
    pub username: Option<String>,
    pub polls: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Build {
    pub meta: Meta,
    pub app_guid: String,
    pub package_guid: String,
    pub state: String,
    pub error: Option<String>,
    pub droplet_guid: Option<String>,
    pub lifecycle: String,
    pub buildpacks: Vec<String>,
    pub stack: String,
    pub user_name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Droplet {
    pub meta: Meta,
    pub app_guid: String,
    pub package_guid: Option<String>,
    pub state: String,
    pub process_types: BTreeMap<String, String>,
    pub files: Arc<Files>,
    pub image: Option<String>,
    pub lifecycle: String,
    pub buildpacks: Vec<String>,
    pub stack: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Destination {
    pub guid: String,
    pub app_guid: String,
    pub process_type: String,
    pub port: u16,
    pub protocol: String,
    pub weight: Option<u32>,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub meta: Meta,
    pub host: String,
    pub path: String,
    pub port: Option<u16>,
    pub domain_guid: String,
    pub space_guid: String,
    pub protocol: String,
    pub destinations: Vec<Destination>,
    pub loadbalancing: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub meta: Meta,
    pub operation: String,
    /// The state shown once the job stops PROCESSING.
    pub outcome: JobOutcome,
    pub warnings: Vec<String>,
    pub polls: u32,
    /// (link name, absolute-path suffix) for `links`.
    pub resource: Option<(String, String)>,
}

/// How a job ends.
#[derive(Debug, Clone)]
pub(crate) enum JobOutcome {
    Complete,
    Failed(Vec<(u32, String, String)>),
}

/// Internal deployment states (CC `DeploymentModel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeployState {
    Deploying,
    Paused,
    Canceling,
    Deployed,
    Canceled,
    Superseded,
}

impl DeployState {
    /// `(status.value, status.reason)`.
    pub fn status(self) -> (&'static str, &'static str) {
        match self {
            DeployState::Deploying => ("ACTIVE", "DEPLOYING"),
            DeployState::Paused => ("ACTIVE", "PAUSED"),
            DeployState::Canceling => ("ACTIVE", "CANCELING"),
            DeployState::Deployed => ("FINALIZED", "DEPLOYED"),
            DeployState::Canceled => ("FINALIZED", "CANCELED"),
            DeployState::Superseded => ("FINALIZED", "SUPERSEDED"),
        }
    }

    pub fn is_active(self) -> bool {
        matches!(
            self,
            DeployState::Deploying | DeployState::Paused | DeployState::Canceling
        )
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    pub meta: Meta,
    pub app_guid: String,
    pub strategy: String,
    pub state: DeployState,
    pub droplet_guid: String,
    pub previous_droplet: Option<String>,
    pub new_process: Option<String>,
    pub max_in_flight: u32,
    pub target: u32,
    pub canary_weights: Vec<u32>,
    /// 1-based canary step.
    pub current_step: usize,
    /// Instance counts of the other web processes when the deployment began.
    pub original: Vec<(String, u32)>,
    pub options: Value,
    pub last_status_change: String,
    pub last_healthcheck: String,
    /// What the deployment updater failed at on its last tick (`status.details.error`,
    /// CAPI 3.192+); cleared once it makes progress again.
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServiceInstance {
    pub meta: Meta,
    pub name: String,
    pub space_guid: String,
    pub kind: String,
    pub credentials: Value,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub meta: Meta,
    pub name: Option<String>,
    pub app_guid: String,
    pub instance_guid: String,
}

/// Actual state of one app instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InstState {
    Starting,
    Running,
    Crashed,
}

impl InstState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstState::Starting => "STARTING",
            InstState::Running => "RUNNING",
            InstState::Crashed => "CRASHED",
        }
    }
}

/// One running (or starting, or crashed) instance of a process.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub guid: String,
    pub process_guid: String,
    pub app_guid: String,
    pub index: u32,
    pub state: InstState,
    pub routable: bool,
    pub port: Option<u16>,
    pub since: u64,
    pub details: Option<String>,
    pub crash_count: u32,
    /// When a CRASHED instance is restarted; `None` while a `stay_crashed` fault holds it.
    pub restart_at: Option<Instant>,
    pub cancel: CancellationToken,
    /// Cancelled to make the instance crash now (`FaultInjector::crash_instance`); the
    /// reason is in `crash_reason`.
    pub crash: CancellationToken,
    pub crash_reason: Option<String>,
    /// Its cell is being evacuated: a replacement runs (or starts) at the same index; this
    /// one keeps serving, routed but not in the stats, until the replacement is RUNNING.
    pub evacuating: bool,
    /// A replacement not placed yet (UNCLAIMED): the stats show it STARTING with an empty
    /// `instance_guid` until then.
    pub unclaimed_until: Option<Instant>,
}

/// The state of a task, as Cloud Controller names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskState {
    Pending,
    Running,
    Succeeded,
    Canceling,
    Failed,
}

impl TaskState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "PENDING",
            TaskState::Running => "RUNNING",
            TaskState::Succeeded => "SUCCEEDED",
            TaskState::Canceling => "CANCELING",
            TaskState::Failed => "FAILED",
        }
    }

    /// Still holding memory (counts against the quota).
    pub(crate) fn is_active(self) -> bool {
        matches!(
            self,
            TaskState::Pending | TaskState::Running | TaskState::Canceling
        )
    }
}

/// A task in the model.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub meta: Meta,
    pub app_guid: String,
    pub name: String,
    pub sequence_id: u64,
    pub command: String,
    pub state: TaskState,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub droplet_guid: String,
    pub failure_reason: Option<String>,
    /// Cancelled by a cancel request (or the app's deletion).
    pub cancel: CancellationToken,
}

/// One API request as the simulator saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string (empty when none).
    pub query: String,
    /// Response status.
    pub status: u16,
    /// Request body as text (bodies over 4 KiB and multipart bodies are abbreviated).
    pub body: String,
    /// The `X-Vcap-Request-Id` the simulator answered with.
    pub request_id: String,
}

/// The whole model.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub seq: u64,
    pub orgs: Vec<Org>,
    pub spaces: Vec<Space>,
    /// Space and organization quotas.
    pub quotas: Vec<Quota>,
    pub domains: Vec<Domain>,
    pub apps: Vec<App>,
    pub processes: Vec<Process>,
    pub packages: Vec<Package>,
    pub builds: Vec<Build>,
    pub droplets: Vec<Droplet>,
    pub routes: Vec<Route>,
    pub jobs: Vec<Job>,
    pub deployments: Vec<Deployment>,
    pub service_instances: Vec<ServiceInstance>,
    pub bindings: Vec<Binding>,
    pub policies: Vec<Value>,
    /// The resource cache: SHA1 → content of every file the simulator has seen.
    pub blobs: HashMap<String, Bytes>,
    pub instances: Vec<Instance>,
    /// Tasks, oldest first (ended ones stay, as on Cloud Controller).
    pub tasks: Vec<Task>,
    pub calls: Vec<CallRecord>,
    pub faults: Faults,
    /// Log-cache's per-app envelope buffers.
    pub logs: LogStore,
    /// CC audit events, oldest first.
    pub audit_events: Vec<AuditEvent>,
}

impl State {
    /// A fresh `Meta` with a new GUID and the next sequence number.
    pub fn meta(&mut self) -> Meta {
        self.seq += 1;
        let now = now_rfc3339();
        Meta {
            guid: new_guid(),
            seq: self.seq,
            created_at: now.clone(),
            updated_at: now,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    pub fn app(&self, guid: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.meta.guid == guid)
    }

    pub fn app_mut(&mut self, guid: &str) -> Option<&mut App> {
        self.apps.iter_mut().find(|a| a.meta.guid == guid)
    }

    pub fn process(&self, guid: &str) -> Option<&Process> {
        self.processes.iter().find(|p| p.meta.guid == guid)
    }

    pub fn process_mut(&mut self, guid: &str) -> Option<&mut Process> {
        self.processes.iter_mut().find(|p| p.meta.guid == guid)
    }

    pub fn domain(&self, guid: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.meta.guid == guid)
    }

    pub fn droplet(&self, guid: &str) -> Option<&Droplet> {
        self.droplets.iter().find(|d| d.meta.guid == guid)
    }

    pub fn space(&self, guid: &str) -> Option<&Space> {
        self.spaces.iter().find(|s| s.meta.guid == guid)
    }

    pub fn route(&self, guid: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.meta.guid == guid)
    }

    pub fn service_instance(&self, guid: &str) -> Option<&ServiceInstance> {
        self.service_instances.iter().find(|i| i.meta.guid == guid)
    }

    /// Processes of an app, oldest first.
    pub fn app_processes(&self, app_guid: &str) -> Vec<&Process> {
        self.processes
            .iter()
            .filter(|p| p.app_guid == app_guid)
            .collect()
    }

    /// An app's credential bindings, each with its service instance (a binding whose instance
    /// is gone is left out).
    pub fn app_bindings<'a>(
        &'a self,
        app_guid: &'a str,
    ) -> impl Iterator<Item = (&'a Binding, &'a ServiceInstance)> + 'a {
        self.bindings
            .iter()
            .filter(move |b| b.app_guid == app_guid)
            .filter_map(|b| Some((b, self.service_instance(&b.instance_guid)?)))
    }

    /// The command a process runs: its own, else its droplet's (or else its app's current
    /// droplet's) command for the process type.
    pub fn effective_command(&self, p: &Process) -> Option<String> {
        if let Some(c) = p.command.as_ref().filter(|c| !c.is_empty()) {
            return Some(c.clone());
        }
        let droplet = p
            .droplet_guid
            .clone()
            .or_else(|| self.app(&p.app_guid).and_then(|a| a.droplet_guid.clone()))?;
        self.droplet(&droplet)?
            .process_types
            .get(&p.kind)
            .filter(|c| !c.is_empty())
            .cloned()
    }

    /// The newest process of a type (during a deployment an app has two `web` processes).
    pub fn newest_process(&self, app_guid: &str, kind: &str) -> Option<&Process> {
        self.processes
            .iter()
            .filter(|p| p.app_guid == app_guid && p.kind == kind)
            .max_by_key(|p| p.meta.seq)
    }

    /// Creates a process with CC's defaults for its type.
    pub fn create_process(
        &mut self,
        app_guid: &str,
        kind: &str,
        command: Option<String>,
    ) -> String {
        let meta = self.meta();
        let guid = meta.guid.clone();
        let web = kind == "web";
        self.processes.push(Process {
            meta,
            app_guid: app_guid.to_string(),
            kind: kind.to_string(),
            command,
            instances: u32::from(web),
            memory_mb: 1024,
            disk_mb: 1024,
            log_rate: -1,
            health: HealthCheck::of_kind(if web { "port" } else { "process" }),
            readiness: HealthCheck::of_kind("process"),
            droplet_guid: None,
            version: new_guid(),
        });
        guid
    }

    /// Creates an app (STOPPED, no droplet) with a `web` process.
    pub fn create_app(&mut self, name: &str, space_guid: &str, lifecycle: &str) -> String {
        let meta = self.meta();
        let guid = meta.guid.clone();
        let mut features = BTreeMap::new();
        features.insert("ssh".to_string(), true);
        features.insert("revisions".to_string(), true);
        features.insert("service-binding-k8s".to_string(), false);
        features.insert("file-based-vcap-services".to_string(), false);
        self.apps.push(App {
            meta,
            name: name.to_string(),
            space_guid: space_guid.to_string(),
            started: false,
            lifecycle: lifecycle.to_string(),
            buildpacks: Vec::new(),
            stack: if lifecycle == "docker" {
                String::new()
            } else {
                "cflinuxfs4".to_string()
            },
            droplet_guid: None,
            env: BTreeMap::new(),
            features,
        });
        self.create_process(&guid, "web", None);
        guid
    }

    /// Finds an app by name in a space (case-insensitive, as CC).
    pub fn find_app(&self, space_guid: &str, name: &str) -> Option<&App> {
        self.apps
            .iter()
            .find(|a| a.space_guid == space_guid && a.name.eq_ignore_ascii_case(name))
    }

    /// Deletes an app and everything that belongs to it (its route mappings, processes,
    /// packages, droplets, builds, bindings, deployments, tasks: running ones are cancelled). Instances are stopped by the
    /// next reconcile.
    pub fn delete_app(&mut self, guid: &str) {
        self.cancel_app_tasks(guid);
        self.tasks.retain(|t| t.app_guid != guid);
        self.apps.retain(|a| a.meta.guid != guid);
        self.processes.retain(|p| p.app_guid != guid);
        self.packages.retain(|p| p.app_guid != guid);
        self.builds.retain(|b| b.app_guid != guid);
        self.droplets.retain(|d| d.app_guid != guid);
        self.bindings.retain(|b| b.app_guid != guid);
        self.deployments.retain(|d| d.app_guid != guid);
        for r in &mut self.routes {
            r.destinations.retain(|d| d.app_guid != guid);
        }
    }

    /// Cancels a task: `CANCELING`, then its supervisor (`tasks.rs`) ends it. A task that
    /// already ended is left as it is (`false`).
    pub fn cancel_task(&mut self, guid: &str) -> bool {
        let Some(t) = self.tasks.iter_mut().find(|t| t.meta.guid == guid) else {
            return false;
        };
        if !t.state.is_active() {
            return false;
        }
        t.state = TaskState::Canceling;
        t.meta.touch();
        t.cancel.cancel();
        true
    }

    /// Cancels every running task of an app (it is being deleted).
    fn cancel_app_tasks(&mut self, app_guid: &str) {
        let guids: Vec<String> = self
            .tasks
            .iter()
            .filter(|t| t.app_guid == app_guid && t.state.is_active())
            .map(|t| t.meta.guid.clone())
            .collect();
        for g in guids {
            self.cancel_task(&g);
        }
    }

    /// Records an audit event about an app (target `{guid, type: "app", name}`), filling in
    /// the app's space and org. `actor` is `None` for the admin user.
    pub fn audit_app(&mut self, kind: &str, app_guid: &str, actor: Option<Value>, data: Value) {
        let Some(app) = self.app(app_guid) else {
            return;
        };
        let space_guid = app.space_guid.clone();
        let target = serde_json::json!({"guid": app.meta.guid, "type": "app", "name": app.name});
        let org_guid = self
            .space(&space_guid)
            .map(|s| s.org_guid.clone())
            .unwrap_or_default();
        let actor = actor.unwrap_or_else(
            || serde_json::json!({"guid": "sim-user-admin", "type": "user", "name": "admin"}),
        );
        let mut e = AuditEvent::new(kind, actor, target, data);
        e.space_guid = space_guid;
        e.org_guid = org_guid;
        if self.audit_events.len() >= MAX_AUDIT_EVENTS {
            self.audit_events.drain(..MAX_AUDIT_EVENTS / 10);
        }
        self.audit_events.push(e);
    }

    /// Creates a job that shows PROCESSING for `polls` GETs, then `outcome`.
    pub fn create_job(
        &mut self,
        operation: &str,
        outcome: JobOutcome,
        resource: Option<(String, String)>,
    ) -> String {
        let outcome = match self.faults.failing_jobs.get(operation) {
            Some(detail) => JobOutcome::Failed(vec![(
                10008,
                "CF-UnprocessableEntity".to_string(),
                detail.clone(),
            )]),
            None => outcome,
        };
        let meta = self.meta();
        let guid = meta.guid.clone();
        self.jobs.push(Job {
            meta,
            operation: operation.to_string(),
            outcome,
            warnings: Vec::new(),
            polls: 0,
            resource,
        });
        guid
    }

    /// The org's default domain: the oldest shared, non-internal domain without a router
    /// group, else the org's first private domain.
    pub fn default_domain(&self, org_guid: &str) -> Option<&Domain> {
        let mut shared: Vec<&Domain> = self
            .domains
            .iter()
            .filter(|d| d.org_guid.is_none() && !d.internal && d.router_group.is_none())
            .collect();
        shared.sort_by_key(|d| d.meta.seq);
        shared.first().copied().or_else(|| {
            self.domains
                .iter()
                .filter(|d| d.org_guid.as_deref() == Some(org_guid))
                .min_by_key(|d| d.meta.seq)
        })
    }

    /// The `host.domain/path` URL of a route.
    pub fn route_url(&self, r: &Route) -> String {
        let domain = self
            .domain(&r.domain_guid)
            .map(|d| d.name.as_str())
            .unwrap_or("");
        if let Some(port) = r.port {
            return format!("{domain}:{port}");
        }
        let host = if r.host.is_empty() {
            domain.to_string()
        } else {
            format!("{}.{domain}", r.host)
        };
        format!("{host}{}", r.path)
    }
}
